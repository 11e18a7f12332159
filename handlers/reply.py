"""Replies to the customer: recorded now, delivered by the outbound adapters."""

from __future__ import annotations

import logging

from bot.commands import ReplyToCustomer
from bot.domain import IllegalTransition, Status
from bot.policy import Context, identify
from bot.views import Result
from handlers._common import card, load, require_text, transition
from storage.models import Conversation, Reply
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)


async def handle_reply(cmd: ReplyToCustomer, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Record an answer credited to the actor; an unclaimed one is claimed by the replier if allowed."""
    who = await identify(uow, cmd.actor)
    text = require_text(cmd.text, "A reply")
    await load(uow, cmd.conversation_id)

    def check(conversation: Conversation) -> None:
        if conversation.status == Status.OPEN and ctx.require_claim_to_reply:
            raise IllegalTransition(
                f"#{conversation.id} is not claimed yet; claim it first (`claim {conversation.id}`), then reply")

    now = uow.now()
    reply = uow.replies.add(Reply(conversation_id=cmd.conversation_id, author_id=who.id, text=text,
                                  status="recorded", created_at=now))
    await uow.session.flush()
    conversation = await transition(
        uow, cmd.conversation_id, "reply", who=who, check=check,
        values=lambda c: {"owner_id": c.owner_id or who.id, "claimed_at": c.claimed_at or now,
                          "first_reply_at": c.first_reply_at or now},
        data={"reply_id": reply.id})
    return Result(f"Reply to #{cmd.conversation_id} recorded", card=await card(uow, conversation))
