"""One row per conversation, for spreadsheets and other tools: read in chunks by id, so any number
of conversations streams in bounded memory, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Conversation, ConversationDepartment, Department, Person, Reply

CHUNK = 1000  # conversations per query


def _seconds(later: datetime | None, earlier: datetime | None) -> int | None:
    return int((later - earlier).total_seconds()) if later is not None and earlier is not None else None


async def conversation_rows(
    session: AsyncSession, *, since: datetime | None = None, department: str | None = None, chunk: int = CHUNK
) -> AsyncIterator[dict[str, Any]]:
    """Every conversation ingested since `since` (all if None), of `department` if given, oldest first:
    its times, durations in seconds from its arrival, departments, owner, outcome, tags, priority and
    replies. Never the customer's words or identity."""
    last = 0
    while True:
        stmt = (
            select(Conversation, Person.name)
            .join(Person, col(Person.id) == col(Conversation.owner_id), isouter=True)
            .where(col(Conversation.id) > last)
            .order_by(col(Conversation.id))
            .limit(chunk)
        )
        if since is not None:
            stmt = stmt.where(col(Conversation.ingested_at) >= since)
        if department is not None:
            of_department = (
                select(ConversationDepartment.conversation_id)
                .join(Department, col(Department.id) == col(ConversationDepartment.department_id))
                .where(col(Department.name) == department)
            )
            stmt = stmt.where(col(Conversation.id).in_(of_department))
        rows = list((await session.exec(stmt)).all())
        if not rows:
            return
        ids = [conversation.id for conversation, _ in rows]
        departments: dict[int, list[str]] = defaultdict(list)
        names = (
            select(ConversationDepartment.conversation_id, Department.name)
            .join(Department, col(Department.id) == col(ConversationDepartment.department_id))
            .where(col(ConversationDepartment.conversation_id).in_(ids))
            .order_by(col(Department.name))
        )
        for conversation_id, name in (await session.exec(names)).all():
            departments[conversation_id].append(name)
        counted = (
            select(Reply.conversation_id, func.count())
            .where(col(Reply.conversation_id).in_(ids))
            .group_by(col(Reply.conversation_id))
        )
        replies = {conversation_id: int(n) for conversation_id, n in (await session.exec(counted)).all()}
        for conversation, owner in rows:
            assert conversation.id is not None
            arrived = conversation.ingested_at
            yield {
                "id": conversation.id,
                "source": conversation.source,
                "created_at": conversation.created_at,
                "ingested_at": arrived,
                "claimed_at": conversation.claimed_at,
                "first_reply_at": conversation.first_reply_at,
                "resolved_at": conversation.resolved_at,
                "seconds_to_claim": _seconds(conversation.claimed_at, arrived),
                "seconds_to_first_reply": _seconds(conversation.first_reply_at, arrived),
                "seconds_to_resolve": _seconds(conversation.resolved_at, arrived),
                "status": conversation.status,
                "departments": departments.get(conversation.id, []),
                "owner": owner or "",
                "outcome": conversation.outcome or "",
                "tags": list(conversation.tags),
                "priority": conversation.priority,
                "replies": replies.get(conversation.id, 0),
            }
        last = ids[-1] or last
        session.expunge_all()  # bounded memory: nothing of this chunk stays in the identity map
