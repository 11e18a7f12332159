"""One platform's trouble never stops the others, and `/healthz` tells the truth.

Slack's Socket Mode is served by a loopback WebSocket stand-in that speaks Slack's protocol
(`tests/standins/slack_socket.py`); commands, clicks and events over the socket behave as
they do over HTTP.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from sqlmodel import select

import adapters.slack.service as slack_adapter
import bot.app as bot_app
from bot import codec
from bot.app import create_app
from bot.bootstrap import PLATFORMS, Container, build, load_config, settings_from_env
from bot.ingest import make_incoming
from bot.views import Button
from storage.db import create_engine
from storage.models import Conversation, Note
from tests.conftest import reference_dir
from tests.slack_support import SLACK_CONFIG, TOKEN, sample
from tests.standins import serve
from tests.standins.bot_connector import BotConnectorStandIn
from tests.standins.slack_api import SlackStandIn
from tests.standins.slack_socket import SocketModeStandIn
from tests.teams_support import TeamsHarness

GOOD_APP_TOKEN = "xapp-1-A00STANDAPP-1-valid"


@dataclass
class Service:
    """The whole service (Slack over Socket Mode, Teams local), its stand-ins and an HTTP client."""

    container: Container
    slack: SlackStandIn
    socket: SocketModeStandIn
    connector: BotConnectorStandIn
    url: str
    http: aiohttp.ClientSession

    async def health(self) -> tuple[int, dict[str, Any]]:
        async with self.http.get(f"{self.url}/healthz", timeout=aiohttp.ClientTimeout(total=5)) as response:
            return response.status, await response.json()

    async def wait_slack(self, state: str, timeout: float = 10.0) -> dict[str, Any]:
        """Poll /healthz until Slack reports `state` (the adapter reports from background tasks)."""
        async with asyncio.timeout(timeout):
            while True:
                _, body = await self.health()
                if body["platforms"]["slack"]["state"] == state:
                    return body
                await asyncio.sleep(0.1)

    def teams(self) -> TeamsHarness:
        return TeamsHarness(container=self.container, connector=self.connector, slack=None, url=self.url, http=self.http)


@asynccontextmanager
async def running(
    tmp_path: Path,
    *,
    app_token: str = GOOD_APP_TOKEN,
    run_worker: bool = True,
    env: dict[str, str] | None = None,
    **settings: Any,
) -> AsyncIterator[Service]:
    reference_dir()
    config_path = tmp_path / "unsilo.toml"
    config_path.write_text(SLACK_CONFIG)
    async with AsyncExitStack() as stack:
        slack = await stack.enter_async_context(SlackStandIn())
        socket = await stack.enter_async_context(SocketModeStandIn(slack))
        connector = await stack.enter_async_context(BotConnectorStandIn())
        platforms = {
            "SLACK_BOT_TOKEN": TOKEN,
            "SLACK_APP_TOKEN": app_token,
            "SLACK_API_URL": slack.url,
            "UNSILO_TEAMS_LOCAL": "1",
        }
        values: dict[str, Any] = dict(database_url=f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}")
        values.update(settings)
        container = build(settings_from_env({**platforms, **(env or {})}, **values), config=load_config(config_path))
        # Before the fix, start-up awaited the Socket Mode connection: the port never opened.
        runner, url = await asyncio.wait_for(serve(create_app(container, run_worker=run_worker)), 10)
        stack.push_async_callback(runner.cleanup)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        yield Service(container=container, slack=slack, socket=socket, connector=connector, url=url, http=http)


@pytest.fixture(autouse=True)
def quick_socket_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Socket Mode's ping/reconnect period and the backoff, shortened so outages play out in seconds."""
    monkeypatch.setattr(slack_adapter, "SOCKET_PING_INTERVAL", 0.5)
    monkeypatch.setattr(slack_adapter, "WATCH_EVERY", 0.1)
    monkeypatch.setattr(slack_adapter, "RETRY_FIRST", 0.2)
    monkeypatch.setattr(slack_adapter, "RETRY_MAX", 0.5)


async def test_a_refused_app_token_leaves_webhooks_teams_outbox_and_scheduler_up(tmp_path: Path) -> None:
    async with running(tmp_path, app_token="xapp-1-A00STANDAPP-1-revoked") as service:
        body = await service.wait_slack("degraded")
        status, body = await service.health()
        assert status == 200 and body["status"] == "degraded" and "slack" in body["degraded"]
        reason = body["platforms"]["slack"]["reason"]
        assert "SLACK_APP_TOKEN" in reason and "invalid_auth" in reason and "connections:write" in reason
        assert body["platforms"]["teams"]["state"] == "ok"
        assert body["scheduler"]["state"] == "running"
        # Teams answers a command while Slack is refused.
        status, _ = await service.teams().mention("help")
        assert status in (200, 201)
        async with asyncio.timeout(5):
            while not any("Unsilo commands" in json.dumps(call.body) for call in service.connector.calls):
                await asyncio.sleep(0.05)
        # The outbox delivers Slack cards with the (valid) bot token meanwhile.
        await service.container.ingest([make_incoming(source="reviews", external_id="1", text="my refund?", author_name="Priya")])
        await service.slack.wait_for("chat.postMessage", timeout=10)
        assert service.slack.messages("C0SUPPORT")


