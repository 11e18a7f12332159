"""Hostile input never gets a 500: hypothesis over every field of a signed webhook body and over
Teams activities, sent over HTTP to the running service. Only 2xx/4xx answers, never a
traceback in the log, and a refused request leaves the store as it was."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import func, select

from adapters.sources.webhooks import sign
from bot.app import create_app
from bot.bootstrap import Container, build
from bot.config import load_config
from bot.settings import Settings
from storage.models import Conversation
from tests.conftest import TEST_CONFIG
from tests.standins import serve

SECRET = "fuzz-secret"
# The same examples in every run (CI too); UNSILO_FUZZ_EXAMPLES=5000 explores new ones, many more of them.
EXPLORING = bool(os.environ.get("UNSILO_FUZZ_EXAMPLES"))
EXAMPLES = int(os.environ.get("UNSILO_FUZZ_EXAMPLES") or 150)


@dataclass
class Service:
    """The service running on its own event loop in a thread, so hypothesis can drive it synchronously."""

    container: Container
    loop: asyncio.AbstractEventLoop
    url: str = ""
    tracebacks: list[logging.LogRecord] = field(default_factory=list)

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def conversations(self) -> int:
        async def count() -> int:
            async with self.container.uow() as uow:
                return (await uow.session.exec(select(func.count()).select_from(Conversation))).one()
        return int(self.run(count()))

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        request = urllib.request.Request(f"{self.url}{path}", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)


class _Tracebacks(logging.Handler):
    def __init__(self, sink: list[logging.LogRecord]) -> None:
        super().__init__(logging.WARNING)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.sink.append(record)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    (tmp / "unsilo.toml").write_text(TEST_CONFIG)
    settings_ = Settings(database_url=f"sqlite+aiosqlite:///{tmp / 'fuzz.db'}", teams_local=True)
    container = build(settings_, config=load_config(tmp / "unsilo.toml"))
    loop = asyncio.new_event_loop()
    svc = Service(container=container, loop=loop)
    handler = _Tracebacks(svc.tracebacks)
    logging.getLogger().addHandler(handler)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> Any:
        runner, url = await serve(create_app(container, run_worker=False))
        async with container.uow() as uow:
            source = await uow.sources.ensure("listening", kind="webhook")
            source.secret = SECRET
            await uow.commit()
        return runner, url

    runner, svc.url = svc.run(start())
    try:
        yield svc
    finally:
        svc.run(runner.cleanup())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        logging.getLogger().removeHandler(handler)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-10**20, max_value=10**20) | st.floats(allow_nan=False)
    | st.text(max_size=80),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)
hostile_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=300) | st.sampled_from([
    "\u0000", "\ud800", "\u200b\u200d", "\u202e", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
    "http://169.254.169.254/", "javascript:alert(1)", "<!channel>", "", " "])
field_values = hostile_text | json_values
FIELDS = ("id", "text", "author", "url", "created_at", "channel", "reply_url", "title", "tags", "format")
author_values = field_values | st.fixed_dictionaries(
    {}, optional={"name": field_values, "handle": field_values, "url": field_values})


@given(st.fixed_dictionaries({}, optional={**{name: field_values for name in FIELDS}, "author": author_values}))
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not EXPLORING,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_any_signed_webhook_body_gets_2xx_or_4xx_and_a_refusal_stores_nothing(service: Service,
                                                                               payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time()))
    before = service.conversations()
    status = service.post("/hooks/listening", body, {"Content-Type": "application/json",
                                                       "X-Unsilo-Timestamp": timestamp,
                                                       "X-Unsilo-Signature": sign(SECRET, timestamp, body)})
    assert status < 500, (status, payload)
    if status != 200:
        assert service.conversations() == before
    assert not service.tracebacks, [r.getMessage() for r in service.tracebacks]


activity_fields = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "invoke", "conversationUpdate", "installationUpdate", "messageReaction",
                              "event", "typing", "endOfConversation"]) | st.text(max_size=12)},
    optional={"id": field_values, "text": field_values, "value": json_values, "name": field_values,
              "channelId": st.just("msteams") | field_values, "serviceUrl": st.just("http://127.0.0.1:9/") | field_values,
              "from": json_values, "recipient": json_values, "conversation": json_values,
              "channelData": json_values, "entities": json_values, "attachments": json_values,
              "membersAdded": json_values, "replyToId": field_values})


accounts = st.fixed_dictionaries({"id": st.text(min_size=1, max_size=40)},
                                  optional={"name": hostile_text, "aadObjectId": st.text(max_size=40)})
shaped_activities = st.fixed_dictionaries(  # what the Bot Connector sends, with hostile values inside
    {"type": st.sampled_from(["message", "invoke", "conversationUpdate", "installationUpdate", "messageReaction"]),
     "serviceUrl": st.just("http://127.0.0.1:9/"), "channelId": st.just("msteams"), "from": accounts,
     "recipient": accounts,
     "conversation": st.fixed_dictionaries(
         {"id": st.text(min_size=1, max_size=60) | st.just("19:x@thread.tacv2;messageid=123")},
         optional={"conversationType": st.sampled_from(["personal", "channel", "groupChat"]),
                   "tenantId": st.text(max_size=40)})},
    optional={"id": st.text(max_size=30), "text": hostile_text, "value": json_values,
              "channelData": st.dictionaries(st.sampled_from(["tenant", "team", "channel", "teamsChannelId",
                                                              "eventType", "settings"]), json_values, max_size=4),
              "name": st.sampled_from(["adaptiveCard/action", "composeExtension/submitAction", "task/fetch"])
              | st.text(max_size=20),
              "entities": st.lists(st.dictionaries(st.sampled_from(["type", "text", "mentioned"]), json_values
                                                   | st.just("mention"), max_size=3), max_size=3),
              "attachments": st.lists(st.dictionaries(st.sampled_from(["contentType", "content"]), json_values,
                                                      max_size=2), max_size=2),
              "membersAdded": st.lists(accounts, max_size=2)})


@given(activity_fields | shaped_activities)
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not EXPLORING,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_any_teams_activity_gets_2xx_or_4xx_never_a_500(service: Service, activity: dict[str, Any]) -> None:
    status = service.post("/api/messages", json.dumps(activity).encode(), {"Content-Type": "application/json"})
    # An invoke the bot does not implement is answered 501, as the Bot Framework specifies (its SDK does so too).
    assert status < 500 or status == 501 and activity["type"] == "invoke", (status, activity)
    assert not service.tracebacks, [r.getMessage() for r in service.tracebacks]
