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
from bot.spikes import period_lines
from bot.views import Notice
from storage.db import off_loop
from storage.models import SpikeAlert
from storage.reports import TOP_TAGS, Activity, Overdue, Participant, RuleFigures, Timing, Waiting
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

SNIPPET_CHARS = 80
RECURRING_CLUSTERS = 5  # conversations a digest names under "recurring issues"
UNASSIGNED = "unassigned"


@dataclass(frozen=True)
class WaitingItem:
    """An unclaimed conversation in a digest: id, a one-line snippet, how long it has waited, its link."""

    id: int
    snippet: str
    age_seconds: float
    url: str


@dataclass(frozen=True)
class OverdueItem:
    """A claimed conversation with no answer past the SLA: id, who holds it, how far past the SLA, a snippet, its link."""

    id: int
    owner: str
    past_sla_seconds: float
    snippet: str
    url: str


@dataclass(frozen=True)
class Recurring:
    """Something that keeps coming up in a department: a conversation many items said (`conversation_id`; its
    `count` is its voices, its `label` its first line), or a tag (`count`: its conversations in the period,
    `previous` in the one before; None: not known, it was not among its top ones)."""

    label: str
    count: int
    previous: int | None = None
    conversation_id: int | None = None
    url: str = ""


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
    previous: Activity | None = None  # the same figures for the period just before, as long: what changed
    overdue: tuple[OverdueItem, ...] = ()  # claimed, no answer past the SLA, most overdue first
    recurring: tuple[Recurring, ...] = ()  # what keeps coming up (`recurring_of`)
    spikes: tuple[SpikeAlert, ...] = ()  # the spike alerts of the period (`bot.spikes`), oldest first
    rules: tuple[RuleFigures, ...] = ()  # per routing rule: routed here, rerouted away ("not for us")
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
            or self.spikes
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
    """Gather one department's digest for [since, until) in the caller's unit of work: every read of it (two
    periods' aggregates, the late ones, rules, voices, spikes) off the event loop on SQLite (`off_loop`)."""
    with off_loop():
        return await _gather(uow, department=department, since=since, until=until)


async def _gather(uow: UnitOfWork, *, department: str, since: datetime, until: datetime) -> Digest:
    found = await uow.departments.by_name(department)
    if found is None or found.id is None:
        names = ", ".join(d.name for d in await uow.departments.all())
        raise NotFound(f"no department {department!r}; departments: {names}")
    sla = found.sla_minutes * 60
    activity = await uow.reports.activity(found.id, since=since, until=until, sla_seconds=sla)
    previous = await uow.reports.activity(found.id, since=since - (until - since), until=since, sla_seconds=sla)
    waiting = await uow.reports.oldest_unclaimed(found.id, until=until) if activity.unclaimed else []
    late = await uow.reports.overdue(found.id, until=until, sla_seconds=sla) if activity.still_open else []
    return Digest(
        **{f.name: getattr(activity, f.name) for f in fields(Activity)},
        department=found.name,
        since=since,
        until=until,
        sla_minutes=found.sla_minutes,
        oldest_unclaimed=tuple(_waiting(w, until) for w in waiting),
        taking_part=by_department(activity.participants),
        helped_outside=_helpers(activity.participants, department=found.name),
        previous=previous,
        overdue=tuple(_overdue(item, until, sla) for item in late),
        recurring=await recurring_of(uow, found.id, activity=activity, previous=previous, since=since, until=until),
        spikes=tuple(await uow.spikes.since(found.name, since=since, until=until)),
        rules=tuple(await uow.reports.rules(found.name, since=since, until=until)),
        voices=await uow.voices.joined(found.id, since=since, until=until),
    )


