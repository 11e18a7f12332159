"""SQLModel tables of the shared store.

Times are aware UTC everywhere (SQLModel maps `datetime` to `UTCDateTime`, which
refuses naive values); `storage.clock.utcnow` is the one source of them.
Lists and small maps are JSON columns; anything a query filters on is a real column.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Column, Index, Text, UniqueConstraint, func, true
from sqlmodel import Field, SQLModel

from storage.clock import utcnow


def _json_list() -> Any:
    return Field(default_factory=list, sa_column=Column(JSON, nullable=False))


def _json_dict() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Department(SQLModel, table=True):
    """A team that can act on conversations: its managers and its SLA."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64, unique=True)
    sla_minutes: int = 240
    managers: list[str] = _json_list()
    retired_at: datetime | None = None  # no longer in the config: no rights, no routing, its open conversations moved


class Destination(SQLModel, table=True):
    """One channel on one platform where a department's cards are posted."""

    __table_args__ = (UniqueConstraint("department_id", "platform", "channel_id"),)

    id: int | None = Field(default=None, primary_key=True)
    department_id: int = Field(foreign_key="department.id", index=True)
    platform: str = Field(max_length=32)
    channel_id: str = Field(max_length=255)
    conversation_ref: dict[str, Any] = _json_dict()
    linked_by: str | None = Field(default=None, max_length=255)
    # The channel's noise budget (`bot.noise`): "realtime", "batched <seconds>" or "digest-only", and quiet
    # hours ("22:00-07:00 Europe/Berlin", "" for none), as the config says; `chat_mode`/`chat_quiet`, set
    # from chat (`mode …`, `quiet …`), win over them until `mode reset` (None: the config's).
    mode: str = Field(default="realtime", max_length=32)
    quiet: str = Field(default="", max_length=64)
    chat_mode: str | None = Field(default=None, max_length=32)
    chat_quiet: str | None = Field(default=None, max_length=64)


class Conversation(SQLModel, table=True):
    """One thing a customer said, and where it stands."""

    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_conversation_source_external"),
        Index("ix_conversation_status_ingested", "status", "ingested_at"),
        Index("ix_conversation_owner_status", "owner_id", "status"),
        Index("ix_conversation_resolved_at", "resolved_at"),  # digests: what was still open in a period
        Index("ix_conversation_ingested_at", "ingested_at"),  # spike checks: what came in during a window
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=128)
    external_id: str = Field(max_length=512)
    author_name: str = Field(default="", max_length=255)
    author_handle: str = Field(default="", max_length=255)
    author_url: str = Field(default="", max_length=2048)
    title: str = Field(default="", max_length=1024)
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    url: str = Field(default="", max_length=2048)
    channel: str = Field(default="", max_length=64)
    reply_url: str = Field(default="", max_length=2048)
    created_at: datetime | None = None
    ingested_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    status: str = Field(default="open", max_length=16)
    owner_id: int | None = Field(default=None, foreign_key="person.id")
    priority: str = Field(default="normal", max_length=16)
    tags: list[str] = _json_list()
    routing_reason: str = Field(default="", max_length=1024)
    sensitive: bool = False
    outcome: str | None = Field(default=None, max_length=32)
    claimed_at: datetime | None = None
    first_reply_at: datetime | None = None  # when a reply first reached the customer (delivered or posted)
    reply_written_at: datetime | None = None  # when a reply was first written, in any state: the card shows it
    resolved_at: datetime | None = None
    escalated_at: datetime | None = None  # unclaimed past the SLA: managers told (once)
    reminded_at: datetime | None = None  # claimed, no reply past the SLA: owner reminded (once)
    version: int = 1
    reported_by_id: int | None = Field(default=None, foreign_key="person.id")
    erased_at: datetime | None = None  # the customer's data was erased (on request, or after the retention period)
    erased_why: str = Field(default="", max_length=64)  # "request" or "retention (N days)"
    # The resolved conversations most like it when it came in (`storage.search.similar_resolved`), best first:
    # [{"id", "outcome", "by", "reply"}] (who handled it, the first line of the reply sent), read with the row.
    seen_before: list[dict[str, Any]] = _json_list()
    # Who to ask (`bot.suggest`): up to two people outside its departments who handled conversations like it,
    # [{"person_id", "name", "departments", "resolved", "replied"}], found with "seen before", read with the row.
    suggested: list[dict[str, Any]] = _json_list()
    # The saved answers that fit it best when it came in (`storage.answers.AnswerRepo.record_fitting`), best
    # first: [{"id", "title"}], what the reply form offers where it is rendered with the card (a choice set).
    answers: list[dict[str, Any]] = _json_list()
    # How many other items were merged into it as voices (`Voice`, `bot.voices`): the card reads them only if any.
    voice_count: int = Field(default=0, sa_column_kwargs={"server_default": "0"})


