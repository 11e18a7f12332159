"""Slack rendering: what people see is escaped, within Block Kit's limits, and its buttons decode.

Every message and view is checked twice: by slack_sdk's own models (parse, `validate_json`,
and `to_dict`, which is what validates nested elements) and by our own walk over the limits
slack_sdk does not check (blocks per message, options given as dicts, context text...).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from adapters.slack.render import (
    ACTION_PREFIX,
    card_message,
    escape,
    home_view,
    notice_message,
    report_modal,
    result_message,
    units,
    values_of,
)
from bot import codec, verbs, views
from bot.domain import DEFAULT_OUTCOMES, Status
from bot.views import Button, Card, HistoryLine, Notice, Result
from tests.cards import NOW, conversation_buttons, make_card
from tests.conftest import reference_dir
from tests.slack_support import resolve_modal, text_modal

NASTY = [
    "<!channel>",
    "<!here>",
    "<@U123>",
    "<https://evil.example|bank>",
    "&",
    "x" * 10000,
    "\x00\x07\x1b",
    "<!subteam^S123>",
    "&amp;lt;",
    "> quoted\n>> more",
    "a\r\nb\u0085c\x7f",
    "&" * 4000,
    "<" * 1200,
    "   \n\t  ",
]
HOSTILE_URLS = [
    "https://x.example/a|<!channel>",
    "https://x.example/a>|<@U123>",
    "http://x.example/?a=1&b=<!here>",
    "https://x.example/" + "|" * 2000,
    "javascript:alert(1)",
    "HTTPS://X.EXAMPLE/Path",
    "https://x.example/a b\n<!channel>",
    "",
]
OUR_LINK = re.compile(r"<(?i:https?)://[^\s|<>]+\|[^<>]+>")  # a link we built: safe URL, escaped label
BARE_AMP = re.compile(r"&(?!amp;|lt;|gt;)")


# --- checking what we render -------------------------------------------------------


def walk(node: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """Every (key, value) pair in a JSON tree, depth first."""
    yield key, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from walk(v, k)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item, key)


def dicts(node: Any) -> Iterator[dict[str, Any]]:
    return (value for _, value in walk(node) if isinstance(value, dict))


def text_fields(node: Any) -> list[str]:
    """Every string shown to people as text (text objects and the top-level fallback)."""
    return [value for key, value in walk(node) if key == "text" and isinstance(value, str)]


def check_limits(node: Any, *, max_blocks: int) -> None:
    """The limits slack_sdk does not check for us, and the ones it does (belt and braces)."""
    blocks = node["blocks"]
    assert 1 <= len(blocks) <= max_blocks
    action_ids: list[str] = []
    for obj in dicts(node):
        for key in ("action_id", "block_id", "callback_id"):
            if key in obj:
                assert 1 <= len(obj[key]) <= 255, (key, obj[key][:80])
        if "action_id" in obj:
            action_ids.append(obj["action_id"])
        kind = obj.get("type")
        if kind == "section":
            assert 1 <= units(obj["text"]["text"]) <= 3000
        elif kind == "button":
            assert units(obj["text"]["text"]) <= 75 and units(obj.get("value", "")) <= 2000
            assert units(obj.get("url", "")) <= 3000
        elif kind == "context":
            assert 1 <= len(obj["elements"]) <= 10
            assert all(1 <= units(e["text"]) <= 3000 for e in obj["elements"])
        elif kind == "actions":
            assert 1 <= len(obj["elements"]) <= 25
        elif kind == "static_select":
            assert 1 <= len(obj["options"]) <= 100
            assert all(len(o["text"]["text"]) <= 75 and 1 <= len(o["value"]) <= 150 for o in obj["options"])
        elif kind in ("plain_text", "mrkdwn"):
            assert obj["text"].strip(), "Slack refuses empty text objects"
            assert kind == "plain_text" or obj.get("verbatim") is True, "Slack would auto-link inside it"
    assert len(action_ids) == len(set(action_ids)), "action_id must be unique within a message"


def check_block(block: dict[str, Any]) -> None:
    """slack_sdk's own validation, with the nested elements included and nothing dropped."""
    parsed = Block.parse(block)
    assert parsed is not None, f"slack_sdk does not know block type {block.get('type')!r}"
    parsed.validate_json()  # this block's own validators only
    assert parsed.to_dict() == block  # validates nested elements; a dropped (misspelt) key shows here


