"""The verb table's contracts: every verb's button works on every platform in every status it shows in,
every transition has a rule for who may do it, and a text command is the same command as its button.

The live tests click each button of each card through the real app (signed Slack requests, Teams
invokes built from the recorded activities in `../shared/reference/teams/`), filling each verb's
form the way a person would, and check that its command ran (the conversation's log grew).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import update
from sqlmodel import col

from adapters.slack import render as slack_render
from adapters.teams import manifest as teams_manifest
from adapters.teams import render as teams_render
from bot import codec, policy, verbs, views
from bot import commands as c
from bot.domain import DEFAULT_OUTCOMES, TRANSITIONS, Status
from bot.ingest import make_incoming
from bot.textcommands import help_text, parse
from storage.models import Conversation, Reply
from tests.slack_support import running_slack
from tests.teams_support import TEAMS_CONFIG, running_teams

ROOT = Path(__file__).resolve().parents[1]
ACTOR = c.Actor("slack", "U1", "Ann")


TYPED = {"person": "dana", "into": "into #9", "voice": "2"}  # Ask: a name from the card (see `_suggest`); merge, split


CHOSEN = {"outcomes": "answered", "departments": "triage"}  # a choice input's pick: the conversations are support's


def sample_fields(verb: verbs.Verb) -> dict[str, str]:
    """What a person would type or choose in each of a verb's inputs."""
    return {
        i.name: CHOSEN.get(i.choices, "") if i.kind == "choice" else TYPED.get(i.name, f"some {i.name} for {verb.name}")
        for i in verb.inputs
    }


async def _suggest(container: Any, cid: int, platform: str) -> None:
    """Dana (legal, an account on `platform`) suggested on the card, as ingest finds her after she resolved similar ones."""
    async with container.uow() as uow:
        dana = await policy.identify(uow, c.Actor(platform, "UDANA" if platform == "slack" else "aad-dana", "Dana"))
        suggested = [{"person_id": dana.id, "name": "Dana", "departments": ["legal"], "resolved": 2, "replied": 0}]
        await uow.session.exec(update(Conversation).where(col(Conversation.id) == cid).values(suggested=suggested))
        await uow.commit()


def typed_line(verb: verbs.Verb, conversation_id: int, fields: dict[str, str]) -> str:
    return " ".join([verb.name, f"#{conversation_id}", *(fields[i.name] for i in verb.inputs)])


# --- the table itself --------------------------------------------------------------


def test_every_conversation_verb_typed_as_text_is_the_same_command_as_its_button() -> None:
    checked = 0
    for verb in verbs.TABLE:
        if verb.build is None:
            continue
        fields = sample_fields(verb)
        button = views.button(verb, 42)
        from_button = codec.to_command(codec.encode(button), ACTOR, fields=fields)
        from_text = parse(typed_line(verb, 42, fields), ACTOR)
        assert from_text == from_button, verb.name
        checked += 1
    assert checked >= 10


def test_a_required_input_left_out_of_a_text_command_is_named_with_the_usage() -> None:
    for verb in verbs.TABLE:
        required = [i for i in verb.inputs if i.required]
        if verb.build is None or not required:
            continue
        with pytest.raises(Exception) as refused:
            parse(f"{verb.name} #42", ACTOR, prefix="@Unsilo")
        assert f"{verb.name} needs {required[0].missing}" in str(refused.value)
        assert f"usage: `@Unsilo {verb.syntax}`" in str(refused.value)


def test_every_transition_has_a_rule_for_who_may_do_it_and_buttons_show_only_where_it_is_allowed() -> None:
    ruled = policy.ANYONE | policy.OWNER_OR_MANAGER | policy.MANAGER | policy.OWNER_MEMBER_OR_MANAGER
    assert set(TRANSITIONS) <= ruled, set(TRANSITIONS) - ruled
    for verb in verbs.TABLE:
        if verb.name in TRANSITIONS:
            assert set(verb.on) <= set(TRANSITIONS[verb.name]), f"{verb.name} offered where its transition refuses"


def test_help_lists_every_verb_and_every_verb_has_a_way_in() -> None:
    text = help_text("/unsilo")
    for verb in verbs.TABLE:
        assert f"`/unsilo {verb.syntax}`" in text
        assert verb.name == "help" or verb.build is not None or verb.parse is not None, verb.name
        if verb.on or verb.on_reply:
            assert verb.label and verb.build is not None


