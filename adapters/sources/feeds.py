"""Feed polling: a conditional GET of every due feed, concurrently, each due poll taken by one replica.

`FeedPoller.poll_due()` is what the scheduler calls. Each due feed is first claimed with one
conditional UPDATE of its `Source` row, so replicas sharing PostgreSQL never fetch the same
due poll twice; it is then fetched with its stored ETag / Last-Modified (a 304 downloads
nothing), read by `bot.ingest.parse_feed` and stored by `Container.ingest` together with its
new validators and next due time. A failure is written on the row, with exponential back-off.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from importlib import metadata
from typing import TYPE_CHECKING

import aiohttp

from adapters.net.guard import AddressGuard, UnsafeURL
from bot.domain import NotFound
from bot.ingest import Incoming, IngestError, parse_feed
from storage.models import Source

if TYPE_CHECKING:
    from bot.bootstrap import Container

logger = logging.getLogger(__name__)

MAX_BACKOFF = timedelta(hours=6)
LEASE = timedelta(minutes=5)  # a replica that dies mid-poll leaves the feed to others after this
MAX_REDIRECTS = 5
ACCEPT = "application/rss+xml, application/atom+xml, application/feed+json, application/xml;q=0.9, */*;q=0.8"
_ETAG_LIMIT, _LAST_MODIFIED_LIMIT, _ERROR_LIMIT = 512, 128, 2048  # `storage.models.Source` columns


def user_agent() -> str:
    """`Unsilo/<version> (+feed poller)`: how feed servers see us."""
    try:
        version = metadata.version("unsilo")
    except metadata.PackageNotFoundError:
        version = "dev"
    return f"Unsilo/{version} (+feed poller)"


class PollStatus(StrEnum):
    """How one poll of one feed ended."""

    NEW_ITEMS = "new items"
    NO_NEW_ITEMS = "no new items"
    NOT_MODIFIED = "not modified"
    FAILED = "failed"
    SKIPPED = "skipped"  # another replica took this poll


@dataclass(frozen=True)
class PollOutcome:
    """What polling one feed did: its status, new conversations, items read, error, next due time."""

    source: str
    status: PollStatus
    new_ids: tuple[int, ...] = ()
    seen: int = 0
    error: str | None = None
    next_poll_at: datetime | None = None
    warning: str | None = None

    @property
    def new(self) -> int:
        """How many new conversations the poll made."""
        return len(self.new_ids)


class PollFailed(Exception):
    """A feed could not be fetched or read; the message is what its source's `last_error` shows."""


@dataclass(frozen=True)
class _Fetched:
    """A 200 (with its body) or a 304 (without), and the validators to send next time."""

    modified: bool
    body: bytes
    etag: str | None
    last_modified: str | None


def _size(limit: int) -> str:
    for unit, factor in (("MB", 2**20), ("KB", 2**10)):
        if limit >= factor:
            return f"{limit / factor:g} {unit}"
    return f"{limit} bytes"


def _validator(value: str | None, limit: int) -> str | None:
    """A response's ETag or Last-Modified, if it fits its column (a cut one would never match)."""
    return value if value and len(value) <= limit else None


async def read_capped(response: aiohttp.ClientResponse, *, max_bytes: int) -> bytes:
    """The response body, refused as soon as it is known to exceed `max_bytes` (header, then stream)."""
    too_large = f"feed is larger than {_size(max_bytes)} ({response.url})"
    if response.content_length is not None and response.content_length > max_bytes:
        raise PollFailed(f"{too_large}: Content-Length {response.content_length}")
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > max_bytes:
            raise PollFailed(too_large)
    return bytes(body)


