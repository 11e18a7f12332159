"""Teams on the service: the CloudAdapter on POST /api/messages and the outbox sender.

A request's token is checked from its Authorization header before its body is parsed (an
unauthenticated caller gets its 401 whatever it sent); the body is then parsed once, checked
(a 4xx with the reason, never a 500), and handed to the SDK's `process_activity`, which
authenticates it again against the activity. Card clicks are answered without the SDK's turn.

Every `botbuilder` import of the project lives in adapters/teams/, so that moving to the
SDK's successor stays a one-folder change.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

import jwt
from aiohttp import web
from botbuilder.core import serializer_helper
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import Activity, ChannelAccount, ConversationAccount
from botframework.connector.auth.jwt_token_extractor import _OpenIdMetadata
from msrest.exceptions import DeserializationError  # type: ignore[attr-defined]

from adapters.teams.bot import UnsiloTeamsBot
from adapters.teams.sender import TeamsSender
from adapters.teams.settings import TeamsSettings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from bot.bus import Bus
    from bot.health import Health, PlatformHealth
    from bot.metrics import Metrics

logger = logging.getLogger(__name__)

TEAMS_PATH = "/api/messages"
PLATFORM_NAME = "teams"  # its `Platform.name`: the label of its figures on /metrics
INVOKE = web.RequestKey("unsilo.teams.invoke", bool)  # request key: the activity is an invoke (its latency is counted)
KEYS_TIMEOUT = 10.0  # seconds a fetch of the Bot Framework's signing keys may take
T = TypeVar("T")


class _BotConfig:
    """The attribute names `ConfigurationBotFrameworkAuthentication` reads."""

    def __init__(self, app_id: str, password: str, app_type: str, tenant_id: str) -> None:
        self.APP_ID = app_id
        self.APP_PASSWORD = password
        self.APP_TYPE = app_type
        self.APP_TENANTID = tenant_id


def mount(
    app: web.Application,
    *,
    settings: TeamsSettings,
    bus: Bus,
    outcomes: tuple[str, ...],
    departments: Sequence[str],
    health: Health,
    metrics: Metrics | None = None,
) -> TeamsSender:
    """Serve Teams on `POST /api/messages`; return the sender that posts and updates its cards from the outbox.
    Each invoke's answer latency (Teams shows the card's answer, or an error after a few seconds) goes to `metrics`."""
    config = _BotConfig(settings.app_id, settings.app_password, settings.app_type, settings.tenant_id)
    _fetch_signing_keys_off_the_loop()
    state = health.platform("teams")
    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(config))
    authentication = _ExplainedRefusals(adapter.bot_framework_authentication, health=state)
    adapter.bot_framework_authentication = authentication
    tenants = settings.allowed_tenants()
    bot = UnsiloTeamsBot(bus=bus, outcomes=outcomes, tenants=tenants, departments=departments)
    sender = TeamsSender(
        app_id=settings.app_id,
        app_password=settings.app_password,
        tenant_id=settings.tenant_id,
        outcomes=outcomes,
        departments=departments,
        health=state,
    )
    if not settings.app_id:
        logger.warning("Teams runs WITHOUT authentication (MicrosoftAppId is empty): for local/emulator use only")
    if not tenants:
        logger.warning(
            "Teams accepts activities from ANY Microsoft 365 tenant: set MicrosoftAppTenantId or "
            "UNSILO_TEAMS_TENANTS (comma-separated tenant ids) to accept only your organisation's"
        )

    async def messages(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        response = await answer(request)
        if metrics is not None and request.get(INVOKE):
            metrics.answered(PLATFORM_NAME, time.perf_counter() - started)
        return response

    async def answer(request: web.Request) -> web.StreamResponse:
        auth_header = request.headers.get("Authorization", "")
        if settings.app_id:  # a bad token is refused from the header alone, before the body is parsed
            await _authenticated(authentication.authenticate_header(auth_header))
        body = await _activity_body(request)
        request[INVOKE] = body["type"] == "invoke"  # answered in the HTTP response: Teams waits for it
        if _is_card_action(body):
            return await _card_action(body, auth_header, authentication, bot)
        try:
            activity = Activity().deserialize(body)
            # The SDK authenticates again, with the activity (its serviceUrl claim, the channel's endorsement).
            answer = await _authenticated(adapter.process_activity(auth_header, activity, bot.on_turn))
        except DeserializationError as exc:  # a field the SDK's models cannot read (e.g. a task/fetch value)
            raise _refused(
                400, "not a Bot Framework activity: a field has the wrong shape", f"the SDK could not read it ({str(exc)[:200]})"
            ) from None
        if answer is None:
            return web.Response(status=201)
        return web.json_response(data=serializer_helper(answer.body), status=answer.status)

    app.router.add_post(TEAMS_PATH, messages)
    state.ok()
    return sender


class _ExplainedRefusals:
    """The SDK's request authentication, with the reason for every refusal logged (never the token).

    botbuilder answers 401 without saying why (no token, a signature that does not verify, a
    token for another bot or service URL, an expired one), and lets some bad tokens through
    as 500s (a malformed one, `alg: none`, an unknown key id): every one of them is a
    `PermissionError` here, so a 401, with one log line. A failure to fetch the signing keys
    is not the caller's fault: it stays an error (the Bot Connector retries) and marks Teams
    as degraded on /healthz.
    """

    def __init__(self, inner: Any, *, health: PlatformHealth) -> None:
        self._inner = inner
        self._health = health
        self._keys_failing = False  # clear only what this set: a refused send is the sender's to report

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def authenticate_header(self, auth_header: str) -> None:
        """Every check of the token that needs only the Authorization header: Bearer scheme, issuer,
        algorithm, signing key, signature, expiry, audience (this bot).

        It is the SDK's own header-only authentication (what botframework-connector 4.17.1 runs on
        a streaming connection before any activity arrives), given no channel, so that the key's
        endorsement and the token's serviceUrl claim are left to `authenticate_request`, which
        checks them against the activity once its body is read.
        """
        await self._explained(
            self._inner.authenticate_streaming_request(auth_header, ""), auth_header, "before its body was read"
        )

    async def authenticate_request(self, activity: Activity, auth_header: str) -> Any:
        """The SDK's authentication of an activity and its token (the one `process_activity` runs)."""
        return await self._explained(
            self._inner.authenticate_request(activity, auth_header),
            auth_header,
            f"{activity.type} activity, serviceUrl {activity.service_url!r}",
        )

    async def _explained(self, check: Awaitable[Any], auth_header: str, what: str) -> Any:
        try:
            result = await check
        except Exception as exc:
            if isinstance(exc, (TimeoutError, OSError)) and not isinstance(exc, PermissionError):  # requests' too
                self._health.degraded(
                    f"the Bot Framework's signing keys cannot be fetched ({type(exc).__name__}); "
                    "check outbound HTTPS to login.botframework.com"
                )
                self._keys_failing = True
                raise
            reason = refusal_reason(exc, auth_header)
            logger.warning("Teams request refused with 401: %s (%s)", reason, what)
            raise PermissionError(reason) from exc
        if self._keys_failing:
            self._keys_failing = False
            self._health.ok()
        return result


