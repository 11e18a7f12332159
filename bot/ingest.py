"""The ingest pipeline: normalize -> dedupe on (source, external_id) -> route -> store -> enqueue.

Feed entries, webhook payloads and chat reports all become `Incoming` items first;
`store_items` then writes each new one with its departments and its `ingested`
event in the caller's unit of work, so a batch is stored whole or not at all.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import logging
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

from bot import seenbefore, suggest
from bot.domain import InvalidInput
from bot.routing import Router
from bot.voices import Joiner, Matching
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

# Column limits of `storage.models.Conversation`; longer values are cut, never rejected.
_LIMITS = {
    "external_id": 512,
    "author_name": 255,
    "author_handle": 255,
    "author_url": 2048,
    "title": 1024,
    "url": 2048,
    "channel": 64,
    "reply_url": 2048,
}
MAX_TEXT = 100_000


class IngestError(Exception):
    """A source could not be read at all; the message names the source."""


@dataclass(frozen=True)
class Incoming:
    """One customer conversation, normalized, before it is routed and stored."""

    source: str
    external_id: str
    text: str
    title: str = ""
    author_name: str = ""
    author_handle: str = ""
    author_url: str = ""
    url: str = ""
    created_at: datetime | None = None
    channel: str = ""
    reply_url: str = ""
    tags: tuple[str, ...] = ()

    def said(self) -> dict[str, Any]:
        """What the customer's post itself holds, as stored columns (of a conversation, or of a voice)."""
        return {
            "source": self.source,
            "external_id": self.external_id,
            "author_name": self.author_name,
            "author_handle": self.author_handle,
            "author_url": self.author_url,
            "title": self.title,
            "text": self.text,
            "url": self.url,
            "created_at": self.created_at,
        }


@dataclass
class IngestReport:
    """What one ingest run did."""

    source: str
    new_ids: list[int] = field(default_factory=list)
    duplicates: int = 0
    warning: str | None = None
    voices: int = 0  # items that became another voice of an open conversation (`bot.voices`)
    joined: list[int] = field(default_factory=list)  # the conversations they joined (their cards refreshed)

    @property
    def seen(self) -> int:
        """Items read from the source."""
        return len(self.new_ids) + self.duplicates + self.voices


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")  # controls and lone surrogates
_C1 = re.compile(r"[\x80-\x9f]")


def _demoronize(match: re.Match[str]) -> str:
    # A C1 control character in text is almost always a cp1252 byte read as Latin-1.
    try:
        return bytes([ord(match.group())]).decode("cp1252")
    except UnicodeDecodeError:
        return ""


def clean_text(text: str) -> str:
    """Untrusted text made storable: NFC, cp1252 mojibake fixed, control characters dropped."""
    text = unicodedata.normalize("NFC", text or "")
    text = _C1.sub(_demoronize, text)
    text = _CONTROL.sub("", text).replace("\r\n", "\n").replace("\r", "\n")
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


