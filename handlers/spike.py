"""A spike alert's conversations: what its "See all" button shows."""

from __future__ import annotations

import logging

from bot.commands import MAX_LIST_LIMIT, ShowSpike
from bot.domain import NotFound, check_limit
from bot.outbox import notice_of
from bot.policy import Context
from bot.views import Result, card_for
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)


async def handle_spike(cmd: ShowSpike, uow: UnitOfWork, *, ctx: Context) -> Result:
    """The conversations of spike alert `cmd.alert_id`, newest first, and how many more there are."""
    alert = await uow.spikes.get(cmd.alert_id) if cmd.alert_id > 0 else None
    if alert is None:
        raise NotFound(f"no spike alert {cmd.alert_id}")
    rows = await uow.spikes.conversations(alert, limit=check_limit(cmd.limit, most=MAX_LIST_LIMIT))
    departments = await uow.conversations.department_names([r.id for r in rows])  # type: ignore[misc]
    owners = await uow.people.names(r.owner_id for r in rows)
    cards = tuple(
        card_for(r, owner=owners.get(r.owner_id or 0), departments=departments[r.id])  # type: ignore[index]
        for r in rows
    )
    total = len(alert.conversation_ids)
    what = alert.scope.partition(":")[2] if not alert.scope.startswith("department:") else "all new"
    text = f"Spike {alert.id} in {alert.department} ({what}): {total} conversation{'s' if total != 1 else ''}"
    notice = notice_of(alert.notice) if alert.notice else None  # what the channels were told, above the list
    return Result(text, notice=notice, cards=cards, more=total - len(cards))
