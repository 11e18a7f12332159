"""The Teams activity handler: activities in, core commands out, Adaptive Cards back.

It only translates. Card buttons arrive as `adaptiveCard/action` invokes (Universal
Actions) and are answered in the HTTP response with the refreshed card (clicked on an older
copy of a card posted twice, with a short card that links to the live one); a message that
@mentions the bot goes through the same command language as Slack's `/unsilo`, wherever it
is posted; a mention-free reply in a card's thread is an internal note.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botbuilder.core import BotAdapter, CardFactory, MessageFactory, TurnContext
from botbuilder.core.teams import TeamsActivityHandler, TeamsInfo
from botbuilder.schema import Activity, ActivityTypes, AdaptiveCardInvokeResponse, InvokeResponse
from botbuilder.schema.teams import MessagingExtensionActionResponse, TaskModuleMessageResponse

from adapters.teams import render
from bot import codec
from bot import commands as c
from bot.bus import Bus
from bot.domain import DomainError, InvalidInput
from bot.edge import SORRY, Done, Failed, Refused, attempt
from bot.ingest import html_to_text
from bot.textcommands import HelpRequest, help_text, parse
from bot.views import CardCopy, Result, display_name, has_visible

logger = logging.getLogger(__name__)
LIVE_COPIES_KEPT = 10_000  # posted cards whose live copy a click need not look up again

PREFIX = "@Unsilo"
FOREIGN_TENANT = "This Unsilo serves another organisation; ask your Teams admin which app to use."
_MESSAGE_ID = re.compile(r";messageid=(\d+)$")

MEMBER_TTL = 6 * 3600.0  # seconds a member's email is trusted before it is read again
MISS_TTL = 600.0  # seconds before a failed look-up is tried again
LOOKUP_TIMEOUT = 2.0  # seconds a member look-up may hold a command up


def actor_of(activity: Activity, *, email: str | None = None) -> c.Actor:
    """The core's actor for the Teams user behind an activity (AAD object id when known).

    The display name loses bidi controls and invisible characters; a name with nothing
    visible left is no name (the core then names the person by their id until Teams tells more).
    """
    sender = activity.from_property
    user_id = getattr(sender, "aad_object_id", None) or sender.id
    name = display_name(sender.name) if has_visible(sender.name) else None
    return c.Actor(platform="teams", user_id=user_id, name=name, email=email)


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


def tenant_of(activity: Activity) -> str | None:
    """The tenant an activity comes from (`channelData.tenant.id`, else `conversation.tenantId`)."""
    data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    tenant = (data.get("tenant") or {}).get("id") or getattr(activity.conversation, "tenant_id", None)
    return str(tenant).lower() if tenant else None


def is_personal(activity: Activity) -> bool:
    """A 1:1 chat with the bot: everything written there is addressed to it."""
    return getattr(activity.conversation, "conversation_type", None) == "personal"


@dataclass(frozen=True)
class Mention:
    """One `mention` entity: its markup in the text and who it names."""

    markup: str
    user_id: str
    name: str


def mentions_of(activity: Activity) -> list[Mention]:
    """The activity's mention entities. botbuilder keeps only an entity's `type`: its `text` and
    `mentioned` are in `additional_properties` (`entity.serialize()` drops them)."""
    found = []
    for entity in activity.entities or []:
        props = (
            {**(getattr(entity, "additional_properties", None) or {}), "type": getattr(entity, "type", None)}
            if not isinstance(entity, dict)
            else entity
        )
        if props.get("type") != "mention":
            continue
        mentioned = props.get("mentioned") or {}
        if not isinstance(mentioned, dict):
            mentioned = {"id": getattr(mentioned, "id", ""), "name": getattr(mentioned, "name", "")}
        name = str(mentioned.get("name") or "")
        markup = str(props.get("text") or (f"<at>{name}</at>" if name else ""))
        found.append(Mention(markup=markup, user_id=str(mentioned.get("id") or ""), name=name))
    return found


def read_message(activity: Activity) -> tuple[str, bool]:
    """(the text as meant, whether it addresses the bot): only a mention whose id is the
    activity's recipient (the bot) addresses it; other people's mentions keep their names."""
    bot_id = (getattr(activity.recipient, "id", None) or "").lower()
    mentions = mentions_of(activity)
    ours = [m for m in mentions if bot_id and m.user_id.lower() == bot_id]
    text = render.addressed_text(
        activity.text or "",
        bot_mentions=[m.markup for m in ours],
        other_mentions=[(m.markup, display_name(m.name) if m.name else "") for m in mentions if m not in ours],
    )
    return text, bool(ours)


class Directory:
    """Members' email addresses, read through the Bot Framework's conversation-members API
    (`TeamsInfo.get_member`), cached in memory per AAD object id for a few hours.

    So that the core can link a Teams identity to the same person's Slack identity. A failed or
    slow look-up means no email, never a failed or late command.
    """

    def __init__(
        self,
        *,
        ttl: float = MEMBER_TTL,
        miss_ttl: float = MISS_TTL,
        timeout: float = LOOKUP_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl, self.miss_ttl, self.timeout, self.clock = ttl, miss_ttl, timeout, clock
        self._known: dict[str, tuple[str | None, float]] = {}

    def cached(self, user_id: str | None) -> str | None:
        """The email known for a user, without any network call (the card-click path)."""
        hit = self._known.get(user_id or "")
        return hit[0] if hit and hit[1] > self.clock() else None

    async def email(self, turn_context: TurnContext) -> str | None:
        """The sender's email (or UPN), from the cache or the members API."""
        sender = turn_context.activity.from_property
        key = getattr(sender, "aad_object_id", None) or sender.id
        hit = self._known.get(key)
        if hit and hit[1] > self.clock():
            return hit[0]
        try:
            member = await asyncio.wait_for(TeamsInfo.get_member(turn_context, sender.id), self.timeout)
        except Exception as exc:  # noqa: BLE001 - a look-up never stands in the way of a command
            logger.info("Teams member look-up for %s failed (%s); going on without an email", key, type(exc).__name__)
            self._known[key] = (None, self.clock() + self.miss_ttl)
            return None
        email = (getattr(member, "email", None) or getattr(member, "user_principal_name", None) or "").strip().lower()
        self._known[key] = (email or None, self.clock() + (self.ttl if email else self.miss_ttl))
        return email or None


