"""Teams on the service: the CloudAdapter on POST /api/messages and the outbox sender.

Every `botbuilder` import of the project lives in adapters/teams/, so that moving to the
SDK's successor stays a one-folder change.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import jwt
from aiohttp import web
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import Activity, ChannelAccount
from botframework.connector.auth.jwt_token_extractor import _OpenIdMetadata

from adapters.teams.bot import UnsiloTeamsBot
from adapters.teams.sender import TeamsSender

if TYPE_CHECKING:
    from bot.bootstrap import Container

logger = logging.getLogger(__name__)

TEAMS_PATH = "/api/messages"
KEYS_TIMEOUT = 10.0  # seconds a fetch of the Bot Framework's signing keys may take


class _BotConfig:
    """The attribute names `ConfigurationBotFrameworkAuthentication` reads."""

    def __init__(self, app_id: str, password: str, app_type: str, tenant_id: str) -> None:
        self.APP_ID = app_id
        self.APP_PASSWORD = password
        self.APP_TYPE = app_type
        self.APP_TENANTID = tenant_id


def mount(app: web.Application, container: Container) -> None:
    """Serve Teams on `POST /api/messages` and send cards through the outbox."""
    settings = container.settings
    config = _BotConfig(settings.teams_app_id, settings.teams_app_password, settings.teams_app_type,
                        settings.teams_tenant_id)
    _fetch_signing_keys_off_the_loop()
    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(config))
    bot = UnsiloTeamsBot(bus=container.bus, outcomes=container.config.outcomes)
    container.senders["teams"] = TeamsSender(app_id=settings.teams_app_id, app_password=settings.teams_app_password,
                                             tenant_id=settings.teams_tenant_id, outcomes=container.config.outcomes)
    if not settings.teams_app_id:
        logger.warning("Teams runs WITHOUT authentication (MicrosoftAppId is empty): for local/emulator use only")

    async def messages(request: web.Request) -> web.StreamResponse:
        try:
            fast = await _card_action(request, adapter, bot)
            if fast is not None:
                return fast
            response = await adapter.process(request, bot)
        except jwt.PyJWTError as exc:  # botbuilder lets a malformed token through as a 500
            logger.warning("Teams request refused: unreadable token (%s)", exc)
            raise web.HTTPUnauthorized() from exc
        return response if response is not None else web.Response(status=201)

    app.router.add_post(TEAMS_PATH, messages)


def _fetch_signing_keys_off_the_loop() -> None:
    """Make botframework-connector fetch the Bot Framework's signing keys in a worker thread.

    4.17.1 fetches them (OpenID metadata, then the JWKS) with blocking `requests`, with no
    timeout, inside its async token validation: once a day, and whenever a token names a key
    it doesn't know, the whole event loop (Slack included) would wait on
    login.botframework.com, forever if the connection stalls. The fetch now runs in a
    thread, bounded by `KEYS_TIMEOUT`; a request that cannot be checked meanwhile fails
    and is retried by the Bot Connector.
    """
    if getattr(_OpenIdMetadata._refresh, "off_the_loop", False):
        return
    blocking = _OpenIdMetadata._refresh

    async def refresh(self: _OpenIdMetadata) -> None:
        await asyncio.wait_for(asyncio.to_thread(asyncio.run, blocking(self)), KEYS_TIMEOUT)

    refresh.off_the_loop = True  # type: ignore[attr-defined]
    _OpenIdMetadata._refresh = refresh  # type: ignore[method-assign]


async def _card_action(request: web.Request, adapter: CloudAdapter, bot: UnsiloTeamsBot) -> web.Response | None:
    """Answer a card click in the HTTP response, authenticated exactly as `CloudAdapter` would.

    `CloudAdapter.process` builds a connector client and a user-token client for every
    activity (~10 ms of CPU in msrest) and re-serializes the body; a card click needs
    neither, so it is handled here. Anything else returns None and takes the normal path.
    """
    if "application/json" not in request.headers.get("Content-Type", ""):
        return None
    body = await request.json()
    if not isinstance(body, dict) or body.get("type") != "invoke" or body.get("name") != "adaptiveCard/action":
        return None
    activity = _card_action_activity(body)
    try:
        await adapter.bot_framework_authentication.authenticate_request(activity, request.headers.get("Authorization", ""))
    except PermissionError as exc:
        raise web.HTTPUnauthorized() from exc
    return web.json_response(await bot.card_action(activity))


def _card_action_activity(body: dict[str, Any]) -> Activity:
    """The parts of a card-click activity that authentication and `card_action` read.

    msrest's `Activity().deserialize` walks every field of the schema (~0.2 ms, a tenth of a
    click); a click needs its channel, service URL, sender, recipient and value.
    """
    def account(raw: Any) -> ChannelAccount | None:
        if not isinstance(raw, dict):
            return None
        return ChannelAccount(id=raw.get("id"), name=raw.get("name"), aad_object_id=raw.get("aadObjectId"),
                              role=raw.get("role"))

    return Activity(type=body.get("type"), name=body.get("name"), id=body.get("id"),
                    channel_id=body.get("channelId"), service_url=body.get("serviceUrl"),
                    from_property=account(body.get("from")), recipient=account(body.get("recipient")),
                    relates_to=body.get("relatesTo"), value=body.get("value"))
