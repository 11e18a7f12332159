"""How fast is search on a big store, against the raw index query alone? And what does "seen before" cost an ingest?

Fills a store with `--rows` conversations (default 1,000,000) server-side (INSERT…SELECT over a
vocabulary of 2,000 words, skewed so that a few are common and most are rare; a note on every third,
a sent reply on every resolved one), builds the full-text index in one pass (what migration 0010 does
on an existing store), then times 200 mixed searches (1–3 words, half with filters: dept:, status:,
since:) through the bus (parse, index query with its count, snippets, cards), and the same words sent
as the raw index query alone (MATCH / @@ with ORDER BY rank LIMIT 20), same run. Then ingests a
10,000-entry feed (bench/ingest.py's, its words replaced by the store's: a quarter of the entries near-repeats
of stored resolved conversations) with and without the "seen before" lookups.

On SQLite (a temp file) and PostgreSQL (a fresh schema on --pg-url), one after the other.

    .venv/bin/python -m bench.search [--rows 1000000] [--queries 200] [--entries 10000] [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import text

from bench.common import summary
from bench.ingest import CONFIG, make_feed
from bot import commands as c
from bot import seenbefore
from bot.bootstrap import Container, build, load_config
from bot.ingest import Incoming, parse_feed
from bot.search import parse
from bot.settings import Settings
from storage import search
from storage.db import create_engine

VOCABULARY = 2000
TAIL_WORDS = 4  # rare words of the long tail in each conversation's text (2: a near-repeat scores just under THRESHOLD at 1M)
SYLLABLES = "ka lo mi ra tu ve si no pe da ri bo lu fe gi ma zo ne ta wu".split()
COMMON = (
    "refund parcel courier order delivery payment account invoice password login app update battery "
    "warranty subscription size exchange damaged late broken missing charged twice please help thanks"
).split()


def tail_size(rows: int) -> int:
    """Words of the long tail: each conversation holds `TAIL_WORDS` of them, so each is held by ~20 documents."""
    return max(500, rows * TAIL_WORDS // 20)


def vocabulary(tail: int = 0) -> list[str]:
    """The common support words first, then made-up ones (each a distinct token on both stores), then `tail`
    rarer made-up ones (longer: never one of the first): the long tail of real text (names, models, codes,
    misspellings) that tells one conversation from another."""
    rng = random.Random(3)
    made: list[str] = []
    seen = set(COMMON)
    while len(COMMON) + len(made) < VOCABULARY + tail:
        short = len(COMMON) + len(made) < VOCABULARY
        word = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4) if short else rng.randint(5, 7)))
        if word not in seen:
            seen.add(word)
            made.append(word)
    return COMMON + made


def _word(position: int, dialect: str) -> str:
    """SQL for the `position`-th word of conversation `i`: skewed toward the vocabulary's start."""
    a, b, m = 2654435761 + 97 * position, 40503 * position + 11, 1 + (position * 7) % 13
    pick = f"((i * {a} + {b}) % 1000003) % (1 + ((i * {m} + {position}) % {VOCABULARY}))"
    return f"(SELECT word FROM bench_word WHERE k = {pick})"


def _text(words: int, first: int, dialect: str) -> str:
    return " || ' ' || ".join(_word(first + j, dialect) for j in range(words))


def _tail(rows: int) -> str:
    """SQL for the `TAIL_WORDS` long-tail words of conversation `i` (uniform over the tail)."""
    tail = tail_size(rows)
    picks = (f"{VOCABULARY} + ((i * {2246822519 + 31 * j} + {17 * j + 5}) % 1000003) % {tail}" for j in range(TAIL_WORDS))
    return "".join(f" || ' ' || (SELECT word FROM bench_word WHERE k = {pick})" for pick in picks)


def fill_statements(dialect: str, rows: int) -> list[str]:
    pg = dialect == "postgresql"
    series = f"generate_series(CAST(1 AS bigint), {rows}) AS n(i)" if pg else "n"
    rec = "" if pg else f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows}) "
    at = (
        "(timestamp '2025-12-01' + (i * 31536 / {rows}) * interval '1000 seconds')"
        if pg
        else "datetime('2025-12-01', '+' || (i * 31536 / {rows} * 1000) || ' seconds')"
    ).format(rows=rows)
    status = "CASE i % 4 WHEN 0 THEN 'open' WHEN 1 THEN 'claimed' ELSE 'resolved' END"
    return [
        f"""{rec}INSERT INTO conversation (id, source, external_id, author_name, author_handle, author_url, title, text, url,
            channel, reply_url, created_at, ingested_at, updated_at, status, owner_id, priority, tags, routing_reason,
            sensitive, outcome, version, erased_why, seen_before)
        SELECT i, 'feed-' || (i % 7), 'item-' || i, 'Customer ' || (i % 5000), '@c' || (i % 5000), '',
            {_text(4, 0, dialect)}, {_text(14, 4, dialect)}{_tail(rows)}, '', 'feed', '', {at}, {at}, {at}, {status}, NULL,
            'normal',
            '["delivery"]', '', {"false" if pg else "0"}, CASE WHEN i % 4 >= 2 THEN 'answered' END, 1, '', '[]'
        FROM {series}""",
        """INSERT INTO conversationdepartment (conversation_id, department_id)
        SELECT c.id, d.id FROM conversation c
        JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k, count(*) OVER () AS n FROM department) d
        ON c.id % d.n = d.k""",
        f"""INSERT INTO note (conversation_id, text, at, origin)
        SELECT id, {_text(8, 20, dialect).replace("(i *", "(id *").replace("+ i)", "+ id)")}, ingested_at, ''
        FROM conversation WHERE id % 3 = 0""",
        f"""INSERT INTO reply (conversation_id, text, status, created_at, sent_at)
        SELECT id, 'Sorry about that, ' || {_text(6, 30, dialect).replace("(i *", "(id *").replace("+ i)", "+ id)")}, 'sent',
            ingested_at, ingested_at
        FROM conversation WHERE status = 'resolved'""",
    ]


