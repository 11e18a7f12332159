"""What is waiting, and one conversation in full."""

from __future__ import annotations

import logging

from bot.commands import MAX_LIST_LIMIT, Show, ShowQueue, ShowRecent
from bot.domain import ACTIVE, FINAL, PRIORITIES, InvalidInput, check_limit
from bot.policy import Context, identify
from bot.views import Result, card_for, history_for
from handlers._common import card, load
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

URGENT_FIRST = tuple(reversed(PRIORITIES))  # the order of a queue: urgent, high, normal, low


async def handle_queue(cmd: ShowQueue, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Open, claimed and replied conversations: one department's, everyone's, or mine; urgent first,
    then oldest first, the first `cmd.limit` of them and how many more there are."""
    owner_id = None
    if cmd.mine:
        owner_id = (await identify(uow, cmd.actor)).id
    if cmd.department is not None and await uow.departments.by_name(cmd.department) is None:
        names = ", ".join(d.name for d in await uow.departments.all())
        raise InvalidInput(f"no department {cmd.department!r}; departments: {names}")
    rows, total = await uow.conversations.queue(
        statuses=[s.value for s in ACTIVE],
        department=cmd.department,
        owner_id=owner_id,
        limit=check_limit(cmd.limit, most=MAX_LIST_LIMIT),
        priorities=URGENT_FIRST,
    )
    departments = await uow.conversations.department_names([r.id for r in rows])  # type: ignore[misc]
    owners = await uow.people.names(r.owner_id for r in rows)
    cards = tuple(
        card_for(r, owner=owners.get(r.owner_id or 0), departments=departments[r.id])  # type: ignore[index]
        for r in rows
    )
    counts = await uow.conversations.counts_by_department([s.value for s in ACTIVE])
    scope = "your" if cmd.mine else (f"{cmd.department}'s" if cmd.department else "the")
    text = f"{total} conversation{'s' if total != 1 else ''} in {scope} queue"
    return Result(text, cards=cards, counts=counts, more=total - len(cards))


async def handle_show(cmd: Show, uow: UnitOfWork, *, ctx: Context) -> Result:
    """The conversation with its notes, replies and full event history."""
    conversation = await load(uow, cmd.conversation_id)
    events = await uow.events.for_conversation(cmd.conversation_id)
    notes = await uow.notes.for_conversation(cmd.conversation_id)
    replies = await uow.replies.for_conversation(cmd.conversation_id)
    shown = await card(uow, conversation)
    history = history_for(events, notes, replies, departments=shown.departments)
    return Result(f"#{cmd.conversation_id}", card=shown, history=history)


async def handle_recent(cmd: ShowRecent, uow: UnitOfWork, *, ctx: Context) -> Result:
    """The latest resolved and dismissed conversations, with their outcomes."""
    rows = await uow.conversations.recent(statuses=[s.value for s in FINAL], limit=cmd.limit)
    departments = await uow.conversations.department_names([r.id for r in rows])  # type: ignore[misc]
    owners = await uow.people.names(r.owner_id for r in rows)
    cards = tuple(
        card_for(r, owner=owners.get(r.owner_id or 0), departments=departments[r.id])  # type: ignore[index]
        for r in rows
    )
    return Result(f"{len(cards)} recent outcome{'s' if len(cards) != 1 else ''}", cards=cards)
