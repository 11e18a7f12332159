"""Digests for managers and stats for everyone, on demand (the scheduler posts the weekly ones)."""

from __future__ import annotations

import logging
from datetime import timedelta

from bot.commands import ShowDigest, ShowStats
from bot.digest import build_digest, build_stats, digests_notice, stats_notice
from bot.domain import InvalidInput, NotFound
from bot.policy import Context, identify, manages
from bot.views import Result
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

MAX_DAYS = 366


async def handle_digest(cmd: ShowDigest, uow: UnitOfWork, *, ctx: Context) -> Result:
    """The last `days` days of one department, or of the caller's managed departments (else all of them)."""
    if not 1 <= cmd.days <= MAX_DAYS:
        raise InvalidInput(f"a digest covers 1 to {MAX_DAYS} days, not {cmd.days}")
    departments = await uow.departments.all()
    if cmd.department is not None:
        chosen = [d for d in departments if d.name == cmd.department.strip().lower()]
        if not chosen:
            names = ", ".join(d.name for d in departments) or "none yet"
            raise NotFound(f"no department {cmd.department!r}; departments: {names}")
    else:
        who = await identify(uow, cmd.actor)
        chosen = [d for d in departments if manages(who, [d])] or departments
    if not chosen:
        raise NotFound("there are no departments yet; add some to the config file")
    until = uow.now()
    since = until - timedelta(days=cmd.days)
    digests = [await build_digest(uow, department=d.name, since=since, until=until) for d in chosen]
    notice = digests_notice(digests)
    return Result(text=notice.title, notice=notice)


async def handle_stats(cmd: ShowStats, uow: UnitOfWork, *, ctx: Context) -> Result:
    """The caller's own figures, all time."""
    who = await identify(uow, cmd.actor)
    stats = await build_stats(uow, person_id=who.id)
    notice = stats_notice(stats)
    return Result(text=notice.title, notice=notice)
