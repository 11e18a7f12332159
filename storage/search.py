"""The full-text index of conversations: one document per conversation, ranked by relevance.

The document of a conversation holds its title, the customer's text, the author (name and
handle), its notes and its replies. It follows the rows by itself: SQL triggers created by the
migration (0012) rebuild a conversation's document when the conversation's words change
(ingest, erasure), or when one of its notes or replies is written or removed. Every write path
(the repositories, erasure, `db copy`, the demo reset) keeps it in sync without knowing it.

- SQLite: an FTS5 table `conversation_fts` (rowid = the conversation's id), tokenizer
  `porter unicode61 remove_diacritics 2` (English stemming: refunds ~ refund), ranked by `bm25()`
  (a title match weighs most), snippets by `snippet()`. FTS5 has no other stemmer: with another
  `search_language`, words still match whole and without accents, stemmed by English rules.
- PostgreSQL: a table `conversation_search` (conversation_id, document tsvector) with a GIN index,
  built with the text-search configuration `unsilo_search_config()` returns (english unless
  `set_language` changed it), queried with `websearch_to_tsquery`, ranked by `ts_rank_cd`,
  snippets by `ts_headline`.

Queries never pass the user's text as index syntax: `Query.terms` are words and phrases made only
of letters and digits (the core's parser), each quoted by this module.
"""

from __future__ import annotations

import math
import re
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

FTS_TABLE = "conversation_fts"  # SQLite (and its shadow tables conversation_fts_*)
PG_TABLE = "conversation_search"
PROBE = "conversation_fts_probe"  # SQLite: where a new conversation's words are tokenized, to read its terms
INDEX_TABLES = (FTS_TABLE, PG_TABLE)
MARK_START, MARK_END = "\x01", "\x02"  # around a matched word in a snippet (control characters: never stored text)
DEFAULT_LANGUAGE = "english"
RESOLVED = "resolved"


async def _run(session: AsyncSession, sql: str, params: dict[str, Any] | None = None) -> Any:
    return await session.exec(text(sql), params=params or {})  # type: ignore[call-overload]


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else "sqlite"


def is_index_table(name: str | None) -> bool:
    """Whether a table is the index's own (not a model): left out of the models-vs-migrations comparison."""
    return bool(name) and any(name == t or name.startswith(f"{t}_") for t in INDEX_TABLES)  # type: ignore[union-attr]


# --- the schema (the migration runs these) ------------------------------------------------

_SQLITE_DOC = (
    f"INSERT INTO {FTS_TABLE}(rowid, title, body, author, notes, replies) "
    "SELECT c.id, c.title, c.text, c.author_name || ' ' || c.author_handle, "
    "coalesce((SELECT group_concat(n.text, char(10)) FROM note n WHERE n.conversation_id = c.id), ''), "
    "coalesce((SELECT group_concat(r.text, char(10)) FROM reply r WHERE r.conversation_id = c.id), '') "
    "FROM conversation c WHERE c.id = {id} AND c.erased_at IS NULL"
)
_SQLITE_DROP = f"DELETE FROM {FTS_TABLE} WHERE rowid = {{id}}"


def _sqlite_refresh(of: str) -> str:
    return f"{_SQLITE_DROP.format(id=of)}; {_SQLITE_DOC.format(id=of)};"


