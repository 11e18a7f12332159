"""Slack on the service: the Bolt app on POST /slack/events or over Socket Mode, and the outbox sender.

Slack starts in the background and never delays or stops the rest of the service: the
bot token is checked with `auth.test` and Socket Mode connects from background tasks that
retry with backoff, while `/healthz` tells what is wrong and what to set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import shape
from adapters.slack.app import SlackBot
from adapters.slack.sender import SlackSender
from adapters.slack.settings import SlackSettings
from bot.health import DEGRADED, STARTING, Health, PlatformHealth

if TYPE_CHECKING:
    from bot.bus import Bus
    from bot.metrics import Metrics

logger = logging.getLogger(__name__)

SLACK_PATH = "/slack/events"
PLATFORM_NAME = "slack"  # its `Platform.name`: the label of its figures on /metrics
RETRY_FIRST, RETRY_MAX = 1.0, 300.0  # seconds between start-up attempts: doubling, capped at 5 min
CONNECT_TIMEOUT = 30.0  # one Socket Mode connection attempt
SOCKET_PING_INTERVAL = 10.0  # the Socket Mode client's ping and reconnect-check period
WATCH_EVERY = 2.0  # how often the Socket Mode connection's state is read for /healthz

# `auth.test` / `apps.connections.open` errors that mean the token itself is refused.
REFUSED = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "not_allowed_token_type",
        "missing_scope",
        "team_access_not_granted",
    }
)


def build(
    settings: SlackSettings, *, bus: Bus, outcomes: tuple[str, ...], health: Health, departments: Sequence[str] = ()
) -> SlackBot:
    """The Slack bot for these settings (Web API at `SLACK_API_URL`)."""
    base_url = settings.api_url if settings.api_url.endswith("/") else settings.api_url + "/"
    client = AsyncWebClient(token=settings.bot_token, base_url=base_url)
    return SlackBot(
        bus=bus,
        token=settings.bot_token,
        signing_secret=settings.signing_secret,
        client=client,
        outcomes=outcomes,
        departments=departments,
        health=SlackHealth(health, socket_mode=bool(settings.app_token)),
        team_id=settings.team_id,
        enterprise_id=settings.enterprise_id,
    )


def mount(
    app: web.Application,
    *,
    settings: SlackSettings,
    bus: Bus,
    outcomes: tuple[str, ...],
    health: Health,
    metrics: Metrics | None = None,
    departments: Sequence[str] = (),
) -> SlackSender:
    """Serve Slack on `POST /slack/events` (HTTP mode) or over Socket Mode (SLACK_APP_TOKEN set);
    return the sender that posts and updates its cards from the outbox. Each HTTP answer's latency
    (the ack Slack waits 3 s for) goes to `metrics`."""
    bot = build(settings, bus=bus, outcomes=outcomes, health=health, departments=departments)
    app_token = settings.app_token
    state = bot.health
    assert isinstance(state, SlackHealth)

    async def endpoint(request: web.Request) -> web.Response:
        started = time.perf_counter()
        with bot.answers.answering():  # work after other acks waits until this one is answered
            try:
                bolt_request = await to_bolt_request(request)
            except UNREADABLE as exc:
                return _refused(request, f"{type(exc).__name__}: {exc}")
            malformed = shape.problem(bolt_request.body)
            if malformed is not None:
                return _refused(request, malformed)
            response = await to_aiohttp_response(await bot.app.async_dispatch(bolt_request))
        if metrics is not None:
            metrics.answered(PLATFORM_NAME, time.perf_counter() - started)
        return response

    async def lifecycle(_: web.Application) -> AsyncIterator[None]:
        # One HTTP session for every Web API call (slack_sdk opens and closes one per call without it:
        # a new connection and cookie jar each time); the SDK's own per-call bound, as its sessions have.
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=bot.client.timeout))
        bot.client.session = session
        tasks = [asyncio.create_task(_check_bot_token(bot, state), name="slack auth.test")]
        handler = None
        if app_token:
            handler = AsyncSocketModeHandler(bot.app, app_token, ping_interval=SOCKET_PING_INTERVAL)
            tasks.append(asyncio.create_task(_keep_socket_mode(handler, state), name="slack socket mode"))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if handler is not None:
            await handler.close_async()  # type: ignore[no-untyped-call]
        bot.client.session = None
        await session.close()

    if not app_token:
        app.router.add_post(SLACK_PATH, endpoint)
    app.cleanup_ctx.append(lifecycle)
    return SlackSender(bot.client)


# What Bolt 1.30's request constructor raises on a body that is not a Slack payload: it decodes the body
# (UTF-8, then JSON or the form's `payload` JSON) and reads the workspace ids out of it, assuming
# objects where the body may hold anything, before the signature is checked.
UNREADABLE = (ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError)


def _refused(request: web.Request, reason: str) -> web.Response:
    """A body Bolt cannot read or route (Slack itself never sends one): 400 with the reason."""
    logger.info("Slack request from %s refused: %s", request.remote, reason[:200])
    return web.json_response({"error": f"not a Slack request: {reason[:200]}"}, status=400)


class SlackHealth(PlatformHealth):
    """Slack's health from its parts: the bot token (`auth.test`), the Socket Mode connection, and
    what Slack itself said (`app_uninstalled`, `tokens_revoked`, reported through `degraded`).
    The worst part's state is Slack's, with every part's reason."""

    def __init__(self, registry: Health, *, socket_mode: bool) -> None:
        super().__init__(registry, "slack")
        self.parts: dict[str, tuple[str, str] | None] = {
            "token": (STARTING, "checking SLACK_BOT_TOKEN with auth.test"),
            "socket": (STARTING, "Socket Mode connecting") if socket_mode else None,
            "slack": None,
        }
        self._publish()

    def degraded(self, reason: str) -> None:
        """Slack told us the app is gone (uninstalled, tokens revoked): stays until a restart."""
        self.report("slack", reason)

    def report(self, part: str, problem: str | None, *, state: str = DEGRADED) -> None:
        """Record one part's problem (None: it works) and publish the whole."""
        self.parts[part] = (state, problem) if problem else None
        self._publish()

    def _publish(self) -> None:
        problems = [p for p in self.parts.values() if p]
        if not problems:
            super().ok()
            return
        reasons = "; ".join(reason for _, reason in problems)
        if any(state == DEGRADED for state, _ in problems):
            super().degraded(reasons)
        else:
            super().starting(reasons)


