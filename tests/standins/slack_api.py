"""A loopback stand-in for the Slack Web API, for tests.

`SlackStandIn` is a real aiohttp server on 127.0.0.1 (a free port chosen by the OS) that answers
enough Web API methods for a bot's tests, so that::

    async with SlackStandIn() as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.url)
        await client.chat_postMessage(channel="C1", text="hi")
        assert slack.messages("C1")[0]["text"] == "hi"

works unchanged. It records every call (`Call`), keeps the messages it posted per channel (so a
test can read what the channel shows now), and can rate-limit `chat.postMessage` per channel,
answer slowly, or fail on demand.

Answers follow the shapes in Slack's method documentation (`ok`, `error`, `channel`, `ts`,
`message`, `view`, `user`, ...). Like Slack, failures are `{"ok": false, "error": "..."}` with
HTTP 200, except rate limiting (HTTP 429 with `Retry-After`) and injected HTTP failures.

`sign()` signs a request body exactly as Slack signs the requests it sends to an app.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tests.standins import RecordingStandIn, next_failure, take_token

logger = logging.getLogger(__name__)

#: Arguments that carry JSON documents; form-encoded requests send them as JSON strings.
_JSON_ARGS = ("blocks", "attachments", "view", "metadata")


@dataclass
class Call:
    """One Web API request the stand-in received.

    Attributes:
        method: The Web API method, e.g. ``"chat.postMessage"``.
        args: The arguments, merged from the query string and the form or JSON body. Fields that
            hold JSON documents (``blocks``, ``attachments``, ``view``, ``metadata``) are decoded
            when they arrived as strings. A ``token`` argument is moved to `token`.
        headers: The request headers (case-insensitive mapping).
        at: ``time.monotonic()`` when the request arrived (before any `SlackStandIn.delay`).
        http_method: ``"POST"`` or ``"GET"``.
        token: The token from the ``Authorization: Bearer`` header or the ``token`` argument.
        status: The HTTP status answered; ``None`` while the call is still in progress.
        response: The JSON body answered; ``None`` while the call is still in progress.
    """

    method: str
    args: dict[str, Any]
    headers: Mapping[str, str]
    at: float
    http_method: str = "POST"
    token: str | None = None
    status: int | None = None
    response: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Whether the call was answered with HTTP 200 and ``"ok": true``."""
        return self.status == 200 and bool(self.response and self.response.get("ok"))


#: What a custom method handler (see `SlackStandIn.route`) looks like: it gets the recorded
#: call and returns the response body (a dict with at least ``ok``), directly or awaitably.
Handler = Callable[[Call], dict[str, Any] | Awaitable[dict[str, Any]]]


@dataclass
class _Failure:
    """A failure queued by `SlackStandIn.fail_next`."""

    status: int
    error: str
    remaining: int
    retry_after: int


