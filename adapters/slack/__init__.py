"""Slack: the Bolt app mounted on the service, Block Kit rendering, the outbox sender.

This package's `PLATFORM` is all the core knows of Slack. Importing it is cheap: Bolt and the
Slack SDK are imported by `mount`, when Slack starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from adapters.slack.settings import SlackSettings
from bot.platform import Platform, PlatformSettings, Wiring

if TYPE_CHECKING:
    from aiohttp import web

    from bot.outbox import Sender


def _settings(env: Mapping[str, str]) -> SlackSettings:
    return SlackSettings.from_env(env)


def _mount(app: web.Application, settings: PlatformSettings, wiring: Wiring, /) -> Sender:
    """Start Slack (see `service.mount`); the SDK is imported here, when Slack starts."""
    from adapters.slack import service

    assert isinstance(settings, SlackSettings), settings
    return service.mount(
        app,
        settings=settings,
        bus=wiring.bus,
        outcomes=wiring.outcomes,
        departments=wiring.departments,
        health=wiring.health,
        metrics=wiring.metrics,
    )


PLATFORM = Platform(name="slack", title="Slack", account="user id", settings_from=_settings, mount=_mount)
