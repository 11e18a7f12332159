"""Erasing a customer's personal data, on request (admins) or after the retention period.

One path for both: `erase_conversations` blanks the data (`storage.erasure`), records one
`erased` event per conversation (who, when, the reason, how many conversations went together;
never the erased data) and asks for every posted card to be refreshed, in the caller's unit of work.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot import codec
from bot.commands import Erase
from bot.domain import InvalidInput
from bot.policy import Context, Who, identify, require_admin
from bot.views import Action, Confirm, Result, answer_action, cut
from handlers._common import log_event, require_text
from storage import erasure
from storage.models import Conversation
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

ON_REQUEST = "request"
FIELD_NAMES = {
    "author_name": "author name",
    "author_handle": "handle",
    "author_url": "profile URL",
    "title": "title",
    "text": "text",
    "url": "link",
    "reply_url": "reply address",
}


def retention_why(days: int) -> str:
    """The reason (and card wording) of an erasure by the retention period."""
    return f"retention ({days} days)"


async def erase_conversations(
    uow: UnitOfWork, conversations: Sequence[Conversation], *, who: Who | None, reason: str, why: str
) -> erasure.Erased:
    """Erase these conversations' customer data, record it, and refresh their cards (not committed).

    The recorded reason is redacted too: an admin who names the customer in it does not keep them."""
    reason = erasure.redact(reason, sorted({w for c in conversations for w in erasure.needles(c)}, key=len, reverse=True))
    done = await erasure.erase(uow.session, conversations, at=uow.now(), why=why)
    for conversation_id in done.conversation_ids:
        data = {"reason": reason, "conversations": len(done.conversation_ids)}
        await log_event(uow, conversation_id, "erased", who=who, data=data)
    logger.info(
        "erased the customer data of %d conversation(s) (%s) by %s: %d replies, %d notes, %d events, %d deliveries redacted",
        len(done.conversation_ids),
        reason,
        who.name if who else "unsilo",
        done.replies,
        done.notes,
        done.events,
        done.deliveries,
    )
    return done


def _selector(cmd: Erase) -> erasure.Selector:
    given = [bool(cmd.author.strip()), bool(cmd.handle.strip()), bool(cmd.url.strip()), cmd.conversation_id is not None]
    if sum(given) != 1:
        raise InvalidInput("erase needs exactly one of --author NAME, --handle H, --url U or --conversation ID")
    return erasure.Selector(
        author=cmd.author.strip(), handle=cmd.handle.strip(), url=cmd.url.strip(), conversation_id=cmd.conversation_id
    )


def _listing(conversations: Sequence[Conversation]) -> list[str]:
    return [
        f"#{c.id} ({c.source}, {c.status}): {', '.join(FIELD_NAMES[f] for f in erasure.fields_held(c)) or 'nothing left'}"
        for c in conversations
    ]


def _erase_button(cmd: Erase, selector: erasure.Selector, reason: str, count: str) -> Action:
    """The danger button under a dry run: the same selector and reason, confirmed; asked once more before."""
    fields = {
        "author": selector.author,
        "handle": selector.handle,
        "url": selector.url,
        "conversation": str(selector.conversation_id or ""),
        "reason": reason,
    }
    question = f"This erases the customer data of {count} for good. Reason: {reason}"
    return answer_action(
        cmd,
        fields,
        label=f"Erase {count}",
        style="danger",
        confirm=Confirm(title="Erase customer data?", text=cut(question, 300), yes="Erase", no="Cancel"),
    )


async def handle_erase(cmd: Erase, uow: UnitOfWork, *, ctx: Context) -> Result:
    """List (dry run) or erase the customer data the selector names (admins)."""
    who = await identify(uow, cmd.actor)
    require_admin(who, ctx.admins, doing="erase customer data")
    selector = _selector(cmd)
    reason = require_text(cmd.reason, "The reason (--reason)")[:500]
    found = await erasure.find(uow.session, selector)
    voices = await erasure.find_voices(uow.session, selector)  # their posts merged into others' conversations
    if not found and not voices:
        return Result(f"Nothing to erase: no conversation with customer data left matches that {selector.describe()}")
    count = f"{len(found)} conversation{'s' if len(found) != 1 else ''}"
    if voices:
        count += f" and {len(voices)} voice{'s' if len(voices) != 1 else ''} in " + ", ".join(
            sorted({f"#{v.conversation_id}" for v in voices})
        )
    if cmd.dry_run:
        also = "their quotes in replies and notes, and their copies in the history and the outbox"
        lines = [f"Would erase the customer data of {count} ({also}):", *_listing(found)]
        actions: tuple[Action, ...] = ()
        if cmd.confirm:  # asked in chat: a button erases, and the typed line stays (a platform without buttons)
            button = _erase_button(cmd, selector, reason, count)
            actions = (button,) if codec.fits(button) else ()
            lines.append(f"To erase it, {'click Erase, or ' if actions else ''}type: {cmd.confirm}")
        return Result("\n".join(lines), actions=actions)
    done = await erase_conversations(uow, found, who=who, reason=reason, why=ON_REQUEST)
    heard_in = await erasure.erase_voices(uow.session, voices, at=uow.now())
    for conversation_id in heard_in:
        await log_event(uow, conversation_id, "voice_erased", who=who, data={"reason": "on request"})
    ids = ", ".join(f"#{i}" for i in [*done.conversation_ids, *heard_in])
    return Result(f"Erased the customer data of {count}: {ids}; their cards are being updated")
