"""Slack, end to end: signed requests over HTTP to the running service, the Web API stood in for on loopback."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from sqlmodel import func, select

from bot import codec
from bot.ingest import make_incoming
from bot.views import Button
from storage.models import Conversation, Note
from tests.conftest import FakeClock
from tests.slack_support import SlackHarness, running_slack, thread_reply


@pytest.fixture
async def slack(tmp_path: Path):
    async with running_slack(tmp_path) as harness:
        yield harness


async def ingest(h: SlackHarness, text: str, external_id: str = "1") -> int:
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


async def count(h: SlackHarness, model: type) -> int:
    async with h.container.uow() as uow:
        return (await uow.session.exec(select(func.count()).select_from(model))).one()


def answer(body: str) -> str:
    """What the person sees from an ack: Bolt sends plain text, or JSON with `text` and blocks."""
    return json.loads(body)["text"] if body.startswith("{") else body


def button(verb: str, cid: int) -> tuple[str, str]:
    b = Button(verb.title(), verb, cid)
    return f"unsilo:{verb}:{cid}", codec.encode(b)


async def test_health_reports_slack_enabled(slack: SlackHarness) -> None:
    for _ in range(50):  # auth.test runs in the background at start-up
        async with slack.http.get(f"{slack.url}/healthz") as response:
            body = await response.json()
        if body["platforms"]["slack"]["state"] != "starting":
            break
        await asyncio.sleep(0.05)
    assert body["platforms"]["slack"]["state"] == "ok" and body["platforms"]["slack"]["enabled"] is True
    assert "reason" not in body["platforms"]["slack"]


async def test_forged_stale_and_unsigned_requests_are_refused_and_change_nothing(slack: SlackHarness) -> None:
    report = "report https://forum.example.com/t/1 customer says the kettle is broken"
    forged_status, _, _ = await slack.command(report, headers={"X-Slack-Signature": "v0=" + "0" * 64})
    stale_status, _, _ = await slack.command(report, timestamp=int(time.time()) - 6 * 60)
    unsigned_status, _, _ = await slack.command(report, signed=False)
    assert (forged_status, stale_status, unsigned_status) == (401, 401, 401)
    assert await count(slack, Conversation) == 0
    ok_status, body, _ = await slack.command(report)
    assert ok_status == 200 and "now #1" in body
    assert await count(slack, Conversation) == 1


async def test_cards_are_posted_once_per_channel_and_updated_in_every_copy(slack: SlackHarness) -> None:
    cid = await ingest(slack, "My parcel arrived broken")  # support and ops
    await slack.deliver()
    support, ops = slack.slack.messages("C0SUPPORT"), slack.slack.messages("C0OPS")
    assert len(support) == 1 and len(ops) == 1
    assert "Unclaimed" in json.dumps(support[0]["blocks"])

    status, _, _ = await slack.click(*button("claim", cid), user="UALICE")
    assert status == 200
    await asyncio.sleep(0.2)
    await slack.deliver()
    for channel in ("C0SUPPORT", "C0OPS"):
        (message,) = slack.slack.messages(channel)
        assert "Claimed by" in json.dumps(message["blocks"]) and "edited" in message
    assert len(slack.slack.calls_to("chat.postMessage")) == 2
    assert len(slack.slack.calls_to("chat.update")) == 2


async def test_two_people_click_claim_at_once_one_wins_the_other_is_told_who(slack: SlackHarness) -> None:
    cid = await ingest(slack, "My parcel arrived broken")
    await slack.deliver()
    results = await asyncio.gather(
        slack.click(*button("claim", cid), user="UALICE"), slack.click(*button("claim", cid), user="UBOB")
    )
    assert [r[0] for r in results] == [200, 200]
    await slack.slack.wait_for("chat.postEphemeral", timeout=5)
    async with slack.container.uow() as uow:
        conversation = await uow.conversations.get(cid)
        winner = next(i.user_id for i in await uow.people.identities(conversation.owner_id))
    loser = "UBOB" if winner == "UALICE" else "UALICE"
    (ephemeral,) = slack.slack.calls_to("chat.postEphemeral")
    assert ephemeral.args["user"] == loser
    assert ephemeral.args["text"] == f"#{cid} is already claimed by <@{winner}>"
    await slack.deliver()
    for channel in ("C0SUPPORT", "C0OPS"):
        assert "Claimed by" in json.dumps(slack.slack.messages(channel)[0]["blocks"])


async def test_every_interaction_is_acked_fast_even_when_slack_is_slow(tmp_path: Path) -> None:
    async with running_slack(tmp_path, delay=5.0) as slow:
        cid = await ingest(slow, "refund please")
        await slow.identified()  # the start-up auth.test tells the bot its workspace (5 s here)
        timings = {
            "reply button (opens a modal)": (await slow.click(*button("reply", cid)))[2],
            "claim button": (await slow.click(*button("claim", cid)))[2],
            "slash command": (await slow.command("queue"))[2],
        }
        assert all(seconds < 1.5 for seconds in timings.values()), timings
        await slow.slack.wait_for("views.open", timeout=10)  # the slow work still happened, after the ack
        print("ack times with a 5 s Slack API:", {k: f"{v * 1000:.0f} ms" for k, v in timings.items()})


async def test_an_events_api_retry_is_processed_once_and_bot_messages_are_ignored(slack: SlackHarness) -> None:
    cid = await ingest(slack, "refund please")
    await slack.deliver()
    (card,) = slack.slack.messages("C0SUPPORT")
    reply = thread_reply(card["ts"], "I'll call her")
    first = await slack.event(reply, event_id="Ev0001")
    retry = await slack.event(
        reply, event_id="Ev0001", headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    )
    bot = {**reply, "ts": "1700000101.000300", "bot_id": "B00STANDBOT", "text": "bot chatter"}
    other_thread = {**reply, "ts": "1700000102.000400", "thread_ts": "1600000000.000001", "text": "unrelated"}
    await slack.event(bot, event_id="Ev0002")
    await slack.event(other_thread, event_id="Ev0003")
    assert first[0] == retry[0] == 200
    await asyncio.sleep(0.3)
    async with slack.container.uow() as uow:
        notes = await uow.notes.for_conversation(cid)
    assert [(n.text, n.origin) for n in notes] == [("I'll call her", "slack-thread")]
    assert await count(slack, Note) == 1


async def test_slash_commands_answer_privately_and_explain_mistakes(slack: SlackHarness) -> None:
    cid = await ingest(slack, "refund please")
    answers = {}
    for text in (
        "help",
        "frobnicate",
        "claim abc",
        "claim 99",
        f"claim #{cid}",
        f"resolve {cid} maybe",
        f"resolve {cid} answered refunded",
        "queue",
        "search refund",
        f"dismiss {cid} dup",
    ):
        status, body, _ = await slack.command(text)
        assert status == 200, text
        answers[text] = answer(body)
    assert "/unsilo queue [department]" in answers["help"]
    assert answers["frobnicate"] == "unknown command `frobnicate`; try `/unsilo help`"
    assert "'abc' is not a conversation id" in answers["claim abc"] and "usage: `/unsilo claim #42`" in answers["claim abc"]
    assert answers["claim 99"].startswith("#99 doesn't exist")
    assert answers[f"claim #{cid}"] == f"You claimed #{cid}"
    assert answers[f"resolve {cid} maybe"].startswith("unknown outcome 'maybe'")
    assert answers[f"resolve {cid} answered refunded"] == f"#{cid} resolved: answered"
    assert answers["search refund"].startswith("1 match")
    assert "resolved; it can't be dismissed" in answers[f"dismiss {cid} dup"]


async def test_linking_a_channel_sends_that_departments_cards_there(slack: SlackHarness) -> None:
    status, body, _ = await slack.command("link ops", user="UBOB", channel="C0NEWOPS")
    assert answer(body).startswith("only admins can link channels")
    status, body, _ = await slack.command("link ops", user="UADMIN", channel="C0NEWOPS")
    assert answer(body) == "This channel now gets ops's new conversations"
    await ingest(slack, "courier lost my parcel")
    await slack.deliver()
    assert len(slack.slack.messages("C0NEWOPS")) == 1 and len(slack.slack.messages("C0OPS")) == 1
    _, body, _ = await slack.command("unlink", user="UADMIN", channel="C0NEWOPS")
    assert answer(body) == "This channel no longer gets ops's conversations"
    await ingest(slack, "another courier problem", external_id="2")
    await slack.deliver()
    assert len(slack.slack.messages("C0NEWOPS")) == 1 and len(slack.slack.messages("C0OPS")) == 2


async def test_reply_and_resolve_through_modals(slack: SlackHarness) -> None:
    cid = await ingest(slack, "refund please")
    await slack.click(*button("claim", cid))
    await slack.click(*button("reply", cid))
    view = (await slack.slack.wait_for("views.open"))[-1].args["view"]
    status, body, _ = await slack.submit(view, {"text": {"text": {"type": "plain_text_input", "value": "Refund sent!"}}})
    assert status == 200 and body == ""
    await slack.click(*button("resolve", cid), user="UBOB")
    resolve_view = (await slack.slack.wait_for("views.open", count=2))[-1].args["view"]
    refused = await slack.submit(
        resolve_view, {"outcome": {"outcome": {"type": "static_select", "selected_option": {"value": "answered"}}}}, user="UBOB"
    )
    errors = json.loads(refused[1])
    assert errors["response_action"] == "errors" and "owner" in errors["errors"]["outcome"]
    accepted = await slack.submit(
        resolve_view, {"outcome": {"outcome": {"type": "static_select", "selected_option": {"value": "answered"}}}}
    )
    assert accepted[0] == 200
    async with slack.container.uow() as uow:
        conversation = await uow.conversations.get(cid)
        replies = await uow.replies.for_conversation(cid)
    assert (conversation.status, conversation.outcome) == ("resolved", "answered")
    assert [r.text for r in replies] == ["Refund sent!"]


async def test_send_to_unsilo_shortcut_reports_a_message(slack: SlackHarness) -> None:
    from tests.slack_support import sample

    shortcut = sample("message_action.shortcut.json")
    shortcut.update(callback_id="unsilo_report")
    shortcut["user"]["id"] = "UCARLOS"
    shortcut["message"]["text"] = "Customer on our forum: my courier was rude <!here>"
    status, _, _ = await slack.interactive(shortcut)
    assert status == 200
    view = (await slack.slack.wait_for("views.open"))[-1].args["view"]
    status, body, _ = await slack.submit(
        view,
        {
            "department": {"department": {"type": "static_select", "selected_option": {"value": "ops"}}},
            "link": {"link": {"type": "plain_text_input", "value": "https://forum.example.com/t/9"}},
        },
        user="UCARLOS",
    )
    assert status == 200, body
    async with slack.container.uow() as uow:
        (conversation,) = (await uow.session.exec(select(Conversation))).all()
        departments = [d.name for d in await uow.conversations.departments_of(conversation.id)]
    assert conversation.source == "slack-report" and departments == ["ops"]
    assert conversation.url == "https://forum.example.com/t/9"
    assert "courier was rude" in conversation.text


async def test_app_home_shows_mine_queue_and_outcomes(slack: SlackHarness) -> None:
    cid = await ingest(slack, "refund please")
    await slack.click(*button("claim", cid))
    await asyncio.sleep(0.2)
    status, _, _ = await slack.event(
        {"type": "app_home_opened", "user": "UALICE", "channel": "D0001", "tab": "home", "event_ts": "1700000000.1"},
        event_id="EvHome",
    )
    assert status == 200
    call = (await slack.slack.wait_for("views.publish"))[-1]
    assert call.args["user_id"] == "UALICE" and call.args["view"]["type"] == "home"
    assert f"#{cid}" in json.dumps(call.args["view"])


async def test_customer_text_cannot_ping_or_inject_links(slack: SlackHarness) -> None:
    await ingest(slack, "<!channel> <!here> <@U123> <https://evil.example|your bank> & refund " + "x" * 10_000)
    await slack.deliver()
    (message,) = slack.slack.messages("C0SUPPORT")
    raw = json.dumps(message)
    for live in ("<!channel>", "<!here>", "<@U123>", "<https://evil.example|"):
        assert live not in raw
    assert "&lt;!channel&gt;" in raw


async def test_a_burst_of_200_cards_into_one_channel_arrives_exactly_once_under_a_1_per_second_limit(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_slack(tmp_path, clock=clock, rate_limit_per_channel=1.0, rate_clock=lambda: clock().timestamp()) as h:
        items = [make_incoming(source="reviews", external_id=str(i), text=f"refund request number {i}") for i in range(200)]
        report = await h.container.ingest(items)
        assert len(report.new_ids) == 200
        worker = h.container.worker()
        rounds = 0
        while rounds < 2000:
            rounds += 1
            await worker.run_once()
            async with h.container.uow() as uow:
                pending = len(await uow.deliveries.pending_on("slack"))
            if not pending:
                break
            clock.advance(seconds=1)
        messages = h.slack.messages("C0SUPPORT")
        posted_ids = sorted(int(m["text"].split("#")[1].split()[0].rstrip(":·")) for m in messages)
        assert posted_ids == sorted(report.new_ids)
        rejected = [c for c in h.slack.calls_to("chat.postMessage") if c.status == 429]
        assert rejected, "the stand-in should have rate-limited the burst"
        print(
            f"200 cards at 1 msg/s: {len(messages)} posted once each over {rounds} simulated seconds, "
            f"{len(rejected)} calls answered 429"
        )


def _card_of(h: SlackHarness, cid: int) -> str:
    """The latest Slack copy of a conversation's card, as JSON text."""
    updates = [
        c.args
        for c in h.slack.calls
        if c.method in ("chat.update", "chat.postMessage") and f"*#{cid}*" in json.dumps(c.args.get("blocks", []))
    ]
    return json.dumps(updates[-1]["blocks"]) if updates else ""


