"""What `/metrics` tells Prometheus: counters and histograms the code moves as it works, and gauges
read from the store when scraped.

One `Metrics` per container, on a registry of its own (not prometheus_client's global one): two
services in one process (the tests, `unsilo demo`) never share or collide on a series. The core and
the adapters call this small facade only; nothing else imports prometheus_client. A count costs
about a microsecond and never touches the store; the store's figures (outbox backlog, the oldest
due delivery, open conversations by department and status) are read once per scrape, in one
bounded round trip that is never awaited past `STORE_TIMEOUT`.

Labels are bounded: platforms, sources, feeds, departments and jobs come from the config; verbs from
`bot/verbs.py`; outcomes from the fixed lists below.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Metric
    from prometheus_client.registry import Collector
    from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # prometheus_client's CONTENT_TYPE_LATEST (text 0.0.4)
STORE_TIMEOUT = 1.5  # seconds a scrape waits for the store's figures before it answers without them

# Seconds: Slack wants an answer within 3 s, Teams an invoke's within a few; a delivery may wait out a rate limit.
ANSWER_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)

# The outcomes each counter is labelled with (documented in the README's metrics table).
INGESTED = ("new", "duplicate", "refused")
COMMANDS = ("ok", "refused", "duplicate", "error")
DELIVERIES = ("sent", "retried", "failed")


@dataclass
class StoreFigures:
    """What the store says at scrape time."""

    backlog: dict[str, int] = field(default_factory=dict)  # pending deliveries by platform
    oldest_due_seconds: dict[str, float] = field(default_factory=dict)  # by platform (0: nothing due)
    open: dict[tuple[str, str], int] = field(default_factory=dict)  # (department, status) -> conversations


async def read_store(engine: AsyncEngine, now: datetime) -> StoreFigures:
    """The outbox backlog and oldest due delivery by platform, and the active conversations by department
    and status: two grouped queries (as many rows as platforms, and departments times 3), one connection."""
    from sqlalchemy import case, func, select  # here, not at the top: `unsilo --help` imports the bootstrap
    from sqlmodel import col

    from bot.domain import ACTIVE
    from storage.models import Conversation, ConversationDepartment, Delivery, Department

    figures = StoreFigures()
    pending_since = col(Delivery.next_attempt_at)
    due = case((pending_since <= now, pending_since), else_=None)
    async with engine.connect() as conn:
        outbox = await conn.execute(
            select(col(Delivery.platform), func.count(), func.min(due))
            .where(col(Delivery.status) == "pending")
            .group_by(col(Delivery.platform))
        )
        for platform, count, oldest in outbox:
            figures.backlog[platform] = int(count)
            oldest = _aware(oldest)
            figures.oldest_due_seconds[platform] = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
        conversations = await conn.execute(
            select(col(Department.name), col(Conversation.status), func.count())
            .join(ConversationDepartment, col(ConversationDepartment.department_id) == col(Department.id))
            .join(Conversation, col(Conversation.id) == col(ConversationDepartment.conversation_id))
            .where(col(Conversation.status).in_([str(s) for s in ACTIVE]))
            .group_by(col(Department.name), col(Conversation.status))
        )
        for department, status, count in conversations:
            figures.open[(department, str(status))] = int(count)
    return figures


def _aware(value: Any) -> datetime | None:
    """A datetime from a grouped `min()` (SQLite hands back text), in UTC."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert isinstance(moment, datetime)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


class _StoreCollector:
    """The gauges read from the store: filled by `Metrics.scrape` just before the registry is collected."""

    def __init__(self) -> None:
        self.figures: StoreFigures | None = None
        self.error: str | None = None

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration: these names are this module's alone

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("unsilo_store_up", "1 when the store answered this scrape within its bound, else 0")
        up.add_metric([], 0.0 if self.figures is None else 1.0)
        yield up
        if self.figures is None:
            return
        backlog = GaugeMetricFamily("unsilo_outbox_backlog", "Deliveries waiting to be sent, by platform", labels=["platform"])
        oldest = GaugeMetricFamily(
            "unsilo_outbox_oldest_due_seconds",
            "Seconds the oldest delivery that is due now has been waiting, by platform (0: none due)",
            labels=["platform"],
        )
        for platform, count in sorted(self.figures.backlog.items()):
            backlog.add_metric([platform], count)
            oldest.add_metric([platform], self.figures.oldest_due_seconds.get(platform, 0.0))
        active = GaugeMetricFamily(
            "unsilo_conversations_open",
            "Conversations not resolved or dismissed, by department and status",
            labels=["department", "status"],
        )
        for (department, status), count in sorted(self.figures.open.items()):
            active.add_metric([department, status], count)
        yield from (backlog, oldest, active)


