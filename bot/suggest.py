"""Who to ask: on a new card, up to two people outside its departments who handled conversations like it.

Found once, at ingest, right after "seen before" (`bot.seenbefore`, in the same transaction: `bot.ingest.recall`): the
people who resolved or replied to its "seen before" conversations, scored as `who knows` scores them
(`bot.expertise.weigh`), kept when they handled at least `MIN_SIMILAR` of them and have an account on
a chat platform (so that Ask can reach them). Stored on the conversation (`Conversation.suggested`),
read with the row: a card, `show` or a click costs no extra statement.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import String, cast, update
from sqlmodel import col, select

from bot.expertise import departments_of, weigh
from bot.views import display_name
from storage.models import Conversation
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

MOST = 2  # people suggested on a card
MIN_SIMILAR = 2  # similar conversations someone resolved or replied to before they are suggested
KINDS = ("resolved", "replied")
HALF_LIFE_DAYS = 90  # as `who knows` by default (`unsilo.expertise_half_life_days`)


async def record(uow: UnitOfWork, departments: Mapping[int, Sequence[str]], *, half_life_days: int = HALF_LIFE_DAYS) -> int:
    """Find and store the suggested people of each new conversation (`departments`: its departments by id);
    how many got some. Reads the "seen before" lists already stored in this transaction."""
    if not departments:
        return 0
    session = uow.session
    stmt = select(Conversation.id, Conversation.seen_before).where(
        col(Conversation.id).in_(sorted(departments)), cast(Conversation.seen_before, String) != "[]"
    )
    seen: dict[int, set[int]] = {}
    for cid, listed in (await session.exec(stmt)).all():
        ids = {item["id"] for item in listed or [] if isinstance(item, dict) and isinstance(item.get("id"), int)}
        if cid is not None and ids:
            seen[cid] = ids
    if not seen:
        return 0
    similar = sorted(set().union(*seen.values()))
    contributions = await uow.events.contributions(similar, kinds=KINDS)
    if not contributions:
        return 0
    people = await uow.people.many({person_id for person_id, *_ in contributions})
    all_departments = await uow.departments.all()
    now = uow.now()
    table = Conversation.__table__  # type: ignore[attr-defined]
    recorded = 0
    for cid, ids in seen.items():
        mine = [row for row in contributions if row[2] in ids]
        weighed = weigh(mine, now=now, half_life_days=half_life_days)
        own = set(departments.get(cid, ()))
        chosen: list[dict[str, Any]] = []
        for person_id, evidence in sorted(weighed.items(), key=lambda kv: (-kv[1].score, kv[0])):
            if person_id not in people or len(evidence.conversations) < MIN_SIMILAR:
                continue
            person, identities = people[person_id]
            if not any(i.platform in uow.chat_platforms for i in identities):
                continue  # nowhere to ask them
            theirs = departments_of(person, identities, all_departments)
            if own & set(theirs):
                continue
            chosen.append(
                {
                    "person_id": person_id,
                    "name": display_name(person.name),
                    "departments": theirs,
                    "resolved": evidence.counts.get("resolved", 0),
                    "replied": evidence.counts.get("replied", 0),
                }
            )
            if len(chosen) == MOST:
                break
        if chosen:
            await session.exec(update(table).where(table.c.id == cid).values(suggested=chosen))
            recorded += 1
    logger.debug("suggested people: %d of %d new conversations", recorded, len(departments))
    return recorded
