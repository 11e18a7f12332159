"""Teams, end to end: activities from the reference samples posted to /api/messages over HTTP,
the Bot Connector service stood in for on loopback."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import aiohttp
import jsonschema
import pytest
from sqlmodel import func, select

from bot import commands as c
from bot.ingest import make_incoming
from bot.scheduler import sweep_sla
from storage.models import Conversation, Delivery, Destination
from tests.conftest import reference_dir
from tests.teams_support import CHANNEL, TENANT, TeamsHarness, running_teams

APP_ID = "8e6e1f7a-1b2c-4d3e-9f00-112233445566"  # a bot's app id: authentication on


@pytest.fixture
async def teams(tmp_path: Path):
    async with running_teams(tmp_path) as harness:
        yield harness


@pytest.fixture(scope="module")
def card_schema() -> jsonschema.Draft6Validator:
    schema = json.loads((reference_dir() / "schemas/adaptive-cards/adaptive-card-1.5.0.schema.json").read_text())
    return jsonschema.Draft6Validator(schema)


def sent_cards(h: TeamsHarness) -> list[dict]:
    """Every Adaptive Card the bot sent to the connector (send, reply, create, update)."""
    cards = []
    for call in h.connector.calls:
        activity = (call.body or {}).get("activity", call.body) if call.body else None
        for attachment in (activity or {}).get("attachments") or []:
            if attachment.get("contentType") == "application/vnd.microsoft.card.adaptive":
                cards.append(attachment["content"])
    return cards


def card_text(node: object) -> str:
    """What a person reads on a card: TextBlocks and the joined TextRuns of each RichTextBlock."""
    if isinstance(node, list):
        return "\n".join(card_text(n) for n in node)
    if not isinstance(node, dict):
        return ""
    if node.get("type") == "RichTextBlock":  # bidi isolates (FSI ... PDI) take no space
        return "".join(i.get("text", "") for i in node.get("inlines", [])).replace("\u2068", "").replace("\u2069", "")
    if node.get("type") == "TextBlock":
        return node.get("text", "")
    return "\n".join(card_text(v) for k, v in node.items() if isinstance(v, (dict, list)))


async def link_support(h: TeamsHarness) -> None:
    status, _ = await h.mention("link support", user="aad-admin")
    assert status in (200, 201)


async def ingest(h: TeamsHarness, text: str = "my kettle arrived broken, refund please", external_id: str = "1") -> int:
    report = await h.container.ingest(
        [
            make_incoming(
                source="reviews",
                external_id=external_id,
                text=text,
                url=f"https://reviews.example.com/r/{external_id}",
                author_name="Priya",
            )
        ]
    )
    return report.new_ids[0]


async def test_linking_a_channel_stores_its_reference_and_cards_arrive_there(teams: TeamsHarness, card_schema) -> None:
    status, _ = await teams.mention("link support", user="aad-bob")
    refusal = card_text(sent_cards(teams)[-1])
    assert "only admins can link channels" in refusal
    await link_support(teams)
    assert "This channel now gets support" in card_text(sent_cards(teams)[-1])
    async with teams.container.uow() as uow:
        (destination,) = (await uow.session.exec(select(Destination).where(Destination.platform == "teams"))).all()
    assert destination.channel_id == CHANNEL and destination.conversation_ref["serviceUrl"] == teams.connector.url

    cid = await ingest(teams)
    await teams.deliver()
    (created,) = teams.connector.calls_to("create")
    assert created.body["channelData"]["channel"]["id"] == CHANNEL
    card = created.body["activity"]["attachments"][0]["content"]
    assert f"#{cid}" in card_text(card) and "Unclaimed" in card_text(card)
    for emitted in sent_cards(teams):
        card_schema.validate(emitted)


async def test_a_channel_listed_in_the_config_gets_its_waiting_cards_once_it_is_linked(tmp_path: Path) -> None:
    """Teams needs a conversation reference to post: until `@Unsilo link`, the channel's cards fail; then they arrive."""
    from tests.teams_support import TEAMS_CONFIG

    config = TEAMS_CONFIG.replace('channels = ["slack:C0SUPPORT"]', f'channels = ["teams:{CHANNEL}"]')
    async with running_teams(tmp_path, config=config) as h:
        waiting = await ingest(h)
        closed = await ingest(h, text="broken kettle, refund", external_id="2")
        await h.deliver()
        assert h.connector.calls_to("create") == []  # nowhere to post yet
        await h.container.bus.handle(c.Dismiss(closed, c.Actor("teams", "aad-manager", name="Maria"), "spam"))
        await h.deliver()
        await link_support(h)
        assert "and the 1 open one that could not be posted here yet" in card_text(sent_cards(h)[-1])
        await h.deliver()
        (created,) = h.connector.calls_to("create")  # the open one, not the dismissed one
        assert created.status == 201 and f"#{waiting}" in card_text(created.body["activity"]["attachments"][0]["content"])


