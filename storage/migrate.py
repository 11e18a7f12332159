"""Alembic migrations, run programmatically on an async engine (`unsilo db upgrade`)."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.db import STARTUP_LOCK

if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")


def include_object(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """What Alembic compares with the models: everything but the full-text index's own tables (the
    migration makes them, `storage.search`: no model describes an FTS5 table or a tsvector)."""
    from storage import answers, search

    def is_index_table(table_name: str | None) -> bool:
        return search.is_index_table(table_name) or answers.is_index_table(table_name)

    if type_ == "table":
        return not is_index_table(name)
    table = getattr(obj, "table", None)
    return not is_index_table(getattr(table, "name", None))


def alembic_config() -> Config:
    """An Alembic config pointing at our migrations (no alembic.ini needed)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _upgrade(connection: Any, config: Config, revision: str) -> None:
    from alembic import command

    config.attributes["connection"] = connection
    command.upgrade(config, revision)


@asynccontextmanager
async def startup_lock(engine: AsyncEngine) -> AsyncIterator[None]:
    """On PostgreSQL, one starting replica at a time (a session advisory lock); nothing on SQLite."""
    if engine.dialect.name != "postgresql":
        yield
        return
    async with engine.connect() as conn:
        await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": STARTUP_LOCK})
        await conn.commit()
        try:
            yield
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": STARTUP_LOCK})
            await conn.commit()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to `revision` (idempotent; safe on every start).

    A store already at the shipped head is left alone without importing Alembic (a tenth of a
    second of every CLI command's start): its version row is read and compared with `shipped_head`."""
    if revision == "head":
        head = shipped_head()
        if head is not None and await _stored_revisions(engine) == {head}:
            return
    config = alembic_config()
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, config, revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None: never migrated)."""
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


def head_revision() -> str | None:
    """The newest revision shipped with this version."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


_ASSIGNED = r"^{name}\s*(?::[^=\n]*)?=\s*['\"]([^'\"\n]+)['\"]"


def shipped_head() -> str | None:
    """The newest revision as the version files' `revision` / `down_revision` lines say, read
    without Alembic; None unless that gives exactly one head (a merge's tuple is not read: then
    `upgrade` asks Alembic). `tests/test_migrations.py` holds it to `head_revision()`."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        source = path.read_text(encoding="utf-8")
        for name, found in (("revision", revisions), ("down_revision", parents)):
            match = re.search(_ASSIGNED.format(name=name), source, re.MULTILINE)
            if match:
                found.add(match.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


async def _stored_revisions(engine: AsyncEngine) -> set[str]:
    """The revisions in the store's `alembic_version` table (empty: never migrated)."""

    def read(connection: Any) -> set[str]:
        if not inspect(connection).has_table("alembic_version"):
            return set()
        return {row[0] for row in connection.execute(text("SELECT version_num FROM alembic_version"))}

    async with engine.connect() as conn:
        return await conn.run_sync(read)
