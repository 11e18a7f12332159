""" "Not for us": move a conversation to another department.

The new department's channels get the card (the usual card sync, at the new version); every copy
posted in a channel that no longer shows the conversation is updated in place to say where it went,
with no buttons (`views.card_for(moved=True)`, decided by the outbox worker per destination). The
conversation goes back into the new department's queue (unclaimed). The `rerouted` event records the
departments it left, the one it went to, and the routing rules that had sent it there (`rules`, read
from its `ingested` event; none once it was rerouted by hand before): the digest's per-rule figures.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.commands import Reroute
from bot.domain import InvalidInput
from bot.outbox import enqueue_copy_updates
from bot.policy import Context, identify
from bot.routing import NO_RULE
from bot.views import Result, display_name
from handlers._common import card, transition
from storage.models import Conversation, Department
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

ROUTED = ("ingested", "reported")  # the events that say how a conversation was first routed
REROUTED = "rerouted"


def rule_names(reason: str) -> list[str]:
    """The rules named in a routing reason (`billing: matched "refund"; vip: …`), for events written before
    the rules' names were recorded; "no rule matched" is `NO_RULE`."""
    names = []
    for part in (reason or "").split("; "):
        if part.strip() == "no rule matched":
            names.append(NO_RULE)
        elif ": " in part:
            names.append(part.split(": ", 1)[0].strip())
    return [n for n in names if n]


async def _routing_rules(uow: UnitOfWork, conversation_id: int) -> list[str]:
    """The rules that routed the conversation where it is: those of its first routing, unless someone has
    rerouted it since (then no rule did)."""
    rules: list[str] = []
    for event in await uow.events.for_conversation(conversation_id):
        data = event.data or {}
        if event.kind == REROUTED:
            return []
        if event.kind in ROUTED and not rules:
            found = data.get("rules")
            rules = [str(r) for r in found] if isinstance(found, list) else rule_names(str(data.get("reason", "")))
    return rules


async def handle_reroute(cmd: Reroute, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Move the conversation to `cmd.department` (its owner, a member or a manager of its departments)."""
    wanted = (cmd.department or "").strip().lower()
    target = await uow.departments.by_name(wanted) if wanted else None
    if target is None or target.id is None:
        names = ", ".join(d.name for d in await uow.departments.all())
        raise InvalidInput(f"no department {cmd.department!r}; departments: {names}")
    who = await identify(uow, cmd.actor)
    before: list[Department] = []
    # The event's data: filled in as the row is read (again, after a lost race), logged with the change.
    data: dict[str, Any] = {"from": [], "to": target.name, "rules": await _routing_rules(uow, cmd.conversation_id)}

    async def read_departments() -> None:
        before[:] = await uow.conversations.departments_of(cmd.conversation_id)
        data["from"] = [d.name for d in before]

    def check(conversation: Conversation) -> None:
        if [d.name for d in before] == [target.name]:
            raise InvalidInput(f"#{conversation.id} is already in {target.name}")

    def values(conversation: Conversation) -> dict[str, Any]:
        came_from = ", ".join(d.name for d in before) or "nowhere"
        why = f"rerouted from {came_from} by {display_name(who.name)}"
        was = conversation.routing_reason if not conversation.routing_reason.startswith("rerouted from ") else ""
        data["reason"] = was[:500]  # why it had been routed where it was
        return {"owner_id": None, "routing_reason": (f"{why} (was: {was})" if was else why)[:1024]}

    conversation = await transition(
        uow,
        cmd.conversation_id,
        "reroute",
        who=who,
        recheck=read_departments,
        check=check,
        values=values,
        data=data,
    )
    assert conversation.id is not None
    await uow.conversations.move_to(conversation.id, target.id)
    updated = await _update_old_copies(uow, conversation, target)
    logger.info(
        "#%s rerouted from %s to %s by %s; %d old copies updated", conversation.id, data["from"], target.name, who.name, updated
    )
    came_from = ", ".join(data["from"]) or "no department"
    return Result(f"#{conversation.id} moved from {came_from} to {target.name}", card=await card(uow, conversation))


async def _update_old_copies(uow: UnitOfWork, conversation: Conversation, target: Department) -> int:
    """A card delivery for every copy posted in a channel the new department does not post in: it is
    updated to say where the conversation went (the new department's own channels get the usual sync)."""
    assert conversation.id is not None and target.id is not None
    staying = {(d.platform, d.channel_id) for d in await uow.departments.destinations([target.id])}
    postings = [p for p in await uow.postings.for_conversation(conversation.id) if (p.platform, p.channel_id) not in staying]
    return await enqueue_copy_updates(uow, postings, {conversation.id: conversation.version})
