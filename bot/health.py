"""What `/healthz` tells: each platform's state as its adapter last saw it, with the reason.

Adapters report through a `PlatformHealth` handle (ok, degraded with a reason that says what
to set or do, disabled with the same); the app reads a snapshot. Cheap: no I/O here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)

OK, DEGRADED, DISABLED, STARTING = "ok", "degraded", "disabled", "starting"


@dataclass
class PlatformState:
    """One platform's state, why, and since when."""

    state: str
    reason: str | None = None
    since: datetime = field(default_factory=lambda: datetime.now(UTC))


class PlatformHealth:
    """The handle an adapter reports its platform's state through (one per platform)."""

    def __init__(self, registry: Health, name: str) -> None:
        self._registry = registry
        self.name = name

    def ok(self) -> None:
        """Everything works."""
        self._registry.set(self.name, OK)

    def starting(self, reason: str) -> None:
        """Not connected yet (e.g. Socket Mode still connecting)."""
        self._registry.set(self.name, STARTING, reason)

    def degraded(self, reason: str) -> None:
        """Enabled but not working; `reason` says why and what to set or do."""
        self._registry.set(self.name, DEGRADED, reason)

    def disabled(self, reason: str) -> None:
        """Switched off; `reason` names what to set to switch it on."""
        self._registry.set(self.name, DISABLED, reason)

    @property
    def state(self) -> PlatformState:
        """The current state."""
        return self._registry.get(self.name)


class Health:
    """Every platform's last known state, in memory (each process tells its own truth)."""

    def __init__(self) -> None:
        self._states: dict[str, PlatformState] = {}

    def platform(self, name: str) -> PlatformHealth:
        """The handle for one platform."""
        self._states.setdefault(name, PlatformState(STARTING, "starting"))
        return PlatformHealth(self, name)

    def set(self, name: str, state: str, reason: str | None = None) -> None:
        """Record a state; a change is logged once (not every time it is repeated)."""
        current = self._states.get(name)
        if current is not None and current.state == state and current.reason == reason:
            return
        self._states[name] = PlatformState(state, reason)
        if state == OK:
            logger.info("%s: ok", name)
        elif state == DISABLED:
            logger.warning("%s disabled: %s", name, reason)
        else:
            logger.warning("%s %s: %s", name, state, reason)

    def get(self, name: str) -> PlatformState:
        """A platform's state (disabled when nobody reported it)."""
        return self._states.get(name) or PlatformState(DISABLED, "not configured")

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Every platform as JSON: state, reason (when not ok), since."""
        return {
            name: {
                "state": s.state,
                "enabled": s.state != DISABLED,
                **({"reason": s.reason} if s.reason and s.state != OK else {}),
                "since": s.since.isoformat(timespec="seconds"),
            }
            for name, s in sorted(self._states.items())
        }
