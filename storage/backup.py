"""Back up a store (`unsilo db backup FILE`).

SQLite: SQLite's online backup API (`sqlite3.Connection.backup`), in one step, so the copy is a
consistent snapshot while the service goes on writing (WAL: the reader never blocks a writer).
The copy is written beside FILE and renamed onto it only once it is whole and passes
`PRAGMA integrity_check`: an interrupted backup leaves no half file, and never replaces an
existing FILE unless asked to. PostgreSQL: the `pg_dump` command line to run.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url


class BackupRefused(Exception):
    """The backup was not made (nothing written): the reason, for the user, in one line."""


@dataclass(frozen=True)
class BackupReport:
    """A finished SQLite backup."""

    path: Path
    size: int  # bytes
    pages: int


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite store URL; None for another database or an in-memory one."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _backup(source: Path, target: Path, *, force: bool) -> BackupReport:
    if not source.is_file():
        raise BackupRefused(f"no SQLite store at {source}")
    if target.exists() and not force:
        raise BackupRefused(f"{target} already exists: give a new file, or --force to replace it")
    if target.resolve() == source.resolve():
        raise BackupRefused(f"{target} is the store itself: give another file")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    live = sqlite3.connect(source, timeout=30)  # only read; a writer's lock is waited for, at most 30 s
    try:
        copy = sqlite3.connect(partial)
        try:
            live.backup(copy)  # pages=-1: one step, one snapshot
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            (verdict,) = copy.execute("PRAGMA integrity_check").fetchone()
            (pages,) = copy.execute("PRAGMA page_count").fetchone()
        finally:
            copy.close()
        if verdict != "ok":
            raise BackupRefused(f"the backup failed its integrity check ({verdict}); {target} was not written")
        os.replace(partial, target)
    finally:
        live.close()
        partial.unlink(missing_ok=True)
    return BackupReport(path=target, size=target.stat().st_size, pages=int(pages))


async def backup_sqlite(source: Path, target: Path, *, force: bool = False) -> BackupReport:
    """Copy the SQLite store `source` into the new file `target` (off the event loop); raises `BackupRefused`."""
    return await asyncio.to_thread(_backup, source, target, force=force)


def pg_dump_command(url: str, target: str) -> tuple[str, bool]:
    """The `pg_dump` line that backs up the PostgreSQL store at `url` into `target` (custom format),
    and whether the URL had a password (left out of the line: pg_dump reads $PGPASSWORD or ~/.pgpass)."""
    parsed = make_url(url)
    schema = parsed.query.get("search_path")
    plain = parsed.set(drivername="postgresql", query={})._replace(password=None)
    words = ["pg_dump", "--format=custom", f"--file={target}"]
    for name in ",".join([schema] if isinstance(schema, str) else schema or []).split(","):
        if name.strip():
            words.append(f"--schema={name.strip()}")
    words.append(plain.render_as_string(hide_password=False))
    return " ".join(shlex.quote(w) for w in words), parsed.password is not None
