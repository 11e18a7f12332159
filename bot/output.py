"""What the CLI prints for a command's answer: plain text (`bot.terminal`) or one JSON document.

Both are made from the same `Result` (its cards, listing, history, notice), so the text and the
JSON never disagree. The JSON's field names are stable and documented in the README ("JSON
output"); `FIELDS` lists them, and a test holds the README and the output to it. Times are ISO
8601 in UTC, ids integers, customer text plain strings: `ensure_ascii` writes every non-ASCII
character (bidi controls among them) as a `\\u` escape and JSON escapes every control character,
so the document printed raw is inert in a terminal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from bot import terminal, verbs
from bot.commands import MAX_LIST_LIMIT
from bot.domain import DomainError, check_limit
from bot.views import Card, HistoryLine, Listing, Notice, Result

CARD_FIELDS = (
    "id",
    "status",
    "priority",
    "source",
    "author",
    "title",
    "text",
    "summary",
    "url",
    "departments",
    "tags",
    "owner",
    "outcome",
    "routing_reason",
    "created_at",
    "reply_status",
    "reply_note",
    "snippet",
    "seen_before",
    "suggested",
    "earlier",
    "earlier_count",
)
HISTORY_FIELDS = ("at", "actor", "event", "what", "detail")
SOURCE_FIELDS = (
    "name",
    "kind",
    "configured",
    "url",
    "every_seconds",
    "last_polled_at",
    "next_poll_at",
    "items_seen",
    "failures",
    "last_error",
    "reply_url",
    "retain_days",
    "retain_days_from",
)
NOTICE_FIELDS = ("command", "text", "title", "lines", "links")
LIST_FIELDS = ("command", "text", "items", "more")

#: Each command's top-level fields, and the fields of its items (documented in the README).
FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "queue": ((*LIST_FIELDS, "counts"), CARD_FIELDS),
    "search": (LIST_FIELDS, CARD_FIELDS),
    "approvals": (LIST_FIELDS, CARD_FIELDS),
    "show": (("command", "text", "conversation", "history"), HISTORY_FIELDS),
    "digest": (NOTICE_FIELDS, ()),
    "stats": (NOTICE_FIELDS, ()),
    "sources": (LIST_FIELDS, SOURCE_FIELDS),
}


def limit_arg(text: str) -> int:
    """`--limit N`: 1 to `MAX_LIST_LIMIT`, or argparse's clear usage error."""
    import argparse

    try:
        return check_limit(int(text) if re.fullmatch(r"[0-9]{1,5}", text.strip()) else -1, most=MAX_LIST_LIMIT)
    except DomainError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 1 to {MAX_LIST_LIMIT}") from None


def iso(at: datetime | None) -> str | None:
    """A time as ISO 8601 in UTC (stored naive times are UTC), or None."""
    if at is None:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def card_json(card: Card) -> dict[str, Any]:
    """A card's fields as the JSON output names them (`CARD_FIELDS`)."""
    return {
        "id": card.id,
        "status": card.status,
        "priority": card.priority,
        "source": card.source,
        "author": card.author,
        "title": card.title,
        "text": card.text,
        "summary": card.summary,
        "url": card.url,
        "departments": list(card.departments),
        "tags": list(card.tags),
        "owner": card.owner,
        "outcome": card.outcome,
        "routing_reason": card.routing_reason,
        "created_at": iso(card.created_at),
        "reply_status": card.reply_status,
        "reply_note": card.reply_note,
        "snippet": [{"text": text, "matched": matched} for text, matched in card.snippet],
        "seen_before": [{"id": s.id, "outcome": s.outcome, "by": s.by, "reply": s.reply} for s in card.seen_before],
        "suggested": [
            {
                "person_id": s.person_id,
                "name": s.name,
                "departments": list(s.departments),
                "resolved": s.resolved,
                "replied": s.replied,
                "asked": s.asked,
            }
            for s in card.suggested
        ],
        "earlier": [{"id": cid, "status": status} for cid, status in card.earlier],
        "earlier_count": card.earlier_count,
    }


def history_json(item: HistoryLine) -> dict[str, Any]:
    """One history line (`HISTORY_FIELDS`): `event` the stored name, `what` it in words."""
    return {"at": iso(item.at), "actor": item.actor, "event": item.event, "what": item.kind, "detail": item.detail}


def notice_json(notice: Notice) -> dict[str, Any]:
    return {"title": notice.title, "lines": list(notice.lines), "links": [{"label": a, "url": b} for a, b in notice.links]}


def result_json(result: Result, *, command: str, limit: int) -> dict[str, Any]:
    """The JSON document of a command's answer."""
    document: dict[str, Any] = {"command": command, "text": result.text}
    if command == "show":
        document["conversation"] = card_json(result.card) if result.card is not None else None
        document["history"] = [history_json(item) for item in result.history]
    elif command in ("digest", "stats"):
        document.update(notice_json(result.notice or Notice(title=result.text)))
    else:
        listing = result.listed(limit)
        document["items"] = [card_json(card) for card in listing.cards]
        document["more"] = listing.more
        if command == "queue":
            document["counts"] = dict(sorted(result.counts.items()))
    return document


def dumps(document: Mapping[str, Any]) -> str:
    """One JSON document, safe to print raw in a terminal (`ensure_ascii`)."""
    return json.dumps(document, ensure_ascii=True, indent=2)


_COMMAND_HINT = re.compile(r"`(" + "|".join(re.escape(v.name) for v in verbs.TABLE) + r") ")


def cli_hint(text: str) -> str:
    """Our own message with its command hints as the CLI takes them: `posted 42` -> `unsilo posted 42`."""
    return _COMMAND_HINT.sub(lambda m: f"`unsilo {m.group(1)} ", text)


def result_lines(result: Result, *, command: str, limit: int) -> list[str]:
    """The text a command's answer prints: `show` the card in full with its history; every other
    command its text, its list (up to `limit`, then "…and N more") and its card in one line.
    A reply waiting for approval shows its text and author under its line."""
    if command == "show" and result.card is not None:
        return terminal.card_lines(result.card) + ["history:", *terminal.history_lines(result.history)]
    lines = terminal.result_lines(Result(result.text, notice=result.notice))
    if result.notice is None:
        lines = [cli_hint(text) for text in lines]  # our own words only: a notice quotes customers
    for card in (listing := result.listed(limit)).cards:
        lines.append(terminal.card_line(card))
        if card.list_note:
            lines.append(f"        {terminal.line(card.list_note, terminal.MAX_DETAIL * 2)}")
        if card.snippet:
            lines.append(f"        {terminal.snippet_line(card)}")
    lines += terminal.listing_lines(Listing((), listing.more))
    if result.card is not None:
        lines.append(terminal.card_line(result.card))
    return lines


def print_result(result: Result, *, command: str, as_json: bool, limit: int, echo: Callable[..., None]) -> None:
    """Print a command's answer as text or as one JSON document."""
    if as_json:
        echo(dumps(result_json(result, command=command, limit=limit)))
        return
    for text in result_lines(result, command=command, limit=limit):
        echo(text)


def sources_json(rows: Iterable[Mapping[str, Any]]) -> str:
    """`unsilo sources --json`: every source (`SOURCE_FIELDS`)."""
    items = [{name: (iso(row[name]) if isinstance(row[name], datetime) else row[name]) for name in SOURCE_FIELDS} for row in rows]
    return dumps(
        {"command": "sources", "text": f"{len(items)} source{'s' if len(items) != 1 else ''}", "items": items, "more": 0}
    )
