"""Hostile input never gets a 500: hypothesis over every field of a signed webhook body, of signed
Slack requests (Events API, interactivity, slash commands) and of Teams activities, sent over HTTP
to the running service. Only 2xx/4xx answers, never a traceback in the log (Slack's listeners run
after the ack: each example waits for what its request started), and a refused request leaves
the store as it was."""

from __future__ import annotations

import asyncio
import copy
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

from adapters.slack import render
from adapters.sources.webhooks import sign
from bot import codec
from bot.app import create_app
from bot.bootstrap import Container, build, load_config, settings_from_env
from bot.ingest import make_incoming
from bot.views import Button
from storage.models import Conversation, Event, Identity, InboundEvent, Note, Person, Posting, Reply
from tests import slack_support
from tests.conftest import REFERENCE, TEST_CONFIG, reference_dir
from tests.standins import serve
from tests.standins.slack_api import SlackStandIn
from tests.standins.slack_api import sign as slack_sign

SECRET = "fuzz-secret"
SLACK_SECRET = "fuzz-slack-signing-secret"
SLACK_CHANNEL, CARD_TS = "C111", "1700000000.000100"  # the samples' channel; a card posted there (a thread to reply in)
# The same examples in every run (CI too); UNSILO_FUZZ_EXAMPLES=5000 explores new ones, many more of them.
EXPLORING = bool(os.environ.get("UNSILO_FUZZ_EXAMPLES"))
EXAMPLES = int(os.environ.get("UNSILO_FUZZ_EXAMPLES") or 150)


@dataclass
class Service:
    """The service running on its own event loop in a thread, so hypothesis can drive it synchronously."""

    container: Container
    loop: asyncio.AbstractEventLoop
    slack: SlackStandIn
    url: str = ""
    card_id: int = 0  # the conversation whose card is at CARD_TS in SLACK_CHANNEL
    tracebacks: list[logging.LogRecord] = field(default_factory=list)

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def conversations(self) -> int:
        async def count() -> int:
            async with self.container.uow() as uow:
                return (await uow.session.exec(select(func.count()).select_from(Conversation))).one()

        return int(self.run(count()))

    def store(self) -> tuple[int, ...]:
        """How many rows each table a Slack request may write holds."""

        async def counts() -> tuple[int, ...]:
            async with self.container.uow() as uow:
                return tuple(
                    [
                        (await uow.session.exec(select(func.count()).select_from(table))).one()
                        for table in (Conversation, Note, Reply, Event, InboundEvent, Person, Identity)
                    ]
                )

        return tuple(self.run(counts()))

    def to_slack(self, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> int:
        """POST a signed request to /slack/events, then wait for the work it started after its answer."""
        before = self.run(_tasks())
        status = self.post(
            "/slack/events", body, {"Content-Type": content_type, **slack_sign(SLACK_SECRET, body), **(headers or {})}
        )
        self.run(_settled(before))
        return status

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        request = urllib.request.Request(f"{self.url}{path}", data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)


async def _tasks() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks()


async def _settled(before: set[asyncio.Task[Any]], timeout: float = 10.0) -> None:
    """Wait until every task started since `before` has ended (Slack listeners run after the ack)."""
    me = asyncio.current_task()
    try:
        async with asyncio.timeout(timeout):
            while [t for t in asyncio.all_tasks() if t is not me and t not in before and not t.done()]:
                await asyncio.sleep(0.002)
    except TimeoutError:
        left = [t for t in asyncio.all_tasks() if t is not me and t not in before and not t.done()]
        raise AssertionError(f"work started by the request still running after {timeout:g}s: {left}") from None


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
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    slack = SlackStandIn()  # the samples' workspace, T111
    asyncio.run_coroutine_threadsafe(slack.start(), loop).result(10)
    settings_ = settings_from_env(
        {
            "UNSILO_TEAMS_LOCAL": "1",
            "SLACK_BOT_TOKEN": "xoxb-fuzz",
            "SLACK_SIGNING_SECRET": SLACK_SECRET,
            "SLACK_API_URL": slack.url,
        },
        database_url=f"sqlite+aiosqlite:///{tmp / 'fuzz.db'}",
    )
    container = build(settings_, config=load_config(tmp / "unsilo.toml"))
    svc = Service(container=container, loop=loop, slack=slack)
    handler = _Tracebacks(svc.tracebacks)
    logging.getLogger().addHandler(handler)

    async def start() -> Any:
        runner, url = await serve(create_app(container, run_worker=False))
        async with container.uow() as uow:
            source = await uow.sources.ensure("listening", kind="webhook")
            source.secret = SECRET
            await uow.commit()
        # A conversation whose card is posted in the samples' channel: the Slack examples claim it,
        # note on it and reply in its thread.
        report = await container.ingest(
            [make_incoming(source="reviews", external_id="slack-card", text="my refund never came", author_name="Priya")]
        )
        svc.card_id = report.new_ids[0]
        async with container.uow() as uow:
            uow.postings.add(Posting(conversation_id=svc.card_id, platform="slack", channel_id=SLACK_CHANNEL, message_id=CARD_TS))
            await uow.commit()
        async with asyncio.timeout(10):  # the start-up auth.test tells the bot its workspace
            while not any(call.status is not None for call in slack.calls_to("auth.test")):
                await asyncio.sleep(0.01)
        return runner, url

    runner, svc.url = svc.run(start())
    try:
        yield svc
    finally:
        svc.run(runner.cleanup())
        svc.run(slack.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        logging.getLogger().removeHandler(handler)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False)
    | st.text(max_size=80),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
hostile_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=300) | st.sampled_from(
    [
        "\u0000",
        "\ud800",
        "\u200b\u200d",
        "\u202e",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "http://169.254.169.254/",
        "javascript:alert(1)",
        "<!channel>",
        "",
        " ",
    ]
)
field_values = hostile_text | json_values
FIELDS = ("id", "text", "author", "url", "created_at", "channel", "reply_url", "title", "tags", "format")
author_values = field_values | st.fixed_dictionaries(
    {}, optional={"name": field_values, "handle": field_values, "url": field_values}
)