def check_message(message: dict[str, Any]) -> None:
    assert set(message) == {"text", "blocks"}
    assert 1 <= units(message["text"]) <= 3000 and message["text"].strip()
    for block in message["blocks"]:
        check_block(block)
    check_limits(message, max_blocks=50)
    json.dumps(message)


def check_view(view: dict[str, Any]) -> None:
    parsed = View(**view)
    parsed.validate_json()
    assert parsed.to_dict() == view
    check_limits(view, max_blocks=100)
    if view["type"] == "modal":
        for key in ("title", "submit", "close"):
            assert 1 <= units(view[key]["text"]) <= 24
        assert units(view["private_metadata"]) <= 3000


def check_no_live_markup(node: Any, *, links_allowed: int = 0) -> None:
    """No mention, broadcast or link reaches Slack except the links we built ourselves."""
    links = 0
    for text in text_fields(node):
        found = OUR_LINK.findall(text)
        links += len(found)
        rest = OUR_LINK.sub("", text)
        assert "<" not in rest and ">" not in rest, rest[:200]
        assert not BARE_AMP.search(text), "every & must start an entity (none cut in half)"
        assert not any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text)
    assert links <= links_allowed


def buttons_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [obj for obj in dicts(message) if obj.get("type") == "button"]


# --- slack_sdk's validation is real (and where it stops) ---------------------------


def test_slack_sdk_rejects_a_section_that_is_too_long() -> None:
    block = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}
    with pytest.raises(SlackObjectFormationError, match="3000"):
        Block.parse(block).validate_json()
    with pytest.raises(SlackObjectFormationError):
        check_block(block)


def test_slack_sdk_checks_nested_elements_only_in_to_dict() -> None:
    block = {
        "type": "actions",
        "elements": [{"type": "button", "text": {"type": "plain_text", "text": "x" * 76}, "action_id": "a"}],
    }
    parsed = Block.parse(block)
    parsed.validate_json()  # passes: validate_json does not descend into elements
    with pytest.raises(SlackObjectFormationError, match="75"):
        parsed.to_dict()
    with pytest.raises(SlackObjectFormationError, match="24"):
        View(type="modal", title={"type": "plain_text", "text": "x" * 25}, blocks=[{"type": "divider"}]).validate_json()


def test_what_slack_sdk_does_not_check_our_walk_does() -> None:
    options = [{"text": {"type": "plain_text", "text": "y" * 80}, "value": "z" * 200}]
    select = {
        "type": "input",
        "block_id": "d",
        "label": {"type": "plain_text", "text": "L"},
        "element": {"type": "static_select", "action_id": "d", "options": options},
    }
    assert Block.parse(select).to_dict() == select  # options given as dicts are not validated
    assert Block.parse({"type": "no_such_block"}) is None  # unknown types vanish silently
    with pytest.raises(AssertionError):
        check_limits({"blocks": [select]}, max_blocks=50)
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}
    with pytest.raises(AssertionError):
        check_message({"text": "hi", "blocks": [section] * 51})  # no model counts a message's blocks


# --- escaping ----------------------------------------------------------------------


