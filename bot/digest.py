"""Manager digests and personal stats: figures from the store's aggregates, and their notices.

`build_digest` gathers one department's figures for a period [since, until); `digest_notice`
turns them into plain-text lines (the renderers escape them: customer text is quoted as-is,
cut to one short line). Scheduling and posting digests is the scheduler's business.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from bot.domain import NotFound
from bot.views import Notice
from storage.reports import Activity, Participant, Timing, Waiting
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

SNIPPET_CHARS = 80
UNASSIGNED = "unassigned"


@dataclass(frozen=True)
class WaitingItem:
    """An unclaimed conversation in a digest: id, a one-line snippet, how long it has waited, its link."""

    id: int
    snippet: str
    age_seconds: float
    url: str


@dataclass(frozen=True)
class TeamPart:
    """The people of one department (their own, "unassigned" if none) who took part, and what they did."""

    department: str
    people: tuple[str, ...]
    claimed: int
    replied: int
    resolved: int
    noted: int

    @property
    def actions(self) -> int:
        """Everything they did, together."""
        return self.claimed + self.replied + self.resolved + self.noted


@dataclass(frozen=True)
class Helper:
    """Someone who belongs to another department (the config's `[people]`) and took part."""

    name: str
    department: str
    actions: int


@dataclass(frozen=True)
class Digest(Activity):
    """A department's figures for the period [since, until) (its `Activity`, durations in
    seconds), with what the digest shows besides: the oldest waiting items and who took part
    by their own department."""

    department: str
    since: datetime
    until: datetime
    sla_minutes: int
    oldest_unclaimed: tuple[WaitingItem, ...]
    taking_part: tuple[TeamPart, ...]
    helped_outside: tuple[Helper, ...] = ()  # people of other departments who took part, most active first
    voices: int = 0  # items of the period that joined one of its conversations as another voice (`bot.voices`)

    @property
    def quiet(self) -> bool:
        """Nothing happened in the period and nothing is waiting."""
        return not (
            self.new
            or self.claimed
            or self.replied
            or self.resolved
            or self.dismissed
            or self.still_open
            or self.taking_part
            or self.voices
        )


@dataclass(frozen=True)
class Stats:
    """One person's own figures (since `since`, or ever): distinct conversations per action."""

    person: str
    department: str | None
    since: datetime | None
    claimed: int
    replied: int
    resolved: int
    noted: int
    response: Timing  # from the conversation's claim to this person's first reply on it


async def build_digest(uow: UnitOfWork, *, department: str, since: datetime, until: datetime) -> Digest:
    """Gather one department's digest for [since, until) in the caller's unit of work."""
    found = await uow.departments.by_name(department)
    if found is None or found.id is None:
        names = ", ".join(d.name for d in await uow.departments.all())
        raise NotFound(f"no department {department!r}; departments: {names}")
    activity = await uow.reports.activity(found.id, since=since, until=until, sla_seconds=found.sla_minutes * 60)
    waiting = await uow.reports.oldest_unclaimed(found.id, until=until) if activity.unclaimed else []
    return Digest(
        **{f.name: getattr(activity, f.name) for f in fields(Activity)},
        department=found.name,
        since=since,
        until=until,
        sla_minutes=found.sla_minutes,
        oldest_unclaimed=tuple(_waiting(w, until) for w in waiting),
        taking_part=_by_department(activity.participants),
        helped_outside=_helpers(activity.participants, department=found.name),
        voices=await uow.voices.joined(found.id, since=since, until=until),
    )


def _helpers(people: Sequence[Participant], *, department: str) -> tuple[Helper, ...]:
    """Who helped the department from outside theirs, and how often (claims, replies, resolutions, notes)."""
    helpers = [
        Helper(p.name, p.department, p.claimed + p.replied + p.resolved + p.noted)
        for p in people
        if p.department and p.department != department
    ]
    return tuple(sorted((h for h in helpers if h.actions), key=lambda h: (-h.actions, h.name)))


async def build_stats(uow: UnitOfWork, *, person_id: int, since: datetime | None = None) -> Stats:
    """One person's figures: claimed, replied, resolved, noted, and their median response time."""
    person = await uow.people.get(person_id)
    if person is None:
        raise NotFound(f"no person with id {person_id}")
    figures = await uow.reports.person(person_id, since=since)
    return Stats(
        person=person.name,
        department=person.department,
        since=since,
        claimed=figures.claimed,
        replied=figures.replied,
        resolved=figures.resolved,
        noted=figures.noted,
        response=figures.response,
    )


def digest_notice(digest: Digest) -> Notice:
    """The digest as a notice: one line if the department was quiet, the figures otherwise."""
    title = f"{_kind(digest.since, digest.until)} — {digest.department}, {_span(digest.since, digest.until)}"
    return Notice(title=title, lines=digest_lines(digest), links=_links(digest))


def digests_notice(digests: Sequence[Digest]) -> Notice:
    """Several departments' digests for the same period in one notice, one section each."""
    if len(digests) == 1:
        return digest_notice(digests[0])
    first = digests[0]
    names = ", ".join(d.department for d in digests)
    lines: list[str] = []
    for digest in digests:
        lines.append(f"— {digest.department} —")
        lines.extend(digest_lines(digest))
    title = f"{_kind(first.since, first.until)} — {names}, {_span(first.since, first.until)}"
    return Notice(title=title, lines=tuple(lines), links=tuple(link for d in digests for link in _links(d)))


def digest_lines(digest: Digest) -> tuple[str, ...]:
    """The plain-text lines of one department's digest."""
    if digest.quiet:
        return (
            f"No activity in {digest.department} from {_day(digest.since)} to {_day(digest.until)}: nothing new, nothing open.",
        )
    open_part = f"{digest.still_open} still open" + (f" ({digest.unclaimed} unclaimed)" if digest.unclaimed else "")
    merged = f" (and {digest.voices} more voice{_s(digest.voices)} of them)" if digest.voices else ""
    lines = [
        f"{digest.new} new{merged} · {digest.claimed} claimed · {digest.replied} replied · {digest.resolved} resolved · "
        f"{digest.dismissed} dismissed · {open_part}",
        _timing_line("Time to claim", "claimed", digest.to_claim, digest.sla_minutes),
        _timing_line("Time to first reply", "answered", digest.to_first_reply, digest.sla_minutes),
        _timing_line("Time to resolve", "resolved", digest.to_resolve, digest.sla_minutes),
    ]
    if digest.oldest_unclaimed:
        lines.append("Oldest unclaimed:")
        lines.extend(
            f"#{w.id} · waiting {format_duration(w.age_seconds)} · {w.snippet}" + (f" · {w.url}" if w.url else "")
            for w in digest.oldest_unclaimed
        )
    if digest.outcomes:
        lines.append("Outcomes: " + ", ".join(f"{name} {n}" for name, n in digest.outcomes))
    if digest.top_tags:
        lines.append("Top tags: " + ", ".join(f"{_one_line(tag, 40)} {n}" for tag, n in digest.top_tags))
    if digest.taking_part:
        lines.append("Who took part, by their department:")
        lines.extend(_part_line(part) for part in digest.taking_part)
    if digest.helped_outside:
        lines.append(
            "Helped outside their department: "
            + ", ".join(
                f"{_one_line(h.name, 40)} ({h.department}) {h.actions} time{'s' if h.actions != 1 else ''}"
                for h in digest.helped_outside
            )
        )
    return tuple(lines)


def stats_notice(stats: Stats) -> Notice:
    """One person's figures as a notice."""
    period = f"since {_day(stats.since)}" if stats.since else "all time"
    response = stats.response
    if response.count:
        answer = (
            f"Response time (claim to your first reply): median {format_duration(response.median)}, "
            f"p90 {format_duration(response.p90)} over {response.count} conversation{_s(response.count)}"
        )
    else:
        answer = "Response time: no replies yet"
    lines = (
        f"{stats.claimed} claimed · {stats.replied} replied · {stats.resolved} resolved · {stats.noted} noted",
        answer,
    )
    who = f"{stats.person} ({stats.department})" if stats.department else stats.person
    return Notice(title=f"Your figures — {who}, {period}", lines=lines)


def format_duration(seconds: float | None) -> str:
    """A duration for people: "45 s", "42 min", "3.5 h", "2 d"."""
    if seconds is None:
        return "n/a"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{_trim(seconds / 3600)} h"
    return f"{_trim(seconds / 86400)} d"


def _timing_line(label: str, verb: str, timing: Timing, sla_minutes: int) -> str:
    if not timing.count:
        return f"{label}: nothing {verb} in this period"
    return (
        f"{label}: median {format_duration(timing.median)}, p90 {format_duration(timing.p90)}; "
        f"{timing.within_sla} of {timing.count} within the {format_duration(sla_minutes * 60)} SLA"
    )


def _part_line(part: TeamPart) -> str:
    did = ", ".join(
        f"{n} {what}"
        for n, what in ((part.claimed, "claimed"), (part.replied, "replied"), (part.resolved, "resolved"), (part.noted, "noted"))
        if n
    )
    people = ", ".join(_one_line(name, 40) for name in part.people)
    return f"{part.department}: {len(part.people)} {'person' if len(part.people) == 1 else 'people'} ({people}) — {did}"


def _by_department(people: Sequence[Participant]) -> tuple[TeamPart, ...]:
    groups: dict[str, list[Participant]] = {}
    for person in people:
        groups.setdefault(person.department or UNASSIGNED, []).append(person)
    parts = [
        TeamPart(
            department=name,
            people=tuple(sorted(p.name for p in members)),
            claimed=sum(p.claimed for p in members),
            replied=sum(p.replied for p in members),
            resolved=sum(p.resolved for p in members),
            noted=sum(p.noted for p in members),
        )
        for name, members in groups.items()
    ]
    return tuple(sorted(parts, key=lambda part: (-part.actions, part.department)))


def _waiting(item: Waiting, until: datetime) -> WaitingItem:
    return WaitingItem(
        id=item.id,
        snippet=_one_line(item.title or item.text, SNIPPET_CHARS),
        age_seconds=max(0.0, (until - item.ingested_at).total_seconds()),
        url=item.url,
    )


def _links(digest: Digest) -> tuple[tuple[str, str], ...]:
    return tuple((f"#{w.id}", w.url) for w in digest.oldest_unclaimed if w.url)


def _one_line(text: str, limit: int) -> str:
    flat = re.sub(r"\s+", " ", text or "").strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _kind(since: datetime, until: datetime) -> str:
    span = until - since
    return {timedelta(days=1): "Daily digest", timedelta(days=7): "Weekly digest"}.get(span, "Digest")


def _day(moment: datetime | None) -> str:
    return f"{moment.day} {moment:%b}" if moment else ""


def _span(since: datetime, until: datetime) -> str:
    if (since.year, since.month) == (until.year, until.month):
        return f"{since.day}–{until.day} {until:%b}"
    if since.year == until.year:
        return f"{_day(since)} – {_day(until)}"
    return f"{_day(since)} {since.year} – {_day(until)} {until.year}"


def _trim(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _s(n: int) -> str:
    return "" if n == 1 else "s"