# A customer's earlier conversations (the card's "2 earlier conversations from this author"), by handle
# or by profile URL, case-insensitive and across sources: read from these two indexes, newest first.
_conversation_columns = Conversation.__table__.c  # type: ignore[attr-defined]
Index("ix_conversation_author_handle_lower", func.lower(_conversation_columns.author_handle), _conversation_columns.id)
Index("ix_conversation_author_url_lower", func.lower(_conversation_columns.author_url), _conversation_columns.id)


class Voice(SQLModel, table=True):
    """Another item saying the same thing as a conversation (same link, or near-identical text): kept
    with what `split` needs to make it a conversation again. Its `(source, external_id)` is known at
    ingest like a conversation's, so a re-read feed does not add it twice."""

    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_voice_source_external"),)

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    source: str = Field(max_length=128)
    external_id: str = Field(max_length=512)
    author_name: str = Field(default="", max_length=255)
    author_handle: str = Field(default="", max_length=255)
    author_url: str = Field(default="", max_length=2048)
    title: str = Field(default="", max_length=1024)
    text: str = Field(default="", sa_column=Column(Text, nullable=False))
    url: str = Field(default="", max_length=2048)
    created_at: datetime | None = None
    joined_at: datetime = Field(default_factory=utcnow)
    how: str = Field(default="link", max_length=16)  # "link", "text" (similarity), "merge" (by hand)
    origin_id: int | None = Field(default=None, foreign_key="conversation.id", index=True)  # merged by hand: it was this one
    similarity: float = 1.0
    data: dict[str, Any] = _json_dict()  # the rest of the item (channel, reply_url, tags) for `split`


_voice_columns = Voice.__table__.c  # type: ignore[attr-defined]
Index("ix_voice_author_handle_lower", func.lower(_voice_columns.author_handle))  # erasure finds an author's voices
Index("ix_voice_author_url_lower", func.lower(_voice_columns.author_url))


class VoiceKey(SQLModel, table=True):
    """The index that finds the open conversation an item is a voice of: its canonical link ("u:…") and its
    text's MinHash bands ("b3:…"), each owned by ONE conversation (the primary key decides, across
    replicas). `at`: when the owner claimed it; an owner out of the window or closed is taken over."""

    key: str = Field(primary_key=True, max_length=64)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    at: datetime = Field(default_factory=utcnow)


class ConversationDepartment(SQLModel, table=True):
    """Which departments a conversation was routed to (one or more)."""

    # A department's conversations read from the index alone (queues, digests).
    __table_args__ = (Index("ix_conversationdepartment_department", "department_id", "conversation_id"),)

    conversation_id: int = Field(foreign_key="conversation.id", primary_key=True)
    department_id: int = Field(foreign_key="department.id", primary_key=True)


class Posting(SQLModel, table=True):
    """Where a copy of a conversation's card lives, to update it and map thread replies back."""

    __table_args__ = (UniqueConstraint("platform", "channel_id", "message_id"),)

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    destination_id: int | None = Field(default=None, foreign_key="destination.id")
    platform: str = Field(max_length=32)
    channel_id: str = Field(max_length=255)
    message_id: str = Field(max_length=255)
    posted_at: datetime = Field(default_factory=utcnow)
    link: str = Field(default="", max_length=1000)  # where people open this copy (a permalink, a deep link); "" unknown