async def recurring_of(
    uow: UnitOfWork, department_id: int, *, activity: Activity, previous: Activity, since: datetime, until: datetime
) -> tuple[Recurring, ...]:
    """What keeps coming up in a department's period, the digest's "recurring issues": first the conversations
    voices joined in the period, the most voices first (`bot.voices`: one card per issue, so a cluster is one
    conversation), then the tags on the most conversations, each with its count in the period before (known
    when it was among that period's top tags, or when that list was not cut)."""
    clusters = await uow.voices.most_voices(department_id, since=since, until=until, limit=RECURRING_CLUSTERS)
    before = dict(previous.top_tags)
    complete = len(previous.top_tags) < TOP_TAGS
    return (
        *(
            Recurring(_one_line(c.title or c.text, SNIPPET_CHARS), 1 + c.voice_count, conversation_id=c.id, url=c.url)
            for c in clusters
        ),
        *(Recurring(tag, n, before.get(tag, 0 if complete else None)) for tag, n in activity.top_tags),
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


_COUNTS: tuple[tuple[str, str], ...] = (("new", "new"), ("claimed", "claimed"), ("replied", "replied"))
_COUNTS += (("resolved", "resolved"), ("dismissed", "dismissed"), ("still_open", "still open"))
_TIMINGS = (
    ("Time to claim", "claimed", "to_claim"),
    ("Time to first reply", "answered", "to_first_reply"),
    ("Time to resolve", "resolved", "to_resolve"),
)


def digest_lines(digest: Digest) -> tuple[str, ...]:
    """The plain-text lines of one department's digest."""
    if digest.quiet:
        return (
            f"No activity in {digest.department} from {_day(digest.since)} to {_day(digest.until)}: nothing new, nothing open.",
            *_rule_lines(digest.rules),
        )
    before = digest.previous  # each figure next to the period before's, when known
    shown = [_figure(getattr(digest, name), getattr(before, name, None), what) for name, what in _COUNTS]
    if digest.unclaimed:  # "5 still open (3 unclaimed)", "5 still open (+3; 3 unclaimed)"
        unclaimed = f"{digest.unclaimed} unclaimed"
        shown[-1] = shown[-1][:-1] + f"; {unclaimed})" if shown[-1].endswith(")") else shown[-1] + f" ({unclaimed})"
    if digest.voices:  # "3 new (+1) (and 2 more voices of them)"
        shown[0] += f" (and {digest.voices} more voice{_s(digest.voices)} of them)"
    lines = [
        " · ".join(shown),
        *(
            _timing_line(label, verb, getattr(digest, name), digest.sla_minutes, getattr(before, name, None))
            for label, verb, name in _TIMINGS
        ),
    ]
    lines.extend(period_lines(digest.spikes))
    if digest.oldest_unclaimed:
        lines.append("Oldest unclaimed:")
        lines.extend(
            f"#{w.id} · waiting {format_duration(w.age_seconds)} · {w.snippet}" + (f" · {w.url}" if w.url else "")
            for w in digest.oldest_unclaimed
        )
    if digest.overdue:
        lines.append("Claimed, no answer past the SLA (most overdue first):")
        lines.extend(
            f"#{o.id} · {_one_line(o.owner, 40) or 'someone'} · {format_duration(o.past_sla_seconds)} past the SLA · {o.snippet}"
            + (f" · {o.url}" if o.url else "")
            for o in digest.overdue
        )
    if digest.outcomes:
        lines.append("Outcomes: " + ", ".join(f"{name} {n}" for name, n in digest.outcomes))
    clusters = [r for r in digest.recurring if r.conversation_id is not None]
    tags = [r for r in digest.recurring if r.conversation_id is None]
    if clusters:
        lines.append("Recurring issues (the most voices first):")
        lines.extend(
            f"#{r.conversation_id} · {r.count} voices · {r.label or '(no text)'}" + (f" · {r.url}" if r.url else "")
            for r in clusters
        )
    if tags:
        lines.append(
            "Recurring (tags on the most conversations): "
            + ", ".join(_figure(r.count, r.previous, _one_line(r.label, 40), before=True) for r in tags)
        )
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
    lines.extend(_rule_lines(digest.rules))
    return tuple(lines)


def _figure(count: int, previous: int | None, what: str, *, before: bool = False) -> str:
    """`12 new (+4)`: a figure and how it moved since the period before (nothing when that is not known, or
    both are 0); `before`: the label first (`legal 8 (+5)`)."""
    said = f"{what} {count}" if before else f"{count} {what}"
    if previous is None or (count == 0 and previous == 0):
        return said
    change = count - previous
    return f"{said} ({'+' if change > 0 else '±' if change == 0 else '−'}{abs(change)})"


def _rule_lines(rules: Sequence[RuleFigures]) -> list[str]:
    """Per routing rule, what it sent here and how much of it was not for this department."""
    if not rules:
        return []
    return ["Routing rules: " + ", ".join(_rule_part(r) for r in rules)]


def _rule_part(rule: RuleFigures) -> str:
    """`billing routed 12, 3 rerouted away (25%)`: the share is of what it routed in the same period."""
    share = f" ({rule.rerouted * 100 // rule.routed}%)" if rule.routed and rule.rerouted else ""
    return f"{_one_line(rule.rule, 40)} routed {rule.routed}, {rule.rerouted} rerouted away{share}"


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


def _timing_line(label: str, verb: str, timing: Timing, sla_minutes: int, previous: Timing | None = None) -> str:
    if not timing.count:
        return f"{label}: nothing {verb} in this period"
    was = f" (was {format_duration(previous.median)})" if previous is not None and previous.count else ""
    return (
        f"{label}: median {format_duration(timing.median)}{was}, p90 {format_duration(timing.p90)}; "
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


def by_department(people: Sequence[Participant]) -> tuple[TeamPart, ...]:
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


def _overdue(item: Overdue, until: datetime, sla_seconds: float) -> OverdueItem:
    return OverdueItem(
        id=item.id,
        owner=item.owner,
        past_sla_seconds=max(0.0, (until - item.ingested_at).total_seconds() - sla_seconds),
        snippet=_one_line(item.title or item.text, SNIPPET_CHARS),
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
