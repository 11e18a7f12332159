"""Wire everything in one place: settings -> config -> store -> bus -> outbox, and the platforms.

`PLATFORMS` is the one list of chat platforms: the core takes it as a parameter everywhere
(settings, config, the store's mentions, the service, the CLI) and never names a platform.
Each adapter package exports its `Platform`; importing one is cheap, its SDK is imported only
when the platform starts. Importing this module is cheap too (`unsilo --help` reads `PLATFORMS`):
the store, the bus and the outbox are imported when they are wired.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from adapters import slack, teams
from adapters import web as console
from bot import config as config_file
from bot.config import Config, find_config
from bot.health import Health
from bot.metrics import Metrics
from bot.platform import Platform, Wiring, chat_names
from bot.settings import Settings
from storage.clock import Clock, utcnow

if TYPE_CHECKING:
    from aiohttp import web
    from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
    from sqlmodel.ext.asyncio.session import AsyncSession

    from adapters.sources.feeds import FeedPoller
    from bot.bus import Bus
    from bot.ingest import Incoming, IngestReport
    from bot.outbox import DeliveryWorker, Job, Sender, Sent
    from bot.routing import Router
    from bot.voices import Matching
    from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

INGEST_BATCH = 500  # items per transaction when ingesting

# The chat platforms, each its adapter's `Platform`. Adding one is one line here.
PLATFORMS: tuple[Platform, ...] = (slack.PLATFORM, teams.PLATFORM, console.PLATFORM)


def load_config(path: str | Path | None, *, platforms: Sequence[Platform] | None = None) -> Config:
    """Read and validate a config file against the platforms (default: `PLATFORMS`)."""
    return config_file.load_config(path, platforms=PLATFORMS if platforms is None else platforms)


def settings_from_env(
    env: Mapping[str, str] | None = None,
    *,
    platforms: Sequence[Platform] | None = None,
    dotenv: bool = True,
    **overrides: object,
) -> Settings:
    """Settings from the environment (after `.env`), or from `env` alone when given, every platform's included."""
    return Settings.from_env(platforms=PLATFORMS if platforms is None else platforms, env=env, dotenv=dotenv, **overrides)