@given(st.fixed_dictionaries({}, optional={**{name: field_values for name in FIELDS}, "author": author_values}))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not EXPLORING,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_any_signed_webhook_body_gets_2xx_or_4xx_and_a_refusal_stores_nothing(service: Service, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    timestamp = str(int(time.time()))
    before = service.conversations()
    status = service.post(
        "/hooks/listening",
        body,
        {
            "Content-Type": "application/json",
            "X-Unsilo-Timestamp": timestamp,
            "X-Unsilo-Signature": sign(SECRET, timestamp, body),
        },
    )
    assert status < 500, (status, payload)
    if status != 200:
        assert service.conversations() == before
    assert not service.tracebacks, [r.getMessage() for r in service.tracebacks]


activity_fields = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            [
                "message",
                "invoke",
                "conversationUpdate",
                "installationUpdate",
                "messageReaction",
                "event",
                "typing",
                "endOfConversation",
            ]
        )
        | st.text(max_size=12)
    },
    optional={
        "id": field_values,
        "text": field_values,
        "value": json_values,
        "name": field_values,
        "channelId": st.just("msteams") | field_values,
        "serviceUrl": st.just("http://127.0.0.1:9/") | field_values,
        "from": json_values,
        "recipient": json_values,
        "conversation": json_values,
        "channelData": json_values,
        "entities": json_values,
        "attachments": json_values,
        "membersAdded": json_values,
        "replyToId": field_values,
    },
)


