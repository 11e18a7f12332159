"""The Bolt app: Slack requests in, core commands out. Listeners ack first and only translate."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import render
from bot import codec
from bot import commands as c
from bot.bus import Bus
from bot.health import PlatformHealth
from bot.domain import AlreadyClaimed, DomainError, InvalidInput, parse_conversation_id
from bot.textcommands import HelpRequest, help_text, parse
from bot.views import Result

logger = logging.getLogger(__name__)

# Verbs whose button opens a modal asking for text: (title, label, submit).
_TEXT_MODALS = {
    "reply": ("Reply to the customer", "Your answer (sent as you)", "Send reply"),
    "note": ("Internal note", "Note (never sent to the customer)", "Add note"),
    "dismiss": ("Dismiss", "Why does this need no action?", "Dismiss"),
    "reject": ("Reject reply", "Why is it rejected? Its author will read this.", "Reject"),
}


SORRY = "Sorry, that failed on our side (it is logged). Please try again in a moment."


def actor_of(user_id: str, name: str | None = None) -> c.Actor:
    """The core's actor for a Slack user."""
    return c.Actor(platform="slack", user_id=user_id, name=name or None)


def refusal_text(exc: DomainError) -> str:
    """A refusal as Slack shows it: the claim winner as a mention when they are on Slack."""
    if isinstance(exc, AlreadyClaimed) and exc.identities.get("slack"):
        return f"#{exc.conversation_id} is already claimed by <@{exc.identities['slack']}>"
    return render.escape(exc.message)