async def test_slack_unreachable_at_start_up_is_degraded_then_recovers(tmp_path: Path) -> None:
    async with running(tmp_path) as service:
        service.socket.refuse_connections = True
        await service.socket.drop()
        body = await service.wait_slack("degraded")
        assert "Socket Mode" in body["platforms"]["slack"]["reason"]
        service.socket.refuse_connections = False
        await service.wait_slack("ok")
        assert service.socket.connected


async def test_socket_mode_commands_clicks_and_thread_notes_work_as_over_http(tmp_path: Path) -> None:
    async with running(tmp_path, run_worker=False) as service:
        await service.wait_slack("ok")
        await service.socket.hello_sent.wait()
        # A slash command (the recorded form body's fields) is acked on the socket with the answer.
        fields = dict(parse_qsl((reference_dir() / "slack" / "slash_command.form-urlencoded.txt").read_text()))
        response_url = service.slack.response_url()
        fields.update(
            command="/unsilo",
            text="help",
            user_id="UALICE",
            channel_id="C0SUPPORT",
            team_id=service.slack.team_id,
            response_url=response_url,
        )
        envelope = await service.socket.send("slash_commands", fields)
        assert envelope.ack is not None  # acked at once on the socket, answered through response_url
        async with asyncio.timeout(5):
            while not any("Unsilo commands" in text for text in service.slack.answers(response_url)):
                await asyncio.sleep(0.05)

        report = await service.container.ingest(
            [make_incoming(source="reviews", external_id="1", text="the kettle is broken", author_name="Priya")]
        )
        cid = report.new_ids[0]
        assert await service.container.worker().run_until_idle() >= 1
        card_ts = service.slack.messages("C0SUPPORT")[-1]["ts"]

        # A button click (the recorded block_actions payload).
        click = sample("block_actions.button.json")
        click["user"].update(id="UALICE", username="alice", name="alice")
        click["channel"]["id"] = "C0SUPPORT"
        click["container"].update(channel_id="C0SUPPORT", message_ts=card_ts, is_ephemeral=False)
        click["actions"][0].update(action_id=f"unsilo:claim:{cid}", value=codec.encode(Button("Claim", "claim", cid)))
        await service.socket.send("interactive", click)

        # Slack asks for a fresh connection; the client reconnects and the next event still arrives.
        await service.socket.disconnect("refresh_requested")
        async with asyncio.timeout(10):
            while service.socket.connections < 2 or not service.socket.connected:
                await asyncio.sleep(0.05)
        event = sample("event_callback.message.json")
        event["event"] = {
            "type": "message",
            "user": "UBOB",
            "text": "called her, she is fine &amp; happy",
            "channel": "C0SUPPORT",
            "ts": "1700000100.000200",
            "thread_ts": card_ts,
        }
        event["event_id"] = "Ev0SOCKET1"
        await service.socket.send("events_api", event)

        async with asyncio.timeout(10):
            while True:
                async with service.container.uow() as uow:
                    conversation = (await uow.session.exec(select(Conversation).where(Conversation.id == cid))).one()
                    notes = (await uow.session.exec(select(Note).where(Note.conversation_id == cid))).all()
                if conversation.status == "claimed" and notes:
                    break
                await asyncio.sleep(0.05)
        assert "called her" in notes[0].text


def _reasons(env: dict[str, str]) -> dict[str, str | None]:
    """Why each platform is disabled with this environment (None: it starts)."""
    settings = settings_from_env(env)
    return {platform.name: settings.of(platform).missing() for platform in PLATFORMS}


async def test_only_an_app_token_names_the_missing_bot_token(tmp_path: Path) -> None:
    reasons = _reasons({"SLACK_APP_TOKEN": GOOD_APP_TOKEN})
    assert reasons["slack"] is not None and reasons["slack"].startswith("SLACK_BOT_TOKEN is not set")
    reasons = _reasons({"SLACK_BOT_TOKEN": TOKEN})
    assert reasons["slack"] is not None and "SLACK_SIGNING_SECRET" in reasons["slack"]


async def test_teams_with_an_app_id_but_no_password_is_disabled_with_what_to_set(tmp_path: Path) -> None:
    async with running(
        tmp_path, env={"UNSILO_TEAMS_LOCAL": "", "MicrosoftAppId": "00000000-0000-0000-0000-000000000001"}
    ) as service:
        _, body = await service.health()
        teams = body["platforms"]["teams"]
        assert teams["state"] == "disabled" and not teams["enabled"] and "MicrosoftAppPassword" in teams["reason"]


