"""The outbox's reply sender: a signed JSON POST of the reply to the source's reply endpoint.

The request is signed like inbound webhooks (`adapters.sources.webhooks.sign`): headers
`X-Unsilo-Timestamp` and `X-Unsilo-Signature: sha256=<hex HMAC-SHA256(secret, ts + "." + body)>`
with the source's secret; `X-Unsilo-Delivery` carries a key that stays the same across
retries, so the receiver can drop a duplicate. 5xx, timeouts and connection errors are
retried with backoff by the outbox; 429 waits for Retry-After; other 4xx fail at once.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp

from adapters.net.guard import AddressGuard, UnsafeURL
from adapters.net.signing import sign
from bot.outbox import Job, PermanentFailure, RetryLater, Sent
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

TIMEOUT = 15.0


class OutboundSender:
    """Sends reply deliveries (platform `outbound`)."""

    def __init__(
        self,
        uow_factory: Callable[[], UnitOfWork],
        *,
        timeout: float = TIMEOUT,
        clock: Callable[[], float] = time.time,
        allowed: Iterable[str] = (),
    ) -> None:
        self._uow = uow_factory
        self.timeout = timeout
        self.clock = clock
        self.guard = AddressGuard(allowed)  # reply endpoints come from payloads: never internal addresses
        self._http: aiohttp.ClientSession | None = None

    async def _body_and_secret(self, job: Job) -> tuple[bytes, str, int]:
        async with self._uow() as uow:
            reply = await uow.replies.get(int(job.payload.get("reply_id", 0)))
            source = await uow.sources.by_name(str(job.payload.get("source", "")))
        if reply is None:
            raise PermanentFailure("the reply no longer exists")
        if source is None or not source.secret:
            raise PermanentFailure(f"source {job.payload.get('source')!r} has no signing secret for replies")
        body: dict[str, Any] = {
            "in_reply_to": job.payload.get("external_id"),
            "text": reply.text,
            "author": {"name": job.payload.get("author", "")},
            "reply_id": reply.id,
            "conversation_id": reply.conversation_id,
        }
        return json.dumps(body, ensure_ascii=False).encode(), source.secret, reply.conversation_id

    async def send(self, job: Job) -> Sent:
        """POST the reply; map the receiver's answer for the outbox."""
        if job.kind != "reply":
            raise PermanentFailure(f"the outbound sender cannot send {job.kind!r} deliveries")
        url = str(job.payload.get("url", ""))
        try:
            self.guard.check_url(url)
        except UnsafeURL as exc:
            raise PermanentFailure(f"reply endpoint refused: {exc}") from None
        body, secret, conversation_id = await self._body_and_secret(job)
        timestamp = str(int(self.clock()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Unsilo (+reply delivery)",
            "X-Unsilo-Timestamp": timestamp,
            "X-Unsilo-Signature": sign(secret, timestamp, body),
            "X-Unsilo-Delivery": f"reply:{job.payload.get('reply_id')}",
        }
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout), connector=self.guard.connector()
            )
        try:
            response = await self._http.post(url, data=body, headers=headers, allow_redirects=False)
        except UnsafeURL as exc:  # resolved to an internal address at connect time
            raise PermanentFailure(f"reply endpoint refused: {exc}") from None
        async with response:
            if 200 <= response.status < 300:
                logger.info("reply to #%s delivered to %s", conversation_id, url)
                return Sent()
            if response.status == 429:
                raise RetryLater(float(response.headers.get("Retry-After", 30)), "reply endpoint rate limit", status=429)
            if 400 <= response.status < 500 and response.status not in (408, 425):
                raise PermanentFailure(f"the reply endpoint answered HTTP {response.status}")
            raise RuntimeError(f"the reply endpoint answered HTTP {response.status}")

    async def close(self) -> None:
        """Release the HTTP connections."""
        if self._http is not None:
            await self._http.close()