def test_escape_touches_only_the_three_characters_and_drops_control_characters() -> None:
    assert escape("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"
    assert escape("*bold* _it_ `code` :smile: \"q\" 'a'") == "*bold* _it_ `code` :smile: \"q\" 'a'"
    assert escape("a\x00b\x07c\x1b\r\nd\te\x7f") == "ab" + "c\nd\te"
    assert escape("&amp;") == "&amp;amp;"


# --- cards -------------------------------------------------------------------------


def test_an_open_card_shows_everything_needed_to_act() -> None:
    message = card_message(make_card())
    check_message(message)
    check_no_live_markup(message, links_allowed=1)
    texts = "\n".join(text_fields(message))
    for expected in (
        "#42",
        "My parcel never arrived",
        "high",
        "open",
        "acme-forum",
        "Ann Customer",
        "&gt; \u2068I ordered on Monday",
        "<https://forum.example/t/123|Read the original>",
        "Departments: ops, support",
        "Tags: delivery",
        "rule delivery matched",
        "Unclaimed",
    ):
        assert expected in texts, expected
    assert message["text"].startswith("#42")


def test_buttons_follow_the_status_and_decode_back() -> None:
    labels = {}
    for status in (Status.OPEN, Status.CLAIMED, Status.RESOLVED):
        message = card_message(make_card(status=status.value, owner="Bob" if status != Status.OPEN else None))
        check_message(message)
        buttons = buttons_of(message)
        labels[status] = [b["text"]["text"] for b in buttons]
        for element in buttons:
            verb, conversation_id = codec.decode(element["value"])
            assert element["action_id"] == f"{ACTION_PREFIX}{verb}:{conversation_id}"
            assert conversation_id == 42
    assert labels[Status.OPEN] == ["Claim", "Reply", "Note", "Not for us", "Dismiss", "Open original"]
    assert "Release" in labels[Status.CLAIMED] and "Claim" not in labels[Status.CLAIMED]
    assert labels[Status.RESOLVED] == ["Note", "Open original"]


def test_button_styles_and_the_url_button() -> None:
    buttons = {b["text"]["text"]: b for b in buttons_of(card_message(make_card()))}
    assert buttons["Claim"]["style"] == "primary"
    assert buttons["Dismiss"]["style"] == "danger"
    assert "style" not in buttons["Note"] and "url" not in buttons["Note"]
    assert buttons["Open original"]["url"] == "https://forum.example/t/123"
    assert buttons["Open original"]["action_id"] == "unsilo:open:42"


def test_claimed_card_names_the_owner_and_resolved_card_its_outcome() -> None:
    claimed = "\n".join(text_fields(card_message(make_card(status="claimed", owner="Bob <@U999>"))))
    assert "Claimed by Bob &lt;@U999&gt;" in claimed and "Unclaimed" not in claimed
    resolved = card_message(make_card(status="resolved", owner="Bob", outcome="answered"))
    check_message(resolved)
    assert "Outcome: answered" in "\n".join(text_fields(resolved))


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_a_hostile_url_cannot_inject_a_label_or_a_mention(url: str) -> None:
    message = card_message(make_card(url=url))
    check_message(message)
    check_no_live_markup(message, links_allowed=1)
    everything = json.dumps(message)
    for live in ("<!channel>", "<!here>", "<@U123>", "|<"):
        assert live not in everything
    links = [OUR_LINK.search(t) for t in text_fields(message)]
    for button in buttons_of(message):
        if "url" in button:
            assert not set(button["url"]) & set("|<> \n")
    if not url.lower().startswith(("http://", "https://")):
        assert not any(links) and not any("url" in b for b in buttons_of(message))


def test_duplicate_buttons_are_rendered_once() -> None:
    claim = Button("Claim", "claim", 42, "primary")
    message = card_message(make_card(buttons=(claim, claim)))
    check_message(message)
    assert len(buttons_of(message)) == 1


def test_long_text_is_cut_with_an_ellipsis_and_keeps_its_link() -> None:
    message = card_message(make_card(text="x" * 10000, title="t" * 5000, routing_reason="r" * 5000))
    check_message(message)
    quote = message["blocks"][2]["text"]["text"]
    assert len(quote) <= 3000 and "…\n<https://forum.example/t/123|Read the original>" in quote


# --- results and home --------------------------------------------------------------


def test_result_lists_at_most_twenty_cards_then_says_how_many_more() -> None:
    cards = tuple(make_card(id=i, author=f"<@U{i}>", title=f"title {i}") for i in range(1, 46))
    lines = tuple(HistoryLine(at=NOW + timedelta(minutes=i), actor="<!here>", kind="noted", detail="d" * 400) for i in range(500))
    message = result_message(Result("Found 45 <!channel>", card=cards[0], cards=cards, history=lines))
    check_message(message)
    check_no_live_markup(message, links_allowed=1)
    texts = text_fields(message)
    assert "…and 25 more" in texts
    assert any(t.startswith("*#20* · open · &lt;@U20&gt;: \u2068title 20\u2069") for t in texts)
    assert not any(t.startswith("*#21* ·") for t in texts)
    assert any("…and" in t and "more" in t and "noted" in t for t in texts)  # history cut


def test_a_plain_result_is_one_section() -> None:
    message = result_message(Result("#42 is already claimed by Bob"))
    check_message(message)
    assert message == {
        "text": "#42 is already claimed by Bob",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "#42 is already claimed by Bob", "verbatim": True}}],
    }
    check_message(result_message(Result("")))


