""" "Not for us" and closing the loop, through the real Slack and Teams apps (stand-ins for both), on SQLite
and PostgreSQL.

Support's cards are in a Slack channel (C0SUPPORT) and a Teams channel; ops has its own on both. Sam
(support, on Slack) clicks "Not for us" on a Slack card, the support manager (on Teams) on a Teams card:
ops's channels get both cards, every old copy says where it went and offers nothing to click, the log
names the rule that had routed them, and support's digest shows that rule's conversations rerouted away.
Then: Sam and Carlos (Teams) send posts in; resolving them tells each on their own platform, once, and
not after `notify off`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from adapters.slack import render as slack_render
from bot import codec, views
from bot import commands as c
from bot.domain import Forbidden, InvalidInput
from bot.ingest import make_incoming
from bot.textcommands import parse
from tests.slack_support import SlackHarness
from tests.teams_support import CHANNEL, TEAMS_CONFIG, TeamsHarness, running_teams
from tests.test_slack_render import check_message
from tests.test_teams_render import check_card, runs_text

OPS_TEAMS = "19:0a5e1b2c3d4e5f60718293a4b5c6d7e8@thread.tacv2"
CONFIG = (
    TEAMS_CONFIG
    + """
[departments.ops]
channels = ["slack:C0OPS"]

[people.sam]
name = "Sam"
slack = "USAM"
department = "support"

[people.olga]
name = "Olga"
slack = "UOLGA"
department = "ops"

[people.carlos]
name = "Carlos"
teams = "aad-carlos"
department = "ops"
"""
)
SAM = c.Actor("slack", "USAM", "Sam")
OLGA = c.Actor("slack", "UOLGA", "Olga")
MANAGER = c.Actor("teams", "aad-manager", "Maria")


async def _ingest(h: TeamsHarness, key: str, text: str) -> int:
    item = make_incoming(source="reviews", external_id=key, text=text, url=f"https://reviews.example.com/r/{key}")
    return (await h.container.ingest([item])).new_ids[0]


async def _copies(h: TeamsHarness, cid: int) -> dict[tuple[str, str], str]:
    """(platform, channel) -> message id of each posted copy of the conversation's card."""
    async with h.container.uow() as uow:
        return {(p.platform, p.channel_id): p.message_id for p in await uow.postings.for_conversation(cid)}


def _slack_verbs(message: dict[str, Any]) -> set[str]:
    return {
        codec.decode(e["value"])[0] for b in message["blocks"] if b["type"] == "actions" for e in b["elements"] if e.get("value")
    }


def _teams_executes(content: dict[str, Any]) -> list[str]:
    found: list[str] = []

    def walk(actions: list[dict[str, Any]]) -> None:
        for action in actions:
            if action["type"] == "Action.Execute":
                found.append(action["verb"])
            walk((action.get("card") or {}).get("actions") or [])

    walk(content.get("actions") or [])
    return found


async def _events(h: TeamsHarness, cid: int, kind: str) -> list[Any]:
    async with h.container.uow() as uow:
        return [e for e in await uow.events.for_conversation(cid) if e.kind == kind]


def _teams_dms(h: TeamsHarness, chats_before: int, *, to: str) -> dict[str, Any]:
    """The one 1:1 chat Unsilo opened since `chats_before` (with `to`, only) and its schema-valid card."""
    chats = [x for x in h.connector.calls_to("create")[chats_before:] if x.body.get("members")]
    assert [x.body["members"][0]["id"] for x in chats] == [to]
    (sent,) = [s for s in h.connector.calls_to("send") if s.conversation_id == chats[0].response["id"]]
    content: dict[str, Any] = sent.body["attachments"][0]["content"]
    check_card(content)
    return content


async def _until(check: Any, *, rounds: int = 250) -> None:
    for _ in range(rounds):  # a Slack click's work runs after its ack
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("never happened")


def test_the_text_command_reads_reroute_to() -> None:
    assert parse("reroute #12 to ops", SAM) == c.Reroute(12, SAM, "ops")
    assert parse("reroute #12 ops", SAM) == c.Reroute(12, SAM, "ops")
    with pytest.raises(InvalidInput, match="reroute needs a department"):
        parse("reroute #12", SAM)
    assert parse("notify off", SAM) == c.SetNotify(SAM, on=False)


