"""Repositories: every query the core needs, written once for SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    delete,
    false,
    func,
    literal_column,
    or_,
    true,
    union,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import EARLIER_COUNTED
from storage import search as search_index
from storage.db import LEASE_LOCK, off_loop
from storage.erasure import tombstone
from storage.models import (
    Conversation,
    ConversationDepartment,
    Delivery,
    Department,
    Destination,
    Event,
    Identity,
    InboundEvent,
    JobRun,
    Note,
    Person,
    Posting,
    Reply,
    Rule,
    Source,
)

logger = logging.getLogger(__name__)


NAMED_BY_CONFIG = ("cli", "config")  # accounts a plain name in the config means: CLI logins, `[people]` keys


def _person_references() -> list[tuple[Any, str]]:
    """(table, column) of every column that refers to a person."""
    tables = [Conversation, Identity, Event, Note, Reply]
    return [
        (model.__table__, column.name)  # type: ignore[attr-defined]
        for model in tables
        for column in model.__table__.columns  # type: ignore[attr-defined]
        if any(fk.column.table.name == "person" for fk in column.foreign_keys)
    ]


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else "sqlite"


def _insert(session: AsyncSession, table: Any) -> Any:
    """A dialect insert that supports `on_conflict_do_nothing` and `returning`."""
    return (postgresql.insert if _dialect(session) == "postgresql" else sqlite.insert)(table)


def _chunks(values: Sequence[Any], size: int = 5000) -> list[Sequence[Any]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


# The statements behind every button click, built once: constructing a statement costs
# more than SQLite takes to run it (see bench/teams_invoke.py).
_PERSON_REFERENCES = _person_references()
_ENQUEUE: dict[str, Any] = {}  # per dialect
_CARD_SYNCS: dict[str, Any] = {}  # per dialect
_DELIVERY: Table = Delivery.__table__  # type: ignore[attr-defined]
_EVENT_INSERT = Event.__table__.insert()  # type: ignore[attr-defined]
_CAS: dict[tuple[str, ...], Any] = {}  # compare-and-set UPDATEs, one per set of changed columns
EARLIER_LISTED = 5  # a customer's earlier conversations named on a card (the rest are counted)


def _earlier_columns() -> tuple[Any, Any]:
    """Two scalar subqueries on the conversation being read: how many earlier conversations its
    author has, up to `EARLIER_COUNTED` (same handle or same profile URL, case-insensitive, any
    source; erased ones have no author any more), and the newest `EARLIER_LISTED` of them as
    "id:status,…". Each is read newest first from the `(lower(author_handle), id)` and
    `(lower(author_url), id)` indexes and stops at its limit: an author with thousands of
    conversations (a feed that names its site as every post's author) costs a click no more."""
    me = Conversation.__table__  # type: ignore[attr-defined]
    other = me.alias("earlier")

    def newest(column: str, limit: int) -> Any:
        return (
            select(other.c.id, other.c.status)
            .where(
                me.c[column] != "",
                func.lower(other.c[column]) == func.lower(me.c[column]),
                other.c.id < me.c.id,
                other.c.erased_at.is_(None),
            )
            .order_by(other.c.id.desc())
            .limit(limit)
            .correlate(me)
            .subquery()
        )

    def either(limit: int) -> Any:  # by handle or by URL, each conversation once
        by_handle, by_url = newest("author_handle", limit), newest("author_url", limit)
        return union(select(by_handle.c.id, by_handle.c.status), select(by_url.c.id, by_url.c.status)).subquery()

    counted = either(EARLIER_COUNTED)
    count = select(func.count()).select_from(counted).correlate(me).scalar_subquery()
    found = either(EARLIER_LISTED)
    listed_rows = select(found.c.id, found.c.status).order_by(found.c.id.desc()).limit(EARLIER_LISTED).subquery()
    listed = (
        select(func.aggregate_strings(cast(listed_rows.c.id, String) + literal_column("':'") + listed_rows.c.status, ","))
        .correlate(me)
        .scalar_subquery()
    )
    return count.label("earlier_count"), listed.label("earlier_listed")


def _earlier_of(count: int | None, listed: str | None) -> tuple[int, list[tuple[int, str]]]:
    """(how many, [(id, status) newest first]) from `_earlier_columns`."""
    pairs = [item.partition(":") for item in (listed or "").split(",") if item]
    return int(count or 0), sorted(((int(i), status) for i, _, status in pairs), reverse=True)


# With its departments and its author's earlier conversations: one query for what every handler reads first.
_CONVERSATION_BY_ID = (
    select(Conversation, Department, *_earlier_columns())
    .outerjoin(ConversationDepartment, col(ConversationDepartment.conversation_id) == Conversation.id)
    .outerjoin(Department, col(Department.id) == ConversationDepartment.department_id)
    .where(Conversation.id == bindparam("conversation_id"))
    .order_by(col(Department.name))
    .execution_options(populate_existing=True)
)
_EARLIER_BY_ID = select(*_earlier_columns()).where(Conversation.id == bindparam("conversation_id"))
_DEPARTMENTS_OF = (
    select(Department)
    .join(ConversationDepartment, col(ConversationDepartment.department_id) == Department.id)
    .where(ConversationDepartment.conversation_id == bindparam("conversation_id"))
    .order_by(Department.name)
)


def _card_targets_select() -> Any:
    """(cid, version, did, platform) for every channel that shows the cards of the conversations `:ids`.

    A channel listed by two departments of a conversation is one destination row per
    department; it shows one card (through its oldest row), not two.
    """
    conversation, link = Conversation.__table__, ConversationDepartment.__table__  # type: ignore[attr-defined]
    destination = Destination.__table__  # type: ignore[attr-defined]
    return (
        select(
            conversation.c.id.label("cid"),
            conversation.c.version,
            func.min(destination.c.id).label("did"),
            destination.c.platform,
        )
        .select_from(
            conversation.join(link, link.c.conversation_id == conversation.c.id).join(
                destination, destination.c.department_id == link.c.department_id
            )
        )
        .where(conversation.c.id.in_(bindparam("ids", expanding=True)))
        .group_by(conversation.c.id, conversation.c.version, destination.c.platform, destination.c.channel_id)
    )


_CARD_TARGETS = _card_targets_select().order_by(literal_column("cid"), literal_column("did"))
_PERSON_WITH_IDENTITIES = (
    select(Person, Identity)
    .join(Identity, col(Identity.person_id) == Person.id)
    .where(
        col(Person.id)
        == select(Identity.person_id)
        .where(Identity.platform == bindparam("platform"), Identity.user_id == bindparam("user_id"))
        .scalar_subquery()
    )
)

_PERSON_BY_ID_WITH_IDENTITIES = (
    select(Person, Identity)
    .outerjoin(Identity, col(Identity.person_id) == Person.id)
    .where(col(Person.id) == bindparam("person_id"))
)


def _card_syncs_insert(session: AsyncSession) -> Any:
    """INSERT ... SELECT of the card deliveries for `:ids` at `:now` (see `DeliveryRepo.enqueue_card_syncs`)."""
    targets = _card_targets_select().subquery()
    build_json = func.json_build_object if _dialect(session) == "postgresql" else func.json_object
    now = bindparam("now", type_=_DELIVERY.c.created_at.type)
    rows = (
        select(
            literal_column("'card:'")
            + cast(targets.c.cid, String)
            + literal_column("':'")  # type: ignore[call-overload]
            + cast(targets.c.did, String)
            + literal_column("':v'")
            + cast(targets.c.version, String),
            targets.c.platform,
            literal_column("'card'"),
            targets.c.cid,
            targets.c.did,
            build_json(literal_column("'version'"), targets.c.version),
            literal_column("'pending'"),
            literal_column("0"),
            now,
            now,
        )
        .where(true())  # SQLite: without a WHERE, ON CONFLICT would parse as a join constraint
        .order_by(targets.c.cid, targets.c.did)
    )
    columns = [
        "key",
        "platform",
        "kind",
        "conversation_id",
        "destination_id",
        "payload",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
    ]
    return _insert(session, _DELIVERY).from_select(columns, rows).on_conflict_do_nothing(index_elements=["key"])


async def known_keys(session: AsyncSession, model: Any, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (source, external id) pairs rows of `model` (conversations, voices) already hold."""
    by_source: dict[str, list[str]] = {}
    for source, external_id in keys:
        by_source.setdefault(source, []).append(external_id)
    found: set[tuple[str, str]] = set()
    for source, external_ids in by_source.items():
        # An erased one keeps its key as a tombstone: its item is known, never new again.
        stones = {tombstone(source, e): e for e in external_ids}
        wanted = [*external_ids, *stones]
        for chunk in _chunks(wanted, 900):
            stmt = select(model.external_id).where(model.source == source, col(model.external_id).in_(chunk))
            found.update((source, stones.get(e, e)) for e in (await session.exec(stmt)).all())
    return found


class _Repo:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session


class ConversationRepo(_Repo):
    """Conversations, their departments, and the compare-and-set that decides every race."""

    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session)
        self._departments: dict[int, list[Department]] = {}
        self._loaded: dict[int, Conversation] = {}
        self._earlier: dict[int, tuple[int, list[tuple[int, str]]]] = {}

    async def get(self, conversation_id: int) -> Conversation | None:
        """Load fresh from the database (never a stale copy from the identity map), with its departments."""
        rows = (await self.session.exec(_CONVERSATION_BY_ID, params={"conversation_id": conversation_id})).all()
        if not rows:
            return None
        self._departments[conversation_id] = [row[1] for row in rows if row[1] is not None]
        self._earlier[conversation_id] = _earlier_of(rows[0][2], rows[0][3])
        self._loaded[conversation_id] = rows[0][0]
        return rows[0][0]

    async def earlier(self, conversation_id: int) -> tuple[int, list[tuple[int, str]]]:
        """The author's earlier conversations: how many, and the newest few as (id, status), newest
        first; read with the conversation by `get` (no second query after it)."""
        known = self._earlier.get(conversation_id)
        if known is None:
            row = (await self.session.exec(_EARLIER_BY_ID, params={"conversation_id": conversation_id})).first()
            known = _earlier_of(row[0], row[1]) if row is not None else (0, [])
            self._earlier[conversation_id] = known
        return known[0], list(known[1])

    def loaded(self, conversation_id: int) -> Conversation | None:
        """The conversation as `get` last read it in this unit of work (None if it did not): no query."""
        return self._loaded.get(conversation_id)

    async def add_many(self, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
        """Insert many conversations at once, skipping known `(source, external_id)` pairs.

        Returns external id -> new id for the rows actually inserted (rows of one call
        share a source or carry distinct external ids).
        """
        if not rows:
            return {}
        # executemany + RETURNING: SQLAlchemy batches it ("insertmanyvalues") with a cached statement.
        stmt = (
            _insert(self.session, Conversation)
            .on_conflict_do_nothing(index_elements=["source", "external_id"])
            .returning(Conversation.id, Conversation.source, Conversation.external_id)
        )
        result = await self.session.exec(stmt, params=list(rows))
        return {f"{source}\x00{external_id}": new_id for new_id, source, external_id in result.all()}

    async def move_to(self, conversation_id: int, department_id: int) -> None:
        """Make `department_id` the conversation's only department (rerouted): its other links go."""
        link = ConversationDepartment
        self._departments.pop(conversation_id, None)
        await self.session.exec(
            delete(link).where(col(link.conversation_id) == conversation_id, col(link.department_id) != department_id)
        )
        there = select(link.department_id).where(link.conversation_id == conversation_id, link.department_id == department_id)
        if (await self.session.exec(there)).first() is None:
            await self.session.exec(
                link.__table__.insert(),  # type: ignore[attr-defined]
                params=[{"conversation_id": conversation_id, "department_id": department_id}],
            )

    async def link_departments(self, links: Sequence[tuple[int, int]]) -> None:
        """Insert many (conversation id, department id) links at once."""
        if links:
            self._departments.clear()
            await self.session.exec(
                ConversationDepartment.__table__.insert(),  # type: ignore[attr-defined]
                params=[{"conversation_id": c, "department_id": d} for c, d in links],
            )

    async def card_targets(self, conversation_ids: Sequence[int]) -> list[tuple[int, int, int, str]]:
        """(conversation id, its version, destination id, platform) for every channel showing these conversations.

        One query per chunk of ids; a channel two departments of a conversation share appears once.
        """
        result: list[tuple[int, int, int, str]] = []
        for chunk in _chunks(conversation_ids):
            rows = (await self.session.exec(_CARD_TARGETS, params={"ids": list(chunk)})).all()
            result.extend((cid, version, destination_id, platform) for cid, version, destination_id, platform in rows)
        return result

    async def known(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which (source, external id) pairs are already stored (so a re-read feed isn't routed again)."""
        return await known_keys(self.session, Conversation, keys)

    async def id_for(self, source: str, external_id: str) -> int | None:
        """The id of the conversation with this source and external id (erased ones too), if any."""
        stmt = select(Conversation.id).where(
            Conversation.source == source, col(Conversation.external_id).in_((external_id, tombstone(source, external_id)))
        )
        return (await self.session.exec(stmt)).first()

    async def compare_and_set(self, conversation: Conversation, **values: Any) -> bool:
        """Apply `values` only if nobody changed the row since it was read.

        The version check is the single arbiter of concurrent transitions: on both
        SQLite and PostgreSQL exactly one of several racing writers matches it.
        """
        values["version"] = conversation.version + 1
        keys = tuple(sorted(values))
        stmt = _CAS.get(keys)
        if stmt is None:
            table = Conversation.__table__  # type: ignore[attr-defined]
            stmt = _CAS[keys] = (  # on the table: the ORM's bulk-update path costs more than the UPDATE itself
                update(table)
                .where(table.c.id == bindparam("cas_id"), table.c.version == bindparam("cas_version"))
                .values({key: bindparam(f"new_{key}", type_=table.c[key].type) for key in keys})
            )
        params = {f"new_{key}": value for key, value in values.items()}
        params.update(cas_id=conversation.id, cas_version=conversation.version)
        result = await self.session.exec(stmt, params=params)
        if result.rowcount != 1:
            return False
        for key, value in values.items():
            set_committed_value(conversation, key, value)  # already written: no second UPDATE at flush
        return True

    async def departments_of(self, conversation_id: int) -> list[Department]:
        """The departments a conversation belongs to, by name (read once per unit of work)."""
        known = self._departments.get(conversation_id)
        if known is not None:
            return list(known)
        departments = list((await self.session.exec(_DEPARTMENTS_OF, params={"conversation_id": conversation_id})).all())
        self._departments[conversation_id] = departments
        return list(departments)

    async def sla_candidates(self, *, now: datetime, limit: int = 500) -> list[tuple[Conversation, int]]:
        """Conversations that may be past their SLA and were not yet chased, with their shortest SLA (minutes).

        Unclaimed ones not yet escalated, and claimed ones without a reply whose owner was
        not yet reminded; the caller checks each against `now` (the SLA is per department).
        """
        shortest = func.min(Department.sla_minutes).label("sla")
        stmt = (
            select(Conversation, shortest)
            .join(ConversationDepartment, col(ConversationDepartment.conversation_id) == Conversation.id)
            .join(Department, col(Department.id) == ConversationDepartment.department_id)
            .where(
                or_(
                    (col(Conversation.status) == "open") & col(Conversation.escalated_at).is_(None),
                    (col(Conversation.status) == "claimed")
                    & col(Conversation.reply_written_at).is_(None)  # the owner wrote none (sent or not)
                    & col(Conversation.reminded_at).is_(None),
                )
            )
            .where(col(Conversation.ingested_at) <= now)
            .group_by(col(Conversation.id))
            .order_by(col(Conversation.id))
            .limit(limit)
        )
        return [(conversation, int(sla)) for conversation, sla in (await self.session.exec(stmt)).all()]

    async def touch(self, conversation_id: int, *, at: datetime) -> None:
        """Say the card changed without a status change (a reply approved, sent, failed...): a new version."""
        await self.touch_many([conversation_id], at=at)

    async def touch_many(self, conversation_ids: Sequence[int], *, at: datetime) -> None:
        """`touch` for many conversations at once (their "seen before" found after they were stored)."""
        for chunk in _chunks(conversation_ids):
            stmt = (
                update(Conversation)
                .where(col(Conversation.id).in_(list(chunk)))
                .values(version=Conversation.version + 1, updated_at=at)
                .execution_options(synchronize_session=False)
            )
            await self.session.exec(stmt)

    async def mark_once(self, conversation_id: int, column: str, *, at: datetime) -> bool:
        """Set `escalated_at` / `reminded_at` if still empty; True for the one caller that did."""
        field = {"escalated_at": Conversation.escalated_at, "reminded_at": Conversation.reminded_at}[column]
        stmt = (
            update(Conversation)
            .where(col(Conversation.id) == conversation_id, col(field).is_(None))
            .values({column: at})
            .execution_options(synchronize_session=False)
        )
        return (await self.session.exec(stmt)).rowcount == 1

    async def department_names(self, conversation_ids: Sequence[int]) -> dict[int, list[str]]:
        """Department names for many conversations in one query."""
        if not conversation_ids:
            return {}
        stmt = (
            select(ConversationDepartment.conversation_id, Department.name)
            .join(Department, col(Department.id) == ConversationDepartment.department_id)
            .where(col(ConversationDepartment.conversation_id).in_(conversation_ids))
            .order_by(Department.name)
        )
        names: dict[int, list[str]] = {cid: [] for cid in conversation_ids}
        for conversation_id, name in (await self.session.exec(stmt)).all():
            names[conversation_id].append(name)
        return names

    async def queue(
        self,
        *,
        statuses: Sequence[str],
        department: str | None = None,
        owner_id: int | None = None,
        limit: int = 50,
        priorities: Sequence[str] = (),
    ) -> tuple[list[Conversation], int]:
        """Conversations in the given statuses, optionally per department/owner: the first `limit`, and
        how many there are in all (counted in the same statement). Ordered by `priorities` (most urgent
        first; any other priority after them), then oldest first."""
        total = func.count().over().label("total")
        stmt = select(Conversation, total).where(col(Conversation.status).in_(statuses))
        if department is not None:
            stmt = stmt.join(
                ConversationDepartment,
                col(ConversationDepartment.conversation_id) == Conversation.id,
            ).join(Department, col(Department.id) == ConversationDepartment.department_id)
            stmt = stmt.where(Department.name == department)
        if owner_id is not None:
            stmt = stmt.where(Conversation.owner_id == owner_id)
        rank = case(
            {name: index for index, name in enumerate(priorities)}, value=col(Conversation.priority), else_=len(priorities)
        )
        stmt = stmt.order_by(rank, col(Conversation.ingested_at), col(Conversation.id)).limit(limit)
        rows = (await self.session.exec(stmt)).all()
        return [row[0] for row in rows], (rows[0][1] if rows else 0)

    async def recent(self, *, statuses: Sequence[str], limit: int = 10) -> list[Conversation]:
        """The most recently changed conversations in these statuses."""
        stmt = (
            select(Conversation)
            .where(col(Conversation.status).in_(statuses))
            .order_by(col(Conversation.updated_at).desc(), col(Conversation.id).desc())
            .limit(limit)
        )
        return list((await self.session.exec(stmt)).all())

    async def counts_by_department(self, statuses: Sequence[str]) -> dict[str, int]:
        """How many conversations in these statuses each department has (zero included)."""
        stmt = (
            select(Department.name, func.count())
            .select_from(ConversationDepartment)
            .join(Conversation, col(Conversation.id) == ConversationDepartment.conversation_id)
            .join(Department, col(Department.id) == ConversationDepartment.department_id)
            .where(col(Conversation.status).in_(statuses))
            .group_by(Department.name)
        )
        active = select(Department.name).where(col(Department.retired_at).is_(None))
        counts = {name: 0 for name in (await self.session.exec(active)).all()}
        for name, count in (await self.session.exec(stmt)).all():
            counts[name] = count
        return counts

    async def search(
        self, query: search_index.Query, *, limit: int = 50, snippets: bool = True
    ) -> tuple[list[tuple[Conversation, str]], int]:
        """Conversations matching the query in the full-text index (`storage.search`), most relevant first and
        recent first on ties, each with its marked snippet: the first `limit`, and how many match in all
        (counted up to `search_index.COUNTED + 1`: more than `COUNTED` says only that). `snippets=False`: each
        one's snippet is "" (marking is the costly part of a big page: a caller that shows none skips it)."""
        with off_loop():  # ranks up to `search_index.CANDIDATES` matches: not on the event loop
            hits = await search_index.search(self.session, query, limit=limit, snippets=snippets)
        if not hits.hits:
            return [], 0
        stmt = select(Conversation).where(col(Conversation.id).in_([h.conversation_id for h in hits.hits]))
        by_id = {c.id: c for c in (await self.session.exec(stmt)).all()}
        return [(by_id[h.conversation_id], h.snippet) for h in hits.hits if h.conversation_id in by_id], hits.total

    async def tagged(self, tags: Sequence[str], *, limit: int = 200) -> list[int]:
        """The newest `limit` conversations carrying any of these tags (case-insensitive), by id."""
        if not tags:
            return []
        # The tags column is JSON text as Python writes it (`["gdpr", "delivery"]`): a tag is its quoted form in it.
        quoted = [json.dumps(tag.lower()).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for tag in tags]
        text = func.lower(cast(Conversation.tags, String))
        stmt = (
            select(Conversation.id)
            .where(or_(*(text.like(f"%{q}%", escape="\\") for q in quoted)))
            .order_by(col(Conversation.id).desc())
            .limit(limit)
        )
        with off_loop():  # a scan of the conversations' tags: not on the event loop
            return [cid for cid in (await self.session.exec(stmt)).all() if cid is not None]


class PersonRepo(_Repo):
    """People and their platform identities.

    `chat_platforms` are the platforms whose accounts people are mentioned under (the composition
    root's list): `cli`, `config` and `web` accounts are never mentioned."""

    def __init__(self, session: AsyncSession, *, chat_platforms: Sequence[str] = ()) -> None:
        super().__init__(session)
        self.chat_platforms = tuple(chat_platforms)
        self._kept: dict[int, Person] = {}  # the session's identity map holds people only while referenced

    async def get(self, person_id: int) -> Person | None:
        """A person by id."""
        return await self.session.get(Person, person_id)

    async def names(self, person_ids: Iterable[int | None]) -> dict[int, str]:
        """Display names for many people in one query."""
        ids = {pid for pid in person_ids if pid is not None}
        if not ids:
            return {}
        stmt = select(Person.id, Person.name).where(col(Person.id).in_(ids))
        return {pid: name for pid, name in (await self.session.exec(stmt)).all() if pid is not None}

    async def many(self, person_ids: Iterable[int]) -> dict[int, tuple[Person, list[Identity]]]:
        """People by id, each with their accounts (one query)."""
        ids = sorted(set(person_ids))
        if not ids:
            return {}
        stmt = select(Person, Identity).outerjoin(Identity, col(Identity.person_id) == Person.id).where(col(Person.id).in_(ids))
        found: dict[int, tuple[Person, list[Identity]]] = {}
        for person, identity in (await self.session.exec(stmt)).all():
            entry = found.setdefault(person.id, (person, []))  # type: ignore[arg-type]
            if identity is not None:
                entry[1].append(identity)
        return found

    async def set_notify(self, person_id: int, *, on: bool) -> None:
        """Whether the person is told when a conversation they sent in is resolved."""
        await self.session.exec(
            update(Person).where(col(Person.id) == person_id).values(notify=on).execution_options(synchronize_session=False)
        )

    async def declaring(self) -> list[Person]:
        """Everyone who has declared a topic (`expert add …`)."""
        stmt = select(Person).where(cast(Person.expertise, String) != "[]").order_by(col(Person.id))
        return [p for p in (await self.session.exec(stmt)).all() if p.expertise]

    async def declare(self, person: Person, topics: Sequence[str]) -> None:
        """Set the topics a person says they know about."""
        person.expertise = list(topics)
        self.session.add(person)
        await self.session.flush()

    async def identities(self, person_id: int) -> list[Identity]:
        """Every platform account of a person."""
        stmt = select(Identity).where(Identity.person_id == person_id)
        return list((await self.session.exec(stmt)).all())

    async def mentionable(self, keys: Iterable[str]) -> tuple[tuple[str, str], ...]:
        """("platform:user_id", display name) of the chat accounts of everyone named by these keys, as the
        config names managers: platform ids (`slack:U…`, `teams:…`, `cli:…`), verified emails, or plain
        names (CLI logins and `[people]` keys only, never display names); a chat id of nobody known yet
        comes with an empty name."""
        keys = [k for k in keys if k]
        direct = {k for k in keys if k.partition(":")[0] in self.chat_platforms and k.partition(":")[2]}
        found: dict[str, str] = dict.fromkeys(direct, "")
        persons = select(Identity.person_id).where(
            or_(
                false(),
                *(
                    [
                        and_(col(Identity.platform) == platform, col(Identity.user_id) == user_id)
                        for platform, _, user_id in (k.partition(":") for k in sorted(keys) if ":" in k)
                    ]
                    + [
                        and_(
                            col(Identity.platform).in_(NAMED_BY_CONFIG),
                            col(Identity.user_id).in_([k for k in keys if ":" not in k and "@" not in k]),
                        )
                    ]
                ),
            )
        )
        emails = [k.lower() for k in keys if "@" in k and ":" not in k]
        stmt = (
            select(Identity, Person.name)
            .join(Person, col(Person.id) == Identity.person_id)
            .where(col(Identity.platform).in_(self.chat_platforms))
            .where(or_(col(Identity.person_id).in_(persons), func.lower(Person.email).in_(emails or [""])))
        )
        found.update((f"{i.platform}:{i.user_id}", name) for i, name in (await self.session.exec(stmt)).all())
        return tuple(sorted(found.items()))

    async def mentions_of(self, person_id: int) -> tuple[tuple[str, str], ...]:
        """("platform:user_id", display name) for each of a person's accounts."""
        stmt = (
            select(Identity, Person.name)
            .join(Person, col(Person.id) == Identity.person_id)
            .where(Identity.person_id == person_id)
        )
        return tuple(sorted((f"{i.platform}:{i.user_id}", name) for i, name in (await self.session.exec(stmt)).all()))

    async def by_identity(self, platform: str, user_id: str) -> Person | None:
        """The person behind a platform account, if known."""
        stmt = (
            select(Person)
            .join(Identity, col(Identity.person_id) == Person.id)
            .where(Identity.platform == platform, Identity.user_id == user_id)
        )
        return (await self.session.exec(stmt)).first()

    async def by_id_with_identities(self, person_id: int) -> tuple[Person, list[Identity]] | None:
        """A person by id and all of their accounts, in one query."""
        rows = (await self.session.exec(_PERSON_BY_ID_WITH_IDENTITIES, params={"person_id": person_id})).all()
        if not rows:
            return None
        self._kept[person_id] = rows[0][0]  # `get` finds them in the identity map for the rest of the unit of work
        return rows[0][0], [identity for _, identity in rows if identity is not None]

    async def with_identities(self, platform: str, user_id: str) -> tuple[Person, list[Identity]] | None:
        """The person behind a platform account and all of their accounts, in one query."""
        rows = (await self.session.exec(_PERSON_WITH_IDENTITIES, params={"platform": platform, "user_id": user_id})).all()
        if not rows:
            return None
        return rows[0][0], [identity for _, identity in rows]

    async def resolve(self, platform: str, user_id: str, *, name: str | None = None, email: str | None = None) -> Person:
        """The person behind a platform account, created (or linked by email) on first sight.

        Two first sights of one account at once (PostgreSQL; SQLite has one writer) both try to
        create it: the later one waits for the earlier's commit, then takes the person it made.
        """
        person = await self.by_identity(platform, user_id)
        if person is not None:
            if name and person.name != name and person.name == user_id:
                person.name = name
            return person
        email = (email or "").strip().lower() or None
        if email:
            person = await self.by_email(email)
        created = person is None
        if person is None:
            person = Person(name=name or user_id, email=email)
            try:
                async with self.session.begin_nested():  # a savepoint: losing the race undoes only this
                    self.session.add(person)
                    await self.session.flush()
            except IntegrityError:
                if email is None:
                    raise
                person = await self.by_email(email)  # made by the concurrent first sight, committed now
                if person is None:
                    raise
                created = False
        stmt = (
            _insert(self.session, Identity)
            .values(platform=platform, user_id=user_id, person_id=person.id)
            .on_conflict_do_nothing(index_elements=["platform", "user_id"])
            .returning(Identity.person_id)
        )
        if (await self.session.exec(stmt)).first() is None:
            # The account was linked meanwhile by a concurrent first sight: its person is the one.
            if created:
                await self.session.delete(person)
                await self.session.flush()
            found = await self.by_identity(platform, user_id)
            assert found is not None
            return found
        return person

    async def by_email(self, email: str) -> Person | None:
        """The person with this (verified) email, if any."""
        stmt = select(Person).where(func.lower(Person.email) == email.strip().lower())
        return (await self.session.exec(stmt)).first()

    async def adopt_email(self, person: Person, email: str) -> Person:
        """A platform's directory says this account's email is `email`: the account belongs to the
        person with that email (the two are merged), or a person without one gets it. Returns the person."""
        email = email.strip().lower()
        other = await self.by_email(email)
        if other is None:
            if person.email:  # an email the config gave the person ([people]) is kept
                return person
            try:
                async with self.session.begin_nested():  # a savepoint: losing the race undoes only this
                    person.email = email
                    await self.session.flush()
                return person
            except IntegrityError:
                # Another account of this person took the email at the same time (PostgreSQL waited for
                # its commit): it is the same person.
                other = await self.by_email(email)
                if other is None:
                    raise
                await self.session.refresh(person)  # the savepoint's rollback expired it
        if other.id != person.id:
            await self.merge(person, into=other)
        return other

    async def merge(self, person: Person, *, into: Person) -> None:
        """`person` and `into` are one person: every account, conversation, note, reply and event of
        `person` becomes `into`'s, and `person` is removed (its email moves over if `into` has none)."""
        assert person.id is not None and into.id is not None and person.id != into.id
        await self.session.flush()
        old, new = person.id, into.id
        for table, column in _PERSON_REFERENCES:
            await self.session.exec(update(table).where(table.c[column] == old).values({column: new}))
        email = person.email
        topics = [t for t in person.expertise or [] if t not in (into.expertise or [])]
        await self.session.delete(person)
        await self.session.flush()
        if email and not into.email:
            into.email = email
        if topics:  # what one account declared, the person declared
            into.expertise = [*(into.expertise or []), *topics]
        logger.info("people %s and %s are one person (accounts linked); kept %s", old, new, new)

    async def configure(
        self, *, key: str, name: str, email: str | None, accounts: Sequence[tuple[str, str]], department: str | None = None
    ) -> Person:
        """Make one `[people.<key>]` entry of the config true: its accounts and email are one person, of
        `department` (the one they belong to; None: not said)."""
        email = (email or "").strip().lower() or None
        candidates: list[Person] = []
        for platform, user_id in [("config", key), *accounts]:
            found = await self.by_identity(platform, user_id)
            if found is not None and all(found.id != c.id for c in candidates):
                candidates.append(found)
        by_email = await self.by_email(email) if email else None
        if by_email is not None and all(by_email.id != c.id for c in candidates):
            candidates.append(by_email)
        if candidates:
            person = candidates[0]
            for other in candidates[1:]:
                await self.merge(other, into=person)
            found = await self.get(person.id)  # type: ignore[arg-type]
            assert found is not None
            person = found
        else:
            person = Person(name=name or key, email=email)
            self.session.add(person)
            await self.session.flush()
        if name:
            person.name = name
        if email:
            person.email = email
        person.department = department
        for platform, user_id in [("config", key), *accounts]:
            stmt = (
                _insert(self.session, Identity)
                .values(platform=platform, user_id=user_id, person_id=person.id)
                .on_conflict_do_update(index_elements=["platform", "user_id"], set_={"person_id": person.id})
            )
            await self.session.exec(stmt)
        await self.session.flush()
        return person


class DepartmentRepo(_Repo):
    """Departments and their destinations."""

    async def all(self, *, retired: bool = False) -> list[Department]:
        """Every department in service (with `retired`, the retired ones too), by name."""
        stmt = select(Department).order_by(Department.name)
        if not retired:
            stmt = stmt.where(col(Department.retired_at).is_(None))
        return list((await self.session.exec(stmt)).all())

    async def by_name(self, name: str, *, retired: bool = False) -> Department | None:
        """One department in service by its name (with `retired`, a retired one too)."""
        stmt = select(Department).where(Department.name == name)
        if not retired:
            stmt = stmt.where(col(Department.retired_at).is_(None))
        return (await self.session.exec(stmt)).first()

    async def set_retired(self, department: Department, *, at: datetime | None) -> bool:
        """Retire a department in service (`at`), or bring a retired one back (None); True for the one caller
        that did: a compare-and-set on `retired_at`, so replicas starting together retire it once.
        A retired department keeps no managers (the config gives them again when it comes back)."""
        stmt = (
            update(Department)
            .where(
                col(Department.id) == department.id,
                col(Department.retired_at).is_(None) if at is not None else col(Department.retired_at).is_not(None),
            )
            .values({"retired_at": at, **({"managers": []} if at is not None else {})})
            .execution_options(synchronize_session=False)
        )
        if (await self.session.exec(stmt)).rowcount != 1:
            return False
        set_committed_value(department, "retired_at", at)
        if at is not None:
            set_committed_value(department, "managers", [])
        return True

    async def move_active(self, department_id: int, *, to: int, statuses: Sequence[str], at: datetime) -> dict[int, int]:
        """Move the conversations in `statuses` from one department to another, each with a new version
        (their cards are sent again); returns id -> new version. Closed conversations keep naming the
        department that handled them."""
        link = ConversationDepartment
        stmt = (
            select(link.conversation_id)
            .join(Conversation, col(Conversation.id) == link.conversation_id)
            .where(link.department_id == department_id, col(Conversation.status).in_(list(statuses)))
            .order_by(col(link.conversation_id))
        )
        ids = list((await self.session.exec(stmt)).all())
        versions: dict[int, int] = {}
        for chunk in _chunks(ids, 900):
            await self.session.exec(
                delete(link).where(col(link.department_id) == department_id, col(link.conversation_id).in_(list(chunk)))
            )
            there = select(link.conversation_id).where(link.department_id == to, col(link.conversation_id).in_(list(chunk)))
            already = set((await self.session.exec(there)).all())
            missing = [{"conversation_id": cid, "department_id": to} for cid in chunk if cid not in already]
            if missing:
                await self.session.exec(link.__table__.insert(), params=missing)  # type: ignore[attr-defined]
            bumped = await self.session.exec(
                update(Conversation)
                .where(col(Conversation.id).in_(list(chunk)))
                .values(version=Conversation.version + 1, updated_at=at)
                .returning(col(Conversation.id), col(Conversation.version))
                .execution_options(synchronize_session=False)
            )
            versions.update({cid: version for cid, version in bumped.all()})
        return versions

    async def upsert(self, name: str, *, sla_minutes: int, managers: list[str]) -> Department:
        """Create or update a department from the config."""
        department = await self.by_name(name, retired=True)
        if department is None:
            department = Department(name=name)
        department.sla_minutes = sla_minutes
        department.managers = list(managers)
        self.session.add(department)
        await self.session.flush()
        return department

    async def reference_for(self, platform: str, channel_id: str) -> dict[str, Any]:
        """A stored conversation reference for a channel not linked as a destination (digests, DMs).

        The channel's own if it was ever linked, else any of the platform's (it carries the
        service URL and tenant a proactive message needs).
        """
        stmt = (
            select(Destination)
            .where(Destination.platform == platform)
            .order_by((col(Destination.channel_id) == channel_id).desc(), col(Destination.id))
            .limit(1)
        )
        found = (await self.session.exec(stmt)).first()
        return dict(found.conversation_ref) if found is not None else {}

    async def by_ids(self, destination_ids: Iterable[int]) -> list[Destination]:
        """These destinations (those that still exist)."""
        return await self._destinations(Destination.id, destination_ids)

    async def all_destinations(self) -> list[Destination]:
        """Every destination of every department."""
        return list((await self.session.exec(select(Destination).order_by(col(Destination.id)))).all())

    async def channel_destinations(self, platform: str, channel_id: str) -> list[Destination]:
        """The destinations of one chat channel (one per department posting there)."""
        stmt = select(Destination).where(Destination.platform == platform, Destination.channel_id == channel_id)
        return list((await self.session.exec(stmt.order_by(col(Destination.id)))).all())

    async def destinations(self, department_ids: Iterable[int]) -> list[Destination]:
        """Every destination of these departments."""
        return await self._destinations(Destination.department_id, department_ids)

    async def _destinations(self, column: Any, values: Iterable[int]) -> list[Destination]:
        ids = list(values)
        if not ids:
            return []
        stmt = select(Destination).where(col(column).in_(ids)).order_by(col(Destination.id))
        return list((await self.session.exec(stmt)).all())

    async def unlink(self, platform: str, channel_id: str, *, department_id: int | None = None) -> list[str]:
        """Stop posting a channel's cards (of one department, or all); returns the department names."""
        stmt = (
            select(Destination, Department.name)
            .join(Department, col(Department.id) == Destination.department_id)
            .where(Destination.platform == platform, Destination.channel_id == channel_id)
        )
        if department_id is not None:
            stmt = stmt.where(Destination.department_id == department_id)
        removed = []
        for destination, name in (await self.session.exec(stmt)).all():
            # Keep the history (postings, sent deliveries); cancel what was still to be sent there.
            await self.session.exec(
                update(Posting).where(col(Posting.destination_id) == destination.id).values(destination_id=None)
            )
            await self.session.exec(
                update(Delivery)
                .where(col(Delivery.destination_id) == destination.id, col(Delivery.status) == "pending")
                .values(status="cancelled")
            )
            await self.session.exec(
                update(Delivery).where(col(Delivery.destination_id) == destination.id).values(destination_id=None)
            )
            await self.session.delete(destination)
            removed.append(name)
        await self.session.flush()
        return sorted(removed)

    async def link(
        self,
        department_id: int,
        platform: str,
        channel_id: str,
        *,
        ref: dict[str, Any] | None = None,
        linked_by: str | None = None,
    ) -> Destination:
        """Make a channel a destination of a department (idempotent)."""
        stmt = select(Destination).where(
            Destination.department_id == department_id,
            Destination.platform == platform,
            Destination.channel_id == channel_id,
        )
        destination = (await self.session.exec(stmt)).first()
        if destination is None:
            destination = Destination(department_id=department_id, platform=platform, channel_id=channel_id)
        if ref is not None:
            destination.conversation_ref = ref
        if linked_by is not None:
            destination.linked_by = linked_by
        self.session.add(destination)
        await self.session.flush()
        return destination


class RuleRepo(_Repo):
    """Routing rules, in evaluation order."""

    async def enabled(self) -> list[Rule]:
        """The enabled rules by position."""
        stmt = select(Rule).where(col(Rule.enabled).is_(True)).order_by(col(Rule.position), col(Rule.id))
        return list((await self.session.exec(stmt)).all())

    async def replace_from_config(self, rules: Sequence[Rule]) -> None:
        """Make the stored rules exactly the config's rules (by name)."""
        existing = {r.name: r for r in (await self.session.exec(select(Rule))).all()}
        wanted = {r.name for r in rules}
        for name, rule in existing.items():
            if name not in wanted:
                await self.session.delete(rule)
        for rule in rules:
            current = existing.get(rule.name)
            if current is None:
                self.session.add(rule)
            else:
                for key, value in rule.model_dump(exclude={"id"}).items():
                    setattr(current, key, value)
        await self.session.flush()


class SourceRepo(_Repo):
    """Sources of conversations."""

    def add(self, source: Source) -> Source:
        """Add a source (the CLI's `sources add-feed` / `add-webhook`)."""
        self.session.add(source)
        return source

    async def all(self) -> list[Source]:
        """Every source, by name."""
        return list((await self.session.exec(select(Source).order_by(Source.name))).all())

    async def by_name(self, name: str) -> Source | None:
        """One source by name."""
        return (await self.session.exec(select(Source).where(Source.name == name))).first()

    async def kinds(self, names: Sequence[str]) -> dict[str, str]:
        """name -> kind of the sources by these names (two columns: readable on a store not migrated yet)."""
        if not names:
            return {}
        stmt = select(Source.name, Source.kind).where(col(Source.name).in_(list(names)))
        return {name: kind for name, kind in (await self.session.exec(stmt)).all()}

    async def named_in_conversations(self, name: str) -> bool:
        """Whether any conversation came from this source (then its row is kept when it is removed)."""
        stmt = select(Conversation.id).where(Conversation.source == name).limit(1)
        return (await self.session.exec(stmt)).first() is not None

    async def delete(self, source: Source) -> None:
        """Forget a source nothing refers to."""
        await self.session.delete(source)
        await self.session.flush()

    async def ensure(self, name: str, *, kind: str, url: str = "") -> Source:
        """The named source, created if new."""
        source = await self.by_name(name)
        if source is None:
            source = Source(name=name, kind=kind, url=url)
            self.session.add(source)
            await self.session.flush()
        return source

    async def due_feeds(self, now: datetime) -> list[Source]:
        """Feeds with a URL that were never polled or whose next poll is due by `now`."""
        stmt = (
            select(Source)
            .where(
                Source.kind == "feed",
                Source.url != "",
                col(Source.removed_at).is_(None),
                or_(col(Source.next_poll_at).is_(None), col(Source.next_poll_at) <= now),
            )
            .order_by(col(Source.id))
        )
        return list((await self.session.exec(stmt)).all())

    async def claim_poll(self, source_id: int, *, due_at: datetime | None, until: datetime) -> bool:
        """Take the poll of a source that was due at `due_at` (None: never polled), leased `until`.

        One conditional UPDATE decides it on SQLite and PostgreSQL alike: the replica that
        moves `next_poll_at` away from the due time it read polls; the others match no row.
        """
        stmt = (
            update(Source)
            .where(col(Source.id) == source_id, col(Source.next_poll_at).is_not_distinct_from(due_at))
            .values(next_poll_at=until)
            .execution_options(synchronize_session=False)
        )
        return (await self.session.exec(stmt)).rowcount == 1


class EventRepo(_Repo):
    """The append-only audit log."""

    def add(self, event: Event) -> Event:
        """Append one event."""
        self.session.add(event)
        return event

    async def add_many(self, events: Sequence[dict[str, Any]]) -> None:
        """Append many events at once."""
        if events:
            await self.session.exec(_EVENT_INSERT, params=list(events))

    async def contributions(
        self, conversation_ids: Sequence[int], *, kinds: Sequence[str]
    ) -> list[tuple[int, str, int, datetime]]:
        """(person id, kind, conversation id, last time) of what people did to these conversations,
        one row per person, kind and conversation (aggregated here, from the conversation index)."""
        if not conversation_ids:
            return []
        stmt = (
            select(Event.actor_id, Event.kind, Event.conversation_id, func.max(Event.at))
            .where(
                col(Event.conversation_id).in_(list(conversation_ids)),
                col(Event.kind).in_(list(kinds)),
                col(Event.actor_id).is_not(None),
            )
            .group_by(col(Event.actor_id), col(Event.kind), col(Event.conversation_id))
        )
        return [(a, k, c, at) for a, k, c, at in (await self.session.exec(stmt)).all()]  # type: ignore[misc]

    async def for_conversation(self, conversation_id: int) -> list[Event]:
        """A conversation's history, oldest first."""
        stmt = select(Event).where(Event.conversation_id == conversation_id).order_by(col(Event.id))
        return list((await self.session.exec(stmt)).all())


class NoteRepo(_Repo):
    """Internal notes."""

    def add(self, note: Note) -> Note:
        """Add a note."""
        self.session.add(note)
        return note

    async def for_conversation(self, conversation_id: int) -> list[Note]:
        """A conversation's notes, oldest first."""
        stmt = select(Note).where(Note.conversation_id == conversation_id).order_by(col(Note.id))
        return list((await self.session.exec(stmt)).all())


class ReplyRepo(_Repo):
    """Replies to customers."""

    def add(self, reply: Reply) -> Reply:
        """Add a reply."""
        self.session.add(reply)
        return reply

    async def for_conversation(self, conversation_id: int) -> list[Reply]:
        """A conversation's replies, oldest first."""
        stmt = select(Reply).where(Reply.conversation_id == conversation_id).order_by(col(Reply.id))
        return list((await self.session.exec(stmt)).all())

    async def get(self, reply_id: int) -> Reply | None:
        """One reply, fresh from the database."""
        stmt = select(Reply).where(Reply.id == reply_id).execution_options(populate_existing=True)
        return (await self.session.exec(stmt)).first()

    async def latest(self, conversation_id: int) -> Reply | None:
        """A conversation's newest reply, if any."""
        stmt = (
            select(Reply)
            .where(Reply.conversation_id == conversation_id)
            .order_by(col(Reply.id).desc())
            .limit(1)
            .execution_options(populate_existing=True)
        )
        return (await self.session.exec(stmt)).first()

    async def same_since(
        self, conversation_id: int, *, author_id: int, text: str, since: datetime, exclude: int | None = None
    ) -> Reply | None:
        """An earlier reply with the same text by the same person since `since` that still stands (not failed
        or rejected): the same reply sent again (a retry, a replayed request), not a new one."""
        stmt = (
            select(Reply)
            .where(
                Reply.conversation_id == conversation_id,
                Reply.author_id == author_id,
                Reply.text == text,
                col(Reply.created_at) >= since,
                col(Reply.status).not_in(("failed", "rejected")),
            )
            .order_by(col(Reply.id))
            .limit(1)
            .execution_options(populate_existing=True)
        )
        if exclude is not None:
            stmt = stmt.where(Reply.id != exclude)
        return (await self.session.exec(stmt)).first()

    async def with_status(self, status: str, *, conversation_ids: Iterable[int] | None = None) -> list[Reply]:
        """Replies in one status (e.g. "pending_approval"), oldest first."""
        stmt = select(Reply).where(Reply.status == status).order_by(col(Reply.id))
        if conversation_ids is not None:
            stmt = stmt.where(col(Reply.conversation_id).in_(list(conversation_ids)))
        return list((await self.session.exec(stmt)).all())

    async def decide(self, reply: Reply, *, expected: str, **values: Any) -> bool:
        """Move a reply on from status `expected`; False if someone else moved it first."""
        stmt = (
            update(Reply)
            .where(col(Reply.id) == reply.id, col(Reply.status) == expected)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        result = await self.session.exec(stmt)
        if result.rowcount != 1:
            return False
        for key, value in values.items():
            set_committed_value(reply, key, value)
        return True


class InboundEventRepo(_Repo):
    """Platform events already processed."""

    async def first_time(self, platform: str, event_id: str, *, at: datetime) -> bool:
        """Record the event; False if it was recorded before (a retry)."""
        stmt = (
            _insert(self.session, InboundEvent)
            .values(platform=platform, event_id=event_id, received_at=at)
            .on_conflict_do_nothing(index_elements=["platform", "event_id"])
            .returning(InboundEvent.event_id)
        )
        return (await self.session.exec(stmt)).first() is not None

    async def purge(self, *, before: datetime) -> int:
        """Forget the events recorded before `before` (no platform retries that late); how many went."""
        result = await self.session.exec(delete(InboundEvent).where(col(InboundEvent.received_at) < before))
        return int(result.rowcount or 0)


class PostingRepo(_Repo):
    """Where copies of cards live."""

    async def by_message(self, platform: str, channel_id: str, message_id: str) -> Posting | None:
        """The card posted as this message (maps thread replies back to conversations)."""
        stmt = select(Posting).where(
            Posting.platform == platform,
            Posting.channel_id == channel_id,
            Posting.message_id == message_id,
        )
        return (await self.session.exec(stmt)).first()

    async def for_conversation(self, conversation_id: int) -> list[Posting]:
        """Every posted copy of a conversation's card."""
        stmt = select(Posting).where(Posting.conversation_id == conversation_id).order_by(col(Posting.id))
        return list((await self.session.exec(stmt)).all())

    async def in_channel(self, conversation_id: int, platform: str, channel_id: str) -> Posting | None:
        """The copy of a card in one channel, if posted (whichever department's destination posted it:
        a channel two departments share shows one card): the first one recorded, the live copy that
        is kept up to date; later ones are duplicates a lost send result left behind (see `record`)."""
        stmt = (
            select(Posting)
            .where(Posting.conversation_id == conversation_id, Posting.platform == platform, Posting.channel_id == channel_id)
            .order_by(col(Posting.id))
        )
        return (await self.session.exec(stmt)).first()

    async def at_destinations(self, conversation_ids: Sequence[int], destination_ids: Sequence[int]) -> list[Posting]:
        """The copies of these conversations' cards posted through these destinations."""
        if not conversation_ids or not destination_ids:
            return []
        found: list[Posting] = []
        for chunk in _chunks(conversation_ids, 900):
            stmt = (
                select(Posting)
                .where(col(Posting.conversation_id).in_(list(chunk)), col(Posting.destination_id).in_(list(destination_ids)))
                .order_by(col(Posting.id))
            )
            found.extend((await self.session.exec(stmt)).all())
        return found

    def add(self, posting: Posting) -> Posting:
        """Record a posted card."""
        self.session.add(posting)
        return posting

    async def record(
        self, *, conversation_id: int, destination_id: int | None, platform: str, channel_id: str, message_id: str, at: datetime
    ) -> None:
        """Record a copy of a card found where it is posted (unless it is recorded already, or meanwhile)."""
        await self.session.flush()
        stmt = (
            _insert(self.session, Posting)
            .values(
                conversation_id=conversation_id,
                destination_id=destination_id,
                platform=platform,
                channel_id=channel_id,
                message_id=message_id,
                posted_at=at,
            )
            .on_conflict_do_nothing(index_elements=["platform", "channel_id", "message_id"])
        )
        await self.session.exec(stmt)


class DeliveryRepo(_Repo):
    """The outbox."""

    async def enqueue_many(self, deliveries: Sequence[dict[str, Any]]) -> int:
        """Add many deliveries, skipping keys that exist; returns how many were added."""
        if not deliveries:
            return 0
        dialect = _dialect(self.session)
        stmt = _ENQUEUE.get(dialect)
        if stmt is None:  # on the table, not the entity: a Core insert skips the ORM's bulk-insert bookkeeping
            stmt = _ENQUEUE[dialect] = (
                _insert(self.session, _DELIVERY).on_conflict_do_nothing(index_elements=["key"]).returning(_DELIVERY.c.id)
            )
        return len((await self.session.exec(stmt, params=list(deliveries))).all())

    async def enqueue_card_syncs(self, conversation_ids: Sequence[int], *, now: datetime) -> int:
        """One pending card delivery per (conversation, destination) at the conversation's current version.

        Keyed `card:<conversation>:<destination>:v<version>`, so asking twice for the same
        version adds nothing; a destination shared by two departments of a conversation
        gets one. One INSERT ... SELECT per 5,000 conversations; returns how many were added.
        """
        await self.session.flush()  # the SELECT reads versions and links: nothing may wait in the session
        dialect = _dialect(self.session)
        stmt = _CARD_SYNCS.get(dialect)
        if stmt is None:
            stmt = _CARD_SYNCS[dialect] = _card_syncs_insert(self.session)
        added = 0
        for chunk in _chunks(conversation_ids):
            result = await self.session.exec(stmt, params={"ids": list(chunk), "now": now})
            added += max(result.rowcount, 0)
        return added

    async def budgeted_destinations(self) -> list[Destination]:
        """The destinations whose mode or quiet hours may hold cards back (few: most are realtime)."""
        stmt = select(Destination).where(
            or_(
                col(Destination.mode) != "realtime",
                col(Destination.quiet) != "",
                col(Destination.chat_mode).is_not(None),
                col(Destination.chat_quiet).is_not(None),
            )
        )
        return list((await self.session.exec(stmt)).all())

    async def unposted_cards(self, conversation_ids: Sequence[int], destination_ids: Sequence[int]) -> list[tuple[Delivery, str]]:
        """Pending, never attempted card deliveries of these conversations to these destinations where their
        card is not posted yet, with each conversation's priority (what a channel's budget may hold)."""
        result: list[tuple[Delivery, str]] = []
        posted = select(Posting.id).where(
            Posting.conversation_id == Delivery.conversation_id, Posting.destination_id == Delivery.destination_id
        )
        for chunk in _chunks(conversation_ids):
            stmt = (
                select(Delivery, Conversation.priority)
                .join(Conversation, col(Conversation.id) == Delivery.conversation_id)
                .where(
                    col(Delivery.status) == "pending",
                    col(Delivery.kind) == "card",
                    col(Delivery.conversation_id).in_(list(chunk)),
                    col(Delivery.destination_id).in_(list(destination_ids)),
                    col(Delivery.attempted_at).is_(None),
                    ~posted.exists(),
                )
                .order_by(col(Delivery.id))
            )
            result.extend((row, priority) for row, priority in (await self.session.exec(stmt)).all())
        return result

    async def by_key(self, key: str) -> Delivery | None:
        """One delivery by its key, fresh from the database."""
        stmt = select(Delivery).where(Delivery.key == key).execution_options(populate_existing=True)
        return (await self.session.exec(stmt)).first()

    async def batched(self, key: str) -> list[int]:
        """The conversations whose cards a batch holds (or held), in the order they came."""
        stmt = (
            select(Delivery.conversation_id)
            .where(Delivery.batch_key == key, Delivery.kind == "card")
            .group_by(col(Delivery.conversation_id))
            .order_by(func.min(Delivery.id))
        )
        return [cid for cid in (await self.session.exec(stmt)).all() if cid is not None]

    async def lease_due(
        self, *, platforms: Sequence[str], now: datetime, lease: timedelta, limit: int, holder: str = ""
    ) -> list[Delivery]:
        """Take the oldest due pending deliveries for these platforms under a time lease.

        A delivery whose card (same conversation and destination) is being sent by someone
        else right now is left for later: two replicas would otherwise both find no posting
        and post the same new card twice. On PostgreSQL, lease rounds take turns (a
        transaction advisory lock) so two rounds never lease siblings at the same moment.
        """
        busy = _DELIVERY.alias("busy")
        sent_elsewhere = select(busy.c.id).where(
            busy.c.status == "pending",
            busy.c.conversation_id == Delivery.conversation_id,
            busy.c.destination_id == Delivery.destination_id,
            busy.c.locked_until >= now,
        )
        stmt = (
            select(Delivery)
            .where(
                Delivery.status == "pending",
                col(Delivery.platform).in_(platforms),
                col(Delivery.next_attempt_at) <= now,
                or_(col(Delivery.locked_until).is_(None), col(Delivery.locked_until) < now),
                ~sent_elsewhere.exists(),
            )
            .order_by(col(Delivery.next_attempt_at), col(Delivery.id))
            .limit(limit)
            .execution_options(populate_existing=True)
        )
        if _dialect(self.session) == "postgresql":
            await self.session.exec(select(func.pg_advisory_xact_lock(LEASE_LOCK)))
            stmt = stmt.with_for_update(skip_locked=True)
        rows = list((await self.session.exec(stmt)).all())
        for row in rows:
            row.locked_until, row.holder = now + lease, holder or None
        await self.session.flush()
        return rows

    async def take_for_send(
        self, delivery_id: int, *, holder: str, now: datetime, lease: timedelta, renew: Sequence[int] = ()
    ) -> bool:
        """Just before a send: True if `holder` still holds the delivery's lease (renewed, and the send
        marked attempted, keeping the time of an earlier attempt whose outcome is still unknown, so the
        sender's look for a copy it may have posted starts there); False if the lease expired and may be
        another worker's now. The rest of
        the holder's batch (`renew`) gets its lease renewed too, so a long batch keeps its tail."""
        until = now + lease
        mine = and_(col(Delivery.status) == "pending", col(Delivery.holder) == holder, col(Delivery.locked_until) >= now)
        taken = (
            await self.session.exec(
                update(Delivery)
                .where(col(Delivery.id) == delivery_id, mine)
                .values(locked_until=until, attempted_at=func.coalesce(col(Delivery.attempted_at), now))
                .execution_options(synchronize_session=False)
            )
        ).rowcount
        if renew:
            await self.session.exec(
                update(Delivery)
                .where(col(Delivery.id).in_(list(renew)), mine)
                .values(locked_until=until)
                .execution_options(synchronize_session=False)
            )
        return bool(taken)

    async def defer_destination(self, destination_id: int, *, until: datetime, now: datetime, mine: Iterable[int] = ()) -> int:
        """Push the pending deliveries to one destination back to `until` (a rate limit), lease released.

        Only those nobody holds a lease on, and `mine` (leased by the caller): a delivery
        another replica is sending right now keeps its lease, so its card is not sent twice.
        """
        stmt = (
            update(Delivery)
            .where(
                col(Delivery.status) == "pending",
                col(Delivery.destination_id) == destination_id,
                col(Delivery.next_attempt_at) < until,
                or_(col(Delivery.locked_until).is_(None), col(Delivery.locked_until) < now, col(Delivery.id).in_(list(mine))),
            )
            .values(next_attempt_at=until, locked_until=None, holder=None)
            .execution_options(synchronize_session=False)
        )
        return (await self.session.exec(stmt)).rowcount

    async def pending_on(self, platform: str) -> list[Delivery]:
        """Every pending delivery for a platform, oldest first."""
        stmt = select(Delivery).where(Delivery.status == "pending", Delivery.platform == platform).order_by(col(Delivery.id))
        return list((await self.session.exec(stmt)).all())

    async def get(self, delivery_id: int) -> Delivery | None:
        """One delivery, fresh from the database."""
        stmt = select(Delivery).where(Delivery.id == delivery_id).execution_options(populate_existing=True)
        return (await self.session.exec(stmt)).first()

    async def pending_for(self, *, kind: str, conversation_id: int, destination_id: int | None) -> list[Delivery]:
        """Pending deliveries of one kind for one conversation and destination."""
        stmt = select(Delivery).where(
            Delivery.status == "pending",
            Delivery.kind == kind,
            Delivery.conversation_id == conversation_id,
            Delivery.destination_id == destination_id,
        )
        return list((await self.session.exec(stmt)).all())

    async def retry_failed_cards(self, destination_id: int, *, now: datetime) -> int:
        """Send again the cards of still-open conversations that failed for good to this destination
        (a channel listed in the config before anyone linked it); returns how many conversations."""
        open_conversations = select(Conversation.id).where(col(Conversation.status).in_(("open", "claimed", "replied")))
        stmt = (
            update(Delivery)
            .where(
                col(Delivery.status) == "failed",
                col(Delivery.kind) == "card",
                col(Delivery.destination_id) == destination_id,
                col(Delivery.conversation_id).in_(open_conversations),
            )
            .values(status="pending", attempts=0, next_attempt_at=now, locked_until=None, last_error=None)
            .returning(col(Delivery.conversation_id))
            .execution_options(synchronize_session=False)
        )
        return len(set((await self.session.exec(stmt)).all()))


class JobRunRepo(_Repo):
    """Leases on scheduled runs: which replica runs a job for a due time (exactly one)."""

    async def take(self, job: str, *, due_at: datetime, holder: str, now: datetime, lease: timedelta) -> bool:
        """Lease the run of `job` due at `due_at`: True if this holder may run it now.

        The first replica to insert the (job, due_at) row gets it; a run whose holder
        died (lease expired, never finished) is taken over by the next one to ask.
        """
        stmt = (
            _insert(self.session, JobRun)
            .values(job=job, due_at=due_at, holder=holder, leased_until=now + lease, attempts=1, outcome="")
            .on_conflict_do_nothing(index_elements=["job", "due_at"])
            .returning(JobRun.id)
        )
        if (await self.session.exec(stmt)).first() is not None:
            return True
        takeover = (
            update(JobRun)
            .where(
                col(JobRun.job) == job,
                col(JobRun.due_at) == due_at,
                col(JobRun.finished_at).is_(None),
                col(JobRun.leased_until) < now,
            )
            .values(holder=holder, leased_until=now + lease, attempts=JobRun.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        return (await self.session.exec(takeover)).rowcount == 1

    async def finish(self, job: str, *, due_at: datetime, holder: str, at: datetime, outcome: str) -> None:
        """Mark a leased run done (only by its current holder)."""
        stmt = (
            update(JobRun)
            .where(col(JobRun.job) == job, col(JobRun.due_at) == due_at, col(JobRun.holder) == holder)
            .values(finished_at=at, outcome=outcome[:1024])
            .execution_options(synchronize_session=False)
        )
        await self.session.exec(stmt)

    async def abandoned(self, *, now: datetime, since: datetime) -> list[JobRun]:
        """Runs whose holder died before finishing (lease expired), due after `since`."""
        stmt = (
            select(JobRun)
            .where(col(JobRun.finished_at).is_(None), col(JobRun.leased_until) < now, col(JobRun.due_at) >= since)
            .order_by(col(JobRun.due_at))
        )
        return list((await self.session.exec(stmt)).all())
