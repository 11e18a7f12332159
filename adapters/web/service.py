"""The console on the service: its routes under `/console`, its sign-in, and its outbox sender.

Every page is rendered on the server (`render.py`, Jinja2 with autoescape); what a page shows is
read through the bus (`Show`, `ShowQueue`, `Search`) and what a button does is the command the
verb table builds from it (`bot.codec`), carried out by the bus as the signed-in person on
platform `web`, with the rights of chat (`bot/policy.py`). Every answer carries a strict
Content-Security-Policy: no inline script, nothing from elsewhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as datetime_time
from importlib import resources
from typing import TYPE_CHECKING

from aiohttp import web

from adapters.web import dashboard as dashboard_charts
from adapters.web import render
from adapters.web.auth import CSRF_FIELD, CSRF_HEADER, Session, Sessions, csrf_ok, set_cookie
from adapters.web.settings import WebSettings, is_loopback
from bot import codec, verbs
from bot import commands as c
from bot.domain import DomainError, InvalidInput
from bot.outbox import Job, Sent
from bot.views import Card, Result
from storage.dashboard import build_dashboard

if TYPE_CHECKING:
    from bot.platform import Wiring

logger = logging.getLogger(__name__)

PLATFORM_NAME = "web"  # its `Platform.name`: the actor's platform of every console click
PREFIX = "/console"
POLL_SECONDS = 0.5  # how often a live page's channel is read again (a claim on Slack shows within a second)
HEARTBEAT_SECONDS = 15.0  # a comment line on an idle event stream, so proxies keep it open
STATIC = {"console.js": "text/javascript", "console.css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # the sign-in link's token never leaves in a Referer
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
Handler = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


class Changes:
    """Wakes the live pages when the outbox delivers a card to a console channel (the rest is polled)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.generation = 0  # counts the bumps: a version read before the last one is stale

    def bump(self) -> None:
        self.generation += 1
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass


class WebSender:
    """The sender of `web:` destinations: the console shows a card from the store whenever it is
    looked at, so a delivery only wakes the live pages and records a posting."""

    def __init__(self, changes: Changes) -> None:
        self.changes = changes

    async def send(self, job: Job) -> Sent:
        self.changes.bump()
        return Sent(message_id=job.message_id or f"web-{job.delivery_id}")


@dataclass(frozen=True)
class Channel:
    """A destination as the console lists it: `platform:channel`, and the departments it serves."""

    platform: str
    channel_id: str
    departments: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.channel_id}"


@dataclass
class Console:
    """What the console's routes share."""

    settings: WebSettings
    wiring: Wiring
    sessions: Sessions
    changes: Changes = field(default_factory=Changes)
    # A channel's latest version, shared by every page watching it: (read at, generation, version).
    _versions: dict[str, tuple[float, int, str]] = field(default_factory=dict)

    def actor(self, session: Session) -> c.Actor:
        return c.Actor(PLATFORM_NAME, session.user_id, name=session.name)

    async def channels(self) -> list[Channel]:
        """Every configured or linked destination, with its departments, by platform and channel."""
        async with self.wiring.bus.uow_factory() as uow:
            departments = {d.id: d.name for d in await uow.departments.all()}
            found: dict[tuple[str, str], list[str]] = {}
            for destination in await uow.departments.destinations([i for i in departments if i is not None]):
                found.setdefault((destination.platform, destination.channel_id), []).append(
                    departments[destination.department_id]
                )
        return [Channel(p, ch, tuple(sorted(names))) for (p, ch), names in sorted(found.items())]

    async def cards_of(self, channel: Channel, session: Session) -> list[Card]:
        """The cards waiting in a channel's departments (what its chat channel shows as live cards)."""
        cards: dict[int, Card] = {}
        for department in channel.departments or (None,):
            result = await self.wiring.bus.handle(c.ShowQueue(self.actor(session), department=department))
            cards.update((card.id, card) for card in result.cards)
        return list(cards.values())

    async def version_of(self, channel: Channel, session: Session) -> str:
        """The channel's version, read at most once per poll interval however many pages watch it."""
        now, generation = time.monotonic(), self.changes.generation
        known = self._versions.get(channel.key)
        if known is not None and known[1] == generation and now - known[0] < POLL_SECONDS * 0.9:
            return known[2]
        version = fingerprint(await self.cards_of(channel, session))
        self._versions[channel.key] = (now, generation, version)
        return version


