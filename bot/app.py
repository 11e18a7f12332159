"""The aiohttp application of `unsilo run`: health check, outbox loop, platform mounts."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from sqlalchemy import text

from bot import admin
from bot.bootstrap import Container, mount_sources
from bot.metrics import CONTENT_TYPE
from bot.scheduler import Scheduler
from storage.db import UNAVAILABLE

logger = logging.getLogger(__name__)

CONTAINER: web.AppKey[Container] = web.AppKey("container", Container)
HEALTH_CACHE: web.AppKey[dict[str, Any]] = web.AppKey("health_cache", dict)
SCHEDULER_STATE: web.AppKey[dict[str, str]] = web.AppKey("scheduler_state", dict)


def mount_platforms(app: web.Application, container: Container) -> None:
    """Mount every platform that has credentials; each reports its own state to `container.health`.

    A platform that cannot even be mounted is disabled with the reason; it never takes the
    others down. Connecting (Slack's Socket Mode, token checks) happens in the background.
    """
    for platform in container.platforms:
        reason = container.settings.of(platform).missing()
        health = container.health.platform(platform.name)
        if reason is None:
            try:
                container.mount(app, platform)  # its adapter imports its SDK now
            except ModuleNotFoundError as exc:
                reason = f"its SDK is not installed ({exc.name})"
            except Exception as exc:  # a broken platform never takes the others down
                logger.exception("%s could not start", platform.name)
                reason = f"failed to start: {exc}"
        if reason is None:
            logger.info("%s enabled", platform.name)
            if health.state.reason == "starting":  # an adapter that reports nothing of its own
                health.ok()
        else:
            health.disabled(reason)


HEALTH_CACHE_SECONDS = 2.0  # /healthz is polled: the store's figures are read at most this often
STORE_TIMEOUT = 1.5  # /healthz answers within 2 s whatever the store does


async def _store_figures(container: Container) -> dict[str, Any]:
    """The outbox backlog, its oldest due delivery and the failing feeds, in one round trip."""
    now = container.clock()
    async with container.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM delivery WHERE status = 'pending') AS backlog, "
                    "(SELECT min(next_attempt_at) FROM delivery WHERE status = 'pending' AND next_attempt_at <= :now) AS oldest, "
                    "(SELECT count(*) FROM delivery WHERE status = 'failed') AS failed, "
                    "(SELECT count(*) FROM source WHERE kind = 'feed' AND failures > 0) AS feeds_failing"
                ),
                {"now": now},
            )
        ).one()
    oldest = row.oldest
    if isinstance(oldest, str):  # SQLite hands back text
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return {
        "outbox": {
            "pending": int(row.backlog),
            "failed": int(row.failed),
            "oldest_due": oldest.isoformat(timespec="seconds") if oldest else None,
            "oldest_due_seconds": round((now - oldest).total_seconds()) if oldest else 0,
        },
        "feeds": {"failing": int(row.feeds_failing)},
    }


async def healthz(request: web.Request) -> web.Response:
    """The truth per platform (ok / starting / degraded / disabled, with the reason) and per
    subsystem (store, outbox, feeds, scheduler); 503 only when the store is unreachable."""
    container = request.app[CONTAINER]
    cache = request.app[HEALTH_CACHE]
    loop_time = asyncio.get_running_loop().time()
    if cache.get("at", -1e9) + HEALTH_CACHE_SECONDS < loop_time:
        store: dict[str, Any] = {"backend": container.engine.dialect.name}
        figures: dict[str, Any] = {}
        # The query runs as a task of its own that is never awaited past the deadline: cancelling
        # a statement on a stalled server waits for the connection's cleanup, on that same server.
        task = cache.get("task")
        if task is None or task.done():
            task = cache["task"] = asyncio.create_task(_store_figures(container))
        done, _ = await asyncio.wait({task}, timeout=STORE_TIMEOUT)
        error = None if done else f"the store did not answer within {STORE_TIMEOUT:g} s"
        if done and task.exception() is not None:
            exc = task.exception()
            error = f"{type(exc).__name__}: {exc}"[:300]
        if error is None:
            figures = task.result()
            store["reachable"] = True
        else:
            logger.warning("health check: store unreachable: %s", error)
            store.update(reachable=False, error=error)
        cache.update(at=loop_time, store=store, figures=figures)
    store, figures = cache["store"], cache["figures"]
    platforms = container.health.snapshot()
    scheduler = request.app[SCHEDULER_STATE]
    body: dict[str, Any] = {"store": store, "platforms": platforms, **figures, "scheduler": dict(scheduler)}
    troubled = [name for name, p in platforms.items() if p["state"] in ("degraded", "starting")]
    if figures and figures["feeds"]["failing"]:
        troubled.append("feeds")
    if scheduler.get("state") not in ("running", "off"):
        troubled.append("scheduler")
    body["status"] = "down" if not store["reachable"] else ("degraded" if troubled else "ok")
    if troubled:
        body["degraded"] = troubled
    if not admin.allowed(request, container.settings.admin_token):
        body = {"status": body["status"]}  # the public answer: a load balancer's probe needs no more
    return web.json_response(body, status=200 if store["reachable"] else 503)


async def metrics(request: web.Request) -> web.Response:
    """`GET /metrics`: Prometheus' text format, on loopback or with the admin token only (`bot/admin.py`)."""
    container = request.app[CONTAINER]
    if not admin.allowed(request, container.settings.admin_token):
        return admin.refused()
    body = await container.metrics.scrape(container.engine, container.clock)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


RETRY_AFTER_SECONDS = 5


@web.middleware
async def store_trouble(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A saturated, stalled or unreachable store answers 503 with `Retry-After`, never an unexplained 500:
    every sender (Slack, the Bot Connector, a listening tool) retries a 503; nothing was half-stored,
    as each unit of work rolls back."""
    try:
        return await handler(request)
    except UNAVAILABLE as exc:
        logger.warning(
            "%s %s: the store did not answer (%s: %s); answered 503",
            request.method,
            request.path,
            type(exc).__name__,
            str(exc)[:200],
        )
        return web.json_response(
            {"error": "the store is busy or unreachable; retry in a few seconds"},
            status=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


BODY_DEADLINE = 10.0  # seconds a client has to send a request's whole body


@web.middleware
async def body_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request body is read within `BODY_DEADLINE` or answered 408: a slow client (slow-loris, a
    stalled upload) holds no handler, connection slot or unit of work for long. The body read here
    is kept by aiohttp for the handler (within its `client_max_size`, 1 MB; one declared larger is
    left to the handler, which refuses it from its Content-Length without reading it)."""
    declared = request.content_length
    if request.can_read_body and not (declared is not None and declared > request.client_max_size):
        try:
            async with asyncio.timeout(BODY_DEADLINE):  # no task per request, unlike wait_for
                await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.json_response(
                {"error": f"body too large: at most {request.client_max_size} bytes"}, status=413, headers={"Connection": "close"}
            )
        except TimeoutError:
            logger.warning(
                "%s %s from %s: body not sent within %gs; answered 408",
                request.method,
                request.path,
                request.remote,
                BODY_DEADLINE,
            )
            return web.json_response(
                {"error": f"the request body did not arrive within {BODY_DEADLINE:g} s"},
                status=408,
                headers={"Connection": "close"},
            )
    return await handler(request)


def create_app(container: Container, *, run_worker: bool = True) -> web.Application:
    """The service: `/healthz`, the platforms that are configured, webhooks, the delivery loop and the scheduler."""
    app = web.Application(middlewares=[body_deadline, store_trouble])
    app[CONTAINER] = container
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app[HEALTH_CACHE] = {}
    app[SCHEDULER_STATE] = {"state": "starting" if run_worker else "off"}
    mount_platforms(app, container)
    mount_sources(app, container)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        logger.info("store: %s", container.settings.shown_database_url)
        await container.prepare()
        task = asyncio.create_task(container.worker().run_forever()) if run_worker else None
        scheduler = Scheduler(container) if run_worker else None
        if scheduler is not None:
            try:
                scheduler.start()  # feed polls, SLA sweeps and digests, exactly once across replicas
                app[SCHEDULER_STATE].update(state="running")
            except Exception as exc:  # the chat platforms and webhooks keep working without it
                logger.exception("the scheduler could not start")
                app[SCHEDULER_STATE].update(state="failed", reason=f"{type(exc).__name__}: {exc}")
                scheduler = None
        yield
        if scheduler is not None:
            await scheduler.shutdown()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await container.close()

    app.cleanup_ctx.append(lifecycle)
    return app
