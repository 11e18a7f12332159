"""`/metrics` tells the story as it runs: items in, clicks on both platforms, the outbox sending (and
being rate limited), feed polls and scheduler runs; and it is served to this machine or the admin only.

Every figure is read from `/metrics` (or `Metrics.scrape`) and parsed with prometheus_client's own
parser, as Prometheus reads it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from bot import codec, logs
from bot.bootstrap import Container
from bot.ingest import make_incoming
from bot.metrics import Metrics
from bot.scheduler import Scheduler
from bot.views import Button
from storage import masked_url
from storage.db import create_engine
from tests.slack_support import SlackHarness
from tests.standins import serve
from tests.teams_support import TeamsHarness, running_teams

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
README = Path(__file__).resolve().parent.parent / "README.md"


def parsed(text: str) -> Samples:
    """Every sample of an exposition, by (name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when the series does not exist yet)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(h: TeamsHarness, **headers: str) -> Samples:
    async with h.http.get(f"{h.url}/metrics", headers=headers) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/plain"
        return parsed(await response.text())


async def link_support(h: TeamsHarness) -> None:
    status, _ = await h.mention("link support", user="aad-admin")
    assert status in (200, 201)


async def ingest(h: TeamsHarness, external_id: str) -> list[int]:
    item = make_incoming(source="reviews", external_id=external_id, text="my kettle arrived broken, refund please")
    return (await h.container.ingest([item])).new_ids


async def test_the_counters_move_as_the_story_runs(tmp_path: Path) -> None:
    async with running_teams(tmp_path, with_slack=True) as h:
        assert h.slack is not None
        slack = SlackHarness(container=h.container, slack=h.slack, url=h.url, http=h.http)
        await link_support(h)
        await h.deliver()
        before = await scrape(h)

        # An item comes in, then the same item again: one new, one duplicate.
        (cid,) = await ingest(h, "1")
        assert await ingest(h, "1") == []
        now = await scrape(h)
        assert value(now, "unsilo_items_ingested_total", source="reviews", outcome="new") == 1
        assert value(now, "unsilo_items_ingested_total", source="reviews", outcome="duplicate") == 1
        assert value(now, "unsilo_conversations_open", department="support", status="open") == 1
        assert value(now, "unsilo_outbox_backlog", platform="slack") == 1
        assert value(now, "unsilo_outbox_backlog", platform="teams") == 1
        assert value(now, "unsilo_store_up") == 1

        # A post reported from chat, twice: counted as its report source's items, like a feed's.
        for _ in range(2):
            status, _ = await h.mention("report https://forum.example/p/9 the lid cracked on day two", user="aad-alice")
            assert status in (200, 201)
        reported = await scrape(h)
        assert value(reported, "unsilo_items_ingested_total", source="teams-report", outcome="new") == 1
        assert value(reported, "unsilo_items_ingested_total", source="teams-report", outcome="duplicate") == 1

        # The outbox posts the card on both platforms.
        await h.deliver()
        now = await scrape(h)
        for platform in ("slack", "teams"):
            assert value(now, "unsilo_deliveries_total", platform=platform, outcome="sent") == 1 + value(
                before, "unsilo_deliveries_total", platform=platform, outcome="sent"
            )
            assert value(now, "unsilo_delivery_seconds_count", platform=platform) == 1 + value(
                before, "unsilo_delivery_seconds_count", platform=platform
            )
            assert value(now, "unsilo_outbox_backlog", platform=platform) == 0
        before = now

        # Alice claims it on Teams; Bob's Claim on the Slack card comes too late and is refused.
        status, _ = await h.invoke("claim", cid, user="aad-alice", name="Alice")
        assert status == 200
        status, _, _ = await slack.click(f"unsilo:claim:{cid}", codec.encode(Button("Claim", "claim", cid)), user="UBOB")
        assert status == 200
        async with asyncio.timeout(10):  # the click's work runs after its ack
            while value(now := await scrape(h), "unsilo_commands_total", verb="claim", outcome="refused") < 1:
                await asyncio.sleep(0.02)
        assert value(now, "unsilo_commands_total", verb="claim", outcome="ok") == 1
        assert value(now, "unsilo_answer_seconds_count", platform="teams") == 1 + value(
            before, "unsilo_answer_seconds_count", platform="teams"
        )
        assert value(now, "unsilo_answer_seconds_count", platform="slack") == 1 + value(
            before, "unsilo_answer_seconds_count", platform="slack"
        )
        assert value(now, "unsilo_conversations_open", department="support", status="claimed") == 1
        assert value(now, "unsilo_conversations_open", department="support", status="open") == 0

        # Both platforms answer the card updates with 429: retried later, counted as rate limited.
        h.slack.fail_next("chat.update", status=429, retry_after=30)
        h.connector.fail_next("update", status=429, retry_after=30)
        await h.deliver()
        limited = await scrape(h)
        for platform in ("slack", "teams"):
            assert value(limited, "unsilo_rate_limited_total", platform=platform) == 1
            assert value(limited, "unsilo_deliveries_total", platform=platform, outcome="retried") == 1
            assert value(limited, "unsilo_deliveries_total", platform=platform, outcome="sent") == value(
                before, "unsilo_deliveries_total", platform=platform, outcome="sent"
            )
            assert value(limited, "unsilo_outbox_backlog", platform=platform) == 1

        # Thirty seconds later both updates go out; their latency includes the wait.
        async with h.container.uow() as uow:
            waiting = [d for p in ("slack", "teams") for d in await uow.deliveries.pending_on(p)]
        later = max(d.next_attempt_at for d in waiting)
        h.container.clock = lambda: later
        await h.deliver()
        done = await scrape(h)
        for platform in ("slack", "teams"):
            assert value(done, "unsilo_deliveries_total", platform=platform, outcome="sent") == 1 + value(
                limited, "unsilo_deliveries_total", platform=platform, outcome="sent"
            )
            waited = value(done, "unsilo_delivery_seconds_sum", platform=platform) - value(
                limited, "unsilo_delivery_seconds_sum", platform=platform
            )
            assert waited >= 30
            assert value(done, "unsilo_outbox_backlog", platform=platform) == 0

        # A webhook to a source that does not exist is refused, under a label no caller chooses.
        async with h.http.post(f"{h.url}/hooks/made-up-{cid}", data=b"{}") as response:
            assert response.status == 404
        refused = await scrape(h)
        assert value(refused, "unsilo_items_ingested_total", source="(unknown)", outcome="refused") == 1
        assert not any(dict(labels).get("source", "").startswith("made-up") for _, labels in refused)