async def _authenticated(work: Awaitable[T]) -> T:
    """`work`, with a refused token answered 401 (as `CloudAdapter.process` answers it)."""
    try:
        return await work
    except PermissionError:
        raise web.HTTPUnauthorized() from None


def refusal_reason(exc: Exception, auth_header: str | None) -> str:
    """Why botframework-connector 4.17.1 refused a request, in words; never quotes the token."""
    message = " ".join(str(a) for a in exc.args)
    if not (auth_header or "").strip():
        return "no Authorization header (every request must carry the Bot Framework's token when MicrosoftAppId is set)"
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the token has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the token is not valid yet (check this machine's clock)"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the token's signature does not verify with the Bot Framework's signing keys"
    if isinstance(exc, jwt.DecodeError):
        return "the token is not a readable JWT"
    if isinstance(exc, jwt.PyJWTError):
        return f"the token is invalid ({type(exc).__name__})"
    if isinstance(exc, (IndexError, KeyError)):
        return "the token names a signing key the Bot Framework does not publish (unknown kid)"
    if "Invalid AppId" in message:
        audience = exc.args[1] if len(exc.args) > 1 else ""
        return f"the token is for another bot (audience {audience!r}; this bot is MicrosoftAppId)"
    if "service_url claim" in message:
        return "the token was issued for another service URL than the activity's serviceUrl"
    if "No valid identity" in message:
        return "the token is not a Bearer token from the Bot Framework's issuer"
    if "Audience Claim" in message or "Issuer" in message:
        return "the token comes from an issuer other than the Bot Framework"
    if "signing algorithm" in message:
        return "the token's signing algorithm is not allowed (RS256 only)"
    if "endorsement" in message:
        return "the token's signing key is not endorsed for this channel"
    return f"the token could not be validated ({type(exc).__name__})"


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
    _OpenIdMetadata._refresh = refresh


MAX_ACTIVITY = 1024 * 1024  # bytes (aiohttp's default client_max_size); Teams' messages are capped at ~100 KB


def _refused(status: int, error: str, reason: str) -> web.HTTPException:
    logger.warning("Teams request refused with %s: %s", status, reason)
    text, content_type = json.dumps({"error": error}), "application/json"
    if status == 413:
        return web.HTTPRequestEntityTooLarge(
            max_size=MAX_ACTIVITY, actual_size=MAX_ACTIVITY + 1, text=text, content_type=content_type
        )
    if status == 415:
        return web.HTTPUnsupportedMediaType(text=text, content_type=content_type)
    return web.HTTPBadRequest(text=text, content_type=content_type)


async def _activity_body(request: web.Request) -> dict[str, Any]:
    """The request's activity: a JSON object of at most `MAX_ACTIVITY` bytes, or a 4xx with the reason.

    Read once, here, after the token was checked: botbuilder (and `request.json()`) turn an
    unreadable, too deep or non-object body into a 500, and such a request is the sender's
    fault. The body itself was read by the service's `body_deadline` middleware (within
    aiohttp's `client_max_size`, which is `MAX_ACTIVITY`), which leaves a larger declared
    one unread for the Content-Length check here.
    """
    if (request.content_length or 0) > MAX_ACTIVITY:
        raise _refused(413, "activity too large", f"Content-Length {request.content_length}")
    if "application/json" not in request.headers.get("Content-Type", ""):  # as CloudAdapter.process asks
        raise _refused(415, "an activity is sent as application/json", f"Content-Type {request.content_type!r}")
    try:
        body = json.loads(await request.read())
    except (ValueError, RecursionError) as exc:
        raise _refused(400, "the body is not a JSON activity", f"unreadable body ({type(exc).__name__})") from None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str) or not body["type"]:
        raise _refused(400, "the body is not an activity (a JSON object with a type)", "not an activity object")
    problem = _shape_problem(body)
    if problem:
        raise _refused(400, f"not a Bot Framework activity: {problem}", problem)
    return body


