"""Ask for help: the people suggested on a card (`bot.suggest`) are asked on their own platform.

Where the card is posted on a platform the person has an account on, they are mentioned in its
thread there; otherwise they get a message of their own on their platform, saying where the card is.
Each ask is an `asked` event; the same person is asked once per conversation.
"""

from __future__ import annotations

import logging

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value

from bot import policy
from bot.commands import Ask
from bot.domain import InvalidInput, Status
from bot.outbox import notice_row
from bot.policy import Context, Who, identify
from bot.views import Notice, Result, Suggested, cut, display_name, first_line, suggested_of
from handlers._common import card, load
from storage.models import Conversation, Identity
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

ASKED = "asked"
CLOSED = (Status.RESOLVED, Status.DISMISSED)


def _chosen(conversation: Conversation, person: str) -> list[Suggested]:
    """The suggested people `person` names (a whole name or its first word, any case); all when it is blank."""
    suggested = list(suggested_of(conversation))
    if not suggested:
        raise InvalidInput(f"nobody is suggested to ask on #{conversation.id}; `who knows words` finds people")
    wanted = " ".join(person.split()).casefold().lstrip("@")
    if not wanted:
        return suggested
    found = [s for s in suggested if wanted in (s.name.casefold(), (s.name.split() or [""])[0].casefold())]
    if not found:
        names = ", ".join(display_name(s.name) for s in suggested)
        raise InvalidInput(f"{cut(person, 40)!r} is not suggested on #{conversation.id}; ask {names}")
    return found


def _notice(
    conversation: Conversation,
    who: Who,
    asked: Suggested,
    mention: tuple[str, str],
    *,
    where: str,
    cards: tuple[tuple[str, str], ...] = (),
) -> Notice:
    """The message asking for help (`cards`: links to the card's posted copies, as (label, url), first)."""
    summary = cut(first_line((conversation.title or "").strip() or conversation.text), 80) or "(no text)"
    lines = [
        f"From {conversation.author_name or conversation.author_handle or 'a customer'} via {conversation.source}",
        f"Suggested because: {asked.described()}",
    ]
    if where:
        lines.append(where)
    return Notice(
        title=f"{display_name(who.name)} asks for your help with #{conversation.id}: “{summary}”",
        lines=tuple(lines),
        mentions=(mention,),
        links=cards + (((f"#{conversation.id} original", conversation.url),) if conversation.url else ()),
    )


async def _ask_one(uow: UnitOfWork, conversation: Conversation, who: Who, asked: Suggested) -> str:
    """Queue the mention or the message to one person; what was done, in words ("" when they cannot be reached)."""
    assert conversation.id is not None
    found = await uow.people.by_id_with_identities(asked.person_id)
    accounts: list[Identity] = [i for i in (found[1] if found else []) if i.platform in uow.chat_platforms]
    if not accounts:
        return ""
    name = display_name(found[0].name) if found else display_name(asked.name)
    targets = [
        (destination_id, platform) for _, _, destination_id, platform in await uow.conversations.card_targets([conversation.id])
    ]
    on_card = [i for i in accounts if any(platform == i.platform for _, platform in targets)]
    key = f"ask:{conversation.id}:{asked.person_id}"
    if on_card:
        account = on_card[0]
        notice = _notice(conversation, who, asked, (f"{account.platform}:{account.user_id}", name), where="")
        rows = [
            notice_row(uow, notice, key=f"{key}:{d}", platform=p, conversation_id=conversation.id, destination_id=d)
            for d, p in targets
            if p == account.platform
        ]
        how = f"mentioned in the card's thread on {account.platform}"
    else:
        account = accounts[0]
        postings = await uow.postings.for_conversation(conversation.id)
        shown = sorted({f"{p.platform} channel {p.channel_id}" for p in postings}) or sorted({p for _, p in targets})
        where = f"#{conversation.id} is on {', '.join(shown)}" if shown else f"#{conversation.id} is not posted in a channel yet"
        where += f"; `show {conversation.id}` shows it here"
        # The card's posted copies, as their platform links them (a permalink, a deep link), where one is known.
        cards = tuple(sorted({(f"Open the card of #{conversation.id} ({p.platform})", p.link) for p in postings if p.link}))
        notice = _notice(conversation, who, asked, (f"{account.platform}:{account.user_id}", name), where=where, cards=cards)
        rows = [
            notice_row(
                uow,
                notice,
                key=f"{key}:dm",
                platform=account.platform,
                conversation_id=conversation.id,
                channel_id=account.user_id,
                dm=True,
            )
        ]
        how = f"sent a message on {account.platform}"
    await uow.deliveries.enqueue_many(rows)
    await uow.events.add_many(
        [
            {
                "conversation_id": conversation.id,
                "kind": ASKED,
                "actor_id": who.id,
                "actor_name": who.name,
                "at": uow.now(),
                "data": {
                    "person_id": asked.person_id,
                    "name": name,
                    "platform": account.platform,
                    "how": "thread" if on_card else "dm",
                },
            }
        ]
    )
    logger.info("#%s: %s asked person %s (%s)", conversation.id, who.name, asked.person_id, how)
    return f"{name} ({how})"


async def handle_ask(cmd: Ask, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Ask the suggested people (or the one named) for help, once each per conversation; the asks are logged."""
    who = await identify(uow, cmd.actor)
    conversation = await load(uow, cmd.conversation_id)
    departments = await uow.conversations.departments_of(cmd.conversation_id)
    policy.require("ask", who=who, conversation=conversation, departments=departments, owner=None)
    if conversation.status in CLOSED:
        raise InvalidInput(f"#{cmd.conversation_id} is {conversation.status}; there is nothing to ask about")
    chosen = _chosen(conversation, cmd.person)
    before = {
        e.data.get("person_id"): e.actor_name
        for e in await uow.events.for_conversation(cmd.conversation_id)
        if e.kind == ASKED and e.data
    }
    said: list[str] = []
    asked: list[str] = []
    reached: set[int] = set()
    for person in chosen:
        if person.person_id == who.id:
            said.append("You are suggested yourself.")
        elif person.person_id in before:
            said.append(
                f"{display_name(person.name)} was asked already (by {display_name(before[person.person_id])}); not asking again."
            )
        else:
            done = await _ask_one(uow, conversation, who, person)
            if done:
                asked.append(done)
                reached.add(person.person_id)
            else:
                said.append(f"{display_name(person.name)} has no chat account to be asked on.")
    if asked:
        said.insert(0, f"Asked for help with #{cmd.conversation_id}: {'; '.join(asked)}.")
        await _mark_asked(uow, conversation, reached)
    return Result(" ".join(said), card=await card(uow, conversation))


async def _mark_asked(uow: UnitOfWork, conversation: Conversation, people: set[int]) -> None:
    """The card says who was asked ("Asked Dana (legal): …"): the stored suggestions marked, every copy refreshed."""
    assert conversation.id is not None
    listed = [
        {**item, "asked": True} if isinstance(item, dict) and item.get("person_id") in people else item
        for item in conversation.suggested or []
    ]
    table = Conversation.__table__  # type: ignore[attr-defined]
    await uow.session.exec(update(table).where(table.c.id == conversation.id).values(suggested=listed))
    set_committed_value(conversation, "suggested", listed)
    await uow.conversations.touch(conversation.id, at=uow.now())  # a new version: its cards are sent again
    uow.mark_changed(conversation.id)
