"""100 people click Claim at the same moment: exactly one wins, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import time

from sqlmodel import func, select

from bot import commands as c
from bot.bootstrap import Container
from bot.domain import AlreadyClaimed
from bot.ingest import make_incoming
from storage.models import Event

logger = logging.getLogger(__name__)


async def test_hundred_concurrent_claims_have_exactly_one_winner(container: Container) -> None:
    report = await container.ingest([make_incoming(source="forum", external_id="t-1", text="refund please")])
    cid = report.new_ids[0]
    people = [c.Actor("slack", f"U{i:03d}", name=f"person{i:03d}") for i in range(100)]

    started = time.perf_counter()
    results = await asyncio.gather(*(container.bus.handle(c.Claim(cid, p)) for p in people), return_exceptions=True)
    elapsed = time.perf_counter() - started

    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, AlreadyClaimed)]
    others = [r for r in results if isinstance(r, BaseException) and not isinstance(r, AlreadyClaimed)]
    assert others == []
    assert len(winners) == 1 and len(losers) == 99
    winner = winners[0].card.owner
    assert {e.message for e in losers} == {f"#{cid} is already claimed by {winner}"}
    async with container.uow() as uow:
        claimed_events = (await uow.session.exec(select(func.count()).select_from(Event).where(Event.kind == "claimed"))).one()
        conversation = await uow.conversations.get(cid)
    assert claimed_events == 1
    assert conversation is not None and conversation.status == "claimed"
    print(
        f"[{container.engine.dialect.name}] 100 concurrent claims in {elapsed:.2f}s: 1 winner ({winner}), "
        f"{len(losers)} told who owns it, 1 claimed event"
    )
