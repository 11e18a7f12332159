"""Spike alerts: the new conversations of a time window, by department, and the alerts already made.

The core (`bot.spikes`) decides what is a spike; this module reads the windows it asks about
and records an alert once: the unique `key` of `spikealert` makes the first insert win.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Conversation, ConversationDepartment, Department, SpikeAlert, Voice
from storage.repositories import _insert

TEXT_READ = 400  # characters of a conversation's text read for its terms


@dataclass(frozen=True)
class WindowItem:
    """A new item of a window, as the spike check sees it (one per department it went to): a new
    conversation, or another voice that joined one (then `id` is the conversation's, and the rest the voice's:
    a burst of near-identical posts merged into one card still counts every post)."""

    id: int
    department: str
    ingested_at: datetime
    source: str
    tags: tuple[str, ...]
    routing_reason: str
    title: str
    text: str
    url: str
    author: str


def _aware(moment: datetime) -> datetime:
    """A stored moment, comparable with the others (SQLite hands them back naive)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class SpikeRepo:
    """The windows of new conversations, and the spike alerts of each department."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def new_in(self, windows: Sequence[tuple[datetime, datetime]]) -> list[WindowItem]:
        """The items that came in during any of `windows` ([start, end) each), with their departments: new
        conversations and the voices that joined one, newest first."""
        if not windows:
            return []

        def said(item: Any, moment: Any) -> Any:
            """The rows of `item` (a conversation, or a voice joining one) whose `moment` falls in a window."""
            found = select(  # type: ignore[call-overload]
                Conversation.id,
                Department.name,
                moment,
                item.source,
                Conversation.tags,
                Conversation.routing_reason,
                item.title,
                func.substr(item.text, 1, TEXT_READ),
                item.url,
                item.author_name,
            )
            if item is Voice:
                found = found.select_from(Voice).join(Conversation, col(Conversation.id) == col(Voice.conversation_id))
            return (
                found.join(ConversationDepartment, col(ConversationDepartment.conversation_id) == col(Conversation.id))
                .join(Department, col(Department.id) == col(ConversationDepartment.department_id))
                .where(or_(*((moment >= start) & (moment < end) for start, end in windows)))
                .where(col(Department.retired_at).is_(None))
            )

        stmt = said(Conversation, col(Conversation.ingested_at))
        # A voice joining one counts too; a conversation merged by hand was counted when it came in.
        voices = said(Voice, col(Voice.joined_at)).where(col(Voice.origin_id).is_(None))
        rows: Any = [*(await self.session.exec(stmt)).all(), *(await self.session.exec(voices)).all()]
        rows.sort(key=lambda r: (_aware(r[2]), r[0]), reverse=True)  # newest first, as one list
        return [
            WindowItem(
                id=r[0],
                department=r[1],
                ingested_at=r[2],
                source=r[3],
                tags=tuple(r[4] or ()),
                routing_reason=r[5] or "",
                title=r[6] or "",
                text=r[7] or "",
                url=r[8] or "",
                author=r[9] or "",
            )
            for r in rows
        ]

    async def record(self, alert: SpikeAlert) -> bool:
        """Insert the alert unless one with its key exists (another replica, an earlier check): True if new."""
        await self.session.flush()
        stmt = (
            _insert(self.session, SpikeAlert)
            .values(**alert.model_dump(exclude={"id"}))
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(col(SpikeAlert.id))
        )
        new_id = (await self.session.exec(stmt)).first()
        if new_id is None:
            return False
        alert.id = new_id[0]
        return True

    async def keep_notice(self, alert_id: int, notice: dict[str, Any]) -> None:
        """Store what an alert said, to show it again above its list."""
        stmt = update(SpikeAlert).where(col(SpikeAlert.id) == alert_id).values(notice=notice)
        await self.session.exec(stmt.execution_options(synchronize_session=False))

    async def since(self, department: str, *, since: datetime, until: datetime | None = None) -> list[SpikeAlert]:
        """The department's alerts made in [since, until), oldest first."""
        stmt = select(SpikeAlert).where(col(SpikeAlert.department) == department, col(SpikeAlert.created_at) >= since)
        if until is not None:
            stmt = stmt.where(col(SpikeAlert.created_at) < until)
        return list((await self.session.exec(stmt.order_by(col(SpikeAlert.created_at), col(SpikeAlert.id)))).all())

    async def get(self, alert_id: int) -> SpikeAlert | None:
        """One alert by its id."""
        return await self.session.get(SpikeAlert, alert_id)

    async def conversations(self, alert: SpikeAlert, *, limit: int) -> list[Conversation]:
        """The first `limit` conversations of an alert, in its order (newest first); erased ones included."""
        wanted = list(alert.conversation_ids[:limit])
        if not wanted:
            return []
        found = {c.id: c for c in (await self.session.exec(select(Conversation).where(col(Conversation.id).in_(wanted)))).all()}
        return [found[i] for i in wanted if i in found]
