"""The message bus: one table from command type to handler, one transaction per command."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bot import commands as c
from bot import verbs
from bot.domain import DomainError
from bot.outbox import commit_with_deliveries
from bot.policy import Context
from bot.views import Card, Result
from handlers._common import card
from handlers.answers import handle_answers, handle_save_answer
from handlers.ask import handle_ask
from handlers.claim import handle_claim, handle_reassign, handle_release
from handlers.closing import handle_set_notify
from handlers.digest import handle_digest, handle_stats
from handlers.erase import handle_erase
from handlers.expertise import handle_declare_expertise, handle_show_expertise, handle_who_knows
from handlers.link import handle_budget, handle_link, handle_unlink
from handlers.note import handle_note, handle_thread_note
from handlers.posting import handle_locate_card
from handlers.queue import handle_queue, handle_recent, handle_show
from handlers.reply import handle_approvals, handle_approve, handle_mark_posted, handle_reject, handle_reply
from handlers.report import handle_report
from handlers.reroute import handle_reroute
from handlers.resolve import handle_dismiss, handle_resolve
from handlers.search import handle_search
from handlers.sources import handle_add_source, handle_remove_source, handle_rotate_secret, handle_set_retention
from handlers.spike import handle_spike
from handlers.voices import handle_merge, handle_split
from storage.uow import UnitOfWork

if TYPE_CHECKING:
    from bot.metrics import Metrics

logger = logging.getLogger(__name__)

HANDLERS: dict[type, Callable[..., Awaitable[Result]]] = {
    c.Claim: handle_claim,
    c.Release: handle_release,
    c.Reassign: handle_reassign,
    c.Reroute: handle_reroute,
    c.SetNotify: handle_set_notify,
    c.AddNote: handle_note,
    c.Ask: handle_ask,
    c.ReplyToCustomer: handle_reply,
    c.Resolve: handle_resolve,
    c.Dismiss: handle_dismiss,
    c.Merge: handle_merge,
    c.Split: handle_split,
    c.ShowQueue: handle_queue,
    c.Show: handle_show,
    c.Search: handle_search,
    c.ShowSpike: handle_spike,
    c.Report: handle_report,
    c.ShowRecent: handle_recent,
    c.ThreadNote: handle_thread_note,
    c.LocateCard: handle_locate_card,
    c.LinkChannel: handle_link,
    c.ChannelBudget: handle_budget,
    c.UnlinkChannel: handle_unlink,
    c.ShowDigest: handle_digest,
    c.ShowStats: handle_stats,
    c.ApproveReply: handle_approve,
    c.RejectReply: handle_reject,
    c.MarkPosted: handle_mark_posted,
    c.ShowApprovals: handle_approvals,
    c.AddSource: handle_add_source,
    c.RemoveSource: handle_remove_source,
    c.RotateSecret: handle_rotate_secret,
    c.SetRetention: handle_set_retention,
    c.Erase: handle_erase,
    c.DeclareExpertise: handle_declare_expertise,
    c.ShowExpertise: handle_show_expertise,
    c.WhoKnows: handle_who_knows,
    c.SaveAnswer: handle_save_answer,
    c.SearchAnswers: handle_answers,
}


class Bus:
    """Runs a command's handler in a unit of work and commits its state, events and deliveries together."""

    def __init__(self, uow_factory: Callable[[], UnitOfWork], *, ctx: Context, metrics: Metrics | None = None) -> None:
        self.uow_factory = uow_factory
        self.ctx = ctx
        self.metrics = metrics  # counts each command by verb and outcome

    async def handle(self, cmd: c.Command, *, show: bool = False) -> Result:
        """Carry out one command; a `DomainError` means nothing was changed.

        `show`: a refused command on a conversation carries the conversation's card as it stands
        (`DomainError.card`, what `Show` would show), read in the same unit of work, after the
        refused change is rolled back: a refused click is answered without a second one.
        """
        result = await self._run(cmd, event_id=None, show=show)
        assert result is not None  # None only for an event seen before
        return result

    async def handle_once(self, cmd: c.Command, *, event_id: str, show: bool = False) -> Result | None:
        """`handle` a command a platform may deliver more than once (an event, an activity): a retried
        delivery of the same `event_id` is recognised in the same transaction and does nothing (None)."""
        return await self._run(cmd, event_id=event_id, show=show)

    async def _run(self, cmd: c.Command, *, event_id: str | None, show: bool) -> Result | None:
        if self.metrics is None:
            return await self._carry_out(cmd, event_id=event_id, show=show)
        outcome = "error"
        try:
            result = await self._carry_out(cmd, event_id=event_id, show=show)
            outcome = "ok" if result is not None else "duplicate"
            for source, new, duplicate in result.ingested if result is not None else ():
                self.metrics.ingested(source, new=new, duplicate=duplicate)  # as a feed's or a webhook's items are
            return result
        except DomainError:
            outcome = "refused"
            raise
        finally:
            self.metrics.command(verbs.name_of(cmd), outcome)

    async def _carry_out(self, cmd: c.Command, *, event_id: str | None, show: bool) -> Result | None:
        handler = HANDLERS[type(cmd)]
        async with self.uow_factory() as uow:
            if event_id is not None and not await uow.inbound.first_time(cmd.actor.platform, event_id, at=uow.now()):
                logger.info("ignoring %s %s: already processed", type(cmd).__name__, event_id)
                return None
            try:
                result = await handler(cmd, uow, ctx=self.ctx)
            except DomainError as exc:
                logger.info("refused %s by %s: %s", type(cmd).__name__, cmd.actor.user_id, exc.message)
                conversation_id = getattr(cmd, "conversation_id", None)
                if show and isinstance(conversation_id, int):
                    exc.card = await self._current_card(uow, conversation_id)
                raise
            await commit_with_deliveries(uow)
            return result

    async def _current_card(self, uow: UnitOfWork, conversation_id: int) -> Card | None:
        """The conversation's card as committed (None if there is none, or the store fails to tell).

        A refused command that only read (a claim lost to someone else) has read the conversation as
        committed: its card is made from those rows, with no second read.
        """
        try:
            conversation = None if uow.wrote else uow.conversations.loaded(conversation_id)
            if conversation is not None:
                return await card(uow, conversation)
            await uow.rollback()  # nothing of the refused change is shown
            conversation = await uow.conversations.get(conversation_id)
            return await card(uow, conversation) if conversation is not None else None
        except Exception:  # noqa: BLE001 - the refusal stands; only the card that comes with it is lost
            logger.exception("the card of #%s could not be read after a refusal", conversation_id)
            return None
