"""Closing the loop: whoever sent a conversation in hears how it ended.

When a conversation is resolved, each person `people_to_tell` names (who sent it in with "Send to
Unsilo" or `report`, or sent in a conversation merged into it by hand) gets a short message of their
own on their platform, through the outbox, like an Ask's (`bot.outbox.notice_row`): "#12, which you
sent in, was resolved by Dana: fixed". Not the person who resolved it, and not someone who said
`notify off` (`Person.notify`). Each message is a `sender_told` event; a conversation resolved again
(reopened by nobody today) tells nobody twice.
"""

from __future__ import annotations

import logging

from bot.commands import SetNotify
from bot.outbox import notice_row
from bot.policy import Context, Who, identify
from bot.views import Notice, Result, cut, display_name, first_line
from storage.models import Conversation, Identity
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

TOLD = "sender_told"
REPORT_SOURCE = "-report"  # a reported post's source is `<platform>-report` (`handlers.report`)


async def people_to_tell(uow: UnitOfWork, conversation: Conversation) -> dict[int, Conversation]:
    """Who sent this conversation in: the people to tell how it ended, by person id, each once, with the
    conversation they sent in (this one, or one merged into it by hand: `merge #12 into #9` makes #12's
    reporter one of #9's), which says the platform to write on. The first they sent in counts.

    The one place that says so."""
    sent_in = [conversation, *await uow.voices.merged_in(conversation.id)]  # type: ignore[arg-type]
    people: dict[int, Conversation] = {}
    for c in sent_in:
        if c.reported_by_id is not None:
            people.setdefault(c.reported_by_id, c)
    return people


def _account(sent_in: Conversation, accounts: list[Identity], platforms: tuple[str, ...]) -> Identity | None:
    """The account to write to: on the platform the post was sent in from, else their first chat account."""
    chat = [i for i in accounts if i.platform in platforms]
    sent_from = sent_in.source.removesuffix(REPORT_SOURCE) if sent_in.source.endswith(REPORT_SOURCE) else ""
    return next((i for i in chat if i.platform == sent_from), chat[0] if chat else None)


def resolved_notice(
    conversation: Conversation, *, by: str, outcome: str, text: str = "", sent_in: Conversation | None = None
) -> Notice:
    """ "#12, which you sent in, was resolved by Dana: fixed", with the post's first line and the closing note;
    "#12, which you sent in as #14, …" when what they sent in (`sent_in`) was merged into it."""
    summary = cut(first_line((conversation.title or "").strip() or conversation.text), 80) or "(no text)"
    lines = [f"“{summary}”"]
    if text:
        lines.append(f"Note: {cut(first_line(text), 200)}")
    lines.append("You get this because you sent it in; `notify off` stops these messages.")
    merged = f" as #{sent_in.id}" if sent_in is not None and sent_in.id != conversation.id else ""
    return Notice(
        title=f"#{conversation.id}, which you sent in{merged}, was resolved by {display_name(by)}: {outcome}",
        lines=tuple(lines),
        links=((f"#{conversation.id} original", conversation.url),) if conversation.url else (),
    )


async def tell_senders(uow: UnitOfWork, conversation: Conversation, *, who: Who, outcome: str, text: str = "") -> list[str]:
    """Queue the message to each person to tell (`people_to_tell`) who wants it; their names."""
    assert conversation.id is not None
    told_before = {
        e.data.get("person_id") for e in await uow.events.for_conversation(conversation.id) if e.kind == TOLD and e.data
    }
    sent_in = {p: c for p, c in (await people_to_tell(uow, conversation)).items() if p != who.id and p not in told_before}
    if not sent_in:
        return []
    rows, events, names = [], [], []
    for person, accounts in (await uow.people.many(list(sent_in))).values():
        assert person.id is not None
        account = _account(sent_in[person.id], accounts, uow.chat_platforms)
        if not person.notify or account is None:
            continue
        notice = resolved_notice(conversation, by=who.name, outcome=outcome, text=text, sent_in=sent_in[person.id])
        rows.append(
            notice_row(
                uow,
                notice,
                key=f"told:{conversation.id}:{person.id}",
                platform=account.platform,
                conversation_id=conversation.id,
                channel_id=account.user_id,
                dm=True,
            )
        )
        name = display_name(person.name)
        events.append(
            {
                "conversation_id": conversation.id,
                "kind": TOLD,
                "actor_id": None,
                "actor_name": "",
                "at": uow.now(),
                "data": {"person_id": person.id, "name": name, "platform": account.platform},
            }
        )
        names.append(name)
    await uow.deliveries.enqueue_many(rows)
    await uow.events.add_many(events)
    if names:
        logger.info("#%s resolved: told %s", conversation.id, ", ".join(names))
    return names


async def handle_set_notify(cmd: SetNotify, uow: UnitOfWork, *, ctx: Context) -> Result:
    """`notify on|off`: whether the caller is told when a conversation they sent in is resolved."""
    who = await identify(uow, cmd.actor)
    await uow.people.set_notify(who.id, on=cmd.on)
    if cmd.on:
        return Result("You will get a message when a conversation you sent in is resolved (`notify off` stops them).")
    return Result("You will no longer get a message when a conversation you sent in is resolved (`notify on` to undo).")
