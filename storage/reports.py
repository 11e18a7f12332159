"""Aggregate queries behind manager digests and personal stats, for SQLite and PostgreSQL.

Every figure is computed by the database (counts with `FILTER`, `GROUP BY`, JSON array
aggregates for the short lists); no conversation rows are loaded into Python.

Percentiles: PostgreSQL's `percentile_cont(...) WITHIN GROUP (ORDER BY ...)`. SQLite has
none, so there one more statement numbers the durations with window functions
(`row_number`, `count` over each kind) and interpolates between the two neighbouring rows
exactly as `percentile_cont` does: v(k) + (v(k+1) - v(k)) * (h - k), h = p * (n - 1),
k = floor(h). Durations are seconds.

A period is half-open, [since, until). A department's figures come from one statement
that reads its conversations not closed before `since` once (index on
`conversation.resolved_at`: `IS NULL OR >= since`), joined once with the department.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Float, Integer, and_, cast, func, literal, or_, text, true, union_all
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import off_loop
from storage.models import Conversation, ConversationDepartment, Event, Person
from storage.repositories import _Repo

logger = logging.getLogger(__name__)

PERCENTILES = (0.5, 0.9)
ACTIONS = ("claimed", "replied", "resolved", "noted")  # what counts as taking part
SNIPPET = 200  # characters of a conversation's text fetched for a digest line
TOP_TAGS = 5
_REPORT_SETTINGS = text("SELECT set_config('plan_cache_mode', 'force_custom_plan', true), set_config('jit', 'off', true)")


@dataclass(frozen=True)
class Timing:
    """One duration over a period: how many, median, 90th percentile (seconds), how many within the SLA."""

    count: int
    median: float | None
    p90: float | None
    within_sla: int = 0


@dataclass(frozen=True)
class Participant:
    """One person's actions on a department's conversations in a period."""

    person_id: int
    name: str
    department: str | None
    claimed: int = 0
    replied: int = 0
    resolved: int = 0
    noted: int = 0


@dataclass(frozen=True)
class Activity:
    """A department's counts and timings for a period.

    `claimed`, `replied` and `resolved` count conversations whose first claim, first reply
    or resolution fell in the period; `still_open` those ingested before `until` and not
    resolved or dismissed by then; `unclaimed` those of them in status open now (exact for
    a digest up to now, as every sent digest is).
    """

    new: int
    claimed: int
    replied: int
    resolved: int
    dismissed: int
    still_open: int
    unclaimed: int
    to_claim: Timing
    to_first_reply: Timing
    to_resolve: Timing
    outcomes: tuple[tuple[str, int], ...]  # of those resolved in the period, most frequent first
    top_tags: tuple[tuple[str, int], ...]  # of those ingested in the period, most frequent first
    participants: tuple[Participant, ...]  # who claimed, replied, resolved or noted in the period


@dataclass(frozen=True)
class RuleFigures:
    """One routing rule in a period: how many conversations it sent to a department, and how many of its
    conversations someone moved away from there ("not for us"), whenever they had come in."""

    rule: str
    routed: int
    rerouted: int


@dataclass(frozen=True)
class Overdue:
    """A claimed conversation with no answer past its SLA: what a digest shows of it (the text cut short)."""

    id: int
    title: str
    text: str
    url: str
    ingested_at: datetime
    owner: str


@dataclass(frozen=True)
class Waiting:
    """An unclaimed conversation: what a digest shows of it (the text is cut to `SNIPPET`)."""

    id: int
    title: str
    text: str
    url: str
    ingested_at: datetime


@dataclass(frozen=True)
class PersonFigures:
    """One person's own figures: distinct conversations per action, and their response time."""

    claimed: int
    replied: int
    resolved: int
    noted: int
    response: Timing


