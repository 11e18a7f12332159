"""The Teams activity handler: activities in, core commands out, Adaptive Cards back.

It only translates. Card buttons arrive as `adaptiveCard/action` invokes (Universal
Actions) and are answered in the HTTP response with the refreshed card; @mention text
goes through the same command language as Slack's `/unsilo`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from botbuilder.core import CardFactory, MessageFactory, TurnContext
from botbuilder.core.teams import TeamsActivityHandler
from botbuilder.schema import Activity, AdaptiveCardInvokeResponse, InvokeResponse
from botbuilder.schema.teams import (
    MessagingExtensionAction,
    MessagingExtensionActionResponse,
    MessagingExtensionResult,
)

from adapters.teams import render
from bot import codec
from bot import commands as c
from bot.bus import Bus
from bot.domain import DomainError, InvalidInput
from bot.ingest import html_to_text
from bot.textcommands import HelpRequest, help_text, parse
from bot.views import Result

logger = logging.getLogger(__name__)

PREFIX = "@Unsilo"
SORRY = "Sorry, that failed on our side (it is logged). Please try again in a moment."
_MESSAGE_ID = re.compile(r";messageid=(\d+)$")


def actor_of(activity: Activity) -> c.Actor:
    """The core's actor for the Teams user behind an activity (AAD object id when known)."""
    sender = activity.from_property
    user_id = getattr(sender, "aad_object_id", None) or sender.id
    return c.Actor(platform="teams", user_id=user_id, name=sender.name or None)


def channel_of(activity: Activity) -> str:
    """The Teams channel id (or chat id) an activity belongs to, without any thread suffix."""
    data = activity.channel_data or {}
    channel = (data.get("channel") or {}).get("id") or data.get("teamsChannelId")
    return channel or _MESSAGE_ID.sub("", activity.conversation.id)


def thread_root(activity: Activity) -> str | None:
    """The id of the post a channel reply belongs to (a card's, maybe); None for a new post."""
    found = _MESSAGE_ID.search(activity.conversation.id or "")
    if found is None or found.group(1) == activity.id:
        return None  # a new channel post carries its own id as the thread id
    return found.group(1)


def refusal_text(exc: DomainError) -> str:
    """A refusal in words (Teams shows the winner of a claim race by name)."""
    return exc.message


