"""Managing where conversations come from: adding, removing and re-keying sources (admins).

The config's feeds are the config's: they are added and removed there. A source that brought
conversations is kept when removed (they are the company's memory): marked removed, it is no
longer polled and its webhook refuses deliveries.
"""

from __future__ import annotations

import logging
import re
import secrets
from datetime import timedelta

from bot.commands import AddSource, RemoveSource, RotateSecret, SetRetention
from bot.domain import InvalidInput, NotFound
from bot.policy import Context, Who, identify, require_admin
from bot.views import Result, when
from storage.models import Source
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

KINDS = ("feed", "webhook")
MIN_EVERY_SECONDS = 30
MAX_GRACE = timedelta(days=7)
MAX_RETAIN_DAYS = 36_500  # a hundred years: longer is "forever", which is leaving retention unset
_SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def new_secret() -> str:
    """A fresh signing secret (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


async def handle_add_source(cmd: AddSource, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Add a feed to poll or a webhook to accept; a new signing secret is shown once when one is made."""
    who = await identify(uow, cmd.actor)
    require_admin(who, ctx.admins, doing="add sources")
    if cmd.kind not in KINDS:
        raise InvalidInput(f"a source is a {' or a '.join(KINDS)}, not {cmd.kind!r}")
    if not _SOURCE_NAME.fullmatch(cmd.name):
        raise InvalidInput(f"a source name is lower-case letters, digits, '.', '_' or '-' (at most 64), not {cmd.name!r}")
    url = cmd.url.strip() if cmd.kind == "feed" else ""
    if cmd.kind == "feed" and not url.lower().startswith(("https://", "http://")):
        raise InvalidInput(f"a feed URL must be http(s), not {cmd.url!r}")
    if cmd.kind == "feed" and cmd.every_seconds < MIN_EVERY_SECONDS:
        raise InvalidInput(f"a feed is polled at most every {MIN_EVERY_SECONDS} seconds")
    if cmd.reply_url and not cmd.reply_url.lower().startswith(("https://", "http://")):
        raise InvalidInput(f"a reply URL must be http(s), not {cmd.reply_url!r}")
    _check_retention(cmd.retain_days)
    source = await uow.sources.by_name(cmd.name)
    if source is not None and source.removed_at is None:
        raise InvalidInput(f"a source named {cmd.name!r} already exists; `unsilo sources` lists them")
    secret = new_secret() if cmd.kind == "webhook" or cmd.reply_url else None
    if source is None:
        source = uow.sources.add(Source(name=cmd.name, kind=cmd.kind))
    source.kind, source.origin, source.url, source.every_seconds = cmd.kind, "cli", url, cmd.every_seconds
    source.tags, source.reply_url, source.secret = list(cmd.tags), cmd.reply_url, secret
    source.previous_secret = source.previous_secret_expires_at = source.removed_at = None
    source.next_poll_at = source.etag = source.last_modified = source.last_error = None
    source.failures, source.retain_days = 0, cmd.retain_days
    await _event(uow, "source_added", who=who, data={"source": cmd.name, "kind": cmd.kind})
    logger.info("%s added the %s source %s", who.name, cmd.kind, cmd.name)
    lines = [
        f"feed {cmd.name} added: polled every {cmd.every_seconds}s by `unsilo run`"
        if cmd.kind == "feed"
        else f"webhook {cmd.name} added: POST signed items to /hooks/{cmd.name} (see the README)"
    ]
    if cmd.retain_days is not None:
        lines.append(f"its closed conversations keep their text {_days(cmd.retain_days)}")
    if secret:
        lines.append(f"signing secret (shown once, keep it safe): {secret}")
    return Result("\n".join(lines + _no_admins(ctx)))


