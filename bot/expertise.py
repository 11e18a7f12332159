"""What the event log says someone knows: the one scoring `who knows` and the cards' suggestions share.

Each resolution, reply, approval or note on a conversation counts by its kind and fades with age (half
of it after the half-life). A person's departments are theirs in the config's `[people]`, else those
they manage.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from bot.policy import keys_of
from storage.models import Department, Identity, Person

#: What each kind of event says about someone's knowledge of a conversation's topic (once per conversation).
WEIGHTS = {"resolved": 3.0, "replied": 2.0, "reply_approved": 1.5, "noted": 1.0}


@dataclass
class Evidence:
    """What one person did to the conversations weighed: the score, the count and last time of each kind,
    the conversations, and (`who knows`) the topics they declared."""

    score: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)
    last: dict[str, datetime] = field(default_factory=dict)
    conversations: set[int] = field(default_factory=set)
    declared: list[str] = field(default_factory=list)


def weigh(contributions: Iterable[tuple[int, str, int, datetime]], *, now: datetime, half_life_days: int) -> dict[int, Evidence]:
    """Evidence per person id from `uow.events.contributions` rows (person, kind, conversation, last time)."""
    half_life = max(1, half_life_days) * 86400.0
    people: dict[int, Evidence] = {}
    for person_id, kind, conversation_id, at in contributions:
        evidence = people.setdefault(person_id, Evidence())
        age = max(0.0, (now - at).total_seconds())
        evidence.score += WEIGHTS.get(kind, 0.0) * 0.5 ** (age / half_life)
        evidence.counts[kind] += 1
        evidence.conversations.add(conversation_id)
        evidence.last[kind] = max(evidence.last.get(kind, at), at)
    return people


def departments_of(person: Person, identities: list[Identity], departments: list[Department]) -> list[str]:
    """The department a person belongs to (the config's `[people]`), else those they manage."""
    if person.department:
        return [person.department]
    keys = keys_of(person, identities)
    return [d.name for d in departments if any(m.lower() in keys for m in d.managers)]
