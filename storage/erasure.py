"""Erasing a customer's personal data from the store, keeping what the figures need.

What goes: the conversation's author (name, handle, profile URL), title, text, link, its own
reply endpoint, and every copy of those words elsewhere: in replies and notes that quote
them, in the audit events' data, in outbox payloads (notices already queued or kept, digests),
in its routing reason. What stays: status, times, departments, priority, tags, outcome, who
handled it and the row itself, so digests and stats for any period do not change.

The dedup key: `external_id` is replaced by a one-way tombstone (`tombstone`), so the old feed
item or webhook retry is still recognised as known (`ConversationRepo.known` looks the
tombstones up) and never comes back as new, while nothing readable of it is kept. A new post
by the same customer has a new external id: it starts fresh, linked to nothing erased.

The matching is exact: an author name or handle case-insensitively equal to the stored field
(never a substring of texts), a profile URL equal to the stored one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import String, cast, delete, func, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import Conversation, Delivery, Event, Note, Reply, SavedAnswer, Voice, VoiceKey

ERASED = "[erased]"  # what stands where the customer's words were quoted
TOMBSTONE = "erased:sha256:"
MIN_QUOTE = 12  # a line of the customer's text this long or longer is looked for in replies and notes
CUSTOMER_FIELDS = ("author_name", "author_handle", "author_url", "title", "text", "url", "reply_url")


def tombstone(source: str, external_id: str) -> str:
    """The stored stand-in of an erased conversation's external id: recognisable, not readable."""
    digest = hashlib.sha256(f"{source}\x00{external_id}".encode("utf-8", "surrogatepass")).hexdigest()
    return f"{TOMBSTONE}{digest}"


@dataclass(frozen=True)
class Selector:
    """Whose data: exactly one of an author name, a handle, a profile URL, a conversation id."""

    author: str = ""
    handle: str = ""
    url: str = ""
    conversation_id: int | None = None

    def describe(self) -> str:
        """How the selector is named in answers and logs, without the value (it is personal data)."""
        if self.conversation_id is not None:
            return f"conversation #{self.conversation_id}"
        return "author" if self.author else "handle" if self.handle else "profile URL"


def fields_held(conversation: Conversation) -> tuple[str, ...]:
    """The customer fields of a conversation that hold something (what an erasure would remove)."""
    return tuple(name for name in CUSTOMER_FIELDS if str(getattr(conversation, name) or "").strip())


async def find(session: AsyncSession, selector: Selector, *, limit: int = 5000) -> list[Conversation]:
    """The conversations the selector names that still hold customer data, oldest first."""
    stmt = select(Conversation).where(col(Conversation.erased_at).is_(None))
    if selector.conversation_id is not None:
        stmt = stmt.where(Conversation.id == selector.conversation_id)
    elif (by_author := _author_match(Conversation, selector)) is not None:
        stmt = stmt.where(by_author)
    else:
        return []
    stmt = stmt.order_by(col(Conversation.id)).limit(limit).execution_options(populate_existing=True)
    return list((await session.exec(stmt)).all())


def _author_match(model: Any, selector: Selector) -> Any:
    """The WHERE clause naming the selector's author on a conversation or a voice (None: not by author)."""
    if selector.author:
        return func.lower(model.author_name) == selector.author.strip().lower()
    if selector.handle:
        handle = selector.handle.strip().lower()
        return or_(func.lower(model.author_handle) == handle, func.lower(model.author_handle) == f"@{handle.lstrip('@')}")
    if selector.url:
        return model.author_url == selector.url.strip()
    return None


async def find_voices(session: AsyncSession, selector: Selector, *, limit: int = 5000) -> list[Voice]:
    """The voices (items merged into a conversation, `bot.voices`) by the selector's author that still hold
    their data, oldest first. A conversation id names none: erasing a conversation erases its voices."""
    where = _author_match(Voice, selector)
    if where is None:
        return []
    stmt = select(Voice).where(where, ~col(Voice.external_id).startswith(TOMBSTONE)).order_by(col(Voice.id)).limit(limit)
    return list((await session.exec(stmt)).all())


async def erase_voices(session: AsyncSession, voices: Sequence[Voice], *, at: datetime) -> list[int]:
    """Blank these voices (author, title, text, link) and their quotes in their conversations' replies and
    notes; their ids become tombstones (a re-read feed still knows them). The conversations whose cards
    change, each with a new version."""
    if not voices:
        return []
    words_of: dict[Any, list[str]] = {}
    for voice in voices:
        words_of.setdefault(voice.conversation_id, []).extend(needles(voice))
    for cid in words_of:
        words_of[cid] = sorted(set(words_of[cid]), key=len, reverse=True)
    table = Voice.__table__  # type: ignore[attr-defined]
    for voice in voices:
        values: dict[str, Any] = {name: "" for name in ("author_name", "author_handle", "author_url", "title", "text", "url")}
        values.update(external_id=tombstone(voice.source, voice.external_id), data={})
        await session.exec(update(table).where(table.c.id == voice.id).values(values))
    ids = sorted(words_of)
    await _redact_rows(session, Reply, ids, words_of, columns=("text", "error", "decision_reason"))
    await _redact_rows(session, Note, ids, words_of, columns=("text",))
    conversations = Conversation.__table__  # type: ignore[attr-defined]
    await session.exec(
        update(conversations).where(conversations.c.id.in_(ids)).values(version=conversations.c.version + 1, updated_at=at)
    )
    for voice in voices:
        session.expire(voice)
    return ids