async def test_not_for_us_moves_the_card_updates_every_old_copy_and_counts_against_the_rule(
    tmp_path: Path, database_url: str
) -> None:
    async with running_teams(tmp_path, with_slack=True, config=CONFIG, database_url=database_url) as h:
        assert h.slack is not None
        for department, channel in (("support", CHANNEL), ("ops", OPS_TEAMS)):
            status, _ = await h.mention(f"link {department}", user="aad-admin", channel=channel)
            assert status in (200, 201)
        first = await _ingest(h, "one", "refund please, it is broken")  # the rule "support" routes both
        second = await _ingest(h, "two", "my blender arrived broken")
        await h.container.bus.handle(c.Claim(second, MANAGER))
        await h.deliver()
        old = {cid: await _copies(h, cid) for cid in (first, second)}
        assert all(set(o) == {("slack", "C0SUPPORT"), ("teams", CHANNEL)} for o in old.values())

        # Someone of another department may not move support's work away; a department that doesn't exist is named.
        with pytest.raises(Forbidden, match=f"only #{first}'s owner, a member or a manager of support can reroute it"):
            await h.container.bus.handle(c.Reroute(first, OLGA, "ops"))
        with pytest.raises(InvalidInput, match="no department 'billing'; departments: ops, support, triage"):
            await h.container.bus.handle(c.Reroute(first, SAM, "billing"))

        # Sam clicks "Not for us" on the Slack card: a form with the departments to choose from.
        shown = await h.container.bus.handle(c.Show(first, SAM))
        assert shown.card is not None
        button = next(b for b in shown.card.buttons if b.verb == "reroute")
        assert button.label == "Not for us"
        slack = SlackHarness(container=h.container, slack=h.slack, url=h.url, http=h.http)
        opened = len(h.slack.calls_to("views.open"))
        status, _, _ = await slack.click(slack_render.action_id(button), codec.encode(button), user="USAM")
        assert status == 200
        form = (await h.slack.wait_for("views.open", count=opened + 1))[-1].args["view"]
        select = form["blocks"][0]["element"]
        assert [o["value"] for o in select["options"]] == ["triage", "support", "ops"]
        ops = next(o for o in select["options"] if o["value"] == "ops")
        values = {form["blocks"][0]["block_id"]: {select["action_id"]: {"type": "static_select", "selected_option": ops}}}
        status, body, _ = await slack.submit(form, values, user="USAM")
        assert (status, body) == (200, "")

        async def moved() -> bool:
            return bool(await _events(h, first, "rerouted"))

        await _until(moved)

        # The manager does the same on the Teams card of the one she had claimed.
        from adapters.teams import render as teams_render

        card = await h.container.bus.handle(c.Show(second, MANAGER))
        assert card.card is not None
        card_json = teams_render.card(card.card, outcomes=h.container.config.outcomes, departments=("triage", "support", "ops"))
        typed = {teams_render.input_id("reroute", "department"): "ops"}
        code, answer = await h.click(card_json, "reroute", old[second][("teams", CHANNEL)], user="aad-manager", **typed)
        assert code == 200 and answer["statusCode"] == 200
        assert "rerouted from support by Maria" in json.dumps(answer["value"])  # its outbox update follows
        with pytest.raises(InvalidInput, match=f"#{second} is already in ops"):
            await h.container.bus.handle(c.Reroute(second, OLGA, "ops"))  # of ops now: she may move it
        await h.deliver()

        for cid in (first, second):
            # Ops's channels got the card, in the queue again (unclaimed, with its Claim button).
            now = await _copies(h, cid)
            assert set(now) == {("slack", "C0SUPPORT"), ("teams", CHANNEL), ("slack", "C0OPS"), ("teams", OPS_TEAMS)}
            new_slack = h.slack.message("C0OPS", now[("slack", "C0OPS")])
            assert new_slack is not None and "claim" in _slack_verbs(new_slack)
            check_message({"text": new_slack["text"], "blocks": new_slack["blocks"]})
            new_teams = h.connector.activity(OPS_TEAMS, now[("teams", OPS_TEAMS)])
            assert new_teams is not None
            content = new_teams["attachments"][0]["content"]
            check_card(content)
            assert "claim" in _teams_executes(content) and "Departments: ops" in runs_text(content)
            # Every old copy was updated in place: it says where it went, and there is nothing to click but the link.
            old_slack = h.slack.message("C0SUPPORT", old[cid][("slack", "C0SUPPORT")])
            assert old_slack is not None
            check_message({"text": old_slack["text"], "blocks": old_slack["blocks"]})
            said = json.dumps(old_slack["blocks"], ensure_ascii=False)
            assert f"{views.MOVED} ops" in said or f"{views.MOVED}* ops" in said, said[:600]
            assert _slack_verbs(old_slack) <= {codec.OPEN}
            old_teams = h.connector.activity(CHANNEL, old[cid][("teams", CHANNEL)])
            assert old_teams is not None
            old_content = old_teams["attachments"][0]["content"]
            check_card(old_content)
            assert _teams_executes(old_content) == [] and views.MOVED in runs_text(old_content)
            # The log says who moved it, from where, and which rule had sent it there.
            (event,) = await _events(h, cid, "rerouted")
            assert (event.data["from"], event.data["to"], event.data["rules"]) == (["support"], "ops", ["support"])
        assert h.slack.calls_to("chat.update") and h.connector.calls_to("update")

        history = (await h.container.bus.handle(c.Show(first, SAM))).history
        assert [(x.actor, x.kind, x.detail) for x in history if x.event == "rerouted"] == [
            ("Sam", "rerouted", "from support to ops")
        ]

        # Support's digest: its rule sent 2 there, and both were not for it.
        digest = await h.container.bus.handle(c.ShowDigest(MANAGER, department="support", days=1))
        assert digest.notice is not None
        assert "Routing rules: support routed 2, 2 rerouted away (100%)" in digest.notice.lines


