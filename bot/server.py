"""Serving the aiohttp application of `unsilo run` with a cap on open connections.

Without a cap, slow or idle clients (slow-loris: headers or bodies that never finish) each hold
a socket until the process reaches its file-descriptor limit; from then on every `accept()`
fails, legitimate webhooks are never read and asyncio logs each failure. With the cap:

- the service never holds more than `max_connections` client sockets, a number kept below the
  process's descriptor limit (`RLIMIT_NOFILE`) with room left for the store's pool, outbound
  connections and files (`connection_limit`);
- at the cap, a new connection takes the place of the oldest one that is not being answered
  (still waiting for its headers, or idle between keep-alive requests): a client that sends its
  request promptly always gets in, however many slow ones are open;
- when every open connection is being answered, the new one gets an immediate
  `503 Service Unavailable` with `Retry-After` and is closed: back-pressure a client can see and
  retry (Slack, the Bot Connector and webhook senders all retry a 503), never a silent hang.

The body of a request must still arrive within `bot.app.BODY_DEADLINE` (408 otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

logger = logging.getLogger(__name__)

KEEPALIVE_TIMEOUT = 75.0  # seconds an idle keep-alive connection stays open (aiohttp's run_app default)
SHUTDOWN_TIMEOUT = 60.0  # seconds running requests get to finish on SIGINT/SIGTERM
MAX_AUTO_CONNECTIONS = 4096
RESERVED_DESCRIPTORS = 64  # log files, the Socket Mode socket, DNS, the SQLite file and journal...
BACKLOG = 128  # the listen backlog; asyncio accepts up to this many at once before any can be closed
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
    b"Connection: close\r\nContent-Length: 58\r\n\r\n"
    b'{"error": "too many connections; retry in a second"}      '
)


def connection_limit(configured: int, *, db_pool_size: int) -> int:
    """The connection cap: `configured` (UNSILO_MAX_CONNECTIONS) if set, else what the descriptor
    limit leaves after the store's pool (pool + overflow), as many outbound connections, a reserve,
    and two bursts of accepts: asyncio accepts a whole backlog before the cap can close anything,
    and the connections closed for the previous burst may not be closed yet."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = (soft if soft != resource.RLIM_INFINITY else 1 << 20) - RESERVED_DESCRIPTORS - 4 * db_pool_size - 2 * BACKLOG
    if configured > 0:
        if configured > room:
            logger.warning(
                "UNSILO_MAX_CONNECTIONS=%d leaves too few of the %d file descriptors for the store and "
                "outbound connections: raise the limit (ulimit -n) or lower the setting",
                configured,
                soft,
            )
        return configured
    return max(16, min(MAX_AUTO_CONNECTIONS, room))


class _Refused(asyncio.Protocol):
    """Answers 503 at once and closes: the service is at its cap and every connection is busy."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(REFUSAL)
        # Close once the client's request has been read (closing with unread data would reset the
        # connection before the client reads the answer), or after a second at the latest.
        self._timer = asyncio.get_running_loop().call_later(1.0, transport.close)

    def data_received(self, data: bytes) -> None:
        self._timer.cancel()
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()


def _answering(handler: RequestHandler) -> bool:
    """Whether a connection is being answered (a request read and in the handler, or queued)."""
    return handler._current_request is not None or bool(handler._messages)  # noqa: SLF001 (aiohttp keeps no public flag)


class ConnectionCap:
    """The protocol factory of the listening socket: aiohttp's `Server`, capped (see the module docstring)."""

    def __init__(self, server: web.Server, limit: int) -> None:
        self._server = server
        self.limit = limit
        self.evicted = 0
        self.refused = 0
        self._closing: set[RequestHandler] = set()  # evicted, until aiohttp forgets them

    def __getattr__(self, name: str) -> Any:  # connections, shutdown, pre_shutdown... are the Server's
        return getattr(self._server, name)

    def __call__(self) -> asyncio.Protocol:
        open_ = self._server._connections  # noqa: SLF001 (in arrival order: the oldest first)
        self._closing.intersection_update(open_)
        if len(open_) - len(self._closing) >= self.limit:
            idle = next((handler for handler in open_ if handler not in self._closing and not _answering(handler)), None)
            if idle is None:
                self.refused += 1
                if self.refused == 1 or self.refused % 1000 == 0:
                    logger.warning(
                        "%d connections open, all being answered: new ones get 503 (%d so far); "
                        "raise UNSILO_MAX_CONNECTIONS or add a replica",
                        len(open_),
                        self.refused,
                    )
                return _Refused()
            self.evicted += 1
            if self.evicted == 1 or self.evicted % 1000 == 0:
                logger.warning(
                    "%d connections open (the cap): the oldest idle or slow one was closed for a new one (%d so far)",
                    self.limit,
                    self.evicted,
                )
            self._closing.add(idle)
            idle.force_close()
        return self._server()


class CappedRunner(web.AppRunner):
    """An `AppRunner` whose server is wrapped in a `ConnectionCap`."""

    def __init__(self, app: web.Application, *, max_connections: int, **kwargs: Any) -> None:
        kwargs.setdefault("keepalive_timeout", KEEPALIVE_TIMEOUT)
        kwargs.setdefault("shutdown_timeout", SHUTDOWN_TIMEOUT)
        super().__init__(app, **kwargs)
        self.max_connections = max_connections

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        return ConnectionCap(server, self.max_connections)  # type: ignore[return-value]


async def start(
    app: web.Application, host: str, port: int, *, max_connections: int, handle_signals: bool = False
) -> tuple[CappedRunner, str]:
    """Serve `app` on host:port (0 picks a free port) behind the cap; the runner (to clean up) and the base URL."""
    runner = CappedRunner(app, max_connections=max_connections, handle_signals=handle_signals)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=BACKLOG)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, f"http://{host}:{bound}"


def run(app: web.Application, host: str, port: int, *, max_connections: int, ready: Callable[[], None] | None = None) -> None:
    """`unsilo run`: serve until SIGINT/SIGTERM, then let running requests finish and clean up
    (the shutdown sequence of aiohttp's `run_app`, whose runner cannot be replaced). `ready` is
    called once the port is bound (a busy port raises before)."""

    async def main() -> None:
        runner, _ = await start(app, host, port, max_connections=max_connections, handle_signals=True)
        if ready is not None:
            ready()
        logger.info("accepting at most %d connections at once", max_connections)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    task = loop.create_task(main())
    try:
        loop.run_until_complete(task)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)
        rest = asyncio.all_tasks(loop)
        for other in rest:
            other.cancel()
        loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        asyncio.set_event_loop(None)
