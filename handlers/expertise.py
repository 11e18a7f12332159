"""Who to turn to for what: the topics people declare, and what the log says they did.

`who knows <words>` ranks people by what they did to conversations matching the words (found through
the conversations' search and their tags): each resolution, reply, approval or note counts by its
kind and fades with age (half of it after `expertise_half_life_days`); a declared topic adds a fixed
weight, less than a few recent resolutions. People are `Person` rows, so accounts on every platform
and every department count as one person.
"""

from __future__ import annotations

import logging
from datetime import datetime

from bot import search as search_query
from bot.commands import DeclareExpertise, ShowExpertise, WhoKnows
from bot.domain import InvalidInput
from bot.expertise import WEIGHTS, Evidence, departments_of, weigh
from bot.policy import Context, identify
from bot.views import Notice, Result, display_name, storable
from handlers._common import log_event
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

MAX_TOPICS = 30  # topics one person declares
MAX_TOPIC = 40  # characters in one topic
MAX_WORDS = 8  # words in one question (as in a search)
MAX_WORD = 64
MATCHED = 500  # the conversations matching a question that are weighed (the search's first, and the newest by tag)
LISTED = 5  # people in an answer

DECLARED = 4.0  # a declared topic: less than two recent resolutions
#: How the evidence reads, in the order it is given.
EVIDENCE = {"resolved": "resolved", "replied": "replied to", "reply_approved": "approved replies on", "noted": "noted on"}


def topics_of(raw: tuple[str, ...]) -> list[str]:
    """Topics as stored: lowercase, single-spaced, without a leading '#', each checked."""
    topics: list[str] = []
    for text in raw:
        topic = " ".join(storable(text).casefold().split()).lstrip("#").strip()
        if not topic:
            continue
        if len(topic) > MAX_TOPIC:
            raise InvalidInput(f"a topic is at most {MAX_TOPIC} characters; “{topic[:20]}…” is {len(topic):,}")
        if topic not in topics:
            topics.append(topic)
    if not topics:
        raise InvalidInput("name at least one topic, e.g. `expert add gdpr, refunds`")
    return topics


def _listed(topics: list[str]) -> str:
    return ", ".join(topics) if topics else "none"


async def handle_declare_expertise(cmd: DeclareExpertise, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Add or remove the caller's declared topics; the change is logged."""
    who = await identify(uow, cmd.actor)
    current = list(who.person.expertise or [])
    added = [t for t in topics_of(cmd.add) if t not in current] if cmd.add else []
    removing = topics_of(cmd.remove) if cmd.remove else []
    removed = [t for t in removing if t in current]
    topics = [t for t in current if t not in removed] + added
    if len(topics) > MAX_TOPICS:
        raise InvalidInput(f"you can declare at most {MAX_TOPICS} topics (that would be {len(topics)}); remove some first")
    if added or removed:
        await uow.people.declare(who.person, topics)
        await log_event(uow, None, "expertise_declared", who=who, data={"added": added, "removed": removed})
        logger.info("%s declared topics: +%s -%s", who.name, added, removed)
    said = []
    if added:
        said.append(f"Added {', '.join(added)}.")
    if removed:
        said.append(f"Removed {', '.join(removed)}.")
    unknown = [t for t in removing if t not in removed]
    if unknown:
        said.append(f"You had not declared {', '.join(unknown)}.")
    if not added and cmd.add:
        said.append("You had declared all of that already.")
    said.append(f"Your topics: {_listed(topics)}")
    return Result(" ".join(said))


async def handle_show_expertise(cmd: ShowExpertise, uow: UnitOfWork, *, ctx: Context) -> Result:
    """The caller's declared topics."""
    who = await identify(uow, cmd.actor)
    topics = list(who.person.expertise or [])
    if not topics:
        return Result("You have declared no topics yet; `expert add gdpr, refunds` adds some (`who knows` finds you by them)")
    return Result(f"Your topics: {_listed(topics)}")


def _ago(now: datetime, at: datetime) -> str:
    days = int((now - at).total_seconds() // 86400)
    if days <= 0:
        return "today"
    if days == 1:
        return "yesterday"
    return f"{days} days ago"


def _evidence_line(evidence: Evidence, *, now: datetime) -> str:
    parts: list[str] = []
    for kind, words in EVIDENCE.items():
        count = evidence.counts.get(kind, 0)
        if count:
            similar = " similar" if not parts else ""
            last = f", last {_ago(now, evidence.last[kind])}" if not parts else ""
            parts.append(f"{words} {count}{similar}{last}")
    if evidence.declared:
        parts.append(f"declared: {', '.join(evidence.declared)}")
    return " · ".join(parts)


def _question(words: tuple[str, ...]) -> tuple[str, ...]:
    cleaned = tuple(dict.fromkeys(w.casefold() for w in (storable(w).strip() for w in words) if w))
    if not cleaned:
        raise InvalidInput("who knows needs words, e.g. `who knows gdpr`")
    if len(cleaned) > MAX_WORDS:
        raise InvalidInput(f"who knows takes at most {MAX_WORDS} words (got {len(cleaned)}); pick the most telling ones")
    long = next((w for w in cleaned if len(w) > MAX_WORD), None)
    if long is not None:
        raise InvalidInput(f"words are at most {MAX_WORD} characters; “{long[:20]}…” is {len(long):,}")
    return cleaned


async def handle_who_knows(cmd: WhoKnows, uow: UnitOfWork, *, ctx: Context) -> Result:
    """People ranked by what they did to conversations like these, fading with age, and by declared topics."""
    words = _question(cmd.words)
    now = uow.now()
    # The same ranked index and query rules as `search` (stemmed words; every word must match).
    matched, _ = await uow.conversations.search(search_query.parse(" ".join(words), now=now), limit=MATCHED, snippets=False)
    ids = {r.id for r, _ in matched if r.id is not None} | set(await uow.conversations.tagged(words, limit=MATCHED))
    contributions = await uow.events.contributions(sorted(ids), kinds=list(WEIGHTS))
    people = weigh(contributions, now=now, half_life_days=ctx.expertise_half_life_days)
    wanted = set(words)
    for person in await uow.people.declaring():
        declared = [t for t in person.expertise if t in wanted or wanted & set(t.split())]
        if declared and person.id is not None:
            evidence = people.setdefault(person.id, Evidence())
            evidence.declared = declared
            evidence.score += DECLARED
    quoted = " ".join(words)
    if not people:
        return Result(f"Nobody yet for “{quoted}”: nobody handled such a conversation or declared the topic")
    found = await uow.people.many(people)
    ranked = sorted(
        (pid for pid in people if pid in found),
        key=lambda pid: (-people[pid].score, display_name(found[pid][0].name).casefold(), pid),
    )[: max(1, min(cmd.limit, 20))]
    departments = await uow.departments.all()
    lines = []
    for place, pid in enumerate(ranked, start=1):
        person, identities = found[pid]
        managed = departments_of(person, identities, departments)
        where = f" ({', '.join(managed)})" if managed else ""
        lines.append(f"{place}. {display_name(person.name)}{where}: {_evidence_line(people[pid], now=now)}")
    title = f"Who knows “{quoted}”: {len(ranked)} {'person' if len(ranked) == 1 else 'people'}"
    notice = Notice(title=title, lines=tuple(lines))
    return Result(title, notice=notice)
