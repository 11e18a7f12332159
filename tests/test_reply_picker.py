"""The Reply form offers the saved answers that fit the conversation, through the real Slack and Teams apps.

Slack: the modal opens at once (`views.open`, as before), then gets a select of the fitting answers
(`views.update`); choosing one puts its text in the text input (`views.update` again), editable, and the
answer's id goes with the submission. Teams: the reply form inside the card holds a choice set of the
answers stored on the conversation at ingest; a typed text wins, an empty text sends the chosen answer.
A pre-approved answer picked and sent unchanged skips the second approval where allowed; edited, it waits.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from adapters.slack import render as slack_render
from adapters.teams import render as teams_render
from bot import codec, verbs, views
from bot import commands as c
from bot.ingest import make_incoming
from tests import slack_support
from tests.slack_support import SlackHarness, running_slack, sample
from tests.teams_support import TEAMS_CONFIG, running_teams
from tests.test_slack_render import check_view
from tests.test_teams_render import check_card

ALICE = c.Actor("slack", "UALICE", "alice")
MANAGER = c.Actor("slack", "UMANAGER", "maria")
LEGAL = "We are sorry. Our legal team will call you within two working days about the kettle refund."
PARCEL = "A new parcel is on its way; the courier brings it tomorrow."
LEGAL_TITLE = "Legal callback <!channel>"  # a title is people's text too: inert in a select


async def _ingest(container: Any, key: str, text: str) -> int:
    item = make_incoming(source="reviews", external_id=key, text=text, url=f"https://reviews.example.com/r/{key}")
    return (await container.ingest([item])).new_ids[0]


async def _saved(container: Any, key: str, text: str, reply: str, title: str, *, approver: c.Actor | None = None) -> int:
    """A conversation replied to (approved by `approver` when held), posted by hand, saved as an answer."""
    bus = container.bus
    cid = await _ingest(container, key, text)
    await bus.handle(c.Claim(cid, ALICE))
    await bus.handle(c.ReplyToCustomer(cid, ALICE, reply))
    if approver is not None:
        await bus.handle(c.ApproveReply(cid, approver))
    await bus.handle(c.MarkPosted(cid, ALICE))
    await bus.handle(c.SaveAnswer(cid, ALICE, title))
    async with container.uow() as uow:
        (answer,) = [a for a in await uow.answers.fitting(cid, limit=5) if a.title == title]
    assert answer.id is not None
    return answer.id


async def _reply_status(container: Any, cid: int, *, count: int = 1) -> tuple[str, str]:
    for _ in range(300):  # the form's work runs after the ack
        async with container.uow() as uow:
            replies = await uow.replies.for_conversation(cid)
        if len(replies) >= count:
            return replies[-1].status, replies[-1].text
        await asyncio.sleep(0.02)
    raise AssertionError(f"no reply to #{cid}")


def _picked(view: dict[str, Any], answer_id: int, user: str = "UALICE") -> dict[str, Any]:
    """A choice in the open modal's select, as Slack sends it (block_actions from a view: no channel, no message)."""
    payload = sample("block_actions.static_select.recorded.json")
    for key in ("message", "channel", "response_url"):
        payload.pop(key, None)
    payload["user"].update(id=user, username=user.lower(), name=user.lower(), team_id=view["team_id"])
    payload["team"]["id"] = view["team_id"]
    payload["container"] = {"type": "view", "view_id": view["id"]}
    payload["view"] = view
    (block,) = [b for b in view["blocks"] if b.get("element", {}).get("action_id") == slack_render.PICK_ACTION]
    option = next(o for o in block["element"]["options"] if o["value"] == str(answer_id))
    payload["actions"] = [
        {"type": "static_select", "action_id": slack_render.PICK_ACTION, "block_id": block["block_id"], "selected_option": option}
    ]
    return payload


