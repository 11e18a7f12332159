"""Does `unsilo export` of a million conversations stream in bounded memory, and how fast?

Makes a store at the newest schema (`unsilo db upgrade`), fills it server-side with N
conversations (default 1,000,000) over one year in the example config's departments, a third of them with a
reply, owners among 70 people — one `INSERT ... SELECT` per table over a recursive CTE (SQLite)
or `generate_series` (PostgreSQL) — then runs the real command, `unsilo export --format F
--out FILE`, in a child process, once per format. For each it prints the rows written, the
child's wall time, CPU time (user + system), rows per second, its peak RSS and the ratio to
the 150 MB goal (judged: peak RSS / 150 MB, must stay below 1.0). A second run with a tenth
of the rows is printed beside it: flat memory means the peak does not grow with the rows.

    .venv/bin/python -m bench.export [--rows 1000000] [--database-url postgresql://postgres@127.0.0.1:5432/test]
                                     [--format csv|jsonl|both]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_MB = 150
PEOPLE = 70

_SQLITE_FILL = [
    f"""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {PEOPLE})
    INSERT INTO person (id, name, role, expertise, profiles, created_at)
    SELECT 100000 + i, 'Person ' || i, 'member', '[]', '{{}}', '2025-11-01 00:00:00' FROM n""",
    """WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows)
    INSERT INTO conversation (id, source, external_id, author_name, author_handle, author_url, title, text, url,
        channel, reply_url, created_at, ingested_at, updated_at, status, owner_id, priority, tags, routing_reason,
        sensitive, outcome, claimed_at, first_reply_at, resolved_at, version)
    SELECT i, 'feed-' || (i % 7), 'item-' || i, 'Customer ' || i, '@c' || i, '', 'Title ' || i,
        'The parcel ' || i || ' never arrived, refund please', 'https://example.com/p/' || i, 'feed', '',
        datetime('2025-12-01', '+' || (i * 31536 / :rows * 1000) || ' seconds'),
        datetime('2025-12-01', '+' || (i * 31536 / :rows * 1000) || ' seconds'),
        datetime('2025-12-01', '+' || (i * 31536 / :rows * 1000) || ' seconds'),
        CASE i % 4 WHEN 0 THEN 'open' WHEN 1 THEN 'claimed' ELSE 'resolved' END,
        CASE WHEN i % 4 = 0 THEN NULL ELSE 100001 + i % 70 END,
        CASE WHEN i % 50 = 0 THEN 'urgent' ELSE 'normal' END, '["delivery"]', 'rule delivery', 0,
        CASE WHEN i % 4 >= 2 THEN 'answered' END,
        CASE WHEN i % 4 = 0 THEN NULL ELSE datetime('2025-12-01', '+' || (i * 31536 / :rows * 1000 + 600) || ' seconds') END,
        CASE WHEN i % 3 = 0 AND i % 4 != 0
            THEN datetime('2025-12-01', '+' || (i * 31536 / :rows * 1000 + 1800) || ' seconds') END,
        CASE WHEN i % 4 >= 2 THEN datetime('2025-12-01', '+' || (i * 31536 / :rows * 1000 + 7200) || ' seconds') END,
        1
    FROM n""",
    # the departments are the config's, made by `unsilo db upgrade`: spread the conversations over them
    """INSERT INTO conversationdepartment (conversation_id, department_id)
    SELECT c.id, d.id FROM conversation c
    JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k, count(*) OVER () AS n FROM department) d ON c.id % d.n = d.k""",
    """INSERT INTO reply (conversation_id, author_id, text, status, created_at, sent_at)
    SELECT id, owner_id, 'Sorry, a replacement ships today', 'sent', first_reply_at, first_reply_at
    FROM conversation WHERE first_reply_at IS NOT NULL""",
]

_PG_FILL = [
    f"""INSERT INTO person (id, name, role, expertise, profiles, created_at)
    SELECT 100000 + i, 'Person ' || i, 'member', '[]', '{{}}', timestamp '2025-11-01' FROM generate_series(1, {PEOPLE}) i""",
    """INSERT INTO conversation (id, source, external_id, author_name, author_handle, author_url, title, text, url,
        channel, reply_url, created_at, ingested_at, updated_at, status, owner_id, priority, tags, routing_reason,
        sensitive, outcome, claimed_at, first_reply_at, resolved_at, version)
    SELECT i, 'feed-' || (i % 7), 'item-' || i, 'Customer ' || i, '@c' || i, '', 'Title ' || i,
        'The parcel ' || i || ' never arrived, refund please', 'https://example.com/p/' || i, 'feed', '',
        t, t, t,
        CASE i % 4 WHEN 0 THEN 'open' WHEN 1 THEN 'claimed' ELSE 'resolved' END,
        CASE WHEN i % 4 = 0 THEN NULL ELSE 100001 + i % 70 END,
        CASE WHEN i % 50 = 0 THEN 'urgent' ELSE 'normal' END, '["delivery"]', 'rule delivery', false,
        CASE WHEN i % 4 >= 2 THEN 'answered' END,
        CASE WHEN i % 4 = 0 THEN NULL ELSE t + interval '10 minutes' END,
        CASE WHEN i % 3 = 0 AND i % 4 != 0 THEN t + interval '30 minutes' END,
        CASE WHEN i % 4 >= 2 THEN t + interval '2 hours' END,
        1
    FROM (SELECT i, timestamp '2025-12-01' + (i * 31536000 / :rows) * interval '1 second' AS t
          FROM generate_series(1, :rows) i) g""",
    _SQLITE_FILL[2],
    _SQLITE_FILL[3],
    "SELECT setval(pg_get_serial_sequence('conversation', 'id'), (SELECT max(id) FROM conversation))",
    "ANALYZE",
]


def _unsilo(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args, "--database-url", url], capture_output=True, text=True, check=True
    )


def _fill(url: str, rows: int) -> None:
    _unsilo("db", "upgrade", url=url)
    if url.startswith("sqlite"):
        db = sqlite3.connect(url.split("///", 1)[1])
        for statement in _SQLITE_FILL:
            db.execute(statement, {"rows": rows} if ":rows" in statement else {})
        db.commit()
        db.close()
        return
    import asyncio

    import asyncpg

    async def fill() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            for statement in _PG_FILL:
                await conn.execute(statement.replace(":rows", str(rows)))
        finally:
            await conn.close()

    asyncio.run(fill())


def _export(url: str, fmt: str, out: Path) -> dict[str, float]:
    """One `unsilo export` in a child process: its wall time, CPU time and peak RSS (its own)."""
    code = (
        "import resource, sys; from bot.cli import main; rc = main(sys.argv[1:]);"
        "u = resource.getrusage(resource.RUSAGE_SELF);"
        "print(u.ru_maxrss, u.ru_utime + u.ru_stime, file=sys.stderr); sys.exit(rc)"
    )
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, "export", "--format", fmt, "--out", str(out), "--database-url", url],
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - started
    said, measured = done.stderr.strip().splitlines()[-2:]
    rss_kb, cpu = measured.split()
    written = int(said.split()[0])
    return {"rows": written, "wall": wall, "cpu": float(cpu), "rss_mb": int(rss_kb) / 1024, "bytes": out.stat().st_size}


def _store(base: str | None, folder: Path, rows: int) -> tuple[str, object]:
    """A fresh store for `rows` conversations: a SQLite file in `folder`, or a private PostgreSQL schema."""
    if base is None:
        return f"sqlite+aiosqlite:///{folder / f'export-{rows}.db'}", None
    import asyncio

    import asyncpg

    schema = f"bench_export_{secrets.token_hex(4)}"
    plain = base.replace("postgresql+asyncpg", "postgresql")

    async def create() -> None:
        conn = await asyncpg.connect(plain)
        await conn.execute(f"CREATE SCHEMA {schema}")
        await conn.close()

    asyncio.run(create())
    sep = "&" if "?" in base else "?"
    url = base.replace("postgresql://", "postgresql+asyncpg://", 1) + f"{sep}options=-csearch_path%3D{schema}"
    return url, (plain, schema)


def _drop(handle: object) -> None:
    if handle is None:
        return
    import asyncio

    import asyncpg

    plain, schema = handle  # type: ignore[misc]

    async def drop() -> None:
        conn = await asyncpg.connect(plain)
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()

    asyncio.run(drop())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="a PostgreSQL server to use instead of a SQLite file")
    parser.add_argument("--format", choices=["csv", "jsonl", "both"], default="both")
    args = parser.parse_args()
    formats = ["csv", "jsonl"] if args.format == "both" else [args.format]
    store = "PostgreSQL" if args.database_url else "SQLite file"
    print(f"python {sys.version.split()[0]} · {os.cpu_count()} cores · store: {store}")
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        folder = Path(tmp)
        results: dict[int, dict[str, dict[str, float]]] = {}
        for rows in (max(1, args.rows // 10), args.rows):
            url, handle = _store(args.database_url, folder, rows)
            try:
                started = time.perf_counter()
                _fill(url, rows)
                print(f"filled {rows:,} conversations in {time.perf_counter() - started:.1f} s")
                results[rows] = {fmt: _export(url, fmt, folder / f"out-{rows}.{fmt}") for fmt in formats}
            finally:
                _drop(handle)
        print()
        print(
            f"{'rows':>10} {'format':<6} {'written':>10} {'wall s':>8} {'CPU s':>7} {'rows/s':>9} {'MB out':>7} "
            f"{'peak RSS MB':>12} {'RSS/150MB':>10}"
        )
        for rows, by_format in results.items():
            for fmt, r in by_format.items():
                assert r["rows"] == rows, f"exported {r['rows']} of {rows}"
                print(
                    f"{rows:>10,} {fmt:<6} {int(r['rows']):>10,} {r['wall']:>8.1f} {r['cpu']:>7.1f} "
                    f"{r['rows'] / r['wall']:>9,.0f} {r['bytes'] / 2**20:>7.0f} "
                    f"{r['rss_mb']:>12.0f} {r['rss_mb'] / GOAL_MB:>10.2f}"
                )
        big, small = results[args.rows], results[max(1, args.rows // 10)]
        for fmt in formats:
            print(
                f"{fmt}: peak RSS {big[fmt]['rss_mb']:.0f} MB for {args.rows:,} rows vs {small[fmt]['rss_mb']:.0f} MB "
                f"for a tenth; ratio to the {GOAL_MB} MB goal {big[fmt]['rss_mb'] / GOAL_MB:.2f} "
                f"({'met' if big[fmt]['rss_mb'] < GOAL_MB else 'NOT met'})"
            )


if __name__ == "__main__":
    main()