async def test_a_sensitive_reply_is_held_until_a_manager_decides_from_the_card(slack: SlackHarness) -> None:
    cid = await ingest(slack, "my lawyer says the refund is overdue")
    await slack.click(*button("claim", cid))
    await slack.click(*button("reply", cid))
    view = (await slack.slack.wait_for("views.open"))[-1].args["view"]
    await slack.submit(view, {"text": {"text": {"type": "plain_text_input", "value": "You'll get it today."}}})
    await slack.deliver()
    card = _card_of(slack, cid)
    assert "Reply waiting for approval" in card and "unsilo:approve" in card and "unsilo:reject" in card

    await slack.click(*button("approve", cid))  # the author can't approve their own reply
    refusal = (await slack.slack.wait_for("chat.postEphemeral"))[-1].args["text"]
    assert "another approver must decide" in refusal

    await slack.click(*button("reject", cid), user="UMANAGER")
    reject_view = (await slack.slack.wait_for("views.open", count=2))[-1].args["view"]
    assert reject_view["callback_id"] == "unsilo_reject"
    status, _, _ = await slack.submit(
        reject_view, {"text": {"text": {"type": "plain_text_input", "value": "Legal must word this"}}}, user="UMANAGER"
    )
    assert status == 200
    await slack.deliver()
    async with slack.container.uow() as uow:
        reply = await uow.replies.latest(cid)
    assert reply is not None and (reply.status, reply.decision_reason) == ("rejected", "Legal must word this")
    card = _card_of(slack, cid)
    assert "Reply rejected by umanager: Legal must word this" in card and "unsilo:approve" not in card, card