async def test_resolving_tells_who_sent_it_in_on_their_platform_unless_they_said_notify_off(
    tmp_path: Path, database_url: str
) -> None:
    async with running_teams(tmp_path, with_slack=True, config=CONFIG, database_url=database_url) as h:
        assert h.slack is not None
        status, _ = await h.mention("link support", user="aad-admin")  # Unsilo is in a Teams channel: it can write there
        assert status in (200, 201)
        slack = SlackHarness(container=h.container, slack=h.slack, url=h.url, http=h.http)
        status, said, _ = await slack.command("report https://forum.example/t/9 My parcel never came", user="USAM")
        assert status == 200 and "Thanks! That post is now #" in said, said
        from_slack = int(said.split("#")[1].split()[0].rstrip(".!"))
        status, _ = await h.send_to_unsilo(link="https://forum.example/t/10", user="aad-carlos", name="Carlos")
        assert status == 200
        async with h.container.uow() as uow:
            from_teams = max(e.conversation_id for e in await _reported(uow) if e.data.get("source") == "teams-report")

        chats_before = len(h.connector.calls_to("create"))
        for cid in (from_slack, from_teams):
            await h.container.bus.handle(c.Claim(cid, MANAGER))
            result = await h.container.bus.handle(c.Resolve(cid, MANAGER, "fixed", "refund sent"))
            assert "(who sent it in) will be told" in result.text
        await h.deliver()

        # Sam: a direct message on Slack.
        dms = [x for x in h.slack.calls_to("chat.postMessage") if x.args.get("channel") == "USAM"]
        assert len(dms) == 1
        text = json.dumps(dms[0].args, ensure_ascii=False)
        assert f"#{from_slack}, which you sent in, was resolved by Maria: fixed" in text
        check_message({"text": dms[0].args["text"], "blocks": dms[0].args["blocks"]})
        # Carlos: a 1:1 chat on Teams.
        content = _teams_dms(h, chats_before, to="aad-carlos")
        assert f"#{from_teams}, which you sent in, was resolved by Maria: fixed" in runs_text(content)
        history = (await h.container.bus.handle(c.Show(from_teams, MANAGER))).history
        assert [(x.kind, x.detail) for x in history if x.event == "sender_told"] == [("told who sent it in", "Carlos")]

        # Carlos says `notify off` on Teams; his next post is resolved without a word to him.
        status, _ = await h.mention("notify off", user="aad-carlos", name="Carlos")
        assert status in (200, 201)
        async with h.container.uow() as uow:
            carlos = await uow.people.by_identity("teams", "aad-carlos")
            assert carlos is not None and carlos.notify is False
        status, _ = await h.send_to_unsilo(
            link="https://forum.example/t/11", user="aad-carlos", name="Carlos", message_id="1611060744999", activity_id="f:2"
        )
        assert status == 200
        async with h.container.uow() as uow:
            later = max(e.conversation_id for e in await _reported(uow) if e.actor_name == "Carlos")
        await h.container.bus.handle(c.Claim(later, MANAGER))
        result = await h.container.bus.handle(c.Resolve(later, MANAGER, "answered"))
        assert "will be told" not in result.text
        # Sam resolving his own post is not told either.
        status, said, _ = await slack.command("report https://forum.example/t/12 Wrong size again", user="USAM")
        own = int(said.split("#")[1].split()[0].rstrip(".!"))
        await h.container.bus.handle(c.Claim(own, SAM))
        assert "will be told" not in (await h.container.bus.handle(c.Resolve(own, SAM, "fixed"))).text
        sends = len(h.connector.calls_to("send")) + len(h.connector.calls_to("create"))
        await h.deliver()
        assert len(h.connector.calls_to("send")) + len(h.connector.calls_to("create")) == sends
        assert len([x for x in h.slack.calls_to("chat.postMessage") if x.args.get("channel") == "USAM"]) == 1


