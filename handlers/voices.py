"""`merge #12 into #9` and `split`: voices by hand (`bot.voices` makes them at ingest).

Merging closes #12 as another voice of #9 (its own item, and its voices, move to #9; its history stays
on #12, and `split #12` opens it again). Splitting takes a voice out of a conversation: one merged by
hand becomes its old conversation again, one merged at ingest becomes a new conversation, routed as
that item would have been. Both are logged on every conversation they touch, and refresh their cards.
"""

from __future__ import annotations

from bot import policy
from bot.commands import Merge, Split
from bot.domain import ACTIVE, InvalidInput, NotFound
from bot.ingest import Incoming, make_incoming, store_items
from bot.policy import Context, identify
from bot.routing import Router
from bot.views import Result
from bot.voices import Print, voice_row
from handlers._common import card, load, log_event, owner_name, transition
from storage.erasure import TOMBSTONE
from storage.models import Conversation, Voice
from storage.uow import UnitOfWork


def _item_of(conversation: Conversation) -> Incoming:
    return Incoming(
        source=conversation.source,
        external_id=conversation.external_id,
        text=conversation.text,
        title=conversation.title,
        author_name=conversation.author_name,
        author_handle=conversation.author_handle,
        author_url=conversation.author_url,
        url=conversation.url,
        created_at=conversation.created_at,
        channel=conversation.channel,
        reply_url=conversation.reply_url,
        tags=tuple(conversation.tags),
    )


async def handle_merge(cmd: Merge, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Close #id as another voice of #into (owners and managers of both)."""
    if not cmd.into:
        raise InvalidInput("merge needs the conversation to merge into: `merge #12 into #9`")
    if cmd.into == cmd.conversation_id:
        raise InvalidInput(f"#{cmd.into} cannot be merged into itself")
    who = await identify(uow, cmd.actor)
    target = await load(uow, cmd.into)
    if target.status not in ACTIVE or target.erased_at is not None:
        raise InvalidInput(f"#{cmd.into} is {target.status}: merge into an open conversation")
    departments = await uow.conversations.departments_of(cmd.into)
    policy.require("merge", who=who, conversation=target, departments=departments, owner=await owner_name(uow, target))
    now = uow.now()

    async def hold_target() -> None:
        # Compare-and-set the target too: a resolve of it at the same moment (another replica) wins or loses
        # whole, never leaving #12 merged into a closed one. Rows are taken in id order (no deadlock between
        # `merge #12 into #9` and `merge #9 into #12`: the second is refused as changed meanwhile).
        if not await uow.conversations.compare_and_set(target, updated_at=now):
            raise InvalidInput(f"#{cmd.into} changed meanwhile; try again")

    if cmd.into < cmd.conversation_id:
        await hold_target()
    merged = await transition(
        uow, cmd.conversation_id, "merge", who=who, values=lambda c: {"resolved_at": now}, data={"into": cmd.into}
    )
    if cmd.into > cmd.conversation_id:
        await hold_target()
    if merged.erased_at is not None:
        raise InvalidInput(f"#{cmd.conversation_id} was erased: nothing of it to merge")
    moved = await uow.voices.move_voices(cmd.conversation_id, cmd.into)
    await uow.voices.move_keys(cmd.conversation_id, cmd.into)
    row = voice_row(_item_of(merged), cmd.into, how="merge", score=1.0, now=now, origin=cmd.conversation_id)
    await uow.voices.insert(row)
    await uow.voices.recount({cmd.into: moved + 1, cmd.conversation_id: -moved}, now=now)
    await log_event(uow, cmd.into, "merged_in", who=who, data={"from": cmd.conversation_id, "voices": moved + 1})
    uow.mark_changed(cmd.conversation_id)
    shown = await card(uow, await load(uow, cmd.into))
    return Result(f"#{cmd.conversation_id} is now a voice of #{cmd.into} ({1 + shown.voice_count} voices)", card=shown)


async def handle_split(cmd: Split, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Take a voice out into its own conversation (owners and managers of the one holding it)."""
    who = await identify(uow, cmd.actor)
    voice, holder = await _voice(uow, cmd)
    if voice.external_id.startswith(TOMBSTONE):
        raise InvalidInput(f"that voice of #{holder} was erased on request: there is nothing to split out")
    now = uow.now()
    await transition(uow, holder, "split", who=who, data={"voice": voice.id, "source": voice.source})
    await uow.voices.remove(voice.id)  # type: ignore[arg-type]
    await uow.voices.recount({holder: -1}, now=now)
    if voice.origin_id is not None:
        again = await load(uow, voice.origin_id)
        if not await uow.conversations.compare_and_set(again, status="open", resolved_at=None, updated_at=now):
            raise InvalidInput(f"#{voice.origin_id} changed meanwhile; try again")
        await log_event(uow, again.id, "split", who=who, data={"from": holder})
        new_id = voice.origin_id
    else:
        item = make_incoming(
            source=voice.source,
            external_id=voice.external_id,
            text=voice.text,
            title=voice.title,
            author_name=voice.author_name,
            author_handle=voice.author_handle,
            author_url=voice.author_url,
            url=voice.url,
            created_at=voice.created_at,
            channel=str(voice.data.get("channel") or ""),
            reply_url=str(voice.data.get("reply_url") or ""),
            tags=tuple(str(t) for t in voice.data.get("tags") or ()),
        )
        router = Router(await uow.rules.enabled(), default_department=ctx.default_department)
        report = await store_items(uow, [item], router=router, actor_id=who.id, actor_name=who.name, matching=None)
        if not report.new_ids:
            raise InvalidInput(f"that voice is already #{await uow.conversations.id_for(voice.source, voice.external_id)}")
        new_id = report.new_ids[0]
        await log_event(uow, new_id, "split", who=who, data={"from": holder})
    # The keys that would find the split item (its link, its text's bands) find it again, not its old holder:
    # else the next repost of it would join the conversation it was just taken out of.
    for key in Print.of(voice.url, voice.title, voice.text).keys:
        if not await uow.voices.take_over(key, holder, new_id, now):
            await uow.voices.claim([(key, new_id, now)])
    return Result(f"Split out of #{holder}: it is #{new_id} again", card=await card(uow, await load(uow, new_id)))


async def _voice(uow: UnitOfWork, cmd: Split) -> tuple[Voice, int]:
    """The voice `split` names, and the conversation holding it."""
    merged = await uow.voices.merged_from(cmd.conversation_id)
    if merged is not None and not cmd.voice:
        return merged, merged.conversation_id
    voices = await uow.voices.of(cmd.conversation_id)
    if not voices:
        raise NotFound(f"#{cmd.conversation_id} has no other voice to split out")
    if not cmd.voice and len(voices) > 1:
        raise InvalidInput(f"#{cmd.conversation_id} has {len(voices)} other voices: which one? `split #{cmd.conversation_id} 2`")
    index = (cmd.voice or 1) - 1
    if not 0 <= index < len(voices):
        raise InvalidInput(
            f"#{cmd.conversation_id} has {len(voices)} other voice{'s' if len(voices) != 1 else ''}, not {cmd.voice}"
        )
    return voices[index], cmd.conversation_id
