"""Microsoft Teams: botbuilder CloudAdapter, Adaptive Cards, the outbox sender, the app package.

This package's `PLATFORM` is all the core knows of Teams. Importing it is cheap: botbuilder is
imported by `mount`, when Teams starts (and the app package needs only the standard library).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from adapters.teams.settings import TeamsSettings
from bot.platform import Platform, PlatformSettings, Wiring

if TYPE_CHECKING:
    from aiohttp import web

    from bot.outbox import Sender


def _settings(env: Mapping[str, str]) -> TeamsSettings:
    return TeamsSettings.from_env(env)


def _mount(app: web.Application, settings: PlatformSettings, wiring: Wiring, /) -> Sender:
    """Start Teams (see `service.mount`); botbuilder is imported here, when Teams starts."""
    from adapters.teams import service

    assert isinstance(settings, TeamsSettings), settings
    return service.mount(
        app,
        settings=settings,
        bus=wiring.bus,
        outcomes=wiring.outcomes,
        departments=wiring.departments,
        health=wiring.health,
        metrics=wiring.metrics,
    )


def _manifest(settings: PlatformSettings, /, *, out: Path, app_id: str) -> str:
    """The Teams app package (`unsilo manifest teams`), for `app_id` or MicrosoftAppId."""
    from adapters.teams import manifest  # stdlib only, no SDK

    assert isinstance(settings, TeamsSettings), settings
    chosen = app_id or settings.app_id
    if not chosen:
        raise ValueError("no app id: pass --app-id or set MicrosoftAppId (the Azure Bot's Microsoft App ID)")
    written = manifest.build_package(app_id=chosen, out=out)
    return f"wrote {written}: upload it in Teams under Apps > Manage your apps > Upload an app"


PLATFORM = Platform(
    name="teams", title="Teams", account="AAD object id", settings_from=_settings, mount=_mount, manifest=_manifest
)