async def _reported(uow: Any) -> list[Any]:
    from sqlmodel import select

    from storage.models import Event

    return list((await uow.session.exec(select(Event).where(Event.kind == "reported"))).all())


async def test_merged_conversations_say_where_they_went_and_their_senders_hear_how_it_ended(
    tmp_path: Path, database_url: str
) -> None:
    async with running_teams(tmp_path, with_slack=True, config=CONFIG, database_url=database_url) as h:
        assert h.slack is not None
        status, _ = await h.mention("link support", user="aad-admin")
        assert status in (200, 201)
        slack = SlackHarness(container=h.container, slack=h.slack, url=h.url, http=h.http)

        async def report(link: str, text: str) -> int:
            status, said, _ = await slack.command(f"report {link} {text}", user="USAM")
            assert status == 200 and "Thanks! That post is now #" in said, said
            return int(said.split("#")[1].split()[0].rstrip(".!"))

        async def sent_to_unsilo(user: str, name: str, message_id: str) -> int:
            status, _ = await h.send_to_unsilo(
                department="support", link=f"https://forum.example/t/{message_id}", user=user, name=name,
                message_id=message_id, activity_id=f"f:{message_id}",
            )  # fmt: skip
            assert status == 200
            async with h.container.uow() as uow:
                return max(e.conversation_id for e in await _reported(uow) if e.actor_name == name)

        first = await report("https://forum.example/t/20", "My blender arrived broken")  # #A, by Sam on Slack
        from_teams = await sent_to_unsilo("aad-carlos", "Carlos", "1611060745001")  # #B, by Carlos on Teams
        again = await report("https://forum.example/t/21", "Blender broken on arrival, refund?")  # Sam once more
        by_resolver = await sent_to_unsilo("aad-manager", "Maria", "1611060745002")  # the one who resolves it
        assert len({first, from_teams, again, by_resolver}) == 4
        await h.deliver()
        old = await _copies(h, from_teams)
        assert set(old) == {("slack", "C0SUPPORT"), ("teams", CHANNEL)}
        for cid in (from_teams, again, by_resolver):
            merged = await h.container.bus.handle(parse(f"merge #{cid} into #{first}", MANAGER))
            assert merged.text.startswith(f"#{cid} is now a voice of #{first}")
        await h.deliver()

        # #B's cards, on both platforms, say where it went and offer nothing but the link to the original post.
        old_slack = h.slack.message("C0SUPPORT", old[("slack", "C0SUPPORT")])
        assert old_slack is not None
        check_message({"text": old_slack["text"], "blocks": old_slack["blocks"]})
        said = json.dumps(old_slack["blocks"], ensure_ascii=False)
        assert f"{views.MERGED_INTO} #{first}" in said or f"{views.MERGED_INTO}* #{first}" in said, said[:600]
        assert _slack_verbs(old_slack) <= {codec.OPEN}
        old_teams = h.connector.activity(CHANNEL, old[("teams", CHANNEL)])
        assert old_teams is not None
        content = old_teams["attachments"][0]["content"]
        check_card(content)
        assert _teams_executes(content) == [] and f"{views.MERGED_INTO} #{first}" in runs_text(content)
        shown = await h.container.bus.handle(c.Show(from_teams, SAM))
        assert shown.card is not None and shown.card.merged_into == first
        assert [b for b in shown.card.buttons if not b.url] == []
        target = await h.container.bus.handle(c.Show(first, SAM))
        assert target.card is not None and target.card.merged_into is None and target.card.voice_count == 3
        assert "claim" in {b.verb for b in target.card.buttons}

        # Resolving #A tells Sam (once, on Slack) and Carlos (on Teams); not Maria, who resolved it.
        await h.container.bus.handle(c.Claim(first, MANAGER))
        result = await h.container.bus.handle(c.Resolve(first, MANAGER, "fixed", "replaced"))
        assert "; Sam, Carlos (who sent it in) will be told" in result.text or "; Carlos, Sam (who sent it in)" in result.text
        chats_before = len(h.connector.calls_to("create"))
        await h.deliver()
        dms = [x for x in h.slack.calls_to("chat.postMessage") if x.args.get("channel") == "USAM"]
        assert len(dms) == 1
        check_message({"text": dms[0].args["text"], "blocks": dms[0].args["blocks"]})
        assert f"#{first}, which you sent in, was resolved by Maria: fixed" in json.dumps(dms[0].args, ensure_ascii=False)
        content = _teams_dms(h, chats_before, to="aad-carlos")
        assert f"#{first}, which you sent in as #{from_teams}, was resolved by Maria: fixed" in runs_text(content)
        told = [e.data["name"] for e in await _events(h, first, "sender_told")]
        assert sorted(told) == ["Carlos", "Sam"]
