"""Plain-text rendering of the platform-neutral views (`bot.views`) for a terminal.

What the CLI prints (`unsilo show`, `queue`, the demo), and the rendering a new platform starts
from before it has its own: it maps a card's facts, summary, tones and a result's listing to
lines of text, and decides nothing about what they show. Every piece of stored text goes
through `line` or `block` here: ESC sequences (colours, screen clears, OSC 8 links), other
control characters and bidi overrides are dropped, so a customer's words print inert.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from bot.views import (
    ELLIPSIS,
    SEEN_BEFORE,
    Batch,
    Card,
    Fact,
    HistoryLine,
    Listing,
    Notice,
    Result,
    Tone,
    cut,
    main_button,
    printable,
    when,
)

WIDTH = 88
MAX_TEXT = 1200
MAX_SUMMARY = 70
MAX_DETAIL = 200
_TONE_MARKS: dict[Tone, str] = {"attention": "(!) ", "warning": "(…) "}


def line(text: str | None, limit: int | None = None) -> str:
    """Stored text as one inert line: control characters (ESC among them) and bidi controls
    dropped, whitespace collapsed, cut to `limit` characters with "…"."""
    flat = " ".join(printable(text).split())
    return cut(flat, limit) if limit else flat


def block(text: str | None, limit: int = MAX_TEXT, *, indent: str = "  | ") -> str:
    """Stored text as an inert, wrapped and indented paragraph."""
    return textwrap.indent(textwrap.fill(line(text, limit), WIDTH), indent, lambda _: True)


def fact(item: Fact) -> str:
    """`label value`, or the label alone."""
    return f"{item.label} {line(item.value, 300)}" if item.value else item.label


def card_line(card: Card) -> str:
    """A card as one line of a list: `#id status [priority] [owner] author: summary`."""
    priority = f" {line(card.priority, 20)}" if card.priority != "normal" else ""
    owner = f" owner {line(card.owner, 80)}" if card.owner else ""
    return (
        f"  #{card.id:<4} {line(card.status, 20):<9}{priority}{owner}  {line(card.author, 80)}: {line(card.summary, MAX_SUMMARY)}"
    )


def snippet_line(card: Card, limit: int = 300) -> str:
    """A search's snippet on one inert line, the matched words [in brackets]; "" when there is none."""
    parts = []
    for text, matched in card.snippet:
        flat = line(text)
        lead = " " if text[:1].isspace() else ""
        trail = " " if text[-1:].isspace() else ""
        parts.append(f"{lead}[{flat}]{trail}" if matched and flat else lead + flat + trail)
    return cut(" ".join("".join(parts).split()), limit) if parts else ""


def seen_lines(card: Card) -> list[str]:
    """The "Seen before" section of a card in full: one resolved conversation a line."""
    if not card.seen_before:
        return []
    return [f"  {SEEN_BEFORE}", *(f"    {line(item.described(), MAX_DETAIL)}" for item in card.seen_before)]


def card_lines(card: Card) -> list[str]:
    """A card in full: its status and priority, where it comes from, its facts, where its reply
    stands, then its title and text, and what it was seen like before."""
    mark = _TONE_MARKS.get(card.tone, "")
    lines = [f"{mark}#{card.id} · {line(card.status, 20)} · priority {line(card.priority, 20)}"]
    origin = f"  from {line(card.author, 80)} via {line(card.source, 80)}"
    if card.created_at:
        origin += f" · {when(card.created_at)}"
    if card.url:
        origin += f" · {line(card.url, 300)}"
    lines.append(origin)
    lines += [f"  {fact(item)}" for item in card.facts if item.label != SEEN_BEFORE]  # in its own section, below
    if card.reply_note:
        lines.append(textwrap.indent(printable(card.reply_note).strip(), "  " + _TONE_MARKS.get(card.reply_tone, "")))
    if card.title.strip():
        lines.append(f"  {line(card.title, 250)}")
    lines.append(block(card.text))
    return lines + seen_lines(card)


def listing_lines(listing: Listing) -> list[str]:
    """The listed cards, one line each, then "…and N more"."""
    lines = []
    for card in listing.cards:
        lines.append(card_line(card))
        if card.snippet:
            lines.append(f"        {snippet_line(card)}")
    if listing.more:
        lines.append(f"  {ELLIPSIS}and {listing.more} more")
    return lines


def batch_lines(batch: Batch) -> list[str]:
    """A channel's batch message: its title, one line per conversation (with what to type to take it), its note."""
    lines = [line(batch.title)]
    for card in batch.listing.cards:
        button = main_button(card)
        lines.append(card_line(card) + (f"  [{line(button.label, 40)}: {button.verb} #{card.id}]" if button else ""))
    if batch.listing.more:
        lines.append(f"  {ELLIPSIS}and {batch.listing.more} more")
    return [*lines, line(batch.note)]


def history_lines(history: Sequence[HistoryLine]) -> list[str]:
    """The audit log, one line per event: when, who, what."""
    lines = []
    for item in history:
        detail = f": {line(item.detail, MAX_DETAIL)}" if item.detail.strip() else ""
        lines.append(f"  {when(item.at)} {line(item.actor, 80) or 'unsilo'} {line(item.kind, 40)}{detail}")
    return lines


def notice_lines(notice: Notice) -> list[str]:
    """A notice's title, its lines, then its links as `label: url`."""
    lines = [line(notice.title) or "Unsilo"]
    lines += [f"  {line(text)}" for text in notice.lines]
    lines += [f"  {line(label)}: {line(url)}" for label, url in notice.links]
    return lines


def result_lines(result: Result, *, full_card: bool = True) -> list[str]:
    """What a handler answered: its text, notice, listed cards, its card (in full, or as one
    line when `full_card` is False) and history."""
    lines: list[str] = []
    if result.notice is None or result.text != result.notice.title:
        lines += [printable(text) for text in result.text.split("\n")]
    if result.notice is not None:
        lines += notice_lines(result.notice)
    lines += listing_lines(result.listing)
    if result.card is not None:
        lines += card_lines(result.card) if full_card else [card_line(result.card)]
    if result.history:
        lines += ["history:", *history_lines(result.history)]
    return lines