class _TextOfHtml(HTMLParser):
    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre"}
    _SKIP = {"script", "style", "head", "title", "noscript"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment: tags, scripts and styles removed, entities decoded."""
    if "<" not in html and "&" not in html:
        return clean_text(html)
    parser = _TextOfHtml()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    text = re.sub(r"[ \t\u00a0]+", " ", text)
    return clean_text(re.sub(r" *\n *", "\n", text))


_FIELD_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # one-line fields: every control, lone surrogates
_KEY_PREFIX = 440  # characters of a long id kept readable before its digest


def external_key(external_id: str) -> str:
    """The stored key of an item id: the id itself, or for one longer than the column (tracking URLs,
    long GUIDs) a readable prefix and the SHA-256 of the whole id, so distinct long ids never collide."""
    if len(external_id) <= _LIMITS["external_id"]:
        return external_id
    digest = hashlib.sha256(external_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{external_id[:_KEY_PREFIX]}…sha256:{digest}"


def _field(name: str, value: str) -> str:
    """A short field (id, handle, URL, channel) made storable: no control characters or lone surrogates
    (PostgreSQL refuses NUL, JSON refuses surrogates), cut to its column, the id hashed instead."""
    value = _FIELD_CONTROL.sub("", value).strip()
    if name == "external_id":
        return external_key(value)
    limit = _LIMITS.get(name)
    return value[:limit] if limit else value


def make_incoming(**values: Any) -> Incoming:
    """Build an `Incoming`, cleaning every text field and cutting it to the store's limits."""
    cleaned = {}
    for key, value in values.items():
        if isinstance(value, str):
            if key in ("text", "title", "author_name"):
                value = clean_text(value)
                value = value[:MAX_TEXT] if key == "text" else value[: _LIMITS.get(key, len(value))]
            else:
                value = _field(key, value)
        cleaned[key] = value
    if not cleaned.get("external_id"):
        raise InvalidInput("an item needs an id")
    return Incoming(**cleaned)


def _entry_time(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed:
            return datetime.fromtimestamp(calendar.timegm(parsed), UTC)
    return None


def _entry_text(entry: Any) -> str:
    for content in entry.get("content") or []:
        if content.get("value"):
            return html_to_text(content["value"])
    return html_to_text(entry.get("summary") or entry.get("description") or "")


def entry_to_incoming(entry: Any, *, source: str, base_url: str = "", tags: Sequence[str] = ()) -> Incoming:
    """Normalize one feedparser entry; the id is the entry's id/guid, else a hash of link+title."""
    title = html_to_text(entry.get("title") or "")
    link = entry.get("link") or ""
    if link and base_url:
        link = urljoin(base_url, link)
    text = _entry_text(entry) or title
    external_id = (entry.get("id") or "").strip()
    if not external_id:
        digest_source = f"{link}\n{title}" if (link or title) else text
        external_id = "sha256:" + hashlib.sha256(digest_source.encode("utf-8")).hexdigest()[:40]
    detail = entry.get("author_detail") or {}
    return make_incoming(
        source=source,
        external_id=external_id,
        title=title,
        text=text,
        url=link,
        author_name=detail.get("name") or entry.get("author") or "",
        author_url=detail.get("href") or "",
        created_at=_entry_time(entry),
        tags=tuple(tags),
    )


def _json_feed(data: bytes, *, source: str, tags: Sequence[str]) -> list[Incoming] | None:
    """Items of a JSON Feed (jsonfeed.org 1.x), or None if the bytes are not one."""
    if not data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return None
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict) or not str(doc.get("version", "")).startswith("https://jsonfeed.org/version/"):
        return None
    base_url = str(doc.get("home_page_url") or "")
    items = []
    for entry in doc.get("items") or []:
        if not isinstance(entry, dict):
            continue
        authors = entry.get("authors") or ([entry["author"]] if isinstance(entry.get("author"), dict) else [])
        author = authors[0] if authors and isinstance(authors[0], dict) else {}
        html = entry.get("content_html")
        text = (
            html_to_text(html)
            if isinstance(html, str)
            else clean_text(str(entry.get("content_text") or entry.get("summary") or ""))
        )
        title = clean_text(str(entry.get("title") or ""))
        link = urljoin(base_url, str(entry.get("url") or "")) if entry.get("url") else ""
        published = entry.get("date_published") or entry.get("date_modified")
        created = None
        if isinstance(published, str):
            try:
                created = datetime.fromisoformat(published.replace("Z", "+00:00")).astimezone(UTC)
            except ValueError:
                created = None
        external_id = str(entry.get("id") or "") or "sha256:" + hashlib.sha256(f"{link}\n{title}".encode()).hexdigest()[:40]
        items.append(
            make_incoming(
                source=source,
                external_id=external_id,
                title=title,
                text=text or title,
                url=link,
                author_name=str(author.get("name") or ""),
                author_url=str(author.get("url") or ""),
                created_at=created,
                tags=tuple(tags),
            )
        )
    return items


def parse_feed(data: bytes, *, source: str, tags: Sequence[str] = ()) -> tuple[list[Incoming], str | None]:
    """Items of an RSS, Atom, RDF or JSON feed, plus a warning if it had to be repaired.

    Ill-formed feeds are read as far as feedparser can; a document that is not a feed
    at all raises `IngestError` naming the source.
    """
    import feedparser  # here: the commands that parse no feed (`unsilo queue`) start without it

    json_items = _json_feed(data, source=source, tags=tags)
    if json_items is not None:
        return json_items, None
    parsed = feedparser.parse(data, sanitize_html=True, resolve_relative_uris=True)
    problem = parsed.get("bozo_exception")
    if not parsed.entries and not parsed.get("version"):
        reason = f"{type(problem).__name__}: {problem}" if problem else "the document is not an RSS, Atom or JSON feed"
        raise IngestError(f"source {source!r}: cannot read the feed: {reason}")
    base_url = parsed.feed.get("link") or ""
    items = [entry_to_incoming(e, source=source, base_url=base_url, tags=tags) for e in parsed.entries]
    warning = None
    if problem and not isinstance(problem, feedparser.CharacterEncodingOverride):
        warning = f"source {source!r}: feed is ill-formed ({type(problem).__name__}: {problem}); read {len(items)} items"
        logger.warning("%s", warning)
    return items, warning


async def store_items(
    uow: UnitOfWork,
    items: Sequence[Incoming],
    *,
    router: Router,
    actor_id: int | None = None,
    actor_name: str = "",
    department: str | None = None,
    kind: str = "ingested",
    matching: Matching | None = Matching(),
    recalled: bool = True,
) -> IngestReport:
    """Store every item not seen before, routed, with its event; mark each for delivery.

    An ingested item that is the same as an open conversation (`bot.voices`, unless `matching` is None)
    becomes another voice of it instead: that conversation's cards are refreshed. With `recalled`,
    "seen before" and who to ask are found in this transaction too; without, the caller runs `recall`
    once this one commits (outside its write lock)."""
    report = IngestReport(source=items[0].source if items else "")
    departments = {d.name: d.id for d in await uow.departments.all() if d.id is not None}
    now = uow.now()
    unique: dict[tuple[str, str], Incoming] = {}
    for item in items:
        if (item.source, item.external_id) in unique:
            report.duplicates += 1
        else:
            unique[(item.source, item.external_id)] = item
    for key in await uow.conversations.known(unique):
        del unique[key]  # already stored: no need to route it again (the insert would skip it anyway)
        report.duplicates += 1
    for key in await uow.voices.known(unique):
        del unique[key]  # a voice of some conversation already
        report.duplicates += 1
    joiner = Joiner(uow, matching) if matching is not None and kind == "ingested" else None
    if joiner is not None:
        for key in await joiner.before(unique):
            del unique[key]
    rows, routes = [], {}
    for key, item in unique.items():
        routed = router.route(
            text=f"{item.title}\n{item.text}",
            source=item.source,
            author=item.author_handle or item.author_name,
            extra_tags=item.tags,
        )
        targets = [department] if department else [d for d in routed.departments if d in departments]
        if not targets:
            logger.warning(
                "routing named no known department for %s/%s; using %s", item.source, item.external_id, router.default_department
            )
            targets = [router.default_department]
        routes[key] = (targets, routed)
        rows.append(
            {
                **item.said(),
                "channel": item.channel,
                "reply_url": item.reply_url,
                "ingested_at": now,
                "updated_at": now,
                "status": "open",
                "owner_id": None,
                "priority": routed.priority,
                "tags": list(routed.tags),
                "routing_reason": routed.reason[:1024],
                "sensitive": routed.sensitive,
                "outcome": None,
                "claimed_at": None,
                "first_reply_at": None,
                "resolved_at": None,
                "version": 1,
                "reported_by_id": actor_id if kind == "reported" else None,
            }
        )
    inserted = await uow.conversations.add_many(rows)
    if joiner is not None:
        new = {key: inserted[f"{key[0]}\x00{key[1]}"] for key in unique if f"{key[0]}\x00{key[1]}" in inserted}
        for key in await joiner.after(new, unique):
            del inserted[f"{key[0]}\x00{key[1]}"]
            del unique[key]
        report.joined = await joiner.finish()
        report.voices = len(joiner.voices)
    links: list[tuple[int, int]] = []
    events: list[dict[str, Any]] = []
    routed_to: dict[int, list[str]] = {}
    for key in unique:
        new_id = inserted.get(f"{key[0]}\x00{key[1]}")
        if new_id is None:
            report.duplicates += 1
            continue
        targets, routed = routes[key]
        links.extend((new_id, departments[name]) for name in targets)
        routed_to[new_id] = list(targets)
        events.append(
            {
                "conversation_id": new_id,
                "kind": kind,
                "actor_id": actor_id,
                "actor_name": actor_name,
                "at": now,
                "data": {
                    "source": key[0],
                    "departments": targets,
                    "reason": routed.reason[:500],
                    "rules": [] if department else list(routed.rules),  # chosen by hand: no rule routed it
                },
            }
        )
        uow.mark_changed(new_id)
        report.new_ids.append(new_id)
    await uow.conversations.link_departments(links)
    await uow.events.add_many(events)
    if report.new_ids:
        if recalled:
            await recall(uow, report.new_ids, routed_to)
        await uow.answers.record_fitting(report.new_ids)  # what the reply form rendered with the card offers
    return report


async def recall(uow: UnitOfWork, ids: Sequence[int], departments: Mapping[int, Sequence[str]] | None = None) -> list[int]:
    """ "Seen before" on the cards of new conversations, then who to ask from those conversations
    (`departments`: each one's department names, read from the store when not given); the ids that got a list."""
    if not ids:
        return []
    listed = await seenbefore.record(uow, ids)
    if listed:
        await suggest.record(uow, departments if departments is not None else await uow.conversations.department_names(ids))
    return listed


async def recall_after(uow: UnitOfWork, ids: Sequence[int]) -> list[int]:
    """`recall` in a unit of work of its own, after the conversations' own committed: each one that got a list
    has its version raised and its cards marked for refreshing, so a card already posted without it is
    updated in place (its delivery key names the version), and one not sent yet is sent with it."""
    listed = await recall(uow, ids)
    if listed:
        await uow.conversations.touch_many(listed, at=uow.now())
        for cid in listed:
            uow.mark_changed(cid)
    return listed
