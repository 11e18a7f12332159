"""What the CLI says when a command fails: one line naming what actually failed.

A busy port is a busy port, a missing file is that file, and "cannot use the store" is said
only when the store is what failed (an error raised inside the database drivers, SQLAlchemy,
Alembic or `storage`). Anything else is a bug and keeps its traceback (`explain` returns None).
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from storage import masked_url

# Where a store failure comes from: an exception raised in (or by) one of these packages.
STORE_PACKAGES = ("sqlalchemy", "asyncpg", "aiosqlite", "sqlite3", "alembic", "storage")

# Exit codes (bot/cli.py's docstring): 1 refused, 3 the config, the store or the port is unusable.
REFUSED = 1
UNUSABLE = 3


@dataclass(frozen=True)
class Failure:
    message: str
    code: int


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and what caused it, outermost first."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def from_store(exc: BaseException) -> bool:
    """True if `exc` (or what caused it) is a driver's or SQLAlchemy's error, or an OSError or
    ValueError raised inside the store's code or its drivers."""
    for link in _chain(exc):
        if type(link).__module__.split(".")[0] in STORE_PACKAGES:
            return True
        if not isinstance(link, OSError | ValueError):  # a bug in our code stays a bug, even in `storage`
            continue
        tb = link.__traceback__
        while tb is not None:
            module = str(tb.tb_frame.f_globals.get("__name__", ""))
            if module.split(".")[0] in STORE_PACKAGES:
                return True
            tb = tb.tb_next
    return False


def _driver_reason(exc: BaseException) -> str:
    """The innermost readable reason: the driver's own message, not SQLAlchemy's wrapper with its SQL."""
    for link in reversed(_chain(exc)):
        if type(link).__module__.split(".")[0] in ("asyncpg", "sqlite3") or isinstance(link, OSError):
            text = _first_line(str(link))
            if text:
                return text.removeprefix(f"<class '{type(link).__module__}.{type(link).__qualname__}'>: ")
    orig = getattr(exc, "orig", None)
    text = _first_line(str(orig if orig is not None else exc))
    return text.split(">: ", 1)[1] if text.startswith("<class '") and ">: " in text else text or type(exc).__name__


def _connection_reason(exc: BaseException) -> str | None:
    """ "connection refused" and the like, when the store's server could not be reached at all."""
    for link in _chain(exc):
        if isinstance(link, ConnectionRefusedError) or getattr(link, "errno", None) == errno.ECONNREFUSED:
            return "connection refused"
        if isinstance(link, socket.gaierror):
            return f"unknown host ({link.strerror or link})"
        if isinstance(link, TimeoutError):
            return "no answer (timed out)"
        if isinstance(link, OSError) and "Connect call failed" in str(link):
            return "connection refused"
    return None


def store_failure(exc: BaseException, database_url: str) -> Failure:
    """One line about a store that failed, its password masked."""
    where = masked_url(database_url)
    unreachable = _connection_reason(exc)
    if unreachable:
        return Failure(f"cannot connect to the store at {where}: {unreachable}", UNUSABLE)
    reason = _driver_reason(exc)
    if "no schema has been selected" in reason or ("schema" in reason and "does not exist" in reason):
        reason += " (create the schema named by ?search_path= first: CREATE SCHEMA name)"
    elif "database" in reason and "does not exist" in reason:
        reason += " (create it first: createdb, or CREATE DATABASE name)"
    return Failure(f"cannot use the store at {where}: {reason}", UNUSABLE)


def explain(exc: BaseException, *, database_url: str, host: str = "", port: int | None = None) -> Failure | None:
    """The one line (and exit code) for a command that raised `exc`, or None for a bug."""
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE and port is not None:
        return Failure(f"port {port} on {host} is in use: stop the other process or set PORT/--port", UNUSABLE)
    if from_store(exc):
        return store_failure(exc, database_url)
    if isinstance(exc, OSError) and exc.filename is not None:
        return Failure(f"cannot use {exc.filename}: {exc.strerror or exc}", REFUSED)
    return None
