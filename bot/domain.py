"""Domain rules: statuses, the one transition table, priorities, and domain errors.

Every status change anywhere in Unsilo is checked by `next_status`; the store then
applies it with a compare-and-set so concurrent writers cannot both win.
"""

from __future__ import annotations

import logging
import re
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.views import Card

logger = logging.getLogger(__name__)


class Status(StrEnum):
    """Where a conversation stands."""

    OPEN = "open"
    CLAIMED = "claimed"
    REPLIED = "replied"
    RESOLVED = "resolved"
    DISMISSED = "dismissed"


ACTIVE = (Status.OPEN, Status.CLAIMED, Status.REPLIED)
FINAL = (Status.RESOLVED, Status.DISMISSED)

PRIORITIES = ("low", "normal", "high", "urgent")

DEFAULT_OUTCOMES = ("answered", "fixed", "escalated", "no-action", "spam")

# action -> {from status: to status}; `None` as target means "keep the current status".
TRANSITIONS: dict[str, dict[Status, Status | None]] = {
    "claim": {Status.OPEN: Status.CLAIMED},
    "release": {Status.CLAIMED: Status.OPEN, Status.REPLIED: Status.OPEN},
    "reassign": {Status.OPEN: Status.CLAIMED, Status.CLAIMED: None, Status.REPLIED: None},
    # Writing a reply claims an unclaimed conversation; it is `replied` only once a reply reached the
    # customer (`reached_customer`): one held for approval, rejected or not posted yet has not.
    "reply": {Status.OPEN: Status.CLAIMED, Status.CLAIMED: None, Status.REPLIED: None},
    "resolve": {Status.OPEN: Status.RESOLVED, Status.CLAIMED: Status.RESOLVED, Status.REPLIED: Status.RESOLVED},
    "dismiss": {Status.OPEN: Status.DISMISSED, Status.CLAIMED: Status.DISMISSED, Status.REPLIED: Status.DISMISSED},
    "note": {s: None for s in Status},
    "reroute": {Status.OPEN: Status.OPEN, Status.CLAIMED: Status.OPEN, Status.REPLIED: Status.OPEN},  # into the new queue
    # `merge #12 into #9`: #12 closes as a voice of #9; `split` takes a voice out of an open conversation.
    "merge": {Status.OPEN: Status.DISMISSED, Status.CLAIMED: Status.DISMISSED, Status.REPLIED: Status.DISMISSED},
    "split": {Status.OPEN: None, Status.CLAIMED: None, Status.REPLIED: None},
}

PAST_TENSE = {
    "claim": "claimed",
    "release": "released",
    "reassign": "reassigned",
    "reply": "replied",
    "resolve": "resolved",
    "dismiss": "dismissed",
    "note": "noted",
    "reroute": "rerouted",
    "merge": "merged",
    "split": "split",
}


def reached_customer(current: str) -> Status:
    """The status once a reply reached the customer (delivered by the outbox, or marked posted by hand):
    a claimed conversation is replied; any other keeps its status (released meanwhile: open; closed
    meanwhile: resolved or dismissed; answered before: replied)."""
    status = Status(current)
    return Status.REPLIED if status == Status.CLAIMED else status


class DomainError(Exception):
    """A refusal with a one-line message meant for the person who asked.

    `card`: the conversation's card as it stands, read in the refused command's own unit of work
    when the bus was asked to show it (`Bus.handle(..., show=True)`); else None.
    """

    card: Card | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    """The thing named does not exist."""


class InvalidInput(DomainError):
    """The request is malformed (bad id, unknown outcome, empty text...)."""


class Forbidden(DomainError):
    """The person may not do this."""


class IllegalTransition(DomainError):
    """The conversation's status does not allow this action."""


class AlreadyClaimed(IllegalTransition):
    """Someone else owns the conversation."""

    def __init__(self, conversation_id: int, owner: str) -> None:
        super().__init__(f"#{conversation_id} is already claimed by {owner}")
        self.conversation_id = conversation_id
        self.owner = owner
        self.identities: dict[str, str] = {}


class AlreadyDone(DomainError):
    """The same request was already carried out (a retry or a replayed request): nothing is done again."""


class Conflict(DomainError):
    """The conversation kept changing under us; the caller may try again."""


def next_status(action: str, current: str, *, conversation_id: int, owner: str | None = None) -> Status:
    """The status after `action`, or a clear `IllegalTransition` naming why not."""
    status = Status(current)
    allowed = TRANSITIONS[action]
    if status in allowed:
        target = allowed[status]
        return status if target is None else target
    if action == "claim" and status in (Status.CLAIMED, Status.REPLIED) and owner:
        raise AlreadyClaimed(conversation_id, owner)
    if status in FINAL:
        raise IllegalTransition(f"#{conversation_id} is {status.value}; it can't be {PAST_TENSE[action]} any more")
    raise IllegalTransition(f"#{conversation_id} is {status.value}; it can't be {PAST_TENSE[action]}")


def priority_rank(priority: str) -> int:
    """Order of a priority name (unknown names rank as normal)."""
    return PRIORITIES.index(priority) if priority in PRIORITIES else PRIORITIES.index("normal")


def check_limit(limit: int, *, most: int) -> int:
    """How many items a list may show: 1 to `most`, or a clear refusal."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= most:
        raise InvalidInput(f"a list shows 1 to {most} items, not {limit!r}")
    return limit


MAX_CONVERSATION_ID = 2**31 - 1  # ids are INTEGER columns: PostgreSQL refuses anything larger
_ID = re.compile(r"#?([0-9]{1,10})")  # ASCII digits only: `str.isdigit` also takes "²" and "٣"


def parse_conversation_id(text: str | int) -> int:
    """Read `42`, `#42` or ` #42 ` as a conversation id, or refuse clearly (the one parser for every surface)."""
    if isinstance(text, bool):
        raise InvalidInput("that is not a conversation id; use a number like #42")
    if isinstance(text, int):
        raw = str(text)
    else:
        raw = str(text).strip()
    found = _ID.fullmatch(raw)
    value = int(found.group(1)) if found else 0
    if not 0 < value <= MAX_CONVERSATION_ID:
        shown = raw if len(raw) <= 30 else raw[:30] + "…"
        raise InvalidInput(f"{shown!r} is not a conversation id; use a number like #42")
    return value
