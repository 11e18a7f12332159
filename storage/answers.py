"""Saved answers: their own full-text index, and the look-ups the reply flow needs.

The index follows the `savedanswer` rows by triggers (migration 0014), like the conversations'
(`storage.search`), in tables of its own: SQLite an FTS5 table `answer_fts` (rowid = the answer's
id; its title weighs more than its text), PostgreSQL `answer_search` (a `tsvector`, GIN index, in
the text-search configuration `unsilo_search_config()` of the conversations' index). Queries are
terms made by the core's parser (`bot.search.parse`), quoted by `storage.search`'s helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import text, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Conversation, SavedAnswer
from storage.search import MAX_TERMS, _pg_tsquery, _terms_and_df, fts_match

FTS_TABLE = "answer_fts"
PG_TABLE = "answer_search"
INDEX_TABLES = (FTS_TABLE, PG_TABLE)
FITTING = 3  # answers a reply form offers
_ROW = f"INSERT INTO {FTS_TABLE}(rowid, title, text) VALUES (NEW.id, NEW.title, NEW.text)"

SQLITE_SCHEMA = (
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(title, text, tokenize = 'porter unicode61 remove_diacritics 2')",
    f"CREATE TRIGGER savedanswer_fts_ai AFTER INSERT ON savedanswer BEGIN {_ROW}; END",
    "CREATE TRIGGER savedanswer_fts_au AFTER UPDATE OF title, text ON savedanswer "
    f"BEGIN DELETE FROM {FTS_TABLE} WHERE rowid = OLD.id; {_ROW}; END",
    f"CREATE TRIGGER savedanswer_fts_ad AFTER DELETE ON savedanswer BEGIN DELETE FROM {FTS_TABLE} WHERE rowid = OLD.id; END",
)
SQLITE_DROP_SCHEMA = (
    *(f"DROP TRIGGER IF EXISTS savedanswer_fts_{w}" for w in ("ai", "au", "ad")),
    f"DROP TABLE IF EXISTS {FTS_TABLE}",
)
PG_SCHEMA = (
    f"CREATE TABLE {PG_TABLE} (answer_id integer PRIMARY KEY REFERENCES savedanswer(id) ON DELETE CASCADE, "
    "document tsvector NOT NULL)",
    f"CREATE INDEX ix_{PG_TABLE}_document ON {PG_TABLE} USING gin (document)",
    f"""CREATE OR REPLACE FUNCTION unsilo_answer_refresh() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM {PG_TABLE} WHERE answer_id = NEW.id;
        INSERT INTO {PG_TABLE} (answer_id, document) SELECT NEW.id,
            setweight(to_tsvector(unsilo_search_config(), coalesce(NEW.title, '')), 'A')
            || setweight(to_tsvector(unsilo_search_config(), coalesce(NEW.text, '')), 'B');
        RETURN NULL;
    END $$""",
    "CREATE TRIGGER savedanswer_search_aiu AFTER INSERT OR UPDATE OF title, text ON savedanswer "
    "FOR EACH ROW EXECUTE FUNCTION unsilo_answer_refresh()",
)
PG_DROP_SCHEMA = (
    "DROP TRIGGER IF EXISTS savedanswer_search_aiu ON savedanswer",
    "DROP FUNCTION IF EXISTS unsilo_answer_refresh()",
    f"DROP TABLE IF EXISTS {PG_TABLE}",
)


def schema(dialect: str) -> tuple[str, ...]:
    """The statements that create the answers' index on this dialect."""
    return PG_SCHEMA if dialect == "postgresql" else SQLITE_SCHEMA


def drop_schema(dialect: str) -> tuple[str, ...]:
    """The statements that remove it."""
    return PG_DROP_SCHEMA if dialect == "postgresql" else SQLITE_DROP_SCHEMA


def is_index_table(name: str | None) -> bool:
    """Whether a table is this index's own (FTS5 shadow tables included): no model describes it."""
    return bool(name) and any(name == t or name.startswith(f"{t}_") for t in INDEX_TABLES)  # type: ignore[union-attr]


async def _run(session: AsyncSession, sql: str, params: dict[str, Any]) -> Any:
    return await session.exec(text(sql), params=params)  # type: ignore[call-overload]


