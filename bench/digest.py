"""How fast is one department's weekly digest on a big PostgreSQL store, against the one raw SQL aggregate it needs?

Fills a private schema (`?search_path=bench_digest_<random>`, dropped at the end) with
N conversations over one year in six departments, with their department links and events
(ingested, claimed, replied, resolved or dismissed, some notes), all generated server-side
with `INSERT ... SELECT generate_series(...)`, then VACUUM ANALYZE. Then, in the same run,
a few times each: `build_digest` for one department's last week (every statement it
sends) against (a) one hand-written SQL statement for that department and week's main
counts and percentiles and (b) the single raw SQL statement of every figure the digest
shows (its own figures statement, sent as text to the driver); prints the times, ratios, the digest's time per statement, and one
person's `build_stats`. That is measured first with the models' indexes only, then again
after each proposed index (`--no-proposed` skips them); `--explain` prints the plans.

    .venv/bin/python -m bench.digest [--rows 1000000] [--database-url postgresql://postgres@127.0.0.1:5432/test]
                                     [--repeat 11] [--no-proposed] [--explain]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.digest import build_digest, build_stats
from storage.db import create_all, create_engine, session_factory
from storage.reports import _REPORT_SETTINGS
from storage.uow import UnitOfWork

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
END = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # "now": the digest covers the week before
DEPARTMENTS = ("support", "legal", "ops", "hr", "product", "billing")
PEOPLE = 70
DEPARTMENT = "legal"
STATS_PERSON = 7

# Indexes proposed beyond the models' (migration 0004 adopted resolved_at, the department
# links and events by actor after this bench showed them): (name, definition, index it replaces).
PROPOSED = (("ix_event_kind_at_cover", "event (kind, at) INCLUDE (conversation_id, actor_id)", "ix_event_kind_at"),)

FILL = [
    (
        "departments",
        """
        INSERT INTO department (id, name, sla_minutes, managers)
        SELECT i, name, 240, json_build_array('manager-' || name)
        FROM unnest(ARRAY["""
        + ", ".join(f"'{d}'" for d in DEPARTMENTS)
        + """]) WITH ORDINALITY AS d(name, i)""",
    ),
    (
        "people",
        """
        INSERT INTO person (id, name, role, department, expertise, profiles, created_at)
        SELECT i, 'person ' || i, 'member',
               (ARRAY['support', 'legal', 'ops', 'hr', 'product', 'billing', 'warehouse', NULL])[1 + i % 8],
               '[]', '{}', CAST(:start AS timestamptz)
        FROM generate_series(1, CAST(:people AS int)) i""",
    ),
    # Raw times first (claim within hours, reply within a day, resolution within two), then
    # cut at END: whatever would happen later has not happened yet.
    (
        "conversations",
        """
        INSERT INTO conversation (id, source, external_id, author_name, author_handle, author_url, title, text, url,
                                  channel, reply_url, ingested_at, updated_at, status, owner_id, priority, tags,
                                  routing_reason, sensitive, outcome, claimed_at, first_reply_at, resolved_at, version)
        SELECT g, 'bench', g::text, 'Customer ' || g, '', '', '',
               'Message ' || g || ': ' || repeat('my order arrived late and damaged, ', 1 + g % 8),
               'https://example.com/posts/' || g, '', '', ingested, ingested,
               CASE WHEN closed_at < :end THEN CASE WHEN dismissed THEN 'dismissed' ELSE 'resolved' END
                    WHEN reply_at < :end THEN 'replied' WHEN claim_at < :end THEN 'claimed' ELSE 'open' END,
               CASE WHEN claim_at < :end THEN owner END, 'normal',
               json_build_array('topic-' || (g % 17), 'kind-' || (g % 5)),
               '', false,
               CASE WHEN closed_at < :end AND NOT dismissed
                    THEN (ARRAY['answered', 'fixed', 'escalated', 'no-action', 'spam'])[1 + g % 5] END,
               CASE WHEN claim_at < :end THEN claim_at END,
               CASE WHEN reply_at < :end THEN reply_at END,
               CASE WHEN closed_at < :end THEN closed_at END,
               1
        FROM (
            SELECT g, ingested, owner, dismissed, claim_at, reply_at,
                   CASE WHEN dismissed THEN ingested + r4 * interval '24 hours'
                        WHEN claim_at IS NOT NULL THEN coalesce(reply_at, claim_at) + r4 * interval '48 hours' END AS closed_at
            FROM (
                SELECT g, ingested, owner, r4, r1 < 0.04 AS dismissed,
                       CASE WHEN r1 >= 0.042 THEN ingested + r2 * r2 * interval '8 hours' END AS claim_at,
                       CASE WHEN r1 >= 0.042 AND r3 < 0.9 THEN ingested + r2 * r2 * interval '8 hours'
                                                             + r3 * r3 * interval '24 hours' END AS reply_at
                FROM (
                    SELECT g, CAST(:start AS timestamptz) + (g::float8 / CAST(:rows AS int)) * interval '365 days' AS ingested,
                           1 + (random() * (CAST(:people AS int) - 1))::int AS owner,
                           random() AS r1, random() AS r2, random() AS r3, random() AS r4
                    FROM generate_series(1, CAST(:rows AS int)) g
                ) raw
            ) timed
        ) cut""",
    ),
    (
        "department links",
        """
        INSERT INTO conversationdepartment (conversation_id, department_id)
        SELECT id, 1 + id % 6 FROM conversation
        UNION ALL
        SELECT id, 1 + (id + 1 + id % 5) % 6 FROM conversation WHERE id % 10 = 0""",
    ),
    (
        "events",
        """
        INSERT INTO event (conversation_id, kind, actor_id, actor_name, at, data)
        SELECT id, 'ingested', NULL, '', ingested_at, '{}'::json FROM conversation
        UNION ALL
        SELECT id, 'claimed', owner_id, '', claimed_at, '{}' FROM conversation WHERE claimed_at IS NOT NULL
        UNION ALL
        SELECT id, 'replied', CASE WHEN id % 7 = 0 THEN 1 + id % CAST(:people AS int) ELSE owner_id END, '', first_reply_at, '{}'
        FROM conversation WHERE first_reply_at IS NOT NULL
        UNION ALL
        SELECT id, status, owner_id, '', resolved_at, '{}' FROM conversation WHERE resolved_at IS NOT NULL
        UNION ALL
        SELECT id, 'noted', 1 + (id * 7) % CAST(:people AS int), '', ingested_at + interval '30 minutes', '{}'
        FROM conversation WHERE id % 3 = 0 AND ingested_at + interval '30 minutes' < :end""",
    ),
]

RAW = """
SELECT
  count(*) FILTER (WHERE c.ingested_at >= :since AND c.ingested_at < :until) AS new,
  count(*) FILTER (WHERE c.claimed_at >= :since AND c.claimed_at < :until) AS claimed,
  count(*) FILTER (WHERE c.first_reply_at >= :since AND c.first_reply_at < :until) AS replied,
  count(*) FILTER (WHERE c.status = 'resolved' AND c.resolved_at >= :since AND c.resolved_at < :until) AS resolved,
  count(*) FILTER (WHERE c.ingested_at < :until AND (c.resolved_at IS NULL OR c.resolved_at >= :until)) AS still_open,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM c.claimed_at - c.ingested_at))
    FILTER (WHERE c.claimed_at >= :since AND c.claimed_at < :until) AS claim_p50,
  percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM c.claimed_at - c.ingested_at))
    FILTER (WHERE c.claimed_at >= :since AND c.claimed_at < :until) AS claim_p90,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM c.first_reply_at - c.ingested_at))
    FILTER (WHERE c.first_reply_at >= :since AND c.first_reply_at < :until) AS reply_p50,
  percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM c.first_reply_at - c.ingested_at))
    FILTER (WHERE c.first_reply_at >= :since AND c.first_reply_at < :until) AS reply_p90,
  percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM c.resolved_at - c.ingested_at))
    FILTER (WHERE c.status = 'resolved' AND c.resolved_at >= :since AND c.resolved_at < :until) AS resolve_p50,
  percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM c.resolved_at - c.ingested_at))
    FILTER (WHERE c.status = 'resolved' AND c.resolved_at >= :since AND c.resolved_at < :until) AS resolve_p90