def _seconds(dialect: str, later: Any, earlier: Any) -> ColumnElement[float]:
    """`later - earlier` in seconds, as a float."""
    if dialect == "postgresql":
        return cast(func.extract("epoch", later - earlier), Float)
    # SQLite stores "YYYY-MM-DD HH:MM:SS.ffffff"; julianday is a double, so round to the millisecond.
    return func.round((func.julianday(later) - func.julianday(earlier)) * 86400.0, 3)


def _within(column: Any, since: datetime, until: datetime) -> ColumnElement[bool]:
    return and_(col(column) >= since, col(column) < until)


class ReportRepo(_Repo):
    """The figures of digests and stats: one aggregate statement each (plus one for percentiles on SQLite)."""

    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session)
        self.dialect = session.bind.dialect.name if session.bind is not None else "sqlite"

    async def _exec(self, stmt: Any) -> Any:
        """Run one report statement; on SQLite off the event loop (it may scan a large store)."""
        with off_loop():
            return await self.session.exec(stmt)

    async def activity(self, department_id: int, *, since: datetime, until: datetime, sla_seconds: float) -> Activity:
        """Counts, timings, outcomes, top tags and participants of one department for [since, until), in one statement.

        The department's conversations that matter are those not closed before `since`:
        anything ingested, claimed, answered or closed in the period, and anything still
        open at its end (a claim, a reply and an ingestion all come before the closing).
        They are read once, joined once with the department, into the `touched` CTE; each
        figure then filters it (on SQLite, one more statement computes the percentiles).
        """
        c, cd = Conversation, ConversationDepartment
        await self._plan_for_reports()
        touched = (
            select(c.id, c.status, c.outcome, c.tags, c.ingested_at, c.claimed_at, c.first_reply_at, c.resolved_at)  # type: ignore[call-overload,misc]
            .join(cd, and_(col(cd.conversation_id) == c.id, col(cd.department_id) == department_id))
            .where(col(c.ingested_at) < until, or_(col(c.resolved_at).is_(None), col(c.resolved_at) >= since))
            .cte("touched")
        )
        t = touched.c
        durations = {
            "claim": (_seconds(self.dialect, t.claimed_at, t.ingested_at), _within(t.claimed_at, since, until)),
            "reply": (_seconds(self.dialect, t.first_reply_at, t.ingested_at), _within(t.first_reply_at, since, until)),
            "resolve": (
                _seconds(self.dialect, t.resolved_at, t.ingested_at),
                and_(t.status == "resolved", _within(t.resolved_at, since, until)),
            ),
        }
        columns: list[Any] = [
            func.count().filter(_within(t.ingested_at, since, until)).label("new"),
            func.count().filter(and_(t.status == "dismissed", _within(t.resolved_at, since, until))).label("dismissed"),
            func.count().filter(or_(t.resolved_at.is_(None), t.resolved_at >= until)).label("still_open"),
            func.count().filter(t.status == "open").label("unclaimed"),
        ]
        for name, (seconds, happened) in durations.items():
            columns.append(func.count().filter(happened).label(f"{name}_n"))
            columns.append(func.count().filter(and_(happened, seconds <= sla_seconds)).label(f"{name}_sla"))
            if self.dialect == "postgresql":
                for p in PERCENTILES:
                    columns.append(
                        func.percentile_cont(literal(p, Float))
                        .within_group(seconds)
                        .filter(happened)
                        .label(f"{name}_p{int(p * 100)}")
                    )
        columns += [
            self._outcomes(touched, since, until).label("outcomes"),
            self._tags(touched, since, until).label("tags"),
            self._participants(touched, department_id, since, until).label("people"),
        ]
        row = (await self._exec(select(*columns).select_from(touched))).one()
        values = row._mapping
        if self.dialect == "postgresql":
            points = {name: (values[f"{name}_p50"], values[f"{name}_p90"]) for name in durations}
        else:
            points = await self._sqlite_percentiles(
                {name: select(seconds).select_from(touched).where(happened) for name, (seconds, happened) in durations.items()}
            )
        timing = {
            name: Timing(
                count=values[f"{name}_n"],
                median=_float(points[name][0]),
                p90=_float(points[name][1]),
                within_sla=values[f"{name}_sla"],
            )
            for name in durations
        }
        people: dict[int, dict[str, Any]] = {}
        for person_id, name, department, kind, count in _rows(values["people"]):
            people.setdefault(person_id, {"person_id": person_id, "name": name, "department": department})[kind] = count
        return Activity(
            new=values["new"],
            claimed=timing["claim"].count,
            replied=timing["reply"].count,
            resolved=timing["resolve"].count,
            dismissed=values["dismissed"],
            still_open=values["still_open"],
            unclaimed=values["unclaimed"],
            to_claim=timing["claim"],
            to_first_reply=timing["reply"],
            to_resolve=timing["resolve"],
            outcomes=tuple(sorted(((str(o), int(n)) for o, n in _rows(values["outcomes"])), key=lambda x: (-x[1], x[0]))),
            top_tags=tuple(sorted(((str(g), int(n)) for g, n in _rows(values["tags"])), key=lambda x: (-x[1], x[0]))),
            participants=tuple(sorted((Participant(**entry) for entry in people.values()), key=lambda x: (x.name, x.person_id))),
        )

    async def _plan_for_reports(self) -> None:
        """PostgreSQL, for this transaction only: plan each report for its actual period, without JIT.

        asyncpg prepares statements, and after five runs PostgreSQL may switch to a generic
        plan that cannot see how narrow the period is (measured: 15 s instead of 0.1 s on
        a million conversations). JIT compiling a one-row report costs more than running it.
        """
        if self.dialect == "postgresql":
            await self._exec(_REPORT_SETTINGS)

    def _json_rows(self, subquery: Any) -> Any:
        """A scalar subquery aggregating every row of `subquery` into one JSON array of arrays."""
        row = (func.json_build_array if self.dialect == "postgresql" else func.json_array)(*subquery.c)
        rows = func.json_agg(row) if self.dialect == "postgresql" else func.json_group_array(row)
        return select(rows).select_from(subquery).scalar_subquery()

    def _outcomes(self, touched: Any, since: datetime, until: datetime) -> Any:
        t = touched.c
        outcome = func.coalesce(t.outcome, "none")
        per = (
            select(outcome, func.count())
            .select_from(touched)
            .where(t.status == "resolved", _within(t.resolved_at, since, until))
            .group_by(outcome)
            .subquery("o")
        )
        return self._json_rows(per)

    def _tags(self, touched: Any, since: datetime, until: datetime, limit: int = TOP_TAGS) -> Any:
        t = touched.c
        unnest = func.json_array_elements_text if self.dialect == "postgresql" else func.json_each
        tag = unnest(t.tags).table_valued("value").alias("tag")
        count = func.count()
        per = (
            select(tag.c.value, count)
            .select_from(touched)
            .join(tag, true())
            .where(_within(t.ingested_at, since, until))
            .group_by(tag.c.value)
            .order_by(count.desc(), tag.c.value)
            .limit(limit)
            .subquery("g")
        )
        return self._json_rows(per)

    def _participants(self, touched: Any, department_id: int, since: datetime, until: datetime) -> Any:
        """Claims, replies, resolutions and notes in the period, per person and kind.

        A claim, reply or resolution in the period is always on a conversation in `touched`
        (only conversations not closed before `since` can get one); a note may also be on
        one closed earlier: those few are checked one by one against the department's links
        (a `LIMIT 1` subquery: an index probe each, instead of reading every link of the
        department).
        """
        e, p, cd = Event, Person, ConversationDepartment
        in_period = _within(e.at, since, until)
        in_department = (
            select(literal(1))
            .where(col(cd.conversation_id) == e.conversation_id, cd.department_id == department_id)
            .limit(1)
            .scalar_subquery()
            .is_not(None)
        )
        acts = union_all(
            select(e.actor_id, e.kind)
            .join(touched, touched.c.id == e.conversation_id)
            .where(col(e.kind).in_(ACTIONS), in_period),
            select(e.actor_id, e.kind).where(
                e.kind == "noted", in_period, col(e.conversation_id).not_in(select(touched.c.id)), in_department
            ),
        ).subquery("acts")
        per = (
            select(p.id, p.name, p.department, acts.c.kind, func.count())  # type: ignore[call-overload]
            .join(p, col(p.id) == acts.c.actor_id)
            .group_by(p.id, p.name, p.department, acts.c.kind)
            .subquery("per")
        )
        return self._json_rows(per)

    async def oldest_unclaimed(self, department_id: int, *, until: datetime, limit: int = 5) -> list[Waiting]:
        """The department's conversations still in status open, oldest first (the text cut short)."""
        c = Conversation
        stmt = (
            self._of_department(select(c.id, c.title, func.substr(c.text, 1, SNIPPET), c.url, c.ingested_at), department_id)  # type: ignore[call-overload]
            .where(c.status == "open", col(c.ingested_at) < until)
            .order_by(col(c.ingested_at), col(c.id))
            .limit(limit)
        )
        rows = (await self._exec(stmt)).all()
        return [Waiting(id=cid, title=title, text=text, url=url, ingested_at=at) for cid, title, text, url, at in rows]

    async def overdue(self, department_id: int, *, until: datetime, sla_seconds: float, limit: int = 5) -> list[Overdue]:
        """The department's claimed conversations with no reply written past the SLA at `until`, most overdue first."""
        c, p = Conversation, Person
        late = until - timedelta(seconds=sla_seconds)
        stmt = (
            self._of_department(
                select(c.id, c.title, func.substr(c.text, 1, SNIPPET), c.url, c.ingested_at, p.name),  # type: ignore[call-overload]
                department_id,
            )
            .outerjoin(p, col(p.id) == c.owner_id)
            .where(c.status == "claimed", col(c.reply_written_at).is_(None), col(c.ingested_at) < late)
            .order_by(col(c.ingested_at), col(c.id))
            .limit(limit)
        )
        rows = (await self._exec(stmt)).all()
        return [
            Overdue(id=cid, title=title, text=text, url=url, ingested_at=at, owner=owner or "")
            for cid, title, text, url, at, owner in rows
        ]

    def _elements(self, key: str) -> Any:
        """The values of the JSON list `event.data[key]`, as a table (one row each, column `value`)."""
        if self.dialect == "postgresql":
            return func.json_array_elements_text(col(Event.data)[key]).table_valued("value")
        return func.json_each(col(Event.data), f"$.{key}").table_valued("value")

    async def rules(self, department: str, *, since: datetime, until: datetime) -> list[RuleFigures]:
        """Per routing rule, for [since, until): the conversations it routed to `department` (their `ingested`
        or `reported` event names the rules), and those rerouted away from it (the `rerouted` event names the
        rules that had sent them there). Most rerouted first, then most routed."""
        e = Event
        counts: dict[str, list[int]] = {}
        for kinds, where_key, slot in ((("ingested", "reported"), "departments", 0), (("rerouted",), "from", 1)):
            rule = self._elements("rules").alias("rule")
            place = self._elements(where_key).alias("place")
            stmt = (
                select(rule.c.value, func.count())
                .select_from(e)
                .join(rule, true())
                .join(place, true())
                .where(col(e.kind).in_(kinds), _within(e.at, since, until), place.c.value == department)
                .group_by(rule.c.value)
            )
            for name, n in (await self._exec(stmt)).all():
                counts.setdefault(str(name), [0, 0])[slot] += int(n)
        figures = [RuleFigures(rule, routed, rerouted) for rule, (routed, rerouted) in counts.items()]
        return sorted(figures, key=lambda f: (-f.rerouted, -f.routed, f.rule))

    async def person(self, person_id: int, *, since: datetime | None = None) -> PersonFigures:
        """One person's figures: distinct conversations claimed, replied, resolved, noted (since `since`).

        Response time: from the conversation's claim to this person's first reply on it,
        over the conversations they replied to.
        """
        e, c = Event, Conversation
        await self._plan_for_reports()
        mine = [e.actor_id == person_id] + ([col(e.at) >= since] if since is not None else [])
        counts_stmt = (
            select(e.kind, func.count(func.distinct(e.conversation_id))).where(col(e.kind).in_(ACTIONS), *mine).group_by(e.kind)
        )
        counts = dict((await self._exec(counts_stmt)).all())
        first = (
            select(col(e.conversation_id).label("conversation_id"), func.min(e.at).label("first_at"))
            .where(e.kind == "replied", *mine)
            .group_by(col(e.conversation_id))
            .subquery("first_reply")
        )
        seconds = _seconds(self.dialect, first.c.first_at, c.claimed_at)
        base = (
            select()  # type: ignore[call-overload]
            .select_from(first)
            .join(c, col(c.id) == first.c.conversation_id)
            .where(col(c.claimed_at).is_not(None))
        )
        columns: list[Any] = [func.count()]
        if self.dialect == "postgresql":
            columns += [func.percentile_cont(literal(p, Float)).within_group(seconds) for p in PERCENTILES]
        row = (await self._exec(base.add_columns(*columns))).one()
        if self.dialect == "postgresql":
            median, p90 = row[1], row[2]
        else:
            median, p90 = (await self._sqlite_percentiles({"response": base.add_columns(seconds)}))["response"]
        return PersonFigures(
            claimed=counts.get("claimed", 0),
            replied=counts.get("replied", 0),
            resolved=counts.get("resolved", 0),
            noted=counts.get("noted", 0),
            response=Timing(count=row[0], median=_float(median), p90=_float(p90)),
        )

    @staticmethod
    def _of_department(stmt: Any, department_id: int) -> Any:
        cd = ConversationDepartment
        return stmt.select_from(Conversation).join(
            cd, and_(col(cd.conversation_id) == Conversation.id, col(cd.department_id) == department_id)
        )

    async def _sqlite_percentiles(self, durations: dict[str, Any]) -> dict[str, tuple[float | None, float | None]]:
        """`percentile_cont` for SQLite: median and p90 of each named one-column select, in one statement."""
        if not durations:  # nothing to rank (a union of no select is no statement)
            return {}
        parts = [stmt.add_columns(literal(name).label("k")) for name, stmt in durations.items()]
        values = union_all(*parts).subquery("d")
        v, k = values.c[0], values.c.k
        ranked = select(
            k,
            v.label("v"),
            (func.row_number().over(partition_by=k, order_by=v) - 1).label("i"),
            (func.count().over(partition_by=k) - 1).label("m"),
        ).subquery("r")
        ps = union_all(*(select(literal(p, Float).label("p")) for p in PERCENTILES)).subquery("ps")
        h = ranked.c.m * ps.c.p
        low = cast(h, Integer)  # h >= 0, so the cast is floor
        stmt = (
            select(ranked.c.k, ps.c.p, func.min(ranked.c.v) + (func.max(ranked.c.v) - func.min(ranked.c.v)) * func.max(h - low))
            .select_from(ranked)
            .join(ps, true())
            .where(or_(ranked.c.i == low, ranked.c.i == low + 1))
            .group_by(ranked.c.k, ps.c.p)
        )
        found = {(name, p): value for name, p, value in (await self._exec(stmt)).all()}
        return {name: (found.get((name, PERCENTILES[0])), found.get((name, PERCENTILES[1]))) for name in durations}


def _rows(value: Any) -> list[list[Any]]:
    """The rows of a JSON array aggregate (a string from SQLite, decoded by asyncpg; None when empty)."""
    if value is None:
        return []
    return json.loads(value) if isinstance(value, str) else list(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
