"""The embedded SQLite store runs statements on the event loop's thread (fast clicks), except
the reads that may scan a large store (search, digests, stats), which go to a worker thread
so the loop keeps answering clicks and acks meanwhile."""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import event

from bot import commands as c
from bot.bootstrap import build
from bot.config import Config
from bot.ingest import make_incoming
from bot.settings import Settings

carol = c.Actor("cli", "carol", name="carol")


async def test_searches_and_reports_run_off_the_loop_and_everything_else_on_it(tmp_path: Path, test_config: Config) -> None:
    container = build(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'unsilo.db'}"), config=test_config)
    await container.prepare()
    try:
        cid = (await container.ingest([make_incoming(source="feed", external_id="1", text="refund, kettle broken")])).new_ids[0]
        await container.engine.dispose()  # new connections, traced
        ran: list[tuple[bool, str]] = []
        loop_thread = threading.get_ident()

        @event.listens_for(container.engine.sync_engine, "connect")
        def _trace(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
            raw = dbapi_connection._connection._connection  # the sqlite3 connection under aiosqlite
            raw.set_trace_callback(lambda sql: ran.append((threading.get_ident() == loop_thread, sql)))

        await container.bus.handle(c.Claim(cid, carol))
        assert ran and all(on_loop for on_loop, _ in ran), "a click's statements stay on the loop"
        ran.clear()
        found = await container.bus.handle(c.Search(carol, ("kettle",)))
        assert found is not None and [card.id for card in found.cards] == [cid]
        search = [on_loop for on_loop, sql in ran if "MATCH" in sql.upper()]
        assert search and not any(search), "the index query and its snippets ran on the worker thread"
        ran.clear()
        await container.bus.handle(c.ShowDigest(carol, department="support"))
        reports = [on_loop for on_loop, sql in ran if "conversationdepartment" in sql.lower()]
        assert reports and not any(reports), "the digest's aggregates ran on the worker thread"
    finally:
        await container.close()
