"""The CLI's store maintenance: `unsilo db copy`, `unsilo db backup` and the demo's guard and reset.

The work is in `storage/` (`copy`, `backup`, `purge`); this module says what was done, one line per
fact, and turns the storage's refusals into the CLI's one-line refusals (`InvalidInput`, exit 1).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.domain import InvalidInput
from bot.views import printable
from storage import backup as backups
from storage import masked_url
from storage.copy import CopyRefused, copy_store
from storage.db import UNAVAILABLE, create_engine, normalize_url
from storage.purge import conversations_not_from, purge_source

logger = logging.getLogger(__name__)


def _say(line: str) -> None:
    print(printable(line))  # noqa: T201 - the CLI's output; URLs and names are made inert


def usage_problem(action: str, *, file: str | None, to: str | None) -> str | None:
    """What is wrong with `unsilo db ACTION`'s arguments, if anything (argparse reports it, exit 2)."""
    if action == "copy" and not to:
        return "db copy needs --to URL (the empty store to copy into)"
    if action == "backup" and not file:
        return "db backup needs FILE (where to write the backup)"
    if action != "copy" and to:
        return "--to is only for db copy"
    if action != "backup" and file:
        return f"db {action} takes no FILE"
    return None


async def copy(source: AsyncEngine, to: str) -> int:
    """Copy the configured store into the empty store at `to`; print each table's row count.

    0 done; 3 the target does not answer (refusals raise `InvalidInput`: exit 1)."""
    try:
        url = normalize_url(to)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    _say(f"copying {masked_url(str(source.url))} to {masked_url(url)}")
    target = create_engine(url, pool_size=1)
    try:
        report = await copy_store(source, target)
    except CopyRefused as exc:
        logger.info("copy to %s refused: %s", masked_url(url), exc)
        raise InvalidInput(f"cannot copy to {masked_url(url)}: {exc}") from None
    except UNAVAILABLE as exc:
        print(printable(f"cannot reach the store to copy into, {masked_url(url)}: {exc}"), file=sys.stderr)  # noqa: T201
        return 3
    finally:
        await target.dispose()
    for name, count in report.counts:
        _say(f"  {name}: {count} row{'s' if count != 1 else ''}")
    _say(f"copied {report.total} rows in {len(report.counts)} tables; the counts match; ids are kept")
    return 0


async def backup(database_url: str, file: str, *, force: bool) -> int:
    """Back up the configured store into `file` (SQLite), or print the `pg_dump` line (PostgreSQL)."""
    url = normalize_url(database_url)
    if url.startswith("postgresql"):
        line, had_password = backups.pg_dump_command(url, file)
        _say(line)
        if had_password:
            _say("(the password is left out: pg_dump reads it from $PGPASSWORD or ~/.pgpass)")
        return 0
    path = backups.sqlite_path(url)
    if path is None:
        raise InvalidInput(f"cannot back up {masked_url(url)}: only a SQLite file or PostgreSQL")
    try:
        done = await backups.backup_sqlite(path, Path(file), force=force)
    except backups.BackupRefused as exc:
        logger.info("backup refused: %s", exc)
        raise InvalidInput(str(exc)) from None
    _say(f"backed up {path} to {done.path} ({done.size} bytes, {done.pages} pages, integrity ok)")
    return 0


async def refuse_non_demo(engine: AsyncEngine, demo_source: str) -> None:
    """Refuse to put the demo into a store that holds real conversations (unless --into-existing)."""
    async with engine.connect() as conn:
        others = await conversations_not_from(conn, demo_source)
    if others:
        logger.info("demo refused: the store holds %d conversations from other sources", others)
        raise InvalidInput(
            f"this store holds {others} conversation{'s that are' if others != 1 else ' that is'} not the demo's: "
            "`unsilo demo --into-existing` adds the demo anyway, `unsilo demo --reset` removes it again"
        )


async def demo_reset(engine: AsyncEngine, demo_source: str) -> None:
    """Remove what the demo added, in one transaction, and say how many rows of each table went."""
    async with engine.begin() as conn:
        deleted = await purge_source(conn, demo_source)
    if not deleted:
        _say("no demo data in this store: nothing removed")
        return
    listed = ", ".join(f"{name} {n}" for name, n in deleted.items())
    _say(f"removed the demo, rows per table: {listed}; nothing else was touched")
