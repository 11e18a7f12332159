"""Scheduled work inside `unsilo run`: feed polls, SLA escalations and reminders, manager digests.

APScheduler 3 (`AsyncIOScheduler`) fires the jobs in every replica; the store decides who
does the work, so with N replicas on one PostgreSQL each thing happens once:

- a feed poll is claimed by a conditional UPDATE of its source's `next_poll_at`;
- an escalation or reminder by a conditional UPDATE of `escalated_at` / `reminded_at`,
  in the same transaction as the message it sends (so never twice, across restarts too);
- a digest by a `JobRun` row per (job, due time): the first replica to insert it runs it;
  if that replica dies mid-run, the sweep re-runs it once its lease has expired.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.bootstrap import Container, feed_poller
from bot.config import DepartmentConfig, SpikeConfig, digest_trigger
from bot.digest import build_digest, digest_notice
from bot.outbox import channel_notice, commit_with_deliveries, enqueue_thread_notice
from bot.spikes import check_spikes
from bot.views import Notice
from handlers.erase import erase_conversations, retention_why
from storage import erasure
from storage.models import Conversation
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
MISFIRE_GRACE = 300  # seconds a replica may be late for a run and still do it


def holder_name() -> str:
    """Who holds a lease: host and process, for the log and the `jobrun` table."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Scheduler:
    """Runs the periodic jobs of one replica; the store keeps them exactly-once across replicas."""

    def __init__(
        self, container: Container, *, holder: str | None = None, poll_every: float = 15.0, sweep_every: float = 60.0
    ) -> None:
        self.container = container
        self.holder = holder or holder_name()
        self.poll_every = poll_every
        self.sweep_every = sweep_every
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._poller: Any = None

    def _ran(self, job: str, outcome: str) -> None:
        """Count a job's run on `/metrics` (digests by department: `digest:<name>`)."""
        self.container.metrics.job_ran(job, outcome)

    def start(self) -> None:
        """Add every job and start firing them (needs the running event loop)."""
        defaults = {"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE}
        self.scheduler.add_job(
            self.poll_feeds, IntervalTrigger(seconds=self.poll_every), id="feeds", next_run_time=datetime.now(UTC), **defaults
        )
        self.scheduler.add_job(
            self.sweep, IntervalTrigger(seconds=self.sweep_every), id="sweep", next_run_time=datetime.now(UTC), **defaults
        )
        config = self.container.config
        # Daily whatever the config says: a source's own retention is set at runtime (`unsilo sources set`);
        # with none anywhere, a run reads the sources and erases nothing.
        self.scheduler.add_job(self.retention_job, RETENTION_TRIGGER, id=RETENTION_JOB, **defaults)
        if config.retain_days is not None or any(feed.retain_days is not None for feed in config.feeds):
            logger.info("retention scheduled daily: %s", RETENTION_TRIGGER)
        spikes = config.spikes
        if spikes.enabled:
            self.scheduler.add_job(self.spike_job, IntervalTrigger(minutes=spikes.every_minutes), id=SPIKE_JOB, **defaults)
            logger.info("spike check every %d min over %d-min windows", spikes.every_minutes, spikes.window_minutes)
        for department in self.container.config.departments:
            if department.digest:
                trigger = digest_trigger(department.digest, department.timezone)
                self.scheduler.add_job(
                    self.digest_job, trigger, args=[department.name], id=f"digest:{department.name}", **defaults
                )
                logger.info("digest for %s scheduled: %s (%s)", department.name, department.digest, department.timezone)
        self.scheduler.start()

    async def shutdown(self) -> None:
        """Stop firing (a running job is left to finish or be taken over after its lease)."""
        self.scheduler.shutdown(wait=False)

    # Jobs -----------------------------------------------------------------------------

    async def poll_feeds(self) -> None:
        """Poll every feed that is due (each one claimed by exactly one replica)."""
        if self._poller is None:
            self._poller = feed_poller(self.container)
        try:
            await self._poller.poll_due()
        except Exception:
            logger.exception("feed polling round failed; the next round retries")
            self._ran("feeds", "failed")
        else:
            self._ran("feeds", "ok")

    async def sweep(self) -> None:
        """SLA escalations and reminders, then digests whose holder died before finishing."""
        try:
            await sweep_sla(self.container.uow)
            await self._resume_abandoned()
            await purge_inbound(self.container.uow)
        except Exception:
            logger.exception("SLA sweep failed; the next round retries")
            self._ran("sweep", "failed")
        else:
            self._ran("sweep", "ok")

    async def digest_job(self, department: str) -> None:
        """The cron job of one department's digest: post it once for this due time."""
        now = self.container.clock()
        trigger = self.scheduler.get_job(f"digest:{department}").trigger
        try:
            ran = await self.run_digest(department, due_at=due_time(trigger, now), trigger=trigger)
        except Exception:
            self._ran(f"digest:{department}", "failed")
            raise
        self._ran(f"digest:{department}", "ok" if ran else "skipped")

    async def run_digest(self, department: str, *, due_at: datetime, trigger: CronTrigger | None = None) -> bool:
        """Post `department`'s digest for `due_at` unless another replica has (or is doing) it."""
        since = previous_time(trigger, due_at) if trigger is not None else due_at - timedelta(days=7)
        return await run_leased(
            self.container.uow,
            f"digest:{department}",
            due_at=due_at,
            holder=self.holder,
            work=lambda uow: post_digest(uow, self._department(department), since=since, until=due_at),
        )

    async def retention_job(self) -> None:
        """The daily job: erase the text of closed conversations past their source's retention, once."""
        now = self.container.clock()
        try:
            await self.run_retention(due_at=due_time(RETENTION_TRIGGER, now))
        except Exception:
            logger.exception("retention run failed; tomorrow's run catches up")

    async def run_retention(self, *, due_at: datetime) -> bool:
        """Erase what is past its retention as of `due_at`, unless another replica has (or is doing) it."""
        return await run_leased(
            self.container.uow,
            RETENTION_JOB,
            due_at=due_at,
            holder=self.holder,
            work=lambda uow: erase_expired(uow, retention=self.container.config.retention_for, now=due_at),
        )

    async def spike_job(self) -> None:
        """The periodic spike check: once per due time across replicas (`bot.spikes`)."""
        every = timedelta(minutes=self.container.config.spikes.every_minutes)
        now = self.container.clock()
        due_at = datetime.fromtimestamp(now.timestamp() // every.total_seconds() * every.total_seconds(), UTC)
        try:
            ran = await self.run_spikes(due_at=due_at)
        except Exception:
            logger.exception("spike check failed; the next round checks again")
            self._ran(SPIKE_JOB, "failed")
        else:
            self._ran(SPIKE_JOB, "ok" if ran else "skipped")

    async def run_spikes(self, *, due_at: datetime) -> bool:
        """Check for spikes as of `due_at` unless another replica has (or is doing) it."""
        config = self.container.config
        return await run_leased(
            self.container.uow,
            SPIKE_JOB,
            due_at=due_at,
            holder=self.holder,
            work=lambda uow: post_spikes(uow, [d.name for d in config.departments], settings=config.spikes, now=due_at),
        )

    def _department(self, name: str) -> DepartmentConfig:
        return next(d for d in self.container.config.departments if d.name == name)

    async def _resume_abandoned(self) -> None:
        async with self.container.uow() as uow:
            now = uow.now()
            abandoned = await uow.jobs.abandoned(now=now, since=now - timedelta(days=2))
        for run in abandoned:
            department = run.job.removeprefix("digest:")
            if run.job.startswith("digest:") and any(d.name == department for d in self.container.config.departments):
                logger.warning("digest %s due %s was left unfinished by %s; running it here", department, run.due_at, run.holder)
                job = self.scheduler.get_job(run.job)
                await self.run_digest(department, due_at=run.due_at, trigger=job.trigger if job else None)


SPIKE_JOB = "spikes"


async def post_spikes(uow: UnitOfWork, departments: Sequence[str], *, settings: SpikeConfig, now: datetime) -> str:
    """Alert the departments' channels of the spikes as of `now` (one alert per department, outside its cooldown)."""
    channels = {name: await _department_channels(uow, name) for name in departments}
    alerts = await check_spikes(uow, now=now, settings=settings, channels=channels)
    return f"{len(alerts)} spike alert(s)" + (": " + ", ".join(f"{a.department} {a.scope}" for a in alerts) if alerts else "")


RETENTION_JOB = "retention"
RETENTION_TRIGGER = CronTrigger(hour=3, minute=17, timezone=UTC)  # once a day, in the quiet hours
RETENTION_BATCH = 200  # conversations erased per transaction
RETENTION_MAX = 20_000  # per run: the rest waits for the next day's run


async def erase_expired(
    uow: UnitOfWork, *, retention: Callable[[str, int | None], int | None], now: datetime, batch: int = RETENTION_BATCH
) -> str:
    """Erase the customer data of resolved or dismissed conversations closed longer ago than their source's
    retention (`retention(name, the source's own retain_days)`: a config feed's, the source's, else
    `[unsilo] retain_days`), in committed batches; what was done."""
    erased = 0
    own = {source.name: source.retain_days for source in await uow.sources.all()}
    for source in await erasure.sources_with_text(uow.session):
        days = retention(source, own.get(source))
        if days is None:
            continue
        while erased < RETENTION_MAX:
            found = await erasure.expired(uow.session, sources=[source], before=now - timedelta(days=days), limit=batch)
            if not found:
                break
            why = retention_why(days)
            await erase_conversations(uow, found, who=None, reason=why, why=why)
            erased += len(found)
            await commit_with_deliveries(uow)  # one batch at a time: bounded transactions
            uow.changed.clear()
    return f"erased {erased} conversation(s)"


def due_time(trigger: CronTrigger, now: datetime) -> datetime:
    """The fire time this run is for: the latest one at or before `now` (a run may start late)."""
    due: datetime | None = trigger.get_next_fire_time(None, now - timedelta(seconds=MISFIRE_GRACE))
    if due is None or due > now:
        return now.replace(second=0, microsecond=0)
    while True:
        following: datetime | None = trigger.get_next_fire_time(due, due + timedelta(seconds=1))
        if following is None or following > now:
            return due.astimezone(UTC)
        due = following


def previous_time(trigger: CronTrigger, due_at: datetime) -> datetime:
    """The fire time before `due_at` (the start of the digest's period); a week back if none within 35 days.

    Looks back over growing windows, so a schedule every few seconds and a monthly one
    both take a handful of steps.
    """
    for window in (timedelta(minutes=2), timedelta(hours=2), timedelta(days=2), timedelta(days=35)):
        fire: datetime | None = trigger.get_next_fire_time(None, due_at - window)
        if fire is None or fire >= due_at:
            continue
        for _ in range(10_000):
            following: datetime | None = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
            if following is None or following >= due_at:
                return fire.astimezone(UTC)
            fire = following
    return (due_at - timedelta(days=7)).astimezone(UTC)


async def run_leased(
    uow_factory: Callable[[], UnitOfWork],
    job: str,
    *,
    due_at: datetime,
    holder: str,
    work: Callable[[UnitOfWork], Awaitable[str]],
    lease: timedelta = LEASE,
) -> bool:
    """Run `work` for (job, due_at) if this holder gets the lease; False if another replica has it."""
    async with uow_factory() as uow:
        taken = await uow.jobs.take(job, due_at=due_at, holder=holder, now=uow.now(), lease=lease)
        await uow.commit()
    if not taken:
        logger.debug("%s due %s: another replica has it", job, due_at)
        return False
    async with uow_factory() as uow:
        outcome = await work(uow)
        await uow.jobs.finish(job, due_at=due_at, holder=holder, at=uow.now(), outcome=outcome)
        await commit_with_deliveries(uow)
    logger.info("%s due %s done by %s: %s", job, due_at, holder, outcome)
    return True


async def post_digest(uow: UnitOfWork, department: DepartmentConfig, *, since: datetime, until: datetime) -> str:
    """Enqueue the digest into the department's manager channels; the delivery key makes it once per due time."""
    notice = digest_notice(await build_digest(uow, department=department.name, since=since, until=until))
    notice = replace(notice, title=f"{notice.title} · figures up to {until.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC")
    channels = list(department.digest_channels) or await _department_channels(uow, department.name)
    if not channels:
        logger.warning("digest for %s has nowhere to go: give the department channels or digest_channels", department.name)
        return "no channel"
    rows = [
        channel_notice(uow, platform, channel_id, notice, key=f"digest:{department.name}:{until.isoformat()}")
        for platform, channel_id in channels
    ]
    await uow.deliveries.enqueue_many(rows)
    return f"posted to {len(rows)} channel(s)"


async def _department_channels(uow: UnitOfWork, department: str) -> list[tuple[str, str]]:
    found = await uow.departments.by_name(department)
    if found is None:
        return []
    return [(d.platform, d.channel_id) for d in await uow.departments.destinations([found.id])]  # type: ignore[list-item]


# SLA --------------------------------------------------------------------------------


INBOUND_KEPT = timedelta(days=7)  # Slack retries an event for about an hour; a person's command for minutes


async def purge_inbound(uow_factory: Callable[[], UnitOfWork]) -> int:
    """Forget the keys of platform events and people's actions older than `INBOUND_KEPT`; how many went."""
    async with uow_factory() as uow:
        gone = await uow.inbound.purge(before=uow.now() - INBOUND_KEPT)
        await uow.commit()
    if gone:
        logger.info("forgot %d processed event keys older than %s", gone, INBOUND_KEPT)
    return gone


async def sweep_sla(uow_factory: Callable[[], UnitOfWork]) -> tuple[int, int]:
    """Escalate unclaimed conversations past their SLA and remind owners who haven't replied; once each.

    Returns (escalations, reminders) made by this call.
    """
    escalated = reminded = 0
    async with uow_factory() as uow:
        now = uow.now()
        for conversation, sla in await uow.conversations.sla_candidates(now=now):
            deadline = timedelta(minutes=sla)
            if conversation.status == "open" and conversation.ingested_at + deadline <= now:
                if await uow.conversations.mark_once(conversation.id, "escalated_at", at=now):  # type: ignore[arg-type]
                    await _escalate(uow, conversation, sla)
                    escalated += 1
            elif (
                conversation.status == "claimed"
                and conversation.claimed_at is not None
                and conversation.claimed_at + deadline <= now
            ):
                if await uow.conversations.mark_once(conversation.id, "reminded_at", at=now):  # type: ignore[arg-type]
                    await _remind(uow, conversation, sla)
                    reminded += 1
        await commit_with_deliveries(uow)
    if escalated or reminded:
        logger.info("SLA sweep: %d escalated, %d reminded", escalated, reminded)
    return escalated, reminded


def _title(conversation: Conversation) -> str:
    text = " ".join((conversation.title or conversation.text).split())
    return text if len(text) <= 80 else text[:79] + "…"


async def _escalate(uow: UnitOfWork, conversation: Conversation, sla: int) -> None:
    """A post under the card in each of its channels, mentioning the departments' managers."""
    assert conversation.id is not None
    departments = await uow.conversations.departments_of(conversation.id)
    managers = sorted({m for d in departments for m in d.managers})
    mentions = await uow.people.mentionable(managers)
    notice = Notice(
        title=f"#{conversation.id} is still unclaimed after its {sla}-minute SLA",
        lines=(
            f"“{_title(conversation)}” from {conversation.author_name or 'a customer'} via {conversation.source}",
            f"Managers of {', '.join(d.name for d in departments)}: please claim it or hand it to someone.",
        ),
        mentions=mentions,
        links=((f"#{conversation.id} original", conversation.url),) if conversation.url else (),
    )
    await enqueue_thread_notice(uow, conversation.id, notice, key=f"escalation:{conversation.id}")
    await uow.events.add_many(
        [
            {
                "conversation_id": conversation.id,
                "kind": "escalated",
                "actor_id": None,
                "actor_name": "",
                "at": uow.now(),
                "data": {"sla_minutes": sla, "managers": managers},
            }
        ]
    )


async def _remind(uow: UnitOfWork, conversation: Conversation, sla: int) -> None:
    """A direct message to the owner (on a chat platform they use), else a post under the card."""
    assert conversation.id is not None and conversation.owner_id is not None
    notice = Notice(
        title=f"Reminder: #{conversation.id} is yours and still has no reply after its {sla}-minute SLA",
        lines=(
            f"“{_title(conversation)}” from {conversation.author_name or 'a customer'} via {conversation.source}",
            "Reply to the customer, or release it so someone else can.",
        ),
        links=((f"#{conversation.id} original", conversation.url),) if conversation.url else (),
    )
    identities = [i for i in await uow.people.identities(conversation.owner_id) if i.platform in uow.chat_platforms]
    if identities:
        chosen = identities[0]
        await uow.deliveries.enqueue_many(
            [
                channel_notice(
                    uow,
                    chosen.platform,
                    chosen.user_id,
                    notice,
                    key=f"reminder:{conversation.id}",
                    conversation_id=conversation.id,
                    dm=True,
                )
            ]
        )
    else:
        await enqueue_thread_notice(uow, conversation.id, notice, key=f"reminder:{conversation.id}")
    await uow.events.add_many(
        [
            {
                "conversation_id": conversation.id,
                "kind": "reminded",
                "actor_id": None,
                "actor_name": "",
                "at": uow.now(),
                "data": {"sla_minutes": sla},
            }
        ]
    )
