"""What the benchmarks share: latency summaries, load, and a store of their own."""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager

import aiohttp
import asyncpg


def summary(name: str, latencies: list[float]) -> tuple[float, float]:
    """Print and return p50/p99 of latencies in milliseconds."""
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    print(f"{name:<32} n={len(ordered):<5} p50={p50:7.1f} ms  p99={p99:7.1f} ms")
    return p50, p99


async def fire(url: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int) -> list[float]:
    """POST every (body, headers) with at most `concurrency` in flight; latencies in ms (all must be 200)."""
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as http:

        async def one(body: bytes, headers: dict[str, str]) -> None:
            async with gate:
                started = time.perf_counter()
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    assert response.status == 200, response.status
                latencies.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(one(b, h) for b, h in requests))
    return latencies


def _fire_in_child(url: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int) -> list[float]:
    return asyncio.run(fire(url, requests, concurrency))


class Load:
    """The load generator in a process of its own, so that this process's `time.process_time()`
    is the server's alone: `await load.fire(...)` returns (latencies in ms, server CPU ms per request)."""

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))

    async def __aenter__(self) -> Load:
        await asyncio.get_running_loop().run_in_executor(self._pool, time.sleep, 0)  # the child starts now, not measured
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._pool.shutdown()

    async def fire(self, url: str, requests: list[tuple[bytes, dict[str, str]]], concurrency: int) -> tuple[list[float], float]:
        started = time.process_time()
        latencies = await asyncio.get_running_loop().run_in_executor(self._pool, _fire_in_child, url, requests, concurrency)
        return latencies, (time.process_time() - started) / len(requests) * 1000


@asynccontextmanager
async def store(database: str | None) -> AsyncIterator[str | None]:
    """None (a SQLite file), or a fresh schema on the PostgreSQL server at `database`."""
    if not database:
        yield None
        return
    dsn = database.replace("postgresql+asyncpg://", "postgresql://")
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        yield f"{database}?search_path={schema}"
    finally:
        await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await conn.close()
