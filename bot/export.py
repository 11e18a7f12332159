"""`unsilo export`: one row per conversation as CSV or JSON Lines, streamed.

CSV cells that a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or a
carriage return) are prefixed with `'` (OWASP's advice against CSV injection); every text cell is
printable (no control characters reach a terminal or a file).
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, TextIO

from bot.views import printable

FIELDS = (
    "id",
    "source",
    "created_at",
    "ingested_at",
    "claimed_at",
    "first_reply_at",
    "resolved_at",
    "seconds_to_claim",
    "seconds_to_first_reply",
    "seconds_to_resolve",
    "status",
    "departments",
    "owner",
    "outcome",
    "tags",
    "priority",
    "replies",
)
FORMATS = ("csv", "jsonl")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [printable(str(v)) for v in value]
    if isinstance(value, str):
        return printable(value)
    return value


def inert(cell: str) -> str:
    """A CSV cell no spreadsheet runs as a formula."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = ";".join(value)
    return inert(str(value)) if isinstance(value, str) else str(value)


async def write(rows: AsyncIterator[dict[str, Any]], out: TextIO, *, fmt: str) -> int:
    """Write every row to `out` in `fmt` ("csv" or "jsonl"); returns how many were written."""
    written = 0
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(FIELDS)
    async for row in rows:
        shown = {field: _text(row[field]) for field in FIELDS}
        if writer is not None:
            writer.writerow([_csv_cell(shown[field]) for field in FIELDS])
        else:
            out.write(json.dumps(shown, ensure_ascii=False) + "\n")
        written += 1
    return written