async def test_claim_from_the_card_answers_with_the_refreshed_card_and_updates_the_posted_copy(
    teams: TeamsHarness, card_schema
) -> None:
    await link_support(teams)
    cid = await ingest(teams)
    await teams.deliver()
    status, body = await teams.invoke("claim", cid, user="aad-alice", name="Alice")
    assert status == 200
    assert body["statusCode"] == 200 and body["type"] == "application/vnd.microsoft.card.adaptive"
    card_schema.validate(body["value"])
    assert "Claimed by Alice" in card_text(body["value"])
    await teams.deliver()
    (update,) = teams.connector.calls_to("update")
    assert "Claimed by Alice" in card_text(update.body)


async def test_a_post_of_thousands_of_emoji_is_cut_to_fit_and_teams_accepts_it(teams: TeamsHarness, card_schema) -> None:
    """Teams refuses messages over 40 KB (as UTF-16) with 413; the stand-in does too."""
    await link_support(teams)
    report = await teams.container.ingest(
        [make_incoming(source="reviews", external_id="1", title="😡" * 250, text="refund " + "😡" * 2990, author_name="😡" * 80)]
    )
    cid = report.new_ids[0]
    await teams.deliver()
    (created,) = teams.connector.calls_to("create")
    assert created.status in (200, 201), created.response  # not 413 MessageSizeTooBig
    card = created.body["activity"]["attachments"][0]["content"]
    card_schema.validate(card)
    assert f"#{cid}" in card_text(card) and "😡…" in card_text(card)
    status, body = await teams.invoke("claim", cid, user="aad-alice", name="Alice")
    assert status == 200 and "Claimed by Alice" in card_text(body["value"])
    await teams.deliver()
    (update,) = teams.connector.calls_to("update")
    assert update.status == 200, update.response


async def test_two_people_invoke_claim_at_once_one_wins_the_other_sees_who(teams: TeamsHarness) -> None:
    cid = await ingest(teams)
    (a_status, a_body), (b_status, b_body) = await asyncio.gather(
        teams.invoke("claim", cid, user="aad-alice", name="Alice"), teams.invoke("claim", cid, user="aad-bob", name="Bob")
    )
    assert a_status == b_status == 200
    texts = [card_text(a_body["value"]), card_text(b_body["value"])]
    lost = [t for t in texts if "already claimed by" in t]
    assert len(lost) == 1
    winner = "Alice" if "already claimed by Alice" in lost[0] else "Bob"
    assert all(f"Claimed by {winner}" in t for t in texts)
    async with teams.container.uow() as uow:
        claimed = await uow.events.for_conversation(cid)
    assert [e.kind for e in claimed].count("claimed") == 1


