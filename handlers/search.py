"""Search past conversations, notes and answers: the company's memory."""

from __future__ import annotations

import logging

from bot.commands import MAX_LIST_LIMIT, Search
from bot.domain import InvalidInput, check_limit
from bot.policy import Context
from bot.views import Result, card_for
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)


MAX_WORDS = 8  # words in one search
MAX_WORD = 64  # characters in one word


async def handle_search(cmd: Search, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Conversations where every word appears in the text, author, a note or a reply."""
    words = tuple(dict.fromkeys(w.casefold() for w in (w.strip() for w in cmd.words) if w))
    if not words:
        raise InvalidInput("search needs at least one word, e.g. `search refund`")
    # Each word is a scan of every conversation, note and reply: a search of 2,000 words froze the
    # service for seconds (and SQLite refuses ~1,000: "Expression tree is too large").
    if len(words) > MAX_WORDS:
        raise InvalidInput(f"search takes at most {MAX_WORDS} words (got {len(words)}); pick the most telling ones")
    long = next((w for w in words if len(w) > MAX_WORD), None)
    if long is not None:
        raise InvalidInput(f"search words are at most {MAX_WORD} characters; “{long[:20]}…” is {len(long):,}")
    rows, total = await uow.conversations.search(words, limit=check_limit(cmd.limit, most=MAX_LIST_LIMIT))
    departments = await uow.conversations.department_names([r.id for r in rows])  # type: ignore[misc]
    owners = await uow.people.names(r.owner_id for r in rows)
    cards = tuple(
        card_for(r, owner=owners.get(r.owner_id or 0), departments=departments[r.id])  # type: ignore[index]
        for r in rows
    )
    quoted = " ".join(words)
    text = f"{total} match{'es' if total != 1 else ''} for “{quoted}”"
    return Result(text, cards=cards, more=total - len(cards))