class _ApiError(Exception):
    """Raised by a method implementation to answer ``{"ok": false, "error": ...}``."""

    def __init__(
        self, error: str, *, status: int = 200, extra: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON body Slack would send for this error."""
        return {"ok": False, "error": self.error, **self.extra}


def sign(signing_secret: str, body: bytes | str, timestamp: int | None = None) -> dict[str, str]:
    """Sign a request body as Slack does and return the two headers to send with it.

    The signature is ``v0=`` + hex HMAC-SHA256 keyed by the signing secret over
    ``v0:{timestamp}:{raw body}``. Sign the exact bytes you send.

    Args:
        signing_secret: The app's signing secret.
        body: The raw request body (a ``str`` is encoded as UTF-8).
        timestamp: Unix seconds; defaults to now. Pass an old one to test the 5-minute window.

    Returns:
        ``{"X-Slack-Request-Timestamp": ..., "X-Slack-Signature": "v0=..."}``.
    """
    raw = body.encode("utf-8") if isinstance(body, str) else body
    ts = int(time.time()) if timestamp is None else int(timestamp)
    base = b"v0:" + str(ts).encode("ascii") + b":" + raw
    digest = hmac.new(signing_secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


class SlackStandIn(RecordingStandIn):
    """A loopback HTTP server that speaks enough of the Slack Web API for tests.

    Use it as an async context manager (or call `start` / `close`) and point
    ``AsyncWebClient(base_url=standin.url)`` at it. Both ``/{method}`` and ``/api/{method}``
    are served.

    Implemented methods: ``auth.test``, ``chat.postMessage``, ``chat.update``,
    ``chat.postEphemeral``, ``chat.getPermalink``, ``views.open``, ``views.update``,
    ``views.publish``, ``users.info``, ``conversations.info``; add or override others with
    `route`. Anything else answers ``unknown_method``.

    Checks, in order: unknown method, token (must start with ``xoxb-``, else ``invalid_auth``),
    failures queued with `fail_next`, the per-channel rate limit of ``chat.postMessage``, then
    the method itself. Every request is recorded in `calls`, including rejected ones.

    Attributes:
        calls: Every request received, in arrival order.
        ephemeral: Ephemeral messages posted (``channel``, ``user``, ``text``, ``blocks``,
            ``message_ts``...); they are not part of a channel's `messages`.
        views: Open modals and published Home tabs by view id, as last opened/updated.
        home_views: Home tab view id by user id.
        responses: Posts to the `response_url`s minted by `response_url` (their JSON with
            ``url``, ``kind`` and ``at`` added), in arrival order.
        delay: Seconds to sleep before answering any call (may be changed at any time).
        rate_limit_per_channel: ``chat.postMessage`` calls per second allowed per channel, or
            ``None`` for no limit (may be changed at any time).
        rate_limit_burst: How many posts a quiet channel accepts at once before limiting.
        strict: If true, unknown channel and user ids answer ``channel_not_found`` /
            ``user_not_found`` (and permalinks need a known message). If false (the default),
            any id is accepted and users/channels are made up on first sight.
    """

    def __init__(
        self,
        *,
        delay: float = 0.0,
        rate_limit_per_channel: float | None = None,
        rate_limit_burst: int = 1,
        rate_clock: Callable[[], float] | None = None,
        strict: bool = False,
        team_id: str = "T111",
        team: str = "Unsilo Stand-in",
        team_domain: str = "unsilo-standin",
        bot_user_id: str = "U00STANDBOT",
        bot_name: str = "unsilo",
        bot_id: str = "B00STANDBOT",
        app_id: str = "A00STANDAPP",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """Configure the stand-in; nothing listens until `start`.

        Args:
            delay: Seconds to sleep before answering every call ("slow mode").
            rate_limit_per_channel: ``chat.postMessage`` per second per channel, or ``None``.
            rate_limit_burst: Bucket size of the rate limiter (1 = strictly spaced posts).
            rate_clock: Seconds source for the rate limiter (default ``time.monotonic``); a test
                may pass a clock it moves by hand so a long burst needs no real waiting.
            strict: Reject unknown channel / user ids (see the class docstring).
            team_id: Workspace id in answers (``auth.test`` says the bot is installed there); the
                default is the workspace of the reference samples (``T111``), so the samples a
                test sends come from the installed workspace.
            team: Workspace name (``auth.test`` ``team``).
            team_domain: Workspace subdomain, used in ``url`` and permalinks.
            bot_user_id: The bot's user id (``auth.test`` ``user_id``, ``message.user``).
            bot_name: The bot user's name (``auth.test`` ``user``).
            bot_id: The bot id (``B...``).
            app_id: The app id (``A...``).
            host: Interface to listen on.
            port: Port to listen on; 0 picks a free one.
        """
        if rate_limit_per_channel is not None and rate_limit_per_channel <= 0:
            raise ValueError("rate_limit_per_channel must be positive or None")
        if rate_limit_burst < 1:
            raise ValueError("rate_limit_burst must be at least 1")
        self.delay = delay
        self.rate_limit_per_channel = rate_limit_per_channel
        self.rate_limit_burst = rate_limit_burst
        self.rate_clock = rate_clock or time.monotonic
        self.strict = strict
        self.team_id = team_id
        self.team = team
        self.team_domain = team_domain
        self.bot_user_id = bot_user_id
        self.bot_name = bot_name
        self.bot_id = bot_id
        self.app_id = app_id
        self._host = host
        self._port = port

        self.calls: list[Call] = []
        self.ephemeral: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}
        self.home_views: dict[str, str] = {}

        self._messages: dict[str, dict[str, dict[str, Any]]] = {}
        self._channels: dict[str, dict[str, Any]] = {}
        self._users: dict[str, dict[str, Any]] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._buckets: dict[str, tuple[float, float]] = {}
        self._last_ts_micros = 0
        self._view_seq = 0
        self._hook_seq = 0
        self.responses: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._methods: dict[str, Handler] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
            "conversations.history": self._conversations_history,
        }
        self.add_user(bot_user_id, bot_name, real_name=bot_name, is_bot=True)

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The base URL to give ``AsyncWebClient(base_url=...)``; ends with ``/``."""
        if self._url is None:
            raise RuntimeError("SlackStandIn is not started")
        return self._url

    async def start(self) -> SlackStandIn:
        """Start listening; returns ``self``."""
        if self._runner is not None:
            raise RuntimeError("SlackStandIn is already started")
        app = web.Application()
        app.router.add_post("/{kind:commands|actions}/{team}/{hook}/{secret}", self._response_url)
        app.router.add_route("*", "/{method}", self._handle)
        app.router.add_route("*", "/api/{method}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self._url = f"http://{host}:{port}/"
        logger.debug("Slack stand-in listening on %s", self._url)
        return self

    async def close(self) -> None:
        """Stop listening (idempotent). Calls still sleeping in slow mode are cut short."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            logger.debug("Slack stand-in on %s closed", self._url)

    # ------------------------------------------------------------------ response_url

    def response_url(self, kind: str = "commands") -> str:
        """A fresh `response_url` (as Slack puts in slash commands and interactive payloads),
        served by this stand-in: `https://hooks.slack.com/commands/T…/…/…` in real life."""
        self._hook_seq += 1
        return f"{self.url}{kind}/{self.team_id}/{self._hook_seq:013d}/standin{self._hook_seq:08x}"

    async def _response_url(self, request: web.Request) -> web.Response:
        """A POST to a `response_url`: recorded in `responses`; like Slack, each URL takes 5 uses.

        Slack answers a good post with HTTP 200 and the body ``ok``; a used-up URL with 404
        ``used_url`` (unconfirmed wording), a body that is not JSON with 400 ``invalid_payload``.
        """
        url = str(request.url.with_query(None))
        try:
            payload = json.loads(await request.text())
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        uses = sum(1 for r in self.responses if r["url"] == url)
        if uses >= 5:
            return web.Response(status=404, text="used_url")
        self.responses.append(
            {
                "url": url,
                "kind": request.match_info["kind"],
                "at": time.monotonic(),
                **(payload if isinstance(payload, dict) else {"payload": payload}),
            }
        )
        return web.Response(text="ok")

    def answers(self, url: str | None = None) -> list[str]:
        """The texts posted to `response_url`s (one URL, or all), in arrival order."""
        return [r.get("text", "") for r in self.responses if url is None or r["url"] == url]

    # ------------------------------------------------------------------ test helpers

    def calls_to(self, method: str) -> list[Call]:
        """The recorded calls to one Web API method, in arrival order."""
        return [c for c in self.calls if c.method == method]

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """What ``channel`` shows now: the messages posted there (thread replies included,
        marked by ``thread_ts``), oldest first, with updates applied. Returns copies."""
        stored = self._messages.get(channel, {})
        return [copy.deepcopy(stored[ts]) for ts in sorted(stored, key=_ts_key)]

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """A copy of one message as it shows now, or ``None`` if there is none at ``ts``."""
        found = self._messages.get(channel, {}).get(ts)
        return copy.deepcopy(found) if found is not None else None

    def add_user(
        self,
        user_id: str,
        name: str,
        *,
        real_name: str | None = None,
        email: str | None = None,
        display_name: str | None = None,
        is_bot: bool = False,
    ) -> dict[str, Any]:
        """Register (or replace) a user answered by ``users.info``; returns its user object."""
        real = real_name if real_name is not None else name.replace(".", " ").title()
        display = display_name if display_name is not None else name
        profile: dict[str, Any] = {
            "real_name": real,
            "real_name_normalized": real,
            "display_name": display,
            "display_name_normalized": display,
            "title": "",
            "status_text": "",
            "status_emoji": "",
            "team": self.team_id,
            "image_48": f"https://avatars.example.invalid/{user_id}_48.png",
        }
        if is_bot:
            profile["bot_id"] = self.bot_id if user_id == self.bot_user_id else f"B{user_id[1:]}"
        else:
            profile["email"] = email if email is not None else f"{name}@{self.team_domain}.example"
        user: dict[str, Any] = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "deleted": False,
            "real_name": real,
            "tz": "Europe/London",
            "tz_label": "Greenwich Mean Time",
            "tz_offset": 0,
            "profile": profile,
            "is_admin": False,
            "is_owner": False,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": int(time.time()),
        }
        self._users[user_id] = user
        return copy.deepcopy(user)

    def add_channel(
        self,
        channel_id: str,
        name: str,
        *,
        is_private: bool = False,
        topic: str = "",
        purpose: str = "",
    ) -> dict[str, Any]:
        """Register (or replace) a channel answered by ``conversations.info``; returns it."""
        now = int(time.time())
        channel: dict[str, Any] = {
            "id": channel_id,
            "name": name,
            "name_normalized": name,
            "is_channel": not is_private,
            "is_group": is_private,
            "is_im": False,
            "is_mpim": False,
            "is_private": is_private,
            "is_archived": False,
            "is_general": name == "general",
            "is_shared": False,
            "is_ext_shared": False,
            "is_org_shared": False,
            "is_member": True,
            "created": now,
            "creator": self.bot_user_id,
            "context_team_id": self.team_id,
            "topic": {"value": topic, "creator": "", "last_set": 0},
            "purpose": {"value": purpose, "creator": "", "last_set": 0},
            "previous_names": [],
        }
        self._channels[channel_id] = channel
        return copy.deepcopy(channel)

    def fail_next(
        self,
        method: str,
        *,
        status: int = 200,
        error: str | None = None,
        times: int = 1,
        retry_after: int = 1,
    ) -> None:
        """Make the next ``times`` calls to ``method`` fail (after the token check).

        ``status=500`` answers HTTP 500 (error ``internal_error`` unless given); ``status=429``
        answers with ``Retry-After: retry_after`` (error ``ratelimited``); ``error=...`` alone
        answers HTTP 200 ``{"ok": false, "error": error}``. Failed calls have no effect.
        Failures queue up in the order they were asked for.
        """
        if method not in self._methods:
            raise ValueError(f"{method!r} is not a method the stand-in answers")
        if times < 1:
            raise ValueError("times must be at least 1")
        if status == 200 and error is None:
            raise ValueError("give an HTTP error status, an error code, or both")
        if error is None:
            error = "ratelimited" if status == 429 else "internal_error" if status >= 500 else "invalid_request"
        self._failures.setdefault(method, []).append(
            _Failure(status=status, error=error, remaining=times, retry_after=max(1, retry_after))
        )

    def route(self, method: str, handler: Handler) -> None:
        """Answer ``method`` with ``handler(call)`` (sync or async, returns the JSON body).

        Adds a method or replaces a built-in one; token checks, delay and failures still apply.
        """
        self._methods[method] = handler

    # ------------------------------------------------------------------ HTTP plumbing

    async def _handle(self, request: web.Request) -> web.Response:
        """Record, delay, check and answer one Web API request."""
        method = request.match_info["method"]
        args, parse_error = await _read_args(request)
        token = _bearer(request.headers.get("Authorization"))
        form_token = args.pop("token", None)
        if token is None and isinstance(form_token, str):
            token = form_token
        call = Call(
            method=method,
            args=args,
            headers=CIMultiDict(request.headers),
            at=time.monotonic(),
            http_method=request.method,
            token=token,
        )
        self.calls.append(call)
        if self.delay > 0:
            await asyncio.sleep(self.delay)

        status, body, headers = 200, {}, {}
        try:
            if parse_error is not None:
                raise _ApiError(parse_error)
            body = await self._dispatch(call)
        except _ApiError as e:
            status, body, headers = e.status, e.body(), e.headers
        call.status, call.response = status, body
        logger.debug("%s %s -> %s %s", request.method, method, status, body.get("error", "ok"))
        return web.json_response(body, status=status, headers=headers)

    async def _dispatch(self, call: Call) -> dict[str, Any]:
        """Run the checks shared by all methods, then the method itself."""
        handler = self._methods.get(call.method)
        if handler is None:
            raise _ApiError("unknown_method", extra={"req_method": call.method})
        app_level = call.method.startswith("apps.connections.")  # Socket Mode: an app-level token (xapp-)
        if call.token is None or not call.token.startswith(("xapp-", "xoxb-")):
            raise _ApiError("invalid_auth")
        if call.token.startswith("xapp-") != app_level:
            raise _ApiError("not_allowed_token_type")
        self._injected_failure(call.method)
        if call.method == "chat.postMessage":
            channel = call.args.get("channel")
            if isinstance(channel, str) and channel:
                self._rate_limit(channel)
        result = handler(call)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _injected_failure(self, method: str) -> None:
        """Raise the next failure queued by `fail_next` for ``method``, if any."""
        failure = next_failure(self._failures, method)
        if failure is None:
            return
        headers = {"Retry-After": str(failure.retry_after)} if failure.status == 429 else {}
        raise _ApiError(failure.error, status=failure.status, headers=headers)

    def _rate_limit(self, channel: str) -> None:
        """Take a token from the channel's bucket or raise HTTP 429 with ``Retry-After``."""
        rate = self.rate_limit_per_channel
        if rate is None:
            return
        retry_after = take_token(self._buckets, channel, rate=rate, burst=self.rate_limit_burst, now=self.rate_clock())
        if retry_after is None:
            return
        raise _ApiError("ratelimited", status=429, headers={"Retry-After": str(retry_after)})

    # ------------------------------------------------------------------ state helpers

    def _next_ts(self) -> str:
        """A new message timestamp (``"1700000000.000100"`` form), unique and increasing."""
        micros = max(int(time.time() * 1_000_000), self._last_ts_micros + 1)
        self._last_ts_micros = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _channel(self, channel_id: Any) -> dict[str, Any]:
        """The channel object for an id, made up on first sight unless `strict`."""
        if not isinstance(channel_id, str) or not channel_id:
            raise _ApiError("channel_not_found")
        found = self._channels.get(channel_id)
        if found is None:
            if self.strict:
                raise _ApiError("channel_not_found")
            self.add_channel(channel_id, channel_id.lower())
            found = self._channels[channel_id]
        return found

    def _user(self, user_id: Any) -> dict[str, Any]:
        """The user object for an id, made up on first sight unless `strict`."""
        if not isinstance(user_id, str) or not user_id:
            raise _ApiError("user_not_found")
        found = self._users.get(user_id)
        if found is None:
            if self.strict:
                raise _ApiError("user_not_found")
            self.add_user(user_id, user_id.lower(), real_name=f"User {user_id}")
            found = self._users[user_id]
        return found

    def _stored(self, channel: str, ts: Any) -> dict[str, Any]:
        """The stored message at ``ts`` in ``channel`` or ``message_not_found``."""
        found = self._messages.get(channel, {}).get(ts) if isinstance(ts, str) else None
        if found is None:
            raise _ApiError("message_not_found")
        return found

    def _make_view(self, spec: Any, *, view_id: str | None = None, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        """Build the view object Slack returns from a view payload."""
        if not isinstance(spec, dict) or spec.get("type") not in ("modal", "home"):
            raise _ApiError("invalid_arguments", extra={"response_metadata": {"messages": ["[ERROR] invalid `view`"]}})
        self._view_seq += 1
        vid = view_id or f"V{self._view_seq:08d}STAND"
        view: dict[str, Any] = {
            "id": vid,
            "team_id": self.team_id,
            "type": spec["type"],
            "blocks": copy.deepcopy(spec.get("blocks", [])),
            "private_metadata": spec.get("private_metadata", ""),
            "callback_id": spec.get("callback_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{self._view_seq:08x}",
            "clear_on_close": bool(spec.get("clear_on_close", False)),
            "notify_on_close": bool(spec.get("notify_on_close", False)),
            "root_view_id": previous["root_view_id"] if previous else vid,
            "previous_view_id": None,
            "app_id": self.app_id,
            "external_id": spec.get("external_id", previous["external_id"] if previous else ""),
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        for key in ("title", "submit", "close"):
            if key in spec:
                view[key] = copy.deepcopy(spec[key])
        self.views[vid] = view
        return view

    # ------------------------------------------------------------------ methods

    def _auth_test(self, call: Call) -> dict[str, Any]:
        """``auth.test``: who the token belongs to."""
        return {
            "ok": True,
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, call: Call) -> dict[str, Any]:
        """``chat.postMessage``: store a new message in the channel."""
        a = call.args
        channel = a.get("channel")
        self._channel(channel)
        if not (a.get("text") or a.get("blocks") or a.get("attachments")):
            raise _ApiError("no_text")
        ts = self._next_ts()
        message: dict[str, Any] = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": a.get("text") or "",
            "ts": ts,
            "team": self.team_id,
            "bot_profile": {
                "id": self.bot_id,
                "app_id": self.app_id,
                "name": self.bot_name,
                "deleted": False,
                "team_id": self.team_id,
            },
        }
        for key in ("blocks", "attachments", "metadata", "thread_ts"):
            if a.get(key):
                message[key] = copy.deepcopy(a[key])
        self._messages.setdefault(channel, {})[ts] = message
        return {"ok": True, "channel": channel, "ts": ts, "message": copy.deepcopy(message)}

    def _chat_update(self, call: Call) -> dict[str, Any]:
        """``chat.update``: replace the text/blocks/attachments given, keep the rest."""
        a = call.args
        channel = a.get("channel")
        self._channel(channel)
        message = self._stored(channel, a.get("ts"))
        given = [k for k in ("text", "blocks", "attachments") if k in a and a[k] is not None]
        if not given:
            raise _ApiError("no_text")
        for key in given:
            message[key] = copy.deepcopy(a[key])
        if "metadata" in a:
            message["metadata"] = copy.deepcopy(a["metadata"])
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        shown = {k: v for k, v in message.items() if k not in ("ts", "edited", "thread_ts")}
        return {
            "ok": True,
            "channel": channel,
            "ts": message["ts"],
            "text": message.get("text", ""),
            "message": copy.deepcopy(shown),
        }

    def _chat_post_ephemeral(self, call: Call) -> dict[str, Any]:
        """``chat.postEphemeral``: record a message only ``user`` sees."""
        a = call.args
        channel = a.get("channel")
        self._channel(channel)
        user = a.get("user")
        self._user(user)
        if not (a.get("text") or a.get("blocks") or a.get("attachments")):
            raise _ApiError("no_text")
        message_ts = self._next_ts()
        entry: dict[str, Any] = {"channel": channel, "user": user, "text": a.get("text") or "", "message_ts": message_ts}
        for key in ("blocks", "attachments", "thread_ts"):
            if a.get(key):
                entry[key] = copy.deepcopy(a[key])
        self.ephemeral.append(entry)
        return {"ok": True, "message_ts": message_ts}

    def _chat_get_permalink(self, call: Call) -> dict[str, Any]:
        """``chat.getPermalink``: the archive URL of a message."""
        a = call.args
        channel = a.get("channel")
        self._channel(channel)
        ts = a.get("message_ts")
        if not isinstance(ts, str) or not ts:
            raise _ApiError("message_not_found")
        message = self._messages.get(channel, {}).get(ts)
        if message is None and self.strict:
            raise _ApiError("message_not_found")
        link = f"https://{self.team_domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        thread_ts = message.get("thread_ts") if message else None
        if thread_ts and thread_ts != ts:
            link += f"?thread_ts={thread_ts}&cid={channel}"
        return {"ok": True, "channel": channel, "permalink": link}

    def _views_open(self, call: Call) -> dict[str, Any]:
        """``views.open``: open a modal (needs a ``trigger_id``)."""
        a = call.args
        if not (a.get("trigger_id") or a.get("interactivity_pointer")):
            raise _ApiError(
                "invalid_arguments", extra={"response_metadata": {"messages": ["[ERROR] missing required field: trigger_id"]}}
            )
        view = self._make_view(a.get("view"))
        return {"ok": True, "view": copy.deepcopy(view)}

    def _views_update(self, call: Call) -> dict[str, Any]:
        """``views.update``: replace an open view, by ``view_id`` or ``external_id``."""
        a = call.args
        current: dict[str, Any] | None = None
        if a.get("view_id"):
            current = self.views.get(a["view_id"])
        elif a.get("external_id"):
            current = next((v for v in self.views.values() if v["external_id"] == a["external_id"]), None)
        else:
            raise _ApiError(
                "invalid_arguments", extra={"response_metadata": {"messages": ["[ERROR] view_id or external_id is required"]}}
            )
        if current is None:
            raise _ApiError("not_found")
        if a.get("hash") and a["hash"] != current["hash"]:
            raise _ApiError("hash_conflict")
        view = self._make_view(a.get("view"), view_id=current["id"], previous=current)
        return {"ok": True, "view": copy.deepcopy(view)}

    def _views_publish(self, call: Call) -> dict[str, Any]:
        """``views.publish``: set a user's Home tab."""
        a = call.args
        user_id = a.get("user_id")
        self._user(user_id)
        spec = a.get("view")
        if not isinstance(spec, dict) or spec.get("type") != "home":
            raise _ApiError("invalid_arguments", extra={"response_metadata": {"messages": ["[ERROR] view type must be home"]}})
        current = self.views.get(self.home_views.get(user_id, ""))
        if current is not None and a.get("hash") and a["hash"] != current["hash"]:
            raise _ApiError("hash_conflict")
        view = self._make_view(spec, view_id=current["id"] if current else None, previous=current)
        self.home_views[user_id] = view["id"]
        return {"ok": True, "view": copy.deepcopy(view)}

    def _users_info(self, call: Call) -> dict[str, Any]:
        """``users.info``: a user object."""
        return {"ok": True, "user": copy.deepcopy(self._user(call.args.get("user")))}

    def _conversations_info(self, call: Call) -> dict[str, Any]:
        """``conversations.info``: a channel object."""
        return {"ok": True, "channel": copy.deepcopy(self._channel(call.args.get("channel")))}

    def _conversations_history(self, call: Call) -> dict[str, Any]:
        """``conversations.history``: a channel's top-level messages, newest first, between ``oldest``
        and ``latest`` (exclusive), ``limit`` a page (cursor = the next offset), metadata only with
        ``include_all_metadata`` (as Slack does for messages' ``metadata``)."""
        a = call.args
        channel = a.get("channel")
        self._channel(channel)
        oldest, latest = float(a.get("oldest") or 0), float(a.get("latest") or 1e12)
        with_metadata = str(a.get("include_all_metadata", "")).lower() in ("1", "true")
        shown = [
            m
            for ts, m in sorted(self._messages.get(channel, {}).items(), key=lambda kv: _ts_key(kv[0]), reverse=True)
            if oldest < float(ts) < latest and m.get("thread_ts") in (None, ts)
        ]
        start = int(a.get("cursor") or 0)
        limit = max(1, min(int(a.get("limit") or 100), 999))
        page = [copy.deepcopy(m) for m in shown[start : start + limit]]
        if not with_metadata:
            for message in page:
                message.pop("metadata", None)
        more = start + limit < len(shown)
        return {
            "ok": True,
            "messages": page,
            "has_more": more,
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }


def _ts_key(ts: str) -> tuple[int, int]:
    """Sort key for Slack timestamps (``"seconds.micros"``)."""
    seconds, _, micros = ts.partition(".")
    return int(seconds), int(micros or 0)


def _bearer(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or ``None``."""
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def _read_args(request: web.Request) -> tuple[dict[str, Any], str | None]:
    """Merge query-string and body arguments; returns ``(args, error code or None)``."""
    args: dict[str, Any] = dict(request.query)
    error: str | None = None
    if request.body_exists:
        ctype = request.content_type
        if ctype == "application/json":
            try:
                body = await request.json()
            except ValueError:
                body, error = {}, "invalid_json"
            if isinstance(body, dict):
                args.update(body)
            else:
                error = "invalid_json"
        elif ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                args[key] = value if isinstance(value, str) else getattr(value, "filename", None)
    for key in _JSON_ARGS:
        value = args.get(key)
        if isinstance(value, str) and value[:1] in ("[", "{"):
            try:
                args[key] = json.loads(value)
            except ValueError:
                error = error or "invalid_arguments"
    return args, error
