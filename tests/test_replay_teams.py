"""Every recorded Teams activity in ../shared/reference/teams, replayed over HTTP to the real app.

One test per file, and one per activity inside the recorded sequences of
`vercel-chat-replay/*.json` (the activities before it in its sequence are replayed first). A new
file is picked up by its name, and its outcome is told by what it is, the way Teams users see it:

========================================  ====================================================
activity                                  what the person sees
========================================  ====================================================
a message that @mentions the bot          an answer card in the same thread (help, or why not)
a message in a 1:1 chat with the bot      an answer card there
a card's Action.Submit (message + value)  an answer card (a foreign button: "out of date")
a mention-free reply in a card's thread   an internal note with its text; no answer
a channel post addressed to nobody        nothing
the bot added to a team or chat           one welcome that says how to `link` a channel
installationUpdate, messageReaction       nothing (the conversationUpdate carries the welcome)
an `adaptiveCard/action` invoke           an invoke answer (a foreign button: a message, card
                                          kept); also replayed signed by the Bot Framework
``outgoing.*`` (bot -> user)              not sent: our mention cards are checked against it
========================================  ====================================================
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from bot.ingest import make_incoming
from storage.models import Posting
from tests.conftest import REFERENCE
from tests.teams_support import TeamsHarness, running_teams
from tests.test_teams import APP_ID, card_text

TEAMS = REFERENCE / "teams"


def _is_activity(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("type"), str) and "channelId" in value


def _cases() -> list[Any]:
    """(file, key or None) for every file and every activity of every recorded sequence."""
    if not TEAMS.is_dir():
        return [pytest.param(None, None, id="reference-data-absent")]
    cases = [pytest.param(p.name, None, id=p.name) for p in sorted(TEAMS.glob("*.json"))]
    for path in sorted(TEAMS.glob("vercel-chat-replay/*.json")):
        recorded = json.loads(path.read_text())
        for key, value in recorded.items():
            if _is_activity(value):
                name = f"vercel-chat-replay/{path.name}"
                cases.append(pytest.param(name, key, id=f"{name}#{key}"))
    return cases


def _load(name: str, key: str | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The activity, and the activities recorded before it in its sequence."""
    data = json.loads((TEAMS / name).read_text())
    if key is None:
        return data, []
    keys = [k for k, v in data.items() if _is_activity(v)]
    return copy.deepcopy(data[key]), [copy.deepcopy(data[k]) for k in keys[: keys.index(key)]]


def _mentions_bot(activity: dict[str, Any]) -> bool:
    bot = ((activity.get("recipient") or {}).get("id") or "").lower()
    return any(
        e.get("type") == "mention" and ((e.get("mentioned") or {}).get("id") or "").lower() == bot
        for e in activity.get("entities") or []
    )


def _thread_root(activity: dict[str, Any]) -> str | None:
    found = re.search(r";messageid=(\d+)$", (activity.get("conversation") or {}).get("id") or "")
    return found.group(1) if found and found.group(1) != activity.get("id") else None


def _channel(activity: dict[str, Any]) -> str:
    data = activity.get("channelData") or {}
    return (
        (data.get("channel") or {}).get("id")
        or data.get("teamsChannelId")
        or (activity.get("conversation") or {}).get("id", "").split(";")[0]
    )


def expected(activity: dict[str, Any]) -> str:
    """What a Teams user expects from this activity (see the module's table)."""
    kind = activity.get("type")
    if ((activity.get("from") or {}).get("id") or "").startswith("28:"):
        return "outgoing"
    if kind == "invoke":
        return "invoke"
    if kind == "conversationUpdate":
        bot = (activity.get("recipient") or {}).get("id")
        return "welcome" if any(m.get("id") == bot for m in activity.get("membersAdded") or []) else "nothing"
    if kind != "message":
        return "nothing"
    if activity.get("value") and not (activity.get("text") or "").strip():
        return "answer"
    if _mentions_bot(activity) or (activity.get("conversation") or {}).get("conversationType") == "personal":
        return "answer"
    return "note" if _thread_root(activity) else "nothing"


async def _card_in_thread(h: TeamsHarness, activity: dict[str, Any]) -> int:
    """Make the thread the activity replies in the thread of a posted card (so its reply is a note)."""
    report = await h.container.ingest(
        [
            make_incoming(
                source="reviews", external_id=f"replay-{activity['id']}", text="my kettle arrived broken", author_name="Priya"
            )
        ]
    )
    cid = report.new_ids[0]
    async with h.container.uow() as uow:
        uow.postings.add(
            Posting(conversation_id=cid, platform="teams", channel_id=_channel(activity), message_id=_thread_root(activity) or "")
        )
        await uow.commit()
    return cid


