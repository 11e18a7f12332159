"""What the benchmarks share: latency summaries."""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp


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
