"""A loopback stand-in for the Bot Framework Connector service, for tests.

`BotConnectorStandIn` is a real aiohttp server on 127.0.0.1 (a free port chosen by the OS) that
answers the Bot Connector REST API v3 routes a Teams bot calls on an activity's ``serviceUrl``,
so that::

    async with BotConnectorStandIn() as connector:
        client = ConnectorClient(MicrosoftAppCredentials("", ""), base_url=connector.url)
        sent = await client.conversations.send_to_conversation("a:chat", Activity(type="message", text="hi"))
        assert connector.activity("a:chat", sent.id)["text"] == "hi"

works unchanged with botbuilder's own client (and with ``CloudAdapter``, ``TeamsInfo``...). It
records every call (`Call`), keeps what each conversation shows now (sent activities, replies,
updates applied, deletions removed), answers roster and team look-ups from what a test
registered, and can rate-limit per conversation, answer slowly, refuse unauthenticated calls,
fail on demand (`fail_next`: any 4xx/5xx, 429 with ``Retry-After``) or reset the connection
without an answer (`drop_next`).

Routes (paths and verbs as in ``botframework/connector/operations/_conversations_operations.py``
and ``teams/operations/teams_operations.py``), with the route names used by `Call.route`:

=========  ===================================================================  ==============
verb       path                                                                 route
=========  ===================================================================  ==============
POST       ``/v3/conversations``                                                ``create``
POST       ``/v3/conversations/{conversationId}/activities``                    ``send``
POST       ``/v3/conversations/{conversationId}/activities/{activityId}``       ``reply``
PUT        ``/v3/conversations/{conversationId}/activities/{activityId}``       ``update``
DELETE     ``/v3/conversations/{conversationId}/activities/{activityId}``       ``delete``
GET        ``/v3/conversations/{conversationId}/members``                       ``members``
GET        ``/v3/conversations/{conversationId}/members/{memberId}``            ``member``
GET        ``/v3/conversations/{conversationId}/pagedmembers``                  ``paged_members``
GET        ``/v3/teams/{teamId}``                                               ``team``
GET        ``/v3/teams/{teamId}/conversations``                                 ``team_channels``
=========  ===================================================================  ==============

Anything else is recorded as ``unknown`` and answered 404. Errors use the Bot Framework error
body ``{"error": {"code": ..., "message": ...}}`` (``ActivityNotFound``,
``MemberNotFoundInConversation``, ``Throttled``...); a 401 from `require_auth` uses the
ASP.NET body the real service sends (``{"message": "Authorization has been denied..."}``).

Conversation ids arrive percent-encoded (botbuilder quotes ``:``, ``@``, ``;`` and ``=``); the
recorded ids and the keys of `activities` are the decoded ids, e.g.
``"19:abc@thread.tacv2;messageid=1771290107407"``.

botbuilder's ``TeamsInfo.get_team_details`` / ``get_team_channels`` call the service with the
*synchronous* ``TeamsConnectorClient``, blocking the event loop; give ``threaded=True`` when the
code under test does that, so the stand-in answers from its own thread and loop.

Teams threads: a channel thread's conversation id is ``"{channel id};messageid={root id}"``.
``create`` with ``channelData.channel.id`` starts a thread (its answer's ``id`` is that thread
id, ``activityId`` the root post). Activities are stored per *channel* (the id before ``;``), so
an update or delete addressed to either the channel id or the thread id finds the post, as the
real service does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import inspect
import json
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from tests.standins import RecordingStandIn, next_failure, take_token

logger = logging.getLogger(__name__)

#: The route names `Call.route` takes (and `BotConnectorStandIn.fail_next` accepts).
ROUTES = ("create", "send", "reply", "update", "delete", "members", "member", "paged_members", "team", "team_channels")

#: Routes the per-conversation rate limit applies to by default (the writes).
WRITE_ROUTES = frozenset({"create", "send", "reply", "update", "delete"})

#: Error codes used for injected failures, by HTTP status.
_FAILURE_CODES = {
    400: "BadArgument",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    412: "PreconditionFailed",
    413: "MessageSizeTooBig",
    429: "Throttled",
}

#: Teams' bot message size limit, counted over the body as UTF-16 (Microsoft's "format your
#: bot messages" page; 40 KB in most of its versions).
MAX_MESSAGE_BYTES = 40 * 1024

#: HTTP statuses whose answers carry ``Retry-After``.
_RETRY_AFTER_STATUSES = frozenset({429, 503})

_DENIED = {"message": "Authorization has been denied for this request."}


@dataclass
class Call:
    """One request the stand-in received.

    Attributes:
        route: The route name (``"create"``, ``"send"``, ``"reply"``, ``"update"``, ``"delete"``,
            ``"members"``, ``"member"``, ``"paged_members"``, ``"team"``, ``"team_channels"`` or
            ``"unknown"``).
        method: The HTTP verb (``"POST"``, ``"PUT"``, ``"DELETE"``, ``"GET"``).
        path: The request path, percent-decoded.
        conversation_id: The decoded ``{conversationId}`` of the path, if the route has one.
        activity_id: The decoded ``{activityId}`` of the path, if the route has one.
        body: The parsed JSON body (``None`` without one; the raw text if it was not JSON).
        headers: The request headers (case-insensitive mapping).
        at: ``time.monotonic()`` when the request arrived (before any `BotConnectorStandIn.delay`).
        raw_path: The path as sent, still percent-encoded.
        query: The query-string arguments.
        member_id: The decoded ``{memberId}``, for the ``member`` route.
        team_id: The decoded ``{teamId}``, for the ``team`` / ``team_channels`` routes.
        status: The HTTP status answered; ``None`` while the call is still in progress.
        response: The JSON body answered (``None`` for an empty body or while in progress).
    """

    route: str
    method: str
    path: str
    conversation_id: str | None
    activity_id: str | None
    body: Any
    headers: Mapping[str, str]
    at: float
    raw_path: str = ""
    query: dict[str, str] = field(default_factory=dict)
    member_id: str | None = None
    team_id: str | None = None
    status: int | None = None
    response: Any = None

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header as sent (``None`` when there was none)."""
        return self.headers.get("Authorization")

    @property
    def ok(self) -> bool:
        """Whether the call was answered with a 2xx status."""
        return self.status is not None and 200 <= self.status < 300