class AnswerRepo:
    """The answer library: saved answers, their ranked search, and the look-up of a reused one."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, answer: SavedAnswer) -> SavedAnswer:
        """Store a new answer (its id set); the triggers index it."""
        self.session.add(answer)
        await self.session.flush()
        return answer

    async def search(
        self, terms: Sequence[str], *, limit: int, any_of: bool = False
    ) -> tuple[list[tuple[SavedAnswer, float]], int]:
        """The saved answers holding every term (`any_of`: any), most relevant first (the newest on ties):
        the first `limit` with their scores, and how many match in all."""
        if not terms or limit <= 0:
            return [], 0
        session = self.session
        params: dict[str, Any] = {"limit": limit}
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            query = _pg_tsquery(terms, params, " || " if any_of else " && ")
            sql = (
                f"WITH q AS (SELECT {query} AS query) SELECT s.answer_id, ts_rank_cd(s.document, q.query, 1) AS score, "
                f"count(*) OVER () FROM q, {PG_TABLE} s WHERE s.document @@ q.query "
                "ORDER BY score DESC, s.answer_id DESC LIMIT :limit"
            )
        else:
            params["match"] = fts_match(terms, any_of=any_of)
            sql = (
                f"SELECT m.id, m.score, count(*) OVER () FROM (SELECT rowid AS id, -bm25({FTS_TABLE}, 4.0, 1.0) AS score "
                f"FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :match) AS m ORDER BY m.score DESC, m.id DESC LIMIT :limit"
            )
        rows = (await _run(session, sql, params)).all()
        if not rows:
            return [], 0
        ids = [int(r[0]) for r in rows]
        found = {a.id: a for a in (await session.exec(select(SavedAnswer).where(col(SavedAnswer.id).in_(ids)))).all()}
        return [(found[int(r[0])], float(r[1])) for r in rows if int(r[0]) in found], int(rows[0][2])

    async def fitting(self, conversation_id: int, *, limit: int = FITTING) -> list[SavedAnswer]:
        """The answers that fit a conversation best: the answers' index ranked by the conversation's most
        distinctive terms (the rarest in the conversations' index, as "seen before" picks them), any of them."""
        return (await self._fitting_many([conversation_id], limit=limit)).get(conversation_id, [])

    async def _fitting_many(self, ids: Sequence[int], *, limit: int) -> dict[int, list[SavedAnswer]]:
        found: dict[int, list[SavedAnswer]] = {}
        for cid, terms in (await _terms_and_df(self.session, ids)).items():  # one look-up of the terms for all
            telling = [term for term, _ in sorted(terms, key=lambda r: (r[1], r[0]))[:MAX_TERMS]]
            found[cid] = [answer for answer, _ in (await self.search(telling, limit=limit, any_of=True))[0]]
        return found

    async def record_fitting(self, ids: Sequence[int], *, limit: int = FITTING) -> int:
        """Store on each new conversation the answers that fit it best (`Conversation.answers`: [{"id", "title"}],
        what its reply form offers where the form is rendered with the card); how many got some. Nothing is
        looked up while the library is empty."""
        if not ids or (await self.session.exec(select(SavedAnswer.id).limit(1))).first() is None:
            return 0
        table = Conversation.__table__  # type: ignore[attr-defined]
        recorded = 0
        for cid, fit in (await self._fitting_many(ids, limit=limit)).items():
            if fit:
                listed = [{"id": a.id, "title": a.title} for a in fit]
                await self.session.exec(update(table).where(table.c.id == cid).values(answers=listed))
                recorded += 1
        return recorded

    async def get(self, answer_id: int) -> SavedAnswer | None:
        """One answer, or None."""
        return await self.session.get(SavedAnswer, answer_id)

    async def pre_approved_with_text(self, answer_text: str) -> list[SavedAnswer]:
        """The pre-approved answers whose text is exactly this (as stored), oldest first."""
        query = select(SavedAnswer).where(col(SavedAnswer.pre_approved).is_(True), col(SavedAnswer.text) == answer_text)
        return list((await self.session.exec(query.order_by(col(SavedAnswer.id)))).all())

    async def count_uses(self, answer_text: str) -> int:
        """Count one more use of every answer with exactly this text; how many there were."""
        table = SavedAnswer.__table__  # type: ignore[attr-defined]
        done = await self.session.exec(update(table).where(table.c.text == answer_text).values(uses=table.c.uses + 1))
        return int(done.rowcount or 0)
