"""The Bolt app: Slack requests in, core commands out. Listeners ack first and only translate."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext, AsyncRespond
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack import render, text
from adapters.slack.directory import SlackDirectory
from bot import codec, verbs, views
from bot import commands as c
from bot.acks import AnswersFirst
from bot.bus import Bus
from bot.domain import AlreadyClaimed, DomainError, parse_conversation_id
from bot.edge import SORRY, Done, Failed, Outcome, Refused, attempt
from bot.health import PlatformHealth
from bot.textcommands import HelpRequest, help_text, parse
from bot.views import Result
from storage.db import UNAVAILABLE

logger = logging.getLogger(__name__)

WORKING = "Working on it…"
STORE_WAIT = (
    "Unsilo's database is not answering right now. What you asked is kept and will be done as soon as "
    "it answers again; you'll be told here."
)
DONE_LATE = (
    "Done: it went through while Unsilo's database was slow to confirm it, so the details are lost "
    "(`/unsilo show #id` shows where things stand)."
)
NOT_OUR_WORKSPACE = (
    "This Slack workspace is not the one Unsilo is installed in, so Unsilo can't act here. "
    "Ask your Unsilo admin which workspace to use."
)

# Slack waits 3 s for an answer. A slash command's answer that takes longer than this is
# preceded by WORKING; a modal whose work takes longer closes and reports by ephemeral.
SLOW_COMMAND = 1.5
MODAL_BUDGET = 2.5
# A thread note is stored before the Events API request is answered (a 200 is never
# retried by Slack): storing must finish within this, or Slack is answered 500 and retries.
EVENT_BUDGET = 2.4
EVENT_LOOKUP = 0.8  # of which the directory lookup may take this much
SHORTCUT_LOOKUP = 1.0  # each lookup for the report form (its trigger_id is valid for 3 s)
# A person's command, click or modal is tried again while the store does not answer (a stall, a restart,
# a failover), for up to STORE_PATIENCE seconds; each try waits as long as the store's own timeouts allow.
STORE_PATIENCE = 300.0
STORE_RETRY_FIRST, STORE_RETRY_MAX = 0.5, 5.0


class StoreGaveUp(DomainError):
    """The store did not answer for `STORE_PATIENCE` seconds: the person's action was not done (a refusal
    that says so)."""

    def __init__(self) -> None:
        super().__init__(
            f"Unsilo's database has not answered for {STORE_PATIENCE / 60:g} minutes, so this could "
            "not be done. Please try again later."
        )


def refusal_text(exc: DomainError) -> str:
    """A refusal as Slack shows it: the claim winner as a mention when they are on Slack."""
    if isinstance(exc, AlreadyClaimed) and exc.identities.get("slack"):
        return f"#{exc.conversation_id} is already claimed by <@{exc.identities['slack']}>"
    return render.escape(exc.message)


def said(outcome: Outcome) -> dict[str, Any]:
    """What Slack says of an outcome, as message arguments: the result, the refusal, or the apology."""
    if isinstance(outcome, Done):
        return render.result_message(outcome.result or Result(DONE_LATE))
    if isinstance(outcome, Refused):
        return {"text": refusal_text(outcome.error)}
    return {"text": SORRY}


class _Waiting:
    """A `waiting` callback for `SlackBot.carry_out` that remembers whether it was called."""

    def __init__(self, notice: Callable[[], Awaitable[None]]) -> None:
        self.notice = notice
        self.called = False

    async def __call__(self) -> None:
        self.called = True
        await self.notice()


def _ref(value: Any, key: str = "id") -> str:
    """An id Slack sends bare (`"channel": "C1"`) or inside an object (`"channel": {"id": "C1"}`); "" if neither."""
    found = value.get(key) if isinstance(value, dict) else value
    return found if isinstance(found, str) else ""


def _files(event: dict[str, Any]) -> list[str]:
    """One line per file attached to a message: its name and permalink (as plain text)."""
    lines = []
    for item in event.get("files") or []:
        if not isinstance(item, dict):
            continue
        name = str(item.get("name") or item.get("title") or item.get("id") or "file")
        link = str(item.get("permalink") or "")
        lines.append(f"[file] {name}" + (f": {link}" if link else ""))
    return lines


class _InstalledWorkspaceOnly(AsyncMiddleware):
    """`SlackBot.only_installed_workspace` as a Bolt middleware object: Bolt calls it as it is, without
    building keyword arguments for it from the request as it does for a middleware function."""

    def __init__(self, bot: SlackBot) -> None:
        self.bot = bot

    async def async_process(
        self, *, req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        return await self.bot.only_installed_workspace(req.context, req.body, resp, next)


class SlackBot:
    """Builds the Bolt `AsyncApp` and its listeners around the core bus.

    `team_id` / `enterprise_id` (settings `SLACK_TEAM_ID`, `SLACK_ENTERPRISE_ID`) name the
    workspace (and Enterprise Grid org) Unsilo is installed in; without `team_id`, the
    workspace `auth.test` reports for the bot token. Requests from anywhere else are refused.

    `answers`: what a button's work after its ack waits for (`bot.acks.AnswersFirst`); the endpoint
    wraps each request in `answers.answering()`.
    """

    def __init__(
        self,
        *,
        bus: Bus,
        token: str,
        signing_secret: str,
        client: AsyncWebClient,
        outcomes: tuple[str, ...],
        departments: Sequence[str] = (),
        health: PlatformHealth | None = None,
        team_id: str = "",
        enterprise_id: str = "",
        directory: SlackDirectory | None = None,
        answers: AnswersFirst | None = None,
    ) -> None:
        self.bus = bus
        self.health = health
        self.token = token
        self.client = client
        self.outcomes = outcomes
        self.choices = verbs.choice_lists(outcomes=outcomes, departments=departments)  # the values of the verbs' choice inputs
        self.team_id = team_id
        self.enterprise_id = enterprise_id
        self.directory = directory or SlackDirectory(client)
        # The endpoint counts the requests being answered; a click's work after its ack waits its turn.
        self.answers = answers or AnswersFirst()
        self._auth: AuthorizeResult | None = None
        self._identifying: asyncio.Future[AuthorizeResult] | None = None
        self._background: set[asyncio.Future[None]] = set()

        async def authorize(enterprise_id: str | None = None, team_id: str | None = None) -> AuthorizeResult:
            return await self.authorize(enterprise_id, team_id)  # Bolt inspects argument names: no `self`

        # Over Socket Mode there is no HTTP request to verify, and no signing secret is needed.
        self.app = AsyncApp(
            signing_secret=signing_secret or None,
            request_verification_enabled=bool(signing_secret),
            client=client,
            authorize=authorize,
            process_before_response=False,
        )
        self._register()

    async def identify(self) -> AuthorizeResult:
        """Our bot identity from `auth.test` (cached). Callers share one call in flight: the start-up check
        (`adapters.slack._check_bot_token`, which retries with backoff) and requests that need it meanwhile."""
        if self._auth is not None:
            return self._auth
        if self._identifying is None or self._identifying.done():
            self._identifying = asyncio.ensure_future(self._auth_test())
        return await asyncio.shield(self._identifying)

    async def _auth_test(self) -> AuthorizeResult:
        response = await self.client.auth_test(token=self.token)
        self._auth = AuthorizeResult(
            enterprise_id=response.get("enterprise_id"),
            team_id=response.get("team_id"),
            bot_user_id=response.get("user_id"),
            bot_id=response.get("bot_id"),
            bot_token=self.token,
        )
        return self._auth

    async def authorize(self, enterprise_id: str | None = None, team_id: str | None = None) -> AuthorizeResult:
        """Never make a request wait for Slack: the cached identity, or the token alone until it is known."""
        if self._auth is not None:
            return self._auth
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=self.token)

    async def installed_team(self) -> str:
        """The workspace Unsilo is installed in: `team_id` if configured, else `auth.test`'s (bounded)."""
        if self.team_id:
            return self.team_id
        auth = self._auth or await asyncio.wait_for(self.identify(), 2.0)
        return (auth.team_id if auth is not None else None) or ""

    def _register(self) -> None:
        app = self.app
        app.middleware(_InstalledWorkspaceOnly(self))
        app.command("/unsilo")(self.on_command)
        app.action(re.compile(f"^{re.escape(render.ACTION_PREFIX)}"))(self.on_button)
        app.action(render.PICK_ACTION)(self.on_pick_answer)
        forms = "|".join(re.escape(verb.name) for verb in verbs.TABLE if verb.asks)
        app.view(re.compile(f"^{re.escape(render.FORM_PREFIX)}({forms})$"))(self.on_form)
        app.view("unsilo_report")(self.on_report_modal)
        app.shortcut("unsilo_report")(self.on_report_shortcut)
        app.event("message", middleware=[self.store_thread_note])(self.on_message)
        app.event("app_home_opened")(self.on_home_opened)
        app.event("app_uninstalled")(self.on_uninstalled)
        app.event("tokens_revoked")(self.on_uninstalled)
        app.event(re.compile(r".*"))(self.on_other_event)  # last: any other event is acked, not 404 (Slack retries those)

    async def actor(self, user_id: str, name: str | None = None, *, timeout: float | None = None) -> c.Actor:
        """The core's actor for a Slack user, with the directory's name and verified email when known."""
        return await self.directory.actor(user_id, name, timeout=timeout)

    async def plain(self, slack_text: str | None, *, timeout: float | None = None) -> str:
        """Slack-escaped text with markup (a message's, a slash command's) as the plain text it shows."""
        return await text.read(slack_text, partial(self.directory.names, timeout=timeout))

    async def carry_out(self, command: c.Command, *, waiting: Callable[[], Awaitable[None]] | None = None) -> Outcome:
        """`edge.attempt`, patient with the store: while it does not answer, the same command is tried again
        (with backoff, for up to `STORE_PATIENCE` s; `waiting()` is awaited once, at the first trouble), and
        after that it is refused with `StoreGaveUp`. Every try carries one key, recorded with the command's
        changes, so a try whose commit went through unconfirmed makes the next one do nothing: `Done(None)`."""
        key = f"action:{uuid.uuid4().hex}"
        loop = asyncio.get_running_loop()
        give_up = loop.time() + STORE_PATIENCE
        delay = STORE_RETRY_FIRST
        tries = 0
        while True:
            tries += 1
            try:
                outcome = await attempt(self.bus, command, event_id=key, unavailable=UNAVAILABLE)
            except UNAVAILABLE as exc:
                if loop.time() + delay > give_up:
                    logger.error(
                        "%s for %s not done: the store did not answer for %gs (%r)",
                        type(command).__name__,
                        command.actor.user_id,
                        STORE_PATIENCE,
                        exc,
                    )
                    return Refused.of(StoreGaveUp())
                logger.warning(
                    "%s for %s: the store did not answer (%r); try %d again in %.1fs",
                    type(command).__name__,
                    command.actor.user_id,
                    exc,
                    tries + 1,
                    delay,
                )
                if waiting is not None and tries == 1:
                    await waiting()
                await asyncio.sleep(delay)
                delay = min(delay * 2, STORE_RETRY_MAX)
                continue
            if tries > 1:
                logger.info(
                    "%s for %s done at try %d%s",
                    type(command).__name__,
                    command.actor.user_id,
                    tries,
                    " (an earlier try had done it)" if outcome == Done(None) else "",
                )
            return outcome

    # The installed workspace ------------------------------------------------------

    async def only_installed_workspace(
        self, context: AsyncBoltContext, body: dict[str, Any], resp: BoltResponse, next: Callable[[], Awaitable[Any]]
    ) -> BoltResponse:
        """A global middleware: only the installed workspace (or its configured Grid org) gets through.

        Bolt's `context.team_id` is the installation's workspace: for events it is read from
        `authorizations[0].team_id`, so a shared channel's event (whose `event.team` /
        `user_team` name the other org) is still ours; a person of another org in it is
        refused by `_foreign_user`.
        """
        try:
            installed = await self.installed_team()
        except Exception as exc:  # auth.test unreachable: refuse, and let Slack retry events
            logger.warning("cannot tell the installed Slack workspace (auth.test failed: %r); request refused", exc)
            return BoltResponse(status=503, body="")
        enterprise_ok = bool(self.enterprise_id) and context.enterprise_id == self.enterprise_id
        if enterprise_ok or (installed and context.team_id == installed):
            if self._foreign_user(body, installed):
                logger.warning(
                    "Slack event from a user of another workspace (%s) ignored", (body.get("event") or {}).get("user_team")
                )
                return BoltResponse(status=200, body="")
            await next()
            return resp
        logger.warning(
            "Slack request from workspace %s (org %s) refused: Unsilo is installed in %s%s",
            context.team_id,
            context.enterprise_id,
            installed,
            f" (org {self.enterprise_id})" if self.enterprise_id else "",
        )
        if context.response_url:  # told after the answer: the refusal is acked at once, like everything else
            self._later(self._tell_foreign(context))
        return BoltResponse(status=200, body="")  # never retried; a modal just closes

    async def _tell_foreign(self, context: AsyncBoltContext) -> None:
        if context.respond is None:  # set whenever the request had a response_url, as the caller checked
            return
        try:
            await context.respond(text=NOT_OUR_WORKSPACE, response_type="ephemeral")
        except Exception as exc:
            logger.info("could not tell the other workspace's user: %r", exc)

    def _later(self, work: Awaitable[None]) -> None:
        """Run `work` after the current request is answered (kept referenced until it ends)."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _foreign_user(self, body: dict[str, Any], installed: str) -> bool:
        """Whether an event's person belongs to another workspace (a Slack Connect channel)."""
        event = body.get("event")
        user_team = event.get("user_team") if isinstance(event, dict) else None
        if not user_team or user_team == installed:
            return False
        return not (self.enterprise_id and user_team == self.enterprise_id)

    # Slash command -----------------------------------------------------------------

    async def on_command(self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient) -> None:
        """`/unsilo …`: ack at once, then do the work and answer privately through `response_url`
        (first "working on it" when it is slow, and why when the store is not answering)."""
        await ack()
        said: set[str] = set()

        async def notice(text: str) -> None:
            if text not in said and not (text == WORKING and said):
                said.add(text)
                await self._answer(command, respond, client, {"text": text})

        work = asyncio.ensure_future(self._command(command, waiting=partial(notice, STORE_WAIT)))
        done, _ = await asyncio.wait({work}, timeout=SLOW_COMMAND)
        if not done:
            await notice(WORKING)
        await self._answer(command, respond, client, await work)

    async def _command(self, command: dict[str, Any], *, waiting: Callable[[], Awaitable[None]]) -> dict[str, Any]:
        """Carry out one slash command; its answer as message arguments."""
        actor = await self.actor(str(command.get("user_id") or ""), command.get("user_name"))
        try:
            parsed = parse(await self.plain(command.get("text")), actor, channel_id=command.get("channel_id", ""))
        except DomainError as exc:
            return said(Refused.of(exc))
        if isinstance(parsed, HelpRequest):
            return {"text": render.escape(help_text("/unsilo"))}
        return said(await self.carry_out(parsed, waiting=waiting))

    async def _answer(
        self, command: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient, message: dict[str, Any]
    ) -> None:
        """An ephemeral answer: through `response_url`, else `chat.postEphemeral`."""
        try:
            if command.get("response_url"):
                await respond(response_type="ephemeral", **message)
            else:
                await client.chat_postEphemeral(channel=command.get("channel_id", ""), user=command.get("user_id", ""), **message)
        except Exception as exc:
            logger.warning("could not answer /unsilo for %s: %r", command.get("user_id"), exc)

    # Buttons -----------------------------------------------------------------------

    async def on_button(
        self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        """Ack at once, then open the modal it asks for at once, or carry out the click once the requests
        being answered are (`AnswersFirst.turn`: other clicks' acks go first, for at most a moment)."""
        await ack()
        user = body["user"]["id"]
        channel = _ref(body.get("channel")) or _ref(body.get("container"), "channel_id")
        tell = partial(self._ephemeral, client, channel, user)
        waiting = _Waiting(partial(tell, {"text": STORE_WAIT}))
        if codec.is_action(action.get("value") or ""):  # a button on an answer (e.g. Erase under a dry run)
            await self.on_answer_button(body, action, tell=tell, waiting=waiting, respond=respond)
            return
        try:
            name, conversation_id = codec.decode(action.get("value") or "")
            if name == codec.OPEN:
                return
            verb = codec.verb_of(name)
            if verb.asks:  # trigger_id is valid for 3 s: the modal opens before anything slow
                form = render.form_modal(views.button(verb, conversation_id), choices=self.choices)
                opened = await client.views_open(trigger_id=body["trigger_id"], view=form)
                if verb.picks:  # then the saved answers that fit, once found (the form is open meanwhile)
                    await self._offer_answers(client, verb, conversation_id, opened.get("view") or {}, user=user)
                return
        except DomainError as exc:  # a damaged button, a verb without a modal
            await tell(said(Refused.of(exc)))
            return
        except SlackApiError as exc:
            logger.warning("could not open the modal for %s: %s", user, exc.response.get("error"))
            return
        await self.answers.turn()  # the acks of the clicks arriving now go first
        try:  # no modal: who it is matters now (a bounded directory lookup)
            command = verb.command(conversation_id, await self.actor(user, body["user"].get("name")))
        except DomainError as exc:
            await tell(said(Refused.of(exc)))
            return
        outcome = await self.carry_out(command, waiting=waiting)
        if not isinstance(outcome, Done) or waiting.called:  # when kept waiting, they were told: now what became of it
            await tell(said(outcome))

    async def _answers(self, user: str, name: str | None, conversation_id: int, answer_id: int | None = None) -> Result | None:
        """The saved answers that fit a conversation (or the one picked), or None when none is found."""
        command = c.SearchAnswers(
            await self.actor(user, name, timeout=EVENT_LOOKUP), (), conversation_id=conversation_id, limit=3, answer_id=answer_id
        )
        outcome = await attempt(self.bus, command)
        return outcome.result if isinstance(outcome, Done) and outcome.result is not None and outcome.result.answers else None

    async def _offer_answers(
        self, client: AsyncWebClient, verb: verbs.Verb, conversation_id: int, view: dict[str, Any], *, user: str
    ) -> None:
        """Add the select of the saved answers that fit to an open form (`views.update` with the view's hash:
        a form changed meanwhile is left as it is; what was typed in it stays, its blocks keeping their ids)."""
        try:
            found = await self._answers(user, None, conversation_id)
            if found is None or not view.get("id"):
                return
            picks = tuple((a.id, a.title) for a in found.answers)
            form = render.form_modal(views.button(verb, conversation_id, picks=picks), choices=self.choices)
            await client.views_update(view_id=view["id"], hash=view.get("hash"), view=form)
        except SlackApiError as exc:
            logger.info("could not add saved answers to the form for %s: %s", user, exc.response.get("error"))
        except DomainError as exc:
            logger.info("no saved answers offered to %s: %s", user, exc)

    async def on_pick_answer(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient) -> None:
        """A saved answer chosen in a form: its text fills the form's text input (`views.update`), editable;
        the form keeps offering the answers, and carries the chosen one's id to the command."""
        await ack()
        view = body.get("view") or {}
        user = body["user"]["id"]
        try:
            verb = codec.verb_of(str(view.get("callback_id", "")).removeprefix(render.FORM_PREFIX))
            conversation_id = parse_conversation_id(json.loads(view.get("private_metadata") or "{}").get("id", ""))
            answer_id = verbs.picked_id(str((action.get("selected_option") or {}).get("value") or ""))
            if answer_id is None or not verb.picks:
                return
            found = await self._answers(user, body["user"].get("name"), conversation_id, answer_id)
        except (ValueError, AttributeError, DomainError) as exc:
            logger.info("saved answer not put in the form for %s: %r", user, exc)
            return
        if found is None:
            return
        picks = render.picks_of(view) or [(a.id, a.title) for a in found.answers]  # the select as it was offered
        text_input = next((i.name for i in verb.inputs if i.kind == "text"), "text")
        form = render.form_modal(
            views.button(verb, conversation_id, picks=picks),
            choices=self.choices,
            initial={text_input: found.answers[0].text},
            picked=answer_id,
        )
        try:
            await client.views_update(view_id=view.get("id"), hash=view.get("hash"), view=form)
        except SlackApiError as exc:
            logger.info("could not put the saved answer in the form for %s: %s", user, exc.response.get("error"))

    async def on_answer_button(
        self,
        body: dict[str, Any],
        action: dict[str, Any],
        *,
        tell: Callable[[dict[str, Any]], Awaitable[None]],
        waiting: _Waiting,
        respond: AsyncRespond,
    ) -> None:
        """A click on an answer's own button (acked already): its command, carried out (the core checks it
        again, as if typed). What was done replaces the answer (so its button is gone); a refusal, an answer
        that can no longer be replaced (its `response_url` used up), or a click on a message everyone sees
        (a notice's button), comes as a new ephemeral."""
        await self.answers.turn()
        user = body["user"]["id"]
        try:
            command = codec.action_command(action.get("value") or "", await self.actor(user, body["user"].get("name")))
        except DomainError as exc:
            await tell(said(Refused.of(exc)))
            return
        outcome = await self.carry_out(command, waiting=waiting)
        # Only an ephemeral answer is replaced: a button on a channel message (a spike alert's "See all")
        # answers the clicker alone and leaves the message to everyone else.
        ephemeral = (body.get("container") or {}).get("is_ephemeral") is True
        if isinstance(outcome, Done) and body.get("response_url") and ephemeral:
            try:
                replaced = await respond(replace_original=True, response_type="ephemeral", **said(outcome))
                if replaced.status_code == 200:
                    return
                logger.info("could not replace the answer for %s (HTTP %s); telling them anew", user, replaced.status_code)
            except Exception as exc:  # noqa: BLE001 - Slack took the click; say what was done another way
                logger.info("could not replace the answer for %s (%r); telling them anew", user, exc)
        await tell(said(outcome))

    async def _ephemeral(self, client: AsyncWebClient, channel: str | None, user: str, message: dict[str, Any]) -> None:
        """A message only `user` sees in `channel` (nothing when the click came from nowhere we can post)."""
        if not channel:
            return
        try:
            await client.chat_postEphemeral(channel=channel, user=user, **message)
        except SlackApiError as exc:
            logger.info("could not tell %s in %s: %s", user, channel, exc.response.get("error"))
        except Exception as exc:  # Slack unreachable: the action itself is done or refused all the same
            logger.warning("could not tell %s in %s: %r", user, channel, exc)

    # Modals ------------------------------------------------------------------------

    async def on_form(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient) -> None:
        """A verb's form (reply, note, resolve…, see `bot.verbs`): errors come back inside the modal (within 3 s),
        under its first input.

        `plain_text_input` values arrive raw (Slack does not escape them): used as they are.
        """
        verb = codec.verb_of(view["callback_id"].removeprefix(render.FORM_PREFIX))
        values = render.values_of(view)
        user = body["user"]["id"]
        field = render.block_of(view, verb.inputs[0].name if verb.inputs else "text")  # errors go under it
        try:
            conversation_id = parse_conversation_id(json.loads(view.get("private_metadata") or "{}").get("id", ""))
        except (ValueError, KeyError, AttributeError, DomainError):
            await ack(response_action="errors", errors={field: "This form is out of date; close it and try again."})
            return

        waiting = _Waiting(partial(self._tell, client, user, STORE_WAIT))

        async def work() -> Outcome:
            actor = await self.actor(user, body["user"].get("name"), timeout=EVENT_LOOKUP)
            return await self.carry_out(verb.command(conversation_id, actor, values), waiting=waiting)

        outcome = await self._within_budget(ack, work, field=field, user=user, client=client)
        if waiting.called and isinstance(outcome, Done) and outcome.result is not None:  # told it was kept: now what became of it
            await self._tell(client, user, render.escape(outcome.result.text) or "Done.")

    async def _within_budget(
        self, ack: AsyncAck, work: Callable[[], Awaitable[Outcome]], *, field: str, user: str, client: AsyncWebClient
    ) -> Outcome:
        """Run a modal's work: its refusal (or apology) inside the modal if it ends within `MODAL_BUDGET`,
        else close the modal and tell the person by DM when it ends."""
        task = asyncio.ensure_future(work())
        done, _ = await asyncio.wait({task}, timeout=MODAL_BUDGET)
        if not done:
            await ack()
            outcome = await task
            if not isinstance(outcome, Done):
                await self._tell(client, user, said(outcome)["text"])
            return outcome
        outcome = task.result()
        if isinstance(outcome, Done):
            await ack()
        else:
            await ack(response_action="errors", errors={field: said(outcome)["text"][:150]})
        return outcome

    async def _tell(self, client: AsyncWebClient, user: str, message: str) -> None:
        """A private message to `user` (their DM with the app)."""
        try:
            await client.chat_postMessage(channel=user, text=message)
        except SlackApiError as exc:
            logger.info("could not tell %s: %s", user, exc.response.get("error"))

    async def on_report_shortcut(self, ack: AsyncAck, shortcut: dict[str, Any], client: AsyncWebClient) -> None:
        """ "Send to Unsilo" on any message: ask for the department and a link. The form opens within the
        trigger_id's 3 s whatever Slack or the store do: each lookup for it is bounded, and goes without."""
        await ack()
        message = shortcut.get("message") or {}
        channel, ts, user = _ref(shortcut.get("channel")), _ref(message, "ts"), shortcut["user"]["id"]
        link, departments = await asyncio.gather(self._permalink(client, channel, ts), self._departments(user))
        try:
            await client.views_open(
                trigger_id=shortcut["trigger_id"],
                view=render.report_modal(
                    departments=departments, text=text.to_plain(_ref(message, "text")), link=link, channel=channel, message_ts=ts
                ),
            )
        except SlackApiError as exc:
            logger.warning("could not open the report form for %s: %s", user, exc.response.get("error"))

    async def _permalink(self, client: AsyncWebClient, channel: str, ts: str) -> str:
        try:
            found = await asyncio.wait_for(client.chat_getPermalink(channel=channel, message_ts=ts), SHORTCUT_LOOKUP)
        except SlackApiError as exc:
            logger.info("no permalink for a reported message: %s", exc.response.get("error"))
            return ""
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            logger.info("no permalink for a reported message: %r", exc)
            return ""
        return _ref(found.data, "permalink")

    async def _departments(self, user: str) -> list[str]:
        try:
            outcome = await asyncio.wait_for(
                attempt(self.bus, c.ShowQueue(c.Actor("slack", user)), unavailable=UNAVAILABLE), SHORTCUT_LOOKUP
            )
        except UNAVAILABLE as exc:
            logger.warning("report form for %s offers no departments: the store did not answer (%r)", user, exc)
            return []
        counts = outcome.result.counts if isinstance(outcome, Done) and outcome.result else {}
        return sorted(counts.keys())

    async def on_report_modal(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient) -> None:
        """The reported message becomes a conversation of source `slack-report`."""
        values = render.values_of(view)
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
            assert isinstance(meta, dict)
        except (ValueError, AssertionError):
            await ack(response_action="errors", errors={"link": "This form is out of date; close it and try again."})
            return
        user = body["user"]["id"]

        async def work() -> Outcome:
            actor = await self.actor(user, body["user"].get("name"), timeout=EVENT_LOOKUP)
            return await self.carry_out(
                c.Report(
                    actor,
                    meta.get("text", ""),
                    link=values.get("link") or meta.get("link", ""),
                    department=values.get("department") or None,
                    external_id=f"{meta.get('channel', '')}:{meta.get('ts', '')}",
                ),
                waiting=partial(self._tell, client, user, STORE_WAIT),
            )

        outcome = await self._within_budget(ack, work, field="link", user=user, client=client)
        if isinstance(outcome, Done) and outcome.result is not None:
            await self._tell(client, user, render.escape(outcome.result.text))

    # Events ------------------------------------------------------------------------

    async def store_thread_note(
        self, body: dict[str, Any], resp: BoltResponse, next: Callable[[], Awaitable[Any]]
    ) -> BoltResponse:
        """Listener middleware of `message`: a human's reply in a card's thread is stored as a
        note BEFORE Slack gets its 200 (Slack never retries a 200). When storing fails or
        takes too long, Slack is answered 500 and retries; the retry is recognised by `event_id`."""
        event = body.get("event") or {}
        note = self._thread_note(event)
        if note is not None:
            try:
                outcome = await asyncio.wait_for(self._store(note, event, body), EVENT_BUDGET)
            except UNAVAILABLE as exc:  # the store did not answer (in time)
                logger.error("thread note %s not stored (%r); answering 500 so Slack sends it again", body.get("event_id"), exc)
                return BoltResponse(status=500, body="")
            if isinstance(outcome, Failed):  # logged by `attempt`; a refusal was logged by the bus
                return BoltResponse(status=500, body="")  # so that Slack sends it again
        await next()
        return resp

    def _thread_note(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """The parts of a message event that make a thread note, or None when it is not one."""
        if event.get("bot_id") or event.get("subtype") not in (None, "thread_broadcast", "file_share"):
            return None
        thread, user = event.get("thread_ts"), _ref(event.get("user"))
        if not thread or thread == event.get("ts") or not user:
            return None
        return {"user": user, "channel": _ref(event.get("channel")), "thread": str(thread)}

    async def _store(self, note: dict[str, Any], event: dict[str, Any], body: dict[str, Any]) -> Outcome:
        # Both lookups at once, each bounded: the note must be stored within Slack's 3 s.
        plain, actor = await asyncio.gather(
            self.plain(event.get("text"), timeout=EVENT_LOOKUP), self.actor(note["user"], timeout=EVENT_LOOKUP)
        )
        said = "\n".join(line for line in [plain, *_files(event)] if line)
        command = c.ThreadNote(actor, channel_id=note["channel"], message_id=note["thread"], text=said)
        key = body.get("event_id") or f"{note['channel']}:{event.get('ts')}"
        return await attempt(self.bus, command, event_id=key, unavailable=UNAVAILABLE)

    async def on_message(self) -> None:
        """Thread notes are stored by `store_thread_note`, before the ack; nothing is left to do."""

    async def on_other_event(self, event: dict[str, Any]) -> None:
        """An event Unsilo does not act on (not in the manifest, or a type Slack added)."""
        logger.debug("Slack event %s ignored", event.get("type"))

    async def on_uninstalled(self, event: dict[str, Any]) -> None:
        """The app was removed: say so loudly; cards for Slack will fail until it is reinstalled."""
        logger.error("Slack says the app was uninstalled or its tokens revoked (%s)", event.get("type"))
        if self.health is not None:
            self.health.degraded(f"Slack sent {event.get('type')}: reinstall the app and set the new SLACK_BOT_TOKEN")

    async def on_home_opened(self, event: dict[str, Any], client: AsyncWebClient) -> None:
        """The App Home tab: my conversations, the open queue with counts, recent outcomes."""
        user = _ref(event.get("user"))
        if event.get("tab") not in (None, "home") or not user:
            return
        actor = await self.actor(user)
        shown = []
        for command in (c.ShowQueue(actor, mine=True), c.ShowQueue(actor), c.ShowRecent(actor)):
            try:
                outcome = await attempt(self.bus, command, unavailable=UNAVAILABLE)
            except UNAVAILABLE as exc:  # the tab keeps what it showed; it is drawn again when next opened
                logger.warning("Home tab of %s not refreshed: the store did not answer (%r)", user, exc)
                return
            if not isinstance(outcome, Done) or outcome.result is None:
                return  # refused (logged by the bus) or failed (logged by `attempt`): the tab keeps what it showed
            shown.append(outcome.result)
        mine, queue, recent = shown
        try:
            await client.views_publish(user_id=user, view=render.home_view(mine=mine, queue=queue, recent=recent))
        except SlackApiError as exc:
            logger.warning("could not publish the Home tab of %s: %s", user, exc.response.get("error"))