class Crash(BaseException):
    """The process dies (kill -9) right after Slack took the post, before it is recorded."""


async def test_a_crash_between_posting_a_card_and_recording_it_never_posts_it_twice(slack: SlackHarness) -> None:
    from datetime import timedelta

    from adapters.slack.sender import SlackSender
    from bot.outbox import DeliveryWorker, Job, Sent
    from storage.models import Posting

    cid = await ingest(slack, "the kettle is broken")
    real = SlackSender(slack.container.senders["slack"].client)  # type: ignore[attr-defined]

    class DiesAfterPosting:
        async def send(self, job: Job) -> Sent:
            await real.send(job)
            raise Crash()

    dying = DeliveryWorker(slack.container.uow, {"slack": DiesAfterPosting()}, lease=timedelta(seconds=0.3))
    with pytest.raises(Crash):
        await dying.run_once()
    assert len(slack.slack.messages("C0SUPPORT")) == 1
    card = slack.slack.messages("C0SUPPORT")[0]
    assert card["metadata"]["event_type"] == "unsilo_card" and card["metadata"]["event_payload"]["conversation_id"] == cid
    await asyncio.sleep(0.4)  # the dead worker's lease runs out
    assert await DeliveryWorker(slack.container.uow, {"slack": real}).run_until_idle() >= 1
    assert len(slack.slack.messages("C0SUPPORT")) == 1, "posted again after the crash"
    assert [c.args.get("include_all_metadata") for c in slack.slack.calls_to("conversations.history")]
    async with slack.container.uow() as uow:
        [posting] = (await uow.session.exec(select(Posting).where(Posting.conversation_id == cid))).all()
    assert posting.message_id == card["ts"]  # recorded now, so later changes update that one message
