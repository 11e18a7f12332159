"""Who is signed in to the console: the one-time link, sessions, and the CSRF token of each.

Nobody gets in by default. `unsilo run` on loopback prints a link with a random token; the
token is good for one sign-in, exchanged for a session cookie (HttpOnly, SameSite=Strict,
Secure behind https). Every state-changing request carries the session's CSRF token (a form
field or the `X-CSRF-Token` header), compared in constant time; without it the request is
refused (403), whatever cookie it brings.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field

from aiohttp import web

COOKIE = "unsilo_console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
SESSION_SECONDS = 12 * 3600  # a session ends after this long
TOKEN_BYTES = 32


@dataclass
class Session:
    """One signed-in browser: whose it is (the console user id, platform `web`) and its CSRF token."""

    user_id: str
    name: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(TOKEN_BYTES))
    started: float = field(default_factory=time.monotonic)
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) shown once on the next page


LINK_SECONDS = 15 * 60  # the one-time link works this long after `unsilo run` printed it


class Sessions:
    """The one-time sign-in token and the live sessions (kept in memory: a restart signs everyone out)."""

    def __init__(self, *, user_id: str, one_time_link: bool = True) -> None:
        self.user_id = user_id
        # No one-time link where deployed sign-in is configured: a link printed to a log must not let anyone
        # in past the workspace / tenant checks (behind a proxy on this box, every request looks local).
        self._login: str | None = secrets.token_urlsafe(TOKEN_BYTES) if one_time_link else None
        self._login_at = time.monotonic()
        self._sessions: dict[str, Session] = {}

    @property
    def login_token(self) -> str | None:
        """The token of the link still unused (None once used)."""
        return self._login

    def sign_in(self, token: str) -> str | None:
        """A new session's id for the one-time `token`, which is spent; None for any other token."""
        if self._login is None or not hmac.compare_digest(token.encode(), self._login.encode()):
            return None
        if time.monotonic() - self._login_at > LINK_SECONDS:  # printed long ago: restart for a new one
            self._login = None
            return None
        self._login = None
        return self.start(self.user_id, self.user_id)

    def start(self, user_id: str, name: str) -> str:
        """A new session's id for console account `user_id` (the one-time link's, or a deployed sign-in's)."""
        session_id = secrets.token_urlsafe(TOKEN_BYTES)
        self._sessions[session_id] = Session(user_id=user_id, name=name)
        return session_id

    def of(self, request: web.Request) -> Session | None:
        """The request's live session, or None."""
        session_id = request.cookies.get(COOKIE, "")
        session = self._sessions.get(session_id) if session_id else None
        if session is not None and time.monotonic() - session.started > SESSION_SECONDS:
            del self._sessions[session_id]
            return None
        return session

    def sign_out(self, request: web.Request) -> None:
        self._sessions.pop(request.cookies.get(COOKIE, ""), None)


def set_cookie(response: web.StreamResponse, request: web.Request, session_id: str, *, secure: bool = False) -> None:
    """The session cookie: never readable by script, never sent cross-site, https-only behind https
    (and always when `secure`: a deployed console, whose public URL is https)."""
    secure = secure or request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
    response.set_cookie(
        COOKIE, session_id, path="/console", httponly=True, samesite="Strict", secure=secure, max_age=SESSION_SECONDS
    )


def csrf_ok(session: Session, sent: str | None) -> bool:
    """Whether a state-changing request carries the session's CSRF token."""
    return bool(sent) and hmac.compare_digest(str(sent).encode(), session.csrf.encode())
