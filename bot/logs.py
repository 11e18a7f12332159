"""Logging set-up of the `unsilo` command: one line per event (or one JSON object, LOG_FORMAT=json),
at LOG_LEVEL, quiet about what is polled, and no flood of the same line.

Under attack or outage the same line can come thousands of times a second (aiohttp's
"socket.accept() out of system resource" once per refused connection, a peer's repeated
failure): `RepeatFilter` lets the first through, drops the repeats for `window` seconds,
then says how many were dropped.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime


class RepeatFilter(logging.Filter):
    """Drops a record that repeats an earlier one (same logger, level and message) within `window`."""

    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window, self.clock = window, clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage())
        now = self.clock()
        first, dropped = self._seen.get(key, (0.0, 0))
        if key in self._seen and now - first < self.window:
            self._seen[key] = (first, dropped + 1)
            return False
        if dropped:
            record.msg, record.args = (
                (f"{record.getMessage()} (and {dropped} more like it in the last {self.window:g} s, not shown)"),
                None,
            )
        self._seen[key] = (now, 0)
        if len(self._seen) > 10_000:  # never grows without bound
            self._seen.clear()
        return True


PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET_PATHS = re.compile(r"^[A-Z]+ /(?:healthz|metrics)(?:[?# ]|$)")  # polled every few seconds: no line each
CHATTY = ("apscheduler",)  # "Running job …" / "… executed successfully" at INFO, every run of every job


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and the exception when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class QuietProbes(logging.Filter):
    """Drops the access-log line of a `/healthz` or `/metrics` request (a monitor's poll), unless at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        line = getattr(record, "first_request_line", "")
        return not (isinstance(line, str) and QUIET_PATHS.match(line))


def parse_level(value: str | int) -> int | None:
    """A level from a name (`debug`, `WARNING`) or a number (`10`); None if it is neither."""
    if isinstance(value, int):
        return value
    text = value.strip()
    if text.isdigit():
        return int(text)
    found = logging.getLevelName(text.upper())
    return found if isinstance(found, int) else None


def configure(default: int, *, level: str = "", fmt: str = "") -> None:
    """Log to stderr, one line per record (`fmt="json"`: one JSON object), repeats limited.

    `level` (LOG_LEVEL, a name or a number) wins over the command's `default` when set; a bad one is
    said in a warning and the default kept. Below DEBUG's verbosity, the access lines of `/healthz`
    and `/metrics` and APScheduler's line per job run are left out.
    """
    chosen = parse_level(level) if level else default
    root = logging.getLogger()
    ours = not root.handlers  # handlers someone else installed (a test runner, a host app) are left alone
    logging.basicConfig(level=default if chosen is None else chosen, format=PLAIN)
    for handler in root.handlers if ours else ():
        handler.addFilter(RepeatFilter())
        if fmt == "json":
            handler.setFormatter(JsonFormatter())
    if chosen is None:
        logging.getLogger(__name__).warning(
            "LOG_LEVEL=%r is not a level (DEBUG, INFO, WARNING, ERROR, CRITICAL or a number); using %s",
            level,
            logging.getLevelName(default),
        )
    if fmt not in ("", "json", "plain", "text"):
        logging.getLogger(__name__).warning("LOG_FORMAT=%r is not known (json or plain); writing plain lines", fmt)
    quiet(root.getEffectiveLevel())


def quiet(level: int) -> None:
    """Keep the pollers' access lines and the scheduler's per-run lines out of the log at `level` above DEBUG."""
    access = logging.getLogger("aiohttp.access")
    for existing in [f for f in access.filters if isinstance(f, QuietProbes)]:
        access.removeFilter(existing)
    if level > logging.DEBUG:
        access.addFilter(QuietProbes())
    for name in CHATTY:
        logging.getLogger(name).setLevel(logging.WARNING if level > logging.DEBUG else logging.NOTSET)
