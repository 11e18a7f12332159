"""What every handler shares: loading a conversation and applying one checked transition."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from bot import policy
from bot.domain import PAST_TENSE, AlreadyClaimed, Conflict, InvalidInput, NotFound, next_status, reached_customer
from bot.policy import Who
from bot.views import Card, card_for, storable
from bot.voices import merged_into
from storage.models import Conversation, Identity
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

MAX_RACES = 5


async def load(uow: UnitOfWork, conversation_id: int) -> Conversation:
    """The conversation, or `NotFound` with its id."""
    conversation = await uow.conversations.get(conversation_id)
    if conversation is None:
        raise NotFound(f"#{conversation_id} doesn't exist; `queue` lists open conversations")
    return conversation


async def owner_name(uow: UnitOfWork, conversation: Conversation) -> str | None:
    """The display name of the conversation's owner, if any."""
    if conversation.owner_id is None:
        return None
    owner = await uow.people.get(conversation.owner_id)  # the identity map first: often no query
    return owner.name if owner else None


async def _owner(uow: UnitOfWork, conversation: Conversation, *, who: Who) -> tuple[str | None, list[Identity] | None]:
    """The owner's display name, and their accounts when that took no extra query: someone else's are
    read with them (one query, what a refused claim names the winner by); `who` is known already."""
    if conversation.owner_id is None or conversation.owner_id == who.id:
        return await owner_name(uow, conversation), None
    found = await uow.people.by_id_with_identities(conversation.owner_id)
    return (found[0].name, found[1]) if found else (None, None)


async def card(uow: UnitOfWork, conversation: Conversation) -> Card:
    """The conversation's card as it is now (with its latest reply's state, if any)."""
    departments = [d.name for d in await uow.conversations.departments_of(conversation.id)]  # type: ignore[arg-type]
    reply = await uow.replies.latest(conversation.id) if conversation.reply_written_at else None  # type: ignore[arg-type]
    decider = None
    if reply is not None and reply.status == "rejected" and reply.decided_by_id is not None:
        decider = await uow.people.get(reply.decided_by_id)  # the identity map first: the rejecter, just now
    earlier = await uow.conversations.earlier(conversation.id)  # type: ignore[arg-type]
    return card_for(
        conversation,
        owner=await owner_name(uow, conversation),
        departments=departments,
        reply=reply,
        decided_by=decider.name if decider else "",
        earlier=earlier,
        voices=await uow.voices.of(conversation.id) if conversation.voice_count else (),  # type: ignore[arg-type]
        merged_into=await merged_into(uow, conversation),
    )


async def log_event(
    uow: UnitOfWork,
    conversation_id: int | None,
    kind: str,
    *,
    who: Who | None,
    data: dict[str, Any] | None = None,
    touch: bool = False,
) -> None:
    """Append one audit event and ask for the conversation's cards to be refreshed.

    `touch` for a change the card shows without a status transition (a reply approved,
    rejected, posted): the conversation gets a new version, so its cards are sent again.
    """
    if touch and conversation_id is not None:
        await uow.conversations.touch(conversation_id, at=uow.now())
    await uow.events.add_many(
        [
            {
                "conversation_id": conversation_id,
                "kind": kind,
                "actor_id": who.id if who else None,
                "actor_name": who.name if who else "",
                "at": uow.now(),
                "data": data or {},
            }
        ]
    )
    uow.mark_changed(conversation_id)


async def transition(
    uow: UnitOfWork,
    conversation_id: int,
    action: str,
    *,
    who: Who,
    values: Callable[[Conversation], dict[str, Any]] | None = None,
    check: Callable[[Conversation], None] | None = None,
    recheck: Callable[[], Awaitable[None]] | None = None,
    data: dict[str, Any] | None = None,
) -> Conversation:
    """Check and apply one action atomically, log its event and ask for the card refresh.

    The compare-and-set makes concurrent actions safe: the loser re-reads the row and
    is checked again, so it gets the true reason (e.g. "already claimed by alice").
    `recheck` runs after every read of the row, before its compare-and-set: whatever a
    concurrent winner did is visible to it by then, or the compare-and-set fails and it runs again.
    """
    for _ in range(MAX_RACES):
        conversation = await load(uow, conversation_id)
        if recheck is not None:
            await recheck()
        owner, accounts = await _owner(uow, conversation, who=who)
        try:
            status = next_status(action, conversation.status, conversation_id=conversation_id, owner=owner)
        except AlreadyClaimed as exc:
            # Let each platform name the winner its own way (a Slack mention, a Teams name).
            if accounts is None:
                accounts = await uow.people.identities(conversation.owner_id)  # type: ignore[arg-type]
            exc.identities = {i.platform: i.user_id for i in accounts}
            raise
        departments = await uow.conversations.departments_of(conversation_id)
        policy.require(action, who=who, conversation=conversation, departments=departments, owner=owner)
        if check is not None:
            check(conversation)
        now = uow.now()
        changes = {"status": status.value, "updated_at": now, **(values(conversation) if values else {})}
        if await uow.conversations.compare_and_set(conversation, **changes):
            await log_event(uow, conversation_id, PAST_TENSE[action], who=who, data=data)
            logger.info("#%s %s by %s", conversation_id, PAST_TENSE[action], who.name)
            return conversation
    raise Conflict(f"#{conversation_id} kept changing while you acted; please try again")


async def reply_reached(uow: UnitOfWork, conversation_id: int, *, at: datetime) -> None:
    """A reply reached the customer (the outbox delivered it, or someone posted it by hand): the
    conversation is `replied` now (`domain.reached_customer`) and its first reply dates from `at`,
    the first time the customer could read one. Compare-and-set, like every status change."""
    for _ in range(MAX_RACES):
        conversation = await load(uow, conversation_id)
        status = reached_customer(conversation.status)
        changes = {"status": status.value, "updated_at": at, "first_reply_at": conversation.first_reply_at or at}
        if await uow.conversations.compare_and_set(conversation, **changes):
            uow.mark_changed(conversation_id)
            return
    raise Conflict(f"#{conversation_id} kept changing while its reply was recorded as sent; please try again")


def require_text(text: str, what: str) -> str:
    """What a person typed, as stored (`storable`), or a clear refusal when nothing is left or it is too long."""
    cleaned = storable(text).strip()
    if not cleaned:
        raise InvalidInput(f"{what} can't be empty")
    if len(cleaned) > 40_000:
        raise InvalidInput(f"{what} is too long ({len(cleaned):,} characters; the limit is 40,000)")
    return cleaned
