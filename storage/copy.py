"""Copy a whole store into another (`unsilo db copy --to URL`): SQLite to PostgreSQL and back.

The target is migrated to the newest schema, then every table of the models is copied in
dependency order, in chunks read by primary key (bounded memory), inside ONE transaction on
the target, with the same ids; PostgreSQL sequences are then moved past the copied ids. The
source is read in one snapshot (PostgreSQL: REPEATABLE READ; SQLite: a deferred read
transaction, so a running service keeps writing). A target holding any row of ours is refused
before anything is changed; the row counts of every table are checked before the commit.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Integer, Table, func, insert, inspect, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import SQLModel

from storage import migrate
from storage.db import READ_SNAPSHOT

logger = logging.getLogger(__name__)

CHUNK = 1000  # rows per read and per insert


class CopyRefused(Exception):
    """The copy was not started (nothing changed): the reason, for the user, in one line."""


@dataclass(frozen=True)
class CopyReport:
    """What was copied: rows per table, in the order they were copied."""

    counts: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        """Rows copied in all."""
        return sum(n for _, n in self.counts)


def tables() -> list[Table]:
    """Our tables, parents before children (Alembic's own version table is not among them)."""
    return list(SQLModel.metadata.sorted_tables)


async def rows_in_use(conn: AsyncConnection, names: Sequence[str] | None = None) -> list[str]:
    """The names of our tables (those of `names` that exist) holding at least one row."""
    existing = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    busy = []
    for table in tables():
        if table.name in existing and (names is None or table.name in names):
            if (await conn.execute(select(text("1")).select_from(table).limit(1))).first() is not None:
                busy.append(table.name)
    return busy


async def _chunks(conn: AsyncConnection, table: Table, chunk: int) -> AsyncIterator[list[dict[str, Any]]]:
    """Every row of `table`, `chunk` at a time, by primary key (keyset: no OFFSET)."""
    key = list(table.primary_key.columns)
    last: tuple[Any, ...] | None = None
    while True:
        stmt = select(table).order_by(*key).limit(chunk)
        if last is not None:
            stmt = stmt.where(key[0] > last[0] if len(key) == 1 else tuple_(*key) > tuple_(*last))
        rows = [dict(r._mapping) for r in (await conn.execute(stmt)).all()]
        if not rows:
            return
        yield rows
        last = tuple(rows[-1][c.name] for c in key)


async def _count(conn: AsyncConnection, table: Table) -> int:
    return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())


async def _reset_sequences(conn: AsyncConnection) -> None:
    """PostgreSQL: each serial id's sequence continues after the largest copied id."""
    for table in tables():
        key = list(table.primary_key.columns)
        if len(key) != 1 or not isinstance(key[0].type, Integer):
            continue
        column = key[0].name
        await conn.execute(
            text(
                f'SELECT setval(pg_get_serial_sequence(:table, :column), COALESCE(MAX("{column}"), 1), '  # noqa: S608 - our own names
                f'MAX("{column}") IS NOT NULL) FROM "{table.name}"'
            ),
            {"table": table.name, "column": column},
        )


async def copy_store(source: AsyncEngine, target: AsyncEngine, *, chunk: int = CHUNK) -> CopyReport:
    """Copy every row of `source` into the empty store `target`, keeping ids; raises `CopyRefused`."""
    counts: list[tuple[str, int]] = []
    async with source.connect() as read:
        if source.dialect.name == "postgresql":
            read = await read.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        else:
            read = await read.execution_options(**{READ_SNAPSHOT: True})
        async with read.begin():
            revision = await read.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
            if revision != migrate.head_revision():
                raise CopyRefused("the source store is not at the newest schema: run `unsilo db upgrade` on it first")
            async with target.connect() as conn:
                busy = await rows_in_use(conn)
            if busy:
                raise CopyRefused(
                    f"the target is not empty ({', '.join(busy)} hold rows): copy into an empty store; nothing was changed"
                )
            await migrate.upgrade(target)
            async with target.begin() as write:
                if await rows_in_use(write):  # filled since the check above (another copy?): nothing is written
                    raise CopyRefused("the target was written to while the copy started: nothing was copied")
                for table in tables():
                    copied = 0
                    async for rows in _chunks(read, table, chunk):
                        await write.execute(insert(table), rows)
                        copied += len(rows)
                    expected, landed = await _count(read, table), await _count(write, table)
                    if not expected == landed == copied:
                        raise RuntimeError(f"{table.name}: {expected} rows in the source, {copied} read, {landed} in the target")
                    counts.append((table.name, copied))
                    logger.info("copied %s: %d rows", table.name, copied)
                if target.dialect.name == "postgresql":
                    await _reset_sequences(write)
    return CopyReport(tuple(counts))
