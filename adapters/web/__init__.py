"""The web console: a third platform, in the browser, on `unsilo run` at `/console`.

This package's `PLATFORM` is all the core knows of it. Its destinations `web:<channel>` are
console-only channels; the console also shows every other destination's channel with its
cards. Importing it is cheap: aiohttp's routes and Jinja2 are imported by `mount`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from adapters.web.settings import WebSettings
from bot.platform import Platform, PlatformSettings, Wiring

if TYPE_CHECKING:
    from aiohttp import web

    from bot.outbox import Sender


def _settings(env: Mapping[str, str]) -> WebSettings:
    return WebSettings.from_env(env)


def _mount(app: web.Application, settings: PlatformSettings, wiring: Wiring, /) -> Sender:
    """Serve the console (see `service.mount`); Jinja2 is imported here, when the console starts."""
    from adapters.web import service

    assert isinstance(settings, WebSettings), settings
    return service.mount(app, settings=settings, wiring=wiring)


# No mentions: nobody is pinged in the console, so its accounts are not "chat" accounts.
PLATFORM = Platform(
    name="web", title="the web console", account="console user id", settings_from=_settings, mount=_mount, chat=False
)