async def fill(container: Container, rows: int) -> float:
    """The store filled and indexed; seconds it took (statements of minutes: an engine without the service's timeout)."""
    started = time.perf_counter()
    dialect = container.engine.dialect.name
    words = vocabulary(tail_size(rows))
    pg = {"connect_args": {"command_timeout": None}} if dialect == "postgresql" else {}
    engine = create_engine(container.settings.database_url, **pg)
    async with engine.begin() as conn:
        for statement in search.drop_schema(dialect):  # fill without the triggers, then index in one pass
            await conn.execute(text(statement))
        await conn.execute(text("CREATE TABLE bench_word (k integer PRIMARY KEY, word text NOT NULL)"))
        await conn.execute(
            text("INSERT INTO bench_word (k, word) VALUES (:k, :w)"), [{"k": k, "w": w} for k, w in enumerate(words)]
        )
        for statement in fill_statements(dialect, rows):
            await conn.execute(text(statement))
        for statement in search.schema(dialect):
            await conn.execute(text(statement))
        await search.fill_all(conn)  # as migration 0010 does on an existing store
        await conn.execute(text("DROP TABLE bench_word"))
        if dialect == "postgresql":
            await conn.execute(
                text("SELECT setval(pg_get_serial_sequence('conversation', 'id'), (SELECT max(id) FROM conversation))")
            )
    if dialect == "postgresql":  # as autovacuum leaves a store that has run a while: visibility map set
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("VACUUM (ANALYZE) conversation, conversationdepartment, conversation_search"))
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE"))
        if dialect != "postgresql":
            await conn.execute(text(f"INSERT INTO {search.FTS_TABLE}({search.FTS_TABLE}) VALUES ('optimize')"))
    await engine.dispose()
    return time.perf_counter() - started


def queries(count: int, departments: list[str]) -> list[str]:
    """1–3 words, common and rare; half of them narrowed by a filter."""
    rng = random.Random(11)
    words = vocabulary()
    made = []
    for index in range(count):
        picked = [
            words[min(len(words) - 1, int(rng.paretovariate(0.8)) - 1 + rng.randint(0, 60))] for _ in range(rng.randint(1, 3))
        ]
        if index % 2:
            picked.append(rng.choice([f"dept:{rng.choice(departments)}", "status:open", "status:resolved", "since:30d"]))
        made.append(" ".join(picked))
    return made


async def raw_query(container: Container, words: list[str]) -> None:
    """The index query alone: the words, ranked, the first 20 ids."""
    async with container.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            tsq = " && ".join(f"websearch_to_tsquery(unsilo_search_config(), :t{i})" for i in range(len(words)))
            sql = (
                f"SELECT conversation_id FROM {search.PG_TABLE}, ({'SELECT ' + tsq}) AS q(query) WHERE document @@ q.query "
                "ORDER BY ts_rank_cd(document, q.query, 1) DESC LIMIT 20"
            )
            await conn.execute(text(sql), {f"t{i}": f'"{w}"' for i, w in enumerate(words)})
        else:
            sql = f"SELECT rowid FROM {search.FTS_TABLE} WHERE {search.FTS_TABLE} MATCH :m ORDER BY rank LIMIT 20"
            await conn.execute(text(sql), {"m": search.fts_match(words)})


async def time_searches(container: Container, texts: list[str]) -> None:
    actor = c.Actor("cli", "bench", name="bench")
    full: list[float] = []
    raw: list[float] = []
    matched = 0
    cpu = {"full": 0.0, "raw": 0.0}  # this process's CPU (the store's own, PostgreSQL's, is not in it)
    for query in texts:
        terms = list(parse(query, now=container.clock()).terms)
        started, used = time.perf_counter(), time.process_time()
        found = await container.bus.handle(c.Search(actor, tuple(query.split()), limit=20))
        full.append((time.perf_counter() - started) * 1000)
        cpu["full"] += time.process_time() - used
        matched += bool(found.cards)
        started, used = time.perf_counter(), time.process_time()
        await raw_query(container, terms)
        raw.append((time.perf_counter() - started) * 1000)
        cpu["raw"] += time.process_time() - used
    p50, p99 = summary("search (bus, cards, snippets)", full)
    r50, r99 = summary("raw index query alone", raw)
    per = {name: used / len(texts) * 1000 for name, used in cpu.items()}
    print(f"{'CPU per query (this process)':<32} search {per['full']:6.1f} ms  raw {per['raw']:6.1f} ms")
    print(
        f"{'ratio search / raw':<32} p50 {p50 / r50:5.2f}x  p99 {p99 / r99:5.2f}x   ({matched} of {len(texts)} found something)"
    )