async def _open_reply(h: SlackHarness, cid: int) -> dict[str, Any]:
    """Click Reply on the card: the modal as Slack shows it once the answers were added (the stand-in's view)."""
    opened = len(h.slack.calls_to("views.open"))
    updated = len(h.slack.calls_to("views.update"))
    button = views.button(verbs.VERBS["reply"], cid)
    status, _, _ = await h.click(slack_render.action_id(button), codec.encode(button))
    assert status == 200
    first = (await h.slack.wait_for("views.open", count=opened + 1))[-1]
    assert not any(b.get("element", {}).get("action_id") == slack_render.PICK_ACTION for b in first.args["view"]["blocks"])
    update = (await h.slack.wait_for("views.update", count=updated + 1))[-1]
    assert update.args["view_id"] == first.response["view"]["id"] and update.args["hash"] == first.response["view"]["hash"]
    check_view(update.args["view"])
    return h.slack.views[first.response["view"]["id"]]


async def _pick(h: SlackHarness, view: dict[str, Any], answer_id: int) -> dict[str, Any]:
    updated = len(h.slack.calls_to("views.update"))
    status, _, _ = await h.interactive(_picked(view, answer_id))
    assert status == 200
    call = (await h.slack.wait_for("views.update", count=updated + 1))[-1]
    check_view(call.args["view"])
    return h.slack.views[view["id"]]


def _text_block(view: dict[str, Any]) -> dict[str, Any]:
    (block,) = [b for b in view["blocks"] if b["block_id"].partition(slack_render.PICKED_SEP)[0] == "text"]
    return block


def _state(view: dict[str, Any], text: str, answer_id: int | None) -> dict[str, dict[str, Any]]:
    block = _text_block(view)
    values: dict[str, dict[str, Any]] = {block["block_id"]: {"text": {"type": "plain_text_input", "value": text}}}
    if answer_id is not None:
        selected = {"type": "static_select", "selected_option": {"value": str(answer_id)}}
        values[verbs.PICKED] = {slack_render.PICK_ACTION: selected}
    return values


async def test_slack_reply_modal_offers_fitting_answers_and_a_picked_pre_approved_one_skips_approval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = slack_support.SLACK_CONFIG.replace(
        'managers = ["slack:UMANAGER"]', 'managers = ["slack:UMANAGER"]\nreuse_approved_answers = true'
    )
    monkeypatch.setattr(slack_support, "SLACK_CONFIG", config)
    async with running_slack(tmp_path) as h:
        container = h.container
        # Before anything is saved, the reply form stays as it was: no select, no second call.
        bare = await _ingest(container, "bare", "my lawyer says the kettle refund is late")
        button = views.button(verbs.VERBS["reply"], bare)
        await h.click(slack_render.action_id(button), codec.encode(button))
        await h.slack.wait_for("views.open")
        await asyncio.sleep(0.2)
        assert h.slack.calls_to("views.update") == []

        legal = await _saved(container, "old-legal", "my lawyer wants the kettle refund", LEGAL, LEGAL_TITLE, approver=MANAGER)
        parcel = await _saved(container, "old-parcel", "the courier lost my parcel", PARCEL, "Parcel resent")
        cid = await _ingest(container, "new-legal", "my lawyer again: where is my kettle refund?")
        async with container.uow() as uow:
            stored = (await uow.conversations.get(cid)).answers
        assert stored and stored[0]["id"] == legal, stored  # found at ingest, for the forms rendered with the card

        await container.bus.handle(c.Claim(cid, ALICE))
        view = await _open_reply(h, cid)
        picker = next(b for b in view["blocks"] if b["block_id"] == verbs.PICKED)
        offered = [o["value"] for o in picker["element"]["options"]]
        assert offered[0] == str(legal) and set(offered) <= {str(legal), str(parcel)}
        assert picker["element"]["options"][0]["text"] == {"type": "plain_text", "text": LEGAL_TITLE}  # plain text: inert
        assert picker["dispatch_action"] is True and "initial_value" not in _text_block(view)["element"]

        # Choosing the legal answer: its text in the input (a new block id, so Slack shows it), still editable.
        view = await _pick(h, view, legal)
        filled = _text_block(view)
        assert filled["element"]["initial_value"] == LEGAL and filled["element"]["type"] == "plain_text_input"
        assert filled["block_id"] != "text"
        picker = next(b for b in view["blocks"] if b["block_id"] == verbs.PICKED)
        assert picker["element"]["initial_option"]["value"] == str(legal)

        # Sent unchanged: the pre-approved answer skips the second approval (support allows it), logged so.
        status, body, _ = await h.submit(view, _state(view, LEGAL, legal))
        assert (status, body) == (200, "")
        assert await _reply_status(container, cid) == ("recorded", LEGAL)
        history = (await container.bus.handle(c.Show(cid, ALICE))).history
        assert any(x.event == "approval_skipped" and f"#{legal}" in x.detail for x in history)

        # Picked, then one character edited: a new reply, held for approval.
        edited = await _ingest(container, "new-legal-2", "my lawyer: the kettle refund, once more")
        view = await _pick(h, await _open_reply(h, edited), legal)
        refused = await h.submit(view, _state(view, LEGAL + "!", legal))  # not claimed: refused under the filled input
        assert list(json.loads(refused[1])["errors"]) == [_text_block(view)["block_id"]]
        await container.bus.handle(c.Claim(edited, ALICE))
        await h.submit(view, _state(view, LEGAL + "!", legal))
        assert await _reply_status(container, edited) == ("pending_approval", LEGAL + "!")
        history = (await container.bus.handle(c.Show(edited, ALICE))).history
        assert not any(x.event == "approval_skipped" for x in history)


