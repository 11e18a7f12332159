"""Every Slack payload in ../shared/reference/slack, replayed to the running service as Slack sends it.

One test per file (per request inside a `vercel-chat-replay/*.json` bundle), so a new file is
picked up by itself. Each is signed as Slack signs, sent in Slack's content type (events as
JSON, interactive payloads as the form field `payload=`, slash commands form-encoded), from
the workspace the stand-in says the bot is installed in (the sample's own `team_id`). A
`response_url` is pointed at the stand-in. What the person would see is compared with
`EXPECTED`; a file not listed there must at least never get a 500.

Rewritten before sending, so that the request reaches our listeners as it would in our app:
slash commands are sent as `/unsilo` (Slack only sends us our own command), a message
shortcut's `callback_id` becomes `unsilo_report`. Everything else is sent as recorded.
`blockkit/` holds views, not requests: each is validated with slack_sdk's models, and so is
every view of Unsilo of the same kind (`test_our_views_validate_like_the_reference_view_of_their_kind`).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from slack_bolt.request.internals import extract_team_id

from tests import slack_support
from tests.conftest import REFERENCE, reference_dir
from tests.slack_support import SlackHarness, running_slack

SLACK = REFERENCE / "slack"
EVENT_TYPES = ("event_callback", "url_verification", "app_rate_limited")
EVENT_SHAPES = ("AppMentionPayload", "MessagePayload")


def _cases() -> list[Any]:
    """(name, payload or raw body) for every request in the reference folder."""
    if not SLACK.is_dir():
        return [pytest.param(None, None, id="reference-missing")]
    cases: list[Any] = []
    for path in sorted(SLACK.glob("*.txt")) + sorted(SLACK.glob("*.json")) + sorted(SLACK.glob("shapes/*.json")):
        name = str(path.relative_to(SLACK))
        cases.append(pytest.param(name, path.read_text() if path.suffix == ".txt" else json.loads(path.read_text()), id=name))
    for path in sorted(SLACK.glob("vercel-chat-replay/*.json")):
        for key, value in json.loads(path.read_text()).items():
            if isinstance(value, dict) and ("type" in value or "command" in value):
                name = f"{path.relative_to(SLACK)}:{key}"
                cases.append(pytest.param(name, value, id=name))
    return cases


def _views() -> list[Any]:
    if not SLACK.is_dir():
        return [pytest.param(None, id="reference-missing")]
    return [pytest.param(str(p.relative_to(SLACK)), id=str(p.relative_to(SLACK))) for p in sorted(SLACK.glob("blockkit/*.json"))]


@pytest.mark.parametrize("name", _views())
def test_our_views_validate_like_the_reference_view_of_their_kind(name: str | None) -> None:
    """`blockkit/` holds views, not requests: each is checked by slack_sdk's own models, and so is every
    view of Unsilo of the same kind (modals, the App Home tab)."""
    from slack_sdk.models.views import View

    from adapters.slack import render
    from bot.views import Result
    from tests.cards import make_card

    reference_dir()
    assert name is not None
    reference = json.loads((SLACK / name).read_text())
    View(**reference).validate_json()
    if reference["type"] == "modal":
        ours = [
            slack_support.text_modal(
                verb="reply", conversation_id=7, title="Reply to the customer", label="Your answer", submit="Send reply"
            ),
            slack_support.resolve_modal(conversation_id=7, outcomes=("answered", "fixed")),
            render.report_modal(
                departments=["legal", "support"], text="a <b>post</b> & more", link="", channel="C1", message_ts="1.2"
            ),
        ]
    else:
        card = make_card()
        ours = [
            render.home_view(
                mine=Result("", cards=(card,)),
                queue=Result("", counts={"support": 1}, cards=(card,)),
                recent=Result("", cards=(card,)),
            )
        ]
    for view in ours:
        assert view["type"] == reference["type"]
        View(**view).validate_json()


def _kind(name: str, payload: Any) -> str:
    if isinstance(payload, str) or "command" in payload:
        return "command"
    if payload.get("type") in EVENT_TYPES or any(shape in name for shape in EVENT_SHAPES):
        return "event"
    return "interactive"


def _team(kind: str, payload: Any) -> str:
    """The workspace the sample comes from, as Bolt reads it (the installation's)."""
    if kind == "command":
        fields = dict(parse_qsl(payload)) if isinstance(payload, str) else payload
        return str(fields.get("team_id") or "")
    return str(extract_team_id(payload) or "")


def _body(kind: str, payload: Any, response_url: str) -> tuple[bytes, str]:
    if kind == "command":
        fields = dict(parse_qsl(payload)) if isinstance(payload, str) else {k: str(v) for k, v in payload.items()}
        fields.update(command="/unsilo", response_url=response_url)
        return urlencode(fields).encode(), "application/x-www-form-urlencoded"
    if kind == "event":
        return json.dumps(payload).encode(), "application/json"
    payload = json.loads(json.dumps(payload))
    if payload.get("response_url"):
        payload["response_url"] = response_url
    for entry in payload.get("response_urls") or []:
        if isinstance(entry, dict) and entry.get("response_url"):
            entry["response_url"] = response_url
    if payload.get("type") == "message_action":
        payload["callback_id"] = "unsilo_report"
    return urlencode({"payload": json.dumps(payload)}).encode(), "application/x-www-form-urlencoded"


async def _seen(h: SlackHarness, status: int, body: str, response_url: str) -> dict[str, Any]:
    """What the person (or the channel, or the operator) sees after the request."""
    await asyncio.sleep(0.3)
    async with h.container.uow() as uow:
        from sqlmodel import func, select

        from storage.models import Conversation, Note

        notes = (await uow.session.exec(select(func.count()).select_from(Note))).one()
        conversations = (await uow.session.exec(select(func.count()).select_from(Conversation))).one()
    seen: dict[str, Any] = {"status": status}
    if body:
        seen["ack"] = body[:60]
    answers = h.slack.answers(response_url)
    if answers:
        seen["answer"] = answers[-1][:60]
    views = [c.args["view"].get("callback_id") for c in h.slack.calls_to("views.open")]
    if views:
        seen["modal"] = views
    if h.slack.ephemeral:
        seen["ephemeral"] = [e["text"][:60] for e in h.slack.ephemeral]
    posted = [c.args.get("text", "")[:60] for c in h.slack.calls_to("chat.postMessage")]
    if posted:
        seen["posted"] = posted
    if notes or conversations:
        seen["stored"] = {"notes": notes, "conversations": conversations}
    state = h.container.health.get("slack").state
    if state not in ("ok", "enabled", "starting"):
        seen["health"] = state
    return seen


NOT_OURS = (
    "This Slack workspace is not the one Unsilo is installed in, so Unsilo can't act here. "
    "Ask your Unsilo admin which workspace to use."
)
NOTHING = {"status": 200}
UNHANDLED = {"status": 404, "ack": '{"error": "unhandled request"}'}  # Bolt: no listener (not ours)

EXPECTED: dict[str, dict[str, Any]] = {
    "slash_command.form-urlencoded.txt": {"status": 200, "answer": "unknown command `hi`; try `/unsilo help`"},
    "slash_command.with_args.recorded.parsed.json": {"status": 200, "answer": "unknown command `some`; try `/unsilo help`"},
    "vercel-chat-replay/slash-commands_slack.json:slashCommand": {
        "status": 200,
        "answer": "Unsilo commands:\n• `/unsilo help` — this list\n• `/unsilo que",
    },
    "vercel-chat-replay/slash-commands_slack.json:slashCommandWithArgs": {
        "status": 200,
        "answer": "unknown command `some`; try `/unsilo help`",
    },
    "url_verification.json": {"status": 200, "ack": '{"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7t'},
    "event_callback.app_uninstalled.json": {"status": 200, "health": "degraded"},
    "message_action.shortcut.json": {"status": 200, "modal": ["unsilo_report"]},
    # thread messages outside any card's thread, bot messages, edits: deliberately nothing
    "event_callback.message.json": NOTHING,
    "event_callback.message.bot_message.json": NOTHING,
    "event_callback.message.file_share.json": NOTHING,
    "event_callback.message.thread_broadcast.json": NOTHING,
    "event_callback.message_changed.json": NOTHING,
    "event_callback.message.im.recorded.json": NOTHING,
    "vercel-chat-replay/dm_slack.json:dmMessage": NOTHING,
    "vercel-chat-replay/dm_slack.json:dmRequest": NOTHING,
    # events Unsilo does not subscribe to: acked, nothing done (Bolt alone would answer 404 and Slack retry)
    "event_callback.app_mention.json": NOTHING,
    "event_callback.app_mention.authorizations.json": NOTHING,
    "vercel-chat-replay/channel_slack.json:mention": NOTHING,
    "vercel-chat-replay/modals_slack.json:mention": NOTHING,
    # all-fields skeletons: empty team ids are no workspace of ours; refused, never a 500
    "shapes/AppMentionPayload.json": NOTHING,
    "shapes/MessagePayload.json": NOTHING,
    "shapes/BlockActionPayload.json": NOTHING,
    "shapes/ViewSubmissionPayload.json": NOTHING,
    "shapes/SlashCommandPayload.json": {"status": 200, "answer": NOT_OURS[:60]},
}


@pytest.mark.parametrize(("name", "payload"), _cases())
async def test_a_reference_payload_gets_the_answer_slack_users_would_see(name: str | None, payload: Any, tmp_path: Path) -> None:
    reference_dir()
    assert name is not None
    kind = _kind(name, payload)
    team = _team(kind, payload) or "T111"
    async with running_slack(tmp_path, team_id=team) as h:
        await h.identified()
        url = h.slack.response_url()
        body, content_type = _body(kind, payload, url)
        status, text, _ = await h.post(body, content_type=content_type)
        seen = await _seen(h, status, text, url)
    print(f"{name}: {seen}")
    assert status != 500 and status < 500, seen
    if name in EXPECTED:
        assert seen == EXPECTED[name]
    else:
        assert seen in (NOTHING, UNHANDLED) or "answer" in seen, seen


@pytest.mark.parametrize(("name", "payload"), _cases())
def test_no_recorded_request_is_refused_as_malformed(name: str | None, payload: Any) -> None:
    """The shape check in front of Bolt (`adapters.slack.shape`, which answers 400) passes all that Slack sends."""
    from adapters.slack import shape

    if name is None:
        reference_dir()
    body = dict(parse_qsl(payload)) if isinstance(payload, str) else payload
    assert shape.problem(body) is None