# What every activity the Bot Connector sends carries (botframework.json: Activity), and the types of the
# fields the SDK and this adapter read: botbuilder raises (a 500) on anything else.
_ACCOUNT_FIELDS = ("from", "recipient", "conversation")
_TYPED: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "text": str,
    "name": str,
    "channelId": str,
    "replyToId": str,
    "textFormat": str,
    "locale": str,
    "channelData": dict,
    "entities": list,
    "attachments": list,
    "membersAdded": list,
    "membersRemoved": list,
    "reactionsAdded": list,
    "reactionsRemoved": list,
    "relatesTo": dict,
    "action": str,
    "timestamp": str,
    "localTimestamp": str,
}


_CHANNEL_DATA_OBJECTS = ("tenant", "team", "channel", "settings", "source", "legacy", "meeting", "notification")
_CHANNEL_DATA_STRINGS = ("eventType", "teamsChannelId", "teamsTeamId")


def _shape_problem(body: dict[str, Any]) -> str | None:
    """Why `body` is not an activity the SDK can handle, or None."""
    service_url = body.get("serviceUrl")
    if not isinstance(service_url, str) or not service_url.startswith(("http://", "https://")):
        return "serviceUrl must be an http(s) URL"
    for name in _ACCOUNT_FIELDS:
        account = body.get(name)
        if not isinstance(account, dict) or not isinstance(account.get("id"), str) or not account["id"]:
            return f"{name}.id is required"
        if not all(
            isinstance(account.get(k), str)
            for k in ("name", "aadObjectId", "role", "tenantId", "conversationType")
            if account.get(k) is not None
        ):
            return f"{name} has a field of the wrong type"
    for name, kind in _TYPED.items():
        if body.get(name) is not None and not isinstance(body[name], kind):
            return f"{name} must be a {kind.__name__ if isinstance(kind, type) else kind}"
    for key, value in (body.get("channelData") or {}).items():
        if key in _CHANNEL_DATA_OBJECTS and value is not None:
            if not isinstance(value, dict) or any(
                not isinstance(value.get(k), str) for k in ("id", "name") if value.get(k) is not None
            ):
                return f"channelData.{key} must be an object with string id and name"
        elif key in _CHANNEL_DATA_STRINGS and value is not None and not isinstance(value, str):
            return f"channelData.{key} must be a string"
    if body["type"] == "invoke" and body.get("value") is not None and not isinstance(body["value"], dict):
        return "an invoke's value must be an object"
    for name in ("entities", "attachments", "membersAdded", "membersRemoved", "reactionsAdded", "reactionsRemoved"):
        if not all(isinstance(item, dict) for item in body.get(name) or []):
            return f"{name} must be a list of objects"
    return None