accounts = st.fixed_dictionaries(
    {"id": st.text(min_size=1, max_size=40)}, optional={"name": hostile_text, "aadObjectId": st.text(max_size=40)}
)
shaped_activities = st.fixed_dictionaries(  # what the Bot Connector sends, with hostile values inside
    {
        "type": st.sampled_from(["message", "invoke", "conversationUpdate", "installationUpdate", "messageReaction"]),
        "serviceUrl": st.just("http://127.0.0.1:9/"),
        "channelId": st.just("msteams"),
        "from": accounts,
        "recipient": accounts,
        "conversation": st.fixed_dictionaries(
            {"id": st.text(min_size=1, max_size=60) | st.just("19:x@thread.tacv2;messageid=123")},
            optional={
                "conversationType": st.sampled_from(["personal", "channel", "groupChat"]),
                "tenantId": st.text(max_size=40),
            },
        ),
    },
    optional={
        "id": st.text(max_size=30),
        "text": hostile_text,
        "value": json_values,
        "channelData": st.dictionaries(
            st.sampled_from(["tenant", "team", "channel", "teamsChannelId", "eventType", "settings"]), json_values, max_size=4
        ),
        "name": st.sampled_from(["adaptiveCard/action", "composeExtension/submitAction", "task/fetch"]) | st.text(max_size=20),
        "entities": st.lists(
            st.dictionaries(st.sampled_from(["type", "text", "mentioned"]), json_values | st.just("mention"), max_size=3),
            max_size=3,
        ),
        "attachments": st.lists(
            st.dictionaries(st.sampled_from(["contentType", "content"]), json_values, max_size=2), max_size=2
        ),
        "membersAdded": st.lists(accounts, max_size=2),
    },
)


@given(activity_fields | shaped_activities)
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not EXPLORING,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_any_teams_activity_gets_2xx_or_4xx_never_a_500(service: Service, activity: dict[str, Any]) -> None:
    status = service.post("/api/messages", json.dumps(activity).encode(), {"Content-Type": "application/json"})
    # An invoke the bot does not implement is answered 501, as the Bot Framework specifies (its SDK does so too).
    assert status < 500 or status == 501 and activity["type"] == "invoke", (status, activity)
    assert not service.tracebacks, [r.getMessage() for r in service.tracebacks]


# Slack ---------------------------------------------------------------------------------------------
# Real payloads (../shared/reference/slack, read when the first example is drawn) with hostile values put
# into any of their fields, fields dropped and added; plus free-form JSON and bodies that are not JSON.

SLACK_EVENTS = (
    "event_callback.message.json",
    "event_callback.app_mention.json",
    "event_callback.app_mention.authorizations.json",
    "event_callback.message_changed.json",
    "event_callback.message.bot_message.json",
    "event_callback.message.file_share.json",
    "event_callback.message.thread_broadcast.json",
    "event_callback.app_mention.recorded.json",
    "event_callback.message.im.recorded.json",
    "event_callback.reaction_added.recorded.json",
    "url_verification.json",
)  # not app_uninstalled: it rightly logs an ERROR (the app is gone)
SLACK_INTERACTIONS = (
    "block_actions.button.json",
    "block_actions.button.recorded.json",
    "block_actions.static_select.recorded.json",
    "view_submission.json",
    "view_submission.recorded.json",
    "view_submission.response_urls.json",
    "message_action.shortcut.json",
)
# app_home_opened, from slackapi/bolt-python @ cb21b23079a97354e5d25ba0ccb99c8c4cc2090d :
# tests/scenario_tests_async/test_events_org_apps.py (test_app_home_opened), made a workspace install of
# T111 (its authorizations named only an org) with the Home tab open.
APP_HOME_OPENED = {
    "token": "verification-token",
    "team_id": "T111",
    "enterprise_id": "E111",
    "api_app_id": "A111",
    "event": {"type": "app_home_opened", "user": "W111", "channel": "D111", "tab": "home", "event_ts": "1606810927.510671"},
    "type": "event_callback",
    "event_id": "Ev111",
    "event_time": 1606810927,
    "authorizations": [
        {"enterprise_id": "E111", "team_id": "T111", "user_id": "W111", "is_bot": True, "is_enterprise_install": False}
    ],
    "is_ext_shared_channel": False,
}
VERBS = ("claim", "release", "show", "approve", "posted", "open", "reply", "note", "dismiss", "reject", "resolve")
COMMAND_TEXTS = (
    "help",
    "queue",
    "mine",
    "claim #{id}",
    "release #{id}",
    "show #{id}",
    "note #{id} ",
    "reply #{id} ",
    "resolve #{id} ",
    "dismiss #{id} ",
    "search ",
    "report https://forum.example.com/t/1 ",
    "link support",
    "unlink",
    "digest",
    "stats",
    "approvals",
    "reassign #{id} <@U222>",
    "#{id}",
    "",
)
# Where the service posts its answer: kept on the stand-in or not a URL at all (a signed request's
# response_url is Slack's own; any host would only make an example wait on the network).
RESPONSE_URLS = st.sampled_from(["", "not a url", "http://", "ftp://x/y", "\u0000"]) | st.builds(
    lambda n: f"RESPONSE_URL/{n}", st.integers(0, 9)
)