def test_home_tab_has_three_parts_within_limits() -> None:
    mine = Result("", cards=tuple(make_card(id=i, status="claimed", owner="me") for i in range(1, 40)))
    queue_cards = tuple(make_card(id=100 + i, created_at=NOW - timedelta(hours=i)) for i in range(60))
    queue = Result("", cards=queue_cards, counts={"support": 4, "legal<!here>": 1})
    recent = Result("", cards=tuple(make_card(id=200 + i, status="resolved", outcome="fixed") for i in range(30)))
    view = home_view(mine=mine, queue=queue, recent=recent)
    check_view(view)
    check_no_live_markup(view)
    headers = [b["text"]["text"] for b in view["blocks"] if b["type"] == "header"]
    assert headers == ["Your conversations", "Open by department", "Recent outcomes"]
    texts = text_fields(view)
    assert any("support: 4" in t and "legal&lt;!here&gt;: 1" in t for t in texts)
    queue_ids = [int(m.group(1)) for t in texts if (m := re.match(r"\*#(1\d\d)\*", t))]
    assert queue_ids == list(range(100, 120))  # in the core's order (urgent first, then oldest first): not re-sorted
    assert any("resolved (fixed)" in t for t in texts)


def test_an_empty_home_tab_is_still_valid() -> None:
    view = home_view(mine=Result("You own nothing."), queue=Result(""), recent=Result(""))
    check_view(view)
    assert "You own nothing." in text_fields(view)


# --- modals ------------------------------------------------------------------------


def test_text_modal_carries_the_conversation_and_limits_its_labels() -> None:
    view = text_modal(
        verb="reply",
        conversation_id=42,
        title="Reply to the customer on #42 please",
        label="Your reply",
        submit="Send the reply to the customer",
        initial="Hello <b>",
    )
    check_view(view)
    assert view["callback_id"] == "unsilo_reply"
    assert json.loads(view["private_metadata"]) == {"id": 42}
    (block,) = view["blocks"]
    assert (block["block_id"], block["element"]["action_id"], block["element"]["multiline"]) == ("text", "text", True)
    assert block["element"]["initial_value"] == "Hello <b>"  # plain_text input: not mrkdwn, kept as typed
    assert view["title"]["text"].endswith("…") and len(view["title"]["text"]) == 24


def test_resolve_modal_offers_the_outcomes() -> None:
    view = resolve_modal(conversation_id=7, outcomes=[*DEFAULT_OUTCOMES, "x" * 200])
    check_view(view)
    assert view["callback_id"] == "unsilo_resolve"
    assert json.loads(view["private_metadata"]) == {"id": 7}
    outcome, text = view["blocks"]
    assert (outcome["block_id"], outcome["element"]["action_id"], outcome["optional"]) == ("outcome", "outcome", False)
    assert [o["value"] for o in outcome["element"]["options"]] == list(DEFAULT_OUTCOMES)
    assert (text["block_id"], text["element"]["action_id"], text["optional"]) == ("text", "text", True)
    with pytest.raises(ValueError):
        resolve_modal(conversation_id=7, outcomes=[])


def test_report_modal_quotes_the_message_and_remembers_where_it_was() -> None:
    view = report_modal(
        departments=["support", "legal"],
        text="<!channel> help me & now",
        link="https://acme.slack.com/archives/C1/p1",
        channel="C1",
        message_ts="1767326126.896109",
    )
    check_view(view)
    check_no_live_markup(view)
    assert view["callback_id"] == "unsilo_report"
    assert json.loads(view["private_metadata"]) == {
        "channel": "C1",
        "ts": "1767326126.896109",
        "link": "https://acme.slack.com/archives/C1/p1",
        "text": "<!channel> help me & now",
    }
    quote, department, link = view["blocks"]
    assert quote["text"]["text"] == "&gt; \u2068&lt;!channel&gt; help me &amp; now\u2069"
    assert (department["block_id"], department["element"]["action_id"], department["optional"]) == (
        "department",
        "department",
        True,
    )
    assert (link["block_id"], link["element"]["action_id"], link["optional"]) == ("link", "link", True)
    assert link["element"]["initial_value"] == "https://acme.slack.com/archives/C1/p1"


def test_report_modal_survives_huge_input_and_no_departments() -> None:
    long_link = "https://x.example/" + "a" * 4000
    view = report_modal(departments=[], text="x" * 10000, link=long_link, channel="C1", message_ts="1.2")
    check_view(view)
    assert [b.get("block_id") for b in view["blocks"]] == [None, "link"]
    meta = json.loads(view["private_metadata"])
    assert (meta["channel"], meta["ts"], meta["link"]) == ("C1", "1.2", "")
    assert meta["text"] == "x" * len(meta["text"]) and 2900 < len(meta["text"]) < 3000
    quoted = report_modal(departments=[], text='"\\\n' * 2000, link="", channel="C1", message_ts="1.2")
    check_view(quoted)  # JSON escaping makes each char longer; the cut still fits