class UnsiloTeamsBot(TeamsActivityHandler):  # type: ignore[misc]  # botbuilder ships no type hints
    """Translates Teams activities to bus commands and core views to Adaptive Cards."""

    def __init__(
        self,
        *,
        bus: Bus,
        outcomes: tuple[str, ...],
        tenants: frozenset[str] = frozenset(),
        departments: Sequence[str] = (),
        directory: Directory | None = None,
    ) -> None:
        super().__init__()
        self.bus = bus
        self.outcomes = outcomes
        self.tenants = tenants
        self.departments = tuple(departments)
        self.directory = directory or Directory()
        # Posted messages known to be their card's live copy: a click on one needs no second unit of
        # work to tell (the first recorded copy stays the live one). Bounded, oldest first out.
        self._live_copies: OrderedDict[tuple[str, str], int] = OrderedDict()

    def accepts(self, activity: Activity) -> bool:
        """Whether the activity comes from a configured tenant (any, when none is configured)."""
        if not self.tenants or tenant_of(activity) in self.tenants:
            return True
        logger.warning(
            "Teams %s refused: tenant %s is not one of the configured tenants (%s)",
            activity.type,
            tenant_of(activity) or "(none given)",
            ", ".join(sorted(self.tenants)),
        )
        return False

    async def on_turn(self, turn_context: TurnContext) -> None:
        """Refuse a foreign tenant's activity before anything runs; else the usual dispatch.

        The turn's connector client (answers, member look-ups) gets no retries: msrest would
        retry a failed answer for seconds while the Bot Connector waits for our HTTP answer, and
        redelivers the message (running its command twice) when that takes too long.
        """
        if turn_context.activity.channel_data is None:  # the SDK's Teams dispatch reads it unconditionally
            turn_context.activity.channel_data = {}
        if self.accepts(turn_context.activity):
            connector = turn_context.turn_state.get(BotAdapter.BOT_CONNECTOR_CLIENT_KEY)
            if connector is not None:
                connector.config.retry_policy.retries = 0
            await super().on_turn(turn_context)
            return
        activity = turn_context.activity
        if activity.type == ActivityTypes.invoke:
            await turn_context.send_activity(
                Activity(type=ActivityTypes.invoke_response, value=foreign_tenant_invoke(activity.name))
            )

    # Messages ------------------------------------------------------------------------

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        """@mention commands (anywhere), Action.Submit data, notes from a card's thread."""
        activity = turn_context.activity
        if activity.value and not (activity.text or "").strip():
            await self._answer_with(
                turn_context, await self._run_action(activity.value, activity, await self._actor(turn_context))
            )
            return
        text, to_bot = read_message(activity)
        if to_bot or is_personal(activity):
            await self._answer_with(turn_context, await self._run_text(text, activity, await self._actor(turn_context)))
            return
        root = thread_root(activity)
        if root is None:
            return  # a channel post or group chat message that does not address the bot: none of its business
        found = await self.bus.handle(c.LocateCard(actor_of(activity), channel_id=channel_of(activity), message_id=root))
        if found.copy is None:
            return  # a reply in a thread that is no card's (and so no member look-up for it)
        note = c.ThreadNote(await self._actor(turn_context), channel_id=channel_of(activity), message_id=root, text=text)
        await self._quietly(note, event_id=activity.id)

    async def _actor(self, turn_context: TurnContext) -> c.Actor:
        return actor_of(turn_context.activity, email=await self.directory.email(turn_context))

    async def _run_text(self, text: str, activity: Activity, actor: c.Actor) -> tuple[dict[str, Any], str]:
        reference = TurnContext.get_conversation_reference(activity).serialize()
        if tenant_of(activity):  # botbuilder 4.17.1 reads `conversation.tenantID`, so Teams' `tenantId` is lost
            reference.setdefault("conversation", {})["tenantId"] = tenant_of(activity)
        try:
            parsed = parse(text, actor, channel_id=channel_of(activity), prefix=PREFIX, conversation_ref=reference)
        except InvalidInput as exc:
            return render.text_card(f"{exc.message}\n\n{help_text(PREFIX)}"), exc.message
        if isinstance(parsed, HelpRequest):
            return render.text_card(help_text(PREFIX)), "Unsilo commands"
        return await self._answer(parsed)

    async def _answer(self, command: c.Command) -> tuple[dict[str, Any], str]:
        outcome = await attempt(self.bus, command)
        if isinstance(outcome, Refused):
            return render.text_card(refusal_text(outcome.error)), outcome.message
        if isinstance(outcome, Failed) or outcome.result is None:
            return render.text_card(SORRY), SORRY
        result = outcome.result
        if isinstance(command, c.Show) or result.card is None:
            return render.result_card(result, outcomes=self.outcomes, departments=self.departments), render.summary_of(result)
        return render.confirmation_card(result), render.summary_of(result)

    async def _quietly(self, command: c.Command, *, event_id: str | None) -> None:
        """Carry out a command nobody is answered for (a refusal is logged by the bus, a failure by `attempt`)."""
        await attempt(self.bus, command, event_id=event_id or None)

    async def _answer_with(self, turn_context: TurnContext, answer: tuple[dict[str, Any], str]) -> None:
        """Post an answer in the conversation. The command has run by now, whatever happens here:
        an answer Teams does not take (5xx, 429, refused) is logged, and the request still succeeds."""
        card_json, preview = answer
        reply = MessageFactory.attachment(CardFactory.adaptive_card(card_json))
        reply.summary = render.summary(preview) or None
        try:
            await turn_context.send_activity(reply)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            logger.warning(
                "Teams answer in %s could not be posted (%s: %s); what the command did stands",
                turn_context.activity.conversation.id,
                type(exc).__name__,
                str(exc)[:200],
            )

    # Installation -------------------------------------------------------------------

    async def on_teams_members_added_dispatch(self, members_added: list[Any], team_info: Any, turn_context: TurnContext) -> None:
        """The bot added to a team, a chat or someone's personal scope: say hello and how to set up.

        Replaces the SDK's dispatch, which looks every other new member up over the network
        first. Teams also sends an `installationUpdate` for the same installation (see below);
        only this one is answered, so there is one welcome.
        """
        bot_id = (getattr(turn_context.activity.recipient, "id", None) or "").lower()
        if any((getattr(m, "id", "") or "").lower() == bot_id for m in members_added or []):
            await self._answer_with(
                turn_context, (render.text_card(self.welcome(turn_context.activity)), "Unsilo is installed: how to set it up")
            )

    async def on_installation_update(self, turn_context: TurnContext) -> None:
        """Logged only: the `conversationUpdate` that comes with it carries the welcome."""
        logger.info("Teams app %s in %s", turn_context.activity.action, turn_context.activity.conversation.id)

    def welcome(self, activity: Activity) -> str:
        """What the bot says when installed: what it does and how to link a channel."""
        names = ", ".join(self.departments) or "the departments in your config file"
        lines = [
            "Hi! I'm Unsilo: I bring what customers say in public (reviews, forums, social posts) "
            "to the people who can act on it. Claim a card, talk it over in its thread, reply and resolve."
        ]
        if is_personal(activity):
            lines.append("Here, type `mine` for your conversations, `queue` for what is waiting, `help` for every command.")
        else:
            lines.append(
                f"To get a department's conversations in this channel, type `{PREFIX} link <department>` "
                f"(departments: {names}). Admins only, once."
            )
            lines.append(f"Type `{PREFIX} help` for every command.")
        return "\n".join(lines)

    # Card actions -------------------------------------------------------------------

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        """Universal Actions answered in the HTTP response (see PLATFORM_NOTES: no SDK serializer)."""
        activity = turn_context.activity
        if activity.name == "adaptiveCard/action":
            return invoke_response(await self.card_action(activity))
        if activity.name == "composeExtension/submitAction":
            return InvokeResponse(status=200, body=await self.report_message(turn_context))
        return await super().on_invoke_activity(turn_context)

    async def card_action(self, activity: Activity) -> dict[str, Any]:
        """An `adaptiveCard/action` invoke's whole answer: the refreshed card as an invoke body.

        Needs no TurnContext and no connector client, so the service can answer it in the
        HTTP response without the SDK's turn (see `adapters/teams/service.py`); the
        sender's email comes from the directory's cache only (no network call per click).
        """
        if not self.accepts(activity):
            return render.error_invoke_body(403, "Forbidden", FOREIGN_TENANT)
        action = (activity.value or {}).get("action") or {}
        data = {**(action.get("data") or {}), "cmd": action.get("verb") or (action.get("data") or {}).get("cmd")}
        actor = actor_of(activity)
        actor = c.Actor(actor.platform, actor.user_id, actor.name, email=self.directory.cached(actor.user_id))
        if codec.is_action(data):  # a button on an answer (e.g. Erase under a dry run)
            return await self.answer_action(data, actor)
        try:
            verb, conversation_id = codec.decode(data)
        except InvalidInput as exc:  # not one of our buttons (or a damaged one): keep the card, say why
            return render.message_invoke_body(exc.message)
        shown, said = await self._act(verb, conversation_id, data, actor)
        if render.from_batch(data):  # the batch message stays as it is; the click's outcome is said over it
            return render.message_invoke_body(said or shown.text)
        copy = await self._clicked_copy(activity, data, conversation_id, actor)
        if copy is not None and copy.live_message_id is not None:  # an older duplicate: the click is done, say where to go on
            link = render.message_link(channel_of(activity), copy.live_message_id, tenant_id=tenant_of(activity))
            return render.refreshed_invoke_body(render.duplicate_card(conversation_id, link=link, said=said))
        return render.refreshed_invoke_body(render.result_card(shown, outcomes=self.outcomes, departments=self.departments))

    async def answer_action(self, data: dict[str, Any], actor: c.Actor) -> dict[str, Any]:
        """An answer's own button: its command carried out (the core checks it again, as if typed); the answer
        card is replaced by what was done, or keeps its place with the refusal shown."""
        try:
            command = codec.action_command(data, actor)
        except InvalidInput as exc:
            return render.message_invoke_body(exc.message)
        outcome = await attempt(self.bus, command)
        if isinstance(outcome, Refused):
            return render.message_invoke_body(refusal_text(outcome.error))
        if isinstance(outcome, Failed) or outcome.result is None:
            return render.message_invoke_body(SORRY)
        return render.refreshed_invoke_body(
            render.result_card(outcome.result, outcomes=self.outcomes, departments=self.departments)
        )

    async def _clicked_copy(
        self, activity: Activity, data: dict[str, Any], conversation_id: int, actor: c.Actor
    ) -> CardCopy | None:
        """Which posted copy of the card was clicked (None for an answer's buttons, or when it cannot be told).

        Teams cannot be searched for a card whose send result was lost, so such a card is posted
        again; the click on a copy says which message it is (`replyToId`), and the core tells
        whether that is the live copy.
        """
        message_id = activity.reply_to_id or thread_root(activity)
        if not render.from_posted_copy(data) or not message_id:
            return None
        known = (channel_of(activity), message_id)
        if self._live_copies.get(known) == conversation_id:
            return CardCopy(conversation_id)
        located = await attempt(
            self.bus, c.LocateCard(actor, channel_id=channel_of(activity), message_id=message_id, conversation_id=conversation_id)
        )
        if not isinstance(located, Done) or located.result is None:
            return None  # the click is done; the card it shows is the only thing at stake (logged)
        found = located.result
        if found.copy is not None and found.copy.live_message_id is None:
            self._live_copies[known] = conversation_id
            if len(self._live_copies) > LIVE_COPIES_KEPT:
                self._live_copies.popitem(last=False)
        return found.copy

    async def _run_action(self, data: dict[str, Any], activity: Activity, actor: c.Actor) -> tuple[dict[str, Any], str]:
        """An Action.Submit button (its data in a message) -> the refreshed card and its preview."""
        try:
            verb, conversation_id = codec.decode(data)
        except InvalidInput as exc:
            return render.text_card(exc.message), exc.message
        shown, _ = await self._act(verb, conversation_id, data, actor)
        return render.result_card(shown, outcomes=self.outcomes, departments=self.departments), render.summary_of(shown)

    async def _act(self, verb: str, conversation_id: int, data: dict[str, Any], actor: c.Actor) -> tuple[Result, str]:
        """Run a card button's command: (what the card shows now, with any refusal on top; what the core said)."""
        notice = None
        try:
            command: c.Command | None = codec.to_command(data, actor, fields=render.input_values(data, verb))
        except InvalidInput as exc:
            command, notice = None, exc.message
        if command is not None:
            # A refusal comes with the card as it stands, read in the refused command's unit of work.
            outcome = await attempt(self.bus, command, show=True)
            if isinstance(outcome, Done) and outcome.result is not None and outcome.result.card is not None:
                done = outcome.result
                return Result("", card=done.card, history=done.history), done.text
            if isinstance(outcome, Refused):
                notice = refusal_text(outcome.error)
                return Result(notice, card=outcome.card), notice
            notice = SORRY if isinstance(outcome, Failed) else None
        shown = await attempt(self.bus, c.Show(conversation_id, actor))
        if isinstance(shown, Refused):
            return Result(shown.message), shown.message
        current = shown.result if isinstance(shown, Done) else None
        return Result(notice or "", card=current.card if current else None), notice or ""

    # Message action: "Send to Unsilo" -----------------------------------------------

    async def report_message(self, turn_context: TurnContext) -> MessagingExtensionActionResponse:
        """A message sent in with the message action becomes a `teams-report` conversation.

        Credited to whoever sent it in; the conversation's author is the message's own author.
        The answer is a dialog message (`task` of type `message`), which Teams shows in the
        dialog and then closes it. Teams retries a submit it got no answer to within five
        seconds: the same message is recognised (its id is the conversation's external id),
        so a retry adds nothing and says which conversation it already is.
        """
        activity = turn_context.activity
        value = activity.value if isinstance(activity.value, dict) else {}
        payload = value.get("messagePayload") or {}
        data = value.get("data") or {}
        sender = payload.get("from") or {}
        author = (sender.get("user") or {}).get("displayName") or (sender.get("application") or {}).get("displayName") or ""
        body = (payload.get("body") or {}).get("content") or ""
        text = html_to_text(body) if (payload.get("body") or {}).get("contentType", "html") == "html" else body
        link = str(data.get("link") or payload.get("linkToMessage") or "").strip()
        command = c.Report(
            await self._actor(turn_context),
            text,
            link=link,
            department=str(data.get("department") or "").strip().lower() or None,
            author=author,
            external_id=f"teams:{payload['id']}" if payload.get("id") else "",
        )
        outcome = await attempt(self.bus, command)
        if isinstance(outcome, Done):
            message = outcome.result.text if outcome.result else "Already sent in"
        else:
            message = outcome.message if isinstance(outcome, Refused) else SORRY
        return MessagingExtensionActionResponse(task=TaskModuleMessageResponse(value=message))


def refusal_text(exc: DomainError) -> str:
    """A refusal in words (Teams shows the winner of a claim race by name)."""
    return exc.message


def invoke_response(body: dict[str, Any]) -> InvokeResponse:
    """An `adaptiveCard/action` answer for `CloudAdapter.process`: a model, not a dict, as it
    serializes the body itself (4.17.1)."""
    return InvokeResponse(
        status=200, body=AdaptiveCardInvokeResponse(status_code=body["statusCode"], type=body["type"], value=body["value"])
    )


def foreign_tenant_invoke(name: str | None) -> InvokeResponse:
    """The answer to an invoke from a tenant this install does not serve.

    A card click gets Universal Actions' error response (HTTP 200, `statusCode` 403): Teams shows
    its message and keeps the card as it was. The message action gets a dialog message saying
    the same. Any other invoke gets a bare 403.
    """
    if name == "adaptiveCard/action":
        return invoke_response(render.error_invoke_body(403, "Forbidden", FOREIGN_TENANT))
    if name == "composeExtension/submitAction":
        return InvokeResponse(
            status=200, body=MessagingExtensionActionResponse(task=TaskModuleMessageResponse(value=FOREIGN_TENANT))
        )
    return InvokeResponse(status=403)
