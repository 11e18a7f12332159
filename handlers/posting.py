"""Where a conversation's card is posted: which conversation a message shows, and its live copy.

A platform that cannot look for a card it may already have posted (Teams cannot read a
channel's history) posts it again after a send whose result was lost: the channel then
shows the card twice. The first copy recorded is the live one, kept up to date; another
copy is recorded when someone uses it and made to point at the live one.
"""

from __future__ import annotations

import logging

from bot.commands import LocateCard
from bot.policy import Context
from bot.views import CardCopy, Result
from storage.models import Destination
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)


async def handle_locate_card(cmd: LocateCard, uow: UnitOfWork, *, ctx: Context) -> Result:
    """The conversation a posted message shows, and its live copy when the message is a duplicate."""
    platform = cmd.actor.platform
    posting = await uow.postings.by_message(platform, cmd.channel_id, cmd.message_id)
    destination = None
    if posting is not None:
        conversation_id = posting.conversation_id
    else:
        if cmd.conversation_id is None:
            return Result("")  # a message that is no card's (a thread reply elsewhere)
        conversation_id = cmd.conversation_id
        destination = await _showing(uow, conversation_id, platform, cmd.channel_id)
        if destination is None:
            return Result("")  # not in a channel that shows this conversation's cards
        await uow.postings.record(
            conversation_id=conversation_id,
            destination_id=destination.id,
            platform=platform,
            channel_id=cmd.channel_id,
            message_id=cmd.message_id,
            at=uow.now(),
        )
    live = await uow.postings.in_channel(conversation_id, platform, cmd.channel_id)
    if live is None or live.message_id == cmd.message_id:
        if destination is not None:
            logger.info(
                "card #%s found posted in %s:%s as %s: recorded as its copy there",
                conversation_id,
                platform,
                cmd.channel_id,
                cmd.message_id,
            )
        return Result("", copy=CardCopy(conversation_id))
    if destination is not None:
        logger.info(
            "card #%s was posted twice in %s:%s: %s points at the live copy %s from now on",
            conversation_id,
            platform,
            cmd.channel_id,
            cmd.message_id,
            live.message_id,
        )
        await uow.deliveries.enqueue_many(
            [
                {
                    "key": f"duplicate:{conversation_id}:{destination.id}:{cmd.message_id}",
                    "platform": platform,
                    "kind": "duplicate",
                    "conversation_id": conversation_id,
                    "destination_id": destination.id,
                    "payload": {
                        "conversation_id": conversation_id,
                        "message_id": cmd.message_id,
                        "live_message_id": live.message_id,
                    },
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": uow.now(),
                    "created_at": uow.now(),
                }
            ]
        )
    return Result("", copy=CardCopy(conversation_id, live_message_id=live.message_id))


async def _showing(uow: UnitOfWork, conversation_id: int, platform: str, channel_id: str) -> Destination | None:
    """The destination through which `channel_id` shows the conversation's cards, if it does."""
    if await uow.conversations.get(conversation_id) is None:
        return None
    departments = [d.id for d in await uow.conversations.departments_of(conversation_id) if d.id is not None]
    for destination in await uow.departments.destinations(departments):
        if destination.platform == platform and destination.channel_id == channel_id:
            return destination
    return None