def _problem(exc: Exception, *, method: str, variable: str, hint: str) -> str:
    """What went wrong calling `method` at start-up, saying what to set when Slack refused `variable`."""
    if isinstance(exc, SlackApiError):
        error = str(exc.response.get("error", "") or exc.response.status_code)
        if error in REFUSED:
            return f"Slack refused {variable} ({error}) for {method}: {hint}"
        return f"Slack answered {method} with {error}"
    return f"Slack is unreachable for {method} at SLACK_API_URL ({type(exc).__name__}: {exc})"


async def _retrying(attempt: Any, state: SlackHealth, part: str, *, method: str, variable: str, hint: str) -> None:
    """Run `attempt()` until it succeeds, doubling the wait (to RETRY_MAX) and reporting each failure."""
    delay = RETRY_FIRST
    while True:
        try:
            await attempt()
            return
        except (TimeoutError, SlackApiError, aiohttp.ClientError, OSError) as exc:
            problem = _problem(exc, method=method, variable=variable, hint=hint)
        logger.warning("Slack: %s; retrying in %.0fs", problem, delay)
        state.report(part, f"{problem}; retrying with backoff")
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX)


async def _check_bot_token(bot: SlackBot, state: SlackHealth) -> None:
    """`auth.test` until Slack answers: the token's verdict goes to /healthz, never blocks a request."""

    async def attempt() -> None:
        auth = await bot.identify()
        logger.info("Slack bot user %s in team %s", auth.bot_user_id, auth.team_id)
        state.report("token", None)

    await _retrying(
        attempt,
        state,
        "token",
        method="auth.test",
        variable="SLACK_BOT_TOKEN",
        hint="set the Bot User OAuth Token (xoxb-…) from Install App",
    )


async def _keep_socket_mode(handler: AsyncSocketModeHandler, state: SlackHealth) -> None:
    """Connect Socket Mode in the background, retrying with backoff; then watch the connection.

    `connect_async()` loops until it connects (PLATFORM_NOTES): awaited in start-up it kept
    the whole service from binding its port while Slack refused the token. Once connected,
    the SDK reconnects by itself (on `disconnect` / `refresh_requested` and dropped
    sockets); this task only reports the connection's state.
    """

    async def attempt() -> None:
        handler.client.wss_uri = await handler.client.issue_new_wss_url()
        await asyncio.wait_for(handler.connect_async(), CONNECT_TIMEOUT)  # type: ignore[no-untyped-call]

    while True:
        await _retrying(
            attempt,
            state,
            "socket",
            method="apps.connections.open",
            variable="SLACK_APP_TOKEN",
            hint="set an app-level token (xapp-…) with the connections:write scope",
        )
        logger.info("Slack connected over Socket Mode")
        state.report("socket", None)
        await _watch(handler, state)


async def _watch(handler: AsyncSocketModeHandler, state: SlackHealth) -> None:
    """Report the live connection's state until the SDK gives up on it (closed for good)."""
    client: Any = handler.client
    lost = False
    while not client.closed:
        await asyncio.sleep(WATCH_EVERY)
        if await client.is_connected():
            if lost:
                logger.info("Slack Socket Mode reconnected")
            lost = False
            state.report("socket", None)
        elif not lost:
            lost = True
            at = datetime.now(UTC).strftime("%H:%M:%S UTC")
            state.report(
                "socket",
                f"Socket Mode connection lost at {at}; the client is reconnecting "
                "(check SLACK_APP_TOKEN and that Slack is reachable if this lasts)",
            )
