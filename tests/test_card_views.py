"""What a card shows is decided once, in the core (`bot.views`), and every renderer (Slack, Teams,
the terminal) only maps it: its facts, its summary, its tones, a result's listing."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from adapters.slack import render as slack
from adapters.teams import render as teams
from bot import terminal
from bot.views import MAX_LISTED_CARDS, Card, Fact, Listing, Result, card_for, cut, first_line, when
from storage.models import Conversation, Reply
from tests.cards import NOW, make_card

OUTCOMES = ("answered", "fixed")


def conversation(**overrides: Any) -> Conversation:
    fields: dict[str, Any] = {
        "id": 7,
        "source": "acme-forum",
        "external_id": "e7",
        "author_name": "Ann Customer",
        "title": "Where is my parcel?",
        "text": "Ordered Monday.\nNothing yet.",
        "url": "https://forum.example/t/7",
        "status": "open",
        "priority": "normal",
        "tags": ["delivery"],
        "routing_reason": "rule delivery matched 'parcel'",
        "created_at": NOW,
    }
    fields.update(overrides)
    return Conversation(**fields)


def view(*, owner: str | None = None, reply: Reply | None = None, **overrides: Any) -> Card:
    return card_for(conversation(**overrides), owner=owner, departments=["ops", "support"], reply=reply)


def labels(card: Card) -> list[str]:
    return [fact.label for fact in card.facts]


# --- the core decides ---------------------------------------------------------------


def test_a_card_states_departments_tags_why_and_who_owns_it_in_that_order() -> None:
    card = view()
    assert card.facts == (
        Fact("Departments:", "ops, support"),
        Fact("Tags:", "delivery"),
        Fact("Why:", "rule delivery matched 'parcel'"),
        Fact("Unclaimed"),
    )
    assert view(owner="Bob", status="claimed").facts[-1] == Fact("Claimed by", "Bob", "person")
    assert view(owner="\u200b", status="claimed").facts[-1] == Fact("Claimed by", "(no name)", "person")
    assert labels(view(tags=[" ", "\x00"], routing_reason="")) == ["Departments:", "Unclaimed"]  # blank facts left out


def test_the_outcome_shows_only_once_the_conversation_is_resolved() -> None:
    assert view(status="resolved", owner="Bob", outcome="answered").facts[-1] == Fact("Outcome:", "answered")
    for status in ("open", "claimed", "replied", "dismissed"):
        assert "Outcome:" not in labels(view(status=status, outcome="answered")), status


def test_the_summary_is_the_title_else_the_first_visible_line_of_the_text() -> None:
    assert view().summary == "Where is my parcel?"
    assert view(title="  ", text="\n \u200b\n  Please call me\nback").summary == "Please call me"
    assert view(title="", text="").summary == "(no text)"


def test_urgent_and_high_priorities_ask_for_attention() -> None:
    assert [view(priority=p).tone for p in ("urgent", "high", "normal", "low")] == [
        "attention",
        "attention",
        "default",
        "default",
    ]


@pytest.mark.parametrize(
    ("status", "tone"),
    [
        ("failed", "attention"),
        ("rejected", "attention"),
        ("pending_approval", "warning"),
        ("sent", "good"),
        ("recorded", "default"),
    ],
)
def test_where_the_reply_stands_gives_its_tone(status: str, tone: str) -> None:
    reply = Reply(id=1, conversation_id=7, text="Sorry!", status=status, error="HTTP 500")
    card = view(reply=reply, status="claimed", owner="Bob")
    assert card.reply_status == status and card.reply_note and card.reply_tone == tone
    assert view().reply_tone == "default"


def test_a_list_is_cut_at_twenty_distinct_cards_and_counts_the_rest() -> None:
    cards = tuple(make_card(id=i) for i in range(1, 26))
    listing = Result("25", cards=cards + cards[:3]).listing
    assert MAX_LISTED_CARDS == 20
    assert [c.id for c in listing.cards] == list(range(1, 21)) and listing.more == 5
    assert Listing.of(cards[:20]).more == 0 and Result("").listing == Listing()


def test_the_shared_text_helpers() -> None:
    assert cut("abcdef", 4) == "abc…" and cut("abc", 3) == "abc"
    assert cut("\u2068abcdef\u2069", 5) == "\u2068ab…\u2069"  # an isolate stays closed
    assert first_line("\n  \n  hello \nworld") == "hello"
    assert when(NOW) == "2026-11-16 09:00 UTC" and when(datetime(2026, 1, 2, 3, 4)) == "2026-01-02 03:04" and when(None) == ""
    assert when(datetime(2026, 1, 2, 3, 4, tzinfo=UTC).astimezone()) == "2026-01-02 03:04 UTC"


# --- the renderers map ---------------------------------------------------------------


def decided(card: Card, **values: Any) -> Card:
    """`card` with the core's decisions replaced: what a renderer shows must follow them."""
    for name, value in values.items():
        object.__setattr__(card, name, value)
    return card