# --- reading submissions -----------------------------------------------------------


def test_values_of_reads_recorded_view_submissions() -> None:
    reference = reference_dir() / "slack"
    simple = json.loads((reference / "view_submission.json").read_text())
    assert values_of(simple["view"]) == {"hspI": "test"}
    recorded = json.loads((reference / "view_submission.recorded.json").read_text())
    assert values_of(recorded["view"]) == {"message": "Hello!", "category": "feature", "email": "user@example.com"}
    assert values_of(recorded["view"]["state"]) == values_of(recorded["view"])


def test_values_of_reads_our_resolve_modal_with_an_empty_note() -> None:
    view = resolve_modal(conversation_id=7, outcomes=DEFAULT_OUTCOMES)
    view["state"] = {
        "values": {
            "outcome": {
                "outcome": {
                    "type": "static_select",
                    "selected_option": {"text": {"type": "plain_text", "text": "fixed"}, "value": "fixed"},
                }
            },
            "text": {"text": {"type": "plain_text_input", "value": None}},
        }
    }
    assert values_of(view) == {"outcome": "fixed", "text": ""}
    view["state"]["values"]["outcome"]["outcome"]["selected_option"] = None
    assert values_of(view)["outcome"] == ""


# --- any text at all ---------------------------------------------------------------

nasty_text = st.one_of(
    st.text(),
    st.sampled_from(NASTY),
    st.builds(lambda a, b, c: a + b + c, st.text(max_size=30), st.sampled_from(NASTY), st.text(max_size=30)),
)


@st.composite
def cards(draw: st.DrawFn) -> Card:
    status = draw(st.sampled_from(list(Status))).value
    card_id = draw(st.integers(min_value=1, max_value=2**31 - 1))
    url = draw(st.one_of(st.sampled_from(HOSTILE_URLS), nasty_text))
    return make_card(
        id=card_id,
        status=status,
        url=url,
        text=draw(nasty_text),
        title=draw(nasty_text),
        author=draw(nasty_text),
        source=draw(nasty_text),
        routing_reason=draw(nasty_text),
        owner=draw(st.one_of(st.none(), nasty_text)),
        outcome=draw(st.one_of(st.none(), nasty_text)),
        priority=draw(st.one_of(st.sampled_from(["low", "normal", "high", "urgent"]), nasty_text)),
        tags=tuple(draw(st.lists(nasty_text, max_size=4))),
        departments=tuple(draw(st.lists(nasty_text, max_size=4))),
        buttons=conversation_buttons(status, card_id, url),
    )


@settings(max_examples=200, deadline=None)
@given(card=cards(), others=st.lists(cards(), max_size=3), words=nasty_text)
def test_any_text_renders_escaped_and_within_limits(card: Card, others: list[Card], words: str) -> None:
    message = card_message(card)
    check_message(message)
    check_no_live_markup(message, links_allowed=1)
    for element in buttons_of(message):
        assert codec.decode(element["value"]) == (element["action_id"].split(":")[1], card.id)

    history = (HistoryLine(at=NOW, actor=words, kind="noted", detail=words),) * 3
    answer = result_message(Result(words, card=card, cards=(card, *others), history=history))
    check_message(answer)
    check_no_live_markup(answer, links_allowed=1)

    home = home_view(
        mine=Result(words, cards=tuple(others)),
        queue=Result(words, cards=(card,), counts={words: 3}),
        recent=Result(words, cards=(card, *others)),
    )
    check_view(home)
    check_no_live_markup(home)

    report = report_modal(departments=[words, "support"], text=words, link=words, channel="C1", message_ts="1.2")
    check_view(report)
    meta = json.loads(report["private_metadata"])
    assert words.startswith(meta["text"]) and meta["ts"] == "1.2"
    check_no_live_markup({"blocks": report["blocks"][:1]})  # the quote; inputs are plain text, not mrkdwn
    check_view(text_modal(verb="note", conversation_id=card.id, title=words, label=words, submit=words, initial=words))


REPLY_BUTTONS = (views.button(verbs.VERBS["approve"], 42), views.button(verbs.VERBS["reject"], 42))


def test_a_held_reply_shows_on_the_card_with_approve_and_reject() -> None:
    card = make_card(
        reply_status="pending_approval",
        reply_note="Reply waiting for approval (sensitive): “<!channel> hi”",
        buttons=REPLY_BUTTONS + conversation_buttons("replied"),
    )
    message = card_message(card)
    check_message(message)
    check_no_live_markup(message, links_allowed=1)
    text = json.dumps(message)
    assert "Reply waiting for approval" in text and "&lt;!channel&gt;" in text
    assert [codec.decode(b["value"])[0] for b in buttons_of(message)][:2] == ["approve", "reject"]