async def test_reply_and_resolve_through_card_inputs(teams: TeamsHarness) -> None:
    cid = await ingest(teams)
    await teams.invoke("claim", cid, user="aad-alice", name="Alice")
    status, body = await teams.invoke("reply", cid, user="aad-alice", name="Alice", text="Refund sent!")
    assert status == 200 and "Reply recorded" in card_text(body["value"]) and "claimed" in card_text(body["value"])
    status, body = await teams.invoke("posted", cid, user="aad-alice", name="Alice")  # now the customer has it
    assert status == 200 and "replied" in card_text(body["value"])
    _, refused = await teams.invoke("resolve", cid, user="aad-bob", name="Bob", outcome="answered")
    assert "only #" in card_text(refused["value"]) and "owner (Alice)" in card_text(refused["value"])
    _, done = await teams.invoke("resolve", cid, user="aad-alice", name="Alice", outcome="answered", text="ok")
    async with teams.container.uow() as uow:
        conversation = await uow.conversations.get(cid)
        replies = await uow.replies.for_conversation(cid)
    assert (conversation.status, conversation.outcome) == ("resolved", "answered")
    assert [r.text for r in replies] == ["Refund sent!"]


async def test_mention_commands_and_help_for_anything_else(teams: TeamsHarness) -> None:
    cid = await ingest(teams)
    await teams.mention(f"claim {cid}", user="aad-alice")
    assert f"You claimed #{cid}" in card_text(sent_cards(teams)[-1])
    await teams.mention("frobnicate")
    reply = card_text(sent_cards(teams)[-1])
    assert "unknown command `frobnicate`" in reply and "@Unsilo queue" in reply
    await teams.mention("search refund")
    assert "1 match" in card_text(sent_cards(teams)[-1])
    assert teams.connector.calls_to("reply") or teams.connector.calls_to("send")


async def test_thread_replies_become_notes_once(teams: TeamsHarness) -> None:
    await link_support(teams)
    cid = await ingest(teams)
    await teams.deliver()
    root = teams.connector.calls_to("create")[0].response["activityId"]
    await teams.thread_reply(root, "I'll call her back", activity_id="1771290200001")
    await teams.thread_reply(root, "I'll call her back", activity_id="1771290200001")  # redelivered
    await teams.thread_reply("9999999999999", "some other thread")
    async with teams.container.uow() as uow:
        notes = await uow.notes.for_conversation(cid)
    assert [(n.text, n.origin) for n in notes] == [("I'll call her back", "teams-thread")]


async def test_send_to_unsilo_message_action_reports_a_post(teams: TeamsHarness) -> None:
    status, body = await teams.send_to_unsilo(
        department="support",
        link="https://forum.example.com/t/7",
        author="Dana",
        html="<p>Customer says the <b>courier</b> was rude</p>",
    )
    # A dialog message: `{"task": {"type": "message", "value": ...}}` is a documented answer to a submit
    # (MicrosoftDocs/msteams-docs, task-modules-and-cards/task-modules/task-modules-bots.md: "MessageTask —
    # Teams displays a message in a pop-up message box"; messaging-extensions/how-to/action-commands/
    # respond-to-task-module-submit.md lists "another task module" among the answers to submitAction).
    # `composeExtension {type: "message"}` is not, and Teams' emulator answers it with "Unable to reach app".
    assert status == 200 and set(body) == {"task"} and body["task"]["type"] == "message"
    assert body["task"]["value"].startswith("Thanks! That post is now #")
    async with teams.container.uow() as uow:
        (conversation,) = (await uow.session.exec(select(Conversation))).all()
    assert conversation.source == "teams-report" and conversation.text == "Customer says the courier was rude"
    assert (conversation.title, conversation.author_name) == ("Customer says the courier was rude", "Dana")

    # Teams retries a submit it got no answer to within 5 s: the same message again changes nothing.
    retry_status, retry = await teams.send_to_unsilo(
        department="support",
        link="https://forum.example.com/t/7",
        author="Dana",
        html="<p>Customer says the <b>courier</b> was rude</p>",
        activity_id="f:report-1-retry",
    )
    assert retry_status == 200 and retry["task"] == {"type": "message", "value": f"That post is already #{conversation.id}"}
    async with teams.container.uow() as uow:
        assert (await uow.session.exec(select(func.count()).select_from(Conversation))).one() == 1
        deliveries = (await uow.session.exec(select(Delivery))).all()
    assert len(deliveries) == len({(d.kind, d.destination_id) for d in deliveries})  # no second card queued