async def test_metrics_and_health_details_are_for_this_machine_or_the_admin_token(tmp_path: Path) -> None:
    token = "s3cret-admin-token"
    async with running_teams(tmp_path, env={"UNSILO_ADMIN_TOKEN": token}) as h:
        proxied = {"X-Forwarded-For": "203.0.113.9"}  # what a reverse proxy on this host adds

        async with h.http.get(f"{h.url}/healthz") as response:
            local = await response.json()
        assert local["platforms"]["teams"]["state"] == "ok" and "store" in local
        async with h.http.get(f"{h.url}/healthz", headers=proxied) as response:
            assert response.status == 200 and await response.json() == {"status": local["status"]}

        for headers in (proxied, {**proxied, "Authorization": "Bearer wrong"}, {**proxied, "Authorization": token}):
            async with h.http.get(f"{h.url}/metrics", headers=headers) as response:
                assert response.status == 401 and "unsilo_" not in await response.text()
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
        samples = await scrape(h, **proxied, Authorization=f"Bearer {token}")
        assert value(samples, "unsilo_store_up") == 1
        async with h.http.get(f"{h.url}/healthz", headers={**proxied, "Authorization": f"Bearer {token}"}) as response:
            assert "platforms" in await response.json()


async def test_a_stalled_store_leaves_the_gauges_out_but_never_holds_the_scrape(tmp_path: Path) -> None:
    from tests.conftest import PG_URL
    from tests.standins.tcp_proxy import StallingProxy

    metrics = Metrics()
    metrics.command("claim", "ok")
    async with StallingProxy("127.0.0.1", 5432) as proxy:
        proxy.stall()
        engine = create_engine(PG_URL.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"))
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            samples = parsed((await metrics.scrape(engine, Container.clock)).decode())
            assert loop.time() - started < 2.0
        finally:
            assert metrics._scrape is not None
            metrics._scrape.cancel()
            await asyncio.gather(metrics._scrape, return_exceptions=True)
            await engine.dispose()
    assert value(samples, "unsilo_store_up") == 0
    assert value(samples, "unsilo_commands_total", verb="claim", outcome="ok") == 1  # the counters are still there
    assert not any(name == "unsilo_outbox_backlog" for name, _ in samples)


async def test_the_store_gauges_count_what_the_store_holds(container: Container) -> None:
    report = await container.ingest(
        [make_incoming(source="shop", external_id=str(i), text=f"order {i}: my parcel never came") for i in range(3)]
    )
    async with container.uow() as uow:
        departments = [d.name for cid in report.new_ids for d in await uow.conversations.departments_of(cid)]
        pending = {p: len(await uow.deliveries.pending_on(p)) for p in container.senders}
    samples = parsed((await container.metrics.scrape(container.engine, container.clock)).decode())
    for department in set(departments):
        assert value(samples, "unsilo_conversations_open", department=department, status="open") == departments.count(department)
    for platform, count in pending.items():
        assert value(samples, "unsilo_outbox_backlog", platform=platform) == count
    assert sum(pending.values()) > 0


async def test_feed_polls_and_scheduler_runs_are_counted(container: Container) -> None:
    feed = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Shop</title>
<item><guid>order-1</guid><title>Where is my parcel?</title><description>The courier never came.</description></item>
</channel></rss>"""

    async def ok(_: web.Request) -> web.Response:
        return web.Response(body=feed, content_type="application/rss+xml")

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=500)

    site = web.Application()
    site.router.add_get("/ok", ok)
    site.router.add_get("/broken", broken)
    runner, url = await serve(site)
    try:
        async with container.uow() as uow:
            await uow.sources.ensure("good-feed", kind="feed", url=f"{url}/ok")
            await uow.sources.ensure("bad-feed", kind="feed", url=f"{url}/broken")
            await uow.commit()
        scheduler = Scheduler(container)
        await scheduler.poll_feeds()
        await scheduler.sweep()
    finally:
        await runner.cleanup()
    samples = parsed((await container.metrics.scrape(container.engine, container.clock)).decode())
    assert value(samples, "unsilo_feed_polls_total", feed="good-feed", outcome="new items") == 1
    assert value(samples, "unsilo_feed_polls_total", feed="bad-feed", outcome="failed") == 1
    assert value(samples, "unsilo_items_ingested_total", source="good-feed", outcome="new") == 1
    assert value(samples, "unsilo_scheduler_runs_total", job="feeds", outcome="ok") == 1
    assert value(samples, "unsilo_scheduler_runs_total", job="sweep", outcome="ok") == 1


def test_the_readme_lists_every_metric_served() -> None:
    """The README's metrics table names each metric `/metrics` can serve, with its type and labels."""
    metrics = Metrics()
    served: dict[str, tuple[str, tuple[str, ...]]] = {}
    for collector in list(metrics.registry._collector_to_names):
        for family in collector.describe() or ():
            served[family.name] = (family.type, tuple(getattr(collector, "_labelnames", ())))
    served.update(
        unsilo_store_up=("gauge", ()),
        unsilo_outbox_backlog=("gauge", ("platform",)),
        unsilo_outbox_oldest_due_seconds=("gauge", ("platform",)),
        unsilo_conversations_open=("gauge", ("department", "status")),
    )
    listed = {
        name: (kind, tuple(label.strip() for label in labels.replace("`", "").split(",") if label.strip()))
        for name, kind, labels in re.findall(r"^\| `(unsilo_\w+)` \| (\w+) \| ([^|]*) \|", README.read_text(), flags=re.M)
    }
    for name, (kind, labels) in served.items():
        shown = name + "_total" if kind == "counter" else name
        assert shown in listed, f"{shown} is missing from the README's metrics table"
        assert listed[shown] == (kind, labels), shown
    assert len(listed) == len(served)


def test_log_level_and_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []
    try:
        logs.configure(logging.WARNING, level="debug", fmt="json")
        assert root.level == logging.DEBUG and logging.getLogger("apscheduler").level == logging.NOTSET
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("bot.test").exception("#%s could not be read", 62)
        line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
        assert line["level"] == "ERROR" and line["logger"] == "bot.test" and line["message"] == "#62 could not be read"
        assert "ValueError: boom" in line["exception"] and line["time"].endswith("+00:00")

        root.handlers = []
        logs.configure(logging.INFO, level="loud")
        assert root.level == logging.INFO
        assert "LOG_LEVEL='loud' is not a level" in capsys.readouterr().err
        assert logging.getLogger("apscheduler").level == logging.WARNING
        access = logging.getLogger("aiohttp.access")
        probe = access.makeRecord(
            "aiohttp.access", logging.INFO, "", 0, "x", (), None, extra={"first_request_line": "GET /healthz HTTP/1.1"}
        )
        click = access.makeRecord(
            "aiohttp.access", logging.INFO, "", 0, "x", (), None, extra={"first_request_line": "POST /slack/events HTTP/1.1"}
        )
        assert not access.filter(probe) and access.filter(click)
    finally:
        root.handlers, root.level = saved
        logs.quiet(logging.DEBUG)


def test_database_urls_are_shown_with_their_password_masked() -> None:
    shown = masked_url("postgresql+asyncpg://unsilo:hunter2@db.internal:5432/unsilo")
    assert "hunter2" not in shown and shown == "postgresql+asyncpg://unsilo:***@db.internal:5432/unsilo"
    assert "hunter2" not in masked_url("unsilo:hunter2@db.internal/unsilo")  # not even a URL
    with pytest.raises(ValueError) as refused:
        create_engine("unsilo:hunter2@db.internal/unsilo")
    assert "hunter2" not in str(refused.value)


def test_a_bad_url_on_the_command_line_is_never_printed_with_its_password(capsys: pytest.CaptureFixture[str]) -> None:
    from bot.cli import main

    code = main(["--database-url", "postgresql://u:hunter2@127.0.0.1:1/x", "queue"])
    assert code == 3
    err = capsys.readouterr().err
    assert "cannot connect to the store at postgresql://u:***@127.0.0.1:1/x" in err and "hunter2" not in err
