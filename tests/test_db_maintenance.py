"""Moving and backing up a store (`unsilo db copy`, `unsilo db backup`) and a demo that never harms
real data (`unsilo demo` refuses a real store; `unsilo demo --reset` removes exactly the demo).

The CLI runs in this process (`bot.cli.main`, on a worker thread) with a fixed clock, so that the
outputs of different stores can be compared line for line (digests say "waiting 6 s")."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Table, select
from sqlmodel import SQLModel

import bot.cli
from bot.bootstrap import build
from storage.copy import copy_store
from storage.db import create_engine
from tests.conftest import PG_URL, ROOT, FakeClock, _drop_schema, _postgres_schema

CONFIG = str(ROOT / "unsilo.example.toml")
Dump = dict[str, list[tuple[Any, ...]]]


class CLI:
    """`unsilo …` against one store at a time, as a user types it; stdout and stderr captured."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    async def __call__(self, url: str, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = await asyncio.to_thread(bot.cli.main, ["--database-url", url, "--config", CONFIG, *args])
        out = self.capsys.readouterr()
        return code, out.out, out.err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CLI:
    clock = FakeClock()
    monkeypatch.setattr(bot.cli, "build", lambda settings, **kw: build(settings, clock=clock, **kw))
    return CLI(capsys)


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """An empty schema on the PostgreSQL server (skipped, or failed under CI, when it is unreachable)."""
    schema = await _postgres_schema()
    yield f"{PG_URL}?search_path={schema}"
    await _drop_schema(schema)


async def dump(url: str) -> Dump:
    """Every row of every table of ours, as Python values (JSON decoded, times aware), by primary key."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return {
                t.name: [tuple(r) for r in (await conn.execute(select(t).order_by(*t.primary_key.columns))).all()]
                for t in SQLModel.metadata.sorted_tables
            }
    finally:
        await engine.dispose()


async def story(cli: CLI, url: str) -> None:
    """The README's demo story: ingest, claim, note, reply, resolve."""
    for args in (
        ("demo",),
        ("claim", "3", "--as", "alice"),
        ("note", "3", "Checked the order: courier lost it", "--as", "bob"),
        ("reply", "3", "Sorry! A replacement ships today.", "--as", "alice"),
        ("resolve", "3", "--outcome", "answered", "--as", "alice"),
    ):
        code, _, err = await cli(url, *args)
        assert code == 0, (args, err)


async def outputs(cli: CLI, url: str) -> list[str]:
    """What a user reads from a store: a card with its history, a search, the digest, the export."""
    seen = []
    for args in (("show", "3"), ("search", "refund"), ("digest",), ("export", "--format", "jsonl")):
        code, out, err = await cli(url, *args)
        assert code == 0 and out, (args, err)
        seen.append(out)
    return seen


async def test_a_store_copied_to_postgresql_and_back_reads_the_same_and_keeps_taking_new_rows(
    cli: CLI, pg_url: str, tmp_path: Path
) -> None:
    first, back = f"sqlite:///{tmp_path / 'first.db'}", f"sqlite:///{tmp_path / 'back.db'}"
    await story(cli, first)
    original = await dump(first)

    code, out, err = await cli(first, "db", "copy", "--to", pg_url)
    assert code == 0, err
    assert "conversation: 12 rows" in out and "note: 1 row\n" in out and "the counts match" in out
    code, out, err = await cli(pg_url, "db", "copy", "--to", back)
    assert code == 0, err

    assert await dump(pg_url) == original == await dump(back), "every row, id, JSON value, time and flag"
    expected = await outputs(cli, first)
    assert await outputs(cli, pg_url) == expected
    assert await outputs(cli, back) == expected

    code, out, err = await cli(pg_url, "report", "A new post after the move", "--as", "alice")
    assert code == 0 and "#13" in out, err  # the id sequence continues after the copied ids

    before = await dump(pg_url)
    code, out, err = await cli(first, "db", "copy", "--to", pg_url)
    assert code == 1 and out.count("\n") <= 1 and len(err.strip().splitlines()) == 1
    assert "is not empty" in err and "conversation" in err and "nothing was changed" in err
    assert await dump(pg_url) == before


