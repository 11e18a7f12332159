"""Teams rendering: every card is valid Adaptive Card 1.5, untrusted text stays inert, buttons decode."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.teams import render
from bot import codec, views
from bot import verbs as verb_table
from bot.domain import DEFAULT_OUTCOMES, Status
from bot.views import Button, HistoryLine, Notice, Result
from tests.cards import NOW, conversation_buttons, make_card
from tests.conftest import reference_dir

logger = logging.getLogger(__name__)

NASTY = [
    "**bold**",
    "[bank](https://evil.example)",
    "<at>Everyone</at>",
    "<AT>x</aT>",
    "<<at>at>",
    "# h",
    "- item",
    "```x```",
    "x" * 10000,
    "\x00\x07\x1b",
    '"}]}',
    "line1\nline2\r\n\tline3",
    "\n" * 500,
    "   ",
    "😀" * 5000,  # an emoji goes on the wire as 12 characters (\\ud83d\\ude00)
    "\u202e" * 3000 + "💩" * 1000,
]
MAX_STRING = 4000


# --- checking what we render -------------------------------------------------------


@cache
def validator() -> jsonschema.Draft6Validator:
    path = reference_dir() / "schemas" / "adaptive-cards" / "adaptive-card-1.5.0.schema.json"
    schema = json.loads(path.read_text())
    jsonschema.Draft6Validator.check_schema(schema)
    return jsonschema.Draft6Validator(schema)


def assert_valid(card_json: dict[str, Any]) -> None:
    errors = sorted(validator().iter_errors(card_json), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message[:200]}" for e in errors[:5]]


def dicts(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict in a JSON tree, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from dicts(value)
    elif isinstance(node, list):
        for item in node:
            yield from dicts(item)


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def of_type(node: Any, kind: str) -> list[dict[str, Any]]:
    return [d for d in dicts(node) if d.get("type") == kind]


def visible(text: str) -> str:
    """Text as a person reads it: bidi isolates (FSI ... PDI) take no space."""
    return text.replace("\u2068", "").replace("\u2069", "")


def runs_text(node: Any) -> str:
    return visible("".join(run["text"] for run in of_type(node, "TextRun")))


def check_card(card_json: dict[str, Any]) -> None:
    """Schema-valid, JSON round-trips, markdown only in our labels, no mention markup, within Teams' size."""
    assert card_json["type"] == "AdaptiveCard" and card_json["version"] == "1.5"
    assert card_json["$schema"] == render.CARD_SCHEMA
    entities = check_mentions(card_json)
    assert_valid({k: v for k, v in card_json.items() if k != "msteams"})  # Teams' extension is outside the schema
    assert json.loads(json.dumps(card_json)) == card_json
    mention_line = " ".join(e["text"] for e in entities)
    for block in of_type(card_json, "TextBlock"):
        assert block["text"] in render.LABELS or entities and block["text"] == mention_line, block["text"][:80]
    for run in of_type(card_json, "TextRun"):
        assert "<at" not in run["text"].lower(), run["text"][:80]
        assert all(ch in "\n\t" or ord(ch) >= 0x20 and not 0x7F <= ord(ch) <= 0x9F for ch in run["text"])
    assert all(len(s) <= MAX_STRING for s in strings(card_json))
    assert len(json.dumps(card_json)) <= render.MAX_CARD_JSON  # as sent: non-ASCII escaped
    for execute in of_type(card_json, "Action.Execute"):
        if codec.is_action(execute["data"]):  # an answer's or notice's own button: its verb and fields
            assert execute["data"]["cmd"] == execute["verb"]
            continue
        verb, conversation_id = codec.decode(execute["data"])
        assert verb == execute["verb"]