class Metrics:
    """The service's counters and histograms, on a registry of its own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram  # ~60 ms: paid by the service, not `--help`

        self.registry: CollectorRegistry = CollectorRegistry()
        r = self.registry
        self._ingested = Counter(
            "unsilo_items_ingested", "Items read from a source, by source and outcome", ["source", "outcome"], registry=r
        )
        self._commands = Counter("unsilo_commands", "Commands carried out, by verb and outcome", ["verb", "outcome"], registry=r)
        self._deliveries = Counter(
            "unsilo_deliveries", "Outbox sends, by platform and outcome", ["platform", "outcome"], registry=r
        )
        self._rate_limited = Counter(
            "unsilo_rate_limited", "HTTP 429 answers a platform gave a send, by platform", ["platform"], registry=r
        )
        self._feed_polls = Counter("unsilo_feed_polls", "Feed polls, by feed and outcome", ["feed", "outcome"], registry=r)
        self._job_runs = Counter(
            "unsilo_scheduler_runs", "Scheduler job runs, by job and outcome", ["job", "outcome"], registry=r
        )
        self._answer = Histogram(
            "unsilo_answer_seconds",
            "Seconds to answer a request a platform waits on (an ack, an invoke answered in the response), by platform",
            ["platform"],
            buckets=ANSWER_BUCKETS,
            registry=r,
        )
        self._delivery = Histogram(
            "unsilo_delivery_seconds",
            "Seconds from a delivery's creation to its successful send, by platform",
            ["platform"],
            buckets=DELIVERY_BUCKETS,
            registry=r,
        )
        self._children: dict[tuple[object, ...], Any] = {}  # labelled series, looked up once (labels() takes a lock)
        self._store = _StoreCollector()
        collector: Collector = self._store
        r.register(collector)
        self._scrape: asyncio.Task[StoreFigures] | None = None

    def _series(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, cached: a count on the ack path costs one dict lookup and the increment."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    # What the code reports -------------------------------------------------------------

    def ingested(self, source: str, *, new: int = 0, duplicate: int = 0, refused: int = 0) -> None:
        """Items of one source stored (`new`), already known (`duplicate`) or refused."""
        for outcome, count in (("new", new), ("duplicate", duplicate), ("refused", refused)):
            if count:
                self._series(self._ingested, source, outcome).inc(count)

    def command(self, verb: str, outcome: str) -> None:
        """One command carried out (`ok`), refused, ignored as a `duplicate` delivery, or failed (`error`)."""
        self._series(self._commands, verb, outcome).inc()

    def delivery(self, platform: str, outcome: str, *, seconds: float | None = None, rate_limited: bool = False) -> None:
        """One outbox send: `sent` (with its latency), `retried` (a 429 is also counted as such) or `failed`."""
        self._series(self._deliveries, platform, outcome).inc()
        if seconds is not None:
            self._series(self._delivery, platform).observe(max(0.0, seconds))
        if rate_limited:
            self._series(self._rate_limited, platform).inc()

    def answered(self, platform: str, seconds: float) -> None:
        """A request the platform waits on was answered after `seconds`."""
        self._series(self._answer, platform).observe(seconds)

    def feed_polled(self, feed: str, outcome: str) -> None:
        """One poll of a feed, by its outcome (`feeds.PollStatus`)."""
        self._series(self._feed_polls, feed, outcome).inc()

    def job_ran(self, job: str, outcome: str) -> None:
        """One run of a scheduler job: `ok` or `failed`."""
        self._series(self._job_runs, job, outcome).inc()

    # Scrape --------------------------------------------------------------------------

    async def scrape(self, engine: AsyncEngine, clock: Callable[[], datetime]) -> bytes:
        """The text exposition of everything, the store's figures read now (or left out, with
        `unsilo_store_up 0`, when the store does not answer within `STORE_TIMEOUT`).

        The query runs as a task that is never awaited past the bound (cancelling a statement on a
        stalled server would wait on that server); a scrape meanwhile reuses the running task.
        """
        from prometheus_client import generate_latest

        if self._scrape is None or self._scrape.done():
            self._scrape = asyncio.create_task(read_store(engine, clock()))
        done, _ = await asyncio.wait({self._scrape}, timeout=STORE_TIMEOUT)
        self._store.figures = None
        if not done:
            logger.warning("metrics: the store did not answer within %g s", STORE_TIMEOUT)
        elif (exc := self._scrape.exception()) is not None:
            logger.warning("metrics: the store failed: %s: %s", type(exc).__name__, str(exc)[:200])
        else:
            self._store.figures = self._scrape.result()
        return generate_latest(self.registry)