def test_the_teams_manifest_lists_the_tables_commands() -> None:
    checked_in = teams_manifest.load_manifest()
    assert checked_in["bots"][0]["commandLists"] == teams_manifest.command_lists()  # regenerate: with_commands()
    for where in ("channel", "personal"):
        assert 0 < len(verbs.menu(where)) <= teams_manifest.MAX_MENU_COMMANDS


def test_the_slack_manifests_usage_hint_is_the_tables() -> None:
    for name in ("slack.yaml", "slack-socket.yaml"):
        manifest = yaml.safe_load((ROOT / "manifest" / name).read_text())
        (command,) = manifest["features"]["slash_commands"]
        assert command["usage_hint"] == verbs.hint(), name


STATES = [(status, None) for status in Status] + [
    (Status.REPLIED, "pending_approval"),
    (Status.REPLIED, "recorded"),
    (Status.REPLIED, "posted"),
]


def _conversation(status: Status, reply_status: str | None) -> tuple[Conversation, Reply | None]:
    conversation = Conversation(id=42, source="forum", external_id="x", status=status.value, url="https://forum.example/t/1")
    reply = Reply(conversation_id=42, text="hello", status=reply_status) if reply_status else None
    return conversation, reply


def test_every_button_of_every_card_renders_on_every_platform_none_dropped() -> None:
    for status, reply_status in STATES:
        conversation, reply = _conversation(status, reply_status)
        buttons = views.buttons_for(conversation, reply)
        card = views.card_for(conversation, owner="Bob", departments=["support"], reply=reply)
        slack_message = slack_render.card_message(card)
        slack_values = [
            e.get("value") or "" for b in slack_message["blocks"] if b["type"] == "actions" for e in b["elements"] if "value" in e
        ]
        assert {codec.decode(v)[0] for v in slack_values} == {b.verb for b in buttons}, (status, reply_status)
        teams_card = teams_render.card(card, outcomes=DEFAULT_OUTCOMES, departments=("triage", "support"))
        actions = teams_card["actions"]
        assert len(actions) == len(buttons), (status, reply_status)  # the rest behind the overflow, none dropped
        assert sum(1 for a in actions if a.get("mode") != "secondary") <= teams_render.MAX_PRIMARY_ACTIONS


# --- clicking every button through the real apps ------------------------------------------

SENSITIVE_RULE = """
[[rules]]
name = "legal threats"
departments = ["support"]
any = ["lawyer"]
sensitive = true
"""


async def _in_state(
    container: Any,
    act: Callable[[c.Command], Awaitable[Any]],
    owner: c.Actor,
    manager: c.Actor,
    status: Status,
    reply_status: str | None,
) -> int:
    """A new conversation for support, brought to `status` (and a reply in `reply_status`) by `owner`."""
    text = "my lawyer says the refund is broken" if reply_status == "pending_approval" else "refund please, it is broken"
    report = await container.ingest([make_incoming(source="reviews", external_id=uuid.uuid4().hex, text=text)])
    cid = report.new_ids[0]
    await _suggest(container, cid, owner.platform)
    if status is Status.OPEN:
        return cid
    if status is Status.DISMISSED:
        await act(c.Dismiss(cid, manager, "spam"))
        return cid
    await act(c.Claim(cid, owner))
    if status is Status.REPLIED:
        await act(c.ReplyToCustomer(cid, owner, "we are on it"))
    if reply_status == "posted":
        await act(c.MarkPosted(cid, owner))
    if status is Status.RESOLVED:
        await act(c.Resolve(cid, owner, "answered"))
    return cid


def _expected_refusal(container: Any, verb: str, status: Status, reply_status: str | None) -> str | None:
    """The buttons a card offers whose command is refused with a reason there: a reply to an unclaimed
    conversation where the config says to claim first, a second reply while one waits for approval."""
    if verb == "reply" and status is Status.OPEN and container.config.require_claim_to_reply:
        return "claim it first"
    if verb == "reply" and reply_status == "pending_approval":
        return "waiting for approval"
    return None


async def _log_size(container: Any, cid: int) -> int:
    async with container.uow() as uow:
        return len(await uow.events.for_conversation(cid))


async def _card(container: Any, cid: int, actor: c.Actor) -> views.Card:
    shown = await container.bus.handle(c.Show(cid, actor))
    assert shown.card is not None
    return shown.card