SQLITE_SCHEMA = (
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(title, body, author, notes, replies, "
    "tokenize = 'porter unicode61 remove_diacritics 2')",
    f"CREATE TRIGGER conversation_fts_ai AFTER INSERT ON conversation BEGIN {_SQLITE_DOC.format(id='NEW.id')}; END",
    "CREATE TRIGGER conversation_fts_au AFTER UPDATE OF title, text, author_name, author_handle, erased_at ON conversation "
    f"BEGIN {_sqlite_refresh('NEW.id')} END",
    f"CREATE TRIGGER conversation_fts_ad AFTER DELETE ON conversation BEGIN {_SQLITE_DROP.format(id='OLD.id')}; END",
    *(
        stmt
        for child in ("note", "reply")
        for stmt in (
            f"CREATE TRIGGER {child}_fts_ai AFTER INSERT ON {child} BEGIN {_sqlite_refresh('NEW.conversation_id')} END",
            f"CREATE TRIGGER {child}_fts_au AFTER UPDATE OF text, conversation_id ON {child} "
            f"BEGIN {_sqlite_refresh('OLD.conversation_id')} {_sqlite_refresh('NEW.conversation_id')} END",
            f"CREATE TRIGGER {child}_fts_ad AFTER DELETE ON {child} BEGIN {_sqlite_refresh('OLD.conversation_id')} END",
        )
    ),
    f"CREATE VIRTUAL TABLE {FTS_TABLE}_terms USING fts5vocab({FTS_TABLE}, row)",
    f"CREATE VIRTUAL TABLE {PROBE} USING fts5(body, tokenize = 'porter unicode61 remove_diacritics 2')",
    f"CREATE VIRTUAL TABLE {PROBE}_terms USING fts5vocab({PROBE}, instance)",
)
SQLITE_DROP_SCHEMA = (
    *(f"DROP TRIGGER IF EXISTS {t}_fts_{w}" for t in ("conversation", "note", "reply") for w in ("ai", "au", "ad")),
    f"DROP TABLE IF EXISTS {PROBE}_terms",
    f"DROP TABLE IF EXISTS {PROBE}",
    f"DROP TABLE IF EXISTS {FTS_TABLE}_terms",
    f"DROP TABLE IF EXISTS {FTS_TABLE}",
)

_PG_DOCUMENT = """
    SELECT setweight(to_tsvector(cfg, coalesce(c.title, '')), 'A')
        || setweight(to_tsvector(cfg, coalesce(c.text, '')), 'B')
        || setweight(to_tsvector(cfg, coalesce(c.author_name, '') || ' ' || coalesce(c.author_handle, '')), 'B')
        || setweight(to_tsvector(cfg, coalesce((SELECT string_agg(n.text, E'\\n') FROM note n
                                                WHERE n.conversation_id = c.id), '')), 'C')
        || setweight(to_tsvector(cfg, coalesce((SELECT string_agg(r.text, E'\\n') FROM reply r
                                                WHERE r.conversation_id = c.id), '')), 'C')
    FROM conversation c, unsilo_search_config() AS cfg WHERE c.id = cid AND c.erased_at IS NULL
"""


def _pg_config_function(language: str) -> str:
    return (
        "CREATE OR REPLACE FUNCTION unsilo_search_config() RETURNS regconfig LANGUAGE sql IMMUTABLE "
        f"AS $$ SELECT '{language}'::regconfig $$"
    )


PG_SCHEMA = (
    _pg_config_function(DEFAULT_LANGUAGE),
    f"CREATE TABLE {PG_TABLE} (conversation_id integer PRIMARY KEY REFERENCES conversation(id) ON DELETE CASCADE, "
    "document tsvector NOT NULL)",
    f"CREATE INDEX ix_{PG_TABLE}_document ON {PG_TABLE} USING gin (document)",
    # An upsert, not delete-then-insert: two transactions adding a reply or a note to one conversation at
    # once both found no row to delete and both inserted, and the second failed on the primary key.
    f"""CREATE OR REPLACE FUNCTION unsilo_search_refresh(cid integer) RETURNS void LANGUAGE plpgsql AS $$
    DECLARE doc tsvector;
    BEGIN
        SELECT d INTO doc FROM ({_PG_DOCUMENT}) AS x(d);
        IF doc IS NULL THEN
            DELETE FROM {PG_TABLE} WHERE conversation_id = cid;
        ELSE
            INSERT INTO {PG_TABLE} (conversation_id, document) VALUES (cid, doc)
            ON CONFLICT (conversation_id) DO UPDATE SET document = EXCLUDED.document;
        END IF;
    END $$""",
    """CREATE OR REPLACE FUNCTION unsilo_search_conversation() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM unsilo_search_refresh(NEW.id); RETURN NULL; END $$""",
    """CREATE OR REPLACE FUNCTION unsilo_search_child() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN PERFORM unsilo_search_refresh(OLD.conversation_id); END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN PERFORM unsilo_search_refresh(NEW.conversation_id); END IF;
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER conversation_search_ai AFTER INSERT OR UPDATE OF title, text, author_name, author_handle, erased_at "
    "ON conversation FOR EACH ROW EXECUTE FUNCTION unsilo_search_conversation()",
    "CREATE TRIGGER note_search_aiud AFTER INSERT OR UPDATE OF text, conversation_id OR DELETE ON note "
    "FOR EACH ROW EXECUTE FUNCTION unsilo_search_child()",
    "CREATE TRIGGER reply_search_aiud AFTER INSERT OR UPDATE OF text, conversation_id OR DELETE ON reply "
    "FOR EACH ROW EXECUTE FUNCTION unsilo_search_child()",
)
PG_DROP_SCHEMA = (
    "DROP TRIGGER IF EXISTS conversation_search_ai ON conversation",
    "DROP TRIGGER IF EXISTS note_search_aiud ON note",
    "DROP TRIGGER IF EXISTS reply_search_aiud ON reply",
    "DROP FUNCTION IF EXISTS unsilo_search_child()",
    "DROP FUNCTION IF EXISTS unsilo_search_conversation()",
    "DROP FUNCTION IF EXISTS unsilo_search_refresh(integer)",
    f"DROP TABLE IF EXISTS {PG_TABLE}",
    "DROP FUNCTION IF EXISTS unsilo_search_config()",
)


def schema(dialect: str) -> tuple[str, ...]:
    """The statements that create the index on this dialect (empty: `fill` fills it)."""
    return PG_SCHEMA if dialect == "postgresql" else SQLITE_SCHEMA


FILL_CHUNK = 20_000  # conversations indexed by one statement: seconds, well within a statement's timeout


def fill(dialect: str, first: int, last: int) -> str:
    """The statement that (re)indexes the conversations with ids in [first, last] (on SQLite: not indexed yet)."""
    if dialect == "postgresql":
        chunk = f"id BETWEEN {int(first)} AND {int(last)}"
        return f"SELECT unsilo_search_refresh(id) FROM conversation WHERE {chunk} AND erased_at IS NULL"
    return _SQLITE_DOC.format(id="c.id").replace("WHERE c.id = c.id", f"WHERE c.id BETWEEN {int(first)} AND {int(last)}")


async def fill_all(conn: AsyncConnection) -> None:
    """Index every conversation, `FILL_CHUNK` at a time."""
    low, high = (await conn.execute(text("SELECT min(id), max(id) FROM conversation"))).one()
    for start in range(int(low or 0), int(high or 0) + 1 if high is not None else 0, FILL_CHUNK):
        await conn.execute(text(fill(conn.dialect.name, start, start + FILL_CHUNK - 1)))


def drop_schema(dialect: str) -> tuple[str, ...]:
    """The statements that remove the index."""
    return PG_DROP_SCHEMA if dialect == "postgresql" else SQLITE_DROP_SCHEMA


_LANGUAGE = re.compile(r"[a-z_]{2,40}")


async def set_language(conn: AsyncConnection, language: str) -> bool:
    """Index and query in `language` (a PostgreSQL text-search configuration: english, french, simple…);
    when it changes, every document is rebuilt. On SQLite nothing changes (see the module's docstring).
    Returns whether the index was rebuilt. Raises ValueError for a language PostgreSQL does not know."""
    language = (language or DEFAULT_LANGUAGE).strip().lower()
    if conn.dialect.name != "postgresql":
        return False
    if not _LANGUAGE.fullmatch(language):
        raise ValueError(f"search_language {language!r} is not a text-search configuration name")
    known = (await conn.execute(text("SELECT 1 FROM pg_ts_config WHERE cfgname = :n"), {"n": language})).first()
    if known is None:
        raise ValueError(f"search_language {language!r} is not a text-search configuration PostgreSQL knows")
    current = (await conn.execute(text("SELECT unsilo_search_config()::text"))).scalar_one()
    if current == language:
        return False
    await conn.execute(text(_pg_config_function(language)))
    await fill_all(conn)
    return True


# --- queries ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """A parsed search: `terms` all must match (a term of several words is a phrase); filters narrow it:
    any of `departments`, of `statuses`, of `authors`; every one of `tags`.

    Every term is letters and digits separated by single spaces (the core's parser makes them so)."""

    terms: tuple[str, ...]
    departments: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    authors: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    since: datetime | None = None
    exclude_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Hit:
    """One matching conversation: its id, its relevance (higher is better) and its snippet, marked."""

    conversation_id: int
    score: float
    snippet: str = ""


COUNTED = 1_000  # matches counted at most: past it, a search says "more than 1,000"


@dataclass
class Hits:
    """The page of hits, and how many match in all: at most `COUNTED + 1` (`capped`: more than `COUNTED`)."""

    hits: list[Hit] = field(default_factory=list)
    total: int = 0

    @property
    def capped(self) -> bool:
        return self.total > COUNTED


_TERM = re.compile(r"[^\W_]+(?: [^\W_]+)*")


def _check(terms: Sequence[str]) -> None:
    for term in terms:
        if not _TERM.fullmatch(term):
            raise ValueError(f"not a search term: {term[:40]!r}")  # the parser never makes one: a bug, not input


def fts_match(terms: Sequence[str], *, any_of: bool = False) -> str:
    """The FTS5 MATCH expression: every term a quoted string (a phrase when it has spaces), AND-ed (or OR-ed)."""
    _check(terms)
    return (" OR " if any_of else " AND ").join(f'"{t}"' for t in terms)


_WEIGHTS = "10.0, 4.0, 3.0, 1.5, 1.5"  # title, body, author, notes, replies


def _filters(q: Query, dialect: str, params: dict[str, Any]) -> list[str]:
    where: list[str] = []
    if q.departments:
        names = []
        for i, d in enumerate(q.departments):
            params[f"dept{i}"] = d.lower()
            names.append(f":dept{i}")
        where.append(
            "EXISTS (SELECT 1 FROM conversationdepartment cd JOIN department d ON d.id = cd.department_id "
            f"WHERE cd.conversation_id = c.id AND lower(d.name) IN ({', '.join(names)}))"
        )
    if q.statuses:
        names = []
        for i, s in enumerate(q.statuses):
            params[f"status{i}"] = s.lower()
            names.append(f":status{i}")
        where.append(f"c.status IN ({', '.join(names)})")
    authors = []
    for i, a in enumerate(q.authors):
        params[f"author{i}"] = a.strip().lower()
        params[f"handle{i}"] = "@" + a.strip().lower().lstrip("@")
        authors.append(f"lower(c.author_name) = :author{i} OR lower(c.author_handle) IN (:author{i}, :handle{i})")
    if authors:
        where.append("(" + " OR ".join(authors) + ")")
    for i, tag in enumerate(q.tags):
        params[f"tag{i}"] = tag.lower()
        if dialect == "postgresql":
            where.append(f"EXISTS (SELECT 1 FROM json_array_elements_text(c.tags) t WHERE lower(t) = :tag{i})")
        else:
            where.append(f"EXISTS (SELECT 1 FROM json_each(c.tags) t WHERE lower(t.value) = :tag{i})")
    if q.since is not None:
        params["since"] = q.since if dialect == "postgresql" else q.since.strftime("%Y-%m-%d %H:%M:%S.%f")
        where.append("c.ingested_at >= :since")
    if q.exclude_ids:
        where.append(f"c.id NOT IN ({', '.join(str(int(i)) for i in q.exclude_ids)})")
    return where


CANDIDATES = 2_000  # matches ranked at most: the newest ones (a common word matches a large share of the store)


async def search(session: AsyncSession, q: Query, *, limit: int, offset: int = 0, snippets: bool = True) -> Hits:
    """The conversations matching every term and filter, most relevant first (the newest first on ties):
    the first `limit`, with their snippets, and how many match in all.

    Only the newest `CANDIDATES` matches are ranked (the same on both stores): a word most conversations
    hold would otherwise rank every one of them (hundreds of milliseconds on a million). The count is its
    own query, which ranks nothing and stops past `COUNTED`; snippets are marked for the returned page only."""
    if not q.terms:
        return Hits()
    dialect = _dialect(session)
    params: dict[str, Any] = {"limit": limit, "offset": offset, "candidates": CANDIDATES}
    where = _filters(q, dialect, params)
    # Recent first on ties: the newer id (ids grow as conversations come in). Without filters the index
    # alone answers: no row of `conversation` is read for the matches.
    if dialect == "postgresql":
        # One statement. The matching ids (GIN), newest first (OFFSET 0 keeps that order from being merged
        # into the joins); the filters read the rows in that order, only until enough pass (CANDIDATES to rank,
        # COUNTED + 1 to count): a common word's tens of thousands of matches never all join `conversation`.
        params["fetched"] = max(CANDIDATES, COUNTED + 1)
        joined = "JOIN conversation c ON c.id = m.id " if where else ""
        tsquery = _pg_tsquery(q.terms, params, " && ")  # in the scan itself: the planner estimates its matches
        sql = (
            f"WITH top AS MATERIALIZED (SELECT m.id FROM (SELECT s.conversation_id AS id FROM {PG_TABLE} s "
            f"WHERE s.document @@ {tsquery} ORDER BY s.conversation_id DESC OFFSET 0) AS m {joined}"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY m.id DESC LIMIT :fetched) "
            f"SELECT r.id, ts_rank_cd(d.document, {tsquery}, 1) AS score, (SELECT count(*) FROM top) "
            f"FROM (SELECT id FROM top ORDER BY id DESC LIMIT :candidates) AS r "
            f"JOIN {PG_TABLE} d ON d.conversation_id = r.id "
            "ORDER BY score DESC, r.id DESC LIMIT :limit OFFSET :offset"
        )
        count = ""
    else:
        params["match"] = fts_match(q.terms)
        joined = f"JOIN conversation c ON c.id = {FTS_TABLE}.rowid " if where else ""
        matching = f"FROM {FTS_TABLE} {joined}WHERE {FTS_TABLE} MATCH :match" + "".join(f" AND {w}" for w in where)
        sql = (
            f"SELECT m.id, m.score FROM (SELECT {FTS_TABLE}.rowid AS id, -bm25({FTS_TABLE}, {_WEIGHTS}) AS score "
            f"{matching} ORDER BY {FTS_TABLE}.rowid DESC LIMIT :candidates) AS m "
            "ORDER BY m.score DESC, m.id DESC LIMIT :limit OFFSET :offset"
        )
        count = f"SELECT count(*) FROM (SELECT 1 {matching} LIMIT {COUNTED + 1}) AS counted"
    rows = (await _run(session, sql, params)).all()
    if not rows:
        return Hits()
    total = min(int(rows[0][2]), COUNTED + 1) if not count else int((await _run(session, count, params)).scalar_one())
    ids = [int(r[0]) for r in rows]
    marked = await _snippets(session, q.terms, ids) if snippets else {}
    return Hits([Hit(int(r[0]), float(r[1]), marked.get(int(r[0]), "")) for r in rows], total)


def _pg_tsquery(terms: Sequence[str], params: dict[str, Any], joiner: str) -> str:
    """`websearch_to_tsquery(...)` of each term (quoted: a phrase), joined by `joiner` (&& or ||)."""
    _check(terms)
    parts = []
    for i, term in enumerate(terms):
        params[f"term{i}"] = f'"{term}"'
        parts.append(f"websearch_to_tsquery(unsilo_search_config(), :term{i})")
    return "(" + joiner.join(parts) + ")"


MAX_MARKED = 20_000  # characters of a document marked for its snippet (the start of a very long one)


async def _snippets(session: AsyncSession, terms: Sequence[str], ids: Sequence[int]) -> dict[int, str]:
    """Each conversation's document (title, text, author, notes, replies: one a line) with every matched word
    between MARK_START and MARK_END; the core cuts the snippet from it (`bot.search.segments`), the same
    way on both stores."""
    id_list = ", ".join(str(int(i)) for i in ids)
    if _dialect(session) == "postgresql":
        params: dict[str, Any] = {}
        sql = (
            f"WITH q AS (SELECT {_pg_tsquery(terms, params, ' || ')} AS query) "
            "SELECT c.id, ts_headline(unsilo_search_config(), left(concat_ws(E'\\n', c.title, c.text, "
            "c.author_name || ' ' || c.author_handle, "
            "coalesce((SELECT string_agg(n.text, E'\\n') FROM note n WHERE n.conversation_id = c.id), ''), "
            f"coalesce((SELECT string_agg(r.text, E'\\n') FROM reply r WHERE r.conversation_id = c.id), '')), {MAX_MARKED}), "
            f"q.query, 'StartSel={MARK_START}, StopSel={MARK_END}, HighlightAll=true') "
            f"FROM q, conversation c WHERE c.id IN ({id_list})"
        )
        rows = (await _run(session, (sql), params)).all()
    else:
        columns = " || char(10) || ".join(f"highlight({FTS_TABLE}, {i}, '{MARK_START}', '{MARK_END}')" for i in range(5))
        sql = (
            f"SELECT rowid, substr({columns}, 1, {MAX_MARKED}) FROM {FTS_TABLE} "
            f"WHERE {FTS_TABLE} MATCH :match AND rowid IN ({id_list})"
        )
        rows = (await _run(session, (sql), {"match": fts_match(terms, any_of=True)})).all()
    return {int(r[0]): str(r[1] or "") for r in rows}


# --- "seen before": the resolved conversations most like a new one ---------------------------

_WORD = re.compile(r"[^\W\d_][^\W_]{2,39}")  # a term worth comparing: 3+ characters, not a number
MAX_TERMS = 8


def _idf(df: int, n: int) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


async def _pg_common(session: AsyncSession) -> dict[str, int]:
    """The index's most common lexemes as ANALYZE last saw them, with their estimated document counts."""
    sql = (
        "SELECT most_common_elems::text::text[], most_common_elem_freqs, "
        f"(SELECT reltuples FROM pg_class WHERE oid = to_regclass('{PG_TABLE}')) FROM pg_stats "
        f"WHERE tablename = '{PG_TABLE}' AND attname = 'document' AND schemaname = current_schema()"
    )
    row = (await _run(session, sql)).first()
    if row is None or row[0] is None:
        return {}
    total = max(0.0, float(row[2] or 0))
    return {str(lexeme): max(DF_CAP, int(freq * total)) for lexeme, freq in zip(row[0], row[1] or [], strict=False)}


_COMMON: weakref.WeakKeyDictionary[Any, dict[str, float]] = weakref.WeakKeyDictionary()  # engine -> term -> when seen
COMMON_FOR = 600.0  # seconds a term found held by DF_CAP documents or more is taken as common without a look


async def _capped_df(session: AsyncSession, terms: Sequence[str]) -> dict[str, int]:
    """How many documents hold each term, counted up to DF_CAP (a common term's whole posting list is never
    read). A term found common is remembered for COMMON_FOR seconds (per engine: per store): documents are
    added far more than erased, so it stays common, and most of a batch's distinct terms are common ones."""
    engine = getattr(session.bind, "sync_engine", None)
    now = time.monotonic()
    known = _COMMON.setdefault(engine, {}) if engine is not None else {}
    df = {t: DF_CAP for t in terms if now - known.get(t, -COMMON_FOR) < COMMON_FOR}
    wanted = [t for t in terms if t not in df]
    if not wanted:
        return df
    pg = _dialect(session) == "postgresql"
    params = {f"l{i}": (t if pg else f'"{t}"') for i, t in enumerate(wanted)}
    values = ", ".join(f"(CAST(:l{i} AS text))" for i in range(len(wanted)))
    if pg:
        sql = (
            f"WITH l(term) AS (VALUES {values}) SELECT l.term, (SELECT count(*) FROM (SELECT 1 FROM {PG_TABLE} s "
            f"WHERE s.document @@ to_tsquery('simple', quote_literal(l.term)) LIMIT {DF_CAP}) AS capped) FROM l"
        )
    else:
        sql = (
            f"WITH l(term) AS (VALUES {values}) SELECT substr(l.term, 2, length(l.term) - 2), (SELECT count(*) FROM "
            f"(SELECT 1 FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH l.term LIMIT {DF_CAP})) FROM l"
        )
    for term, held in (await _run(session, sql, params)).all():
        df[str(term)] = int(held)
        if int(held) >= DF_CAP and len(known) < 200_000:
            known[str(term)] = now
    return df


async def _terms_and_df(session: AsyncSession, ids: Sequence[int]) -> dict[int, list[tuple[str, int]]]:
    """The index terms of each conversation's own words (title and text), with how many documents hold each."""
    id_list = ", ".join(str(int(i)) for i in ids)
    found: dict[int, list[tuple[str, int]]] = {i: [] for i in ids}
    if _dialect(session) == "postgresql":
        mine = (
            await _run(
                session,
                "SELECT DISTINCT c.id, u.lexeme FROM conversation c, "
                "unnest(to_tsvector(unsilo_search_config(), c.title || ' ' || c.text)) AS u "
                f"WHERE c.id IN ({id_list}) AND length(u.lexeme) BETWEEN 3 AND 40 AND u.lexeme !~ '^[0-9]'",
            )
        ).all()
        # Counting a common lexeme's documents reads its whole posting list: ANALYZE's statistics of the
        # index's most common lexemes say which are common (never looked up); only the others are counted.
        common = await _pg_common(session)
        df = dict(common)
        df.update(await _capped_df(session, sorted({str(lexeme) for _, lexeme in mine} - common.keys())))
        rows = [(cid, lexeme, df.get(str(lexeme), 1)) for cid, lexeme in mine]
    else:
        # The new words go through a probe table with the same tokenizer: its vocabulary is their terms.
        await _run(
            session,
            (f"INSERT INTO {PROBE}(rowid, body) SELECT id, title || ' ' || text FROM conversation WHERE id IN ({id_list})"),
        )
        worth = "length(term) BETWEEN 3 AND 40 AND term NOT GLOB '[0-9]*'"  # as `_WORD`, roughly: no numbers
        mine = (await _run(session, f"SELECT DISTINCT doc, term FROM {PROBE}_terms WHERE {worth}")).all()
        df = await _capped_df(session, sorted({str(term) for _, term in mine}))
        rows = [(cid, term, df.get(str(term), 1)) for cid, term in mine]
        await _run(session, (f"DELETE FROM {PROBE}"))
    for cid, term, held_by in rows:
        if int(cid) in found and _WORD.fullmatch(str(term)):
            found[int(cid)].append((str(term), int(held_by)))
    return found


DF_CAP = 200  # a term held by more documents than this is not looked up (it tells little, and costs a long scan)


async def similar_resolved(
    session: AsyncSession, ids: Sequence[int], *, limit: int = 3, threshold: float
) -> dict[int, list[tuple[int, float]]]:
    """For each conversation of `ids`: up to `limit` resolved (not erased) conversations sharing the most of its
    most distinctive terms (the rarest in the index, at most `MAX_TERMS`), as (id, score) best first. The
    score is the share of those terms' weight (inverse document frequency) the other one holds, in [0, 1];
    only those scoring at least `threshold` are kept."""
    if not ids:
        return {}
    dialect = _dialect(session)
    n = int((await _run(session, ("SELECT coalesce(max(id), 0) FROM conversation"))).scalar_one()) + 1
    found: dict[int, list[tuple[int, float]]] = {}
    weighed: dict[int, tuple[dict[str, float], float]] = {}
    for cid, terms in (await _terms_and_df(session, ids)).items():
        # Its most telling terms weigh the whole; those held by its own document alone are matched by none,
        # those held by too many are not looked up.
        telling = sorted(terms, key=lambda r: (r[1], r[0]))[:MAX_TERMS]
        weights = {t: _idf(df, n) for t, df in telling if 1 < df < DF_CAP}
        found[cid] = []
        if weights:
            weighed[cid] = (weights, sum(_idf(df, n) for _, df in telling))
    wanted = sorted({t for weights, _ in weighed.values() for t in weights})
    if not wanted:
        return found
    # One query for the whole batch: which resolved conversations hold each wanted term. On SQLite, CROSS JOIN
    # keeps the terms first: with a few thousand of them the planner put `conversation` first and FTS5
    # refused the MATCH ("unable to use function MATCH in the requested context").
    params: dict[str, Any] = {f"t{i}": (t if dialect == "postgresql" else f'"{t}"') for i, t in enumerate(wanted)}
    values = ", ".join(f"(CAST(:t{i} AS text))" for i in range(len(wanted)))
    if dialect == "postgresql":
        sql = (
            f"WITH t(term) AS (VALUES {values}) SELECT t.term, c.id FROM t JOIN {PG_TABLE} x "
            "ON x.document @@ to_tsquery('simple', quote_literal(t.term)) JOIN conversation c ON c.id = x.conversation_id "
        )
    else:
        sql = (
            f"WITH t(term) AS (VALUES {values}) SELECT substr(t.term, 2, length(t.term) - 2), c.id FROM t "
            f"CROSS JOIN {FTS_TABLE} ON {FTS_TABLE} MATCH t.term CROSS JOIN conversation c ON c.id = {FTS_TABLE}.rowid "
        )
    sql += f"WHERE c.status = '{RESOLVED}' AND c.erased_at IS NULL"
    holders: dict[str, list[int]] = {}
    for term, other in (await _run(session, sql, params)).all():
        holders.setdefault(str(term), []).append(int(other))
    for cid, (weights, whole) in weighed.items():
        scores: dict[int, float] = {}
        for term, weight in weights.items():
            for other in holders.get(term, ()):
                if other != cid:
                    scores[other] = scores.get(other, 0.0) + weight
        best = sorted(scores.items(), key=lambda kv: (-kv[1], -kv[0]))[:limit]
        found[cid] = [(other, round(score / whole, 4)) for other, score in best if score / whole >= threshold]
    return found
