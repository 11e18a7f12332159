"""Spike alerts: when new conversations for a department, a tag or a rule jump above their own baseline.

`check_spikes` (the scheduler's job, one replica per due time) counts, per department and per
scope in it (the department itself, each tag, each rule that routed there), the new conversations
of the last window against the same window on each of the last days; a scope that jumps
(`SpikeConfig`: a minimum count, a ratio and a number of standard deviations above the mean) gets
ONE alert per department and check, posted to the department's channels through the outbox. The
alert row's unique key (department, scope, cooldown bucket) keeps it once across replicas, and
every scope it covers stays quiet for the cooldown.

What counts is `count_items` (one per conversation today; the hook where merged voices would
count as well). Everything here is plain text: the renderers escape it (customer text included).
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bot.config import SpikeConfig
from bot.outbox import channel_notice, notice_payload
from bot.views import Action, Notice, cut, first_line
from storage.models import SpikeAlert
from storage.spikes import WindowItem
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

KIND_ORDER = ("tag", "rule", "department")  # the most specific scope names an alert
EXAMPLES = 3
TOP_TERMS = 5
KEPT_IDS = 500  # conversations an alert lists ("See all")
SNIPPET = 100
NO_RULE = "no rule matched"
_WORD = re.compile(r"[^\W\d_]{3,}")
STOPWORDS = frozenset(
    "the and for are but not you your yours with this that from have has had was were will would can could "
    "our out all any its it's into just they them their there then than what when which who why how been "
    "about also after again more most much very some such only over under here please thanks thank hello "
    "get got one two now today still since because does did doing don't cannot can't isn't wasn't i'm".split()
)


@dataclass(frozen=True)
class Spike:
    """One scope of a department whose new conversations jumped: its count, its usual count, its items."""

    department: str
    scope: str  # "tag:outage", "rule:support", "department:support"
    count: int
    mean: float
    stddev: float
    items: tuple[WindowItem, ...]  # newest first

    @property
    def kind(self) -> str:
        """What the scope is: tag, rule or department."""
        return self.scope.partition(":")[0]

    @property
    def name(self) -> str:
        """The tag's, rule's or department's name."""
        return self.scope.partition(":")[2]

    @property
    def ratio(self) -> float:
        """How many times the usual count (a usual count under 1 counts as 1)."""
        return self.count / max(self.mean, 1.0)


def count_items(items: Iterable[WindowItem]) -> int:
    """How much a set of new items weighs in a spike: one per item, a new conversation or another voice that
    joined one in the window (`SpikeRepo.new_in` reads both)."""
    return sum(1 for _ in items)


def scopes_of(item: WindowItem) -> list[str]:
    """The scopes an item counts in within its department: the department, each tag, each rule that matched."""
    rules = [part.partition(": ")[0].strip() for part in item.routing_reason.split("; ")]
    return [
        f"department:{item.department}",
        *(f"tag:{t}" for t in dict.fromkeys(item.tags) if t),
        *(f"rule:{r}" for r in dict.fromkeys(rules) if r and r != NO_RULE),
    ]


def windows(now: datetime, settings: SpikeConfig) -> list[tuple[datetime, datetime]]:
    """The window ending at `now`, then the same window on each of the last `baseline_days` days."""
    span = timedelta(minutes=settings.window_minutes)
    return [(now - timedelta(days=d) - span, now - timedelta(days=d)) for d in range(settings.baseline_days + 1)]


