"""Answers first: work a platform asked for after its answer (a click's claim after Slack's ack) waits
its turn behind the requests being answered, so that a burst of clicks is acked about as fast as by
an app that only acks, while the work is still all done, in order, and never starved.

Slack's ack is the HTTP answer, due within 3 s; the work it leads to (a directory lookup, a store
write) has no such deadline (its result reaches the card through the outbox). In one event loop,
the work of the clicks already answered used to run between the answers of the next ones, and
under 50 concurrent clicks every ack waited behind several clicks' work. Bolt's lazy listeners
do not help here: Bolt 1.30 starts them with `asyncio.ensure_future` beside the ack function,
at once (after a deep copy of the request), so they compete with the acks just the same.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

YIELD_FOR = 0.2  # seconds a piece of work waits at most for the requests being answered
OVERDUE_EVERY = 0.01  # while requests are still being answered, one overdue piece starts this often
SETTLE_TURNS = 3  # turns of the loop from a request's bytes arriving to its handler (aiohttp: read, parse, start)


class AnswersFirst:
    """Counts the requests being answered (`answering()`); `turn()` is where work waits for them.

    Work waits in line (first come, first started). The first in line starts as soon as no request
    is being answered; when requests keep coming, it starts after `bound` seconds anyway, and the
    ones behind it (also overdue) start one per `overdue_every` seconds while requests keep being
    answered, all of them as soon as none is. So a moment of quiet lets the work through one
    at a time, yielding to any request that comes in meanwhile, and a steady stream of requests
    slows the work down (to one start per `overdue_every`) but never stops it.
    """

    def __init__(self, *, bound: float = YIELD_FOR, overdue_every: float = OVERDUE_EVERY) -> None:
        self.bound = bound
        self.overdue_every = overdue_every
        self._answering = 0
        self._waiting = 0
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._line = asyncio.Lock()  # the first in line holds it while it waits; asyncio's locks are fair (FIFO)

    @property
    def pending(self) -> int:
        """How many requests are being answered now."""
        return self._answering

    @property
    def waiting(self) -> int:
        """How many pieces of work are waiting their turn now."""
        return self._waiting

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """While inside, one more request is being answered: work waiting its `turn()` holds back."""
        self._answering += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self._answering -= 1
            if not self._answering:
                self._quiet.set()

    async def turn(self) -> None:
        """Return when this piece of work may start (see the class): at once when nothing is being
        answered and nothing waits before it."""
        if not self._answering and not self._waiting:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.bound
        self._waiting += 1
        try:
            async with self._line:
                while await self._busy():
                    left = deadline - loop.time()
                    if left <= 0:  # overdue: starts at the latest `overdue_every` after the one before it
                        await self._quiet_within(self.overdue_every)
                        return
                    await self._quiet_within(left)
        finally:
            self._waiting -= 1

    async def _busy(self) -> bool:
        """Whether a request is being answered, once the requests that have arrived meanwhile (say, while
        the work before this one held the loop) have reached their handlers: a few turns of the loop."""
        for _ in range(SETTLE_TURNS):
            if self._answering:
                return True
            await asyncio.sleep(0)
        return bool(self._answering)

    async def _quiet_within(self, seconds: float) -> bool:
        """Wait until no request is being answered, for at most `seconds`; whether that happened."""
        try:
            async with asyncio.timeout(seconds):
                await self._quiet.wait()
        except TimeoutError:
            return False
        return True
