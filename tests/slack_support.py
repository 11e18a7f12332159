"""Slack requests built from the real samples in ../shared/reference/slack, signed as Slack signs them,
sent over HTTP to the real service with the Web API stood in for on loopback."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aiohttp

from adapters.slack import render
from adapters.slack.app import STORE_WAIT, WORKING
from bot import verbs, views
from bot.app import create_app
from bot.bootstrap import Container, build, load_config, settings_from_env
from bot.verbs import Input
from bot.views import Button
from tests.conftest import migrated_sqlite, reference_dir
from tests.standins import serve
from tests.standins.slack_api import SlackStandIn, sign

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-test-token"

SLACK_CONFIG = """
[unsilo]
admins = ["slack:UADMIN"]

[departments.triage]
channels = ["slack:C0TRIAGE"]

[departments.support]
managers = ["slack:UMANAGER"]
channels = ["slack:C0SUPPORT"]

[departments.ops]
channels = ["slack:C0OPS"]

[[rules]]
name = "support"
departments = ["support"]
any = ["refund", "broken"]

[[rules]]
name = "delivery"
departments = ["ops"]
any = ["parcel", "courier"]

[[rules]]
name = "legal threats"
departments = ["support"]
any = ["lawyer"]
sensitive = true
"""


def sample(name: str) -> dict[str, Any]:
    """A fresh copy of a reference payload."""
    return copy.deepcopy(json.loads((reference_dir() / "slack" / name).read_text()))


def thread_reply(
    thread_ts: str, text: str, *, user: str = "UBOB", at: str = "1700000100.000200", channel: str = "C0SUPPORT"
) -> dict[str, Any]:
    """A person's reply in a thread, from the recorded channel `message` event (its blocks dropped: they
    would show the sample's own text), as Slack sends it inside an Events API callback."""
    event = sample("event_callback.message.json")["event"]
    event.pop("blocks", None)
    event.update(text=text, user=user, ts=at, event_ts=at, thread_ts=thread_ts, channel=channel)
    return event


def slash_command(text: str, *, response_url: str, user_id: str = "UALICE", **fields: str) -> bytes:
    """The form body of `/unsilo <text>`, from the recorded slash command sample, as Slack posts it.

    `fields` override the sample's others (`channel_id`, `team_id`, `enterprise_id`...).
    """
    raw = (reference_dir() / "slack" / "slash_command.form-urlencoded.txt").read_text()
    form = dict(parse_qsl(raw))
    form.update(command="/unsilo", text=text, user_id=user_id, user_name=user_id.lower(), response_url=response_url, **fields)
    return urlencode(form).encode()