async def test_a_refused_bot_token_is_degraded_naming_slack_bot_token(tmp_path: Path) -> None:
    async with running(tmp_path, env={"SLACK_BOT_TOKEN": "xoxe-not-a-bot-token"}) as service:  # the stand-in says invalid_auth
        body = await service.wait_slack("degraded")
        assert "SLACK_BOT_TOKEN" in body["platforms"]["slack"]["reason"]


@pytest.fixture
def short_health_cache(monkeypatch: pytest.MonkeyPatch) -> float:
    """The store's figures are cached for 2 s in production; these tests wait it out, so keep it short.
    Returns how long to sleep to be past it."""
    monkeypatch.setattr(bot_app, "HEALTH_CACHE_SECONDS", 0.2)
    return 0.3


async def test_health_shows_the_outbox_backlog_and_503_when_the_store_is_unreachable(
    tmp_path: Path, short_health_cache: float
) -> None:
    async with running(tmp_path, run_worker=False) as service:
        await service.container.ingest(
            [make_incoming(source="reviews", external_id=str(i), text="refund please", author_name="Priya") for i in range(3)]
        )
        await asyncio.sleep(short_health_cache)  # past the health cache
        status, body = await service.health()
        assert status == 200
        assert body["outbox"]["pending"] >= 3 and body["outbox"]["oldest_due"] is not None
        assert body["feeds"] == {"failing": 0}
        working = service.container.engine
        service.container.engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:1/test")
        try:
            await asyncio.sleep(short_health_cache)
            status, body = await service.health()
            assert status == 503 and body["status"] == "down" and body["store"]["reachable"] is False
        finally:
            await service.container.engine.dispose()
            service.container.engine = working


async def test_a_stalled_postgresql_gets_a_503_within_2_seconds_and_recovery_by_itself(
    tmp_path: Path, short_health_cache: float
) -> None:
    from tests.conftest import PG_URL, _drop_schema, _postgres_schema
    from tests.standins.tcp_proxy import StallingProxy

    schema = await _postgres_schema(migrated=True)
    try:
        async with StallingProxy("127.0.0.1", 5432) as proxy:
            url = PG_URL.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}") + f"?search_path={schema}"
            async with running(tmp_path, database_url=url, run_worker=False) as service:
                status, _ = await service.health()
                assert status == 200
                proxy.stall()
                await asyncio.sleep(short_health_cache)  # past the health cache (each probe below asks the store)
                loop = asyncio.get_running_loop()
                for _ in range(3):
                    started = loop.time()
                    status, body = await service.health()
                    assert loop.time() - started < 2.0
                    assert status == 503 and body["store"]["reachable"] is False
                    await asyncio.sleep(1)
                proxy.resume()
                async with asyncio.timeout(30):
                    while (await service.health())[0] != 200:
                        await asyncio.sleep(0.5)
    finally:
        await _drop_schema(schema)


async def test_a_saturated_store_answers_503_with_retry_after_not_a_500(tmp_path: Path) -> None:
    """200 concurrent webhooks exhausted the PostgreSQL pool: one waited 30 s and got an unexplained 500."""
    from tests.conftest import PG_URL, _drop_schema, _postgres_schema

    schema = await _postgres_schema(migrated=True)
    try:
        url = f"{PG_URL}?search_path={schema}"
        async with running(tmp_path, database_url=url, run_worker=False, db_pool_size=1, db_pool_timeout=0.5) as service:
            held = [await service.container.engine.connect() for _ in range(2)]  # pool_size 1 + overflow 1
            try:
                async with service.http.post(f"{service.url}/hooks/listening", data=b"{}") as response:
                    assert response.status == 503 and response.headers["Retry-After"] == "5"
                    assert "retry" in (await response.json())["error"]
            finally:
                for connection in held:
                    await connection.close()
            async with service.http.post(f"{service.url}/hooks/listening", data=b"{}") as response:
                assert response.status == 404  # the store answers again: no such webhook source
    finally:
        await _drop_schema(schema)


async def test_a_slow_client_gets_408_and_holds_nothing_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Slow-loris: bodies that never finish held a handler each, until the service ran out of sockets."""
    import bot.app

    monkeypatch.setattr(bot.app, "BODY_DEADLINE", 0.5)
    async with running(tmp_path, run_worker=False) as service:
        host, port = service.url.removeprefix("http://").split(":")
        slow = []
        for _ in range(20):
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(
                b"POST /hooks/listening HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"id": '
            )  # ... and the rest never comes
            await writer.drain()
            slow.append((reader, writer))
        status, _ = await service.health()  # served meanwhile
        assert status == 200
        loop = asyncio.get_running_loop()
        started = loop.time()
        for reader, writer in slow:
            head = await asyncio.wait_for(reader.read(200), 5)
            assert head.startswith(b"HTTP/1.1 408"), head
            writer.close()
        assert loop.time() - started < 3
