"""Internal notes: discussion that never reaches the customer."""

from __future__ import annotations

import logging

from bot.commands import AddNote, ThreadNote
from bot.policy import Context, identify
from bot.views import Result
from handlers._common import card, load, require_text, transition
from storage.models import Note
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)


async def handle_note(cmd: AddNote, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Store a note on the conversation and log it (the event points at the note)."""
    who = await identify(uow, cmd.actor)
    text = require_text(cmd.text, "A note")
    await load(uow, cmd.conversation_id)
    note = uow.notes.add(Note(conversation_id=cmd.conversation_id, author_id=who.id, text=text, at=uow.now(), origin=cmd.origin))
    await uow.session.flush()
    conversation = await transition(uow, cmd.conversation_id, "note", who=who, data={"note_id": note.id, "origin": cmd.origin})
    return Result(f"Note added to #{cmd.conversation_id}", card=await card(uow, conversation))


async def handle_thread_note(cmd: ThreadNote, uow: UnitOfWork, *, ctx: Context) -> Result:
    """A message in a card's thread becomes a note; other threads are none of our business."""
    posting = await uow.postings.by_message(cmd.actor.platform, cmd.channel_id, cmd.message_id)
    if posting is None:
        return Result("")
    return await handle_note(
        AddNote(posting.conversation_id, cmd.actor, cmd.text, origin=f"{cmd.actor.platform}-thread"), uow, ctx=ctx
    )