@dataclass
class SlackHarness:
    """The running service, the Slack stand-in, and helpers that speak to the service like Slack."""

    container: Container
    slack: SlackStandIn
    url: str
    http: aiohttp.ClientSession

    async def post(
        self,
        body: bytes,
        *,
        content_type: str,
        headers: dict[str, str] | None = None,
        signed: bool = True,
        timestamp: int | None = None,
    ) -> tuple[int, str, float]:
        """POST to /slack/events; returns (status, body, seconds until the answer)."""
        all_headers = {"Content-Type": content_type, **(sign(SECRET, body, timestamp) if signed else {}), **(headers or {})}
        started = time.perf_counter()
        async with self.http.post(f"{self.url}/slack/events", data=body, headers=all_headers) as response:
            text = await response.text()
        return response.status, text, time.perf_counter() - started

    async def command(
        self,
        text: str,
        *,
        user: str = "UALICE",
        channel: str = "C0SUPPORT",
        wait: float = 5.0,
        response_url: str | None = None,
        headers: dict[str, str] | None = None,
        signed: bool = True,
        timestamp: int | None = None,
        **fields: str,
    ) -> tuple[int, str, float]:
        """`/unsilo <text>` as a form body (`slash_command`, `fields` overriding the sample's), with a
        `response_url` on the stand-in (a fresh one unless given); returns (status, what the person is
        answered, seconds to the ack).

        The answer is the ack's body, else the first post to the `response_url` other than the
        notices that it is coming (waited for up to `wait` seconds; "" when none came).
        """
        url = response_url or self.slack.response_url()
        form = slash_command(text, response_url=url, user_id=user, channel_id=channel, **fields)
        status, body, seconds = await self.post(
            form, content_type="application/x-www-form-urlencoded", headers=headers, signed=signed, timestamp=timestamp
        )
        if body or status != 200:
            return status, body, seconds
        return status, await self.answer_at(url, wait=wait), seconds

    async def identified(self, timeout: float = 10.0) -> None:
        """Wait until the start-up `auth.test` was answered (the bot knows its workspace then)."""
        deadline = time.monotonic() + timeout
        while not any(c.status is not None for c in self.slack.calls_to("auth.test")):
            if time.monotonic() > deadline:
                raise TimeoutError("auth.test was never answered")
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)

    async def answer_at(self, url: str, *, wait: float = 5.0) -> str:
        """The first answer posted to `url` other than the notices that it is coming ("Working on it…", the
        store is not answering) ("" if none came in `wait` s)."""
        deadline = time.monotonic() + wait
        while True:
            answers = [a for a in self.slack.answers(url) if a not in (WORKING, STORE_WAIT)]
            if answers or time.monotonic() > deadline:
                return answers[0] if answers else ""
            await asyncio.sleep(0.01)

    async def interactive(self, payload: dict[str, Any], **kwargs: Any) -> tuple[int, str, float]:
        """An interactive payload as Slack sends it: one form field `payload`."""
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return await self.post(body, content_type="application/x-www-form-urlencoded", **kwargs)

    async def click(
        self,
        action_id: str,
        value: str,
        *,
        user: str = "UALICE",
        channel: str = "C0SUPPORT",
        message_ts: str = "1700000000.000100",
        **kwargs: Any,
    ) -> tuple[int, str, float]:
        """A button click, from the block_actions sample."""
        payload = sample("block_actions.button.json")
        payload["user"].update(id=user, username=user.lower(), name=user.lower())
        payload["channel"]["id"] = channel
        payload["container"].update(channel_id=channel, message_ts=message_ts, is_ephemeral=False)
        payload["actions"][0].update(action_id=action_id, value=value)
        return await self.interactive(payload, **kwargs)

    async def submit(
        self, view: dict[str, Any], values: dict[str, dict[str, Any]], *, user: str = "UALICE"
    ) -> tuple[int, str, float]:
        """A modal submission of `view` with state `values`, from the view_submission sample."""
        payload = sample("view_submission.json")
        payload["user"].update(id=user, username=user.lower(), name=user.lower())
        payload["view"].update(
            callback_id=view["callback_id"],
            private_metadata=view.get("private_metadata", ""),
            blocks=view["blocks"],
            state={"values": values},
        )
        return await self.interactive(payload)

    async def event(
        self, event: dict[str, Any], *, event_id: str, headers: dict[str, str] | None = None
    ) -> tuple[int, str, float]:
        """An Events API callback around `event`, from the message event sample."""
        envelope = sample("event_callback.message.json")
        envelope.update(event=event, event_id=event_id)
        return await self.post(json.dumps(envelope).encode(), content_type="application/json", headers=headers)

    async def deliver(self) -> int:
        """Run the outbox until nothing is due."""
        return await self.container.worker().run_until_idle()


@asynccontextmanager
async def running_slack(
    tmp_path: Path, *, database_url: str | None = None, clock: Any = None, **standin: Any
) -> AsyncIterator[SlackHarness]:
    """The whole service on a free loopback port, Slack enabled, its Web API stood in for."""
    reference_dir()  # every test on this harness replays the real samples: skip here when they are absent
    config_path = tmp_path / "slack.toml"
    config_path.write_text(SLACK_CONFIG)
    async with SlackStandIn(**standin) as slack:
        settings = settings_from_env(
            {"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": slack.url},
            database_url=database_url or await migrated_sqlite(tmp_path / "slack.db"),
        )
        container = build(settings, config=load_config(config_path), **({"clock": clock} if clock else {}))
        runner, url = await serve(create_app(container, run_worker=False))
        try:
            async with aiohttp.ClientSession() as http:
                yield SlackHarness(container=container, slack=slack, url=url, http=http)
        finally:
            await runner.cleanup()


def text_modal(*, verb: str, conversation_id: int, title: str, label: str, submit: str, initial: str = "") -> dict[str, Any]:
    """A verb form asking for one text (as reply, note, dismiss and reject do), with these labels."""
    button = Button(label, verb, conversation_id, inputs=(Input("text", label),), title=title, submit=submit)
    return render.form_modal(button, choices={}, initial={"text": initial})


def resolve_modal(*, conversation_id: int, outcomes: Sequence[str]) -> dict[str, Any]:
    """The resolve verb's form, offering these outcomes."""
    return render.form_modal(views.button(verbs.VERBS["resolve"], conversation_id), choices=verbs.choice_lists(outcomes=outcomes))
