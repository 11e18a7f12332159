"""Async engines and session factories for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy import exc as sqlalchemy_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import ORMExecuteState, UOWTransaction
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession
from sqlmodel.orm.session import Session

from storage import (
    DEFAULT_DATABASE_URL,
    masked_url,
    models,  # noqa: F401  (registers the tables on SQLModel.metadata)
)

logger = logging.getLogger(__name__)


_ALIASES = {
    "sqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
}


def normalize_url(url: str) -> str:
    """Accept plain `sqlite:///` / `postgresql://` URLs and pick the async driver."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {masked_url(url)!r} (expected e.g. {DEFAULT_DATABASE_URL})")
    driver = _ALIASES.get(scheme, scheme)
    if driver not in _ALIASES.values():
        raise ValueError(
            f"unsupported store URL scheme {scheme!r}: use sqlite+aiosqlite:///path/to/unsilo.db "
            "or postgresql+asyncpg://user:password@host/database"
        )
    return f"{driver}://{rest}"


def is_sqlite(engine: AsyncEngine) -> bool:
    """True for the embedded SQLite store."""
    return engine.dialect.name == "sqlite"


def create_engine(
    url: str = DEFAULT_DATABASE_URL, *, pool_size: int = 10, pool_timeout: float = 10.0, **kwargs: Any
) -> AsyncEngine:
    """Build an async engine; on SQLite, make concurrent writers queue instead of failing.

    SQLite gets WAL, a 30 s busy timeout and `BEGIN IMMEDIATE` for every transaction,
    so a read-then-write transaction never hits SQLITE_BUSY on its upgrade to a writer.
    """
    parsed = make_url(normalize_url(url))
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        database = parsed.database or ":memory:"
        kwargs.setdefault("async_creator", partial(_connect_sqlite, database))
    else:
        # `?search_path=schema` keeps a deployment (or a test run) in its own schema.
        search_path = parsed.query.get("search_path")
        connect_args = dict(kwargs.pop("connect_args", {}))
        if search_path:
            parsed = parsed.difference_update_query(["search_path"])
            connect_args.setdefault("server_settings", {"search_path": str(search_path)})
        # asyncpg waits forever by default: a stalled server would hang every request, and
        # `pool_pre_ping` runs outside any wait_for around the query (PLATFORM_NOTES).
        connect_args.setdefault("timeout", CONNECT_TIMEOUT)
        connect_args.setdefault("command_timeout", COMMAND_TIMEOUT)
        kwargs["connect_args"] = connect_args
        kwargs.setdefault("pool_size", pool_size)  # PostgreSQL only: SQLite has one connection per file
        kwargs.setdefault("max_overflow", pool_size)
        kwargs.setdefault("pool_timeout", pool_timeout)
        kwargs.setdefault("pool_pre_ping", True)
    engine = create_async_engine(parsed, **kwargs)
    if sqlite:
        _serialize_sqlite_writers(engine)
    return engine


BUSY_TIMEOUT = 30.0
CONNECT_TIMEOUT = 5.0  # seconds to open a PostgreSQL connection
COMMAND_TIMEOUT = 15.0  # seconds one PostgreSQL statement may take before it is abandoned
# PostgreSQL advisory lock keys ("unsilo" in hex, then one per purpose).
STARTUP_LOCK = 0x756E73696C6F  # replicas starting together migrate and sync the config in turn
LEASE_LOCK = STARTUP_LOCK + 1  # outbox lease rounds take turns
YIELD_EVERY = 0.001


# What a unit of work raises when the store did not answer (stalled, unreachable, its pool exhausted, SQLite
# locked past BUSY_TIMEOUT) rather than refused what was asked: worth trying the same thing again later.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    sqlalchemy_exc.TimeoutError,
    sqlalchemy_exc.OperationalError,
    sqlalchemy_exc.InterfaceError,
    TimeoutError,
    OSError,
)


