"""Platform-neutral views that handlers answer with and adapters render."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bot.domain import Status
from storage.models import Conversation, Event, Note, Reply


@dataclass(frozen=True)
class Button:
    """A button that carries one encoded command (`bot.codec`) or opens a URL."""

    label: str
    verb: str
    conversation_id: int
    style: str = "default"
    url: str | None = None


@dataclass(frozen=True)
class Card:
    """Everything a person needs to see to act on a conversation."""

    id: int
    status: str
    source: str
    author: str
    title: str
    text: str
    url: str
    priority: str
    tags: tuple[str, ...]
    departments: tuple[str, ...]
    routing_reason: str
    owner: str | None
    outcome: str | None
    created_at: datetime | None
    buttons: tuple[Button, ...]


@dataclass(frozen=True)
class HistoryLine:
    """One audit-log line: when, who, what."""

    at: datetime
    actor: str
    kind: str
    detail: str


@dataclass(frozen=True)
class Result:
    """What a handler answers: a message for the asker, plus cards or history to show."""

    text: str
    card: Card | None = None
    cards: tuple[Card, ...] = ()
    history: tuple[HistoryLine, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)


_BUTTONS: dict[str, tuple[tuple[str, str, str], ...]] = {
    Status.OPEN: (("Claim", "claim", "primary"), ("Reply", "reply", "default"), ("Note", "note", "default"), ("Dismiss", "dismiss", "danger")),
    Status.CLAIMED: (("Release", "release", "default"), ("Reply", "reply", "primary"), ("Note", "note", "default"), ("Resolve", "resolve", "default"), ("Dismiss", "dismiss", "danger")),
    Status.REPLIED: (("Release", "release", "default"), ("Reply", "reply", "default"), ("Note", "note", "default"), ("Resolve", "resolve", "primary")),
    Status.RESOLVED: (("Note", "note", "default"),),
    Status.DISMISSED: (("Note", "note", "default"),),
}


def buttons_for(conversation: Conversation) -> tuple[Button, ...]:
    """The actions a card offers in the conversation's current status."""
    assert conversation.id is not None
    buttons = [
        Button(label, verb, conversation.id, style)
        for label, verb, style in _BUTTONS[Status(conversation.status)]
    ]
    if conversation.url:
        buttons.append(Button("Open original", "open", conversation.id, url=conversation.url))
    return tuple(buttons)


def card_for(conversation: Conversation, *, owner: str | None, departments: list[str]) -> Card:
    """The card of a conversation as it is now."""
    assert conversation.id is not None
    author = conversation.author_name or conversation.author_handle or "unknown author"
    return Card(
        id=conversation.id,
        status=conversation.status,
        source=conversation.source,
        author=author,
        title=conversation.title,
        text=conversation.text,
        url=conversation.url,
        priority=conversation.priority,
        tags=tuple(conversation.tags),
        departments=tuple(departments),
        routing_reason=conversation.routing_reason,
        owner=owner,
        outcome=conversation.outcome,
        created_at=conversation.created_at or conversation.ingested_at,
        buttons=buttons_for(conversation),
    )


def history_for(
    events: list[Event], notes: list[Note], replies: list[Reply]
) -> tuple[HistoryLine, ...]:
    """The audit log as readable lines (notes and replies are shown with their text)."""
    note_text = {n.id: n.text for n in notes}
    reply_text = {r.id: (r.text, r.status) for r in replies}
    lines = []
    for event in events:
        detail = ""
        data = event.data or {}
        if event.kind == "noted":
            detail = note_text.get(data.get("note_id"), "")
        elif event.kind == "replied":
            text, status = reply_text.get(data.get("reply_id"), ("", ""))
            detail = f"{text} [{status}]" if status else text
        elif event.kind == "resolved":
            detail = data.get("outcome", "") + (f": {data['text']}" if data.get("text") else "")
        elif event.kind in ("dismissed",):
            detail = data.get("reason", "")
        elif event.kind == "reassigned":
            detail = f"to {data.get('to', '')}"
        elif event.kind in ("ingested", "reported"):
            detail = f"from {data.get('source', '')} to {', '.join(data.get('departments', []))}"
        lines.append(HistoryLine(at=event.at, actor=event.actor_name or "unsilo", kind=event.kind, detail=detail))
    return tuple(lines)