class FeedPoller:
    """Polls the store's feed sources: conditional GETs, bounded size, time and redirects.

    At most `concurrency` feeds are fetched at once. Give it a `session` to share an HTTP
    connection pool; otherwise each `poll_due` or `poll` call opens and closes its own.
    """

    def __init__(
        self,
        container: Container,
        *,
        timeout: float = 20.0,
        max_bytes: int = 10 * 1024 * 1024,
        session: aiohttp.ClientSession | None = None,
        max_redirects: int = MAX_REDIRECTS,
        lease: timedelta = LEASE,
        max_backoff: timedelta = MAX_BACKOFF,
        jitter: float = 0.1,
        concurrency: int = 50,
    ) -> None:
        self.container = container
        self.guard = AddressGuard(container.settings.allow_private_urls)  # feeds never reach internal addresses
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.lease = lease
        self.max_backoff = max_backoff
        self.jitter = jitter
        self._session = session
        self._slots = asyncio.Semaphore(concurrency)  # so that a queued fetch never eats its own timeout

    async def poll_due(self) -> list[PollOutcome]:
        """Poll every feed that is due, concurrently: one slow or broken feed never delays the others."""
        async with self.container.uow() as uow:
            due = await uow.sources.due_feeds(self.container.clock())
        if not due:
            return []
        async with self._http() as http:
            results = await asyncio.gather(*(self._poll(http, s) for s in due), return_exceptions=True)
        return [self._counted(_settle(source, result)) for source, result in zip(due, results, strict=True)]

    async def poll(self, name: str) -> PollOutcome:
        """Poll one feed now, due or not (still fetched once if several replicas ask at the same moment)."""
        async with self.container.uow() as uow:
            source = await uow.sources.by_name(name)
        if source is None or source.kind != "feed" or not source.url:
            raise NotFound(f"there is no feed named {name!r} with a URL to poll")
        async with self._http() as http:
            return self._counted(await self._poll(http, source))

    def _counted(self, outcome: PollOutcome) -> PollOutcome:
        """Count a poll on `/metrics` by its status (one another replica took is not this one's poll)."""
        if outcome.status is not PollStatus.SKIPPED:
            self.container.metrics.feed_polled(outcome.source, outcome.status.value)
        return outcome

    def backoff(self, every_seconds: int, failures: int) -> timedelta:
        """The wait after `failures` failures in a row: every * 2**failures, capped, minus a little jitter."""
        cap = max(self.max_backoff.total_seconds(), every_seconds)
        seconds = min(every_seconds * 2.0 ** min(failures, 32), cap)
        return timedelta(seconds=seconds * (1 - self.jitter * random.random()))

    @asynccontextmanager
    async def _http(self) -> AsyncIterator[aiohttp.ClientSession]:
        if self._session is not None:
            yield self._session
            return
        async with aiohttp.ClientSession(connector=self.guard.connector()) as http:
            yield http

    async def _poll(self, http: aiohttp.ClientSession, source: Source) -> PollOutcome:
        async with self._slots:
            return await self._poll_now(http, source)

    async def _poll_now(self, http: aiohttp.ClientSession, source: Source) -> PollOutcome:
        if not await self._claim(source):
            logger.debug("feed %s: another replica took this poll", source.name)
            return PollOutcome(source.name, PollStatus.SKIPPED)
        try:
            fetched = await self._fetch(http, source)
            if not fetched.modified:
                return await self._not_modified(source, fetched)
            items, warning = await self._parse(source, fetched.body)
            return await self._store(source, fetched, items, warning)
        except PollFailed as exc:
            return await self._failed(source, str(exc))
        except Exception as exc:  # noqa: BLE001 - recorded on the source, never lost in the gather
            logger.exception("feed %s: unexpected error", source.name)
            return await self._failed(source, f"unexpected error: {type(exc).__name__}: {exc}")

    async def _claim(self, source: Source) -> bool:
        """Move the due time this replica read to the end of a lease; only one replica can."""
        assert source.id is not None
        async with self.container.uow() as uow:
            won = await uow.sources.claim_poll(source.id, due_at=source.next_poll_at, until=self.container.clock() + self.lease)
            await uow.commit()
        return won

    async def _fetch(self, http: aiohttp.ClientSession, source: Source) -> _Fetched:
        """GET the feed within the timeout, every network failure turned into a clear `PollFailed`."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._get(http, source)
        except TimeoutError:
            raise PollFailed(f"timed out after {self.timeout:g}s fetching {source.url}") from None
        except UnsafeURL as exc:
            raise PollFailed(f"refused to fetch {source.url}: {exc}") from None
        except aiohttp.TooManyRedirects:
            raise PollFailed(f"more than {self.max_redirects} redirects from {source.url} (a redirect loop?)") from None
        except aiohttp.ClientConnectorError as exc:
            raise PollFailed(f"cannot connect to {source.url}: {exc.os_error or exc}") from None
        except aiohttp.ClientError as exc:
            raise PollFailed(f"fetching {source.url} failed: {type(exc).__name__}: {exc}") from None

    async def _get(self, http: aiohttp.ClientSession, source: Source) -> _Fetched:
        headers = {"User-Agent": user_agent(), "Accept": ACCEPT}
        if source.etag:
            headers["If-None-Match"] = source.etag
        if source.last_modified:
            headers["If-Modified-Since"] = source.last_modified
        # aiohttp counts the redirect it refuses: +1 follows exactly `max_redirects` of them.
        async with http.get(source.url, headers=headers, max_redirects=self.max_redirects + 1) as response:
            etag = _validator(response.headers.get("ETag"), _ETAG_LIMIT)
            last_modified = _validator(response.headers.get("Last-Modified"), _LAST_MODIFIED_LIMIT)
            if response.status == 304:
                return _Fetched(False, b"", etag or source.etag, last_modified or source.last_modified)
            if response.status >= 300:
                raise PollFailed(f"HTTP {response.status} from {response.url}")
            body = await read_capped(response, max_bytes=self.max_bytes)
            return _Fetched(True, body, etag, last_modified)

    async def _parse(self, source: Source, body: bytes) -> tuple[list[Incoming], str | None]:
        """Items of the feed, parsed off the event loop (a big feed takes seconds of CPU)."""
        try:
            return await asyncio.to_thread(parse_feed, body, source=source.name, tags=source.tags)
        except IngestError as exc:
            raise PollFailed(f"not a feed: {exc}") from None

    async def _store(self, source: Source, fetched: _Fetched, items: Sequence[Incoming], warning: str | None) -> PollOutcome:
        next_at = self.container.clock() + timedelta(seconds=source.every_seconds)
        report = await self.container.ingest(
            items,
            source=source.name,
            source_update={
                "etag": fetched.etag,
                "last_modified": fetched.last_modified,
                "failures": 0,
                "last_error": None,
                "next_poll_at": next_at,
            },
            background=True,  # "seen before" right after, not holding the poll (a card sent first is updated)
        )
        status = PollStatus.NEW_ITEMS if report.new_ids else PollStatus.NO_NEW_ITEMS
        # A poll that brought nothing is not news (a feed is polled every few minutes): said at DEBUG only.
        logger.log(
            logging.INFO if report.new_ids else logging.DEBUG,
            "feed %s: %d new of %d items",
            source.name,
            len(report.new_ids),
            report.seen,
        )
        return PollOutcome(source.name, status, tuple(report.new_ids), report.seen, next_poll_at=next_at, warning=warning)

    async def _not_modified(self, source: Source, fetched: _Fetched) -> PollOutcome:
        now = self.container.clock()
        next_at = now + timedelta(seconds=source.every_seconds)
        async with self.container.uow() as uow:
            row = await uow.sources.by_name(source.name)
            if row is not None:
                row.etag, row.last_modified = fetched.etag, fetched.last_modified
                row.failures, row.last_error, row.last_polled_at, row.next_poll_at = 0, None, now, next_at
                await uow.commit()
        logger.debug("feed %s: not modified", source.name)
        return PollOutcome(source.name, PollStatus.NOT_MODIFIED, next_poll_at=next_at)

    async def _failed(self, source: Source, error: str) -> PollOutcome:
        """Record the failure on the source and push its next poll back."""
        error = error[:_ERROR_LIMIT]
        now = self.container.clock()
        async with self.container.uow() as uow:
            row = await uow.sources.by_name(source.name)
            if row is None:  # removed while we polled
                return PollOutcome(source.name, PollStatus.FAILED, error=error)
            row.failures += 1
            next_at = now + self.backoff(row.every_seconds, row.failures)
            row.last_error, row.last_polled_at, row.next_poll_at = error, now, next_at
            failures = row.failures
            await uow.commit()
        logger.warning(
            "feed %s: poll failed (%d in a row), next try at %s: %s",
            source.name,
            failures,
            next_at.isoformat(timespec="seconds"),
            error,
        )
        return PollOutcome(source.name, PollStatus.FAILED, error=error, next_poll_at=next_at)


def _settle(source: Source, result: PollOutcome | BaseException) -> PollOutcome:
    """A poll's outcome; one that could not even record its failure becomes a failed outcome."""
    if isinstance(result, PollOutcome):
        return result
    if not isinstance(result, Exception):
        raise result
    logger.error("feed %s: poll failed and could not be recorded", source.name, exc_info=result)
    return PollOutcome(source.name, PollStatus.FAILED, error=f"{type(result).__name__}: {result}")
