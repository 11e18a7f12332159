"""Shared fixtures: a real store (SQLite file, PostgreSQL schema) and the reference data."""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.bootstrap import Container, build, load_config
from bot.config import Config
from bot.settings import Settings

# The browser plugin (tests/browser.py) is also imported by the modules using its helpers: rewrite its asserts.
pytest.register_assert_rewrite("tests.browser")

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_URL = os.environ.get("UNSILO_TEST_POSTGRES", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")

TEST_CONFIG = """
[unsilo]
default_department = "triage"
require_claim_to_reply = true

# Managers are named by their [people] key: their CLI login and Slack account are one person.
[people.carol]
slack = "carol"
cli = "carol"

[people.dana]
slack = "dana"
cli = "dana"

[departments.triage]
managers = ["carol"]
channels = ["log:triage"]

[departments.support]
sla_minutes = 120
managers = ["carol"]
channels = ["log:support"]

[departments.ops]
managers = ["erin"]
channels = ["log:ops"]

[departments.legal]
managers = ["dana"]
channels = ["log:legal"]

[[rules]]
name = "legal"
departments = ["legal"]
any = ["lawyer", "lawsuit", "sue"]
priority = "high"
tags = ["legal"]
sensitive = true

[[rules]]
name = "delivery"
departments = ["ops"]
any = ["parcel", "delivery", "courier"]
tags = ["delivery"]

[[rules]]
name = "support"
departments = ["support"]
any = ["refund", "broken", "help"]
"""


def reference_dir() -> Path:
    """`../shared/reference`, or skip with the reason (a user's own clone has no shared/; CI has it)."""
    if not REFERENCE.is_dir():
        pytest.skip(
            f"reference data not found at {REFERENCE}: these tests replay real Slack/Teams samples "
            "and official schemas kept in the project's shared/ folder beside the checkout"
        )
    return REFERENCE


@pytest.fixture
def reference() -> Path:
    return reference_dir()


@pytest.fixture
def test_config(tmp_path: Path) -> Config:
    path = tmp_path / "unsilo.toml"
    path.write_text(TEST_CONFIG)
    return load_config(path)


def service_env(**values: str) -> dict[str, str]:
    """The environment of an `unsilo run` (or CLI) subprocess: this one's, without any setting of
    ours or platform credential that could leak in, with the repository importable and `values` set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "Microsoft", "DATABASE_URL", "UNSILO_"))}
    env.update(PYTHONPATH=str(ROOT), **values)
    return env


class FakeClock:
    """A clock the test moves by hand (no sleeps)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 16, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


async def _postgres_schema(*, migrated: bool = False) -> str:
    """A fresh schema in the test database (so runs never see each other's rows); `migrated`: at the
    migrations' head, built by replaying the DDL the migrations ran once this session (`_pg_migration`)."""
    import asyncpg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    dsn = PG_URL.replace("postgresql+asyncpg://", "postgresql://")
    script = await _pg_migration() if migrated else ""
    try:
        conn = await asyncio.wait_for(asyncpg.connect(dsn), timeout=5)
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"CI=true but PostgreSQL at {PG_URL} is unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable: {exc}")
    try:
        async with conn.transaction():
            await conn.execute(f'CREATE SCHEMA "{schema}"; SET LOCAL search_path TO "{schema}";\n{script}')
    finally:
        await conn.close()
    return schema


async def _drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


# A store at the migrations' head, made once per test session and copied for each test: running the
# fourteen migrations through Alembic takes about a second per store, and most tests start from one.
# The copy is what the migrations built (tests/test_migrations.py compares it with the models).
_SQLITE_TEMPLATE: Path | None = None
_PG_SCRIPT: str | None = None


async def migrated_sqlite(path: Path) -> str:
    """A SQLite store at `path` at the migrations' head (a copy of one migrated this session); its URL."""
    global _SQLITE_TEMPLATE
    if _SQLITE_TEMPLATE is None:
        from storage import migrate
        from storage.db import create_engine

        folder = Path(tempfile.mkdtemp(prefix="unsilo-template-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        template = folder / "unsilo.db"
        engine = create_engine(f"sqlite+aiosqlite:///{template}")
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()
        with closing(sqlite3.connect(template)) as conn:  # everything in the main file: copying it copies the store
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        _SQLITE_TEMPLATE = template
    shutil.copyfile(_SQLITE_TEMPLATE, path)
    return f"sqlite+aiosqlite:///{path}"


async def _pg_migration() -> str:
    """The SQL the migrations ran on an empty PostgreSQL schema (captured once, run as one script).

    Only statements without parameters change the schema: the parameterized ones are Alembic's and
    SQLAlchemy's reads of the catalog (checked here, so a migration that writes with parameters fails loudly)."""
    global _PG_SCRIPT
    if _PG_SCRIPT is None:
        from sqlalchemy import event

        from storage import migrate
        from storage.db import create_engine

        schema = await _postgres_schema()
        engine = create_engine(f"{PG_URL}?search_path={schema}")
        statements: list[str] = []

        def capture(conn: object, cursor: object, statement: str, parameters: object, context: object, many: bool) -> None:
            if not parameters:
                statements.append(statement.strip().rstrip(";"))
            elif not statement.lstrip().upper().startswith("SELECT"):
                raise AssertionError(f"a migration wrote with parameters; replay it in tests/conftest.py: {statement}")

        event.listen(engine.sync_engine, "before_cursor_execute", capture)
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()
            await _drop_schema(schema)
        script = "\n;\n".join(statements) + "\n;"  # a statement may end in a -- comment
        if schema in script:
            raise AssertionError(f"a migration named its schema; replaying it elsewhere would not be the same: {schema}")
        _PG_SCRIPT = script
    return _PG_SCRIPT


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A real store at the migrations' head: a SQLite file, or a private schema on the PostgreSQL server."""
    if request.param == "sqlite":
        yield await migrated_sqlite(tmp_path / "unsilo.db")
        return
    schema = await _postgres_schema(migrated=True)
    yield f"{PG_URL}?search_path={schema}"
    await _drop_schema(schema)


@pytest.fixture
def make_container(database_url: str, test_config: Config) -> Callable[..., Container]:
    """Build containers on the same store (several = several processes' worth)."""

    def make(**kwargs: object) -> Container:
        # Loopback stand-ins (feeds, reply endpoints) are internal addresses: allowed as an operator would.
        settings = Settings(database_url=database_url, allow_private_urls=("127.0.0.1",))
        return build(settings, config=kwargs.pop("config", test_config), **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
async def container(make_container: Callable[..., Container]) -> AsyncIterator[Container]:
    """A prepared (migrated, config-synced) container on a fresh store."""
    c = make_container()
    await c.prepare()
    yield c
    await c.close()