def test_a_notice_mentions_only_real_slack_ids_and_escapes_everything_else() -> None:
    notice = Notice(
        title="#7 is still unclaimed <!here>",
        lines=("“<@U999> <https://evil|click>” & more",) * 3,
        mentions=(("slack:UCAROL", "Carol"), ("teams:aad-1", "Ann"), ("slack:<!channel>", "all")),
        links=(("#7 original", "https://forum.example/t/7"), ("bad", "javascript:alert(1)")),
    )
    message = notice_message(notice)
    check_message(message)
    text = json.dumps(message)
    assert "<@UCAROL>" in text and "<!channel>" not in text and "<!here>" not in text
    assert "&lt;@U999&gt;" in text and "javascript" not in text
    check_no_live_markup({"blocks": message["blocks"][1:]}, links_allowed=1)


@settings(max_examples=100, deadline=None)
@given(title=nasty_text, lines=st.lists(nasty_text, max_size=60), note=nasty_text, url=st.sampled_from(HOSTILE_URLS))
def test_any_notice_or_reply_state_renders_escaped_and_within_limits(title: str, lines: list[str], note: str, url: str) -> None:
    message = notice_message(Notice(title=title, lines=tuple(lines), links=((title, url),)))
    check_message(message)
    check_no_live_markup(message, links_allowed=1)
    answer = result_message(Result(title, notice=Notice(title=title, lines=tuple(lines))))
    check_message(answer)
    check_no_live_markup(answer)
    card = make_card(reply_status="failed", reply_note=note, url=url)
    check_message(card_message(card))
    check_no_live_markup(card_message(card), links_allowed=1)


# --- issue 11: verbatim text, UTF-16 limits, bidi controls ---------------------------------


def test_every_mrkdwn_object_is_verbatim_so_slack_links_nothing_in_customer_text() -> None:
    card = make_card(text="see https://evil.example and #general", title="ask #finance", author="www.evil.example")
    for node in (
        card_message(card),
        result_message(Result("x", card=card, cards=(card,))),
        home_view(mine=Result("", cards=(card,)), queue=Result("", counts={"ops": 1}), recent=Result("")),
    ):
        mrkdwn = [obj for obj in dicts(node) if obj.get("type") == "mrkdwn"]
        assert mrkdwn and all(obj["verbatim"] is True for obj in mrkdwn)


def test_limits_are_counted_in_utf16_units_an_emoji_is_two() -> None:
    assert units("a😀é") == 4
    message = card_message(make_card(text="😀" * 4000, title="🎉" * 400, routing_reason="🚚" * 400))
    check_message(message)
    quote = message["blocks"][2]["text"]["text"]
    assert 2900 < units(quote) <= 3000 and quote.count("😀") < 1500  # 3,000 units hold under 1,500 emoji
    long_option = "é" * 140 + "😀" * 6  # 146 code points, 152 UTF-16 units: over the 150 an option takes
    modal = resolve_modal(conversation_id=1, outcomes=["answered", long_option])
    assert [o["value"] for o in modal["blocks"][0]["element"]["options"]] == ["answered"]


def test_bidi_controls_cannot_reorder_the_card_and_an_invisible_name_shows_as_no_name() -> None:
    rlo, pdf, zwsp, lri = "\u202e", "\u202c", "\u200b", "\u2066"
    card = make_card(
        author=f"{rlo}Ann{pdf} Customer",
        owner=f"{zwsp}{zwsp}",
        title=f"{rlo}refund 2024-01-02",
        text=f"{lri}my order{rlo} 12:30\nsecond line",
    )
    message = card_message(card)
    check_message(message)
    shown = json.dumps(message, ensure_ascii=False)
    for control in (rlo, pdf, lri):
        assert control not in shown
    texts = "\n".join(text_fields(message))
    assert "from Ann Customer" in texts and "Claimed by (no name)" in texts
    assert "*#42* \u2068refund 2024-01-02\u2069" in texts  # the title isolated from "#42" and the badges
    assert "&gt; \u2068my order 12:30\u2069\n&gt; \u2068second line\u2069" in texts
    listed = result_message(Result("", cards=(card,)))
    assert "Ann Customer: \u2068refund 2024-01-02\u2069" in json.dumps(listed, ensure_ascii=False)
