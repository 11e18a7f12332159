"""A noise budget per channel: when a new conversation's card may be posted in a channel.

A destination has a delivery mode: `realtime` (post at once, the default), `batched EVERY` (one
compact message per window of EVERY listing the window's new conversations, their full cards in
that message's thread) or `digest-only` (no card; the digest lists them); and optional quiet
hours in a time zone, during which only `urgent` conversations post at once.

Only a card's first post is budgeted: an update of a card already posted edits it in place and
goes at once. Held cards are ordinary outbox deliveries whose `next_attempt_at` is when they may
go and whose `batch_key` ties them to their window's batch delivery (itself an outbox row), so
a restart in the middle of a window loses nothing and posts nothing twice.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.domain import InvalidInput

if TYPE_CHECKING:  # the config reads modes with this module: it stays cheap to import
    from storage.models import Delivery, Destination
    from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

REALTIME, BATCHED, DIGEST_ONLY = "realtime", "batched", "digest-only"
MODES = (REALTIME, BATCHED, DIGEST_ONLY)
URGENT = "urgent"  # the one priority that quiet hours (and batching) never hold back
MIN_EVERY, MAX_EVERY = 60, 24 * 3600
AFTER_BATCH = timedelta(milliseconds=1)  # a window's cards are due just after its batch message: it goes first
KEPT_FOR_DIGEST = "digest-only"  # the status of a card delivery a digest-only channel never gets

_EVERY = re.compile(r"^(\d+)\s*(s|m|min|h)?$")
_QUIET = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})(?:\s+(\S+))?$")


def parse_every(text: str) -> int:
    """Seconds from `15m`, `1h`, `90s` or a bare number of minutes; 1 minute to 24 hours."""
    match = _EVERY.match(text.strip().lower())
    if match is None:
        raise InvalidInput(f"{text[:40]!r} is not a length of time like 15m or 1h")
    number, unit = int(match.group(1)), match.group(2) or "m"
    seconds = number * {"s": 1, "m": 60, "min": 60, "h": 3600}[unit]
    if not MIN_EVERY <= seconds <= MAX_EVERY:
        raise InvalidInput("a batch window is 1 minute to 24 hours long")
    return seconds


def parse_mode(text: str) -> str:
    """The stored form of a mode typed as `realtime`, `batched 15m` or `digest-only`: "batched 900"."""
    words = text.strip().lower().split()
    name = words[0] if words else ""
    if name == BATCHED:
        if len(words) != 2:
            raise InvalidInput("batched needs how often, e.g. `batched 15m`")
        return f"{BATCHED} {parse_every(words[1])}"
    if name in (REALTIME, DIGEST_ONLY) and len(words) == 1:
        return name
    raise InvalidInput(f"a mode is one of: realtime, batched <every> (e.g. batched 15m), digest-only; not {text[:40]!r}")


def duration(seconds: int) -> str:
    """`15m`, `1h`, `1h30m`, `90s`."""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0m"


@dataclass(frozen=True)
class Quiet:
    """Quiet hours: from `start` to `end` (wall clock in `zone`; across midnight when end <= start)."""

    start: time
    end: time
    zone: str = "UTC"

    @classmethod
    def parse(cls, text: str) -> Quiet:
        """`22:00-07:00 Europe/Berlin` (the zone defaults to UTC)."""
        match = _QUIET.match(text.strip())
        if match is None:
            raise InvalidInput(f"quiet hours look like `22:00-07:00 Europe/Berlin`, not {text[:60]!r}")
        h1, m1, h2, m2 = (int(g) for g in match.groups()[:4])
        zone = match.group(5) or "UTC"
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59 or (h1, m1) == (h2, m2):
            raise InvalidInput("quiet hours run from one time of day (00:00-23:59) to another")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"{zone[:60]!r} is not a time zone name like Europe/Berlin") from None
        return cls(time(h1, m1), time(h2, m2), zone)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.zone}"

    def active(self, at: datetime) -> bool:
        """Whether `at` (aware) falls in the quiet hours."""
        now = at.astimezone(ZoneInfo(self.zone)).time()
        if self.start < self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end

    def ends_after(self, at: datetime) -> datetime:
        """When the quiet hours that `at` falls in end (UTC)."""
        zone = ZoneInfo(self.zone)
        local = at.astimezone(zone)
        end = datetime.combine(local.date(), self.end, tzinfo=zone)
        if end <= local:
            end += timedelta(days=1)
        return end.astimezone(UTC)


@dataclass(frozen=True)
class Budget:
    """A channel's effective noise budget (the chat's setting where there is one, else the config's)."""

    mode: str = REALTIME
    every: int = 0
    quiet: Quiet | None = None
    from_chat: bool = False

    @classmethod
    def of(cls, destination: Destination) -> Budget:
        """The budget a destination row holds; an unreadable stored value reads as realtime / no quiet hours."""
        mode = destination.chat_mode if destination.chat_mode is not None else destination.mode
        quiet = destination.chat_quiet if destination.chat_quiet is not None else destination.quiet
        name, _, every = (mode or REALTIME).partition(" ")
        try:
            hours = Quiet.parse(quiet) if quiet else None
        except InvalidInput:
            logger.warning("destination %s has unreadable quiet hours %r: ignored", destination.id, quiet)
            hours = None
        from_chat = destination.chat_mode is not None or destination.chat_quiet is not None
        if name == BATCHED and every.isdigit():
            return cls(BATCHED, int(every), hours, from_chat)
        return cls(name if name in MODES else REALTIME, 0, hours, from_chat)

    @property
    def realtime(self) -> bool:
        """Nothing held: every card posts at once."""
        return self.mode == REALTIME and self.quiet is None

    def describe(self) -> str:
        """`batched every 15m, quiet 22:00-07:00 Europe/Berlin`."""
        mode = f"batched every {duration(self.every)}" if self.mode == BATCHED else self.mode
        return mode + (f", quiet {self.quiet}" if self.quiet else "")

    def hold(self, *, now: datetime, priority: str) -> tuple[datetime | None, datetime | None]:
        """(when a new card may post, the start of its batch window): (None, None) to post at once."""
        if priority == URGENT:
            return None, None
        if self.mode == BATCHED:
            epoch = int(now.timestamp())
            start = datetime.fromtimestamp(epoch - epoch % self.every, tz=UTC)
            until = start + timedelta(seconds=self.every)
            if self.quiet is not None and self.quiet.active(until):
                until = self.quiet.ends_after(until)
            return until, start
        if self.quiet is not None and self.quiet.active(now):
            return self.quiet.ends_after(now), None
        return None, None