class UnsiloTeamsBot(TeamsActivityHandler):
    """Translates Teams activities to bus commands and core views to Adaptive Cards."""

    def __init__(self, *, bus: Bus, outcomes: tuple[str, ...]) -> None:
        super().__init__()
        self.bus = bus
        self.outcomes = outcomes

    # Messages ------------------------------------------------------------------------

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        """@mention commands, Action.Submit data, and notes from a card's thread."""
        activity = turn_context.activity
        if activity.value and not (activity.text or "").strip():
            await self._reply_card(turn_context, await self._run_action(activity.value, activity))
            return
        mentions = _mention_texts(activity)
        text = render.strip_mentions(activity.text or "", mentions)
        root = thread_root(activity)
        if root and not mentions:
            note = c.ThreadNote(actor_of(activity), channel_id=channel_of(activity), message_id=root, text=text)
            await self._quietly(note, once=activity.id)
            return
        await self._reply_card(turn_context, await self._run_text(text, activity))

    async def _run_text(self, text: str, activity: Activity) -> dict[str, Any]:
        reference = TurnContext.get_conversation_reference(activity).serialize()
        try:
            parsed = parse(text, actor_of(activity), channel_id=channel_of(activity), prefix=PREFIX,
                           conversation_ref=reference)
        except InvalidInput as exc:
            return render.text_card(f"{exc.message}\n\n{help_text(PREFIX)}")
        if isinstance(parsed, HelpRequest):
            return render.text_card(help_text(PREFIX))
        return await self._answer(parsed)

    async def _answer(self, command: c.Command) -> dict[str, Any]:
        try:
            result = await self.bus.handle(command)
        except DomainError as exc:
            return render.text_card(refusal_text(exc))
        except Exception:
            logger.exception("Teams command %s failed", type(command).__name__)
            return render.text_card(SORRY)
        return render.result_card(result or Result(""), outcomes=self.outcomes)

    async def _quietly(self, command: c.Command, *, once: str | None) -> None:
        try:
            await self.bus.handle(command, once=once)
        except DomainError as exc:
            logger.info("Teams %s not applied: %s", type(command).__name__, exc.message)

    async def _reply_card(self, turn_context: TurnContext, card_json: dict[str, Any]) -> None:
        await turn_context.send_activity(MessageFactory.attachment(CardFactory.adaptive_card(card_json)))

    # Card actions -------------------------------------------------------------------

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        """Universal Actions answered in the HTTP response (see PLATFORM_NOTES: no SDK serializer)."""
        activity = turn_context.activity
        if activity.name == "adaptiveCard/action":
            body = await self.card_action(activity)
            # A model, not a dict: CloudAdapter.process serializes the body itself (4.17.1).
            return InvokeResponse(status=200, body=AdaptiveCardInvokeResponse(
                status_code=body["statusCode"], type=body["type"], value=body["value"]))
        if activity.name == "composeExtension/submitAction":
            action = MessagingExtensionAction().deserialize(activity.value or {})
            return InvokeResponse(status=200, body=await self.on_teams_messaging_extension_submit_action(turn_context, action))
        return await super().on_invoke_activity(turn_context)

    async def card_action(self, activity: Activity) -> dict[str, Any]:
        """An `adaptiveCard/action` invoke's whole answer: the refreshed card as an invoke body.

        Needs no TurnContext and no connector client, so the service can answer it in the
        HTTP response without `CloudAdapter.process` (see `adapters/teams/service.py`).
        """
        action = (activity.value or {}).get("action") or {}
        data = {**(action.get("data") or {}), "cmd": action.get("verb") or (action.get("data") or {}).get("cmd")}
        return render.refreshed_invoke_body(await self._run_action(data, activity))

    async def _run_action(self, data: dict[str, Any], activity: Activity) -> dict[str, Any]:
        """A card button (Action.Execute or Action.Submit data) -> the refreshed card, with any refusal on top."""
        actor = actor_of(activity)
        try:
            verb, conversation_id = codec.decode(data)
        except InvalidInput as exc:
            return render.text_card(exc.message)
        command = codec.direct_command(verb, conversation_id, actor) or _input_command(verb, conversation_id, actor, data)
        notice = None
        if command is not None:
            try:
                done = await self.bus.handle(command)
                if done is not None and done.card is not None:
                    return render.result_card(Result("", card=done.card), outcomes=self.outcomes)
            except DomainError as exc:
                notice = refusal_text(exc)
            except Exception:
                logger.exception("Teams card action %s failed", verb)
                notice = SORRY
        try:
            shown = await self.bus.handle(c.Show(conversation_id, actor))
        except DomainError as exc:
            return render.text_card(exc.message)
        result = Result(notice or "", card=shown.card if shown else None)
        return render.result_card(result, outcomes=self.outcomes)

    # Message action: "Send to Unsilo" -----------------------------------------------

    async def on_teams_messaging_extension_submit_action(
        self, turn_context: TurnContext, action: MessagingExtensionAction
    ) -> MessagingExtensionActionResponse:
        """A message sent in with the message action becomes a `teams-report` conversation."""
        payload = action.message_payload
        data = action.data or {}
        body = getattr(getattr(payload, "body", None), "content", "") or ""
        text = html_to_text(body)
        author = getattr(getattr(getattr(payload, "from_property", None), "user", None), "display_name", "") or ""
        command = c.Report(actor_of(turn_context.activity), text, link=(data.get("link") or getattr(payload, "link_to_message", "") or "").strip(),
                           department=(data.get("department") or "").strip().lower() or None, author=author,
                           external_id=f"teams:{getattr(payload, 'id', '')}" if getattr(payload, "id", None) else "")
        try:
            result = await self.bus.handle(command)
            message = result.text if result else "Already sent in"
        except DomainError as exc:
            message = exc.message
        return MessagingExtensionActionResponse(compose_extension=MessagingExtensionResult(type="message", text=message))


def _mention_texts(activity: Activity) -> list[str]:
    texts = []
    for entity in activity.entities or []:
        props = entity.serialize() if hasattr(entity, "serialize") else dict(entity)
        if props.get("type") == "mention" and props.get("text"):
            texts.append(props["text"])
    return texts


def _input_command(verb: str, conversation_id: int, actor: c.Actor, data: dict[str, Any]) -> c.Command | None:
    text = str(data.get("text") or "")
    if verb == "reply":
        return c.ReplyToCustomer(conversation_id, actor, text)
    if verb == "note":
        return c.AddNote(conversation_id, actor, text, origin="teams")
    if verb == "dismiss":
        return c.Dismiss(conversation_id, actor, text)
    if verb == "reject":
        return c.RejectReply(conversation_id, actor, text)
    if verb == "resolve":
        return c.Resolve(conversation_id, actor, str(data.get("outcome") or ""), text)
    return None
