"""Slow clients never starve the others: the service caps its connections below the descriptor limit.

Before the cap, 1,100 slow-loris connections at the common limit of 1,024 descriptors left
`unsilo run` unable to accept anything (0 of 8 webhooks accepted) while asyncio logged every
failed `accept()`. Here the limit is 512 and 600 slow clients hold what they can.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from adapters.sources.webhooks import sign
from bot.app import create_app
from bot.bootstrap import build, load_config
from bot.server import ConnectionCap, start
from bot.settings import Settings
from tests.conftest import TEST_CONFIG, service_env
from tests.test_service import free_port

SECRET = "connections-secret"
DESCRIPTORS = 512  # the cap: 512 - 64 reserved - 40 for the store - 2 x 128 for bursts of accepts = 152
SLOW_CLIENTS = 600


async def _webhook_source(tmp_path: Path, url: str) -> None:
    container = build(Settings(database_url=url), config=load_config(tmp_path / "unsilo.toml"))
    await container.prepare()
    async with container.uow() as uow:
        source = await uow.sources.ensure("listening", kind="webhook")
        source.secret = SECRET
        await uow.commit()
    await container.close()


async def _post_item(http: aiohttp.ClientSession, base: str, n: int) -> int:
    body = json.dumps({"id": f"item-{n}", "text": f"refund never came, order {n}", "author": {"name": "Sam"}}).encode()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "X-Unsilo-Timestamp": timestamp,
        "X-Unsilo-Signature": sign(SECRET, timestamp, body),
    }
    async with http.post(f"{base}/hooks/listening", data=body, headers=headers) as response:
        return response.status


def _limit_descriptors() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (DESCRIPTORS, hard))


async def test_six_hundred_slow_clients_at_512_descriptors_leave_webhooks_served(tmp_path: Path) -> None:
    (tmp_path / "unsilo.toml").write_text(TEST_CONFIG)
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}"
    await _webhook_source(tmp_path, db_url)
    port = free_port()
    env = service_env(DATABASE_URL=db_url, UNSILO_CONFIG=str(tmp_path / "unsilo.toml"))
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_limit_descriptors,
    )
    base = f"http://127.0.0.1:{port}"
    slow: list[asyncio.StreamWriter] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with http.get(f"{base}/healthz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, "the service did not come up"
                await asyncio.sleep(0.2)

            for _ in range(SLOW_CLIENTS):  # headers that never finish
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"POST /hooks/listening HTTP/1.1\r\nHost: unsilo\r\nContent-Type: appl")
                slow.append(writer)
            await asyncio.sleep(1)

            started = time.monotonic()
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(force_close=True),  # new connections
                timeout=aiohttp.ClientTimeout(total=10),
            ) as fresh:
                statuses = await asyncio.gather(*(_post_item(fresh, base, n) for n in range(8)), return_exceptions=True)
            elapsed = time.monotonic() - started
            print(f"8 webhooks beside {SLOW_CLIENTS} slow clients: {statuses} in {elapsed:.2f} s")
            assert statuses == [200] * 8, statuses
            assert elapsed < 5, f"8 webhooks took {elapsed:.1f} s beside {SLOW_CLIENTS} slow clients"
            async with http.get(f"{base}/healthz") as response:
                assert response.status == 200
    finally:
        for writer in slow:
            writer.close()
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    assert "Too many open files" not in stderr, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(stderr.splitlines()) < 40, f"{len(stderr.splitlines())} log lines:\n{stderr[-3000:]}"
    assert "the oldest idle or slow one was closed" in stderr  # the operator is told, once


async def test_when_every_connection_is_busy_a_new_one_gets_503_with_retry_after_at_once(tmp_path: Path) -> None:
    (tmp_path / "unsilo.toml").write_text(TEST_CONFIG)
    container = build(
        Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}"), config=load_config(tmp_path / "unsilo.toml")
    )
    runner, url = await start(create_app(container, run_worker=False), "127.0.0.1", 0, max_connections=5)
    busy: list[asyncio.StreamWriter] = []
    try:
        port = int(url.rsplit(":", 1)[1])
        for _ in range(5):  # each request read and in its handler, waiting for the rest of its body
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"POST /hooks/listening HTTP/1.1\r\nHost: unsilo\r\nContent-Type: application/json\r\n"
                b'Content-Length: 100\r\n\r\n{"id": '
            )
            await writer.drain()
            busy.append(writer)
        await asyncio.sleep(0.3)
        started = time.monotonic()
        async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as response:
            assert response.status == 503 and response.headers["Retry-After"] == "1"
            assert "too many connections" in (await response.json())["error"]
        assert time.monotonic() - started < 1
        cap = runner.server
        assert isinstance(cap, ConnectionCap) and cap.refused == 1 and cap.evicted == 0
        for writer in busy:
            writer.close()
        await asyncio.sleep(0.3)
        async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as response:
            assert response.status == 200  # room again
    finally:
        await runner.cleanup()