#: What a route implementation looks like: it gets the recorded call and returns
#: ``(status, JSON body or None)``, directly or awaitably.
Handler = Callable[[Call], tuple[int, Any] | Awaitable[tuple[int, Any]]]


@dataclass
class _Failure:
    """A failure queued by `BotConnectorStandIn.fail_next`."""

    status: int
    code: str
    message: str
    remaining: int
    retry_after: int


class _ConnectorError(Exception):
    """Raised by a route implementation to answer an error."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None, body: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self._body = body

    def body(self) -> dict[str, Any]:
        """The JSON body the Bot Connector service sends for this error."""
        if self._body is not None:
            return self._body
        return {"error": {"code": self.code, "message": self.message}}


@dataclass
class _Stored:
    """One activity a conversation shows, with where it sits."""

    activity: dict[str, Any]
    thread: str | None
    order: int


class BotConnectorStandIn(RecordingStandIn):
    """A loopback HTTP server that speaks enough of the Bot Connector REST API v3 for tests.

    Use it as an async context manager (or call `start` / `close`) and put `url` in the
    activities' ``serviceUrl`` (or give it to ``ConnectorClient(base_url=...)``).

    Checks, in order: authorization (only if `require_auth`), failures queued with
    `fail_next`, the per-conversation rate limit, then the route itself. Every request is
    recorded in `calls`, including rejected ones; rejected calls change nothing.

    Attributes:
        calls: Every request received, in arrival order.
        delay: Seconds to sleep before answering any call (may be changed at any time).
        rate_limit_per_conversation: Calls per second allowed per conversation on the
            `rate_limited_routes`, or ``None`` for no limit (may be changed at any time).
        rate_limit_burst: How many calls a quiet conversation accepts at once before limiting.
        rate_limited_routes: The routes the rate limit counts (default: the writes).
        rate_clock: Seconds source of the rate limiter.
        require_auth: Refuse calls without an ``Authorization: Bearer ...`` header (401).
        expected_token: With `require_auth`, the only bearer token accepted (``None``: any).
        tenant_id: Tenant id used in made-up answers (member ``tenantId``).
        threaded: Whether the server runs on its own thread and loop (see ``__init__``).
    """

    def __init__(
        self,
        *,
        delay: float = 0.0,
        rate_limit_per_conversation: float | None = None,
        rate_limit_burst: int = 1,
        rate_limited_routes: Sequence[str] = tuple(WRITE_ROUTES),
        rate_clock: Callable[[], float] | None = None,
        require_auth: bool = False,
        expected_token: str | None = None,
        tenant_id: str = "a1b2c3d4-e5f6-7890-abcd-ef1234567890",
        base_path: str = "",
        threaded: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        max_message_bytes: int | None = MAX_MESSAGE_BYTES,
    ) -> None:
        """Configure the stand-in; nothing listens until `start`.

        Args:
            delay: Seconds to sleep before answering every call ("slow mode").
            rate_limit_per_conversation: Calls per second per conversation, or ``None``.
            rate_limit_burst: Bucket size of the rate limiter (1 = strictly spaced calls).
            rate_limited_routes: Route names the rate limit applies to.
            rate_clock: Seconds source for the rate limiter (default ``time.monotonic``); a test
                may pass a clock it moves by hand so a long burst needs no real waiting.
            require_auth: Answer 401 to calls without a bearer token.
            expected_token: With ``require_auth``, the bearer token to insist on.
            tenant_id: Tenant id used in made-up answers.
            base_path: A path prefix the routes live under, like a real regional service URL
                (``"amer/<tenant id>/"`` gives ``url`` ``http://127.0.0.1:PORT/amer/<tenant id>/``).
            threaded: Serve from a background thread with its own event loop. Needed when the code
                under test makes *blocking* HTTP calls on the test's loop: botbuilder's
                ``TeamsInfo.get_team_details`` / ``get_team_channels`` use the synchronous
                ``TeamsConnectorClient`` and would otherwise wait forever for an answer the
                blocked loop cannot give. State may be read from the test as usual.
            host: Interface to listen on.
            port: Port to listen on; 0 picks a free one.
            max_message_bytes: Refuse a posted or updated activity whose body, counted as
                UTF-16 as Teams counts it, is larger (413 ``MessageSizeTooBig``); ``None``: no limit.
        """
        if rate_limit_per_conversation is not None and rate_limit_per_conversation <= 0:
            raise ValueError("rate_limit_per_conversation must be positive or None")
        if rate_limit_burst < 1:
            raise ValueError("rate_limit_burst must be at least 1")
        unknown = set(rate_limited_routes) - set(ROUTES)
        if unknown:
            raise ValueError(f"unknown route name(s) {sorted(unknown)}; known: {ROUTES}")
        self.delay = delay
        self.rate_limit_per_conversation = rate_limit_per_conversation
        self.rate_limit_burst = rate_limit_burst
        self.rate_limited_routes = frozenset(rate_limited_routes)
        self.rate_clock: Callable[[], float] = rate_clock or time.monotonic
        self.require_auth = require_auth
        self.expected_token = expected_token
        self.tenant_id = tenant_id
        self.threaded = threaded
        self.max_message_bytes = max_message_bytes
        self._prefix = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self._host = host
        self._port = port

        self.calls: list[Call] = []

        self._store: dict[str, dict[str, _Stored]] = {}
        self._deleted: dict[str, dict[str, dict[str, Any]]] = {}
        self._members: dict[str | None, dict[str, dict[str, Any]]] = {}
        self._teams: dict[str, dict[str, Any]] = {}
        self._chats: dict[tuple[str, ...], str] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._drops: dict[str, list[_Failure]] = {}
        self._buckets: dict[str, tuple[float, float]] = {}
        self._last_id = 0
        self._order = 0
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._thread_loop: asyncio.AbstractEventLoop | None = None
        self._url: str | None = None
        self._routes: dict[str, Handler] = {
            "create": self._create,
            "send": self._send,
            "reply": self._reply,
            "update": self._update,
            "delete": self._delete,
            "members": self._list_members,
            "member": self._get_member,
            "paged_members": self._paged_members,
            "team": self._team,
            "team_channels": self._team_channels,
        }

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """The service URL to put in ``serviceUrl`` / ``ConnectorClient(base_url=...)``; ends with ``/``."""
        if self._url is None:
            raise RuntimeError("BotConnectorStandIn is not started")
        return self._url

    async def start(self) -> BotConnectorStandIn:
        """Start listening; returns ``self``."""
        if self._runner is not None or self._thread is not None:
            raise RuntimeError("BotConnectorStandIn is already started")
        if not self.threaded:
            self._runner = await self._serve()
            return self
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=self._run_thread, args=(loop, ready), name="bot-connector-standin", daemon=True)
        thread.start()
        try:
            await asyncio.wrap_future(ready)
        except BaseException:
            await asyncio.to_thread(thread.join)
            raise
        self._thread, self._thread_loop = thread, loop
        return self

    async def close(self) -> None:
        """Stop listening (idempotent). Calls still sleeping in slow mode are cut short."""
        runner, self._runner = self._runner, None
        thread, loop = self._thread, self._thread_loop
        self._thread = self._thread_loop = None
        if thread is not None and loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join)
        elif runner is not None:
            await runner.cleanup()
        if runner is not None or thread is not None:
            logger.debug("Bot Connector stand-in on %s closed", self._url)

    def _run_thread(self, loop: asyncio.AbstractEventLoop, ready: concurrent.futures.Future[None]) -> None:
        """The background thread of `threaded` mode: serve on its own loop until `close`."""
        asyncio.set_event_loop(loop)
        try:
            try:
                runner = loop.run_until_complete(self._serve())
            except BaseException as exc:  # reported to `start`
                ready.set_exception(exc)
                return
            self._runner = runner
            ready.set_result(None)
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
        finally:
            loop.close()

    async def _serve(self) -> web.AppRunner:
        """Build the app, listen, set `url`; returns the runner."""
        app = web.Application()
        p = self._prefix
        conv = p + "/v3/conversations/{conversationId}"
        table: list[tuple[str, str, str]] = [
            ("POST", p + "/v3/conversations", "create"),
            ("POST", conv + "/activities", "send"),
            ("POST", conv + "/activities/{activityId}", "reply"),
            ("PUT", conv + "/activities/{activityId}", "update"),
            ("DELETE", conv + "/activities/{activityId}", "delete"),
            ("GET", conv + "/members", "members"),
            ("GET", conv + "/members/{memberId}", "member"),
            ("GET", conv + "/pagedmembers", "paged_members"),
            ("GET", p + "/v3/teams/{teamId}", "team"),
            ("GET", p + "/v3/teams/{teamId}/conversations", "team_channels"),
        ]
        for verb, path, name in table:
            app.router.add_route(verb, path, self._handler_for(name), name=name)
        app.router.add_route("*", "/{tail:.*}", self._handler_for("unknown"))
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        host, port = runner.addresses[0][:2]
        self._url = f"http://{host}:{port}{p}/"
        logger.debug("Bot Connector stand-in listening on %s%s", self._url, " (own thread)" if self.threaded else "")
        return runner

    # ------------------------------------------------------------------ test helpers

    def calls_to(self, route: str) -> list[Call]:
        """The recorded calls of one route (see `ROUTES`), in arrival order."""
        return [c for c in self.calls if c.route == route]

    def activities(self, conversation_id: str) -> list[dict[str, Any]]:
        """What a conversation shows now, oldest first, with updates applied. Returns copies.

        For a channel (or chat) id: every activity in it, thread replies included (a reply has
        ``replyToId`` and a ``conversation.id`` naming its thread). For a thread id
        (``"...;messageid=ROOT"``): the root post and the replies in that thread.
        Each activity is the JSON the bot sent, with ``id`` and ``conversation.id`` set.
        """
        base, thread = _split(conversation_id)
        stored = sorted(self._store.get(base, {}).values(), key=lambda s: s.order)
        if thread is not None:
            stored = [s for s in stored if s.activity["id"] == thread or s.thread == thread]
        return [copy.deepcopy(s.activity) for s in stored]

    def activity(self, conversation_id: str, activity_id: str) -> dict[str, Any] | None:
        """A copy of one activity as it shows now (``None`` if unknown or deleted).

        ``conversation_id`` may be the channel id or any thread id in that channel."""
        found = self._store.get(_split(conversation_id)[0], {}).get(activity_id)
        return copy.deepcopy(found.activity) if found is not None else None

    def deleted(self, conversation_id: str) -> list[dict[str, Any]]:
        """Copies of the activities deleted from a conversation (as they were), oldest first."""
        return [copy.deepcopy(a) for a in self._deleted.get(_split(conversation_id)[0], {}).values()]

    def add_member(
        self,
        member_id: str,
        name: str,
        *,
        aad_object_id: str | None = None,
        email: str | None = None,
        user_principal_name: str | None = None,
        given_name: str | None = None,
        surname: str | None = None,
        user_role: str = "user",
        tenant_id: str | None = None,
        conversation_id: str | None = None,
    ) -> dict[str, Any]:
        """Register (or replace) a roster member; returns its ``TeamsChannelAccount`` JSON.

        The shape is the documented answer of ``GET /v3/conversations/{id}/members/{userId}``
        (MicrosoftDocs/msteams-docs, ``bots/how-to/get-teams-context.md``, "Get single member
        details": ``id``, ``objectId``, ``givenName``, ``surname``, ``email``, ``userPrincipalName``,
        ``tenantId``, ``userRole``) plus the ``name`` and ``aadObjectId`` botbuilder's
        ``TeamsChannelAccount`` reads.

        Args:
            member_id: The Teams user id (``"29:..."``).
            name: Display name.
            aad_object_id: Entra object id (default: a stable UUID derived from ``member_id``).
            email: Default ``"<name as a.dotted.slug>@contoso.example"``.
            user_principal_name: Default: the email.
            given_name: Default: the first word of ``name``.
            surname: Default: the last word of ``name`` (if more than one).
            user_role: ``"user"``, ``"guest"`` or ``"anonymous"``.
            tenant_id: Default: the stand-in's `tenant_id`.
            conversation_id: Only this conversation (channel, chat or team id; a thread id counts as
                its channel) lists the member; ``None`` (default) puts them in every conversation.
        """
        words = name.split()
        slug = ".".join(w.lower() for w in words) or member_id.split(":")[-1].lower()
        mail = email if email is not None else f"{slug}@contoso.example"
        member: dict[str, Any] = {
            "id": member_id,
            "name": name,
            "aadObjectId": aad_object_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"teams-member:{member_id}")),
            "objectId": aad_object_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"teams-member:{member_id}")),
            "givenName": given_name if given_name is not None else (words[0] if words else None),
            "surname": surname if surname is not None else (words[-1] if len(words) > 1 else None),
            "email": mail,
            "userPrincipalName": user_principal_name if user_principal_name is not None else mail,
            "tenantId": tenant_id or self.tenant_id,
            "userRole": user_role,
        }
        scope = _split(conversation_id)[0] if conversation_id is not None else None
        self._members.setdefault(scope, {})[member_id] = member
        return copy.deepcopy(member)

    def members(self, conversation_id: str) -> list[dict[str, Any]]:
        """Copies of the roster the ``members`` route answers for a conversation."""
        return [copy.deepcopy(m) for m in self._roster(conversation_id)]

    def add_team(
        self,
        team_id: str,
        name: str,
        *,
        aad_group_id: str | None = None,
        channels: Mapping[str, str | None] | None = None,
        team_type: str = "standard",
    ) -> dict[str, Any]:
        """Register (or replace) a team answered by the ``team`` / ``team_channels`` routes.

        Args:
            team_id: The team id (the id of its General channel, ``"19:...@thread.tacv2"``).
            name: The team name.
            aad_group_id: Its Microsoft 365 group id (default: a UUID derived from ``team_id``).
            channels: Channel id → name (``None`` for General). The team's own id is always listed
                first as General.
            team_type: ``"standard"``, ``"sharedChannel"`` or ``"privateChannel"``.

        Returns:
            The ``TeamDetails`` JSON.
        """
        listed: dict[str, str | None] = {team_id: None}
        listed.update(channels or {})
        details = {
            "id": team_id,
            "name": name,
            "aadGroupId": aad_group_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"teams-team:{team_id}")),
            "channelCount": len(listed),
            "memberCount": 0,
            "type": team_type,
        }
        self._teams[team_id] = {"details": details, "channels": listed}
        return copy.deepcopy(details)

    def fail_next(
        self,
        route: str,
        *,
        status: int = 429,
        times: int = 1,
        retry_after: int = 1,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``route`` fail with HTTP ``status`` (after auth).

        The body is ``{"error": {"code": code, "message": message}}`` (code ``Throttled`` for 429,
        ``ServiceError`` for 5xx, ... unless given). 429 and 503 answers carry
        ``Retry-After: retry_after`` (0 is allowed). Failed calls have no effect. Failures queue
        up in the order they were asked for.
        """
        if route not in self._routes:
            raise ValueError(f"{route!r} is not a route the stand-in answers; known: {ROUTES}")
        if times < 1:
            raise ValueError("times must be at least 1")
        if status < 400:
            raise ValueError("give an HTTP error status (400 or more)")
        if code is None:
            code = _FAILURE_CODES.get(status, "ServiceError" if status >= 500 else "BadArgument")
        self._failures.setdefault(route, []).append(
            _Failure(
                status=status,
                code=code,
                message=message or f"injected failure ({status})",
                remaining=times,
                retry_after=max(0, retry_after),
            )
        )

    def drop_next(self, route: str, *, times: int = 1) -> None:
        """Make the next ``times`` calls of ``route`` get no answer: the connection is reset.

        The caller sees what it sees when the service is unreachable (``ServerDisconnectedError``
        / connection reset); the call is recorded with ``status`` 0 and has no effect.
        """
        if route not in self._routes:
            raise ValueError(f"{route!r} is not a route the stand-in answers; known: {ROUTES}")
        if times < 1:
            raise ValueError("times must be at least 1")
        self._drops.setdefault(route, []).append(_Failure(status=0, code="", message="", remaining=times, retry_after=0))

    def route(self, name: str, handler: Handler) -> None:
        """Answer route ``name`` with ``handler(call)`` returning ``(status, JSON body or None)``.

        Replaces a built-in route implementation; auth, delay, failures and rate limits still apply.
        """
        if name not in self._routes:
            raise ValueError(f"{name!r} is not a route the stand-in serves; known: {ROUTES}")
        self._routes[name] = handler

    # ------------------------------------------------------------------ HTTP plumbing

    def _handler_for(self, route: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        """The aiohttp handler of one route name."""

        async def handler(request: web.Request) -> web.Response:
            return await self._handle(route, request)

        return handler

    async def _handle(self, route: str, request: web.Request) -> web.Response:
        """Record, delay, check and answer one request."""
        raw = await request.read()
        body: Any = None
        parse_error = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body, parse_error = raw.decode("utf-8", "replace"), True
        info = request.match_info
        call = Call(
            route=route,
            method=request.method,
            path=request.path,
            conversation_id=info.get("conversationId"),
            activity_id=info.get("activityId"),
            body=body,
            headers=CIMultiDict(request.headers),
            at=time.monotonic(),
            raw_path=request.raw_path,
            query=dict(request.query),
            member_id=info.get("memberId"),
            team_id=info.get("teamId"),
        )
        self.calls.append(call)
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        if next_failure(self._drops, route) is not None:
            call.status = 0  # no HTTP answer at all
            assert request.transport is not None
            request.transport.abort()  # the connection is reset, as when the service is down or a proxy gives up
            return web.Response(status=500)  # never reaches the caller

        headers: dict[str, str] = {}
        try:
            if route == "unknown":
                raise _ConnectorError(404, "NotFound", f"no route for {request.method} {request.path}")
            if parse_error:
                raise _ConnectorError(400, "BadSyntax", "the body is not JSON")
            status, answer = await self._dispatch(call)
        except _ConnectorError as e:
            status, answer, headers = e.status, e.body(), e.headers
        call.status, call.response = status, answer
        logger.debug("%s %s (%s) -> %s", request.method, request.path, route, status)
        if answer is None:
            return web.Response(status=status, headers=headers)
        return web.json_response(answer, status=status, headers=headers)

    async def _dispatch(self, call: Call) -> tuple[int, Any]:
        """Run the checks shared by all routes, then the route itself."""
        if self.require_auth:
            token = _bearer(call.authorization)
            if token is None or (self.expected_token is not None and token != self.expected_token):
                raise _ConnectorError(401, "Unauthorized", _DENIED["message"], body=dict(_DENIED))
        self._injected_failure(call.route)
        if self.max_message_bytes is not None and call.route in ("create", "send", "reply", "update"):
            size = len(json.dumps(call.body).encode("utf-16-le"))
            if size > self.max_message_bytes:
                raise _ConnectorError(
                    413, "MessageSizeTooBig", f"the message is {size} bytes as UTF-16; the limit is {self.max_message_bytes}"
                )
        if call.route in self.rate_limited_routes:
            self._rate_limit(self._rate_key(call))
        result = self._routes[call.route](call)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _injected_failure(self, route: str) -> None:
        """Raise the next failure queued by `fail_next` for ``route``, if any."""
        failure = next_failure(self._failures, route)
        if failure is None:
            return
        headers = {"Retry-After": str(failure.retry_after)} if failure.status in _RETRY_AFTER_STATUSES else {}
        raise _ConnectorError(failure.status, failure.code, failure.message, headers=headers)

    def _rate_key(self, call: Call) -> str:
        """The conversation a call counts against: the path's id, or the channel a create targets."""
        if call.conversation_id is not None:
            return call.conversation_id
        body = call.body if isinstance(call.body, dict) else {}
        channel = ((body.get("channelData") or {}).get("channel") or {}).get("id")
        return channel if isinstance(channel, str) and channel else "(new conversation)"

    def _rate_limit(self, key: str) -> None:
        """Take a token from the conversation's bucket or raise HTTP 429 with ``Retry-After``."""
        rate = self.rate_limit_per_conversation
        if rate is None:
            return
        retry_after = take_token(self._buckets, key, rate=rate, burst=self.rate_limit_burst, now=self.rate_clock())
        if retry_after is None:
            return
        raise _ConnectorError(
            429, "Throttled", "too many requests for this conversation", headers={"Retry-After": str(retry_after)}
        )

    # ------------------------------------------------------------------ state helpers

    def _next_id(self) -> str:
        """A new activity id: milliseconds since the epoch like Teams' channel ids, always increasing."""
        self._last_id = max(int(time.time() * 1000), self._last_id + 1)
        return str(self._last_id)

    def _put(self, conversation_id: str, body: Any, *, thread: str | None, reply_to: str | None = None) -> dict[str, Any]:
        """Store a new activity in a conversation and return it (not a copy)."""
        if not isinstance(body, dict):
            raise _ConnectorError(400, "BadArgument", "an Activity object is required")
        activity_id = self._next_id()
        activity = copy.deepcopy(body)
        activity["id"] = activity_id
        if thread is None and _is_channel(conversation_id):
            thread = activity_id  # a new top-level channel post starts its own thread
        shown_in = conversation_id
        if thread and _is_channel(conversation_id):
            shown_in = f"{_split(conversation_id)[0]};messageid={thread}"
        conversation = activity.get("conversation")
        activity["conversation"] = {**(conversation if isinstance(conversation, dict) else {}), "id": shown_in}
        if reply_to is not None:
            activity["replyToId"] = reply_to
        self._order += 1
        self._store.setdefault(_split(conversation_id)[0], {})[activity_id] = _Stored(activity, thread, self._order)
        return activity

    def _stored(self, conversation_id: str | None, activity_id: str | None) -> _Stored:
        """The stored activity or a 404 ``ActivityNotFound``."""
        found = self._store.get(_split(conversation_id or "")[0], {}).get(activity_id or "")
        if found is None:
            raise _ConnectorError(404, "ActivityNotFound", f"Activity {activity_id!r} not found in {conversation_id!r}")
        return found

    def _roster(self, conversation_id: str) -> list[dict[str, Any]]:
        """The members a conversation lists (everywhere-members first)."""
        merged = dict(self._members.get(None, {}))
        merged.update(self._members.get(_split(conversation_id)[0], {}))
        return list(merged.values())

    def _new_chat_id(self, body: dict[str, Any]) -> str:
        """The id of a 1:1 or group chat created by ``create`` (the same members give the same id)."""
        ids = tuple(sorted(str(m.get("id")) for m in body.get("members") or [] if isinstance(m, dict)))
        if ids not in self._chats:
            n = len(self._chats) + 1
            self._chats[ids] = f"19:standin-group-{n}@thread.v2" if body.get("isGroup") else f"a:standin-chat-{n}"
        return self._chats[ids]

    # ------------------------------------------------------------------ routes

    def _create(self, call: Call) -> tuple[int, Any]:
        """``POST /v3/conversations``: a new channel thread (``channelData.channel.id``) or chat."""
        body = call.body if isinstance(call.body, dict) else None
        if body is None:
            raise _ConnectorError(400, "BadArgument", "ConversationParameters are required")
        channel = ((body.get("channelData") or {}).get("channel") or {}).get("id")
        activity = body.get("activity")
        answer: dict[str, Any] = {"serviceUrl": self.url}
        if isinstance(channel, str) and channel:
            if activity:
                stored = self._put(channel, activity, thread=None)
                answer.update(id=stored["conversation"]["id"], activityId=stored["id"])
            else:
                answer["id"] = channel
        else:
            if not body.get("members") and not body.get("isGroup"):
                raise _ConnectorError(400, "BadArgument", "members or channelData.channel.id is required")
            chat = self._new_chat_id(body)
            answer["id"] = chat
            if activity:
                answer["activityId"] = self._put(chat, activity, thread=None)["id"]
        return 201, answer

    def _send(self, call: Call) -> tuple[int, Any]:
        """``POST .../activities``: post to a conversation (a thread id posts in that thread)."""
        conversation_id = call.conversation_id or ""
        stored = self._put(conversation_id, call.body, thread=_split(conversation_id)[1])
        return 201, {"id": stored["id"]}

    def _reply(self, call: Call) -> tuple[int, Any]:
        """``POST .../activities/{activityId}``: reply (in a channel: in the replied-to post's thread).

        The replied-to activity need not be known: it is usually an incoming one, and a proactive
        send through ``CloudAdapter`` replies to its continuation event's made-up uuid. The
        thread is the conversation id's ``;messageid=``, else the known replied-to post's thread,
        else an unknown numeric (Teams message) id, else the reply starts a new top-level post."""
        conversation_id = call.conversation_id or ""
        base, thread = _split(conversation_id)
        if thread is None:
            known = self._store.get(base, {}).get(call.activity_id or "")
            if known is not None:
                thread = known.thread
            elif (call.activity_id or "").isdigit():
                thread = call.activity_id
        stored = self._put(conversation_id, call.body, thread=thread, reply_to=call.activity_id)
        return 201, {"id": stored["id"]}

    def _update(self, call: Call) -> tuple[int, Any]:
        """``PUT .../activities/{activityId}``: replace an activity's content, keep where it is."""
        found = self._stored(call.conversation_id, call.activity_id)
        if not isinstance(call.body, dict):
            raise _ConnectorError(400, "BadArgument", "an Activity object is required")
        updated = copy.deepcopy(call.body)
        updated["id"] = found.activity["id"]
        updated["conversation"] = found.activity["conversation"]
        if "replyToId" in found.activity:
            updated["replyToId"] = found.activity["replyToId"]
        found.activity = updated
        return 200, {"id": updated["id"]}

    def _delete(self, call: Call) -> tuple[int, Any]:
        """``DELETE .../activities/{activityId}``: remove an activity (kept in `deleted`)."""
        found = self._stored(call.conversation_id, call.activity_id)
        base = _split(call.conversation_id or "")[0]
        del self._store[base][found.activity["id"]]
        self._deleted.setdefault(base, {})[found.activity["id"]] = found.activity
        return 200, None

    def _list_members(self, call: Call) -> tuple[int, Any]:
        """``GET .../members``: the roster (``TeamsChannelAccount`` JSON)."""
        return 200, self.members(call.conversation_id or "")

    def _get_member(self, call: Call) -> tuple[int, Any]:
        """``GET .../members/{memberId}``: one member, by Teams id or Entra object id."""
        for member in self._roster(call.conversation_id or ""):
            if call.member_id in (member["id"], member["aadObjectId"]):
                return 200, copy.deepcopy(member)
        raise _ConnectorError(404, "MemberNotFoundInConversation", "The member could not be found in the conversation")

    def _paged_members(self, call: Call) -> tuple[int, Any]:
        """``GET .../pagedmembers?pageSize=&continuationToken=``: the roster a page at a time."""
        roster = self.members(call.conversation_id or "")
        try:
            size = max(1, int(call.query.get("pageSize") or 50))
            start = int(call.query.get("continuationToken") or 0)
        except ValueError as exc:
            raise _ConnectorError(400, "BadArgument", "bad pageSize or continuationToken") from exc
        answer: dict[str, Any] = {"members": roster[start : start + size]}
        if start + size < len(roster):
            answer["continuationToken"] = str(start + size)
        return 200, answer

    def _team_entry(self, team_id: str | None) -> dict[str, Any]:
        """A team registered with `add_team`, or a 404."""
        found = self._teams.get(_split(team_id or "")[0])
        if found is None:
            raise _ConnectorError(404, "NotFound", f"Team {team_id!r} not found (see add_team)")
        return found

    def _team(self, call: Call) -> tuple[int, Any]:
        """``GET /v3/teams/{teamId}``: ``TeamDetails``."""
        team = self._team_entry(call.team_id)
        details = copy.deepcopy(team["details"])
        details["memberCount"] = len(self._roster(details["id"]))
        return 200, details

    def _team_channels(self, call: Call) -> tuple[int, Any]:
        """``GET /v3/teams/{teamId}/conversations``: ``{"conversations": [{"id", "name"}]}``."""
        team = self._team_entry(call.team_id)
        return 200, {"conversations": [{"id": cid, "name": name} for cid, name in team["channels"].items()]}


def _split(conversation_id: str) -> tuple[str, str | None]:
    """``"19:x@thread.tacv2;messageid=17"`` → ``("19:x@thread.tacv2", "17")``; no thread → ``None``."""
    base, _, rest = conversation_id.partition(";")
    thread = None
    for part in rest.split(";") if rest else []:
        key, _, value = part.partition("=")
        if key.strip().lower() == "messageid" and value:
            thread = value.strip()
    return base, thread


def _is_channel(conversation_id: str) -> bool:
    """Whether an id names a Teams channel (whose posts are threads), not a chat."""
    return _split(conversation_id)[0].endswith(("@thread.tacv2", "@thread.skype"))


def _bearer(value: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or ``None``."""
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