async def test_teams_reply_form_has_a_choice_of_answers_and_a_typed_text_wins(tmp_path: Path) -> None:
    async with running_teams(tmp_path, config=TEAMS_CONFIG) as h:
        container = h.container
        bus = container.bus
        alice = c.Actor("teams", "aad-alice", "Alice")
        old = await _ingest(container, "old", "the courier lost my parcel, refund it")
        await bus.handle(c.Claim(old, alice))
        await bus.handle(c.ReplyToCustomer(old, alice, PARCEL))
        await bus.handle(c.MarkPosted(old, alice))
        await bus.handle(c.SaveAnswer(old, alice, "Parcel <at>resent</at>"))
        async with container.uow() as uow:
            (answer_id,) = [a.id for a in await uow.answers.fitting(old)]

        cid = await _ingest(container, "new", "my parcel is lost, the courier says; refund?")
        await bus.handle(c.Claim(cid, alice))
        shown = await bus.handle(c.Show(cid, alice))
        assert shown is not None and shown.card is not None
        card = teams_render.card(shown.card, outcomes=container.config.outcomes)
        check_card(card)
        (form,) = [a["card"] for a in card["actions"] if a["type"] == "Action.ShowCard" and a["title"] == "Reply"]
        by_id = {e["id"]: e for e in form["body"]}
        choice = by_id[teams_render.input_id("reply", verbs.PICKED)]
        assert choice["type"] == "Input.ChoiceSet" and [x["value"] for x in choice["choices"]] == [str(answer_id)]
        assert "<at>" not in json.dumps(choice)  # the title cannot mention anyone
        assert not by_id[teams_render.input_id("reply", "text")].get("isRequired")  # either text or an answer

        chosen = {teams_render.input_id("reply", verbs.PICKED): str(answer_id)}
        status, body = await h.click(card, "reply", f"17000{cid:08d}", user="aad-alice", name="Alice", **chosen)
        assert status == 200, body
        assert await _reply_status(container, cid) == ("recorded", PARCEL)  # empty text: the answer's

        other = await _ingest(container, "other", "parcel lost again, courier shrugs; refund")
        await bus.handle(c.Claim(other, alice))
        card = teams_render.card((await bus.handle(c.Show(other, alice))).card, outcomes=container.config.outcomes)  # type: ignore[union-attr, arg-type]
        typed = {**chosen, teams_render.input_id("reply", "text"): "My own words"}
        await h.click(card, "reply", f"17000{other:08d}", user="aad-alice", name="Alice", **typed)
        assert await _reply_status(container, other) == ("recorded", "My own words")  # a typed text wins

        # Neither text nor answer: refused, nothing sent.
        third = await _ingest(container, "third", "parcel lost, courier, refund please")
        await bus.handle(c.Claim(third, alice))
        card = teams_render.card((await bus.handle(c.Show(third, alice))).card, outcomes=container.config.outcomes)  # type: ignore[union-attr, arg-type]
        _, body = await h.click(card, "reply", f"17000{third:08d}", user="aad-alice", name="Alice")
        assert "can't be empty" in json.dumps(body)
        async with container.uow() as uow:
            assert await uow.replies.for_conversation(third) == []
