"""A chat platform as the core sees it: the one object each `adapters/<name>/` exports (`PLATFORM`).

The core never names a platform: the composition root (`bot/bootstrap.py`) lists them, and
the config, the store and the service take that list. An adapter package defines its
`Platform` with cheap functions (settings, why disabled) and imports its SDK only in
`mount`, so a platform that does not start never loads it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from aiohttp import web

    from bot.bus import Bus
    from bot.health import Health
    from bot.metrics import Metrics
    from bot.outbox import Sender


class PlatformSettings(Protocol):
    """A platform's own settings, read from the environment by its adapter."""

    def missing(self) -> str | None:
        """Why the platform cannot start, naming what to set; None when it can."""
        ...


@dataclass(frozen=True)
class Wiring:
    """What a platform gets when it starts, never the container: the command bus, the config's
    outcomes and department names, the health registry it reports its state to (under its name), and
    the metrics it reports its answers' latency to."""

    bus: Bus
    outcomes: tuple[str, ...]
    departments: tuple[str, ...]
    health: Health
    metrics: Metrics


class Mount(Protocol):
    """Serve the platform on the service's app and return its outbox sender."""

    def __call__(self, app: web.Application, settings: PlatformSettings, wiring: Wiring, /) -> Sender: ...


class Manifest(Protocol):
    """Write the platform's app package to `out` for `app_id` (empty: the one its settings name) and
    say what was written and what to do with it; a `ValueError` says what is missing."""

    def __call__(self, settings: PlatformSettings, /, *, out: Path, app_id: str) -> str: ...


@dataclass(frozen=True)
class Platform:
    """One chat platform: its name, its settings, how it starts, and what the config calls its accounts."""

    name: str  # destinations are `<name>:<channel>`, accounts `<name>:<user id>`; its sender and /healthz key
    title: str  # how people call it, in messages ("Slack")
    account: str  # what identifies a person there, in messages ("user id")
    settings_from: Callable[[Mapping[str, str]], PlatformSettings]
    mount: Mount
    manifest: Manifest | None = None  # `unsilo manifest <name>`, when it has an app package to build
    chat: bool = True  # people are mentioned under its accounts


def chat_names(platforms: Sequence[Platform]) -> tuple[str, ...]:
    """The names of the platforms whose accounts people are mentioned under."""
    return tuple(p.name for p in platforms if p.chat)
