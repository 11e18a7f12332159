"""Slack: the Bolt app mounted on the service, Block Kit rendering, the outbox sender."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.app import SlackBot
from adapters.slack.sender import SlackSender

if TYPE_CHECKING:
    from bot.bootstrap import Container

logger = logging.getLogger(__name__)

SLACK_PATH = "/slack/events"


def build(container: Container) -> SlackBot:
    """The Slack bot for this container's settings (Web API at `SLACK_API_URL`)."""
    settings = container.settings
    base_url = settings.slack_api_url if settings.slack_api_url.endswith("/") else settings.slack_api_url + "/"
    client = AsyncWebClient(token=settings.slack_bot_token, base_url=base_url)
    return SlackBot(bus=container.bus, token=settings.slack_bot_token, signing_secret=settings.slack_signing_secret,
                    client=client, outcomes=container.config.outcomes,
                    health=container.health.platform("slack"))


def mount(app: web.Application, container: Container) -> None:
    """Serve Slack on `POST /slack/events` (or over Socket Mode) and send cards through the outbox."""
    bot = build(container)
    container.senders["slack"] = SlackSender(bot.client)

    async def endpoint(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bot.app.async_dispatch(await to_bolt_request(request)))

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        warm = asyncio.create_task(_warm_up(bot))
        socket = None
        if container.settings.slack_app_token:
            from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

            socket = AsyncSocketModeHandler(bot.app, container.settings.slack_app_token)
            await socket.connect_async()
            logger.info("Slack connected over Socket Mode")
        yield
        warm.cancel()
        if socket is not None:
            await socket.close_async()

    if not container.settings.slack_app_token:
        app.router.add_post(SLACK_PATH, endpoint)
    app.cleanup_ctx.append(lifecycle)


async def _warm_up(bot: SlackBot) -> None:
    """Ask `auth.test` once at start-up so no request waits for it."""
    try:
        auth = await bot.identify()
        logger.info("Slack bot user %s in team %s", auth.bot_user_id, auth.team_id)
    except Exception as exc:  # the first request will try again
        logger.warning("Slack auth.test failed at start-up: %s", exc)
