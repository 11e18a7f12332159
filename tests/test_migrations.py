"""The Alembic migration builds exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from bot.bootstrap import Container
from storage import migrate


async def test_migrated_schema_matches_the_models(container: Container) -> None:
    def diff(connection):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(connection, opts={"include_object": migrate.include_object})
        return compare_metadata(context, SQLModel.metadata)

    async with container.engine.connect() as conn:
        differences = await conn.run_sync(diff)
    assert differences == []
    assert await migrate.current_revision(container.engine) == migrate.head_revision()


async def test_upgrading_twice_is_harmless(container: Container) -> None:
    await migrate.upgrade(container.engine)
    assert await migrate.current_revision(container.engine) == migrate.head_revision()


def test_the_head_read_without_alembic_is_alembics_head() -> None:
    """`migrate.upgrade` skips Alembic on a store at `shipped_head()`: it must be Alembic's own head."""
    assert migrate.shipped_head() == migrate.head_revision() is not None
