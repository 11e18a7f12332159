"""Signed inbound webhooks: `POST /hooks/<source>` turns a JSON item into a stored conversation.

A webhook source is a `Source` row with `kind == "webhook"` and its own secret. Each
request carries `X-Unsilo-Timestamp` (Unix seconds) and `X-Unsilo-Signature:
sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>`; a retried item (same
source and `id`) answers with the conversation it already made.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from adapters.net.guard import AddressGuard, UnsafeURL
from adapters.net.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from bot.ingest import Incoming, clean_text, html_to_text, make_incoming
from bot.views import has_visible

if TYPE_CHECKING:
    from bot.bootstrap import Container
    from storage.models import Source

logger = logging.getLogger(__name__)

MAX_BODY = 256 * 1024
MAX_SKEW_SECONDS = 5 * 60
MAX_EXTERNAL_ID = 512
_TIMESTAMP = re.compile(r"\d{1,12}")
UNKNOWN_SOURCE = "(unknown)"  # the metrics' label of a request to a source that does not exist


def mount(app: web.Application, container: Container) -> None:
    """Add `POST /hooks/{source}` to the service."""
    app.router.add_post("/hooks/{source}", WebhookReceiver(container).handle)


class Refused(Exception):
    """A request answered with an error: its status, its JSON body and the reason to log."""

    def __init__(self, status: int, body: dict[str, Any], reason: str, *, known: bool = True) -> None:
        super().__init__(reason)
        self.status, self.body, self.reason = status, body, reason
        self.known = known  # the source exists (its name may label a metric; an unknown one may be anything)


class WebhookReceiver:
    """Checks, parses and stores one webhook delivery; every refusal is logged with its reason."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self.guard = AddressGuard(container.settings.allow_private_urls)

    async def handle(self, request: web.Request) -> web.Response:
        """The aiohttp handler: 200 created, voice (of an open conversation) or duplicate, or 400/401/404/410/413
        with a JSON error."""
        name = request.match_info["source"]
        try:
            item = await self._item(request, name)
        except Refused as refused:
            logger.warning("webhook %.128r refused (%s): %s", name, refused.status, refused.reason)
            self.container.metrics.ingested(name if refused.known else UNKNOWN_SOURCE, refused=1)
            return web.json_response(refused.body, status=refused.status)
        report = await self.container.ingest([item])
        if report.new_ids:
            logger.info("webhook %.128r: item %.128r stored as #%s", name, item.external_id, report.new_ids[0])
            return web.json_response({"id": report.new_ids[0], "status": "created"})
        if report.joined:  # the same as an open conversation: another voice of it (bot/voices.py)
            logger.info("webhook %.128r: item %.128r is another voice of #%s", name, item.external_id, report.joined[0])
            return web.json_response({"id": report.joined[0], "status": "voice"})
        async with self.container.uow() as uow:
            existing = await uow.conversations.id_for(item.source, item.external_id)
            if existing is None:
                existing = await uow.voices.conversation_of(item.source, item.external_id)
        if existing is None:  # only if the conversation vanished between the two transactions
            logger.error("webhook %.128r: item %.128r neither stored nor found", name, item.external_id)
            return web.json_response({"error": "try again"}, status=503)
        logger.info("webhook %.128r: item %.128r already stored as #%s", name, item.external_id, existing)
        return web.json_response({"id": existing, "status": "duplicate"})

    async def _item(self, request: web.Request, name: str) -> Incoming:
        """The verified, validated item of this request, or `Refused`."""
        if request.content_length is not None and request.content_length > MAX_BODY:
            too_large = _too_large(f"Content-Length {request.content_length}")
            too_large.known = False  # refused before the source was looked up
            raise too_large
        async with self.container.uow() as uow:
            source = await uow.sources.by_name(name)
        if source is None or source.kind != "webhook":
            raise Refused(404, {"error": "unknown source"}, "no webhook source by that name", known=False)
        if source.removed_at is not None:
            raise Refused(410, {"error": "this source was removed"}, "the webhook source was removed")
        body = await _read_limited(request)
        if self._verify(request, self._secrets(source), body):
            logger.warning("webhook %.128r signed with its secret before the last rotation: accepted while its grace lasts", name)
        try:
            payload = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise Refused(400, {"error": f"invalid JSON: {exc}"[:300]}, f"invalid JSON ({type(exc).__name__})") from None
        except RecursionError:  # e.g. 100,000 nested arrays
            raise Refused(400, {"error": "invalid JSON: nested too deeply"}, "JSON nested too deeply") from None
        if not isinstance(payload, dict):
            raise Refused(400, {"error": "the body must be a JSON object"}, "body is not a JSON object")
        values, errors = validate(payload, guard=self.guard)
        if errors:
            raise Refused(400, {"error": "invalid payload", "fields": errors}, f"invalid fields {sorted(errors)}")
        tags = tuple(dict.fromkeys([*source.tags, *values.pop("tags", ())]))
        return make_incoming(source=source.name, tags=tags, **values)

    def _secrets(self, source: Source) -> tuple[str, ...]:
        """The secrets a delivery may be signed with: the source's, and the one it replaced while
        its grace period runs (`unsilo sources rotate-secret`)."""
        current = (source.secret,) if source.secret else ()
        expires = source.previous_secret_expires_at
        if source.previous_secret and expires is not None and self.container.clock() < expires:
            return (*current, source.previous_secret)
        return current

    def _verify(self, request: web.Request, secrets: tuple[str, ...], body: bytes) -> bool:
        """Refuse (401) unless the signature matches one of `secrets` and the timestamp is within 5 minutes;
        True if it matched only a secret after the first (the one a rotation replaced)."""
        timestamp = request.headers.get(TIMESTAMP_HEADER, "").strip()
        given = request.headers.get(SIGNATURE_HEADER, "").strip().lower()
        if not secrets:
            raise _unauthorized("invalid signature", "the source has no secret set")
        if not given or not timestamp:
            raise _unauthorized(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header", "unsigned")
        if not _TIMESTAMP.fullmatch(timestamp):
            raise _unauthorized(f"{TIMESTAMP_HEADER} must be Unix seconds", "malformed timestamp")
        skew = self.container.clock().timestamp() - int(timestamp)
        if abs(skew) > MAX_SKEW_SECONDS:
            raise _unauthorized("stale timestamp: must be within 5 minutes of now", f"timestamp off by {skew:.0f}s")
        matches = [
            hmac.compare_digest(sign(s, timestamp, body).encode("ascii"), given.encode("utf-8", "replace")) for s in secrets
        ]
        if not any(matches):
            raise _unauthorized("invalid signature", "signature does not match")
        return not matches[0]


def _unauthorized(message: str, reason: str) -> Refused:
    return Refused(401, {"error": message}, reason)


def _too_large(reason: str) -> Refused:
    return Refused(413, {"error": f"body too large: at most {MAX_BODY} bytes"}, f"body too large ({reason})")


async def _read_limited(request: web.Request) -> bytes:
    """The raw body, refused (413) past `MAX_BODY`, whatever Content-Length said (the service has read it
    within its deadline and its 1 MB cap already: `bot.app.body_deadline`)."""
    body = await request.read()
    if len(body) > MAX_BODY:
        raise _too_large("read past the limit")
    return body


def validate(payload: dict[str, Any], *, guard: AddressGuard | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """`make_incoming` arguments from a webhook payload, and an error for every bad field.

    `null` counts as absent. Links must be http(s) URLs. Unknown fields are ignored.
    """
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    raw_id = payload.get("id")
    if raw_id is None:
        errors["id"] = "is required"
    elif isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        errors["id"] = "must be a string or an integer"
    elif not has_visible(str(raw_id)):
        errors["id"] = "must not be empty" if not str(raw_id).strip() else "must contain visible characters"
    elif len(str(raw_id).strip()) > MAX_EXTERNAL_ID:
        errors["id"] = f"must be at most {MAX_EXTERNAL_ID} characters"
    else:
        values["external_id"] = str(raw_id).strip()
    text_format = payload.get("format") or "text"
    if text_format not in ("text", "html"):
        errors["format"] = 'must be "text" or "html"'
    text = _string(payload, "text", errors, required=True)
    if text is not None:
        values["text"] = html_to_text(text) if text_format == "html" else clean_text(text)
        if not values["text"]:
            errors["text"] = "must not be empty"
        elif not has_visible(values["text"]):
            errors["text"] = "must contain visible characters (it is only spaces or invisible characters)"
    author = payload.get("author")
    if author is None:
        errors["author"] = "is required"
    elif not isinstance(author, dict):
        errors["author"] = "must be an object with a name"
    else:
        values["author_name"] = _string(author, "name", errors, prefix="author.", required=True)
        if values["author_name"] is not None and not values["author_name"].strip():
            errors["author.name"] = "must not be empty"
        elif values["author_name"] is not None and not has_visible(values["author_name"]):
            errors["author.name"] = "must contain visible characters"
        values["author_handle"] = _string(author, "handle", errors, prefix="author.")
        values["author_url"] = _link(author, "url", errors, prefix="author.")
    values["url"] = _link(payload, "url", errors)
    values["reply_url"] = _link(payload, "reply_url", errors)
    if values["reply_url"] and guard is not None:
        try:
            guard.check_url(values["reply_url"])
        except UnsafeURL as exc:
            errors["reply_url"] = f"must not point at an internal address ({exc})"[:300]
            values["reply_url"] = None
    values["title"] = _string(payload, "title", errors)
    values["channel"] = _string(payload, "channel", errors)
    created = _string(payload, "created_at", errors)
    if created:
        try:
            moment = datetime.fromisoformat(created.strip())
            values["created_at"] = (moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment).astimezone(UTC)
        except ValueError:
            errors["created_at"] = "must be an ISO 8601 date-time"
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 once in UTC
            errors["created_at"] = "must be a date-time within the years 1 to 9999 in UTC"
    tags = payload.get("tags")
    if tags is not None:
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            errors["tags"] = "must be a list of strings"
        else:
            values["tags"] = [t.strip() for t in tags if t.strip()]
    return {k: v for k, v in values.items() if v is not None}, errors


def _string(obj: dict[str, Any], key: str, errors: dict[str, str], *, prefix: str = "", required: bool = False) -> str | None:
    """`obj[key]` if it is a string; records an error if it is not (or is missing but required)."""
    value = obj.get(key)
    if value is None:
        if required:
            errors[prefix + key] = "is required"
        return None
    if not isinstance(value, str):
        errors[prefix + key] = "must be a string"
        return None
    return value


def _link(obj: dict[str, Any], key: str, errors: dict[str, str], *, prefix: str = "") -> str | None:
    """`obj[key]` if it is an absolute http(s) URL; records an error otherwise."""
    value = _string(obj, key, errors, prefix=prefix)
    if not value or not value.strip():
        return None
    try:
        parts = urlsplit(value.strip())
    except ValueError:  # e.g. an unclosed IPv6 bracket
        parts = urlsplit("")
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        errors[prefix + key] = "must be an http or https URL"
        return None
    return value.strip()