async def test_send_to_unsilo_with_no_form_fields_links_to_the_message_and_keeps_its_mentioned_names(teams: TeamsHarness) -> None:
    """Microsoft's documented message as it is: the link is the message's own, an @mention is its name."""
    status, body = await teams.send_to_unsilo()
    assert status == 200 and body["task"]["value"].startswith("Thanks! That post is now #")
    async with teams.container.uow() as uow:
        (conversation,) = (await uow.session.exec(select(Conversation))).all()
    assert conversation.text == "Testing outgoing Webhook-Nikitha - Hi" and conversation.author_name == "Olo Brockhouse"
    assert conversation.url == (
        "https://teams.microsoft.com/l/message/19:6decf54d86d945e4b3924b63a9161a78@thread.skype/1611060744833"
    )
    assert conversation.external_id == "teams:1611060744833"


async def test_with_an_app_id_unauthenticated_requests_are_refused_and_change_nothing(tmp_path: Path) -> None:
    async with running_teams(tmp_path, app_id=APP_ID) as secured:
        without, _ = await secured.mention("report https://x.example/1 a post about a broken kettle")
        forged, _ = await secured.send(
            {**(await _mention_activity(secured)), "text": "<at>Unsilo</at> help"},
            headers={"Authorization": "Bearer not-a-real-token"},
        )
        click, _ = await secured.invoke("claim", 1)
        forged_click, _ = await secured.send(
            {
                **(await _mention_activity(secured)),
                "type": "invoke",
                "name": "adaptiveCard/action",
                "value": {"action": {"verb": "claim", "data": {"cmd": "claim", "id": 1}}},
            },
            headers={"Authorization": "Bearer not-a-real-token"},
        )
        assert without == 401 and forged == 401 and click == 401 and forged_click == 401
        async with secured.container.uow() as uow:
            assert (await uow.session.exec(select(func.count()).select_from(Conversation))).one() == 0
        assert secured.connector.calls == []


@pytest.fixture
def issuer(monkeypatch: pytest.MonkeyPatch):
    """The Bot Framework's token issuer on loopback, and the SDK pointed at it."""
    from botframework.connector.auth import ChannelValidation

    from tests.teams_support import BotFrameworkIssuer

    with BotFrameworkIssuer() as stand_in:
        monkeypatch.setattr(ChannelValidation, "open_id_metadata_endpoint", stand_in.metadata_url)
        yield stand_in


