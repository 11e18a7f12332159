"""The console's HTML: Jinja2 templates with autoescape on, and the few filters they need.

Customer text is untrusted: every value is escaped by Jinja2's autoescape (no template marks
anything safe), links are offered only for http(s) URLs, and the page runs no inline script
(the Content-Security-Policy of `service.py` forbids it).
"""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

from bot import codec, views
from bot.views import Button


def safe_url(url: str | None) -> str | None:
    """`url` when it is an http(s) link with a host, else None (shown as text, never as a link)."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    return url.strip() if parts.scheme in ("http", "https") and parts.netloc else None


def button_value(button: Button) -> str:
    """The command a card button carries, as the chat platforms carry it (`bot.codec`)."""
    return codec.encode(button)


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("adapters.web", "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        safe_url=safe_url, when=views.when, display_name=views.display_name, printable=views.printable, value=button_value
    )
    return env


def fragment(template: str, **context: Any) -> str:
    """A template rendered to text."""
    return environment().get_template(template).render(**context)


def page_response(template: str, *, title: str, session: Any, status: int = 200, **context: Any) -> web.Response:
    """A whole page; the session's flash messages are shown once."""
    flash = list(session.flash) if session is not None else []
    if session is not None:
        session.flash.clear()
    context.setdefault("message", "")
    html = fragment(template, title=title, session=session, flash=flash, **context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")
