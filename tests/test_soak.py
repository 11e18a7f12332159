"""`kill -9` every ~2 s while 200 webhooks arrive: every card posted exactly once, every reply once per key.

Two real `unsilo run` replicas share one store. Every item is routed to two Slack channels of
the stand-in, which rate-limits posts (HTTP 429) and answers in 0.1 s; one replica at a time is
killed with SIGKILL about every 2 seconds and started again at once. The webhook sender
retries, as a real listening tool does, until it is answered. Meanwhile employees claim and
answer every fifth item (through the same store, from this process); the replies go out through
the replicas' outboxes to the customer's reply endpoint, a loopback receiver.

Must hold (issue 12): 200 items stored, none twice; each card posted once per channel (a crash
between the post and its record is found again through the card's `metadata` in the channel's
history); each reply delivered, every request of it with the same `X-Unsilo-Delivery` key.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from sqlmodel import func, select

from adapters.sources.webhooks import sign
from bot import commands as c
from bot.bootstrap import Container, build, load_config
from bot.settings import Settings
from storage.models import Conversation, Delivery
from tests.conftest import service_env
from tests.standins import serve
from tests.standins.slack_api import SlackStandIn
from tests.test_service import free_port

SECRET = "soak-secret"
ITEMS = 200
REPLY_EVERY = 5
KILL_EVERY = 2.0
CONFIG = """
[departments.support]
sla_minutes = 600
channels = ["slack:C0FIRST", "slack:C0SECOND"]

[[rules]]
name = "support"
departments = ["support"]
any = ["refund"]
"""
AGENT = c.Actor("cli", "alice", "Alice")


class ReplyEndpoint:
    """The customer's reply endpoint: checks the signature, answers 200, records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str | None, dict[str, Any]]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        timestamp = request.headers.get("X-Unsilo-Timestamp", "")
        if request.headers.get("X-Unsilo-Signature") != sign(SECRET, timestamp, body):
            return web.json_response({"error": "bad signature"}, status=401)
        self.requests.append((request.headers.get("X-Unsilo-Delivery"), json.loads(body)))
        return web.json_response({"ok": True})


