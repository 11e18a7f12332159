"""Loopback stand-ins for the platforms' APIs, and the one way tests serve an aiohttp app."""

from __future__ import annotations

import asyncio
import math
import time
from types import TracebackType
from typing import Any, Self

from aiohttp import web


async def serve(app: web.Application, host: str = "127.0.0.1") -> tuple[web.AppRunner, str]:
    """Run `app` on a free loopback port; returns the runner (to clean up) and its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://{host}:{port}"


def next_failure(queues: dict[str, list[Any]], name: str) -> Any:
    """The failure queued by a stand-in's `fail_next` for a method or route, counted down; None if none."""
    queue = queues.get(name)
    if not queue:
        return None
    failure = queue[0]
    failure.remaining -= 1
    if failure.remaining <= 0:
        queue.pop(0)
    return failure


def take_token(buckets: dict[str, tuple[float, float]], key: str, *, rate: float, burst: int, now: float) -> int | None:
    """Token-bucket rate limiting as the platforms do it, per channel or conversation `key`.

    Takes a token (None: the call may go ahead) or returns the whole seconds to wait, the
    value of the `Retry-After` the platform answers with its 429.
    """
    tokens, last = buckets.get(key, (float(burst), now))
    tokens = min(float(burst), tokens + (now - last) * rate)
    if tokens >= 1.0:
        buckets[key] = (tokens - 1.0, now)
        return None
    buckets[key] = (tokens, now)
    return max(1, math.ceil((1.0 - tokens) / rate))


class RecordingStandIn:
    """What every platform stand-in shares: `async with` to run it, and waiting for its recorded calls.

    Subclasses record each request in `calls` (with a `status` once answered) and name
    them for `calls_to` (a Slack method, a Bot Connector route).
    """

    calls: list[Any]

    async def start(self) -> Self:
        """Listen; returns the stand-in."""
        raise NotImplementedError

    async def close(self) -> None:
        """Stop listening."""
        raise NotImplementedError

    def calls_to(self, name: str) -> list[Any]:
        """The recorded calls of one method or route, in arrival order."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def wait_for(self, name: str, count: int = 1, timeout: float = 2.0) -> list[Any]:
        """Wait until at least `count` calls of `name` have been answered (the bot may send in the background).

        Raises:
            TimeoutError: If they are not answered within `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            done = [c for c in self.calls_to(name) if c.status is not None]
            if len(done) >= count:
                return done
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{len(done)} of {count} {name} call(s) answered within {timeout}s")
            await asyncio.sleep(0.005)
