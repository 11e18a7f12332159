"""Feeds are polled over real HTTP: every item stored once, unchanged feeds cost nothing, broken ones back off.

A loopback web site serves every reference feed in ../shared/reference/feeds with real
ETag / Last-Modified validators (a matching If-None-Match gets a 304 and no body), plus
feeds that misbehave in the ways real ones do; it records every request it answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web
from sqlmodel import func, select

from adapters.sources.feeds import FeedPoller, PollOutcome, PollStatus
from bot.bootstrap import Container, load_config
from bot.domain import NotFound
from bot.ingest import parse_feed
from storage.models import Conversation, Source, Voice
from tests.conftest import TEST_CONFIG, FakeClock, reference_dir
from tests.standins import serve
from tests.test_feeds import NOT_A_FEED, feed_files

LAST_MODIFIED = "Mon, 16 Nov 2026 08:00:00 GMT"
CONTENT_TYPES = {
    ".xml": "application/xml",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".json": "application/feed+json",
}
SMALL_FEED = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Shop</title>
<item><guid>order-1</guid><title>Where is my parcel?</title><description>The courier never came.</description></item>
</channel></rss>"""


@dataclass
class Hit:
    """One request the site answered: what was asked, with which validators, and what went back."""

    path: str
    user_agent: str
    if_none_match: str | None
    if_modified_since: str | None
    status: int = 0
    sent: int = 0  # body bytes


HIT = web.RequestKey("hit", Hit)


