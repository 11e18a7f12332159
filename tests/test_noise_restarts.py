"""A batched channel's window survives the process: a restart in the middle of it loses nothing and
posts nothing twice, and two replicas sending it at once post one batch message and each card once.
On SQLite and PostgreSQL, the store's clock frozen and moved by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bot.bootstrap import Container
from tests.conftest import FakeClock
from tests.test_noise import BATCHED, _config, _ingest, _log, _support


async def test_a_restart_in_the_middle_of_a_window_loses_nothing_and_posts_nothing_twice(
    make_container: Callable[..., Container], tmp_path: Path
) -> None:
    clock = FakeClock(datetime(2026, 11, 16, 9, 1, tzinfo=UTC))
    config = _config(tmp_path, BATCHED)
    before = make_container(clock=clock, config=config)
    await before.prepare()
    ids = [await _ingest(before, "a", "refund please"), await _ingest(before, "b", "broken checkout")]
    await before.worker().run_until_idle()
    assert _support(_log(before)) == []
    await before.close()  # the process goes away in the middle of the window

    clock.advance(minutes=5)
    after = make_container(clock=clock, config=config)  # a new container on the same store
    await after.prepare()
    try:
        ids.append(await _ingest(after, "c", "help with my invoice"))
        clock.advance(minutes=10)
        worker = after.worker()
        await worker.run_until_idle()
        await worker.run_until_idle()  # and again: nothing is left to send
        posted = _support(_log(after))
        assert [j.kind for j in posted] == ["batch", "card", "card", "card"]
        assert posted[0].batch is not None and [card.id for card in posted[0].batch.listing.cards] == ids
        assert sorted(j.card.id for j in posted[1:] if j.card) == ids
        async with after.uow() as uow:
            pending = await uow.deliveries.pending_on("log")
        assert pending == []
    finally:
        await after.close()


async def test_two_replicas_sending_at_once_post_one_batch_message_and_each_card_once(
    make_container: Callable[..., Container], tmp_path: Path
) -> None:
    clock = FakeClock(datetime(2026, 11, 16, 9, 0, 30, tzinfo=UTC))
    config = _config(tmp_path, BATCHED)
    first = make_container(clock=clock, config=config)
    await first.prepare()
    second = make_container(clock=clock, config=config)
    await second.prepare()
    try:
        ids = [await _ingest(replica, f"k{i}", f"refund number {i} please") for i, replica in enumerate([first, second] * 3)]
        clock.advance(minutes=15)
        await asyncio.gather(first.worker().run_until_idle(), second.worker().run_until_idle())
        posted = _support(_log(first)) + _support(_log(second))
        batches = [j for j in posted if j.kind == "batch"]
        assert len(batches) == 1 and batches[0].batch is not None
        assert [card.id for card in batches[0].batch.listing.cards] == ids
        assert sorted(j.card.id for j in posted if j.kind == "card" and j.card) == ids  # each card once
    finally:
        await first.close()
        await second.close()
