""" "Seen before": the resolved conversations most like a new one, found once, when it comes in.

No model: the full-text index (`storage.search.similar_resolved`) scores each resolved conversation by
how much of the new one's most distinctive terms (the rarest in the index) it holds. `THRESHOLD` keeps
the unrelated ones off the card (better nothing than noise); it was chosen on the fixture of
tests/test_search.py (ten topics: related ones scored 0.43 to 0.70, unrelated ones 0.15 at most).

The list is stored on the new conversation (`Conversation.seen_before`): in the ingest's transaction for a
report, in a unit of work of its own right after a feed's or a webhook's batches commit (`bot.ingest.recall`,
which refreshes a card already posted without it). Cards, `show` and the App Home read it with the row,
never recomputing it. Erasing a conversation
takes it off every list (`storage.erasure`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import update
from sqlmodel import col, select

from bot.views import cut, first_line
from storage import search
from storage.models import Conversation, Reply
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

THRESHOLD = 0.3
MOST = 3  # conversations on a card
REACHED = ("sent", "posted")


async def record(uow: UnitOfWork, ids: Sequence[int]) -> list[int]:
    """Find and store the "seen before" list of each new conversation; the ids of those that got one."""
    found = await search.similar_resolved(uow.session, ids, limit=MOST, threshold=THRESHOLD)
    similar = sorted({sid for pairs in found.values() for sid, _ in pairs})
    if not similar:
        return []
    session = uow.session
    rows = (
        await session.exec(
            select(Conversation.id, Conversation.outcome, Conversation.owner_id).where(col(Conversation.id).in_(similar))
        )
    ).all()
    names = await uow.people.names(owner for _, _, owner in rows)
    replies: dict[int, str] = {}
    sent = select(Reply.conversation_id, Reply.text).where(
        col(Reply.conversation_id).in_(similar), col(Reply.status).in_(REACHED)
    )
    for conversation_id, text in (await session.exec(sent.order_by(col(Reply.created_at), col(Reply.id)))).all():
        replies.setdefault(conversation_id, cut(first_line(text), 120))  # the first reply that reached the customer
    details: dict[int, dict[str, Any]] = {
        int(cid): {"id": int(cid), "outcome": outcome or "", "by": names.get(owner or 0, ""), "reply": replies.get(int(cid), "")}
        for cid, outcome, owner in rows
        if cid is not None
    }
    table = Conversation.__table__  # type: ignore[attr-defined]
    recorded = []
    for cid, pairs in found.items():
        listed = [details[sid] for sid, _ in pairs if sid in details]
        if listed:
            await session.exec(update(table).where(table.c.id == cid).values(seen_before=listed))
            recorded.append(cid)
    logger.debug("seen before: %d of %d new conversations", len(recorded), len(ids))
    return recorded