_OFF_LOOP: ContextVar[bool] = ContextVar("unsilo_sqlite_off_loop", default=False)


@contextmanager
def off_loop() -> Iterator[None]:
    """SQLite statements run inside this block go to aiosqlite's worker thread, not the loop's.

    For the few reads that may scan a large store (search, digests and stats): the loop
    keeps serving clicks and acks while they run. Elsewhere statements stay inline (see
    `InlineSQLiteConnection`); PostgreSQL is unaffected either way.
    """
    token = _OFF_LOOP.set(True)
    try:
        yield
    finally:
        _OFF_LOOP.reset(token)


class InlineSQLiteConnection(aiosqlite.Connection):
    """aiosqlite, but statements run on the event loop's thread instead of a worker thread.

    A local SQLite statement takes tens of microseconds; handing each one to aiosqlite's
    thread and back costs more than that several times over (a claim is ~100 hops, ~10 ms).
    Running them inline removes the hops. The one thing that could block the loop, waiting
    for another process's write lock, never does: SQLite's own busy wait is off
    (`timeout=0`) and a busy database is retried here with asynchronous sleeps, for up to
    `BUSY_TIMEOUT` seconds. Connecting and closing still go through aiosqlite's thread, and
    so do statements inside `off_loop()` (long reads).
    """

    _ran_since = 0.0  # when this connection last gave the loop a turn

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        now = time.perf_counter()
        if now - self._ran_since > YIELD_EVERY:
            # A turn of the loop at least every YIELD_EVERY seconds of statements, so acks and
            # other requests are never starved; not every statement (a turn costs ~15 us).
            await asyncio.sleep(0)
            self._ran_since = time.perf_counter()
        deadline = time.monotonic() + BUSY_TIMEOUT
        delay = 0.001
        while True:
            try:
                if _OFF_LOOP.get():
                    return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]
                return fn(*args, **kwargs)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)


def _connect_sqlite(database: str) -> InlineSQLiteConnection:
    def connector() -> sqlite3.Connection:
        return sqlite3.connect(database, timeout=0, check_same_thread=False, isolation_level=None)

    connection = InlineSQLiteConnection(connector, iter_chunk_size=64)
    connection._thread.daemon = True
    return connection


def _serialize_sqlite_writers(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let SQLAlchemy emit BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_SNAPSHOT) else "BEGIN IMMEDIATE")


# Execution option for a connection that only reads but wants one snapshot across its statements
# (`unsilo db copy`): on SQLite a deferred BEGIN (WAL: writers go on), not the writer's IMMEDIATE.
READ_SNAPSHOT = "unsilo_read_snapshot"

WROTE = "unsilo.wrote"  # `session.info` key: whether the session ran anything but a read (absent: unknown)


class WriteTrackingSession(Session):
    """sqlmodel's Session, noting in `info[WROTE]` whether it ran any statement but a SELECT or
    flushed anything: a session that only read still holds the rows as committed, after a rollback
    too, so they need not be read again (`UnitOfWork.wrote`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.info[WROTE] = False


@event.listens_for(WriteTrackingSession, "do_orm_execute")
def _note_write(state: ORMExecuteState) -> None:
    if not state.is_select:
        state.session.info[WROTE] = True


@event.listens_for(WriteTrackingSession, "after_flush")
def _note_flush(session: Session, _flush: UOWTransaction) -> None:
    session.info[WROTE] = True


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit, and know whether they wrote."""
    return async_sessionmaker(engine, class_=AsyncSession, sync_session_class=WriteTrackingSession, expire_on_commit=False)


async def create_all(engine: AsyncEngine) -> None:
    """Create every table directly (tests); production uses `storage.migrate.upgrade`."""
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.create_all)


async def drop_all(engine: AsyncEngine) -> None:
    """Drop every table (tests on a shared PostgreSQL database)."""
    async with engine.begin() as conn:
        await conn.run_sync(SQLModel.metadata.drop_all)
