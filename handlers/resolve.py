"""Resolve with an outcome, or dismiss: how a conversation ends."""

from __future__ import annotations

import logging

from bot.commands import Dismiss, Resolve
from bot.domain import InvalidInput
from bot.policy import Context, identify
from bot.views import Result, storable
from handlers._common import card, require_text, transition
from handlers.closing import tell_senders
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)


async def handle_resolve(cmd: Resolve, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Close a conversation with one of the configured outcomes."""
    outcome = (cmd.outcome or "").strip().lower()
    if outcome not in ctx.outcomes:
        raise InvalidInput(f"unknown outcome {cmd.outcome!r}; use one of: {', '.join(ctx.outcomes)}")
    who = await identify(uow, cmd.actor)
    now = uow.now()
    conversation = await transition(
        uow,
        cmd.conversation_id,
        "resolve",
        who=who,
        values=lambda c: {"outcome": outcome, "resolved_at": now},
        data={"outcome": outcome, "text": storable(cmd.text).strip()},
    )
    text = storable(cmd.text).strip()
    told = await tell_senders(uow, conversation, who=who, outcome=outcome, text=text)
    said = f"; {', '.join(told)} (who sent it in) will be told" if told else ""
    return Result(f"#{cmd.conversation_id} resolved: {outcome}{said}", card=await card(uow, conversation))


async def handle_dismiss(cmd: Dismiss, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Close a conversation that needs no action (managers), with a reason."""
    reason = require_text(cmd.reason, "A reason for dismissing")
    who = await identify(uow, cmd.actor)
    now = uow.now()
    conversation = await transition(
        uow, cmd.conversation_id, "dismiss", who=who, values=lambda c: {"resolved_at": now}, data={"reason": reason}
    )
    return Result(f"#{cmd.conversation_id} dismissed", card=await card(uow, conversation))