FROM conversation c
JOIN conversationdepartment cd ON cd.conversation_id = c.id AND cd.department_id = :department_id
WHERE c.ingested_at < :until AND (c.resolved_at IS NULL OR c.resolved_at >= :since)
"""


def with_schema(url: str, schema: str) -> str:
    """The URL with `search_path` set to the bench's own schema."""
    return f"{url}{'&' if '?' in url else '?'}search_path={schema}"


async def fill(engine: AsyncEngine, rows: int) -> None:
    """Generate the store server-side, step by step, and ANALYZE it."""
    params = {"people": PEOPLE, "rows": rows, "start": END - timedelta(days=365), "end": END}
    for name, sql in FILL:
        started = time.perf_counter()
        async with engine.begin() as conn:
            stmt = text(sql)
            used = {key: value for key, value in params.items() if f":{key}" in sql}
            result = await conn.execute(stmt, used)
        print(f"  {name:<18} {result.rowcount:>10,} rows  {time.perf_counter() - started:6.1f} s")
    await vacuum(engine)


async def vacuum(engine: AsyncEngine) -> None:
    """VACUUM ANALYZE: fresh statistics and visibility map, as autovacuum keeps a live store."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE"))


class StatementLog:
    """Times every statement sent through the engine (to see where a digest's time goes)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.entries: list[tuple[str, Any, float]] = []
        self._started: list[float] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._before)
        event.listen(engine.sync_engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        self._started.append(time.perf_counter())

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        self.entries.append((statement, parameters, (time.perf_counter() - self._started.pop()) * 1000))

    def stop(self) -> None:
        """Stop listening."""
        event.remove(self.engine.sync_engine, "before_cursor_execute", self._before)
        event.remove(self.engine.sync_engine, "after_cursor_execute", self._after)


async def timed(runs: Sequence[Callable[[], Awaitable[Any]]], repeat: int) -> list[list[float]]:
    """Milliseconds of `repeat` rounds of each run, interleaved (so they share any noise), after a warm-up round."""
    for run in runs:
        await run()
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeat):
        for run, spent in zip(runs, times, strict=True):
            started = time.perf_counter()
            await run()
            spent.append((time.perf_counter() - started) * 1000)
    return times


