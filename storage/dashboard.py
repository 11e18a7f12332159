"""A manager's dashboard per department: the digest's figures as series, for SQLite and PostgreSQL.

Platform-neutral read models (the console draws them). Everything is computed by the
database, on the same `touched` set the digest reads (the department's conversations not
closed before the window starts), with the digest's helpers (`storage.reports`):

- `days`: conversations new, resolved and dismissed per day (the last `days` days);
- `weeks`: time to claim and to first reply per week (the last `weeks` weeks), median and p90
  and how many within the department's SLA, each as `Timing`, counted exactly as a weekly
  digest counts them (a claim or first reply belongs to the week it happened in);
- `totals`: the department's `Activity` over the last `days` days, as a digest of that period
  would show it: outcomes, participants (each with their own department), timings.

Buckets are counted back from `until`: day i is [until - (days - i) days, until - (days - i - 1)
days). Give `until` at midnight (UTC, or the manager's midnight) for calendar days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, Integer, and_, cast, func, literal, or_, union_all
from sqlmodel import col, select
from sqlmodel.sql.sqltypes import UTCDateTime

from storage.models import Conversation, ConversationDepartment, Department
from storage.reports import PERCENTILES, Activity, ReportRepo, Timing, _float, _seconds, _within
from storage.uow import UnitOfWork

DAY = timedelta(days=1)
WEEK = timedelta(days=7)
DEFAULT_DAYS = 28
DEFAULT_WEEKS = 8


@dataclass(frozen=True)
class Day:
    """One day of a department: conversations ingested, resolved and dismissed in [start, start + 1 day)."""

    start: datetime
    new: int = 0
    resolved: int = 0
    dismissed: int = 0


@dataclass(frozen=True)
class Week:
    """One week of a department: time to claim and to first reply of the claims and first replies in it."""

    start: datetime
    to_claim: Timing
    to_first_reply: Timing


@dataclass(frozen=True)
class Dashboard:
    """A department's dashboard: per-day counts, per-week timings against its SLA, and the window's totals."""

    department: str
    sla_minutes: int
    until: datetime
    days: tuple[Day, ...]  # oldest first, one per day, zeros included
    weeks: tuple[Week, ...]  # oldest first, one per week, empty timings included
    totals: Activity  # over the `days` window: outcomes (most frequent first), participants (with their department)


_NO_TIMING = Timing(count=0, median=None, p90=None)


class DashboardRepo(ReportRepo):
    """The dashboard's figures: the window's `Activity`, plus two grouped statements (three on SQLite)."""

    async def figures(
        self, department: Department, *, until: datetime, days: int = DEFAULT_DAYS, weeks: int = DEFAULT_WEEKS
    ) -> Dashboard:
        """The dashboard of `department` up to `until` (exclusive): `days` days of counts, `weeks` weeks of timings."""
        if department.id is None or days < 1 or weeks < 1:
            raise ValueError("a stored department, and at least one day and one week")
        sla_seconds = department.sla_minutes * 60.0
        since_days, since_weeks = until - days * DAY, until - weeks * WEEK
        totals = await self.activity(department.id, since=since_days, until=until, sla_seconds=sla_seconds)
        touched = self._touched(department.id, since=min(since_days, since_weeks), until=until)
        counts = await self._per_day(touched, since_days, until)
        timings = await self._per_week(touched, since_weeks, until, sla_seconds)
        return Dashboard(
            department=department.name,
            sla_minutes=department.sla_minutes,
            until=until,
            days=tuple(Day(since_days + i * DAY, **counts.get(i, {})) for i in range(days)),
            weeks=tuple(
                Week(
                    since_weeks + i * WEEK,
                    to_claim=timings.get(("claim", i), _NO_TIMING),
                    to_first_reply=timings.get(("reply", i), _NO_TIMING),
                )
                for i in range(weeks)
            ),
            totals=totals,
        )

    @staticmethod
    def _touched(department_id: int, *, since: datetime, until: datetime) -> Any:
        """The department's conversations not closed before `since` and ingested before `until` (as the digest reads)."""
        c, cd = Conversation, ConversationDepartment
        return (
            select(c.id, c.status, c.ingested_at, c.claimed_at, c.first_reply_at, c.resolved_at)  # type: ignore[call-overload]
            .join(cd, and_(col(cd.conversation_id) == c.id, col(cd.department_id) == department_id))
            .where(col(c.ingested_at) < until, or_(col(c.resolved_at).is_(None), col(c.resolved_at) >= since))
            .cte("touched")
        )

    def _bucket(self, moment: Any, since: datetime, size: timedelta) -> Any:
        """Which bucket of `size` after `since` a moment falls in (0, 1, …): floor of the elapsed time over the size."""
        ratio = _seconds(self.dialect, moment, literal(since, UTCDateTime())) / size.total_seconds()
        # The moments are filtered to [since, until), so the ratio is >= 0 and SQLite's truncating cast is a floor.
        return cast(func.floor(ratio) if self.dialect == "postgresql" else ratio, Integer)

    async def _per_day(self, touched: Any, since: datetime, until: datetime) -> dict[int, dict[str, int]]:
        """day -> {"new", "resolved", "dismissed"} counts, in one grouped statement."""
        t = touched.c
        happened = union_all(
            select(literal("new").label("kind"), self._bucket(t.ingested_at, since, DAY).label("b"))
            .select_from(touched)
            .where(_within(t.ingested_at, since, until)),
            *(
                select(literal(status).label("kind"), self._bucket(t.resolved_at, since, DAY).label("b"))
                .select_from(touched)
                .where(t.status == status, _within(t.resolved_at, since, until))
                for status in ("resolved", "dismissed")
            ),
        ).subquery("happened")
        h = happened.c
        rows = (await self._exec(select(h.kind, h.b, func.count()).group_by(h.kind, h.b))).all()
        counts: dict[int, dict[str, int]] = {}
        for kind, bucket, n in rows:
            counts.setdefault(int(bucket), {})[str(kind)] = int(n)
        return counts

    async def _per_week(
        self, touched: Any, since: datetime, until: datetime, sla_seconds: float
    ) -> dict[tuple[str, int], Timing]:
        """(kind, week) -> Timing, kind "claim" or "reply", durations from ingestion as in the digest."""
        t = touched.c
        durations = union_all(
            *(
                select(
                    literal(kind).label("kind"),
                    self._bucket(moment, since, WEEK).label("b"),
                    _seconds(self.dialect, moment, t.ingested_at).label("s"),
                )
                .select_from(touched)
                .where(_within(moment, since, until))
                for kind, moment in (("claim", t.claimed_at), ("reply", t.first_reply_at))
            )
        ).subquery("durations")
        d = durations.c
        columns: list[Any] = [d.kind, d.b, func.count(), func.count().filter(d.s <= sla_seconds)]
        if self.dialect == "postgresql":
            columns += [func.percentile_cont(literal(p, Float)).within_group(d.s) for p in PERCENTILES]
        rows = (await self._exec(select(*columns).group_by(d.kind, d.b))).all()
        if self.dialect == "postgresql":
            points = {(str(kind), int(b)): (median, p90) for kind, b, _, _, median, p90 in rows}
        else:
            named = await self._sqlite_percentiles(
                {f"{kind}:{b}": select(d.s).where(d.kind == kind, d.b == b) for kind, b, *_ in rows}
            )
            points = {(str(kind), int(b)): named[f"{kind}:{b}"] for kind, b, *_ in rows}
        return {
            (str(kind), int(b)): Timing(
                count=int(n),
                median=_float(points[(str(kind), int(b))][0]),
                p90=_float(points[(str(kind), int(b))][1]),
                within_sla=int(within),
            )
            for kind, b, n, within, *_ in rows
        }


async def build_dashboard(
    uow: UnitOfWork, department: str, *, until: datetime, days: int = DEFAULT_DAYS, weeks: int = DEFAULT_WEEKS
) -> Dashboard | None:
    """The dashboard of the department in service named `department` (None if there is none), in the caller's unit of work."""
    found = await uow.departments.by_name(department)
    if found is None:
        return None
    return await DashboardRepo(uow.session).figures(found, until=until, days=days, weeks=weeks)