@dataclass
class Container:
    """The wired application: one per process (CLI command or `unsilo run`)."""

    settings: Settings
    config: Config
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    clock: Clock = utcnow
    platforms: tuple[Platform, ...] = ()  # the chat platforms this process knows (bootstrap's `PLATFORMS`)
    senders: dict[str, Sender] = field(default_factory=dict)
    write_lock: asyncio.Lock | None = None
    health: Health = field(default_factory=Health)
    metrics: Metrics = field(default_factory=Metrics)  # this container's own registry: `/metrics`
    recalling: set[asyncio.Task[None]] = field(default_factory=set)  # "seen before" of feeds' batches still running

    def uow(self) -> UnitOfWork:
        """A fresh unit of work on the shared store."""
        from storage.uow import UnitOfWork

        return UnitOfWork(self.sessions, clock=self.clock, lock=self.write_lock, chat_platforms=chat_names(self.platforms))

    @property
    def bus(self) -> Bus:
        """The command bus."""
        from bot.bus import Bus
        from bot.policy import Context

        return Bus(self.uow, ctx=Context.from_config(self.config), metrics=self.metrics)

    def mount(self, app: web.Application, platform: Platform) -> None:
        """Start a platform on the service's app with what it needs (not this container), and register its sender."""
        wiring = Wiring(
            bus=self.bus,
            outcomes=self.config.outcomes,
            departments=tuple(self.config.department_names()),
            health=self.health,
            metrics=self.metrics,
        )
        self.senders[platform.name] = platform.mount(app, self.settings.of(platform), wiring)

    def worker(self, **kwargs: object) -> DeliveryWorker:
        """A delivery worker with every registered sender."""
        kwargs.setdefault("metrics", self.metrics)
        from bot.outbox import DeliveryWorker

        return DeliveryWorker(self.uow, self.senders, **kwargs)  # type: ignore[arg-type]

    async def prepare(self) -> None:
        """Migrate the schema to head and load the config's departments, rules and feeds.

        Replicas starting together on one PostgreSQL take turns (an advisory lock), so
        the schema is migrated and the config loaded by one at a time.
        """
        from storage import migrate

        async with migrate.startup_lock(self.engine):
            await migrate.upgrade(self.engine)
            if self.engine.dialect.name == "postgresql":  # SQLite's index has one language (storage/search.py)
                from storage.search import set_language

                async with self.engine.begin() as conn:
                    await set_language(conn, self.settings.search_language)
            await sync_config(self.uow, self.config)

    @property
    def matching(self) -> Matching:
        """When an ingested item is another voice of an open conversation (`bot.voices`), from the config."""
        from bot.voices import Matching

        return Matching(self.config.duplicate_similarity, timedelta(hours=self.config.duplicate_window_hours))

    async def router(self) -> Router:
        """A router over the stored rules."""
        from bot.routing import Router

        async with self.uow() as uow:
            rules = await uow.rules.enabled()
        return Router(rules, default_department=self.config.default_department)

    async def ingest(
        self,
        items: Sequence[Incoming],
        *,
        source: str | None = None,
        source_update: Mapping[str, object] | None = None,
        batch: int = INGEST_BATCH,
        background: bool = False,
    ) -> IngestReport:
        """Store new items (routed, with events and deliveries), `batch` items per transaction.

        Batches keep a huge feed from holding the store (and the event loop) for seconds:
        chat requests are served between them. `source` names the items' source even when
        there are none (a feed without entries); `source_update` sets columns of its row in
        the LAST batch's transaction, so a poll's validators (etag, last_modified) and next
        due time are saved only once all its items are: a crash midway re-reads the feed,
        and the items already stored are skipped.

        "Seen before" and who to ask (`bot.ingest.recall`) are found once the batches have committed, in
        units of work of their own (never under the ingest's write lock); with `background`, in a task
        (`settled` waits for it), so that a big feed's poll is not held by them: a card sent before they are
        known is updated with them.
        """
        from bot.ingest import IngestReport, store_items
        from bot.outbox import commit_with_deliveries

        name = source or (items[0].source if items else None)
        router = await self.router()
        report = IngestReport(source=name or "")
        chunks = [items[i : i + batch] for i in range(0, len(items), batch)] or [items]
        for index, chunk in enumerate(chunks):
            last = index == len(chunks) - 1
            async with self.uow() as uow:
                part = await store_items(uow, chunk, router=router, matching=self.matching, recalled=False)
                report.new_ids += part.new_ids
                report.duplicates += part.duplicates
                report.voices += part.voices
                report.joined += part.joined
                report.warning = report.warning or part.warning
                if last and name:
                    row = await uow.sources.ensure(name, kind="feed")
                    report.source = row.name
                    row.items_seen += report.seen
                    row.last_polled_at = uow.now()
                    for column, value in (source_update or {}).items():
                        setattr(row, column, value)
                await commit_with_deliveries(uow)
            if not last:
                await asyncio.sleep(0)  # let waiting requests in
        self.metrics.ingested(report.source or name or "", new=len(report.new_ids), duplicate=report.duplicates)
        if report.new_ids and background:
            task = asyncio.create_task(self._recall(list(report.new_ids), batch))
            self.recalling.add(task)
            task.add_done_callback(self.recalling.discard)
        elif report.new_ids:
            await self._recall(report.new_ids, batch)
        return report

    async def _recall(self, ids: Sequence[int], batch: int) -> None:
        """ "Seen before" and who to ask of conversations just stored, `batch` at a time; a failure leaves those
        cards without them (the conversations are stored: a re-poll would not come back to them), logged."""
        from bot.ingest import recall_after
        from bot.outbox import commit_with_deliveries

        for start in range(0, len(ids), batch):
            try:
                async with self.uow() as uow:
                    await recall_after(uow, ids[start : start + batch])
                    await commit_with_deliveries(uow)
            except Exception:
                logger.warning(
                    "seen before not recorded for %d new conversations", len(ids[start : start + batch]), exc_info=True
                )
            await asyncio.sleep(0)  # let waiting requests in

    async def settled(self) -> None:
        """Wait for the "seen before" of the feeds ingested in the background."""
        while self.recalling:
            await asyncio.gather(*self.recalling, return_exceptions=True)

    async def close(self) -> None:
        """Release the senders' HTTP sessions and the database connections."""
        await self.settled()
        for sender in self.senders.values():
            close = getattr(sender, "close", None)
            if close is not None:
                await close()
        await self.engine.dispose()