def check_mentions(card_json: dict[str, Any]) -> list[dict[str, Any]]:
    """`msteams.entities` shaped as in the reference outgoing message; each a plain name in `<at>`."""
    if "msteams" not in card_json:
        return []
    sample = json.loads((reference_dir() / "teams" / "outgoing.message.adaptive_card_mentions.json").read_text())
    (reference,) = {json.dumps(sorted(e)) for e in sample["attachments"][0]["content"]["msteams"]["entities"]}
    entities = card_json["msteams"]["entities"]
    assert set(card_json["msteams"]) == {"entities"} and entities
    for entity in entities:
        assert json.dumps(sorted(entity)) == reference and set(entity["mentioned"]) == {"id", "name"}
        assert entity["type"] == "mention" and entity["text"] == f"<at>{entity['mentioned']['name']}</at>"
        assert re.fullmatch(r"[\w .'-]{1,79}…?", entity["mentioned"]["name"]) and "_" not in entity["mentioned"]["name"]
    assert len({e["text"] for e in entities}) == len(entities), "Teams tells mentions apart by their text"
    return entities


def top_actions(card_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Top-level actions by verb (OpenUrl as "open")."""
    found: dict[str, dict[str, Any]] = {}
    for action in card_json["actions"]:
        if action["type"] == "Action.OpenUrl":
            found["open"] = action
        elif action["type"] == "Action.Execute":
            found[action["verb"]] = action
        else:
            found[of_type(action["card"], "Action.Execute")[0]["verb"]] = action
    return found


# --- the validator is real ---------------------------------------------------------


def test_reference_sample_passes() -> None:
    sample = reference_dir() / "schemas" / "adaptive-cards" / "samples" / "ActivityUpdate.json"
    assert_valid(json.loads(sample.read_text()))


def test_validator_rejects_broken_cards() -> None:
    good = render.card(make_card(), outcomes=DEFAULT_OUTCOMES)
    assert_valid(good)
    unknown = json.loads(json.dumps(good))
    unknown["body"].append({"type": "Marquee", "text": "hi"})
    assert list(validator().iter_errors(unknown))
    bad_verb = json.loads(json.dumps(good))
    next(a for a in dicts(bad_verb) if a.get("type") == "Action.Execute")["verb"] = 7
    assert list(validator().iter_errors(bad_verb))


# --- cards -------------------------------------------------------------------------


def test_card_shows_everything() -> None:
    c = make_card(status=Status.CLAIMED.value, owner="Bob Agent")
    card_json = render.card(c, outcomes=DEFAULT_OUTCOMES)
    check_card(card_json)
    shown = runs_text(card_json)
    for part in (
        "#42",
        "My parcel never arrived",
        "high",
        "claimed",
        "acme-forum",
        "Ann Customer",
        "courier says delivered",
        "ops, support",
        "delivery",
        "rule delivery matched",
        "Claimed by Bob Agent",
    ):
        assert part in shown, part
    assert "Unclaimed" not in json.dumps(card_json)


def test_unclaimed_and_outcome() -> None:
    open_json = render.card(make_card(), outcomes=DEFAULT_OUTCOMES)
    assert {"type": "TextBlock", "text": "Unclaimed", "wrap": True, "weight": "Bolder"} in open_json["body"]
    resolved = render.card(make_card(status=Status.RESOLVED.value, owner="Bob", outcome="fixed"), outcomes=DEFAULT_OUTCOMES)
    check_card(resolved)
    assert "Outcome: fixed" in runs_text(resolved)
    not_resolved = render.card(make_card(outcome="fixed"), outcomes=DEFAULT_OUTCOMES)
    assert "Outcome" not in runs_text(not_resolved)


def test_long_text_is_cut() -> None:
    card_json = render.card(make_card(text="y" * 5000), outcomes=DEFAULT_OUTCOMES)
    check_card(card_json)
    text = "".join(visible(r["text"]) for r in of_type(card_json, "TextRun") if set(visible(r["text"])) <= {"y", "…"})
    assert len(text) == render.MAX_TEXT and text.endswith("…")


def test_emoji_text_is_cut_to_fit_teams_message_size() -> None:
    """3,000 emoji pass the character caps but weigh 36,000 characters on the wire: the card is cut to fit."""
    card_json = render.card(make_card(text="😀" * 3000, title="🔥" * 250), outcomes=DEFAULT_OUTCOMES)
    check_card(card_json)
    text = next(visible(r["text"]) for r in of_type(card_json, "TextRun") if visible(r["text"]).startswith("😀"))
    assert text.endswith("…") and 500 < len(text) < 3000  # cut, yet still most of what fits
    assert {"claim", "reply", "note", "dismiss", "open"} <= set(top_actions(card_json))  # every button kept
    lines = tuple("💩" * 4000 for _ in range(80))
    notice_json = render.notice_card(Notice(title="Digest", lines=lines))
    check_card(notice_json)
    assert runs_text(notice_json).startswith("Digest")


def test_buttons_by_status() -> None:
    expected = {
        Status.OPEN: {"claim", "reply", "note", "dismiss", "open"},
        Status.CLAIMED: {"release", "reply", "note", "resolve", "dismiss", "open"},
        Status.REPLIED: {"release", "reply", "note", "resolve", "open"},
        Status.RESOLVED: {"note", "open"},
        Status.DISMISSED: {"note", "open"},
    }
    for status, verbs in expected.items():
        card_json = render.card(make_card(status=status.value), outcomes=DEFAULT_OUTCOMES)
        check_card(card_json)
        actions = top_actions(card_json)
        assert set(actions) == verbs, status
        for verb, action in actions.items():
            if verb == "open":
                assert {k: v for k, v in action.items() if k != "mode"} == {
                    "type": "Action.OpenUrl",
                    "title": "Open original",
                    "url": "https://forum.example/t/123",
                }
            elif verb in ("claim", "release"):
                assert action["type"] == "Action.Execute"
                assert codec.decode(action["data"]) == (verb, 42)
            else:
                assert action["type"] == "Action.ShowCard"
                execute = of_type(action["card"], "Action.Execute")
                assert len(execute) == 1 and execute[0]["verb"] == verb
                assert codec.decode(execute[0]["data"]) == (verb, 42)
                text_input = of_type(action["card"], "Input.Text")[0]
                assert text_input["id"] == f"{verb}.text" and text_input["isMultiline"]
                if verb == "resolve":
                    choice = of_type(action["card"], "Input.ChoiceSet")[0]
                    assert choice["id"] == "resolve.outcome" and choice["isRequired"]
                    assert [ch["value"] for ch in choice["choices"]] == list(DEFAULT_OUTCOMES)
                    assert not text_input.get("isRequired")
                else:
                    assert text_input["isRequired"] and text_input["errorMessage"]


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "ftp://x.example/a", "https://x.example/a b", "", "https://x\x00.example"]
)
def test_open_only_for_http_urls(url: str) -> None:
    card_json = render.card(
        make_card(url=url, buttons=(Button("Open original", "open", 42, url=url),)), outcomes=DEFAULT_OUTCOMES
    )
    check_card(card_json)
    assert card_json["actions"] == []


def test_resolve_without_usable_outcomes_is_left_out() -> None:
    card_json = render.card(make_card(status=Status.CLAIMED.value), outcomes=("a,b", ""))
    check_card(card_json)
    assert "resolve" not in top_actions(card_json)


# --- untrusted text ----------------------------------------------------------------


hostile = st.one_of(st.sampled_from(NASTY), st.text())


@settings(max_examples=150, deadline=None)
@given(
    text=hostile,
    title=hostile,
    author=hostile,
    tag=hostile,
    reason=hostile,
    owner=st.one_of(st.none(), hostile),
    status=st.sampled_from([s.value for s in Status]),
)
def test_untrusted_text_is_inert(
    text: str, title: str, author: str, tag: str, reason: str, owner: str | None, status: str
) -> None:
    c = make_card(text=text, title=title, author=author, tags=(tag, "ok"), routing_reason=reason, owner=owner, status=status)
    card_json = render.card(c, outcomes=DEFAULT_OUTCOMES)
    check_card(card_json)
    history = (HistoryLine(at=NOW, actor=author, kind="noted", detail=text),)
    result_json = render.result_card(
        Result(text, card=c, cards=(c, make_card(id=7, title=title)), history=history), outcomes=DEFAULT_OUTCOMES
    )
    check_card(result_json)
    check_card(render.text_card(text))


def test_markdown_stays_literal() -> None:
    card_json = render.card(make_card(text="**bold** [bank](https://evil.example)", title="# h"), outcomes=DEFAULT_OUTCOMES)
    shown = runs_text(card_json)
    assert "**bold** [bank](https://evil.example)" in shown and "# h" in shown
    assert "<\u200bat>Everyone" in runs_text(render.text_card("hi <at>Everyone</at>"))


# --- results and messages ----------------------------------------------------------


def test_empty_result_is_a_valid_card() -> None:
    card_json = render.result_card(Result(""), outcomes=DEFAULT_OUTCOMES)
    check_card(card_json)
    assert card_json["body"] and card_json["actions"] == []
    check_card(render.text_card(""))


def test_result_order_and_list() -> None:
    listed = tuple(make_card(id=i, title=f"t{i}") for i in range(1, 26))
    history = tuple(HistoryLine(at=NOW, actor="Bob", kind="noted", detail=f"d{i}") for i in range(3))
    result = Result("Here you go", card=make_card(), cards=listed, history=history)
    card_json = render.result_card(result, outcomes=DEFAULT_OUTCOMES)
    check_card(card_json)
    shown = runs_text(card_json)
    assert shown.index("Here you go") < shown.index("#1 · open · Ann Customer: t1") < shown.index("I ordered") < shown.index("d0")
    assert "#20 · " in shown and "#21 · " not in shown and "…and 5 more" in shown
    assert set(top_actions(card_json)) == {"claim", "reply", "note", "dismiss", "open"}


def test_text_card_keeps_backticks_and_lines() -> None:
    card_json = render.text_card("Use `@Unsilo show #12`\n\nor `help`")
    check_card(card_json)
    assert [r["text"] for r in of_type(card_json, "TextRun")] == ["Use `@Unsilo show #12`", " ", "or `help`"]


def test_envelopes() -> None:
    card_json = render.text_card("hi")
    assert render.refreshed_invoke_body(card_json) == {
        "statusCode": 200,
        "type": "application/vnd.microsoft.card.adaptive",
        "value": card_json,
    }
    assert render.message_invoke_body("ok") == {
        "statusCode": 200,
        "type": "application/vnd.microsoft.activity.message",
        "value": "ok",
    }
    assert render.attachment(card_json) == {"contentType": "application/vnd.microsoft.card.adaptive", "content": card_json}


# --- mentions ----------------------------------------------------------------------


def test_the_bots_mention_is_removed_from_the_reference_activity() -> None:
    activity = json.loads((reference_dir() / "teams" / "message.channel.mention.json").read_text())
    mentions = [e["text"] for e in activity["entities"] if e.get("type") == "mention"]
    assert render.addressed_text(activity["text"], bot_mentions=mentions, other_mentions=[]) == "Hey"


def test_other_peoples_mentions_keep_their_names() -> None:
    text = "<at>Unsilo</at>  note #12\n please ask <at>Megan Bowen</at> to call <at>x</at>"
    assert (
        render.addressed_text(text, bot_mentions=["<at>Unsilo</at>"], other_mentions=[("<at>Megan Bowen</at>", "Megan Bowen")])
        == "note #12 please ask Megan Bowen to call x"
    )
    assert render.addressed_text("  show   #3 ", bot_mentions=[], other_mentions=[]) == "show #3"


@settings(max_examples=100, deadline=None)
@given(
    title=hostile,
    lines=st.lists(hostile, max_size=100),
    note=hostile,
    status=st.sampled_from(["pending_approval", "recorded", "failed", "rejected", "sent"]),
)
def test_notices_and_reply_states_are_inert_and_schema_valid(title: str, lines: list[str], note: str, status: str) -> None:
    notice = Notice(
        title=title,
        lines=tuple(lines),
        mentions=(("teams:aad-1", title), ("slack:U1", "x")),
        links=((title, "https://forum.example/t/1"), ("x", "javascript:alert(1)")),
    )
    card_json = render.notice_card(notice)
    check_card(card_json)
    assert [a["url"] for a in of_type(card_json, "Action.OpenUrl")] == ["https://forum.example/t/1"]
    assert [e["mentioned"]["id"] for e in card_json["msteams"]["entities"]] == ["aad-1"]  # Slack's are not Teams' to ping
    check_card(render.result_card(Result(title, notice=notice), outcomes=DEFAULT_OUTCOMES))
    buttons = (views.button(verb_table.VERBS["approve"], 42), views.button(verb_table.VERBS["reject"], 42))
    check_card(render.card(make_card(reply_status=status, reply_note=note, buttons=buttons), outcomes=DEFAULT_OUTCOMES))


def test_a_notice_mentions_teams_people_by_name_and_id_and_nobody_else() -> None:
    notice = Notice(
        title="#7 is still unclaimed",
        lines=("Managers: please claim it",),
        mentions=(
            ("teams:aad-carol", "Carol *Boss* [x](https://evil)"),
            ("teams:aad-dan", ""),
            ("slack:UCAROL", "Carol"),
            ("teams:<at>x</at>", "Mallory"),
        ),
    )
    card_json = render.notice_card(notice)
    check_card(card_json)
    assert card_json["msteams"]["entities"] == [
        {
            "type": "mention",
            "text": "<at>Carol Boss x https evil</at>",
            "mentioned": {"id": "aad-carol", "name": "Carol Boss x https evil"},
        },
        {"type": "mention", "text": "<at>team member</at>", "mentioned": {"id": "aad-dan", "name": "team member"}},
    ]
    assert of_type(card_json, "TextBlock")[-1]["text"] == "<at>Carol Boss x https evil</at> <at>team member</at>"
    assert "msteams" not in render.notice_card(Notice(title="digest", mentions=(("slack:UCAROL", "Carol"),)))


def test_namesakes_and_nameless_people_get_mentions_teams_can_tell_apart() -> None:
    notice = Notice(
        title="t",
        mentions=(("teams:a1", "Sam"), ("teams:a2", "Sam"), ("teams:a3", ""), ("teams:a4", ""), ("teams:a5", "N" * 200)),
    )
    card_json = render.notice_card(notice)
    check_card(card_json)
    assert [e["mentioned"]["name"] for e in card_json["msteams"]["entities"]] == [
        "Sam",
        "Sam 2",
        "team member",
        "team member 2",
        "N" * 79 + "…",
    ]


def test_a_huge_notice_keeps_its_title_and_mentions_within_teams_size() -> None:
    mentions = tuple((f"teams:aad-{i}", "🙂" * 100) for i in range(3))
    notice = Notice(
        title="🔥" * 400,
        lines=tuple("💩" * 4000 for _ in range(80)),
        mentions=mentions,
        links=(("🔗" * 100, "https://forum.example/" + "a" * 2000),),
    )
    card_json = render.notice_card(notice)
    check_card(card_json)
    assert card_json["body"][1]["type"] == "TextBlock" and card_json["body"][1]["text"].startswith("<at>")
    assert len(card_json["msteams"]["entities"]) == 3
    assert len(json.dumps(render.summary("🔥" * 400))) <= render.MAX_SUMMARY_JSON


def test_a_held_reply_offers_approve_and_a_reject_reason() -> None:
    buttons = (views.button(verb_table.VERBS["approve"], 42), views.button(verb_table.VERBS["reject"], 42))
    card_json = render.card(
        make_card(reply_status="pending_approval", reply_note="Reply waiting for approval: “hi”", buttons=buttons),
        outcomes=DEFAULT_OUTCOMES,
    )
    check_card(card_json)
    actions = top_actions(card_json)
    assert actions["approve"]["type"] == "Action.Execute"
    assert of_type(actions["reject"]["card"], "Input.Text"), "rejecting asks for the reason"
    assert "Reply waiting for approval" in runs_text(card_json)


# --- every card the renderer emits (issue 11: items 10, 11, 16, 24) ---------------------


REPLY_STATES = (None, "pending_approval", "recorded", "sending", "sent", "posted", "failed", "rejected")


def every_card() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every kind of card Unsilo sends to Teams, built through the core's own view functions:
    each status with each state of its latest reply, the answers made of them, notices, texts."""
    from bot.views import card_for
    from storage.models import Conversation, Reply

    for status in Status:
        for reply_status in REPLY_STATES:
            conversation = Conversation(
                id=42,
                source="acme-forum",
                external_id="e1",
                status=status.value,
                url="https://forum.example/t/1",
                title="Parcel",
                text="Never came.\nStill waiting.",
                author_name="Ann",
                priority="high",
                routing_reason="rule delivery",
            )
            reply = Reply(conversation_id=42, text="Sorry!", status=reply_status) if reply_status else None
            view = card_for(conversation, owner="Bob" if status != Status.OPEN else None, departments=["ops"], reply=reply)
            name = f"{status.value}/{reply_status}"
            yield f"card {name}", render.card(view, outcomes=DEFAULT_OUTCOMES)
            history = (HistoryLine(at=NOW, actor="Bob", kind="noted", detail="called her"),)
            yield f"show {name}", render.result_card(Result("", card=view, history=history), outcomes=DEFAULT_OUTCOMES)
            yield f"confirmation {name}", render.confirmation_card(Result("You claimed #42", card=view))
    listed = tuple(make_card(id=i) for i in range(1, 4))
    yield "queue", render.result_card(Result("3 waiting", cards=listed), outcomes=DEFAULT_OUTCOMES)
    notice = Notice(
        title="Weekly digest — support",
        lines=("2 new",),
        mentions=(("teams:aad-1", "Maria"),),
        links=tuple((f"#{i}", f"https://forum.example/t/{i}") for i in range(1, 9)),
    )
    yield "digest notice", render.notice_card(notice)
    yield "digest answer", render.result_card(Result(notice.title, notice=notice), outcomes=DEFAULT_OUTCOMES)
    yield "text", render.text_card("Unsilo commands:\n• `@Unsilo help`")
    live = render.message_link("19:d441d38c655c47a085215b2726e76927@thread.tacv2", "1771290107407", tenant_id="t")
    yield "older duplicate, clicked", render.duplicate_card(42, link=live, said="You claimed #42")
    yield "older duplicate, for everyone", render.duplicate_card(42, link=live)


def input_and_element_ids(node: Any) -> list[str]:
    """The `id` of every element, input and action anywhere in a card, show-cards included."""
    return [d["id"] for d in dicts(node) if isinstance(d.get("type"), str) and "id" in d]


def test_every_card_is_schema_valid_and_its_ids_are_unique() -> None:
    """Microsoft's renderer refuses a card whose Reply and Note inputs share an id (`DuplicateId`)."""
    cards = list(every_card())
    assert len(cards) > 100
    for label, card_json in cards:
        check_card(card_json)
        ids = input_and_element_ids(card_json)
        assert len(ids) == len(set(ids)), (label, ids)
    claimed = render.card(make_card(status=Status.CLAIMED.value), outcomes=DEFAULT_OUTCOMES)
    assert {"reply.text", "note.text", "dismiss.text", "resolve.text", "resolve.outcome"} <= set(input_and_element_ids(claimed))


def test_what_is_typed_in_a_form_is_read_by_its_own_id() -> None:
    data = {"cmd": "note", "id": 42, "reply.text": "Dear customer…", "note.text": "called her"}
    assert render.input_value("note", data) == "called her" and render.input_value("reply", data) == "Dear customer…"
    assert render.input_value("note", {"cmd": "note", "id": 42, "text": "from an older card"}) == "from an older card"


def buttons_of(card_json: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(titles shown as buttons, titles in the overflow menu)."""
    shown = [a["title"] for a in card_json["actions"] if a.get("mode") != "secondary"]
    overflow = [a["title"] for a in card_json["actions"] if a.get("mode") == "secondary"]
    return shown, overflow


def test_a_claimed_card_shows_three_buttons_and_the_rest_in_its_overflow_menu() -> None:
    """Six buttons at a typical Teams card width read "Rele…", "R…", "N…": three fit."""
    claimed = render.card(make_card(status=Status.CLAIMED.value), outcomes=DEFAULT_OUTCOMES)
    check_card(claimed)
    assert buttons_of(claimed) == (["Reply", "Note", "Resolve"], ["Release", "Dismiss", "Open original"])
    assert buttons_of(render.card(make_card(), outcomes=DEFAULT_OUTCOMES)) == (
        ["Claim", "Reply", "Note"],
        ["Dismiss", "Open original"],
    )
    held = render.card(
        make_card(
            status=Status.CLAIMED.value,
            reply_status="pending_approval",
            reply_note="waiting",
            buttons=(views.button(verb_table.VERBS["approve"], 42), views.button(verb_table.VERBS["reject"], 42))
            + conversation_buttons(Status.CLAIMED.value),
        ),
        outcomes=DEFAULT_OUTCOMES,
    )
    shown, overflow = buttons_of(held)
    assert shown == ["Approve reply", "Reject reply", "Reply"] and len(overflow) == 5  # all eight, none dropped
    assert buttons_of(render.card(make_card(status=Status.RESOLVED.value), outcomes=DEFAULT_OUTCOMES)) == (
        ["Note", "Open original"],
        [],
    )


def test_a_digest_shows_its_title_once_and_a_link_for_every_oldest_unclaimed_item() -> None:
    import dataclasses
    from datetime import timedelta

    from bot.digest import Digest, WaitingItem, digest_notice

    fields = {f.name: f for f in dataclasses.fields(Digest)}
    waiting = tuple(
        WaitingItem(
            **{
                f.name: {"id": i, "age_seconds": 3600.0 * i, "snippet": f"post {i}", "url": f"https://forum.example/t/{i}"}.get(
                    f.name, None
                )
                for f in dataclasses.fields(WaitingItem)
            }
        )
        for i in range(1, 8)
    )
    values: dict[str, Any] = {}
    for key, f in fields.items():
        if key == "oldest_unclaimed":
            values[key] = waiting
        elif key in ("since", "until"):
            values[key] = NOW - timedelta(days=7) if key == "since" else NOW
        elif key == "department":
            values[key] = "support"
        elif f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            continue
        else:
            values[key] = _zero(f.type)
    notice = digest_notice(Digest(**values))
    card_json = render.result_card(Result(notice.title, notice=notice), outcomes=DEFAULT_OUTCOMES)
    check_card(card_json)
    assert runs_text(card_json).count(notice.title) == 1
    urls = [a["url"] for a in card_json["actions"]]
    assert urls == [f"https://forum.example/t/{i}" for i in range(1, 8)]
    assert buttons_of(card_json)[0] == ["#1", "#2", "#3"]


def _zero(kind: Any) -> Any:
    """A neutral value for a Digest field of type `kind` (given as a string: the dataclasses use PEP 563)."""
    from bot.digest import Timing

    text = str(kind)
    if "Timing" in text:
        return Timing(**{f: (0 if f in ("count", "within_sla") else None) for f in Timing.__dataclass_fields__})
    if "tuple" in text:
        return ()
    if "bool" in text:
        return False
    if "float" in text or "int" in text:
        return 0
    return ""


def test_bidi_controls_in_a_customers_name_or_text_never_reorder_unsilos_own_text() -> None:
    rlo, lri, pdf, zwsp = "\u202e", "\u2066", "\u202c", "\u200b"
    card_json = render.card(
        make_card(author=f"{rlo}evil{pdf}", title=f"{lri}refund now", text=f"{rlo}2026 لا"), outcomes=DEFAULT_OUTCOMES
    )
    check_card(card_json)
    runs = [r["text"] for r in of_type(card_json, "TextRun")]
    assert not any(ch in run for run in runs for ch in (rlo, lri, pdf))
    byline = next(b for b in card_json["body"] if " · from " in "".join(i["text"] for i in b.get("inlines", ())))
    author_run, date_run = byline["inlines"][2]["text"], byline["inlines"][3]["text"]
    assert author_run == "\u2068evil\u2069"  # isolated: cannot reach the date next to it
    assert date_run == " · 2026-11-16 09:00 UTC"
    assert all(run.startswith("\u2068") and run.endswith("\u2069") for run in runs if "2026 لا" in run)
    blank = render.card(
        make_card(author=zwsp * 3 + "\u2060", owner=f"{zwsp}{rlo}", status=Status.CLAIMED.value), outcomes=DEFAULT_OUTCOMES
    )
    assert "from (no name)" in runs_text(blank) and "Claimed by (no name)" in runs_text(blank)


def test_a_cards_notification_preview_names_it_by_title_and_status() -> None:
    assert render.card_summary(make_card(status="claimed")) == "#42 · claimed · My parcel never arrived"
    assert render.card_summary(make_card(title="", text="\n  Where is my refund?\nthanks")) == "#42 · open · Where is my refund?"
    assert render.summary_of(Result("You claimed #42\nmore", card=make_card())) == "You claimed #42"


def test_a_card_without_a_title_is_titled_by_its_first_line() -> None:
    card_json = render.card(make_card(title="", text="\nPlease call me back\nabout the order"), outcomes=DEFAULT_OUTCOMES)
    assert runs_text(card_json).startswith("#42 Please call me back")


def test_a_commands_answer_confirms_and_offers_the_current_card_instead_of_a_copy() -> None:
    card_json = render.confirmation_card(Result("You claimed #42", card=make_card(status="claimed")))
    check_card(card_json)
    assert runs_text(card_json).startswith("You claimed #42#42 · claimed · Ann Customer: My parcel never arrived")
    (show,) = card_json["actions"]
    assert show["type"] == "Action.Execute" and codec.decode(show["data"]) == ("show", 42)
    assert not of_type(card_json, "Input.Text")  # no stale Reply/Note forms


def test_the_link_to_a_live_card_is_a_teams_deep_link_where_teams_has_one() -> None:
    """Formats of MicrosoftDocs/msteams-docs, msteams-platform/concepts/build-and-test/deep-link-teams.md."""
    assert render.message_link("19:abc@thread.tacv2", "1771290107407", tenant_id="t-1") == (
        "https://teams.microsoft.com/l/message/19:abc@thread.tacv2/1771290107407"
        "?tenantId=t-1&parentMessageId=1771290107407&createdTime=1771290107407"
    )
    assert render.message_link("19:abc@thread.v2", "1563480968434", tenant_id=None) == (
        "https://teams.microsoft.com/l/message/19:abc@thread.v2/1563480968434?context=%7B%22contextType%22%3A%22chat%22%7D"
    )
    assert render.message_link("a:1AbCdEf", "1563480968434", tenant_id="t") is None  # a 1:1 chat: not the chat's id
    assert render.message_link("19:abc@thread.tacv2", "17 x", tenant_id=None) is None
    without = render.duplicate_card(42, link=None)
    check_card(without)
    assert without["actions"] == [] and "#42 continues in a newer card" in json.dumps(without)