def label(statement: str) -> str:
    """A short name for one of the digest's statements."""
    flat = " ".join(statement.split())
    for needle, name in (
        ("WITH touched", "figures (one statement)"),
        ("percentile_cont", "raw SQL"),
        ("conversation.status = $", "oldest unclaimed"),
        ("FROM department", "department"),
        ("set_config", "planner settings"),
    ):
        if needle in flat:
            return name
    return flat[:40]


async def measure(engine: AsyncEngine, repeat: int, *, explain: bool) -> None:
    """Time the digest, the raw statement and one person's stats, same run; print times, ratio, where time goes."""
    sessions = session_factory(engine)
    since, until = END - timedelta(days=7), END
    async with engine.connect() as conn:
        department_id = (await conn.execute(text("SELECT id FROM department WHERE name = :n"), {"n": DEPARTMENT})).scalar_one()

    async def digest() -> Any:
        async with UnitOfWork(sessions, clock=lambda: until) as uow:
            return await build_digest(uow, department=DEPARTMENT, since=since, until=until)

    async def raw() -> Any:  # with the planner settings the digest uses (see ReportRepo._plan_for_reports)
        async with engine.begin() as conn:
            await conn.execute(_REPORT_SETTINGS)
            return (await conn.execute(text(RAW), {"since": since, "until": until, "department_id": department_id})).one()

    async def stats() -> Any:
        async with UnitOfWork(sessions, clock=lambda: until) as uow:
            return await build_stats(uow, person_id=STATS_PERSON)

    log = StatementLog(engine)
    await digest()
    log.stop()
    # Every figure the digest shows, as the one raw statement it needs: the digest's own
    # figures SQL, sent as text straight to the driver (no ORM, no statement building).
    figures_sql, figures_params = next((st, pa) for st, pa, _ in log.entries if "WITH touched" in " ".join(st.split()))

    async def raw_all() -> Any:
        async with engine.begin() as conn:
            await conn.execute(_REPORT_SETTINGS)
            return (await conn.exec_driver_sql(figures_sql, figures_params)).one()

    log = StatementLog(engine)
    digest_ms, raw_ms, raw_all_ms = await timed([digest, raw, raw_all], repeat)
    log.stop()
    (stats_ms,) = await timed([stats], repeat)
    figures, row = await digest(), await raw()

    d, r = statistics.median(digest_ms), statistics.median(raw_ms)
    pairs = statistics.median(x / y for x, y in zip(digest_ms, raw_ms, strict=True))
    print(
        f"  build_digest ({DEPARTMENT}, 7 days)   median {d:8.1f} ms  "
        f"(min {min(digest_ms):.1f}, max {max(digest_ms):.1f}, n={repeat})"
    )
    print(f"  raw SQL aggregate               median {r:8.1f} ms  (min {min(raw_ms):.1f}, max {max(raw_ms):.1f}, n={repeat})")
    print(
        f"  ratio digest/raw                median {d / r:8.2f}x  (median of the {repeat} paired ratios {pairs:.2f}x, "
        f"of the minimums {min(digest_ms) / min(raw_ms):.2f}x)"
    )
    a = statistics.median(raw_all_ms)
    print(
        f"  raw SQL of every digest figure  median {a:8.1f} ms  (the digest's figures statement as text: "
        "+ top tags, outcomes, who took part, noted)"
    )
    print(
        f"  ratio digest/raw-all-figures    median {d / a:8.2f}x  (median of the paired ratios "
        f"{statistics.median(x / y for x, y in zip(digest_ms, raw_all_ms, strict=True)):.2f}x)"
    )
    per_statement: dict[str, list[float]] = {}
    for statement, _, ms in log.entries:
        per_statement.setdefault(label(statement), []).append(ms)
    print(
        "  statements, median ms: " + ", ".join(f"{name} {statistics.median(times):.1f}" for name, times in per_statement.items())
    )
    print(f"  build_stats (one person, all time) median {statistics.median(stats_ms):.1f} ms")
    print(
        f"  figures: new {figures.new}, claimed {figures.claimed}, replied {figures.replied}, resolved {figures.resolved}, "
        f"still open {figures.still_open}, claim p50 {figures.to_claim.median:.0f} s; raw: new {row.new}, "
        f"claimed {row.claimed}, replied {row.replied}, resolved {row.resolved}, still open {row.still_open}, "
        f"claim p50 {row.claim_p50:.0f} s"
    )
    if explain:  # the statements of one digest, replayed in one transaction as the digest sends them
        async with engine.begin() as conn:
            for name, (statement, parameters) in {label(s): (s, p) for s, p, _ in log.entries}.items():
                if "set_config" in statement or not statement.lstrip().upper().startswith(("SELECT", "WITH")):
                    await conn.exec_driver_sql(statement, parameters)
                    continue
                plan = (await conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)).all()
                print(f"  --- EXPLAIN ANALYZE: {name}")
                for (line,) in plan:
                    print(f"      {line}")