async def expired(session: AsyncSession, *, sources: Sequence[str] | None, before: datetime, limit: int) -> list[Conversation]:
    """Resolved or dismissed conversations closed before `before` whose text is still kept, oldest first.

    `sources` None: of every source; else only of these."""
    stmt = select(Conversation).where(
        col(Conversation.erased_at).is_(None),
        col(Conversation.status).in_(("resolved", "dismissed")),
        col(Conversation.resolved_at) < before,
    )
    if sources is not None:
        stmt = stmt.where(col(Conversation.source).in_(list(sources)))
    stmt = stmt.order_by(col(Conversation.resolved_at), col(Conversation.id)).limit(limit)
    return list((await session.exec(stmt)).all())


async def sources_with_text(session: AsyncSession) -> list[str]:
    """The sources that have closed conversations whose text is still kept."""
    stmt = (
        select(Conversation.source)
        .where(col(Conversation.erased_at).is_(None), col(Conversation.status).in_(("resolved", "dismissed")))
        .distinct()
        .order_by(col(Conversation.source))
    )
    return list((await session.exec(stmt)).all())


def needles(conversation: Conversation | Voice) -> list[str]:
    """The customer's strings to look for elsewhere: their name, handle, URLs, the title, the text and
    each of its lines, sentences and clauses long enough to be a quote (`MIN_QUOTE` characters),
    longest first, so a whole text is replaced before its parts."""
    found = {conversation.author_name, conversation.author_handle, conversation.author_url, conversation.url}
    found |= {conversation.title, conversation.text, getattr(conversation, "reply_url", "")}
    for block in (conversation.text, conversation.title):
        for line in re.split(r"[\r\n]+|(?<=[.!?;:,])\s+", block or ""):  # lines, sentences and their clauses
            if len(line.strip()) >= MIN_QUOTE:
                found.add(line.strip())
    found.add((conversation.author_name or "").strip().rstrip(".,;:!?"))  # "Tom W" for "Tom W."
    handle = (conversation.author_handle or "").strip()
    if handle.startswith("@") and len(handle) > 2:
        found.add(handle[1:])
    return sorted((n.strip() for n in found if n and len(n.strip()) >= 2), key=len, reverse=True)


def redact(text: str, words: Sequence[str], *, quotes: bool = False) -> str:
    """`text` with every occurrence of `words` (whole words, case-insensitive) replaced by "[erased]".

    A mail-style quote line ("> …") that holds any of them goes as a whole; with `quotes` (a reply or
    note on the erased conversation: what it quotes is the customer) every quote line goes."""
    if not text or not words:
        return text
    # Whole words only: a customer called "Al" leaves "Also" alone.
    pattern = re.compile(r"(?<!\w)(?:" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.IGNORECASE)
    lines = []
    for line in text.splitlines(keepends=True):
        quoted = line.lstrip().startswith(">") and line.strip(" >\r\n") not in ("", ERASED)
        if quoted and (quotes or pattern.search(line)):
            lines.append("> " + ERASED + ("\n" if line.endswith("\n") else ""))
        else:
            lines.append(pattern.sub(ERASED, line))
    return "".join(lines)