class Replicas:
    """Two `unsilo run` processes on one store, killed and restarted one at a time."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        self.tmp_path, self.env = tmp_path, env
        self.ports = [free_port(), free_port()]
        self.processes: list[subprocess.Popen[str] | None] = [None, None]
        self.kills = 0
        self.stderr: list[str] = []

    def start(self, index: int) -> None:
        log = open(self.tmp_path / f"replica-{index}-{self.kills}.log", "w")  # noqa: SIM115 (closed with the process)
        self.processes[index] = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "run", "--port", str(self.ports[index])],
            cwd=self.tmp_path,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )

    def kill(self, index: int) -> None:
        process = self.processes[index]
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            self.kills += 1

    def stop(self) -> list[str]:
        """SIGINT to the survivors; the logs of the runs that were not killed."""
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process in self.processes:
            if process is not None:
                process.wait(timeout=30)
        return [p.read_text() for p in sorted(self.tmp_path.glob("replica-*.log"))]

    def url(self) -> str:
        return f"http://127.0.0.1:{random.choice(self.ports)}"


async def _send_item(http: aiohttp.ClientSession, replicas: Replicas, n: int, reply_url: str) -> int:
    """POST one signed item until a replica answers 200 (created or duplicate); its conversation id."""
    body = json.dumps(
        {
            "id": f"soak-{n}",
            "text": f"my refund for order {n} never came",
            "author": {"name": f"Customer {n}", "handle": f"@customer{n}"},
            "reply_url": reply_url,
        }
    ).encode()
    while True:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Unsilo-Timestamp": timestamp,
            "X-Unsilo-Signature": sign(SECRET, timestamp, body),
        }
        try:
            async with http.post(f"{replicas.url()}/hooks/listening", data=body, headers=headers) as response:
                if response.status == 200:
                    return int((await response.json())["id"])
                assert response.status in (502, 503), (response.status, await response.text())
        except (TimeoutError, aiohttp.ClientError):
            pass  # a killed replica: try again, as a sender does
        await asyncio.sleep(0.2)


async def _reply(container: Container, conversation_id: int) -> None:
    await container.bus.handle(c.Claim(conversation_id, AGENT))
    await container.bus.handle(c.ReplyToCustomer(conversation_id, AGENT, f"Refund sent for #{conversation_id}."))


async def _pending(container: Container) -> int:
    async with container.uow() as uow:
        return int((await uow.session.exec(select(func.count()).select_from(Delivery).where(Delivery.status == "pending"))).one())


async def test_kill_9_every_2_seconds_during_200_webhooks_posts_each_card_once_and_each_reply_with_one_key(
    tmp_path: Path, database_url: str
) -> None:
    store_url = database_url
    config_path = tmp_path / "unsilo.toml"
    config_path.write_text(CONFIG)
    container = build(Settings(database_url=store_url, allow_private_urls=("127.0.0.1",)), config=load_config(config_path))
    await container.prepare()
    async with container.uow() as uow:
        source = await uow.sources.ensure("listening", kind="webhook")
        source.secret = SECRET
        await uow.commit()

    endpoint = ReplyEndpoint()
    receiver_app = web.Application()
    receiver_app.router.add_post("/replies", endpoint.handle)
    receiver, receiver_url = await serve(receiver_app)
    endpoint.url = f"{receiver_url}/replies"
    async with SlackStandIn(delay=0.1, rate_limit_per_channel=8, rate_limit_burst=3) as slack:
        env = service_env(
            DATABASE_URL=store_url,
            UNSILO_CONFIG=str(config_path),
            SLACK_BOT_TOKEN="xoxb-soak",
            SLACK_SIGNING_SECRET="soak-signing",
            SLACK_API_URL=slack.url,
            UNSILO_ALLOW_PRIVATE_URLS="127.0.0.1",
        )
        replicas = Replicas(tmp_path, env)
        replicas.start(0)
        replicas.start(1)
        ids: list[int] = []
        replies: list[int] = []
        stop = asyncio.Event()

        async def killer() -> None:
            rng = random.Random(12)
            while not stop.is_set():
                await asyncio.sleep(KILL_EVERY * rng.uniform(0.7, 1.3))
                victim = rng.randrange(2)
                replicas.kill(victim)
                replicas.start(victim)

        async def sender(worker: int, http: aiohttp.ClientSession) -> None:
            for n in range(worker, ITEMS, 4):
                cid = await _send_item(http, replicas, n, endpoint.url)
                ids.append(cid)
                if n % REPLY_EVERY == 0:
                    await _reply(container, cid)
                    replies.append(cid)

        kill_task = asyncio.create_task(killer())
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                await asyncio.wait_for(asyncio.gather(*(sender(w, http) for w in range(4))), 300)
            # Go on killing while the outboxes catch up with the rate limit, then let them drain.
            deadline = time.monotonic() + 120
            while await _pending(container) and time.monotonic() < deadline:
                if time.monotonic() > deadline - 90:
                    stop.set()
                await asyncio.sleep(0.5)
            stop.set()
            await kill_task
            deadline = time.monotonic() + 60
            while await _pending(container) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            assert await _pending(container) == 0, "the outbox drained"
        finally:
            stop.set()
            kill_task.cancel()
            logs = replicas.stop()
            await receiver.cleanup()

        posts = [call for call in slack.calls_to("chat.postMessage") if call.ok]
    await container.close()

    assert replicas.kills >= 5, f"only {replicas.kills} kills"
    assert len(ids) == ITEMS and len(set(ids)) == ITEMS, "every item stored once"
    async with build(Settings(database_url=store_url), config=load_config(config_path)).uow() as uow:
        stored = int((await uow.session.exec(select(func.count()).select_from(Conversation))).one())
    assert stored == ITEMS

    per_card: Counter[tuple[str, int]] = Counter()
    for call in posts:
        metadata = call.args.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        payload = (metadata or {}).get("event_payload") or {}
        per_card[(str(call.args.get("channel")), int(payload["conversation_id"]))] += 1
    twice = {card: n for card, n in per_card.items() if n > 1}
    assert not twice, f"cards posted more than once: {twice}"
    assert set(per_card) == {(channel, cid) for channel in ("C0FIRST", "C0SECOND") for cid in ids}, (
        "every card reached both channels"
    )

    keys: dict[int, set[str | None]] = defaultdict(set)
    for key, body in endpoint.requests:
        keys[int(body["conversation_id"])].add(key)
    assert set(keys) == set(replies), "every reply reached the customer"
    assert all(len(k) == 1 for k in keys.values()), {cid: k for cid, k in keys.items() if len(k) > 1}
    repeats = len(endpoint.requests) - len(replies)
    print(
        f"{replicas.kills} kills; {len(posts)} card posts for {len(per_card)} cards; "
        f"{len(endpoint.requests)} reply requests for {len(replies)} replies ({repeats} repeated, same key)"
    )
    for log in logs:
        if "Traceback" in log:
            # A killed run's log may end mid-line; a traceback in any run is a defect all the same.
            pytest.fail(log[log.index("Traceback") - 2000 :][:5000])