def find_spikes(items: Sequence[WindowItem], *, now: datetime, settings: SpikeConfig) -> list[Spike]:
    """Every (department, scope) whose window ending at `now` is a spike against its baseline, biggest first."""
    spans = windows(now, settings)
    grouped: dict[tuple[str, str], list[list[WindowItem]]] = {}
    for item in items:
        index = next((i for i, (start, end) in enumerate(spans) if start <= item.ingested_at < end), None)
        if index is None:
            continue
        for scope in scopes_of(item):
            grouped.setdefault((item.department, scope), [[] for _ in spans])[index].append(item)
    found: list[Spike] = []
    for (department, scope), per_window in grouped.items():
        count = count_items(per_window[0])
        usual = [count_items(w) for w in per_window[1:]]
        mean = sum(usual) / len(usual) if usual else 0.0
        stddev = math.sqrt(sum((u - mean) ** 2 for u in usual) / len(usual)) if usual else 0.0
        if count < settings.min_count or count < settings.ratio * max(mean, 1.0) or count < mean + settings.sigmas * stddev:
            continue
        found.append(Spike(department, scope, count, mean, stddev, tuple(per_window[0])))
    return sorted(found, key=lambda s: (-s.ratio, -s.count, s.scope))


def lead(spikes: Sequence[Spike]) -> Spike:
    """The spike an alert is about: the most specific kind of scope (a tag, then a rule), then the biggest jump."""
    return min(spikes, key=lambda s: (KIND_ORDER.index(s.kind), -s.ratio, -s.count, s.scope))


def _words(item: WindowItem) -> set[str]:
    return {w for w in (m.casefold() for m in _WORD.findall(f"{item.title} {item.text}")) if w not in STOPWORDS}


def distinctive_terms(now: Sequence[WindowItem], usual: Sequence[WindowItem], *, days: int) -> list[str]:
    """The words most over-represented in the window's items against the baseline's (per day), in 2+ items."""
    here = Counter(w for item in now for w in _words(item))
    before = Counter(w for item in usual for w in _words(item))
    scored = [(n / (before[w] / max(days, 1) + 1.0), n, w) for w, n in here.items() if n >= 2]
    return [w for _, _, w in sorted(scored, key=lambda s: (-s[0], -s[1], s[2]))[:TOP_TERMS]]


def _described(spike: Spike) -> str:
    if spike.kind == "tag":
        return f"tagged “{spike.name}”"
    if spike.kind == "rule":
        return f"routed by rule “{spike.name}”"
    return f"in {spike.name}"


def _usual(mean: float) -> str:
    return f"{mean:.1f}".removesuffix(".0")


def _span(minutes: int) -> str:
    return f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"


def alert_notice(alert: SpikeAlert, spike: Spike, others: Sequence[Spike], *, settings: SpikeConfig) -> Notice:
    """What the department's channels are told: what moved (count vs usual), the other scopes that moved
    with it, the top terms, the sources, three examples with links, and a button to see them all."""
    span = _span(settings.window_minutes)
    what = "" if spike.kind == "department" else f" {_described(spike)}"
    title = f"Spike in {spike.department}: {spike.count} new{what} in the last {span}"
    lines = [
        f"Usually {_usual(spike.mean)} in that {span} (the same time on each of the last {settings.baseline_days} days): "
        f"{spike.ratio:.0f}x",
    ]
    if others:
        lines.append("Also up: " + ", ".join(f"{o.count} {_described(o)} (usually {_usual(o.mean)})" for o in others[:4]))
    if alert.terms:
        lines.append("Top terms: " + ", ".join(alert.terms))
    sources = Counter(item.source for item in spike.items)
    lines.append("Sources: " + ", ".join(f"{name} {n}" for name, n in sources.most_common(5)))
    lines.append("Examples:")
    examples = spike.items[:EXAMPLES]
    for item in examples:
        said = cut(" ".join((item.title or first_line(item.text)).split()), SNIPPET)
        lines.append(f"#{item.id} · {cut(item.author, 40) or 'a customer'} via {item.source}: “{said}”")
    lines.append(f"Every one of them: spike {alert.id}")
    links = tuple((f"#{item.id}", item.url) for item in examples if item.url)
    see_all = Action(f"See all {spike.count}", "spike", (("alert", str(alert.id)),), "primary")
    return Notice(title=title, lines=tuple(lines), links=links, actions=(see_all,))


