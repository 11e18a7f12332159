"""Remove one source's conversations and everything hanging off them (`unsilo demo --reset`).

What hangs off a conversation is found from the models' foreign keys, not listed by hand: every
row that refers to one of the conversations (events, notes, replies, postings, deliveries,
departments links), and the rows that refer to those, and so on. People those rows named go too
when nothing else refers to them any more (a nullable reference keeps a person; their own
accounts, a required reference, go with them), unless the config declares them.
"""

from __future__ import annotations

import logging

from sqlalchemy import ColumnElement, Table, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel

logger = logging.getLogger(__name__)

CONFIG_ACCOUNTS = "config"  # the identity platform of people declared in the config's [people]


def _table(name: str) -> Table:
    return SQLModel.metadata.tables[name]


async def conversations_not_from(conn: AsyncConnection, source: str) -> int:
    """How many conversations came from anywhere but `source`."""
    conversation = _table("conversation")
    stmt = select(func.count()).select_from(conversation).where(conversation.c.source != source)
    return int((await conn.execute(stmt)).scalar_one())


def _hanging_off(root: Table, where: ColumnElement[bool]) -> dict[Table, ColumnElement[bool]]:
    """Which rows of each table go with the rows of `root` that match `where` (parents first)."""
    doomed: dict[Table, ColumnElement[bool]] = {root: where}
    for table in SQLModel.metadata.sorted_tables:  # a parent's condition is complete before its children's
        ways = [
            fk.parent.in_(select(fk.column).where(doomed[fk.column.table]))
            for fk in table.foreign_keys
            if fk.column.table in doomed and fk.column.table is not table
        ]
        if ways and table is not root:
            doomed[table] = or_(*ways)
    return doomed


async def purge_source(conn: AsyncConnection, source: str) -> dict[str, int]:
    """Delete `source`'s conversations, what hangs off them, the people only they named and the
    source's own row, on `conn` (the caller's transaction); rows deleted per table."""
    conversation, person = _table("conversation"), _table("person")
    doomed = _hanging_off(conversation, conversation.c.source == source)
    named: set[int] = set()  # people the doomed rows refer to
    for table, where in doomed.items():
        for fk in table.foreign_keys:
            if fk.column.table is person:
                found = await conn.execute(select(fk.parent).where(where, fk.parent.is_not(None)).distinct())
                named.update(found.scalars())
    deleted = {table.name: 0 for table in doomed}  # reported parents first
    for table in reversed(SQLModel.metadata.sorted_tables):  # deleted children first
        if table in doomed:
            deleted[table.name] = (await conn.execute(delete(table).where(doomed[table]))).rowcount
    lonely = await _unreferenced(conn, named)
    if lonely:
        for table in SQLModel.metadata.sorted_tables:  # what belongs to a person (a required key): their accounts
            for fk in table.foreign_keys:
                if fk.column.table is person and not fk.parent.nullable:
                    gone = (await conn.execute(delete(table).where(fk.parent.in_(sorted(lonely))))).rowcount
                    deleted[table.name] = deleted.get(table.name, 0) + gone
        gone = (await conn.execute(delete(person).where(person.c.id.in_(sorted(lonely))))).rowcount
        deleted["person"] = deleted.get("person", 0) + gone
    source_table = _table("source")
    deleted["source"] = (await conn.execute(delete(source_table).where(source_table.c.name == source))).rowcount
    logger.info("purged source %s: %s", source, deleted)
    return {name: n for name, n in deleted.items() if n}


async def _unreferenced(conn: AsyncConnection, candidates: set[int]) -> set[int]:
    """Those of `candidates` that no row refers to (by a nullable key) and the config does not declare."""
    person, identity = _table("person"), _table("identity")
    left = set(candidates)
    for table in SQLModel.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if left and fk.column.table is person and fk.parent.nullable:
                found = await conn.execute(select(fk.parent).where(fk.parent.in_(sorted(left))).distinct())
                left -= set(found.scalars())
    if left:
        declared = select(identity.c.person_id).where(
            identity.c.platform == CONFIG_ACCOUNTS, identity.c.person_id.in_(sorted(left))
        )
        left -= set((await conn.execute(declared)).scalars())
    return left
