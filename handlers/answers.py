"""The answer library: save a sent reply as an answer, find answers, and reuse a pre-approved one.

An answer is pre-approved when its reply was approved by a manager on a conversation that a
sensitive rule held (the rules are recorded with it). A reply whose text is exactly such an
answer's text (as stored: `_common.require_text`), on a conversation held by one of the same
rules, in a department with `reuse_approved_answers = true`, skips a second approval
(`reusable`); any edit, even of one character, needs approval again.
"""

from __future__ import annotations

import logging

from bot import policy
from bot.commands import MAX_LIST_LIMIT, SaveAnswer, SearchAnswers
from bot.domain import IllegalTransition, InvalidInput, check_limit
from bot.policy import Context, identify
from bot.search import described, parse
from bot.views import AnswerChoice, Result, cut, first_line
from handlers._common import card, load, log_event, require_text
from storage.models import Conversation, SavedAnswer
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

REACHED = ("sent", "posted")  # a reply that reached the customer can be saved
MAX_TITLE = 200
_QUOTES = "\"'\u201c\u201d\u2018\u2019"


async def held_by(uow: UnitOfWork, conversation: Conversation) -> list[str]:
    """The names of the enabled sensitive rules that hold this conversation (read from its routing reason)."""
    if not conversation.sensitive:
        return []
    matched = {part.partition(": ")[0].strip() for part in conversation.routing_reason.split("; ")}
    return sorted(r.name for r in await uow.rules.enabled() if r.sensitive and r.name in matched)


async def handle_save_answer(cmd: SaveAnswer, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Save the conversation's latest reply (sent or posted) under a title; the owner or a manager may."""
    who = await identify(uow, cmd.actor)
    title = require_text(cmd.title.strip().strip(_QUOTES), "An answer's title")
    if len(title) > MAX_TITLE:
        raise InvalidInput(f"An answer's title is at most {MAX_TITLE} characters (got {len(title):,})")
    conversation = await load(uow, cmd.conversation_id)
    departments = await uow.conversations.departments_of(cmd.conversation_id)
    owners = await uow.people.names([conversation.owner_id])
    policy.require(
        "save-answer", who=who, conversation=conversation, departments=departments, owner=owners.get(conversation.owner_id or 0)
    )
    reply = await uow.replies.latest(cmd.conversation_id)
    if reply is None or reply.status not in REACHED:
        raise IllegalTransition(f"#{cmd.conversation_id} has no reply that reached the customer (sent or posted) to save")
    approver = await uow.people.get(reply.decided_by_id) if reply.decided_by_id else None
    rules = await held_by(uow, conversation) if approver is not None else []
    pre_approved = (
        bool(rules) and approver is not None and policy.manages(policy.Who(approver, await _keys(uow, approver.id)), departments)
    )
    answer = await uow.answers.add(
        SavedAnswer(
            title=title,
            text=reply.text,
            saved_by_id=who.id,
            reply_id=reply.id,
            conversation_id=conversation.id,
            departments=[d.name for d in departments],
            pre_approved=pre_approved,
            approved_by_id=approver.id if pre_approved and approver else None,
            approved_rules=rules if pre_approved else [],
            created_at=uow.now(),
        )
    )
    data = {"answer_id": answer.id, "title": title, "pre_approved": pre_approved}
    await log_event(uow, conversation.id, "answer_saved", who=who, data=data)
    mark = f" (pre-approved by {approver.name} for {', '.join(rules)})" if pre_approved and approver else ""
    return Result(
        f"Saved the reply to #{conversation.id} as answer #{answer.id} “{title}”{mark}", card=await card(uow, conversation)
    )


async def _keys(uow: UnitOfWork, person_id: int | None) -> frozenset[str]:
    person = await uow.people.get(person_id) if person_id else None
    if person is None:
        return frozenset()
    return policy.keys_of(person, await uow.people.identities(person_id))  # type: ignore[arg-type]


def listed(answer: SavedAnswer, *, saver: str) -> str:
    """One answer as a line of a listing: id, title, first line, who saved it, pre-approved, uses."""
    mark = " ✓ pre-approved" if answer.pre_approved else ""
    uses = f"used {answer.uses} time{'s' if answer.uses != 1 else ''}"
    line = cut(first_line(answer.text), 100)
    return f"#{answer.id} “{cut(answer.title, 80)}” — {line} (saved by {saver or 'someone'}{mark}, {uses})"


async def handle_answers(cmd: SearchAnswers, uow: UnitOfWork, *, ctx: Context) -> Result:
    """The saved answers matching every word, most relevant first (the search's query syntax; its filters
    are about conversations, so only the words count here)."""
    limit = check_limit(cmd.limit, most=MAX_LIST_LIMIT)
    if cmd.conversation_id is not None:
        conversation = await load(uow, cmd.conversation_id)
        if conversation.erased_at is not None:
            fit = []
        elif cmd.answer_id is not None:  # the one picked in a reply form
            one = await uow.answers.get(cmd.answer_id)
            fit = [one] if one is not None else []
        else:
            fit = await uow.answers.fitting(cmd.conversation_id, limit=limit)
        found, total, asked = [(a, 0.0) for a in fit], len(fit), f"#{cmd.conversation_id}"
    else:
        query = parse(" ".join(cmd.words), now=uow.now())
        found, total = await uow.answers.search(query.terms, limit=limit)
        asked = described(query)
    if not found:
        return Result(f"No saved answers for {asked}")
    savers = await uow.people.names(a.saved_by_id for a, _ in found)
    lines = [listed(a, saver=savers.get(a.saved_by_id or 0, "")) for a, _ in found]
    more = f"\n…and {total - len(found)} more" if total > len(found) else ""
    head = f"{total} saved answer{'s' if total != 1 else ''} for {asked}:"
    offered = tuple(AnswerChoice(a.id, a.title, a.text) for a, _ in found if a.id is not None)
    return Result("\n".join([head, *lines]) + more, answers=offered)


async def reusable(
    uow: UnitOfWork, conversation: Conversation, text: str, *, ctx: Context, picked: SavedAnswer | None = None
) -> tuple[SavedAnswer, str] | None:
    """The pre-approved answer this reply reuses unchanged, and who approved it, when that lets it skip a
    second approval: every department of the conversation allows it (`reuse_approved_answers`), and every
    sensitive rule holding the conversation is one the answer was approved for. Else None.

    `picked`: the answer chosen in the reply form; then only that one counts, and only when the text is
    exactly its text (an edit of one character needs approval again)."""
    if not conversation.sensitive or not ctx.reuse_approved_answers:
        return None
    departments = [d.name for d in await uow.conversations.departments_of(conversation.id)]  # type: ignore[arg-type]
    if not departments or not set(departments) <= ctx.reuse_approved_answers:
        return None
    rules = set(await held_by(uow, conversation))
    if not rules:
        return None
    if picked is not None:
        candidates = [picked] if picked.pre_approved and picked.text == text else []
    else:
        candidates = await uow.answers.pre_approved_with_text(text)
    for answer in candidates:
        if rules <= set(answer.approved_rules):
            approver = await uow.people.get(answer.approved_by_id) if answer.approved_by_id else None
            return answer, approver.name if approver else ""
    return None
