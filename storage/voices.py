"""The store side of voices (`bot.voices`): the items merged into a conversation and the keys that find it.

Every query here goes through an index: `voicekey`'s primary key (a batch's keys in one `IN`), `voice`'s
`(source, external_id)` and `conversation_id`. Who owns a key is decided by the primary key: of two
replicas claiming the same key at once, PostgreSQL makes the second wait for the first's commit and then
skip it (`ON CONFLICT DO NOTHING`), so it reads the winner and joins it; SQLite has one writer at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, update
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Conversation, ConversationDepartment, Voice, VoiceKey
from storage.repositories import _insert, known_keys

_CHUNK = 900  # SQLite's bound parameters per statement, with room to spare


class VoiceRepo:
    """Voices and voice keys of conversations."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def known(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (source, external id) pairs are already a voice of some conversation (erased ones too)."""
        return await known_keys(self.session, Voice, keys)

    async def conversation_of(self, source: str, external_id: str) -> int | None:
        """The conversation an item joined as a voice, if it did."""
        stmt = select(Voice.conversation_id).where(Voice.source == source, Voice.external_id == external_id)
        return (await self.session.exec(stmt)).first()

    async def owners(self, keys: Sequence[str]) -> dict[str, tuple[int, datetime, str, list[str], bool]]:
        """key -> (conversation id, claimed at, its status, the texts it and its voices say, erased) for the
        keys someone owns (texts: "title\ntext" of the conversation, then of each voice)."""
        found: dict[str, tuple[int, datetime, str, list[str], bool]] = {}
        unique = sorted(set(keys))
        texts: dict[int, list[str]] = {}
        for i in range(0, len(unique), _CHUNK):
            stmt = (
                sa_select(  # type: ignore[call-overload]
                    VoiceKey.key,
                    VoiceKey.conversation_id,
                    VoiceKey.at,
                    Conversation.status,
                    Conversation.title,
                    Conversation.text,
                    Conversation.erased_at,
                )
                .join(Conversation, col(Conversation.id) == col(VoiceKey.conversation_id))
                .where(col(VoiceKey.key).in_(unique[i : i + _CHUNK]))
            )
            for key, cid, at, status, title, text, erased in (await self.session.exec(stmt)).all():
                texts.setdefault(cid, [f"{title}\n{text}"])
                found[key] = (cid, at, status, texts[cid], erased is not None)
        with_voices = sorted(texts)
        for i in range(0, len(with_voices), _CHUNK):
            stmt = select(Voice.conversation_id, Voice.title, Voice.text).where(
                col(Voice.conversation_id).in_(with_voices[i : i + _CHUNK])
            )
            for cid, title, text in (await self.session.exec(stmt)).all():
                texts[cid].append(f"{title}\n{text}")
        return found

    async def claim(self, rows: Sequence[tuple[str, int, datetime]]) -> set[tuple[str, int]]:
        """Insert (key, conversation id, at) rows, skipping keys owned already; the (key, id) pairs inserted.
        Sorted by key, so two replicas claiming overlapping keys wait on each other in one order (no deadlock)."""
        if not rows:
            return set()
        stmt = (
            _insert(self.session, VoiceKey)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(VoiceKey.key, VoiceKey.conversation_id)
        )
        params = [{"key": k, "conversation_id": c, "at": a} for k, c, a in sorted(rows)]
        # executemany + RETURNING: batched by SQLAlchemy ("insertmanyvalues") in order, with a cached statement.
        return {(k, c) for k, c in (await self.session.exec(stmt, params=params)).all()}

    async def take_over(self, key: str, old: int, new: int, at: datetime) -> bool:
        """Give a key whose owner is closed or out of the window to `new`, if `old` still owns it."""
        table = VoiceKey.__table__  # type: ignore[attr-defined]
        stmt = update(table).where(table.c.key == key, table.c.conversation_id == old).values(conversation_id=new, at=at)
        result = await self.session.exec(stmt)
        return bool(result.rowcount)

    async def move_keys(self, old: int, new: int) -> None:
        """Every key of `old` now finds `new` (a conversation merged into another)."""
        table = VoiceKey.__table__  # type: ignore[attr-defined]
        await self.session.exec(update(table).where(table.c.conversation_id == old).values(conversation_id=new))

    async def drop_keys(self, conversation_id: int) -> None:
        """Forget the keys of a conversation (erased, or split back out)."""
        table = VoiceKey.__table__  # type: ignore[attr-defined]
        await self.session.exec(delete(table).where(table.c.conversation_id == conversation_id))

    async def drop_conversation(self, conversation_id: int) -> None:
        """Delete a conversation inserted in this transaction that turned out to be a voice of another."""
        table = Conversation.__table__  # type: ignore[attr-defined]
        await self.session.exec(delete(table).where(table.c.id == conversation_id))

    async def add(self, rows: Sequence[dict[str, Any]], *, now: datetime) -> dict[int, int]:
        """Insert voices (skipping known `(source, external_id)`); bump each conversation's count and version
        (its cards are refreshed, never re-posted). Returns conversation id -> voices added."""
        if not rows:
            return {}
        stmt = (
            _insert(self.session, Voice)
            .on_conflict_do_nothing(index_elements=["source", "external_id"])
            .returning(Voice.conversation_id)
        )
        added: dict[int, int] = {}
        for (cid,) in (await self.session.exec(stmt, params=list(rows))).all():
            added[cid] = added.get(cid, 0) + 1
        await self.recount(added, now=now)
        return added

    async def recount(self, delta: dict[int, int], *, now: datetime) -> None:
        """Add `delta[id]` to each conversation's voice count, with a new version (its cards are refreshed)."""
        table = Conversation.__table__  # type: ignore[attr-defined]
        for cid, n in sorted(delta.items()):
            await self.session.exec(
                update(table)
                .where(table.c.id == cid)
                .values(voice_count=table.c.voice_count + n, version=table.c.version + 1, updated_at=now)
            )

    async def insert(self, row: dict[str, Any]) -> None:
        """Insert one voice (a conversation merged by hand; its count is the caller's)."""
        await self.session.exec(_insert(self.session, Voice).values(row))

    async def remove(self, voice_id: int) -> None:
        """Delete one voice (split back out; its count is the caller's)."""
        table = Voice.__table__  # type: ignore[attr-defined]
        await self.session.exec(delete(table).where(table.c.id == voice_id))

    async def move_voices(self, old: int, new: int) -> int:
        """Every voice of `old` becomes a voice of `new`; how many moved."""
        table = Voice.__table__  # type: ignore[attr-defined]
        result = await self.session.exec(update(table).where(table.c.conversation_id == old).values(conversation_id=new))
        return int(result.rowcount or 0)

    async def merged_from(self, conversation_id: int) -> Voice | None:
        """The voice a conversation became when it was merged into another by hand, if it is one now."""
        stmt = select(Voice).where(Voice.origin_id == conversation_id)
        return (await self.session.exec(stmt)).first()

    async def merged_in(self, conversation_id: int) -> list[Conversation]:
        """The conversations merged into this one by hand (`merge #12 into #9`), in the order they were merged
        (`voice.conversation_id`'s index, then each by its primary key)."""
        stmt = (
            select(Conversation)
            .join(Voice, col(Voice.origin_id) == col(Conversation.id))
            .where(Voice.conversation_id == conversation_id)
            .order_by(col(Voice.joined_at), col(Voice.id))
        )
        return list((await self.session.exec(stmt)).all())

    async def joined(self, department_id: int, *, since: datetime, until: datetime) -> int:
        """How many voices joined the department's conversations in [since, until) (the digest counts them)."""
        stmt = (
            select(func.count())
            .select_from(Voice)
            .join(ConversationDepartment, col(ConversationDepartment.conversation_id) == col(Voice.conversation_id))
            .where(
                ConversationDepartment.department_id == department_id,
                col(Voice.joined_at) >= since,
                col(Voice.joined_at) < until,
            )
        )
        return int((await self.session.exec(stmt)).one())

    async def most_voices(self, department_id: int, *, since: datetime, until: datetime, limit: int) -> list[Conversation]:
        """The department's conversations that voices joined in [since, until), the most voices first (then the
        oldest): the digest's recurring issues. Erased ones are left out."""
        joined = (
            select(Voice.conversation_id)
            .join(ConversationDepartment, col(ConversationDepartment.conversation_id) == col(Voice.conversation_id))
            .where(
                ConversationDepartment.department_id == department_id,
                col(Voice.joined_at) >= since,
                col(Voice.joined_at) < until,
            )
        )
        stmt = (
            select(Conversation)
            .where(col(Conversation.id).in_(joined), col(Conversation.voice_count) > 0, col(Conversation.erased_at).is_(None))
            .order_by(col(Conversation.voice_count).desc(), col(Conversation.id))
            .limit(limit)
        )
        return list((await self.session.exec(stmt)).all())

    async def of(self, conversation_id: int) -> list[Voice]:
        """The voices of a conversation, oldest first."""
        stmt = select(Voice).where(Voice.conversation_id == conversation_id).order_by(col(Voice.joined_at), col(Voice.id))
        return list((await self.session.exec(stmt)).all())

    async def take(self, voice_id: int) -> Voice | None:
        """One voice, by id."""
        return await self.session.get(Voice, voice_id)