def _is_card_action(body: dict[str, Any]) -> bool:
    return body["type"] == "invoke" and body.get("name") == "adaptiveCard/action"


async def _card_action(
    body: dict[str, Any], auth_header: str, authentication: _ExplainedRefusals, bot: UnsiloTeamsBot
) -> web.Response:
    """Answer a card click in the HTTP response, authenticated exactly as `CloudAdapter` would.

    `CloudAdapter.process_activity` builds a connector client and a user-token client for
    every activity (~10 ms of CPU in msrest); a card click needs neither, so it is handled here.
    """
    activity = _card_action_activity(body)
    await _authenticated(authentication.authenticate_request(activity, auth_header))
    return web.json_response(await bot.card_action(activity))


def _card_action_activity(body: dict[str, Any]) -> Activity:
    """The parts of a card-click activity that authentication and `card_action` read (`_shape_problem`
    has checked their types).

    msrest's `Activity().deserialize` walks every field of the schema (~0.2 ms, a tenth of a
    click); a click needs its channel, service URL, sender, recipient, tenant, the clicked
    card's message id and the value.
    """

    def account(raw: dict[str, Any]) -> ChannelAccount:
        return ChannelAccount(id=raw["id"], name=raw.get("name"), aad_object_id=raw.get("aadObjectId"), role=raw.get("role"))

    raw_conversation = body["conversation"]
    conversation = ConversationAccount(
        id=raw_conversation["id"],
        tenant_id=raw_conversation.get("tenantId"),
        conversation_type=raw_conversation.get("conversationType"),
    )
    return Activity(
        type=body["type"],
        name=body["name"],
        id=body.get("id"),
        channel_id=body.get("channelId"),
        service_url=body["serviceUrl"],
        from_property=account(body["from"]),
        recipient=account(body["recipient"]),
        conversation=conversation,
        channel_data=body.get("channelData"),
        relates_to=body.get("relatesTo"),
        reply_to_id=body.get("replyToId"),
        value=body.get("value"),
    )
