"""The unit of work: one transaction, its repositories, and the conversations it changed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.answers import AnswerRepo
from storage.clock import Clock, utcnow
from storage.db import WROTE
from storage.reports import ReportRepo
from storage.repositories import (
    ConversationRepo,
    DeliveryRepo,
    DepartmentRepo,
    EventRepo,
    InboundEventRepo,
    JobRunRepo,
    NoteRepo,
    PersonRepo,
    PostingRepo,
    ReplyRepo,
    RuleRepo,
    SourceRepo,
)
from storage.spikes import SpikeRepo
from storage.voices import VoiceRepo

logger = logging.getLogger(__name__)

LOCK_TIMEOUT = 60.0


class UnitOfWork:
    """`async with uow:` rolls back unless `await uow.commit()` was called.

    Units of work must not nest (one at a time per task): with SQLite they share a lock.

    `changed` collects the ids of conversations whose card must be refreshed; the
    bus turns them into outbox deliveries inside the same transaction.
    """

    session: AsyncSession
    conversations: ConversationRepo
    people: PersonRepo
    departments: DepartmentRepo
    rules: RuleRepo
    sources: SourceRepo
    events: EventRepo
    notes: NoteRepo
    replies: ReplyRepo
    postings: PostingRepo
    deliveries: DeliveryRepo
    inbound: InboundEventRepo
    jobs: JobRunRepo
    reports: ReportRepo
    voices: VoiceRepo

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Clock = utcnow,
        lock: asyncio.Lock | None = None,
        chat_platforms: Sequence[str] = (),
    ) -> None:
        self._sessions = sessions
        self.chat_platforms = tuple(chat_platforms)  # whose accounts people are mentioned under
        self.clock = clock
        self.changed: set[int] = set()
        self._lock = lock

    async def __aenter__(self) -> UnitOfWork:
        if self._lock is not None:
            # SQLite has one writer at a time; queueing here is fair and instant, where its
            # busy handler would poll with growing sleeps (seconds of tail latency under load).
            try:
                async with asyncio.timeout(LOCK_TIMEOUT):  # no task per wait, unlike wait_for
                    await self._lock.acquire()
            except TimeoutError:
                raise RuntimeError(
                    f"no SQLite unit of work could start within {LOCK_TIMEOUT:g}s: is a unit of work opened inside another?"
                ) from None
        self.session = self._sessions()
        session = self.session
        self.conversations = ConversationRepo(session)
        self.people = PersonRepo(session, chat_platforms=self.chat_platforms)
        self.departments = DepartmentRepo(session)
        self.rules = RuleRepo(session)
        self.sources = SourceRepo(session)
        self.events = EventRepo(session)
        self.notes = NoteRepo(session)
        self.replies = ReplyRepo(session)
        self.answers = AnswerRepo(session)
        self.postings = PostingRepo(session)
        self.deliveries = DeliveryRepo(session)
        self.inbound = InboundEventRepo(session)
        self.jobs = JobRunRepo(session)
        self.reports = ReportRepo(session)
        self.spikes = SpikeRepo(session)
        self.voices = VoiceRepo(session)
        self.changed = set()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # close() rolls back whatever was not committed, without expiring the loaded
        # objects, so results stay readable after the unit of work ends.
        try:
            await self.session.close()
        finally:
            if self._lock is not None:
                self._lock.release()

    def now(self) -> datetime:
        """The current time by this unit of work's clock (naive UTC)."""
        return self.clock()

    def mark_changed(self, conversation_id: int | None) -> None:
        """Ask for every copy of this conversation's card to be refreshed."""
        if conversation_id is not None:
            self.changed.add(conversation_id)

    async def commit(self) -> None:
        """Make everything done in this unit of work durable, together."""
        await self.session.commit()

    @property
    def wrote(self) -> bool:
        """Whether this unit of work ran anything but reads (True when its session cannot tell): one that
        did not still holds every row it read as committed, and may show them without reading them again."""
        session = self.session.sync_session
        return bool(session.info.get(WROTE, True) or session.new or session.dirty or session.deleted)

    async def rollback(self) -> None:
        """Forget everything done since the last commit."""
        await self.session.rollback()
