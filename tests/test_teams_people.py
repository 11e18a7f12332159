"""Teams, as people use it: who a message is addressed to, notes that name colleagues, which
organisation may use the app, and who a Teams user is (their email, their name as shown).

Activities come from the recorded samples in ../shared/reference/teams, posted over HTTP to the
running service; the Bot Connector service is stood in for on loopback."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlmodel import select

from bot.ingest import make_incoming
from storage.models import Identity, Person
from tests.teams_support import BOT, CHANNEL, TENANT, TeamsHarness, running_teams
from tests.test_teams import card_text, link_support, sent_cards


@pytest.fixture
async def teams(tmp_path: Path):
    async with running_teams(tmp_path) as harness:
        yield harness


async def posted_card(h: TeamsHarness, text: str = "my kettle arrived broken, refund please") -> tuple[int, str]:
    """A conversation whose card is posted in the linked channel: (its id, the card's message id)."""
    await link_support(h)
    report = await h.container.ingest(
        [
            make_incoming(
                source="reviews",
                external_id=text[:20],
                text=text,
                url=f"https://reviews.example.com/r/{abs(hash(text))}",
                author_name="Priya",
            )
        ]
    )
    await h.deliver()
    root = h.connector.calls_to("create")[-1].response["activityId"]
    return report.new_ids[0], root


async def notes_of(h: TeamsHarness, cid: int) -> list[str]:
    async with h.container.uow() as uow:
        return [n.text for n in await uow.notes.for_conversation(cid)]


# --- item 7: a mention of the bot in a thread reply is a command ------------------------


async def test_a_mention_of_the_bot_in_a_cards_thread_runs_the_command_and_answers_there(teams: TeamsHarness) -> None:
    cid, root = await posted_card(teams)
    status, _ = await teams.thread_mention(root, f"<at>Unsilo</at> claim {cid}", user="aad-bob", name="Bob")
    assert status in (200, 201)
    async with teams.container.uow() as uow:
        assert (await uow.conversations.get(cid)).status == "claimed"  # type: ignore[union-attr]
    assert await notes_of(teams, cid) == []  # not stored as a note
    answer = teams.connector.calls_to("reply")[-1]
    assert answer.conversation_id == f"{CHANNEL};messageid={root}"  # in the card's thread
    assert f"You claimed #{cid}" in card_text(answer.body["attachments"][0]["content"])


async def test_help_in_any_thread_is_answered(teams: TeamsHarness) -> None:
    await teams.thread_mention("1771290107407", "<at>Unsilo</at> help")
    assert "Unsilo commands" in card_text(sent_cards(teams)[-1])


# --- items 12, 13: other people's mentions are not the bot's ---------------------------


async def test_a_thread_reply_mentioning_only_a_colleague_is_a_note_with_their_name_and_gets_no_answer(
    teams: TeamsHarness,
) -> None:
    cid, root = await posted_card(teams)
    megan = ("Megan Bowen", "29:1megan")
    before = len(teams.connector.calls)
    await teams.thread_mention(root, "please ask <at>Megan Bowen</at> to call", mentions=(megan,))
    assert await notes_of(teams, cid) == ["please ask Megan Bowen to call"]
    assert [call.route for call in teams.connector.calls[before:]] == ["member"]  # who wrote it; no answer


async def test_a_reply_in_a_thread_that_is_no_cards_looks_nobody_up(teams: TeamsHarness) -> None:
    """With ChannelMessage.Read.Group Teams sends the bot every reply in the channel: only a card's thread makes a
    note, and only a note needs its writer's email (a member look-up, up to 2 s, on the Bot Connector)."""
    cid, root = await posted_card(teams)
    before = len(teams.connector.calls)
    await teams.thread_reply("1771290107407", "lunch at noon?", user="aad-bob")  # someone else's thread
    assert teams.connector.calls[before:] == [] and await notes_of(teams, cid) == []
    await teams.thread_reply(root, "I'll call her back", user="aad-bob")
    assert [c.route for c in teams.connector.calls[before:]] == ["member"]
    assert await notes_of(teams, cid) == ["I'll call her back"]


async def test_a_command_that_names_a_colleague_keeps_the_name_in_the_note(teams: TeamsHarness) -> None:
    cid, root = await posted_card(teams)
    await teams.thread_mention(
        root,
        f"<at>Unsilo</at> note {cid} please ask <at>Megan Bowen</at> to call",
        mentions=(("Unsilo", BOT), ("Megan Bowen", "29:1megan")),
    )
    assert await notes_of(teams, cid) == ["please ask Megan Bowen to call"]


async def test_a_channel_post_that_does_not_address_the_bot_is_left_alone(teams: TeamsHarness) -> None:
    """With the app's ChannelMessage.Read.Group permission Teams sends the bot every post in a channel."""
    from tests.teams_support import sample

    post = sample("message.channel.mention.json")  # a new post, mentioning someone else
    post["entities"][0]["mentioned"] = {"id": "29:1megan", "name": "Megan Bowen"}
    post["entities"][0]["text"] = post["text"] = "<at>Megan Bowen</at> claim 1"
    status, _ = await teams.send(post)
    assert status in (200, 201) and teams.connector.calls == []


async def test_the_bot_is_found_by_its_id_even_when_the_entity_has_no_text(teams: TeamsHarness) -> None:
    """A recorded mention (vercel-chat-replay/teams.json) whose entity carries only `mentioned`."""
    import json

    from tests.conftest import reference_dir

    recorded = json.loads((reference_dir() / "teams" / "vercel-chat-replay" / "teams.json").read_text())["mention"]
    recorded["text"] = recorded["text"].replace("Hey", "help")
    await teams.send(recorded)
    assert "Unsilo commands" in card_text(sent_cards(teams)[-1])


# --- item 5: only the configured tenants ------------------------------------------------


async def test_only_the_configured_tenant_may_use_the_app(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running_teams(tmp_path, env={"UNSILO_TEAMS_TENANTS": TENANT}) as h:
        report = await h.container.ingest([make_incoming(source="reviews", external_id="1", text="refund, broken")])
        cid = report.new_ids[0]
        # The recorded invoke comes from another tenant (56653e9d-…): Teams shows the error and keeps the card.
        with caplog.at_level(logging.WARNING):
            status, body = await h.invoke("claim", cid, user="aad-mallory", name="Mallory")
        assert status == 200 and body["statusCode"] == 403 and body["type"] == "application/vnd.microsoft.error"
        assert "another organisation" in body["value"]["message"]
        assert "tenant 56653e9d-2158-46ee-90d7-675c39642038 is not one of the configured tenants" in caplog.text
        # A message from another tenant runs nothing and is not answered.
        post = {**(await _mention(h, f"claim {cid}"))}
        post["channelData"]["tenant"] = {"id": "50612dbb-0237-4969-b378-8d42590f9c00"}
        post["conversation"]["tenantId"] = "50612dbb-0237-4969-b378-8d42590f9c00"
        await h.send(post)
        async with h.container.uow() as uow:
            assert (await uow.conversations.get(cid)).status == "open"  # type: ignore[union-attr]
        assert h.connector.calls == []
        # The configured tenant is served.
        await h.mention(f"claim {cid}", user="aad-alice", name="Alice")
        assert f"You claimed #{cid}" in card_text(sent_cards(h)[-1])


async def _mention(h: TeamsHarness, text: str) -> dict:
    from tests.teams_support import sample

    activity = sample("message.channel.mention.json")
    activity["text"] = f"<at>Chat SDK Demo</at> {text}"
    activity["id"] = "1771290107999"
    activity["conversation"]["id"] = f"{CHANNEL};messageid=1771290107999"
    return activity


async def test_with_no_tenant_configured_any_is_accepted_with_one_warning_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        async with running_teams(tmp_path) as h:
            await h.mention("help")
            assert "Unsilo commands" in card_text(sent_cards(h)[-1])
    warnings = [r.getMessage() for r in caplog.records if "ANY Microsoft 365 tenant" in r.getMessage()]
    assert len(warnings) == 1 and "MicrosoftAppTenantId" in warnings[0] and "UNSILO_TEAMS_TENANTS" in warnings[0]


# --- item 21: the member's email links a Teams user to the same person on Slack -------------


async def test_a_teams_user_is_the_same_person_as_the_slack_user_with_their_email(teams: TeamsHarness) -> None:
    teams.connector.add_member("29:aad-alice", "Alice Example", aad_object_id="aad-alice", email="Alice@Contoso.example")
    async with teams.container.uow() as uow:  # Alice is known from Slack already
        slack_alice = await uow.people.resolve("slack", "UALICE", name="alice", email="alice@contoso.example")
        await uow.commit()
    await teams.mention("mine", user="aad-alice", name="Alice Example")
    async with teams.container.uow() as uow:
        identities = (await uow.session.exec(select(Identity).where(Identity.person_id == slack_alice.id))).all()
    assert {(i.platform, i.user_id) for i in identities} == {("slack", "UALICE"), ("teams", "aad-alice")}
    (lookup,) = teams.connector.calls_to("member")
    assert lookup.member_id.startswith("29:")  # by the Teams user id, in the conversation the message came from

    await teams.mention("mine", user="aad-alice", name="Alice Example")
    assert len(teams.connector.calls_to("member")) == 1  # cached


async def test_a_failed_member_look_up_never_fails_the_command(teams: TeamsHarness) -> None:
    report = await teams.container.ingest([make_incoming(source="reviews", external_id="1", text="refund, broken")])
    cid = report.new_ids[0]
    teams.connector.fail_next("member", status=500)
    await teams.mention(f"claim {cid}", user="aad-bob", name="Bob")
    assert f"You claimed #{cid}" in card_text(sent_cards(teams)[-1])
    async with teams.container.uow() as uow:
        bob = (await uow.session.exec(select(Person).where(Person.name == "Bob"))).one()
    assert bob.email is None


async def test_a_card_click_makes_no_member_look_up(teams: TeamsHarness) -> None:
    report = await teams.container.ingest([make_incoming(source="reviews", external_id="1", text="refund, broken")])
    status, body = await teams.invoke("claim", report.new_ids[0], user="aad-carol", name="Carol")
    assert status == 200 and "Claimed by Carol" in card_text(body["value"])
    assert teams.connector.calls_to("member") == []


async def test_the_directory_reads_again_after_some_hours() -> None:
    from adapters.teams.bot import Directory

    now = [0.0]
    directory = Directory(ttl=3600, clock=lambda: now[0])
    directory._known["aad-1"] = ("a@x.example", 3600.0)
    assert directory.cached("aad-1") == "a@x.example"
    now[0] = 3601.0
    assert directory.cached("aad-1") is None  # the look-up itself is exercised over HTTP above


# --- item 24: names as shown ---------------------------------------------------------------


async def test_bidi_controls_are_stripped_from_a_teams_users_name(teams: TeamsHarness) -> None:
    report = await teams.container.ingest([make_incoming(source="reviews", external_id="1", text="refund, broken")])
    cid = report.new_ids[0]
    _, body = await teams.invoke("claim", cid, user="aad-eve", name="\u202eEve\u202c \u2066Adams\u2069")
    assert "Claimed by Eve Adams" in card_text(body["value"])
    await teams.invoke("note", cid, user="aad-zero", name="\u200b\u200b", **{"note.text": "hi"})
    async with teams.container.uow() as uow:
        nameless = await uow.people.with_identities("teams", "aad-zero")
    assert nameless is not None and nameless[0].name == "aad-zero"  # no name given: known by id until Teams tells more


async def test_a_customer_name_of_invisible_characters_shows_as_no_name(teams: TeamsHarness) -> None:
    await link_support(teams)
    await teams.container.ingest(
        [make_incoming(source="reviews", external_id="1", text="refund, broken", author_name="\u200b\u2060\u200b")]
    )
    await teams.deliver()
    card = teams.connector.calls_to("create")[-1].body["activity"]["attachments"][0]["content"]
    assert "from (no name)" in card_text(card)