@dataclass
class FeedSite:
    """A loopback web site of feeds, good and bad, that records every request."""

    feeds: dict[str, bytes]
    hits: list[Hit] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)  # lets hanging handlers end at teardown
    flaky_status: int = 500
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        broken = {
            "500": self._error,
            "hang": self._hang,
            "stall": self._stall,
            "drip": self._drip,
            "garbage": self._garbage,
            "huge": self._huge,
            "huge-stream": self._huge_stream,
            "flaky": self._flaky,
            "loop": self._loop,
            "to-internal": self._to_internal,
        }
        for name, handler in broken.items():
            app.router.add_get(f"/broken/{name}", handler)
        app.router.add_get("/moved/{path:.*}", self._moved)
        app.router.add_get("/{path:.*}", self._feed)
        return app

    def feed_url(self, path: str) -> str:
        return f"{self.url}{path}"

    def hits_on(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]

    @web.middleware
    async def _record(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        hit = Hit(
            request.path,
            request.headers.get("User-Agent", ""),
            request.headers.get("If-None-Match"),
            request.headers.get("If-Modified-Since"),
        )
        self.hits.append(hit)
        request[HIT] = hit
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # redirects are raised
            hit.status = exc.status
            raise
        hit.status = response.status
        if isinstance(response, web.Response) and isinstance(response.body, bytes):
            hit.sent = len(response.body)
        return response

    async def _feed(self, request: web.Request) -> web.Response:
        data = self.feeds.get(request.path)
        if data is None:
            return web.Response(status=404)
        etag = f'"{hashlib.sha256(data).hexdigest()[:20]}"'
        headers = {
            "ETag": etag,
            "Last-Modified": LAST_MODIFIED,
            "Content-Type": CONTENT_TYPES.get(Path(request.path).suffix, "application/xml"),
        }
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match is not None:  # RFC 9110: If-None-Match decides; If-Modified-Since is then ignored
            if etag in [tag.strip() for tag in if_none_match.split(",")] or if_none_match.strip() == "*":
                return web.Response(status=304, headers=headers)
        elif request.headers.get("If-Modified-Since") == LAST_MODIFIED:
            return web.Response(status=304, headers=headers)
        return web.Response(body=data, headers=headers)

    async def _to_internal(self, request: web.Request) -> web.Response:
        """A public-looking feed that redirects to an internal address (SSRF through a redirect)."""
        port = request.url.port
        raise web.HTTPFound(f"http://127.0.0.2:{port}/rss-parser/guardian.rss")

    async def _error(self, request: web.Request) -> web.Response:
        return web.Response(status=500, text="internal error")

    async def _hang(self, request: web.Request) -> web.Response:
        await self.release.wait()  # never answers while the test runs
        return web.Response(status=503)

    async def _stream(self, request: web.Request, chunks: Callable[[], AsyncIterator[bytes]]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/rss+xml"})
        await response.prepare(request)
        request[HIT].status = 200
        try:
            async for chunk in chunks():
                await response.write(chunk)
                request[HIT].sent += len(chunk)
        except (ConnectionError, RuntimeError):
            pass  # the poller hung up, as it should
        return response

    async def _stall(self, request: web.Request) -> web.StreamResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield SMALL_FEED[:60]  # headers and the start of a feed, then nothing
            await self.release.wait()

        return await self._stream(request, chunks)

    async def _drip(self, request: web.Request) -> web.StreamResponse:
        async def chunks() -> AsyncIterator[bytes]:
            yield SMALL_FEED[:60]
            while not self.release.is_set():  # a byte every 50 ms: no read ever waits long, the whole never ends
                await asyncio.sleep(0.05)
                yield b" "

        return await self._stream(request, chunks)

    async def _garbage(self, request: web.Request) -> web.Response:
        return web.Response(body=random.Random(7).randbytes(4096), content_type="application/rss+xml")

    async def _huge(self, request: web.Request) -> web.Response:
        return web.Response(
            body=SMALL_FEED.replace(b"never came.", b"never came." + b" " * 300_000), content_type="application/rss+xml"
        )

    async def _huge_stream(self, request: web.Request) -> web.StreamResponse:
        async def chunks() -> AsyncIterator[bytes]:  # chunked, no Content-Length: only counting tells
            yield SMALL_FEED[:60]
            for _ in range(200):
                yield b" " * 8192

        return await self._stream(request, chunks)

    async def _flaky(self, request: web.Request) -> web.Response:
        if self.flaky_status != 200:
            return web.Response(status=self.flaky_status)
        return web.Response(body=SMALL_FEED, content_type="application/rss+xml")

    async def _loop(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/broken/loop")

    async def _moved(self, request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/" + request.match_info["path"])


@pytest.fixture
def reference_feeds() -> dict[str, Path]:
    """Every reference feed file by its path on the site (read from ../shared, never copied)."""
    root = reference_dir() / "feeds"
    return {"/" + path.relative_to(root).as_posix(): path for path in feed_files()}


@pytest.fixture
async def site(reference_feeds: dict[str, Path]) -> AsyncIterator[FeedSite]:
    feed_site = FeedSite({path: file.read_bytes() for path, file in reference_feeds.items()})
    runner, feed_site.url = await serve(feed_site.app())
    yield feed_site
    feed_site.release.set()
    await runner.cleanup()


@pytest.fixture
async def containers(
    make_container: Callable[..., Container], tmp_path: Path
) -> AsyncIterator[Callable[..., Awaitable[Container]]]:
    """Prepared containers whose config lists the given feeds (several = several replicas)."""
    made: list[Container] = []

    async def make(feeds: dict[str, str], *, clock: FakeClock, every: int = 300) -> Container:
        path = tmp_path / f"unsilo-{len(made)}.toml"
        path.write_text(
            TEST_CONFIG
            + "".join(f'\n[[feeds]]\nname = "{name}"\nurl = "{url}"\nevery = {every}\n' for name, url in feeds.items())
        )
        container = make_container(config=load_config(path), clock=clock)
        made.append(container)
        await container.prepare()
        return container

    yield make
    for container in made:
        await container.close()


def source_name(path: str) -> str:
    """A config-valid feed name for a reference file: `ref-` + its lowercased stem."""
    return "ref-" + re.sub(r"[^a-z0-9_-]", "-", Path(path).stem.lower())


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/feed.xml"  # nothing listens there any more


async def sources(container: Container) -> dict[str, Source]:
    async with container.uow() as uow:
        return {s.name: s for s in (await uow.session.exec(select(Source))).all()}


async def conversations_per_source(container: Container) -> Counter[str]:
    """The items stored per source: conversations, and voices of one (the same post twice: bot/voices.py)."""
    counted: Counter[str] = Counter()
    async with container.uow() as uow:
        for table in (Conversation, Voice):
            rows = (await uow.session.exec(select(table.source, func.count()).group_by(table.source))).all()
            counted.update(dict(rows))
    return counted


async def voices_per_source(container: Container) -> Counter[str]:
    """The items stored as another voice of a conversation, per source."""
    async with container.uow() as uow:
        rows = (await uow.session.exec(select(Voice.source, func.count()).group_by(Voice.source))).all()
    return Counter(dict(rows))


def by_source(outcomes: list[PollOutcome]) -> dict[str, PollOutcome]:
    return {o.source: o for o in outcomes}


async def test_every_reference_feed_is_stored_once_and_an_unchanged_feed_is_not_downloaded_again(
    site: FeedSite, containers: Callable[..., Awaitable[Container]], reference_feeds: dict[str, Path]
) -> None:
    clock = FakeClock()
    feeds = {source_name(path): site.feed_url(path) for path in reference_feeds}
    assert len(feeds) == len(reference_feeds) == 30  # every name is distinct
    container = await containers(feeds, clock=clock, every=300)
    poller = FeedPoller(container, timeout=10, jitter=0.0)
    expected, read = {}, {}  # conversations per feed (distinct ids), items in it
    for path, file in reference_feeds.items():
        if file.name not in NOT_A_FEED:
            items, _ = parse_feed(file.read_bytes(), source=source_name(path))
            expected[source_name(path)] = len({i.external_id for i in items})
            read[source_name(path)] = len(items)
    not_feeds = {source_name(p) for p, f in reference_feeds.items() if f.name in NOT_A_FEED}

    first = by_source(await poller.poll_due())

    assert set(first) == set(feeds)
    assert await conversations_per_source(container) == Counter({k: v for k, v in expected.items() if v})
    assert {name for name, o in first.items() if o.status == PollStatus.FAILED} == not_feeds
    for name in not_feeds:
        assert first[name].error and first[name].error.startswith("not a feed: ")
    merged = await voices_per_source(container)  # the same post twice: one conversation, two voices
    for name, count in expected.items():
        assert first[name].status == (PollStatus.NEW_ITEMS if count else PollStatus.NO_NEW_ITEMS), name
        assert first[name].new + merged[name] == count and first[name].seen == read[name]
        assert first[name].next_poll_at == clock.now + timedelta(seconds=300)
    stored = await sources(container)
    assert all(stored[name].etag and stored[name].last_modified == LAST_MODIFIED for name in expected)
    assert all(h.status == 200 and h.user_agent.startswith("Unsilo/") for h in site.hits)
    downloaded_first = sum(h.sent for h in site.hits)

    site.hits.clear()
    assert await poller.poll_due() == []  # nothing is due yet
    clock.advance(seconds=301)
    second = by_source(await poller.poll_due())

    assert set(second) == set(expected)  # the feed that is not one waits out its back-off
    assert {o.status for o in second.values()} == {PollStatus.NOT_MODIFIED}
    assert len(site.hits) == len(expected) and {h.status for h in site.hits} == {304}
    assert all(h.if_none_match and h.if_modified_since == LAST_MODIFIED for h in site.hits)
    assert sum(h.sent for h in site.hits) == 0 < downloaded_first
    assert await conversations_per_source(container) == Counter({k: v for k, v in expected.items() if v})
    stored = await sources(container)
    assert all(stored[name].next_poll_at == clock.now + timedelta(seconds=300) for name in expected)
    assert all(stored[name].items_seen == read[name] and stored[name].failures == 0 for name in expected)


async def test_broken_feeds_are_recorded_and_pushed_back_while_healthy_ones_are_ingested_in_the_same_run(
    site: FeedSite, containers: Callable[..., Awaitable[Container]]
) -> None:
    clock = FakeClock()
    broken = {
        "server-error": (site.feed_url("/broken/500"), f"HTTP 500 from {site.url}/broken/500"),
        "hangs": (site.feed_url("/broken/hang"), "timed out after 2s"),
        "stalls-mid-body": (site.feed_url("/broken/stall"), "timed out after 2s"),
        "drips-forever": (site.feed_url("/broken/drip"), "timed out after 2s"),
        "garbage": (site.feed_url("/broken/garbage"), "not a feed: source 'garbage': cannot read the feed"),
        "too-big": (site.feed_url("/broken/huge"), "feed is larger than 256 KB"),
        "too-big-chunked": (site.feed_url("/broken/huge-stream"), "feed is larger than 256 KB"),
        "redirect-loop": (site.feed_url("/broken/loop"), "more than 5 redirects"),
        "nobody-home": (closed_port_url(), "cannot connect to http://127.0.0.1:"),
        # Only 127.0.0.1 is allowed (UNSILO_ALLOW_PRIVATE_URLS, as the tests' stand-ins need): every other
        # internal address is refused at connect time, after a redirect too.
        "redirects-inside": (site.feed_url("/broken/to-internal"), "127.0.0.2 is an internal address"),
        "metadata-service": ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is an internal address"),
    }
    healthy = {
        "guardian": "/rss-parser/guardian.rss",
        "heise": "/rss-parser/heise.atom",
        "jsonfeed": "/feedparser/json/example.json",
    }
    feeds = {name: url for name, (url, _) in broken.items()}
    feeds |= {name: site.feed_url(path) for name, path in healthy.items()}
    feeds["moved"] = site.feed_url("/moved/rss-parser/reddit.rss")  # followed to where it lives now
    container = await containers(feeds, clock=clock, every=60)
    poller = FeedPoller(container, timeout=2, max_bytes=256 * 1024, jitter=0.0)

    started = time.perf_counter()
    outcomes = by_source(await poller.poll_due())
    elapsed = time.perf_counter() - started

    print(f"[{container.engine.dialect.name}] one poll_due run with 3 feeds timing out at 2s: {elapsed:.2f}s")
    # Three feeds each took the whole timeout, at the same time: one timeout, not the sum of three.
    assert 2 <= elapsed < 6, f"{elapsed:.2f}s (the sum of the three would be 6 s)"
    stored = await sources(container)
    for name, (_, error) in broken.items():
        assert outcomes[name].status == PollStatus.FAILED, name
        assert error in (stored[name].last_error or ""), (name, stored[name].last_error)
        assert stored[name].failures == 1 and outcomes[name].error == stored[name].last_error
        assert stored[name].next_poll_at == clock.now + timedelta(seconds=120) == outcomes[name].next_poll_at
    counts = await conversations_per_source(container)
    assert not set(counts) & set(broken)
    for name in [*healthy, "moved"]:
        assert outcomes[name].status == PollStatus.NEW_ITEMS and counts[name] == outcomes[name].new > 0, name
        assert stored[name].failures == 0 and stored[name].last_error is None
    assert [h.status for h in site.hits_on("/moved/rss-parser/reddit.rss")] == [301]
    assert len(site.hits_on("/broken/loop")) == 6  # the first request and five redirects, then it stopped
    assert "Content-Length" in stored["too-big"].last_error  # refused before reading the body
    assert "Content-Length" not in stored["too-big-chunked"].last_error  # refused while counting the stream


async def test_back_off_doubles_on_each_failure_up_to_a_cap_and_a_success_resets_it(
    site: FeedSite, containers: Callable[..., Awaitable[Container]]
) -> None:
    clock = FakeClock()
    container = await containers({"flaky": site.feed_url("/broken/flaky")}, clock=clock, every=60)
    poller = FeedPoller(container, timeout=5, jitter=0.0)

    waits = []
    for _ in range(11):
        [outcome] = await poller.poll_due()
        assert outcome.status == PollStatus.FAILED and outcome.next_poll_at is not None
        waits.append((outcome.next_poll_at - clock.now).total_seconds())
        clock.advance(seconds=waits[-1] - 1)
        assert await poller.poll_due() == []  # not retried before its time
        clock.advance(seconds=1)

    assert waits == [120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600, 21600, 21600]  # capped at 6 hours
    failing = (await sources(container))["flaky"]
    assert failing.failures == 11 and failing.last_error == f"HTTP 500 from {site.url}/broken/flaky"
    assert len(site.hits_on("/broken/flaky")) == 11

    site.flaky_status = 200
    [recovered] = await poller.poll_due()
    assert recovered.status == PollStatus.NEW_ITEMS and recovered.new == 1
    assert recovered.next_poll_at == clock.now + timedelta(seconds=60)
    healthy = (await sources(container))["flaky"]
    assert healthy.failures == 0 and healthy.last_error is None

    site.flaky_status = 500  # and the next failure starts the back-off from the beginning
    clock.advance(seconds=60)
    [again] = await poller.poll_due()
    assert again.next_poll_at == clock.now + timedelta(seconds=120)
    assert (await sources(container))["flaky"].failures == 1

    with pytest.raises(NotFound, match="no feed named 'nope'"):
        await poller.poll("nope")


async def test_two_replicas_polling_at_the_same_moment_fetch_each_feed_once(
    site: FeedSite, containers: Callable[..., Awaitable[Container]], reference_feeds: dict[str, Path]
) -> None:
    clock = FakeClock()
    feeds = {source_name(path): site.feed_url(path) for path in reference_feeds if reference_feeds[path].name not in NOT_A_FEED}
    replicas = [await containers(feeds, clock=clock) for _ in range(2)]
    pollers = [FeedPoller(replica, timeout=10) for replica in replicas]

    results = await asyncio.gather(*(p.poll_due() for p in pollers))

    done = [o for outcomes in results for o in outcomes if o.status != PollStatus.SKIPPED]
    assert sorted(o.source for o in done) == sorted(feeds)  # each feed polled by exactly one replica
    assert Counter(h.path for h in site.hits) == Counter(
        {path: 1 for path in reference_feeds if reference_feeds[path].name not in NOT_A_FEED}
    )
    assert sum(o.new for o in done) + sum((await voices_per_source(replicas[0])).values()) == sum(
        (await conversations_per_source(replicas[0])).values()
    )
    print(
        f"[{replicas[0].engine.dialect.name}] polls per replica: "
        f"{[sum(o.status != PollStatus.SKIPPED for o in r) for r in results]}, "
        f"skipped (taken by the other): {[sum(o.status == PollStatus.SKIPPED for o in r) for r in results]}"
    )

    # And when the feeds are due again, the race is run again, still once each.
    site.hits.clear()
    clock.advance(seconds=301)
    results = await asyncio.gather(*(p.poll_due() for p in pollers))
    assert Counter(h.path for h in site.hits) == Counter(
        {p: 1 for p in reference_feeds if reference_feeds[p].name not in NOT_A_FEED}
    )
    assert {h.status for h in site.hits} == {304}


async def test_correcting_a_feed_url_in_the_config_polls_it_now_instead_of_after_the_old_back_off(
    make_container: Callable[..., Container], tmp_path: Path
) -> None:
    def config(url: str) -> object:
        path = tmp_path / f"c{abs(hash(url))}.toml"
        path.write_text(TEST_CONFIG + f'\n[[feeds]]\nname = "reviews"\nurl = "{url}"\nevery = 300\n')
        return load_config(path)

    clock = FakeClock()
    first = make_container(config=config("https://typo.example/feed"), clock=clock)
    await first.prepare()
    async with first.uow() as uow:
        source = await uow.sources.by_name("reviews")
        assert source is not None
        source.failures, source.last_error = 5, "cannot connect to https://typo.example/feed"
        source.next_poll_at, source.etag = clock.now + timedelta(hours=6), '"old"'
        await uow.commit()
    await first.close()

    fixed = make_container(config=config("https://reviews.example/feed"), clock=clock)
    await fixed.prepare()
    async with fixed.uow() as uow:
        source = await uow.sources.by_name("reviews")
        due = await uow.sources.due_feeds(clock.now)
    await fixed.close()
    assert source is not None and source.url == "https://reviews.example/feed"
    assert (source.failures, source.last_error, source.etag) == (0, None, None)
    assert [s.name for s in due] == ["reviews"]
