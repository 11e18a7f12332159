"""Search past conversations, notes and answers: the company's memory."""

from __future__ import annotations

import logging

from bot.commands import MAX_LIST_LIMIT, Search
from bot.domain import check_limit
from bot.policy import Context
from bot.search import described, parse, segments
from bot.views import Result, card_for
from storage import search as search_index
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)


async def handle_search(cmd: Search, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Conversations matching every word and filter (`bot.search`), most relevant first, each with its snippet."""
    query = parse(" ".join(cmd.words), now=uow.now())
    found, total = await uow.conversations.search(query, limit=check_limit(cmd.limit, most=MAX_LIST_LIMIT))
    rows = [conversation for conversation, _ in found]
    departments = await uow.conversations.department_names([r.id for r in rows])  # type: ignore[misc]
    owners = await uow.people.names(r.owner_id for r in rows)
    cards = tuple(
        card_for(
            r,
            owner=owners.get(r.owner_id or 0),
            departments=departments[r.id],  # type: ignore[index]
            snippet=segments(snippet) if r.erased_at is None else (),
        )
        for r, snippet in found
    )
    counted = search_index.COUNTED  # the store stops counting there: no "…and N more" it does not know
    if total > counted:
        return Result(f"more than {counted:,} matches for {described(query)}", cards=cards)
    text = f"{total} match{'es' if total != 1 else ''} for {described(query)}"
    return Result(text, cards=cards, more=total - len(cards))