async def in_store_words(container: Container, items: list[Incoming], seed: int, rows: int) -> list[Incoming]:
    """The feed's items written in the store's vocabulary, as real customers write in the words of the ones
    before them: each item's words drawn as the fill draws them, and one in four a near-repeat (three words
    changed) of a stored resolved conversation, so the "seen before" lookups find candidates (and some hits)."""
    rng = random.Random(seed)
    tail = vocabulary(tail_size(rows))[VOCABULARY:]
    words = vocabulary()
    async with container.engine.connect() as conn:
        resolved = [
            (str(title), str(body))
            for title, body in await conn.execute(
                text("SELECT title, text FROM conversation WHERE status = 'resolved' ORDER BY id DESC LIMIT 5000")
            )
        ]

    def drawn(count: int) -> list[str]:
        return [words[rng.randrange(rng.randrange(1, VOCABULARY + 1))] for _ in range(count)]

    made = []
    for index, item in enumerate(items):
        if index % 4 == 0 and resolved:
            title, body = rng.choice(resolved)
            said = body.split()
            for _ in range(3):
                said[rng.randrange(len(said))] = drawn(1)[0]
            made.append(replace(item, title=title, text=" ".join(said)))
        else:
            rare = [rng.choice(tail) for _ in range(TAIL_WORDS)]
            made.append(replace(item, title=" ".join(drawn(4)), text=" ".join(drawn(14) + rare)))
    return made


async def time_ingest(container: Container, entries: int, rows: int) -> None:
    """A feed of `entries` new items (in the store's words), with the "seen before" lookups and (another
    feed) without them, ingested as the feed poller does (`background`: "seen before" and who to ask found
    after the batches commit, in a task); the ratio of the ingest's time, then of the time until that task
    is done too (`settled`)."""
    results: dict[str, float] = {}
    settled: dict[str, float] = {}
    real = seenbefore.record

    async def none(uow: Any, ids: Any) -> list[int]:
        return []

    for name, seed in (("without seen before", 21), ("with seen before", 22), ("without seen before ", 23)):
        parsed, _ = parse_feed(make_feed(entries, seed=seed), source=f"bench-{seed}", tags=())
        items = await in_store_words(container, list(parsed), seed, rows)
        seenbefore.record = real if name == "with seen before" else none  # type: ignore[assignment]
        cpu, started = time.process_time(), time.perf_counter()
        await container.ingest(items, source=f"bench-{seed}", background=True)
        results[name] = time.perf_counter() - started
        await container.settled()
        settled[name] = time.perf_counter() - started
        cpu = time.process_time() - cpu
        print(
            f"ingest {entries} entries {name:<22} {entries / results[name]:8.0f} items/s  {results[name]:6.2f} s, "
            f"settled {settled[name]:6.2f} s, CPU {cpu:6.2f} s"
        )
    seenbefore.record = real  # type: ignore[assignment]
    without = min(results["without seen before"], results["without seen before "])
    print(f"{'ratio with / without (ingest)':<32} {results['with seen before'] / without:5.2f}x")
    without = min(settled["without seen before"], settled["without seen before "])
    print(f"{'ratio with / without (settled)':<32} {settled['with seen before'] / without:5.2f}x")
    async with container.uow() as uow:
        listed = (await uow.session.exec(text("SELECT count(*) FROM conversation WHERE CAST(seen_before AS TEXT) <> '[]'"))).one()  # type: ignore[call-overload]
    print(
        f"conversations with a 'seen before' list: {listed[0]} of {entries} ({listed[0] / entries:.0%}; "
        "a quarter are near-repeats of resolved ones)"
    )


async def run(url: str, args: argparse.Namespace) -> None:
    container = build(Settings(database_url=url), config=load_config(CONFIG))
    await container.prepare()
    try:
        print(f"\n== {container.engine.dialect.name}: {args.rows:,} conversations")
        print(f"filled and indexed in {await fill(container, args.rows):.1f} s")
        async with container.engine.connect() as conn:
            departments = [row[0] for row in await conn.execute(text("SELECT name FROM department"))]
        await time_searches(container, queries(args.queries, departments))
        await time_ingest(container, args.entries, args.rows)
    finally:
        await container.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--pg-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--only", choices=("sqlite", "postgresql"))
    args = parser.parse_args()
    if args.only != "postgresql":
        with tempfile.TemporaryDirectory() as tmp:
            await run(f"sqlite+aiosqlite:///{Path(tmp) / 'search.db'}", args)
    if args.only != "sqlite":
        import asyncpg

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        dsn = args.pg_url.replace("postgresql+asyncpg://", "postgresql://")
        conn = await asyncpg.connect(dsn)
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            await run(f"{args.pg_url}?search_path={schema}", args)
        finally:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