def redact_json(value: Any, words: Sequence[str]) -> Any:
    """A JSON value with `redact` applied to every string in it (keys kept)."""
    if isinstance(value, str):
        return redact(value, words)
    if isinstance(value, list):
        return [redact_json(v, words) for v in value]
    if isinstance(value, dict):
        return {k: redact_json(v, words) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Erased:
    """What one erasure changed."""

    conversation_ids: tuple[int, ...]
    replies: int
    notes: int
    events: int
    deliveries: int


async def erase(session: AsyncSession, conversations: Sequence[Conversation], *, at: datetime, why: str) -> Erased:
    """Blank the customer data of `conversations` and every copy of it, in the caller's transaction.

    Each conversation gets a new version (its cards are to be refreshed) and `erased_at` / `erased_why`.
    """
    ids = [c.id for c in conversations if c.id is not None]
    if not ids:
        return Erased((), 0, 0, 0, 0)
    words_of = {c.id: needles(c) for c in conversations}
    every_word = sorted({w for ws in words_of.values() for w in ws}, key=len, reverse=True)
    table = Conversation.__table__  # type: ignore[attr-defined]
    for conversation in conversations:
        words = words_of[conversation.id]
        values: dict[str, Any] = {name: "" for name in CUSTOMER_FIELDS}
        values.update(
            external_id=tombstone(conversation.source, conversation.external_id),
            routing_reason=redact(conversation.routing_reason, words)[:1024],
            erased_at=at,
            erased_why=why[:64],
            updated_at=at,
            version=table.c.version + 1,
        )
        await session.exec(update(table).where(table.c.id == conversation.id).values(values))
    replies = await _redact_rows(session, Reply, ids, words_of, columns=("text", "error", "decision_reason"))
    notes = await _redact_rows(session, Note, ids, words_of, columns=("text",))
    await _redact_rows(session, SavedAnswer, ids, words_of, columns=("title", "text"))  # answers saved from its replies
    events = await _redact_json_rows(session, Event, col(Event.conversation_id).in_(ids), every_word)
    earliest = min(c.ingested_at for c in conversations)
    deliveries = await _redact_json_rows(
        session,
        Delivery,
        or_(
            col(Delivery.conversation_id).in_(ids),
            # Digests and other notices name no conversation: those made since the first one came in.
            col(Delivery.conversation_id).is_(None) & (col(Delivery.kind) == "notice") & (col(Delivery.created_at) >= earliest),
        ),
        every_word,
        extra={"external_id": ""},
    )
    await _stop_replies(session, ids)
    await _forget_seen(session, ids)
    # Its voices go with it, and the keys that would find it (its link, its text's bands).
    await erase_voices(session, (await session.exec(select(Voice).where(col(Voice.conversation_id).in_(ids)))).all(), at=at)
    keys = VoiceKey.__table__  # type: ignore[attr-defined]
    await session.exec(delete(keys).where(keys.c.conversation_id.in_(ids)))
    # The ORM's copies of these rows are stale now: read them again when asked.
    for conversation in conversations:
        session.expire(conversation)
    return Erased(tuple(ids), replies, notes, events, deliveries)


NOT_SENT = "not sent: the customer's data was erased"


async def _forget_seen(session: AsyncSession, ids: Sequence[int]) -> None:
    """Take the erased conversations off every other conversation's "seen before" list (its reply's first
    line may quote the customer). Only conversations that came in later can list them."""
    gone = set(ids)
    table = Conversation.__table__  # type: ignore[attr-defined]
    stmt = select(Conversation.id, Conversation.seen_before).where(
        col(Conversation.id) > min(ids), cast(Conversation.seen_before, String) != "[]"
    )
    for cid, listed in (await session.exec(stmt)).all():
        kept = [item for item in listed or [] if not (isinstance(item, dict) and item.get("id") in gone)]
        if len(kept) != len(listed or []):
            await session.exec(update(table).where(table.c.id == cid).values(seen_before=kept))


async def _stop_replies(session: AsyncSession, ids: Sequence[int]) -> None:
    """Replies still on their way to an erased customer are not sent: their delivery and the reply fail."""
    pending = (
        await session.exec(
            select(Delivery).where(col(Delivery.conversation_id).in_(ids), Delivery.kind == "reply", Delivery.status == "pending")
        )
    ).all()
    for delivery in pending:
        delivery.status, delivery.last_error, delivery.locked_until, delivery.holder = "failed", NOT_SENT, None, None
    reply_ids = [int(d.payload.get("reply_id", 0)) for d in pending]
    if reply_ids:
        await session.exec(
            update(Reply)
            .where(col(Reply.id).in_(reply_ids), col(Reply.status) == "sending")
            .values(status="failed", error=NOT_SENT)
            .execution_options(synchronize_session=False)
        )
    await session.flush()


async def _redact_rows(
    session: AsyncSession, model: Any, ids: Sequence[int], words_of: dict[Any, list[str]], *, columns: Iterable[str]
) -> int:
    rows = (await session.exec(select(model).where(col(model.conversation_id).in_(ids)))).all()
    changed = 0
    for row in rows:
        words = words_of.get(row.conversation_id, [])
        for name in columns:
            old = getattr(row, name)
            if isinstance(old, str) and (new := redact(old, words, quotes=True)) != old:
                setattr(row, name, new)
                changed += 1
    await session.flush()
    return changed


async def _redact_json_rows(
    session: AsyncSession, model: Any, where: Any, words: Sequence[str], *, extra: dict[str, str] | None = None
) -> int:
    """Redact the JSON column of matching rows (events' `data`, deliveries' `payload`)."""
    column = "data" if model is Event else "payload"
    rows = (await session.exec(select(model).where(where))).all()
    changed = 0
    for row in rows:
        old = getattr(row, column) or {}
        new = redact_json(old, words)
        if extra:
            new = {**new, **{k: v for k, v in extra.items() if k in new}}
        if isinstance(new.get("notice"), dict):  # a link whose address was erased is no link any more
            notice = new["notice"]
            notice["links"] = [link for link in notice.get("links", []) if ERASED not in str(link)]
        if new != old:
            setattr(row, column, new)  # a new object: the JSON column is written
            changed += 1
    await session.flush()
    return changed
