"""Replies to the customer: held for approval when sensitive, then delivered or recorded.

A reply reaches the customer where the source allows it: a source with a reply endpoint
(the item's `reply_url`, else its source's) gets a signed POST through the outbox
(`adapters/outbound/`); a read-only source (a feed) gets the reply recorded, and the card
says where to post it by hand and offers "Mark as posted".

Writing a reply claims the conversation; it is `replied` only once a reply reached the
customer (`_common.reply_reached`): delivered by the outbox, or marked posted. A reply held
for approval, rejected, recorded but not posted, or failed leaves it `claimed`.

The reply form offers the saved answers that fit (`Conversation.answers`; Slack asks for them when its
modal is open): the one picked comes as `answer_id`. A typed text wins; a blank text sends the picked
answer's text. Only the picked answer, with its text unchanged to the character, can skip a second
approval (`handlers.answers.reusable`).
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta

from bot import policy
from bot.commands import MAX_LIST_LIMIT, ApproveReply, MarkPosted, RejectReply, ReplyToCustomer, ShowApprovals
from bot.domain import AlreadyDone, IllegalTransition, NotFound, Status, check_limit
from bot.policy import Context, identify
from bot.views import REPLY_STATES, Card, Result, reply_note
from handlers._common import card, load, log_event, reply_reached, require_text, transition
from handlers.answers import reusable
from storage.models import Conversation, Reply
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

OUTBOUND = "outbound"  # the outbox platform of reply deliveries
SAME_REPLY_WINDOW = timedelta(minutes=10)  # the same text by the same person within this is the same reply


async def reply_endpoint(uow: UnitOfWork, conversation: Conversation) -> str:
    """Where a reply to this conversation is POSTed: its own reply_url, else its source's; "" if read-only."""
    if conversation.reply_url:
        return conversation.reply_url
    source = await uow.sources.by_name(conversation.source)
    return source.reply_url if source is not None else ""


async def release_reply(uow: UnitOfWork, conversation: Conversation, reply: Reply, *, author: str) -> str:
    """Send an approved (or never held) reply on its way; returns the status it gets."""
    endpoint = await reply_endpoint(uow, conversation)
    if not endpoint or conversation.erased_at is not None:  # erased: nothing is sent to a forgotten customer
        return "recorded"
    await uow.deliveries.enqueue_many(
        [
            {
                "key": f"reply:{reply.id}",
                "platform": OUTBOUND,
                "kind": "reply",
                "conversation_id": conversation.id,
                "destination_id": None,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": uow.now(),
                "created_at": uow.now(),
                "payload": {
                    "reply_id": reply.id,
                    "url": endpoint,
                    "source": conversation.source,
                    "external_id": conversation.external_id,
                    "author": author,
                },
            }
        ]
    )
    return "sending"


