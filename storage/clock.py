"""The store's notion of "now": aware UTC, one definition for the whole project."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """Current time, timezone-aware UTC (SQLModel's `UTCDateTime` columns require it)."""
    return datetime.now(UTC)