class Person(SQLModel, table=True):
    """An employee; linked to platform identities through `Identity`."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=255)
    email: str | None = Field(default=None, max_length=320, unique=True)
    role: str = Field(default="member", max_length=16)
    department: str | None = Field(default=None, max_length=64)
    expertise: list[str] = _json_list()
    profiles: dict[str, str] = _json_dict()
    created_at: datetime = Field(default_factory=utcnow)
    # Told when a conversation they sent in is resolved (`notify on|off`).
    notify: bool = Field(default=True, sa_column=Column(Boolean, nullable=False, server_default=true()))


class Identity(SQLModel, table=True):
    """One platform account of a person (Slack user id, Teams AAD object id, CLI name)."""

    platform: str = Field(max_length=32, primary_key=True)
    user_id: str = Field(max_length=255, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True)


class Event(SQLModel, table=True):
    """Append-only audit log: who did what to which conversation, when."""

    __table_args__ = (
        Index("ix_event_conversation", "conversation_id", "id"),
        Index("ix_event_kind_at", "kind", "at"),
        Index("ix_event_actor_kind_at", "actor_id", "kind", "at"),  # a person's own figures (`stats`)
    )

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int | None = Field(default=None, foreign_key="conversation.id")
    kind: str = Field(max_length=32)
    actor_id: int | None = Field(default=None, foreign_key="person.id")
    actor_name: str = Field(default="", max_length=255)
    at: datetime = Field(default_factory=utcnow)
    data: dict[str, Any] = _json_dict()


class Note(SQLModel, table=True):
    """An internal note on a conversation: never sent to the customer."""

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    author_id: int | None = Field(default=None, foreign_key="person.id")
    text: str = Field(sa_column=Column(Text, nullable=False))
    at: datetime = Field(default_factory=utcnow)
    origin: str = Field(default="", max_length=64)


class Reply(SQLModel, table=True):
    """An answer to the customer, credited to the employee who wrote it."""

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id", index=True)
    author_id: int | None = Field(default=None, foreign_key="person.id")
    text: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default="recorded", max_length=24)
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    error: str | None = Field(default=None, max_length=2048)
    decided_by_id: int | None = Field(default=None, foreign_key="person.id")
    decided_at: datetime | None = None
    decision_reason: str | None = Field(default=None, max_length=2048)


class SavedAnswer(SQLModel, table=True):
    """A reply worth reusing, saved with a title from a conversation's sent or posted reply.

    `pre_approved`: its reply was approved by a manager (`approved_by_id`) on a conversation that a
    sensitive rule held (`approved_rules`, the rules' names); reused unchanged on a conversation held by
    one of those rules, it may skip a second approval (`reuse_approved_answers` of the department)."""

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200)
    text: str = Field(sa_column=Column(Text, nullable=False))
    saved_by_id: int | None = Field(default=None, foreign_key="person.id")
    reply_id: int | None = Field(default=None, foreign_key="reply.id")
    conversation_id: int | None = Field(default=None, foreign_key="conversation.id")
    departments: list[str] = _json_list()
    pre_approved: bool = False
    approved_by_id: int | None = Field(default=None, foreign_key="person.id")
    approved_rules: list[str] = _json_list()
    created_at: datetime = Field(default_factory=utcnow)
    uses: int = 0


class Rule(SQLModel, table=True):
    """A routing rule: what it matches, where it sends, how it marks."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, unique=True)
    position: int = 0
    departments: list[str] = _json_list()
    any_words: list[str] = _json_list()
    all_words: list[str] = _json_list()
    regex: str = Field(default="", max_length=1024)
    source: str = Field(default="", max_length=128)
    author: str = Field(default="", max_length=255)
    priority: str = Field(default="", max_length=16)
    tags: list[str] = _json_list()
    sensitive: bool = False
    enabled: bool = True


class Source(SQLModel, table=True):
    """Where conversations come from: a feed, a webhook or chat reports."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, unique=True)
    kind: str = Field(default="feed", max_length=16)
    url: str = Field(default="", max_length=2048)
    secret: str | None = Field(default=None, max_length=128)  # webhook signing secret
    previous_secret: str | None = Field(default=None, max_length=128)  # the one before a rotation, accepted until:
    previous_secret_expires_at: datetime | None = None
    reply_url: str = Field(default="", max_length=2048)  # where replies are POSTed, if the source takes them
    origin: str = Field(default="config", max_length=16)  # "config" (the file) or "cli" (added at runtime)
    every_seconds: int = 300
    tags: list[str] = _json_list()
    etag: str | None = Field(default=None, max_length=512)
    last_modified: str | None = Field(default=None, max_length=128)
    last_polled_at: datetime | None = None
    next_poll_at: datetime | None = None
    items_seen: int = 0
    failures: int = 0
    last_error: str | None = Field(default=None, max_length=2048)
    removed_at: datetime | None = None  # removed while conversations name it: kept for them, never polled, webhook refused
    retain_days: int | None = None  # its closed conversations keep their text this long; None: the global default


class Delivery(SQLModel, table=True):
    """Outbox row: something to send to a platform, retried until sent or given up."""

    __table_args__ = (Index("ix_delivery_due", "status", "next_attempt_at"), Index("ix_delivery_batch", "batch_key"))

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=255, unique=True)
    platform: str = Field(max_length=32)
    kind: str = Field(max_length=32)
    conversation_id: int | None = Field(default=None, foreign_key="conversation.id", index=True)
    destination_id: int | None = Field(default=None, foreign_key="destination.id")
    payload: dict[str, Any] = _json_dict()
    status: str = Field(default="pending", max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    locked_until: datetime | None = None
    holder: str | None = Field(default=None, max_length=64)  # the worker whose lease it is
    attempted_at: datetime | None = None  # a send began and its outcome is not recorded yet
    last_error: str | None = Field(default=None, max_length=2048)
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    # A channel's batch (`bot.noise`): the card deliveries held for one window and the batch message
    # that lists them share this key; `next_attempt_at` is when they may go (the window's end, quiet hours').
    batch_key: str | None = Field(default=None, max_length=255)


class InboundEvent(SQLModel, table=True):
    """A platform event or request already processed (Slack event_id, Teams activity id...).

    Inserted in the same transaction as the work it caused, so a retried delivery of the
    same event is recognised and does nothing.
    """

    platform: str = Field(max_length=32, primary_key=True)
    event_id: str = Field(max_length=255, primary_key=True)
    received_at: datetime = Field(default_factory=utcnow, index=True)  # purged once no retry can come


class JobRun(SQLModel, table=True):
    """One due run of a scheduled job (a digest, an SLA sweep, a feed poll), leased by one replica.

    The unique (job, due_at) pair is the lease: whichever process inserts it runs the job;
    if that process dies, another takes the run over once `leased_until` has passed.
    """

    __table_args__ = (UniqueConstraint("job", "due_at", name="uq_jobrun_job_due"),)

    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=128)
    due_at: datetime
    holder: str = Field(max_length=128)
    leased_until: datetime
    attempts: int = 1
    finished_at: datetime | None = None
    outcome: str = Field(default="", max_length=1024)


class SpikeAlert(SQLModel, table=True):
    """A spike of new conversations that was announced: one row per alert, posted once.

    `key` is unique: (department, the scope that moved, its cooldown bucket), so two replicas
    checking at once cannot both post it; `scopes` are every scope ("tag:outage", "rule:support",
    "department:support") the alert covers, each quiet for the cooldown afterwards."""

    __table_args__ = (Index("ix_spikealert_department_created", "department", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=255, unique=True)
    department: str = Field(max_length=64)
    scope: str = Field(max_length=255)  # the scope it is about: "tag:outage"
    scopes: list[str] = _json_list()
    window_start: datetime
    window_end: datetime
    count: int
    baseline: float  # the usual count for the same window (the mean of the last days at the same hour)
    conversation_ids: list[int] = _json_list()  # the conversations of the window, newest first (at most 500)
    terms: list[str] = _json_list()
    notice: dict[str, Any] = _json_dict()  # what the channels were told (`bot.outbox.notice_payload`), shown again with the list
    created_at: datetime = Field(default_factory=utcnow)