def build(
    settings: Settings, *, config: Config | None = None, clock: Clock = utcnow, platforms: Sequence[Platform] | None = None
) -> Container:
    """Wire a container from settings (the config file is read unless given) for the platforms (default: `PLATFORMS`)."""
    from bot.outbox import LoggingSender
    from storage.db import create_engine, is_sqlite, session_factory

    platforms = tuple(PLATFORMS if platforms is None else platforms)
    if config is None:
        config = load_config(find_config(settings.config_path), platforms=platforms)
    for warning in config.warnings:  # `unsilo config check` prints them; the service logs them
        logger.info("config: %s", warning.format(config.path))
    engine = create_engine(settings.database_url, pool_size=settings.db_pool_size, pool_timeout=settings.db_pool_timeout)
    container = Container(
        settings=settings,
        config=config,
        engine=engine,
        sessions=session_factory(engine),
        clock=clock,
        platforms=platforms,
        write_lock=asyncio.Lock() if is_sqlite(engine) else None,
    )
    container.senders["log"] = LoggingSender()
    container.senders["outbound"] = _FirstUse(partial(_outbound, container.uow, settings.allow_private_urls))  # replies
    return container


def _outbound(uow: Callable[[], UnitOfWork], allowed: Sequence[str]) -> Sender:
    from adapters.outbound.sender import OutboundSender  # with aiohttp: imported at the first reply sent

    return OutboundSender(uow, allowed=allowed)


class _FirstUse:
    """A sender made at its first delivery, so a command that sends nothing (`unsilo queue`)
    starts without importing it."""

    def __init__(self, make: Callable[[], Sender]) -> None:
        self._make = make
        self.sender: Sender | None = None

    async def send(self, job: Job) -> Sent:
        if self.sender is None:
            self.sender = self._make()
        return await self.sender.send(job)

    async def close(self) -> None:
        close = getattr(self.sender, "close", None)
        if close is not None:
            await close()


def mount_sources(app: web.Application, container: Container) -> None:
    """The sources that take HTTP requests (each source has its own secret: no credentials needed)."""
    from adapters.sources import webhooks

    webhooks.mount(app, container)


def feed_poller(container: Container) -> FeedPoller:
    """The feed poller of this container (`unsilo run`'s scheduler, `unsilo sources poll`)."""
    from adapters.sources.feeds import FeedPoller

    return FeedPoller(container)


async def sync_config(uow_factory: Callable[[], UnitOfWork], config: Config) -> None:
    """Make the store's departments, config channels, rules and feed sources match the config.

    Refuses (`ConfigError`, nothing changed) a feed named like a webhook in the store; retires the
    departments the config no longer lists (`bot.configsync`)."""
    from bot import configsync
    from storage.models import Rule

    async with uow_factory() as uow:
        clashes = await configsync.feed_clashes(uow, config)
        if clashes:
            raise config_file.ConfigError(config.path, clashes)
        for name in config.department_names():
            declared = next((d for d in config.departments if d.name == name), None)
            department = await uow.departments.upsert(
                name, sla_minutes=declared.sla_minutes if declared else 240, managers=list(declared.managers) if declared else []
            )
            assert department.id is not None
            for platform, channel_id in declared.channels if declared else ():
                await uow.departments.link(department.id, platform, channel_id, linked_by="config")
        await configsync.retire_departments(uow, config)
        await configsync.sync_budgets(uow, config)
        await uow.rules.replace_from_config(
            [
                Rule(
                    name=r.name,
                    position=i,
                    departments=list(r.departments),
                    any_words=list(r.any_words),
                    all_words=list(r.all_words),
                    regex=r.regex,
                    source=r.source,
                    author=r.author,
                    priority=r.priority,
                    tags=list(r.tags),
                    sensitive=r.sensitive,
                )
                for i, r in enumerate(config.rules)
            ]
        )
        for entry in config.people:  # one person's accounts, linked by the config
            await uow.people.configure(
                key=entry.key,
                name=entry.name,
                email=entry.email or None,
                accounts=entry.identities(),
                department=entry.department or None,
            )
        for feed in config.feeds:
            source = await uow.sources.ensure(feed.name, kind="feed", url=feed.url)
            source.removed_at = None  # a feed removed from the CLI, listed in the config again
            if source.url != feed.url:  # a corrected URL is polled now, not after the old one's back-off
                source.etag = source.last_modified = source.next_poll_at = source.last_error = None
                source.failures = 0
            source.url, source.every_seconds, source.tags = feed.url, feed.every_seconds, list(feed.tags)
        await uow.commit()
    logger.info(
        "config %s: %d departments, %d rules, %d feeds, %d people",
        config.path,
        len(config.department_names()),
        len(config.rules),
        len(config.feeds),
        len(config.people),
    )


def sample_path(name: str) -> Path:
    """A file bundled in `bot/samples/`."""
    return Path(__file__).with_name("samples") / name