def _slack_sample(name: str) -> dict[str, Any]:
    return json.loads((REFERENCE / "slack" / name).read_text())


def _paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every field's path in a JSON document (dict keys, list indexes), outermost first."""
    found = [at] if at else []
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found += _paths(child, (*at, key))
    return found


@st.composite
def mutated(draw: st.DrawFn, document: dict[str, Any]) -> Any:
    """`document` with a few of its fields (any depth) given hostile values or dropped, and keys added."""
    doc = copy.deepcopy(document)
    paths = _paths(doc)
    for path in draw(st.lists(st.sampled_from(paths), max_size=4, unique=True)) if paths else ():
        parent: Any = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            if draw(st.integers(0, 4)) == 0:
                del parent[path[-1]]
            else:
                parent[path[-1]] = draw(field_values)
        except (KeyError, IndexError, TypeError):  # an earlier change removed or replaced its parent
            continue
    for key, value in draw(st.dictionaries(st.text(max_size=10), field_values, max_size=2)).items():
        doc[key] = value
    return doc


def _thread_reply() -> dict[str, Any]:
    envelope = _slack_sample("event_callback.message.json")
    envelope["event"].update(thread_ts=CARD_TS, ts="1700000100.000200", text="called her, all good &amp; done")
    envelope["event"].pop("blocks")
    return envelope


def _click(verb: str, card_id: int) -> dict[str, Any]:
    payload = _slack_sample("block_actions.button.json")
    button = Button(verb.title(), verb, card_id)
    payload["actions"][0].update(action_id=render.action_id(button), value=codec.encode(button))
    payload["container"].update(message_ts=CARD_TS, is_ephemeral=False)
    return payload


def _submission(callback: str, card_id: int) -> dict[str, Any]:
    payload = _slack_sample("view_submission.json")
    if callback == "report":
        view = render.report_modal(
            departments=["support"], text="customer says it broke", link="", channel=SLACK_CHANNEL, message_ts=CARD_TS
        )
        values = {
            "department": {"department": {"type": "static_select", "selected_option": {"value": "support"}}},
            "link": {"link": {"type": "plain_text_input", "value": "https://forum.example.com/t/2"}},
        }
    elif callback == "resolve":
        view = slack_support.resolve_modal(conversation_id=card_id, outcomes=["answered"])
        values = {
            "outcome": {"outcome": {"type": "static_select", "selected_option": {"value": "answered"}}},
            "text": {"text": {"type": "plain_text_input", "value": "done"}},
        }
    else:
        view = slack_support.text_modal(verb=callback, conversation_id=card_id, title="t", label="l", submit="s")
        values = {"text": {"text": {"type": "plain_text_input", "value": "see &lt;this&gt;"}}}
    payload["view"].update(
        callback_id=view["callback_id"],
        private_metadata=view["private_metadata"],
        blocks=view["blocks"],
        state={"values": values},
    )
    return payload


def _shortcut() -> dict[str, Any]:
    payload = _slack_sample("message_action.shortcut.json")
    payload["callback_id"] = "unsilo_report"
    return payload


def _with_response_urls(service: Service, document: Any) -> Any:
    """RESPONSE_URL placeholders (anywhere) made URLs on the Slack stand-in."""
    encoded = json.dumps(document)
    return json.loads(encoded.replace("RESPONSE_URL/", service.slack.url + "commands/T111/1/"))


def slack_events() -> st.SearchStrategy[Any]:
    aimed = st.sampled_from([_thread_reply, lambda: copy.deepcopy(APP_HOME_OPENED)]).map(lambda make: make())
    samples = st.sampled_from(SLACK_EVENTS).map(_slack_sample)
    return (
        (samples | aimed).flatmap(mutated)
        | json_values
        | st.fixed_dictionaries(
            {"type": st.just("event_callback"), "team_id": st.just("T111"), "event": json_values},
            optional={"event_id": field_values, "authorizations": json_values},
        )
    )


