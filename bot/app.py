"""The aiohttp application of `unsilo run`: health check, outbox loop, platform mounts."""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from sqlalchemy import text

from bot.bootstrap import Container
from bot.scheduler import Scheduler

logger = logging.getLogger(__name__)

CONTAINER: web.AppKey[Container] = web.AppKey("container", Container)
PLATFORMS: web.AppKey[dict[str, str | None]] = web.AppKey("platforms", dict)

# Each platform adapter is a module with `mount(app, container) -> None`; imported by name so
# that the core never imports a platform SDK.
PLATFORM_MODULES = {"slack": "adapters.slack", "teams": "adapters.teams.service"}
# Source adapters that take HTTP requests (no credentials needed: each source has its own secret).
SOURCE_MODULES = ("adapters.sources.webhooks",)


def mount_platforms(app: web.Application, container: Container) -> dict[str, str | None]:
    """Mount every platform that has credentials; log one line for each that is disabled."""
    status: dict[str, str | None] = {}
    for platform, reason in container.settings.platforms().items():
        if reason is None:
            try:
                module: Any = importlib.import_module(PLATFORM_MODULES[platform])
                module.mount(app, container)
            except ModuleNotFoundError:
                reason = "its adapter is not part of this version yet"
            except Exception as exc:  # a broken platform never takes the others down
                logger.exception("%s could not start", platform)
                reason = f"failed to start: {exc}"
        status[platform] = reason
        if reason is None:
            logger.info("%s enabled", platform)
        else:
            logger.warning("%s disabled: %s", platform, reason)
    return status


async def healthz(request: web.Request) -> web.Response:
    """Store reachable? Which platforms are on? 200 when the store answers, 503 otherwise."""
    container = request.app[CONTAINER]
    store: dict[str, Any] = {"backend": container.engine.dialect.name}
    try:
        async with container.engine.connect() as conn:
            await asyncio.wait_for(conn.execute(text("SELECT 1")), timeout=5)
        store["reachable"] = True
    except Exception as exc:
        logger.warning("health check: store unreachable: %s", exc)
        store.update(reachable=False, error=type(exc).__name__)
    platforms = {name: {"enabled": reason is None, **({"reason": reason} if reason else {})}
                 for name, reason in request.app[PLATFORMS].items()}
    body = {"status": "ok" if store["reachable"] else "degraded", "store": store, "platforms": platforms}
    return web.json_response(body, status=200 if store["reachable"] else 503)


def create_app(container: Container, *, run_worker: bool = True) -> web.Application:
    """The service: `/healthz`, the platforms that are configured, webhooks, the delivery loop and the scheduler."""
    app = web.Application()
    app[CONTAINER] = container
    app.router.add_get("/healthz", healthz)
    app[PLATFORMS] = mount_platforms(app, container)
    for name in SOURCE_MODULES:
        importlib.import_module(name).mount(app, container)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await container.prepare()
        task = asyncio.create_task(container.worker().run_forever()) if run_worker else None
        scheduler = Scheduler(container) if run_worker else None
        if scheduler is not None:
            scheduler.start()  # feed polls, SLA sweeps and digests, exactly once across replicas
        yield
        if scheduler is not None:
            await scheduler.shutdown()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await container.close()

    app.cleanup_ctx.append(lifecycle)
    return app
