"""Views to render in the renderer tests of every platform: realistic cards and their real buttons."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.domain import Status
from bot.views import Button, Card, buttons_for
from storage.models import Conversation

NOW = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


def conversation_buttons(status: str, conversation_id: int = 42, url: str = "https://x.example/post/1") -> tuple[Button, ...]:
    """The buttons the core really offers for a status (no database: just the model object)."""
    return buttons_for(Conversation(id=conversation_id, source="feed", external_id="e1", status=status, url=url))


def make_card(**overrides: Any) -> Card:
    """A realistic card; tests override the fields they are about."""
    fields: dict[str, Any] = {
        "id": 42,
        "status": Status.OPEN.value,
        "source": "acme-forum",
        "author": "Ann Customer",
        "title": "My parcel never arrived",
        "text": "I ordered on Monday and the courier says delivered.\nIt was not.",
        "url": "https://forum.example/t/123",
        "priority": "high",
        "tags": ("delivery",),
        "departments": ("ops", "support"),
        "routing_reason": "rule delivery matched 'courier'",
        "owner": None,
        "outcome": None,
        "created_at": NOW,
    }
    fields.update(overrides)
    if "buttons" not in fields:
        fields["buttons"] = conversation_buttons(fields["status"], fields["id"], fields["url"])
    return Card(**fields)