async def test_copy_urls_are_shown_without_their_password(cli: CLI, tmp_path: Path) -> None:
    code, out, err = await cli(f"sqlite:///{tmp_path / 'a.db'}", "db", "copy", "--to", "postgresql://u:s3cret@127.0.0.1:9/none")
    assert code == 3 and "s3cret" not in out + err and "u:***@127.0.0.1:9" in out
    assert err.startswith("cannot reach the store to copy into, postgresql+asyncpg://u:***@127.0.0.1:9/none:")
    code, out, err = await cli("postgresql://u:s3cret@127.0.0.1:9/none", "queue")
    assert code == 3 and err.startswith("cannot connect to the store at postgresql://u:***@127.0.0.1:9/none: connection refused")


async def test_a_backup_is_a_consistent_snapshot_taken_while_the_store_is_written(cli: CLI, tmp_path: Path) -> None:
    live = tmp_path / "live.db"
    url = f"sqlite:///{live}"
    assert (await cli(url, "demo"))[0] == 0

    # A writer in the middle of a transaction: the backup neither waits for it nor sees its half.
    writer = sqlite3.connect(live, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute(
        "INSERT INTO rule (name, position, departments, any_words, all_words, regex, source, author, priority, "
        "tags, sensitive, enabled) VALUES ('half', 0, '[]', '[]', '[]', '', '', '', '', '[]', 0, 1)"
    )
    code, out, err = await cli(url, "db", "backup", str(tmp_path / "one.db"))
    writer.execute("COMMIT")
    assert code == 0 and "integrity ok" in out, err
    copy = sqlite3.connect(tmp_path / "one.db")
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert copy.execute("SELECT count(*) FROM conversation").fetchone() == (12,)
    assert copy.execute("SELECT count(*) FROM rule WHERE name = 'half'").fetchone() == (0,)
    copy.close()

    # Writers committing all through the backup: each of their transactions is in it whole or not at all.
    stop, wrote = threading.Event(), threading.Event()

    def write() -> None:
        conn = sqlite3.connect(live, isolation_level=None, timeout=30)
        n = 0
        while not stop.is_set():
            n += 1
            conn.execute("BEGIN IMMEDIATE")
            for part in ("a", "b"):
                conn.execute(
                    "INSERT INTO jobrun (job, due_at, holder, leased_until, attempts, outcome) VALUES "
                    "(?, '2026-01-01 00:00:00', 'w', '2026-01-01 00:00:00', 1, '')",
                    (f"{n}{part}",),
                )
            conn.execute("COMMIT")
            wrote.set()
        conn.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        wrote.wait(10)
        code, out, err = await cli(url, "db", "backup", str(tmp_path / "two.db"))
    finally:
        stop.set()
        thread.join()
    assert code == 0, err
    copy = sqlite3.connect(tmp_path / "two.db")
    assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    (pairs,) = copy.execute("SELECT count(*) FROM jobrun").fetchone()
    assert pairs >= 2 and pairs % 2 == 0, "no transaction cut in half"
    assert copy.execute("SELECT count(*) FROM conversation").fetchone() == (12,)
    copy.close()


async def test_a_backup_never_overwrites_silently_and_postgresql_gets_its_pg_dump_line(cli: CLI, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    assert (await cli(url, "demo"))[0] == 0
    target = tmp_path / "kept.db"
    target.write_bytes(b"an older backup")
    code, _, err = await cli(url, "db", "backup", str(target))
    assert code == 1 and "already exists" in err and "--force" in err and target.read_bytes() == b"an older backup"
    code, out, err = await cli(url, "db", "backup", str(target), "--force")
    assert code == 0, err
    assert sqlite3.connect(target).execute("SELECT count(*) FROM conversation").fetchone() == (12,)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [], "no partial file left"

    code, out, err = await cli("postgresql://ops:s3cret@db.internal:5433/unsilo?search_path=prod", "db", "backup", "u.dump")
    assert code == 0, err
    assert out.splitlines()[0] == "pg_dump --format=custom --file=u.dump --schema=prod postgresql://ops@db.internal:5433/unsilo"
    assert "s3cret" not in out and "PGPASSWORD" in out


def _at(table: str, column: str) -> int:
    return list(SQLModel.metadata.tables[table].c.keys()).index(column)


def _demo_rows(before: Dump, names: dict[int, str]) -> Dump:
    """The rows the demo put in: its conversations, their rows, bob (who acted only on them) and the source."""
    demo = {row[0] for row in before["conversation"] if row[_at("conversation", "source")] == bot.cli.DEMO_SOURCE}
    bob = {pid for pid, name in names.items() if name == "bob"}
    picked: Dump = {}
    for table in SQLModel.metadata.sorted_tables:

        def is_demo(row: tuple[Any, ...], table: Table = table) -> bool:
            if table.name == "conversation":
                return row[0] in demo
            if table.name == "source":
                return row[_at("source", "name")] == bot.cli.DEMO_SOURCE
            if table.name == "person":
                return row[0] in bob
            if table.name == "identity":
                return row[_at("identity", "person_id")] in bob
            return "conversation_id" in table.c and row[_at(table.name, "conversation_id")] in demo

        picked[table.name] = [row for row in before[table.name] if is_demo(row)]
    return picked


async def test_the_demo_refuses_real_data_and_its_reset_removes_exactly_what_it_added(cli: CLI, database_url: str) -> None:
    url = database_url
    for args in (
        ("demo",),
        ("note", "3", "Checked the order: courier lost it", "--as", "bob"),  # bob tries the demo
        ("report", "A real post: my invoice is wrong, refund please", "--as", "alice"),  # real work begins
        ("claim", "13", "--as", "carol"),
    ):
        code, out, err = await cli(url, *args)
        assert code == 0, (args, err)

    before = await dump(url)
    code, out, err = await cli(url, "demo")
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "holds 1 conversation that is not the demo's" in err and "--into-existing" in err and "--reset" in err
    assert await dump(url) == before, "a refused demo writes nothing"

    names = {row[0]: row[1] for row in before["person"]}
    demo = _demo_rows(before, names)
    code, out, err = await cli(url, "demo", "--reset")
    assert code == 0, err
    assert out.startswith("removed the demo, rows per table: ") and "nothing else was touched" in out
    assert "conversation 12," in out and "note 1," in out and "person 1," in out and "source 1;" in out
    after = await dump(url)
    for table, rows in before.items():
        assert after[table] == [row for row in rows if row not in demo[table]], f"{table}: the real rows, byte for byte"
    assert "bob" not in {row[1] for row in after["person"]}, "bob only ever acted on the demo"
    real = next(row for row in after["conversation"] if row[0] == 13)
    kept = {row[0] for row in after["person"]}
    assert {real[_at("conversation", "owner_id")], real[_at("conversation", "reported_by_id")]} <= kept, (
        "carol and alice did real work"
    )

    code, out, err = await cli(url, "demo", "--into-existing")
    assert code == 0 and "Ingested 12 new conversations" in out, err
    code, out, err = await cli(url, "demo", "--reset")
    assert code == 0 and "conversation 12," in out, err
    assert await dump(url) == after


async def test_copy_reads_in_chunks_by_key_and_does_not_wait_for_a_writer(cli: CLI, tmp_path: Path) -> None:
    source_file = tmp_path / "live.db"
    assert (await cli(f"sqlite:///{source_file}", "demo"))[0] == 0
    original = await dump(f"sqlite:///{source_file}")
    writer = sqlite3.connect(source_file, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # the service, mid-write: the copy reads the last committed state beside it
    writer.execute("DELETE FROM rule")
    source, target = create_engine(f"sqlite:///{source_file}"), create_engine(f"sqlite:///{tmp_path / 'copy.db'}")
    try:
        report = await asyncio.wait_for(copy_store(source, target, chunk=2), timeout=20)
    finally:
        writer.execute("ROLLBACK")
        await source.dispose()
        await target.dispose()
    assert dict(report.counts)["identity"] == len(original["identity"]) > 2, "a two-column key, read two rows at a time"
    assert await dump(f"sqlite:///{tmp_path / 'copy.db'}") == original