class SlackBot:
    """Builds the Bolt `AsyncApp` and its listeners around the core bus."""

    def __init__(self, *, bus: Bus, token: str, signing_secret: str, client: AsyncWebClient,
                 outcomes: tuple[str, ...], health: PlatformHealth | None = None) -> None:
        self.bus = bus
        self.health = health
        self.token = token
        self.client = client
        self.outcomes = outcomes
        self._auth: AuthorizeResult | None = None
        self._identifying: asyncio.Future[AuthorizeResult] | None = None
        async def authorize(enterprise_id: str | None = None, team_id: str | None = None) -> AuthorizeResult:
            return await self.authorize(enterprise_id, team_id)  # Bolt inspects argument names: no `self`

        # Over Socket Mode there is no HTTP request to verify, and no signing secret is needed.
        self.app = AsyncApp(signing_secret=signing_secret or None, request_verification_enabled=bool(signing_secret),
                            client=client, authorize=authorize, process_before_response=False)
        self._register()

    async def identify(self) -> AuthorizeResult:
        """Our bot identity from `auth.test` (called at start-up; cached)."""
        if self._auth is None:
            response = await self.client.auth_test(token=self.token)
            self._auth = AuthorizeResult(enterprise_id=response.get("enterprise_id"), team_id=response.get("team_id"),
                                         bot_user_id=response.get("user_id"), bot_id=response.get("bot_id"),
                                         bot_token=self.token)
        return self._auth

    async def authorize(self, enterprise_id: str | None = None, team_id: str | None = None) -> AuthorizeResult:
        """Never make a request wait for Slack: the cached identity, or the token alone until it is known."""
        if self._auth is not None:
            return self._auth
        if self._identifying is None or self._identifying.done():
            self._identifying = asyncio.ensure_future(self.identify())
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=self.token)

    def _register(self) -> None:
        app = self.app
        app.command("/unsilo")(self.on_command)
        app.action(re.compile(f"^{re.escape(render.ACTION_PREFIX)}"))(self.on_button)
        app.view(re.compile(r"^unsilo_(reply|note|dismiss|reject|resolve)$"))(self.on_text_modal)
        app.view("unsilo_report")(self.on_report_modal)
        app.shortcut("unsilo_report")(self.on_report_shortcut)
        app.event("message")(self.on_message)
        app.event("app_home_opened")(self.on_home_opened)
        app.event("app_uninstalled")(self.on_uninstalled)
        app.event("tokens_revoked")(self.on_uninstalled)

    # Slash command -----------------------------------------------------------------

    async def on_command(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        """`/unsilo …`: answer in the ack itself (ephemeral), well inside 3 seconds."""
        actor = actor_of(command["user_id"], command.get("user_name"))
        try:
            parsed = parse(command.get("text", ""), actor, channel_id=command.get("channel_id", ""))
            if isinstance(parsed, HelpRequest):
                await ack(text=help_text("/unsilo"))
                return
            result = await self.bus.handle(parsed)
        except DomainError as exc:
            logger.info("slash command refused for %s: %s", actor.user_id, exc.message)
            await ack(text=refusal_text(exc))
            return
        except Exception:
            logger.exception("/unsilo %r failed for %s", command.get("text", ""), actor.user_id)
            await ack(text=SORRY)
            return
        await ack(**render.result_message(result or Result("")))

    # Buttons -----------------------------------------------------------------------

    async def on_button(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        """Ack at once, then carry out the click or open the modal it asks for."""
        await ack()
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
        try:
            verb, conversation_id = codec.decode(action.get("value") or "")
            if verb == "open":
                return
            command = codec.direct_command(verb, conversation_id, actor_of(user, body["user"].get("name")))
            if command is not None:
                await self.bus.handle(command)
                return
            await client.views_open(trigger_id=body["trigger_id"], view=self._modal_for(verb, conversation_id))
        except DomainError as exc:
            logger.info("button refused for %s: %s", user, exc.message)
            if channel:
                await client.chat_postEphemeral(channel=channel, user=user, text=refusal_text(exc))
        except SlackApiError as exc:
            logger.warning("could not open the modal for %s: %s", user, exc.response.get("error"))
        except Exception:
            logger.exception("button %s failed for %s", action.get("action_id"), user)
            if channel:
                await client.chat_postEphemeral(channel=channel, user=user, text=SORRY)

    def _modal_for(self, verb: str, conversation_id: int) -> dict[str, Any]:
        if verb == "resolve":
            return render.resolve_modal(conversation_id=conversation_id, outcomes=self.outcomes)
        if verb not in _TEXT_MODALS:
            raise InvalidInput(f"that button ({verb}) is not supported here; try `/unsilo help`")
        title, label, submit = _TEXT_MODALS[verb]
        return render.text_modal(verb=verb, conversation_id=conversation_id, title=title, label=label, submit=submit)

    # Modals ------------------------------------------------------------------------

    async def on_text_modal(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        """Reply, note, dismiss and resolve modals: errors come back inside the modal."""
        verb = view["callback_id"].removeprefix("unsilo_")
        values = render.values_of(view)
        actor = actor_of(body["user"]["id"], body["user"].get("name"))
        field = "outcome" if verb == "resolve" else "text"
        try:
            conversation_id = parse_conversation_id(json.loads(view.get("private_metadata") or "{}").get("id", ""))
            text = values.get("text", "")
            command: c.Command = {
                "reply": lambda: c.ReplyToCustomer(conversation_id, actor, text),
                "note": lambda: c.AddNote(conversation_id, actor, text, origin="slack"),
                "dismiss": lambda: c.Dismiss(conversation_id, actor, text),
                "reject": lambda: c.RejectReply(conversation_id, actor, text),
                "resolve": lambda: c.Resolve(conversation_id, actor, values.get("outcome", ""), text),
            }[verb]()
            await self.bus.handle(command)
        except DomainError as exc:
            await ack(response_action="errors", errors={field: refusal_text(exc)[:150]})
            return
        except (ValueError, KeyError):
            await ack(response_action="errors", errors={field: "This form is out of date; close it and try again."})
            return
        except Exception:
            logger.exception("modal %s failed for %s", view.get("callback_id"), actor.user_id)
            await ack(response_action="errors", errors={field: SORRY})
            return
        await ack()

    async def on_report_shortcut(self, ack: AsyncAck, shortcut: dict[str, Any], client: AsyncWebClient) -> None:
        """"Send to Unsilo" on any message: ask for the department and a link."""
        await ack()
        message = shortcut.get("message") or {}
        channel = (shortcut.get("channel") or {}).get("id", "")
        link = ""
        try:
            link = (await client.chat_getPermalink(channel=channel, message_ts=message.get("ts", ""))).get("permalink", "")
        except SlackApiError as exc:
            logger.info("no permalink for a reported message: %s", exc.response.get("error"))
        result = await self.bus.handle(c.ShowQueue(actor_of(shortcut["user"]["id"])))
        departments = sorted((result.counts if result else {}).keys())
        await client.views_open(trigger_id=shortcut["trigger_id"], view=render.report_modal(
            departments=departments, text=message.get("text", ""), link=link, channel=channel,
            message_ts=message.get("ts", "")))

    async def on_report_modal(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient) -> None:
        """The reported message becomes a conversation of source `slack-report`."""
        values = render.values_of(view)
        meta = json.loads(view.get("private_metadata") or "{}")
        user = body["user"]["id"]
        command = c.Report(actor_of(user, body["user"].get("name")), meta.get("text", ""),
                           link=values.get("link") or meta.get("link", ""), department=values.get("department") or None,
                           external_id=f"{meta.get('channel', '')}:{meta.get('ts', '')}")
        try:
            result = await self.bus.handle(command)
        except DomainError as exc:
            await ack(response_action="errors", errors={"link": refusal_text(exc)[:150]})
            return
        await ack()
        if result is not None:
            try:
                await client.chat_postMessage(channel=user, text=render.escape(result.text))
            except SlackApiError as exc:
                logger.info("could not confirm a report to %s: %s", user, exc.response.get("error"))

    # Events ------------------------------------------------------------------------

    async def on_message(self, event: dict[str, Any], body: dict[str, Any]) -> None:
        """A human's reply in a card's thread is stored as a note, once per event."""
        if event.get("bot_id") or event.get("subtype") not in (None, "thread_broadcast"):
            return
        thread = event.get("thread_ts")
        if not thread or thread == event.get("ts") or not event.get("user"):
            return
        note = c.ThreadNote(actor_of(event["user"]), channel_id=event.get("channel", ""), message_id=thread,
                            text=event.get("text", ""))
        try:
            await self.bus.handle(note, once=body.get("event_id") or f"{event.get('channel')}:{event.get('ts')}")
        except DomainError as exc:
            logger.info("thread message not stored as a note: %s", exc.message)

    async def on_uninstalled(self, event: dict[str, Any]) -> None:
        """The app was removed: say so loudly; cards for Slack will fail until it is reinstalled."""
        logger.error("Slack says the app was uninstalled or its tokens revoked (%s)", event.get("type"))
        if self.health is not None:
            self.health.degraded(f"Slack sent {event.get('type')}: reinstall the app and set the new SLACK_BOT_TOKEN")

    async def on_home_opened(self, event: dict[str, Any], client: AsyncWebClient) -> None:
        """The App Home tab: my conversations, the open queue with counts, recent outcomes."""
        if event.get("tab") not in (None, "home"):
            return
        actor = actor_of(event["user"])
        mine = await self.bus.handle(c.ShowQueue(actor, mine=True))
        queue = await self.bus.handle(c.ShowQueue(actor))
        recent = await self.bus.handle(c.ShowRecent(actor))
        await client.views_publish(user_id=event["user"], view=render.home_view(
            mine=mine or Result(""), queue=queue or Result(""), recent=recent or Result("")))