def _key(spike: Spike, *, now: datetime, settings: SpikeConfig) -> str:
    bucket = int(now.timestamp() // (settings.cooldown_minutes * 60))
    return f"spike:{spike.department}:{spike.scope}:{bucket}"[:255]


async def check_spikes(
    uow: UnitOfWork, *, now: datetime, settings: SpikeConfig, channels: dict[str, list[tuple[str, str]]]
) -> list[SpikeAlert]:
    """Record and enqueue one alert per department whose scopes spiked at `now` (outside their cooldown).

    `channels`: where each department's alerts go, as (platform, channel id). Returns the alerts made."""
    items = await uow.spikes.new_in(windows(now, settings))
    by_department: dict[str, list[Spike]] = {}
    for spike in find_spikes(items, now=now, settings=settings):
        by_department.setdefault(spike.department, []).append(spike)
    made: list[SpikeAlert] = []
    for department, spikes in sorted(by_department.items()):
        quiet_since = now - timedelta(minutes=settings.cooldown_minutes)
        cooling = {scope for alert in await uow.spikes.since(department, since=quiet_since) for scope in alert.scopes}
        news = [s for s in spikes if s.scope not in cooling]
        if not news:
            logger.debug("spike in %s still in its cooldown: %s", department, ", ".join(s.scope for s in spikes))
            continue
        alert = await _record(uow, news, now=now, settings=settings, items=items)
        if alert is not None:
            made.append(alert)
            await _post(uow, alert, news, channels=channels.get(department, []), settings=settings)
    return made


async def _record(
    uow: UnitOfWork, spikes: list[Spike], *, now: datetime, settings: SpikeConfig, items: Sequence[WindowItem]
) -> SpikeAlert | None:
    main = lead(spikes)
    start = now - timedelta(minutes=settings.window_minutes)
    usual = [i for i in items if i.ingested_at < start and i.department == main.department and main.scope in scopes_of(i)]
    alert = SpikeAlert(
        key=_key(main, now=now, settings=settings),
        department=main.department,
        scope=main.scope,
        scopes=[s.scope for s in spikes],
        window_start=start,
        window_end=now,
        count=main.count,
        baseline=main.mean,
        conversation_ids=list(dict.fromkeys(i.id for i in main.items))[:KEPT_IDS],  # a voice's is its conversation's
        terms=distinctive_terms(main.items, usual, days=settings.baseline_days),
        created_at=now,
    )
    if not await uow.spikes.record(alert):
        logger.info("spike %s already announced (another replica or an earlier check)", alert.key)
        return None
    logger.info("spike in %s: %s %d (usually %.1f)", main.department, main.scope, main.count, main.mean)
    return alert


async def _post(
    uow: UnitOfWork, alert: SpikeAlert, spikes: list[Spike], *, channels: list[tuple[str, str]], settings: SpikeConfig
) -> None:
    main = lead(spikes)
    notice = alert_notice(alert, main, [s for s in spikes if s is not main], settings=settings)
    assert alert.id is not None
    await uow.spikes.keep_notice(alert.id, notice_payload(replace(notice, actions=())))
    if not channels:
        logger.warning("spike in %s has nowhere to go: give the department channels", alert.department)
        return
    await uow.deliveries.enqueue_many([channel_notice(uow, p, channel, notice, key=alert.key) for p, channel in channels])


def period_lines(alerts: Sequence[SpikeAlert]) -> list[str]:
    """The digest's "spikes of the period": one line per alert."""
    if not alerts:
        return []
    lines = [f"Spikes: {len(alerts)}"]
    for alert in alerts:
        kind, _, name = alert.scope.partition(":")
        what = f"tagged {name}" if kind == "tag" else f"rule {name}" if kind == "rule" else "all new"
        terms = f" · {', '.join(alert.terms[:3])}" if alert.terms else ""
        minutes = int((alert.window_end - alert.window_start).total_seconds() // 60)
        lines.append(
            f"{alert.window_end:%a %H:%M} UTC · {alert.count} {what} in {_span(minutes)} "
            f"(usually {_usual(alert.baseline)}){terms} · spike {alert.id}"
        )
    return lines