async def handle_reply(cmd: ReplyToCustomer, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Record an answer credited to the actor; an unclaimed one is claimed by the replier if allowed."""
    who = await identify(uow, cmd.actor)
    picked = await uow.answers.get(cmd.answer_id) if cmd.answer_id is not None else None
    if cmd.answer_id is not None and picked is None:
        raise NotFound(f"saved answer #{cmd.answer_id} is gone; write the reply, or pick another answer")
    # A typed text wins over the answer picked; a blank one with an answer picked sends that answer's text.
    text = require_text(cmd.text if cmd.text.strip() or picked is None else picked.text, "A reply")
    conversation = await load(uow, cmd.conversation_id)
    if conversation.erased_at is not None:
        raise IllegalTransition(f"#{cmd.conversation_id}'s customer data was erased; there is nobody to reply to")
    if await uow.replies.with_status("pending_approval", conversation_ids=[cmd.conversation_id]):
        raise IllegalTransition(
            f"#{cmd.conversation_id} already has a reply waiting for approval; it must be approved or rejected first"
        )

    now = uow.now()

    async def refuse_a_repeat(exclude: int | None = None) -> None:
        """A retried or replayed reply command (the same text by the same person, just now) sends nothing."""
        earlier = await uow.replies.same_since(
            cmd.conversation_id, author_id=who.id, text=text, since=now - SAME_REPLY_WINDOW, exclude=exclude
        )
        if earlier is not None:
            logger.info(
                "reply to #%s by %s not sent again: the same as their reply of %s",
                cmd.conversation_id,
                who.name,
                f"{earlier.created_at:%H:%M:%S} UTC",
            )
            raise AlreadyDone(
                f"You already replied this to #{cmd.conversation_id} at {earlier.created_at:%H:%M} UTC "
                f"({REPLY_STATES.get(earlier.status, earlier.status)}); it was not sent again"
            )

    await refuse_a_repeat()  # the common case, before anything is written

    def check(conversation: Conversation) -> None:
        if conversation.status == Status.OPEN and ctx.require_claim_to_reply:
            raise IllegalTransition(
                f"#{conversation.id} is not claimed yet; claim it first (`claim {conversation.id}`), then reply"
            )

    reused = await reusable(
        uow, conversation, text, ctx=ctx, picked=picked
    )  # a pre-approved answer, unchanged: no second approval
    held = conversation.sensitive and reused is None
    reply = uow.replies.add(
        Reply(
            conversation_id=cmd.conversation_id,
            author_id=who.id,
            text=text,
            status="pending_approval" if held else "recorded",
            created_at=now,
        )
    )
    await uow.session.flush()
    conversation = await transition(
        uow,
        cmd.conversation_id,
        "reply",
        who=who,
        check=check,
        recheck=lambda: refuse_a_repeat(exclude=reply.id),
        values=lambda c: {
            "owner_id": c.owner_id or who.id,
            "claimed_at": c.claimed_at or now,
            "reply_written_at": c.reply_written_at or now,
        },
        data={"reply_id": reply.id, **({"answer_id": picked.id} if picked is not None else {})},
    )
    await uow.answers.count_uses(text)
    if held:
        await log_event(uow, conversation.id, "approval_requested", who=who, data={"reply_id": reply.id})
        message = (
            f"Reply to #{cmd.conversation_id} is waiting for approval by a manager of its department "
            "(sensitive conversation); it is not sent until approved"
        )
    else:
        if reused is not None:
            answer, approver = reused
            data = {"reply_id": reply.id, "answer_id": answer.id, "approved_by": approver}
            await log_event(uow, conversation.id, "approval_skipped", who=who, data=data)
            logger.info("reply to #%s reused pre-approved answer #%s (approved by %s)", conversation.id, answer.id, approver)
        reply.status = await release_reply(uow, conversation, reply, author=who.name)
        message = _released_message(cmd.conversation_id, reply.status, conversation.url)
        if reused is not None:
            message += f" (reused pre-approved answer #{reused[0].id}, approved by {reused[1]}: no second approval)"
    return Result(message, card=await card(uow, conversation))


def _released_message(conversation_id: int, status: str, url: str) -> str:
    if status == "sending":
        return f"Reply to #{conversation_id} is on its way to the customer"
    where = f" at {url}" if url else " where the customer wrote"
    return (
        f"Reply to #{conversation_id} recorded; this source is read-only, so post it{where}, "
        f"then mark it as posted (`posted {conversation_id}`)"
    )


async def _held_reply(uow: UnitOfWork, conversation_id: int) -> Reply:
    held = await uow.replies.with_status("pending_approval", conversation_ids=[conversation_id])
    if not held:
        raise NotFound(f"#{conversation_id} has no reply waiting for approval")
    return held[-1]


async def handle_approve(cmd: ApproveReply, uow: UnitOfWork, *, ctx: Context) -> Result:
    """An approver lets the held reply go out; exactly once, even if two approvers click."""
    who = await identify(uow, cmd.actor)
    conversation = await load(uow, cmd.conversation_id)
    reply = await _held_reply(uow, cmd.conversation_id)
    policy.require_approver(
        who,
        conversation=conversation,
        reply_author_id=reply.author_id,
        departments=await uow.conversations.departments_of(cmd.conversation_id),
    )
    now = uow.now()
    if not await uow.replies.decide(reply, expected="pending_approval", status="approved", decided_by_id=who.id, decided_at=now):
        raise IllegalTransition(f"the reply to #{cmd.conversation_id} was decided by someone else meanwhile")
    author = await uow.people.get(reply.author_id) if reply.author_id else None
    status = await release_reply(uow, conversation, reply, author=author.name if author else "")
    await uow.replies.decide(reply, expected="approved", status=status)
    await log_event(uow, conversation.id, "reply_approved", who=who, data={"reply_id": reply.id}, touch=True)
    return Result(
        f"Approved the reply to #{cmd.conversation_id}. " + _released_message(cmd.conversation_id, status, conversation.url),
        card=await card(uow, conversation),
    )


async def handle_reject(cmd: RejectReply, uow: UnitOfWork, *, ctx: Context) -> Result:
    """An approver stops the held reply for good; it is never sent."""
    who = await identify(uow, cmd.actor)
    reason = require_text(cmd.reason, "A reason for rejecting")
    conversation = await load(uow, cmd.conversation_id)
    reply = await _held_reply(uow, cmd.conversation_id)
    policy.require_approver(
        who,
        conversation=conversation,
        reply_author_id=reply.author_id,
        departments=await uow.conversations.departments_of(cmd.conversation_id),
    )
    if not await uow.replies.decide(
        reply,
        expected="pending_approval",
        status="rejected",
        decided_by_id=who.id,
        decided_at=uow.now(),
        decision_reason=reason[:2048],
    ):
        raise IllegalTransition(f"the reply to #{cmd.conversation_id} was decided by someone else meanwhile")
    await log_event(uow, conversation.id, "reply_rejected", who=who, data={"reply_id": reply.id, "reason": reason}, touch=True)
    still = (
        ""
        if conversation.status == Status.REPLIED
        else f"; #{cmd.conversation_id} is still {conversation.status}, waiting for a reply"
    )
    return Result(f"Rejected the reply to #{cmd.conversation_id}; it will not be sent{still}", card=await card(uow, conversation))


async def handle_mark_posted(cmd: MarkPosted, uow: UnitOfWork, *, ctx: Context) -> Result:
    """The replier (or a manager) says the recorded reply was posted on the read-only source."""
    who = await identify(uow, cmd.actor)
    conversation = await load(uow, cmd.conversation_id)
    recorded = await uow.replies.with_status("recorded", conversation_ids=[cmd.conversation_id])
    if not recorded:
        raise NotFound(f"#{cmd.conversation_id} has no recorded reply waiting to be posted")
    reply = recorded[-1]
    policy.require_poster(
        who,
        conversation=conversation,
        reply_author_id=reply.author_id,
        departments=await uow.conversations.departments_of(cmd.conversation_id),
    )
    if not await uow.replies.decide(reply, expected="recorded", status="posted", sent_at=uow.now()):
        raise AlreadyDone(f"the reply to #{cmd.conversation_id} was marked as posted meanwhile")
    await reply_reached(uow, cmd.conversation_id, at=uow.now())
    await log_event(uow, conversation.id, "reply_posted", who=who, data={"reply_id": reply.id}, touch=True)
    return Result(f"Marked the reply to #{cmd.conversation_id} as posted", card=await card(uow, conversation))


async def handle_approvals(cmd: ShowApprovals, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Replies waiting for the caller's approval (in the departments they manage), oldest first: the
    first `cmd.limit` as cards showing the waiting text, and how many more there are."""
    who = await identify(uow, cmd.actor)
    limit = check_limit(cmd.limit, most=MAX_LIST_LIMIT)
    cards: list[Card] = []
    waiting = 0
    for reply in await uow.replies.with_status("pending_approval"):
        departments = await uow.conversations.departments_of(reply.conversation_id)
        if not policy.may_approve(who, departments=departments, reply_author_id=reply.author_id):
            continue
        waiting += 1
        if len(cards) < limit:
            conversation = await load(uow, reply.conversation_id)
            author = await uow.people.get(reply.author_id) if reply.author_id else None
            shown = await card(uow, conversation)
            note = reply_note(reply, conversation.url, author=author.name if author else "")
            cards.append(dataclasses.replace(shown, reply_note=note))  # who wrote the text waiting
    if not cards:
        return Result("No replies are waiting for your approval")
    return Result(
        f"{waiting} repl{'y is' if waiting == 1 else 'ies are'} waiting for your approval",
        cards=tuple(cards),
        more=waiting - len(cards),
    )