def slack_texts(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        found += [v for k, v in node.items() if k == "text" and isinstance(v, str)]
        for v in node.values():
            found += slack_texts(v)
    elif isinstance(node, list):
        for v in node:
            found += slack_texts(v)
    return found


def teams_runs(node: Any) -> str:
    """The text of every TextRun and TextBlock, as read (bidi isolates take no space)."""
    if isinstance(node, list):
        return "".join(teams_runs(v) for v in node)
    if not isinstance(node, dict):
        return ""
    own = node["text"] if node.get("type") in ("TextRun", "TextBlock") else ""
    return (own + "".join(teams_runs(v) for v in node.values())).replace("\u2068", "").replace("\u2069", "")


SHOWN = dict(
    facts=(Fact("Departments:", "legal"), Fact("Claimed by", "Zoe", "person"), Fact("Outcome:", "refunded")),
    summary="Decided summary",
    tone="attention",
    reply_tone="warning",
)


def test_slack_shows_the_cores_facts_summary_and_tones() -> None:
    card = decided(make_card(priority="normal", reply_status="failed", reply_note="Reply held"), **SHOWN)
    message = slack.card_message(card)
    facts = next(b for b in message["blocks"] if b["type"] == "context" and "Departments" in json.dumps(b))
    assert [e["text"] for e in facts["elements"]] == ["Departments: legal", "Claimed by Zoe", "Outcome: refunded"]
    texts = slack_texts(message)
    assert "Decided summary" in message["text"] and any("Decided summary" in t for t in texts)
    assert ":hourglass: Reply held" in texts  # the reply's tone, not its status, picks the mark
    listed = slack.result_message(Result("", cards=tuple(make_card(id=i) for i in range(1, 26))))
    assert "…and 5 more" in slack_texts(listed)


def test_teams_shows_the_cores_facts_summary_and_tones() -> None:
    card = decided(make_card(priority="normal", reply_status="failed", reply_note="Reply held"), **SHOWN)
    card_json = teams.card(card, outcomes=OUTCOMES)
    shown = teams_runs(card_json)
    assert "Departments: legal" in shown and "Claimed by Zoe" in shown and "Outcome: refunded" in shown
    assert "Tags" not in shown and "Why" not in shown and "Unclaimed" not in shown
    assert shown.startswith("#42 Decided summary") and teams.card_summary(card) == "#42 · open · Decided summary"
    runs = [i for b in card_json["body"] for i in b.get("inlines", ())]
    assert next(r for r in runs if r["text"] == "normal")["color"] == "Attention"  # the card's tone
    assert next(r for r in runs if r["text"] == "Reply held")["color"] == "Warning"  # the reply's tone
    listed = teams.result_card(Result("", cards=tuple(make_card(id=i) for i in range(1, 26))), outcomes=OUTCOMES)
    assert "…and 5 more" in teams_runs(listed)


def test_the_terminal_shows_the_cores_facts_summary_tones_and_listing() -> None:
    card = decided(make_card(reply_status="failed", reply_note="Reply could NOT be delivered: HTTP 500"), **SHOWN)
    lines = terminal.card_lines(card)
    assert lines[0] == "(!) #42 · open · priority high"
    assert lines[2:5] == ["  Departments: legal", "  Claimed by Zoe", "  Outcome: refunded"]
    assert lines[5] == "  (…) Reply could NOT be delivered: HTTP 500"
    assert "Decided summary" in terminal.card_line(card)
    listed = terminal.result_lines(Result("25 conversations", cards=tuple(make_card(id=i) for i in range(1, 26))))
    assert listed[0] == "25 conversations" and len(listed) == 1 + 20 + 1 and listed[-1] == "  …and 5 more"
    assert listed[20].startswith("  #20 ")


def test_customer_text_with_terminal_escapes_prints_inert() -> None:
    evil = "refund \x1b[2J\x1b[31mSYSTEM COMPROMISED\x1b]8;;https://evil.example\x07click\x1b]8;;\x07 \x9b31m\u202eok"
    card = make_card(title=f"\x1b[1m{evil}", text=evil, author=f"Eve\x1b[8m{evil}", tags=(evil,), routing_reason=evil)
    result = Result(f"found {evil}", card=card, cards=(card,))
    printed = "\n".join(terminal.result_lines(result) + terminal.card_lines(card) + [terminal.card_line(card)])
    for control in ("\x1b", "\x07", "\x9b", "\u202e"):
        assert control not in printed, repr(control)
    assert "SYSTEM COMPROMISED" in printed
    assert not any(0x00 <= ord(ch) < 0x20 and ch != "\n" or 0x7F <= ord(ch) <= 0x9F for ch in printed)
