"""The outbox: deliveries written with the state change, sent by a loop that survives restarts.

A card delivery means "make this destination's copy of the card show the
conversation as it is now": the sender posts it the first time and updates the
posting afterwards, so older pending card deliveries are folded into the newest send.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from bot import noise, terminal
from bot.views import Action, Batch, Card, Listing, Notice, card_for
from bot.voices import merged_into
from handlers._common import reply_reached
from storage.models import Delivery, Department, Destination, Event, Posting
from storage.uow import UnitOfWork

if TYPE_CHECKING:
    from bot.metrics import Metrics

logger = logging.getLogger(__name__)


class RetryLater(Exception):
    """The platform asked us to wait (HTTP 429 Retry-After, 503...); `status` is its HTTP status when it
    gave one (a 429 is counted as a rate limit on `/metrics`)."""

    def __init__(self, seconds: float, reason: str = "rate limited", *, status: int | None = None) -> None:
        super().__init__(reason)
        self.seconds = seconds
        self.reason = reason
        self.status = status


class PermanentFailure(Exception):
    """Retrying cannot help (channel gone, bot removed, payload refused)."""


@dataclass(frozen=True)
class Job:
    """One delivery as a sender sees it: what to send, where, and the copy to update if any."""

    delivery_id: int
    kind: str
    platform: str
    channel_id: str
    conversation_ref: Mapping[str, Any]
    payload: Mapping[str, Any]
    card: Card | None = None
    message_id: str | None = None
    key: str = ""  # the delivery's idempotency key, stable across retries
    attempted_at: datetime | None = None  # an earlier send began at this time and its outcome is unknown
    batch: Batch | None = None  # a "batch" delivery: the channel's compact message of one window (`bot.noise`)
    thread_id: str | None = None  # a card held for a batch: post it in the thread of the batch message


@dataclass(frozen=True)
class Sent:
    """What the platform gave back: the message id of a newly posted card, and its link when the platform
    has one (a permalink or deep link people open it with: a message elsewhere points to the card)."""

    message_id: str | None = None
    link: str = ""


class Sender(Protocol):
    """A platform's way of sending deliveries."""

    async def send(self, job: Job) -> Sent:
        """Send or raise `RetryLater` / `PermanentFailure` (anything else is retried)."""
        ...


class LoggingSender:
    """The sender of the `log` platform: writes each card to the log (and keeps a list)."""

    def __init__(self) -> None:
        self.sent: list[Job] = []

    async def send(self, job: Job) -> Sent:
        """Log the card as one line of the terminal renderer (customer text made inert) and pretend it was posted."""
        self.sent.append(job)
        if job.batch is not None:
            logger.info("post batch in log:%s %s", terminal.line(job.channel_id, 80), " / ".join(terminal.batch_lines(job.batch)))
        if job.card is not None:
            action = "update" if job.message_id else "post"
            logger.info("%s card in log:%s %s", action, terminal.line(job.channel_id, 80), terminal.card_line(job.card).strip())
        return Sent(message_id=job.message_id or f"log-{job.delivery_id}")


async def enqueue_card_syncs(uow: UnitOfWork, conversation_ids: Iterable[int]) -> int:
    """One card delivery per destination of each changed conversation; returns how many.

    Set-based (one INSERT ... SELECT whatever the count), so a 10,000-item ingest costs
    about what one conversation does per row.
    """
    ids = sorted(set(conversation_ids))
    if not ids:
        return 0
    added = await uow.deliveries.enqueue_card_syncs(ids, now=uow.now())
    if added:
        await noise.hold_new_cards(uow, ids)  # each channel's noise budget: batched, digest-only, quiet hours
    return added


