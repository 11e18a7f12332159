"""Logging set-up of the `unsilo` command: one line per event, and no flood of the same line.

Under attack or outage the same line can come thousands of times a second (aiohttp's
"socket.accept() out of system resource" once per refused connection, a peer's repeated
failure): `RepeatFilter` lets the first through, drops the repeats for `window` seconds,
then says how many were dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


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


def configure(level: int) -> None:
    """Log to stderr, one line per record, repeats limited."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RepeatFilter())