def _answers(h: TeamsHarness, since: int) -> list[Any]:
    return [call for call in h.connector.calls[since:] if call.route in ("reply", "send", "create")]


def _card(call: Any) -> dict[str, Any]:
    body = call.body.get("activity", call.body)
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    return attachment["content"]


@pytest.mark.parametrize(("name", "key"), _cases())
async def test_replay(name: str | None, key: str | None, tmp_path: Path, card_schema_validator) -> None:
    if name is None:
        pytest.skip(f"reference data not found at {REFERENCE}")
    activity, before = _load(name, key)
    outcome = expected(activity)
    if outcome == "outgoing":
        _check_outgoing(activity)
        return
    async with running_teams(tmp_path) as h:
        for earlier in before:
            status, _ = await h.send(earlier)
            assert status < 500
        cid = await _card_in_thread(h, activity) if outcome == "note" else None
        since = len(h.connector.calls)
        status, body = await h.send(copy.deepcopy(activity))
        assert status in (200, 201), (status, body)
        answers = _answers(h, since)

        if outcome == "answer":
            (answer,) = answers
            assert answer.conversation_id == activity["conversation"]["id"]  # where it was written: the thread, the chat
            card = _card(answer)
            card_schema_validator(card)
            if activity.get("value"):
                assert "out of date" in card_text(card)  # someone else's button
            else:
                assert "Unsilo commands" in card_text(card)  # help, or what was wrong and the help
            assert answer.body.get("summary")
        elif outcome == "note":
            assert answers == []
            async with h.container.uow() as uow:
                notes = await uow.notes.for_conversation(cid)  # type: ignore[arg-type]
            assert [n.text for n in notes] == [activity["text"]]
        elif outcome == "welcome":
            (welcome,) = answers
            assert "@Unsilo link <department>" in card_text(_card(welcome))
        elif outcome == "invoke":
            _check_invoke_answer(body)
        else:
            assert answers == [] and [c.route for c in h.connector.calls[since:]] == []

    if outcome == "invoke":  # and once more as Teams sends it: signed by the Bot Framework
        await _replay_signed(activity, tmp_path / "signed")


def _check_invoke_answer(body: Any) -> None:
    assert body["statusCode"] == 200
    if body["type"] == "application/vnd.microsoft.activity.message":
        assert "out of date" in body["value"]  # not one of our buttons: the card stays, a message says why
    else:
        assert body["type"] == "application/vnd.microsoft.card.adaptive"


async def _replay_signed(activity: dict[str, Any], tmp_path: Path) -> None:
    from botframework.connector.auth import ChannelValidation

    from tests.teams_support import BotFrameworkIssuer

    tmp_path.mkdir()
    with BotFrameworkIssuer() as issuer:
        saved = ChannelValidation.open_id_metadata_endpoint
        ChannelValidation.open_id_metadata_endpoint = issuer.metadata_url
        try:
            async with running_teams(tmp_path, app_id=APP_ID) as secured:
                token = issuer.token(app_id=APP_ID, service_url=secured.connector.url)
                unsigned, _ = await secured.send(copy.deepcopy(activity))
                assert unsigned == 401
                status, body = await secured.send(copy.deepcopy(activity), headers={"Authorization": f"Bearer {token}"})
                assert status == 200
                _check_invoke_answer(body)
        finally:
            ChannelValidation.open_id_metadata_endpoint = saved


def _check_outgoing(activity: dict[str, Any]) -> None:
    """Our mention cards use the entity shape of the recorded bot -> user card."""
    from adapters.teams import render
    from bot.views import Notice

    recorded = activity["attachments"][0]["content"]["msteams"]["entities"]
    ours = render.notice_card(Notice(title="#7 is still unclaimed", mentions=(("teams:aad-1", "Maria"),)))
    for entity in ours["msteams"]["entities"]:
        assert {json.dumps(sorted(e)) for e in recorded} == {json.dumps(sorted(entity))}
        assert sorted(entity["mentioned"]) == sorted(recorded[0]["mentioned"])


@pytest.fixture(scope="module")
def card_schema_validator():
    import jsonschema

    if not TEAMS.is_dir():
        return lambda card: None
    schema = json.loads((REFERENCE / "schemas/adaptive-cards/adaptive-card-1.5.0.schema.json").read_text())
    validator = jsonschema.Draft6Validator(schema)
    return lambda card: validator.validate({k: v for k, v in card.items() if k != "msteams"})