CONSOLE: web.AppKey[Console] = web.AppKey("unsilo.web.console", Console)


def mount(app: web.Application, *, settings: WebSettings, wiring: Wiring) -> WebSender:
    """Serve the console under `/console` and print its one-time sign-in link; return its sender."""
    console = Console(
        settings=settings, wiring=wiring, sessions=Sessions(user_id=settings.user, one_time_link=not settings.providers)
    )
    app[CONSOLE] = console
    pages = _Pages(console)
    app.router.add_get(f"{PREFIX}/login", pages.login)
    app.router.add_get(f"{PREFIX}/static/console.css", pages.stylesheet)  # the sign-in and refusal pages are styled too
    for path, page in (
        ("", pages.channels),
        ("/", pages.channels),
        ("/cards", pages.cards),
        ("/events", pages.events),
        ("/c/{id}", pages.conversation),
        ("/search", pages.search),
        ("/dashboard", pages.dashboard),
        ("/static/{name}", pages.static),
    ):
        app.router.add_get(PREFIX + path, _guarded(console, page))
    app.router.add_post(f"{PREFIX}/act", _guarded(console, pages.act))
    app.router.add_post(f"{PREFIX}/logout", _guarded(console, pages.logout))
    if settings.providers:  # deployed sign-in: Slack and/or Entra ID (adapters/web/oidc.py)
        from adapters.web import oidc

        oidc.mount(app, console)
    token = console.sessions.login_token
    if token is not None and is_loopback(settings.host):
        print(f"console: {settings.login_url(token)}", flush=True)  # noqa: T201 - the one-time link, like Jupyter's
        logger.info("console served at %s (the one-time sign-in link is printed on stdout)", PREFIX)
    else:
        logger.info("console served at %s (sign in with %s)", PREFIX, ", ".join(p.title for p in settings.providers))
    return WebSender(console.changes)


def _secured(response: web.StreamResponse) -> web.StreamResponse:
    """The security headers; a page may have set a stricter policy of its own (a nonce, the dashboard's)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


secured = _secured  # for adapters/web/oidc.py


def signin_links(console: Console) -> list[tuple[str, str]]:
    """(label, href) of each deployed sign-in (Slack, Entra ID), for the pages that ask for one."""
    return [(f"Sign in with {p.title}", f"{PREFIX}/oidc/{p.name}/start") for p in console.settings.providers]


def _guarded(console: Console, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """`handler` for a signed-in session only (401 otherwise); a POST also needs its CSRF token (403)."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        refused = None if console.settings.providers else _not_local(request)  # deployed: anywhere, signed in
        if refused is not None:
            return refused
        session = console.sessions.of(request)
        if session is None:
            return _secured(
                render.page_response("error.html", status=401, title="Sign-in needed", session=None, signin=signin_links(console))
            )
        if request.method == "POST":
            form = await request.post()
            sent = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
            if not csrf_ok(session, sent if isinstance(sent, str) else None):
                logger.warning("console POST %s refused: no valid CSRF token", request.path)
                return _secured(render.page_response("error.html", status=403, title="Refused", session=session))
        return _secured(await handler(request, session))

    return guarded


RELAY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Real-IP", "Via")


def _not_local(request: web.Request) -> web.StreamResponse | None:
    """A 403 for a request from another machine, or naming another host (DNS rebinding): until sign-in
    with Slack or Entra ID exists, the console is for this machine only, whatever address it was bound to
    (`unsilo run --host` is not seen by platform settings)."""
    host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") else request.host
    relayed = any(name in request.headers for name in RELAY_HEADERS)  # a proxy on this box: from elsewhere
    if is_loopback(request.remote or "") and is_loopback(host) and not relayed:
        return None
    logger.warning(
        "console request from %s for host %r refused: the console answers this machine only", request.remote, request.host[:100]
    )
    return _secured(render.page_response("error.html", status=403, title="This machine only", session=None))