async def enqueue_copy_updates(uow: UnitOfWork, postings: Iterable[Posting], versions: Mapping[int, int]) -> int:
    """A card delivery for each of these posted copies at its conversation's new version (`versions`: id ->
    version), through the destination that posted it: the copy is updated in place even where its channel
    no longer gets the conversation's cards (a department retired, a conversation rerouted), and then
    says where it went. Returns how many were added."""
    wanted = [p for p in postings if p.destination_id is not None and p.conversation_id in versions]
    destinations = {d.id: d for d in await uow.departments.by_ids({p.destination_id for p in wanted})}  # type: ignore[misc]
    now = uow.now()
    rows = [
        {
            "key": f"card:{p.conversation_id}:{p.destination_id}:v{versions[p.conversation_id]}",
            "platform": destinations[p.destination_id].platform,
            "kind": "card",
            "conversation_id": p.conversation_id,
            "destination_id": p.destination_id,
            "payload": {"version": versions[p.conversation_id]},
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for p in wanted
        if p.destination_id in destinations
    ]
    return await uow.deliveries.enqueue_many(rows)


def notice_payload(notice: Notice) -> dict[str, Any]:
    """A notice as a delivery payload (JSON)."""
    return {
        "notice": {
            "title": notice.title,
            "lines": list(notice.lines),
            "mentions": [list(m) for m in notice.mentions],
            "links": [list(link) for link in notice.links],
            **({"actions": [_action_payload(a) for a in notice.actions]} if notice.actions else {}),
        }
    }


def notice_row(
    uow: UnitOfWork,
    notice: Notice,
    *,
    key: str,
    platform: str,
    conversation_id: int | None,
    destination_id: int | None = None,
    **where: Any,
) -> dict[str, Any]:
    """The outbox row of one notice: in a destination's channel (a card's thread), or, with
    `channel_id=<user id>, dm=True` in `where`, as a message of its own to one person on `platform`."""
    return {
        "key": key[:255],
        "platform": platform,
        "kind": "notice",
        "conversation_id": conversation_id,
        "destination_id": destination_id,
        "payload": {**notice_payload(notice), **where},
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": uow.now(),
        "created_at": uow.now(),
    }


def _action_payload(action: Action) -> dict[str, Any]:
    return {"label": action.label, "verb": action.verb, "fields": [list(f) for f in action.fields], "style": action.style}


def _action_of(raw: Mapping[str, Any]) -> Action:
    style = str(raw.get("style", "default"))
    return Action(
        label=str(raw.get("label", "")),
        verb=str(raw.get("verb", "")),
        fields=tuple((str(k), str(v)) for k, v in raw.get("fields", ())),
        style=style if style in ("primary", "danger") else "default",  # type: ignore[arg-type]
    )


def _mention_of(raw: Any) -> tuple[str, str]:
    """(key, name) from a payload's mention: a pair, or a bare key (payloads written before names)."""
    if isinstance(raw, (list, tuple)) and len(raw) == 2:
        return str(raw[0]), str(raw[1])
    return str(raw), ""


def notice_of(payload: Mapping[str, Any]) -> Notice:
    """The notice a delivery payload carries (see `notice_payload`)."""
    raw = payload.get("notice") or {}
    return Notice(
        title=str(raw.get("title", "")),
        lines=tuple(str(x) for x in raw.get("lines", ())),
        mentions=tuple(_mention_of(m) for m in raw.get("mentions", ())),
        links=tuple((str(a), str(b)) for a, b in raw.get("links", ())),
        actions=tuple(_action_of(a) for a in raw.get("actions", ()) if isinstance(a, Mapping)),
    )


def channel_notice(
    uow: UnitOfWork,
    platform: str,
    channel_id: str,
    notice: Notice,
    *,
    key: str,
    conversation_id: int | None = None,
    dm: bool = False,
) -> dict[str, Any]:
    """The delivery row of a notice posted at the top of a channel (or, `dm`, to a person), keyed per channel."""
    where: dict[str, Any] = {"channel_id": channel_id, **({"dm": True} if dm else {})}
    return notice_row(
        uow, notice, key=f"{key}:{platform}:{channel_id}", platform=platform, conversation_id=conversation_id, **where
    )


async def enqueue_thread_notice(uow: UnitOfWork, conversation_id: int, notice: Notice, *, key: str) -> int:
    """Post a notice under every copy of a conversation's card (in its thread where the platform has one)."""
    rows = [
        {
            "key": f"{key}:{destination_id}",
            "platform": platform,
            "kind": "notice",
            "conversation_id": conversation_id,
            "destination_id": destination_id,
            "payload": notice_payload(notice),
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": uow.now(),
            "created_at": uow.now(),
        }
        for _, _, destination_id, platform in await uow.conversations.card_targets([conversation_id])
    ]
    return await uow.deliveries.enqueue_many(rows)


async def _settle_reply(uow: UnitOfWork, delivery: Delivery, *, error: str | None) -> None:
    """A reply delivery ended: the reply is sent, or failed for good and its author is told on the card's thread."""
    reply = await uow.replies.get(int(delivery.payload.get("reply_id", 0)))
    if reply is None:
        return
    now = uow.now()
    data: dict[str, object]
    if error is None:
        if await uow.replies.decide(reply, expected="sending", status="sent", sent_at=now, error=None):
            await reply_reached(uow, reply.conversation_id, at=now)  # replied from now: the customer can read it
        kind, data = "reply_sent", {"reply_id": reply.id}
    else:
        await uow.replies.decide(reply, expected="sending", status="failed", error=error[:2048])
        kind, data = "reply_failed", {"reply_id": reply.id, "error": error[:500]}
        mentions = await uow.people.mentions_of(reply.author_id) if reply.author_id else ()
        await enqueue_thread_notice(
            uow,
            reply.conversation_id,
            Notice(
                title=f"Your reply to #{reply.conversation_id} could not be delivered",
                lines=(
                    f"After {delivery.attempts} tries the source's reply endpoint still refused it: {error[:300]}",
                    "The reply is kept in the history; reply again, or post it by hand.",
                ),
                mentions=mentions,
            ),
            key=f"reply-failed:{reply.id}",
        )
    await uow.events.add_many(
        [{"conversation_id": reply.conversation_id, "kind": kind, "actor_id": None, "actor_name": "", "at": now, "data": data}]
    )
    await uow.conversations.touch(reply.conversation_id, at=now)  # the card shows the new reply state
    uow.mark_changed(reply.conversation_id)


async def _unrecorded_attempt(uow: UnitOfWork, delivery: Delivery, job: Job) -> datetime | None:
    """When an earlier send of this delivery (or, for a card not posted yet, of any delivery of the same
    card copy) began and its outcome was never recorded: the sender then looks before it posts."""
    if delivery.kind != "card" or job.message_id is not None or delivery.conversation_id is None:
        return delivery.attempted_at
    siblings = await uow.deliveries.pending_for(
        kind="card", conversation_id=delivery.conversation_id, destination_id=delivery.destination_id
    )
    return min((d.attempted_at for d in siblings if d.attempted_at is not None), default=None)


async def _moved_away(uow: UnitOfWork, destination: Destination | None, departments: list[Department]) -> bool:
    """Whether a card's copy through `destination` is in a channel that no longer gets the conversation (it was
    rerouted, or its department retired): none of its departments posts in that channel."""
    if destination is None or destination.department_id in {d.id for d in departments}:
        return False
    here = (destination.platform, destination.channel_id)
    return all(
        (d.platform, d.channel_id) != here for d in await uow.departments.destinations([d.id for d in departments if d.id])
    )


async def commit_with_deliveries(uow: UnitOfWork) -> None:
    """Enqueue card refreshes for everything the unit of work changed, then commit it all."""
    await enqueue_card_syncs(uow, uow.changed)
    await uow.commit()


class DeliveryWorker:
    """Sends due deliveries with the sender of their platform; retries with backoff.

    Each delivery is leased in the store before sending, so a crash leaves it to be
    picked up again once the lease expires; a sent one is marked in the same
    transaction that records where its card now lives.
    """

    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        senders: Mapping[str, Sender],
        *,
        max_attempts: int = 8,
        base_delay: float = 2.0,
        max_delay: float = 900.0,
        lease: timedelta = timedelta(seconds=60),
        batch: int = 50,
        metrics: Metrics | None = None,
    ) -> None:
        self._uow = uow_factory
        self.metrics = metrics  # sends by platform and outcome, their latency, the 429s
        self.senders = dict(senders)
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.lease = lease
        self.batch = batch
        self.holder = f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._leased: set[int] = set()  # ids of the batch this worker is sending
        self._remaining: list[int] = []  # ids of the batch not sent yet

    def backoff(self, attempts: int) -> float:
        """Seconds to wait before try `attempts + 1`: exponential with jitter, capped."""
        delay = min(self.max_delay, self.base_delay * 2.0 ** max(0, attempts - 1))
        return delay * (0.8 + 0.4 * random.random())

    async def run_once(self) -> int:
        """Send what is due now; returns how many deliveries were handled."""
        if not self.senders:
            return 0
        async with self._uow() as uow:
            leased = await uow.deliveries.lease_due(
                platforms=list(self.senders), now=uow.now(), lease=self.lease, limit=self.batch, holder=self.holder
            )
            await uow.commit()
        self._leased = {d.id for d in leased if d.id is not None}
        self._remaining = [d.id for d in leased if d.id is not None]
        limited: set[int | None] = set()
        for delivery in leased:
            if delivery.id in self._remaining:
                self._remaining.remove(delivery.id)
            if delivery.destination_id is not None and delivery.destination_id in limited:
                continue  # its channel is rate limited: already pushed back by `_retry`
            if await self._deliver(delivery) == "rate-limited":
                limited.add(delivery.destination_id)
        return len(leased)

    async def run_until_idle(self, *, max_rounds: int = 1000) -> int:
        """Keep sending until nothing is due (tests, `unsilo demo`)."""
        total = 0
        for _ in range(max_rounds):
            handled = await self.run_once()
            if not handled:
                break
            total += handled
        return total

    async def run_forever(self, *, idle_sleep: float = 1.0) -> None:
        """The service's loop: never dies of a single bad delivery."""
        while True:
            try:
                handled = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("delivery loop round failed; retrying")
                handled = 0
            if not handled:
                await asyncio.sleep(idle_sleep)

    async def _card_of(
        self, uow: UnitOfWork, conversation_id: int, destination: Destination | None = None
    ) -> tuple[Card, int] | None:
        """A conversation's card as it is now for `destination`'s channel (moved away from it, if the
        conversation no longer goes there), and its version (None: no such conversation)."""
        conversation = await uow.conversations.get(conversation_id)
        if conversation is None:
            return None
        current = await uow.conversations.departments_of(conversation_id)
        departments = [d.name for d in current]
        reply = await uow.replies.latest(conversation_id) if conversation.reply_written_at else None
        decider = reply.decided_by_id if reply is not None and reply.status == "rejected" else None
        names = await uow.people.names([conversation.owner_id, decider])  # one query for both
        owner = names.get(conversation.owner_id or 0)
        earlier = await uow.conversations.earlier(conversation_id)
        card = card_for(
            conversation,
            owner=owner,
            departments=departments,
            reply=reply,
            decided_by=names.get(decider or 0, ""),
            earlier=earlier,
            moved=await _moved_away(uow, destination, current),
            voices=await uow.voices.of(conversation_id) if conversation.voice_count else (),
            merged_into=await merged_into(uow, conversation),
        )
        return card, conversation.version

    async def _batch_of(self, uow: UnitOfWork, delivery: Delivery) -> Batch:
        """The batch message of a "batch" delivery: every conversation its window held for the channel."""
        cards = [made[0] for cid in await uow.deliveries.batched(delivery.key) if (made := await self._card_of(uow, cid))]
        start = datetime.fromisoformat(str(delivery.payload.get("window_start")))
        end = start + timedelta(seconds=int(delivery.payload.get("every") or 0))
        count = f"{len(cards)} new conversation{'s' if len(cards) != 1 else ''}"
        return Batch(f"{count}, {start:%H:%M}-{end:%H:%M} UTC", Listing.of(cards))

    async def _job_for(self, uow: UnitOfWork, delivery: Delivery) -> tuple[Job, Destination | None, int | None]:
        destination = await uow.session.get(Destination, delivery.destination_id) if delivery.destination_id else None
        card = None
        message_id = None
        version = None
        batch = None
        thread_id = None
        if delivery.kind == "card" and delivery.conversation_id is not None:
            made = await self._card_of(uow, delivery.conversation_id, destination)
            if made is not None:
                card, version = made
        if delivery.kind == "batch":
            batch = await self._batch_of(uow, delivery)
        if delivery.kind == "card" and delivery.batch_key:
            held_by = await uow.deliveries.by_key(delivery.batch_key)
            if held_by is not None and held_by.status == "sent":
                thread_id = str(held_by.payload.get("message_id") or "") or None
        if delivery.kind in ("card", "notice") and delivery.conversation_id is not None:
            if destination is not None:
                posting = await uow.postings.in_channel(delivery.conversation_id, destination.platform, destination.channel_id)
                message_id = posting.message_id if posting else None
        channel_id = destination.channel_id if destination else str(delivery.payload.get("channel_id", ""))
        conversation_ref = destination.conversation_ref if destination else {}
        if destination is None and delivery.kind == "notice":
            conversation_ref = await uow.departments.reference_for(delivery.platform, channel_id)
        job = Job(
            delivery_id=delivery.id or 0,
            kind=delivery.kind,
            platform=delivery.platform,
            channel_id=channel_id,
            conversation_ref=conversation_ref,
            payload=delivery.payload,
            card=card,
            message_id=message_id,
            batch=batch,
            thread_id=thread_id,
        )
        return job, destination, version

    async def _deliver(self, delivery: Delivery) -> str:
        async with self._uow() as uow:
            current = await uow.deliveries.get(delivery.id)  # type: ignore[arg-type]
            if current is None or current.status != "pending":
                return "skipped"  # folded into an earlier send of the same batch
            if await self._batch_first(uow, current):
                return "skipped"
            job, destination, version = await self._job_for(uow, current)
            attempted_before = await _unrecorded_attempt(uow, current, job)
            # Only the worker holding the lease at this moment sends; the send is marked attempted in
            # its own commit first, so a crash during it is recognised when the delivery comes back.
            if not await uow.deliveries.take_for_send(
                current.id,  # type: ignore[arg-type]
                holder=self.holder,
                now=uow.now(),
                lease=self.lease,
                renew=self._remaining,
            ):
                logger.info("delivery %s skipped: its lease expired and may be another worker's now", current.key)
                return "skipped"
            job = replace(job, key=current.key, attempted_at=attempted_before)
            await uow.commit()
        sender = self.senders[delivery.platform]
        try:
            sent = await sender.send(job)
        except RetryLater as exc:
            if self.metrics is not None and exc.status == 429:
                self.metrics.delivery(delivery.platform, "retried", rate_limited=True)
            elif self.metrics is not None:
                self.metrics.delivery(delivery.platform, "retried")
            await self._retry(
                delivery,
                error=f"{exc.reason}; retry after {exc.seconds:g}s",
                delay=exc.seconds,
                count_attempt=False,
                definite=True,
                earlier=job.attempted_at,
            )
            return "rate-limited"
        except PermanentFailure as exc:
            await self._fail(delivery, f"{type(exc).__name__}: {exc}")
            return "failed"
        except Exception as exc:  # any other failure is retried with backoff
            logger.warning("delivery %s to %s failed: %s", delivery.key, delivery.platform, exc)
            if await self._retry(delivery, error=f"{type(exc).__name__}: {exc}", delay=None, count_attempt=True):
                if self.metrics is not None:
                    self.metrics.delivery(delivery.platform, "retried")
            return "retrying"
        await self._done(delivery, job, sent, destination, version)
        return "sent"

    async def _batch_first(self, uow: UnitOfWork, delivery: Delivery) -> bool:
        """A held card whose batch message is still to be sent waits just behind it (True: pushed back),
        so the card can go in that message's thread; once the batch message failed for good, it goes alone."""
        if delivery.kind != "card" or not delivery.batch_key or delivery.attempted_at is not None:
            return False
        batch = await uow.deliveries.by_key(delivery.batch_key)
        if batch is None or batch.status != "pending":
            return False
        delivery.next_attempt_at = max(batch.next_attempt_at, uow.now()) + noise.AFTER_BATCH
        delivery.locked_until = delivery.holder = None
        await uow.commit()
        return True

    async def _done(self, delivery: Delivery, job: Job, sent: Sent, destination: Destination | None, version: int | None) -> None:
        async with self._uow() as uow:
            row = await uow.deliveries.get(delivery.id)  # type: ignore[arg-type]
            if row is None:
                return
            now = uow.now()
            latency = (now - row.created_at).total_seconds()
            row.status, row.sent_at, row.locked_until, row.attempts = "sent", now, None, row.attempts + 1
            row.holder = row.attempted_at = None
            if destination is not None and job.card is not None and job.message_id is None and sent.message_id:
                uow.postings.add(
                    Posting(
                        conversation_id=job.card.id,
                        destination_id=destination.id,
                        platform=destination.platform,
                        channel_id=destination.channel_id,
                        message_id=sent.message_id,
                        posted_at=now,
                        link=sent.link[:1000],
                    )
                )
            if job.kind == "reply":
                await _settle_reply(uow, row, error=None)
            if job.kind == "batch" and sent.message_id:
                row.payload = {**row.payload, "message_id": sent.message_id}  # its cards go in this message's thread
            if job.kind == "card" and version is not None:
                # Older pending refreshes of this copy are now satisfied by this send.
                for other in await uow.deliveries.pending_for(
                    kind="card",
                    conversation_id=row.conversation_id,  # type: ignore[arg-type]
                    destination_id=row.destination_id,
                ):
                    if other.id != row.id and other.payload.get("version", 0) <= version:
                        other.status, other.sent_at = "coalesced", now
            await commit_with_deliveries(uow)
        if self.metrics is not None:
            self.metrics.delivery(delivery.platform, "sent", seconds=latency)

    async def _retry(
        self,
        delivery: Delivery,
        *,
        error: str,
        delay: float | None,
        count_attempt: bool,
        definite: bool = False,
        earlier: datetime | None = None,
    ) -> bool:
        """Try it again later (True), or give up on it after `max_attempts` (False).

        `definite`: the platform refused this attempt, so it posted nothing; an `earlier` attempt whose
        outcome is unknown (a crash after a post) still stands, and the next send looks for its copy."""
        async with self._uow() as uow:
            row = await uow.deliveries.get(delivery.id)  # type: ignore[arg-type]
            if row is None:
                return False
            attempts = row.attempts + (1 if count_attempt else 0)
            if attempts < self.max_attempts:
                wait = delay if delay is not None else self.backoff(attempts)
                row.attempts, row.last_error = attempts, error[:2048]
                row.next_attempt_at = uow.now() + timedelta(seconds=wait)
                row.locked_until = row.holder = None
                if definite:  # the platform refused it: this attempt posted nothing
                    row.attempted_at = earlier
                if not count_attempt and row.destination_id is not None:
                    # A rate limit is the channel's, not this delivery's: hold back its siblings too.
                    await uow.deliveries.defer_destination(
                        row.destination_id, until=row.next_attempt_at, now=uow.now(), mine=self._leased
                    )
                await uow.commit()
                return True
        await self._fail(delivery, error)  # after the unit of work above is closed: they never nest
        return False

    async def _fail(self, delivery: Delivery, error: str) -> None:
        async with self._uow() as uow:
            row = await uow.deliveries.get(delivery.id)  # type: ignore[arg-type]
            if row is None:
                return
            row.status, row.last_error, row.locked_until, row.holder = "failed", error[:2048], None, None
            row.attempts += 1
            if self.metrics is not None:
                self.metrics.delivery(row.platform, "failed")
            uow.events.add(
                Event(
                    conversation_id=row.conversation_id,
                    kind="delivery_failed",
                    at=uow.now(),
                    data={"delivery": row.key, "platform": row.platform, "error": error[:500]},
                )
            )
            logger.error("delivery %s to %s failed for good: %s", row.key, row.platform, error)
            if row.kind == "reply":
                await _settle_reply(uow, row, error=error)
            await commit_with_deliveries(uow)
