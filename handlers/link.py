"""Linking chat channels to departments (admins)."""

from __future__ import annotations

import logging

from bot import noise
from bot.commands import ChannelBudget, LinkChannel, UnlinkChannel
from bot.domain import Forbidden, InvalidInput
from bot.policy import Context, identify, is_admin, require_channel_manager
from bot.views import Result
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)


async def handle_link(cmd: LinkChannel, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Post the department's new conversations in this channel from now on."""
    who = await identify(uow, cmd.actor)
    if not is_admin(who, ctx.admins):
        raise Forbidden("only admins can link channels; ask one to add you to [unsilo] admins")
    name = (cmd.department or "").strip().lower()
    department = await uow.departments.by_name(name) if name else None
    if department is None:
        names = ", ".join(d.name for d in await uow.departments.all())
        raise InvalidInput(f"no department {cmd.department!r}; pick one of: {names}")
    destination = await uow.departments.link(
        department.id,  # type: ignore[arg-type]
        cmd.actor.platform,
        cmd.channel_id,
        ref=dict(cmd.conversation_ref) if cmd.conversation_ref else None,
        linked_by=who.name,
    )
    waiting = await uow.deliveries.retry_failed_cards(destination.id, now=uow.now())  # type: ignore[arg-type]
    logger.info(
        "%s linked %s:%s to %s (%d waiting cards sent again)", who.name, cmd.actor.platform, cmd.channel_id, name, waiting
    )
    warning = "" if ctx.admins else " (no admins are configured yet, so anyone may link channels)"
    also = f", and the {waiting} open one{'s' if waiting != 1 else ''} that could not be posted here yet" if waiting else ""
    return Result(f"This channel now gets {name}'s new conversations{also}{warning}")


async def handle_unlink(cmd: UnlinkChannel, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Stop posting cards in this channel (for one department, or all)."""
    who = await identify(uow, cmd.actor)
    if not is_admin(who, ctx.admins):
        raise Forbidden("only admins can unlink channels; ask one to add you to [unsilo] admins")
    department_id = None
    if cmd.department:
        department = await uow.departments.by_name(cmd.department.strip().lower())
        if department is None:
            raise InvalidInput(f"no department {cmd.department!r}")
        department_id = department.id
    removed = await uow.departments.unlink(cmd.actor.platform, cmd.channel_id, department_id=department_id)
    if not removed:
        return Result("This channel was not linked to any department")
    return Result(f"This channel no longer gets {', '.join(removed)}'s conversations")


async def handle_budget(cmd: ChannelBudget, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Show or set a channel's noise budget (`bot.noise`): its mode and quiet hours, for every department
    posting there. Set from chat, it wins over the config until reset."""
    destinations = await uow.departments.channel_destinations(cmd.platform, cmd.channel_id)
    if not destinations:
        raise InvalidInput("no department posts in this channel yet; link one first (`link <department>`)")
    if cmd.mode is None and cmd.quiet is None and not cmd.reset:
        budget = noise.Budget.of(destinations[0])
        where = "set from chat; `mode reset` goes back to the config's" if budget.from_chat else "from the config"
        return Result(f"This channel gets new conversations {budget.describe()} ({where})")
    who = await identify(uow, cmd.actor)
    departments = [d for d in await uow.departments.all() if d.id in {x.department_id for x in destinations}]
    require_channel_manager(who, ctx.admins, departments, doing="change how this channel gets conversations")
    for destination in destinations:
        if cmd.reset:
            destination.chat_mode = destination.chat_quiet = None
        if cmd.mode is not None:
            destination.chat_mode = cmd.mode
        if cmd.quiet is not None:
            destination.chat_quiet = cmd.quiet
    budget = noise.Budget.of(destinations[0])
    await uow.events.add_many(
        [
            {
                "conversation_id": None,
                "kind": "channel_budget",
                "actor_id": who.id,
                "actor_name": who.name,
                "at": uow.now(),
                "data": {"platform": cmd.platform, "channel": cmd.channel_id, "budget": budget.describe(), "reset": cmd.reset},
            }
        ]
    )
    logger.info("%s set %s:%s to %s", who.name, cmd.platform, cmd.channel_id, budget.describe())
    if cmd.reset:
        return Result(f"This channel is back to the config's setting: {budget.describe()}")
    return Result(f"This channel now gets new conversations {budget.describe()} (until `mode reset`)")