def slack_interactions(card_id: int) -> st.SearchStrategy[Any]:
    aimed = (
        st.sampled_from(VERBS).map(lambda verb: _click(verb, card_id))
        | st.sampled_from(["reply", "note", "dismiss", "reject", "resolve", "report"]).map(
            lambda callback: _submission(callback, card_id)
        )
        | st.builds(_shortcut)
    )
    samples = st.sampled_from(SLACK_INTERACTIONS).map(_slack_sample)
    with_url = st.tuples(samples | aimed, RESPONSE_URLS).map(lambda pair: {**pair[0], "response_url": pair[1]})
    return (samples | aimed | with_url).flatmap(mutated) | json_values


def slash_commands(card_id: int) -> st.SearchStrategy[dict[str, Any]]:
    from urllib.parse import parse_qsl

    form = dict(parse_qsl((REFERENCE / "slack" / "slash_command.form-urlencoded.txt").read_text()))
    texts = st.sampled_from(COMMAND_TEXTS).map(lambda t: t.format(id=card_id))
    fields: dict[str, Any] = {name: st.just(value) | hostile_text for name, value in form.items()}
    fields.update(
        command=st.just("/unsilo") | hostile_text,
        text=texts | hostile_text | st.tuples(texts, hostile_text).map("".join),
        response_url=RESPONSE_URLS,
        user_id=st.sampled_from(["W111", "UBOB"]) | hostile_text,
    )
    return st.fixed_dictionaries({}, optional={**fields, **{n: hostile_text for n in ("channel_name", "api_app_id")}})


slack_headers = st.fixed_dictionaries(
    {},
    optional={
        "X-Slack-Retry-Num": st.sampled_from(["1", "3", "x"]),
        "X-Slack-Retry-Reason": st.sampled_from(["http_timeout", ""]),
    },
)


@pytest.fixture
def slack_samples(service: Service) -> Service:
    reference_dir()  # skips when the recorded samples are absent
    return service


def _refused_changes_nothing(service: Service, before: tuple[int, ...], status: int, sent: Any) -> None:
    assert status < 500, (status, sent)
    if not 200 <= status < 300:
        assert service.store() == before, (status, sent)
    assert not service.tracebacks, [r.getMessage() for r in service.tracebacks]


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not EXPLORING,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@given(data=st.data())
@FUZZ
def test_any_signed_slack_event_gets_2xx_or_4xx_and_a_refusal_stores_nothing(slack_samples: Service, data: st.DataObject) -> None:
    service = slack_samples
    body = data.draw(
        slack_events().map(lambda doc: json.dumps(doc).encode())
        | st.binary(max_size=64)
        | st.sampled_from([b"[" * 100_000 + b"]" * 100_000, b'{"type": "event_callback", "event": ' * 5000])
    )
    headers = data.draw(slack_headers)
    before = service.store()
    status = service.to_slack(body, "application/json", headers)
    _refused_changes_nothing(service, before, status, body)


@given(data=st.data())
@FUZZ
def test_any_signed_slack_interaction_gets_2xx_or_4xx_and_a_refusal_stores_nothing(
    slack_samples: Service, data: st.DataObject
) -> None:
    from urllib.parse import urlencode

    service = slack_samples
    payload = data.draw(
        slack_interactions(service.card_id).map(lambda doc: json.dumps(_with_response_urls(service, doc))) | hostile_text
    )
    form = data.draw(st.sampled_from(["payload", "payload ", ""]))  # the one field Slack sends, or not
    body = urlencode({form: payload}, errors="surrogatepass").encode() if form else payload.encode(errors="surrogatepass")
    before = service.store()
    status = service.to_slack(body, "application/x-www-form-urlencoded")
    _refused_changes_nothing(service, before, status, payload)


@given(data=st.data())
@FUZZ
def test_any_signed_slash_command_gets_2xx_or_4xx_and_a_refusal_stores_nothing(
    slack_samples: Service, data: st.DataObject
) -> None:
    from urllib.parse import urlencode

    service = slack_samples
    fields = _with_response_urls(service, data.draw(slash_commands(service.card_id)))
    body = urlencode(fields, errors="surrogatepass").encode()
    before = service.store()
    status = service.to_slack(body, "application/x-www-form-urlencoded")
    _refused_changes_nothing(service, before, status, fields)