def _see_other(location: str) -> web.Response:
    """After a form: the page to show next (POST, then GET)."""
    return web.Response(status=303, headers={"Location": location})


def _back(raw: object) -> str:
    """Where a form sends the browser back to: a console page, never another site."""
    text = raw if isinstance(raw, str) else ""
    return text if text.startswith(PREFIX) and not text.startswith("//") and "\\" not in text else PREFIX


def fingerprint(cards: list[Card]) -> str:
    """Changes whenever anything a card shows changes."""
    return hashlib.sha256(repr(sorted(cards, key=lambda card: card.id)).encode()).hexdigest()[:16]


class _Pages:
    def __init__(self, console: Console) -> None:
        self.console = console

    def _choices(self) -> dict[str, tuple[str, ...]]:
        return verbs.choice_lists(outcomes=self.console.wiring.outcomes, departments=self.console.wiring.departments)

    async def login(self, request: web.Request) -> web.StreamResponse:
        refused = _not_local(request)
        if refused is not None:
            return refused
        session_id = self.console.sessions.sign_in(request.query.get("token", ""))
        if session_id is None:
            logger.warning("console sign-in refused: the token is wrong or was used already")
            return _secured(render.page_response("error.html", status=401, title="This link is used or wrong", session=None))
        response = _see_other(PREFIX)
        set_cookie(response, request, session_id)
        return _secured(response)

    async def logout(self, request: web.Request, session: Session) -> web.StreamResponse:
        self.console.sessions.sign_out(request)
        return _see_other(f"{PREFIX}/signin" if self.console.settings.providers else f"{PREFIX}/login")

    async def _channel(self, request: web.Request) -> tuple[list[Channel], Channel | None]:
        channels = await self.console.channels()
        wanted = request.query.get("channel", "")
        chosen = next((ch for ch in channels if ch.key == wanted), channels[0] if channels else None)
        return channels, chosen

    async def channels(self, request: web.Request, session: Session) -> web.StreamResponse:
        channels, chosen = await self._channel(request)
        cards = await self.console.cards_of(chosen, session) if chosen else []
        return render.page_response(
            "channels.html",
            title=f"Channel {chosen.key}" if chosen else "Channels",
            session=session,
            channels=channels,
            chosen=chosen,
            cards=cards,
            version=fingerprint(cards),
            choices=self._choices(),
            back=request.path_qs,
        )

    async def cards(self, request: web.Request, session: Session) -> web.StreamResponse:
        """The cards of a channel alone: what a live page puts in place when they change."""
        _, chosen = await self._channel(request)
        cards = await self.console.cards_of(chosen, session) if chosen else []
        back = _back(request.query.get("back"))
        html = render.fragment("cards.html", session=session, cards=cards, choices=self._choices(), back=back)
        return web.Response(text=html, content_type="text/html", headers={"X-Version": fingerprint(cards)})

    async def events(self, request: web.Request, session: Session) -> web.StreamResponse:
        """Server-sent events: `change` with the channel's new version whenever its cards change."""
        _, chosen = await self._channel(request)
        if chosen is None:
            raise web.HTTPNotFound()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **SECURITY_HEADERS})
        await response.prepare(request)
        seen = request.query.get("version", "")
        idle = 0.0
        # Until the page is left, or its session ends (signed out, expired): then the page asks again and is refused.
        while request.transport is not None and not request.transport.is_closing():
            if self.console.sessions.of(request) is not session:
                break
            version = await self.console.version_of(chosen, session)
            try:
                if version != seen:
                    await response.write(f"event: change\ndata: {version}\n\n".encode())
                    seen, idle = version, 0.0
                elif idle >= HEARTBEAT_SECONDS:
                    await response.write(b": still here\n\n")
                    idle = 0.0
            except ConnectionError:
                break
            await self.console.changes.wait(POLL_SECONDS)
            idle += POLL_SECONDS
        return response

    async def conversation(self, request: web.Request, session: Session) -> web.StreamResponse:
        try:
            conversation_id = int(request.match_info["id"])
            result = await self.console.wiring.bus.handle(c.Show(conversation_id, self.console.actor(session)))
        except (ValueError, DomainError) as exc:
            message = exc.message if isinstance(exc, DomainError) else "not a conversation id"
            return render.page_response("error.html", status=404, title="Not found", session=session, message=message)
        return render.page_response(
            "conversation.html",
            title=f"#{conversation_id}",
            session=session,
            result=result,
            choices=self._choices(),
            back=request.path_qs,
        )

    async def search(self, request: web.Request, session: Session) -> web.StreamResponse:
        query = request.query.get("q", "").strip()
        result: Result | None = None
        message = ""
        if query:
            verb = verbs.get("search")
            assert verb is not None and verb.parse is not None
            try:
                result = await self.console.wiring.bus.handle(
                    verb.parse(query, self.console.actor(session), verbs.Typed(prefix=""))
                )
            except DomainError as exc:
                message = exc.message
        return render.page_response(
            "search.html", title="Search", session=session, query=query, result=result, message=message, hint=verb_usage("search")
        )

    async def dashboard(self, request: web.Request, session: Session) -> web.StreamResponse:
        """The managers' dashboard of one department (a selector): the digest's figures of the last
        weeks, and their charts drawn on the server (`dashboard.charts_of`)."""
        names = self.console.wiring.departments
        wanted = request.query.get("department", "")
        chosen = wanted if wanted in names else (names[0] if names else "")
        board = None
        async with self.console.wiring.bus.uow_factory() as uow:
            if chosen:
                now = uow.now()
                until = datetime.combine(now.date() + timedelta(days=1), datetime_time(), tzinfo=UTC)  # today included
                board = await build_dashboard(uow, chosen, until=until)
        nonce = secrets.token_urlsafe(16)  # the charts' <style> elements, and nothing else inline
        response = render.page_response(
            "dashboard.html",
            title=f"Dashboard: {chosen}" if chosen else "Dashboard",
            session=session,
            departments=names,
            chosen=chosen,
            board=board,
            charts=dashboard_charts.charts_of(board, nonce=nonce) if board else [],
            figures=dashboard_charts.figures_of(board) if board else [],
        )
        response.headers["Content-Security-Policy"] = SECURITY_HEADERS["Content-Security-Policy"].replace(
            "style-src 'self'", f"style-src 'self' 'nonce-{nonce}'"
        )
        return response

    async def static(self, request: web.Request, session: Session) -> web.StreamResponse:
        return _static_file(request.match_info["name"])

    async def stylesheet(self, request: web.Request) -> web.StreamResponse:
        """The stylesheet, to anyone on this machine: it holds nothing secret, and a refusal reads better styled."""
        refused = None if self.console.settings.providers else _not_local(request)  # deployed: from anywhere
        return refused or _secured(_static_file("console.css"))

    async def act(self, request: web.Request, session: Session) -> web.StreamResponse:
        """A card button pressed in the console: its command, as the signed-in person, through the bus."""
        form = await request.post()
        back = _back(form.get("back"))
        value = form.get("value")
        try:
            if not isinstance(value, str):
                raise InvalidInput("That button is damaged; reload the page.")
            name, _ = codec.decode(value)
            verb = codec.verb_of(name)
            fields = {i.name: v for i in verb.inputs if isinstance(v := form.get(i.name), str)}
            command = codec.to_command(value, self.console.actor(session), fields=fields)
            result = await self.console.wiring.bus.handle(command)
            session.flash.append(("good", result.text))
        except DomainError as exc:
            session.flash.append(("attention", exc.message))
        self.console.changes.bump()
        return _see_other(back)


def _static_file(name: str) -> web.Response:
    if name not in STATIC:
        raise web.HTTPNotFound()
    body = resources.files("adapters.web").joinpath("static", name).read_bytes()
    return web.Response(body=body, content_type=STATIC[name])


def verb_usage(name: str) -> str:
    verb = verbs.get(name)
    return verb.usage if verb is not None else ""


def state(app: web.Application) -> Console:
    """The console of a service app (tests, the dashboard)."""
    return app[CONSOLE]