def batch_key(destination: Destination, window: datetime) -> str:
    """One key per channel and window (two departments sharing the channel share its batch)."""
    channel = hashlib.sha256(f"{destination.platform}:{destination.channel_id}".encode()).hexdigest()[:16]
    return f"batch:{channel}:{window:%Y%m%dT%H%M%S}"


async def hold_new_cards(uow: UnitOfWork, conversation_ids: Iterable[int]) -> int:
    """Apply each channel's budget to the card deliveries just enqueued for these conversations whose card
    is not posted there yet: hold them (to the window's end or the quiet hours' end, with the window's
    batch delivery), or keep them off a digest-only channel. Returns how many were held or kept off."""
    budgets = {d.id or 0: (d, Budget.of(d)) for d in await uow.deliveries.budgeted_destinations()}
    budgets = {k: v for k, v in budgets.items() if not v[1].realtime}
    if not budgets:
        return 0
    now = uow.now()
    groups: dict[tuple[int, int], list[Delivery]] = {}
    priorities: dict[int, str] = {}
    for delivery, priority in await uow.deliveries.unposted_cards(sorted(set(conversation_ids)), list(budgets)):
        groups.setdefault((delivery.conversation_id or 0, delivery.destination_id or 0), []).append(delivery)
        priorities[delivery.conversation_id or 0] = priority
    changed, batches = 0, []
    for (conversation_id, destination_id), rows in groups.items():
        destination, budget = budgets[destination_id]
        held = next((r for r in rows if r.batch_key is not None or r.next_attempt_at > now), None)
        fresh = [r for r in rows if r.batch_key is None and r.next_attempt_at <= now]
        if not fresh:
            continue
        if budget.mode == DIGEST_ONLY:
            for row in fresh:
                row.status = KEPT_FOR_DIGEST
            changed += len(fresh)
            continue
        if held is not None:  # a later version of a card already held: it waits with it
            until, key = held.next_attempt_at, held.batch_key
        else:
            hold, window = budget.hold(now=now, priority=priorities[conversation_id])
            if hold is None:
                continue
            until = hold
            # A window held over quiet hours goes out when they end, with every other window held over them:
            # one batch per channel and quiet night (keyed by that end; its title spans from the first window).
            pushed = window is not None and hold > window + timedelta(seconds=budget.every)
            key = batch_key(destination, hold if pushed else window) if window is not None else None
            if key is not None:
                batches.append(
                    {
                        "key": key,
                        "platform": destination.platform,
                        "kind": "batch",
                        "conversation_id": None,
                        "destination_id": destination_id,
                        "payload": {  # the title's span: its window, or from it to the end of the quiet hours
                            "window_start": window.isoformat(),  # type: ignore[union-attr]
                            "every": int((hold - window).total_seconds()) if pushed else budget.every,  # type: ignore[operator]
                        },
                        "status": "pending",
                        "attempts": 0,
                        "next_attempt_at": until,
                        "created_at": now,
                        "batch_key": key,
                    }
                )
                until = until + AFTER_BATCH
        for row in fresh:
            row.next_attempt_at, row.batch_key = until, key
        changed += len(fresh)
    if batches:
        await uow.deliveries.enqueue_many(batches)
    await uow.session.flush()
    return changed