def _slack_values(form: dict[str, Any], verb: verbs.Verb) -> dict[str, dict[str, Any]]:
    """The state Slack sends for a submitted form, with each input filled in."""
    values: dict[str, dict[str, Any]] = {}
    for block in form["blocks"]:
        element = block["element"]
        wanted = next(i for i in verb.inputs if i.name == block["block_id"])
        if element["type"] == "static_select":
            values[block["block_id"]] = {
                element["action_id"]: {"type": "static_select", "selected_option": element["options"][0]}
            }
        else:
            typed = sample_fields(verb)[wanted.name]
            values[block["block_id"]] = {element["action_id"]: {"type": "plain_text_input", "value": typed}}
    return values


async def test_every_slack_card_button_runs_its_command(tmp_path: Path, database_url: str) -> None:
    """Owner UALICE brings each conversation to its state; the support manager clicks every button of its card."""
    async with running_slack(tmp_path, database_url=database_url) as slack:
        owner, manager = c.Actor("slack", "UALICE", "alice"), c.Actor("slack", "UMANAGER", "manager")
        clicked: set[tuple[str, str, str | None]] = set()
        forms = 0
        for status, reply_status in STATES:
            card = await _card(
                slack.container,
                await _in_state(slack.container, slack.container.bus.handle, owner, manager, status, reply_status),
                manager,
            )
            for shown in card.buttons:
                if shown.verb == codec.OPEN:
                    continue
                cid = await _in_state(slack.container, slack.container.bus.handle, owner, manager, status, reply_status)
                before = await _log_size(slack.container, cid)
                button = views.Button(shown.label, shown.verb, cid, shown.style, inputs=shown.inputs)
                opened = len(slack.slack.calls_to("views.open"))
                status_code, body, _ = await slack.click(slack_render.action_id(button), codec.encode(button), user="UMANAGER")
                assert status_code == 200, (shown.verb, body)
                verb = codec.verb_of(shown.verb)
                if verb.asks:
                    form = (await slack.slack.wait_for("views.open", count=opened + 1))[-1].args["view"]
                    status_code, body, _ = await slack.submit(form, _slack_values(form, verb), user="UMANAGER")
                    forms += 1
                    refusal = _expected_refusal(slack.container, verb.name, status, reply_status)
                    if refusal:
                        assert refusal in json.loads(body)["errors"]["text"]
                        continue
                    assert (status_code, body) == (200, ""), (shown.verb, body)  # closed, no error shown in the form
                for _ in range(200):
                    if await _log_size(slack.container, cid) > before:
                        break
                    await asyncio.sleep(0.02)
                assert await _log_size(slack.container, cid) > before, f"{shown.verb} on a {status} card did nothing"
                clicked.add((shown.verb, status.value, reply_status))
        assert {v for v, _, _ in clicked} == {v.name for v in verbs.on_cards()}
        assert forms >= 5


async def test_every_teams_card_button_runs_its_command(tmp_path: Path, database_url: str) -> None:
    """The same on Teams: each card's Action.Execute (or the one inside its form) sent back as Teams sends it."""
    async with running_teams(tmp_path, database_url=database_url, config=TEAMS_CONFIG + SENSITIVE_RULE) as teams:
        owner, manager = c.Actor("teams", "aad-alice", "Alice"), c.Actor("teams", "aad-manager", "Manager")
        clicked: set[str] = set()
        for status, reply_status in STATES:
            first = await _in_state(teams.container, teams.container.bus.handle, owner, manager, status, reply_status)
            for shown in (await _card(teams.container, first, manager)).buttons:
                if shown.verb == codec.OPEN:
                    continue
                cid = await _in_state(teams.container, teams.container.bus.handle, owner, manager, status, reply_status)
                card_json = teams_render.card(
                    await _card(teams.container, cid, manager),
                    outcomes=teams.container.config.outcomes,
                    departments=teams.container.config.department_names(),
                )
                before = await _log_size(teams.container, cid)
                verb = codec.verb_of(shown.verb)
                inputs = {teams_render.input_id(verb.name, name): value for name, value in sample_fields(verb).items()}
                code, answer = await teams.click(
                    card_json, verb.name, f"17000{cid:08d}", user="aad-manager", name="Manager", **inputs
                )
                assert code == 200 and answer["statusCode"] == 200, (verb.name, answer)
                assert answer["type"] == "application/vnd.microsoft.card.adaptive", (verb.name, json.dumps(answer)[:300])
                clicked.add(verb.name)
                refusal = _expected_refusal(teams.container, verb.name, status, reply_status)
                if refusal:
                    assert refusal in json.dumps(answer["value"])
                    continue
                assert await _log_size(teams.container, cid) > before, f"{verb.name} on a {status} card did nothing"
                clicked.add(verb.name)
        assert clicked == {v.name for v in verbs.on_cards()}