async def handle_set_retention(cmd: SetRetention, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Set how long a source's closed conversations keep their text, or give it back the global default."""
    who = await identify(uow, cmd.actor)
    require_admin(who, ctx.admins, doing="change sources")
    if cmd.name in ctx.feeds:
        raise InvalidInput(f"{cmd.name!r} is a feed in the config: set its retain_days there, then restart")
    _check_retention(cmd.retain_days)
    source = await _live(uow, cmd.name)
    before, source.retain_days = source.retain_days, cmd.retain_days
    await _event(uow, "source_changed", who=who, data={"source": cmd.name, "retain_days": [before, cmd.retain_days]})
    logger.info("%s set the retention of %s to %s days (was %s)", who.name, cmd.name, cmd.retain_days, before)
    if cmd.retain_days is None:
        text = f"{cmd.name} now keeps closed conversations' text as long as the global default (`[unsilo] retain_days`)"
    else:
        text = f"{cmd.name} now keeps closed conversations' text {_days(cmd.retain_days)}"
    return Result("\n".join([text, *_no_admins(ctx)]))


def _check_retention(days: int | None) -> None:
    if days is not None and not 1 <= days <= MAX_RETAIN_DAYS:
        raise InvalidInput(f"a retention is 1 to {MAX_RETAIN_DAYS} days (or `default`), not {days}")


def _days(days: int) -> str:
    return f"{days} day{'s' if days != 1 else ''} after they are closed"


async def handle_remove_source(cmd: RemoveSource, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Stop taking conversations from a source: deleted if nothing came from it, else marked removed."""
    who = await identify(uow, cmd.actor)
    require_admin(who, ctx.admins, doing="remove sources")
    if cmd.name in ctx.feeds:
        raise InvalidInput(f"{cmd.name!r} is a feed in the config: remove it from the config, then restart")
    source = await _live(uow, cmd.name)
    kept = await uow.sources.named_in_conversations(source.name)
    if kept:
        source.removed_at = uow.now()
        source.previous_secret = source.previous_secret_expires_at = None
    else:
        await uow.sources.delete(source)
    await _event(uow, "source_removed", who=who, data={"source": cmd.name, "kind": source.kind, "kept": kept})
    logger.info("%s removed the %s source %s (%s)", who.name, source.kind, cmd.name, "kept" if kept else "deleted")
    what = "no longer polled" if source.kind == "feed" else f"/hooks/{cmd.name} refuses deliveries"
    if kept:
        text = f"{source.kind} {cmd.name} removed: {what}; the conversations it brought stay"
    else:
        text = f"{source.kind} {cmd.name} removed: {what}"
    return Result("\n".join([text, *_no_admins(ctx)]))


async def handle_rotate_secret(cmd: RotateSecret, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Give a source a new signing secret, shown once; the old one is accepted for the grace period."""
    who = await identify(uow, cmd.actor)
    require_admin(who, ctx.admins, doing="rotate secrets")
    grace = timedelta(seconds=cmd.grace_seconds)
    if not timedelta(0) <= grace <= MAX_GRACE:
        raise InvalidInput(f"the grace period is 0 to {MAX_GRACE.days} days")
    source = await _live(uow, cmd.name)
    if not source.secret:
        raise InvalidInput(f"{cmd.name} has no signing secret: only webhooks and feeds with a reply URL have one")
    secret = new_secret()
    now = uow.now()
    if grace:
        source.previous_secret, source.previous_secret_expires_at = source.secret, now + grace
    else:
        source.previous_secret = source.previous_secret_expires_at = None
    source.secret = secret
    await _event(uow, "secret_rotated", who=who, data={"source": cmd.name, "grace_seconds": cmd.grace_seconds})
    logger.info("%s rotated the secret of %s (the old one accepted for %ss)", who.name, cmd.name, cmd.grace_seconds)
    old = f"the old one is accepted until {when(now + grace)}" if grace else "the old one no longer works"
    lines = [f"new signing secret for {cmd.name} (shown once, keep it safe): {secret}", old]
    if source.reply_url:
        lines.append(f"replies to {source.reply_url} are signed with the new one from now on")
    return Result("\n".join(lines + _no_admins(ctx)))


async def _live(uow: UnitOfWork, name: str) -> Source:
    """The source by that name that was not removed, or `NotFound`."""
    source = await uow.sources.by_name(name)
    if source is None or source.removed_at is not None:
        raise NotFound(f"no source named {name!r}; `unsilo sources` lists them")
    return source


def _no_admins(ctx: Context) -> list[str]:
    return [] if ctx.admins else ["(no admins are configured yet, so anyone may manage sources: set [unsilo] admins)"]


async def _event(uow: UnitOfWork, kind: str, *, who: Who, data: dict[str, object]) -> None:
    await uow.events.add_many(
        [{"conversation_id": None, "kind": kind, "actor_id": who.id, "actor_name": who.name, "at": uow.now(), "data": data}]
    )