async def test_with_an_app_id_a_click_signed_by_the_bot_framework_is_answered(tmp_path: Path, issuer) -> None:
    """A token signed by the Bot Framework's key, for this bot and this service URL, is the only way in."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    async with running_teams(tmp_path, app_id=APP_ID) as secured:
        cid = await ingest(secured)
        url = secured.connector.url
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        refused = [
            issuer.token(app_id=APP_ID, service_url=url, key=stranger),  # not the framework's key
            issuer.token(app_id="another-bot", service_url=url),  # for another bot
            issuer.token(app_id=APP_ID, service_url="https://evil.example/"),  # for another service
            issuer.token(app_id=APP_ID, service_url=url, issuer="https://evil.example"),
            issuer.token(app_id=APP_ID, service_url=url, expires_in=-3600),
        ]  # expired
        statuses = [(await secured.invoke("claim", cid, name="Alice", token=token))[0] for token in refused]
        assert statuses == [401] * 5
        async with secured.container.uow() as uow:
            assert (await uow.conversations.get(cid)).status == "open"  # type: ignore[union-attr]

        status, body = await secured.invoke("claim", cid, name="Alice", token=issuer.token(app_id=APP_ID, service_url=url))
        assert status == 200 and "Claimed by Alice" in card_text(body["value"])
        async with secured.container.uow() as uow:
            assert (await uow.conversations.get(cid)).status == "claimed"  # type: ignore[union-attr]


async def test_fetching_the_bot_framework_keys_never_blocks_the_service(tmp_path: Path, issuer) -> None:
    """botframework fetches its signing keys with blocking HTTP; the service keeps answering meanwhile."""
    async with running_teams(tmp_path, app_id=APP_ID) as secured:
        cid = await ingest(secured)
        token = issuer.token(app_id=APP_ID, service_url=secured.connector.url)
        issuer.keys_gate.clear()  # login.botframework.com is slow today
        click = asyncio.create_task(secured.invoke("claim", cid, name="Alice", token=token))
        assert await asyncio.to_thread(issuer.keys_asked.wait, 5)
        async with secured.http.get(f"{secured.url}/healthz", timeout=aiohttp.ClientTimeout(total=3)) as health:
            assert health.status == 200
        assert not issuer.keys_served.is_set(), "answered while the keys were still on their way"
        issuer.keys_gate.set()
        status, body = await click
        assert status == 200 and "Claimed by Alice" in card_text(body["value"])


async def _mention_activity(h: TeamsHarness) -> dict:
    from tests.teams_support import sample

    activity = sample("message.channel.mention.json")
    activity["serviceUrl"] = h.connector.url
    return activity


async def test_a_claim_on_teams_updates_the_slack_card_and_a_slack_claim_updates_teams(tmp_path: Path) -> None:
    from tests.slack_support import SlackHarness

    async with running_teams(tmp_path, with_slack=True) as h:
        await link_support(h)
        cid = await ingest(h)
        await h.deliver()
        assert len(h.slack.messages("C0SUPPORT")) == 1 and len(h.connector.calls_to("create")) == 1

        await h.invoke("claim", cid, user="aad-alice", name="Alice")
        await h.deliver()
        assert "Claimed by Alice" in json.dumps(h.slack.messages("C0SUPPORT")[0]["blocks"])

        await h.container.bus.handle(c.Release(cid, c.Actor("teams", "aad-alice", name="Alice")))
        slack = SlackHarness(container=h.container, slack=h.slack, url=h.url, http=h.http)
        from bot import codec
        from bot.views import Button

        status, _, _ = await slack.click(f"unsilo:claim:{cid}", codec.encode(Button("Claim", "claim", cid)), user="UBOB")
        assert status == 200
        await asyncio.sleep(0.3)
        await h.deliver()
        assert "Claimed by ubob" in card_text(h.connector.calls_to("update")[-1].body)


async def test_a_throttled_card_update_waits_for_retry_after_and_still_arrives_once(teams: TeamsHarness) -> None:
    await link_support(teams)
    cid = await ingest(teams)
    await teams.deliver()
    await teams.container.bus.handle(c.Claim(cid, c.Actor("teams", "aad-alice", name="Alice")))
    teams.connector.fail_next("update", status=429, retry_after=30)
    await teams.deliver()
    async with teams.container.uow() as uow:
        (waiting,) = await uow.deliveries.pending_on("teams")
    assert "retry after 30s" in waiting.last_error and len(teams.connector.calls_to("update")) == 1
    teams.container.clock = lambda: waiting.next_attempt_at  # 30 s later
    await teams.deliver()
    updates = [u for u in teams.connector.calls_to("update") if u.status == 200]
    assert len(updates) == 1 and "Claimed by Alice" in card_text(updates[0].body)


async def test_the_largest_card_sent_uncut_still_fits_in_a_teams_message() -> None:
    """Card budget + summary + the activity around them stay under Teams' limit (the stand-in's 413)."""
    from adapters.teams import render
    from adapters.teams.sender import TeamsSender
    from bot.domain import DEFAULT_OUTCOMES
    from bot.outbox import Job
    from tests.cards import make_card
    from tests.standins.bot_connector import BotConnectorStandIn

    def card_of(n: int):
        return make_card(title="😡" * 250, text="😡" * n, author="😡" * 80, tags=("😡" * 100,), routing_reason="😡" * 300)

    def uncut(n: int) -> bool:
        runs = [
            i["text"].strip("\u2068\u2069")
            for b in render.card(card_of(n), outcomes=DEFAULT_OUTCOMES)["body"]
            for i in b.get("inlines", ())
        ]
        return "😡" * n in runs

    low, high = 0, 3000  # the most emoji of text that still needs no cutting
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if uncut(middle) else (low, middle - 1)
    assert low > 100
    async with BotConnectorStandIn() as connector:
        sender = TeamsSender(app_id="", app_password="", outcomes=DEFAULT_OUTCOMES)
        ref = {"serviceUrl": connector.url, "conversation": {"id": CHANNEL, "conversationType": "channel", "tenantId": "t"}}
        sent = await sender.send(
            Job(
                delivery_id=1,
                kind="card",
                platform="teams",
                channel_id=CHANNEL,
                conversation_ref=ref,
                payload={},
                card=card_of(low),
            )
        )
        (created,) = connector.calls_to("create")
        assert created.status == 201 and sent.message_id
        assert len(json.dumps(created.body).encode("utf-16-le")) <= connector.max_message_bytes


async def test_a_card_teams_finds_too_big_fails_at_once_instead_of_retrying(teams: TeamsHarness) -> None:
    await link_support(teams)
    await ingest(teams)
    teams.connector.fail_next("create", status=413)
    await teams.deliver()
    assert len(teams.connector.calls_to("create")) == 1  # not tried again: it would be refused again
    async with teams.container.uow() as uow:
        (delivery,) = (await uow.session.exec(select(Delivery).where(Delivery.platform == "teams"))).all()
    assert delivery.status == "failed" and "413" in delivery.last_error


async def test_escalations_go_under_the_card_and_reminders_to_the_owner_in_a_one_to_one_chat(
    teams: TeamsHarness, card_schema
) -> None:
    await link_support(teams)
    await teams.mention("mine", user="aad-manager", name="Maria Manager")  # the support manager, known by now
    escalated = await ingest(teams, text="refund please, it is broken", external_id="e")
    reminded = await ingest(teams, text="broken again, refund", external_id="r")
    await teams.invoke("claim", reminded, user="aad-alice", name="Alice")
    await teams.deliver()
    async with teams.container.uow() as uow:  # both conversations are five hours old (the SLA is 4 h)
        for cid in (escalated, reminded):
            conversation = await uow.conversations.get(cid)
            assert conversation is not None
            conversation.ingested_at -= timedelta(hours=5)
            conversation.claimed_at = conversation.claimed_at and conversation.claimed_at - timedelta(hours=5)
            uow.session.add(conversation)
        await uow.commit()
    assert await sweep_sla(teams.container.uow) == (1, 1)
    await teams.deliver()

    sends = teams.connector.calls_to("send")
    in_thread = [s for s in sends if ";messageid=" in (s.conversation_id or "")]
    assert len(in_thread) == 1 and in_thread[0].conversation_id.startswith(CHANNEL)
    escalation = in_thread[0].body["attachments"][0]["content"]
    card_schema.validate({k: v for k, v in escalation.items() if k != "msteams"})  # Teams' extension, outside the schema
    assert f"#{escalated} is still unclaimed" in card_text(escalation)
    assert "<at>Maria Manager</at>" in card_text(escalation)  # the manager is pinged
    assert escalation["msteams"]["entities"] == [
        {"type": "mention", "text": "<at>Maria Manager</at>", "mentioned": {"id": "aad-manager", "name": "Maria Manager"}}
    ]

    chats = [c for c in teams.connector.calls_to("create") if c.body.get("members")]
    assert len(chats) == 1 and chats[0].body["members"][0]["id"] == "aad-alice"
    dm = [s for s in sends if s.conversation_id == chats[0].response["id"]]
    assert len(dm) == 1
    reminder = dm[0].body["attachments"][0]["content"]
    card_schema.validate(reminder)
    assert f"Reminder: #{reminded} is yours" in card_text(reminder)


# --- issue 12.2 on Teams: a card posted twice after a crash ------------------------------------------


class Crash(BaseException):
    """The process dies (kill -9) right after Teams took the post, before it is recorded."""


async def _first_send_dies_after_posting(h: TeamsHarness) -> int:
    """A card whose first send reached Teams, and the worker died before recording it (as a kill -9 would)."""
    from bot.outbox import DeliveryWorker, Job, Sent

    await link_support(h)
    cid = await ingest(h)
    real = h.container.senders["teams"]

    class DiesAfterPosting:
        async def send(self, job: Job) -> Sent:
            await real.send(job)
            raise Crash()

    dying = DeliveryWorker(h.container.uow, {"teams": DiesAfterPosting()}, lease=timedelta(seconds=0.3))
    with pytest.raises(Crash):
        await dying.run_once()
    assert len(h.connector.calls_to("create")) == 1
    await asyncio.sleep(0.4)  # the dead worker's lease runs out
    return cid


def _shown(h: TeamsHarness, message_id: str) -> dict:
    """The card a channel message shows now."""
    (attachment,) = h.connector.activity(CHANNEL, message_id)["attachments"]
    return attachment["content"]


async def test_a_card_posted_twice_after_a_crash_works_from_its_older_copy_which_then_points_at_the_live_one(
    teams: TeamsHarness, card_schema
) -> None:
    """A bot cannot read a Teams channel, so the card is posted again (at least once); the older copy stays useful."""
    cid = await _first_send_dies_after_posting(teams)
    await teams.deliver()
    older, live = [call.response["activityId"] for call in teams.connector.calls_to("create")]
    first_copy = _shown(teams, older)

    status, body = await teams.click(first_copy, "claim", older, user="aad-alice", name="Alice")
    assert status == 200 and body["type"] == "application/vnd.microsoft.card.adaptive"
    card_schema.validate(body["value"])
    said = card_text(body["value"])
    assert f"You claimed #{cid}" in said and f"#{cid} continues in a newer card" in said
    (link,) = [a["url"] for a in body["value"]["actions"] if a["type"] == "Action.OpenUrl"]
    assert link.startswith(f"https://teams.microsoft.com/l/message/{CHANNEL}/{live}?")
    assert f"parentMessageId={live}" in link and f"tenantId={TENANT}" in link
    async with teams.container.uow() as uow:
        assert [e.kind for e in await uow.events.for_conversation(cid)].count("claimed") == 1

    await teams.deliver()  # everyone else sees the older copy point at the live one, which shows the claim
    card_schema.validate(_shown(teams, older))
    assert f"#{cid} continues in a newer card" in card_text(_shown(teams, older))
    assert [a["url"] for a in _shown(teams, older)["actions"]] == [link]
    assert "Claimed by Alice" in card_text(_shown(teams, live))

    await teams.thread_reply(older, "I'll call her back")  # a note in the older copy's thread is the conversation's
    async with teams.container.uow() as uow:
        assert [n.text for n in await uow.notes.for_conversation(cid)] == ["I'll call her back"]

    # Someone who still sees the first copy as it was adds a note from its button: done, and told where to go.
    _, again = await teams.click(first_copy, "note", older, user="aad-bob", name="Bob", **{"note.text": "she called"})
    assert f"Note added to #{cid}" in card_text(again["value"]) and "continues in a newer card" in card_text(again["value"])
    await teams.deliver()
    async with teams.container.uow() as uow:
        assert [n.text for n in await uow.notes.for_conversation(cid)] == ["I'll call her back", "she called"]
    assert len(teams.connector.calls_to("create")) == 2  # never a third copy
    assert [c.activity_id for c in teams.connector.calls_to("update")].count(older) == 1  # pointed at the live one once


async def test_a_copy_used_before_the_retry_is_the_card_and_is_not_posted_again(teams: TeamsHarness) -> None:
    await _first_send_dies_after_posting(teams)
    (created,) = teams.connector.calls_to("create")
    only = created.response["activityId"]

    status, body = await teams.click(_shown(teams, only), "claim", only, user="aad-alice", name="Alice")
    assert status == 200 and "Claimed by Alice" in card_text(body["value"])
    await teams.deliver()
    assert len(teams.connector.calls_to("create")) == 1, "posted again though the first copy was found"
    assert {c.activity_id for c in teams.connector.calls_to("update")} == {only}
    assert "Claimed by Alice" in card_text(_shown(teams, only))
