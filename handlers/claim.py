"""Claim, release and reassign: who owns a conversation."""

from __future__ import annotations

import logging

from bot.commands import Claim, Reassign, Release
from bot.policy import Context, identify
from bot.views import Result
from handlers._common import card, transition
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)


async def handle_claim(cmd: Claim, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Take an open conversation; exactly one of several racing claimers wins."""
    who = await identify(uow, cmd.actor)
    now = uow.now()
    conversation = await transition(
        uow, cmd.conversation_id, "claim", who=who, values=lambda c: {"owner_id": who.id, "claimed_at": c.claimed_at or now}
    )
    return Result(f"You claimed #{cmd.conversation_id}", card=await card(uow, conversation))


async def handle_release(cmd: Release, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Give a conversation back to its departments' queue."""
    who = await identify(uow, cmd.actor)
    conversation = await transition(uow, cmd.conversation_id, "release", who=who, values=lambda c: {"owner_id": None})
    return Result(f"#{cmd.conversation_id} is back in the queue", card=await card(uow, conversation))


async def handle_reassign(cmd: Reassign, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Give a conversation to someone else (managers only)."""
    who = await identify(uow, cmd.actor)
    target = await identify(uow, cmd.to)
    now = uow.now()
    conversation = await transition(
        uow,
        cmd.conversation_id,
        "reassign",
        who=who,
        values=lambda c: {"owner_id": target.id, "claimed_at": c.claimed_at or now},
        data={"to": target.name, "to_id": target.id},
    )
    return Result(f"#{cmd.conversation_id} now belongs to {target.name}", card=await card(uow, conversation))