async def main(rows: int, database_url: str, repeat: int, *, proposed: bool, explain: bool) -> None:
    schema = f"bench_digest_{secrets.token_hex(4)}"
    admin = create_engine(database_url)
    if admin.dialect.name != "postgresql":
        raise SystemExit("bench.digest generates its data with PostgreSQL's generate_series: give a postgresql:// URL")
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(with_schema(database_url, schema))
    try:
        await create_all(engine)
        print(f"{rows:,} conversations over 365 days, {len(DEPARTMENTS)} departments, schema {schema}")
        started = time.perf_counter()
        await fill(engine, rows)
        print(f"  filled, VACUUM ANALYZE in {time.perf_counter() - started:.1f} s")
        print("with the models' indexes only:")
        await measure(engine, repeat, explain=explain)
        for name, target, replaced in PROPOSED if proposed else ():
            async with engine.begin() as conn:
                await conn.execute(text(f"CREATE INDEX {name} ON {target}"))
                if replaced:
                    await conn.execute(text(f"DROP INDEX {replaced}"))
            await vacuum(engine)
            print(f"+ {name} ON {target}" + (f", instead of {replaced}:" if replaced else ":"))
            await measure(engine, repeat, explain=explain)
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument(
        "--no-proposed", dest="proposed", action="store_false", help="skip the second measurement with the proposed indexes"
    )
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of every digest statement")
    args = parser.parse_args()
    asyncio.run(main(args.rows, args.database_url, args.repeat, proposed=args.proposed, explain=args.explain))
