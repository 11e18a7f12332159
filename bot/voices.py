"""One card per issue: an incoming item that is the same as an open conversation becomes another voice of it.

"The same" is either
- the same **canonical link** (`canonical_link`: tracking parameters dropped, host lower-cased without
  `www.`/`m.`/`mobile.`/`amp.`, AMP variants, trailing slashes and fragments normalised, the remaining
  query sorted), or
- **near-identical text**: the Jaccard similarity of the word 3-shingles of title and text at least
  `Matching.similarity`, with a conversation that came in within `Matching.window`.

Found through an index, never a scan: each conversation claims its keys in `voicekey` (`storage.voices`):
"u:<hash of the canonical link>" and, for its text, 8 MinHash bands of 3 rows ("b<i>:<hash>"; two texts
with Jaccard 0.7 share a band with probability about 1-(1-0.7^3)^8 = 0.97, at 0.8 0.995, texts at 0.3
only 0.2, and those are then checked on their shingles and kept apart). 9 keys a conversation: few rows
to write at ingest, which is what the check costs most. An item's keys are looked up by equality; a text
candidate is verified before it is joined. A key is owned by one conversation (the primary key): of two
replicas ingesting the same story at once, the second finds the key taken when it claims it, after the
first committed, and turns its own new conversation into a voice of the first, in the same transaction.

Defaults (`[unsilo] duplicate_similarity`, `duplicate_window_hours`):
- 0.7: a repost with a prefix ("Reposting from the forum:") or a few words changed stays above it (a
  40-word text with two words changed keeps 34 of 40 shingles, 0.74 to 0.85); two different complaints
  sharing a phrase ("my order never arrived") share a shingle or two of dozens, far under it. Over the
  reference feeds nothing distinct reaches it (tests/test_voices.py lists every merge).
- 72 hours: a story is reposted and picked up by other feeds within a few days; later, the same text is
  more likely the same problem happening again, which deserves its own conversation.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from bot.domain import ACTIVE, Status

if TYPE_CHECKING:
    from bot.ingest import Incoming
    from storage.models import Conversation
    from storage.uow import UnitOfWork

SIMILARITY = 0.7
WINDOW_HOURS = 72
MIN_WORDS = 12  # fewer words are too little to call two texts the same ("refund please")
SHINGLE = 3  # words per shingle
BANDS, ROWS = 8, 3  # MinHash: BANDS * ROWS bins; each conversation stores BANDS + 1 keys

_TRACKING = frozenset(
    {
        "fbclid", "gclid", "dclid", "gclsrc", "msclkid", "yclid", "twclid", "igshid", "mc_cid", "mc_eid",
        "ref", "ref_src", "ref_url", "referrer", "_ga", "_gl", "_hsenc", "_hsmi", "mkt_tok", "oly_anon_id",
        "oly_enc_id", "vero_id", "wickedid", "spm", "share", "si", "cmpid", "ncid", "sr_share", "s_cid",
    }
)  # fmt: skip
_HOST_PREFIXES = ("www.", "m.", "mobile.", "amp.")
_WORD = re.compile(r"\w+")
_URL = re.compile(r"https?://\S+")
_MIX, _MASK = 0x9E3779B97F4A7C15, (1 << 64) - 1  # odd: a bijection of 64-bit values; the same on every replica


@dataclass(frozen=True)
class Matching:
    """When an item is a voice of a conversation: text at least `similarity` alike, within `window`."""

    similarity: float = SIMILARITY
    window: timedelta = timedelta(hours=WINDOW_HOURS)


def canonical_link(url: str) -> str:
    """The link an item is about, whatever tracking or mobile variant it came through ("" if none)."""
    try:
        parts = urlsplit((url or "").strip())
        host = (parts.hostname or "").lower().rstrip(".")
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not host:
        return ""
    for prefix in _HOST_PREFIXES:
        if host.startswith(prefix) and host.count(".") > 1:
            host = host[len(prefix) :]
            break
    if port and port not in (80, 443):
        host = f"{host}:{port}"
    path = re.sub(r"/+", "/", parts.path or "/")
    path = re.sub(r"/amp/?$", "/", path, flags=re.IGNORECASE).rstrip("/")
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith("utm_")
        and k.lower() not in _TRACKING
        and not (k.lower() in ("amp", "outputtype") and v.lower() in ("", "1", "true", "amp"))
    ]
    # A fragment naming a sub-item (`#comment-101`, `#issuecomment-42`, `#p3`) tells posts on one page apart;
    # any other (`#top`, `#reviews`) is where the page was scrolled to.
    fragment = parts.fragment if re.search(r"[0-9]", parts.fragment or "") else ""
    return urlunsplit(("https", host, path, urlencode(sorted(query)), fragment))


def shingles(text: str) -> frozenset[int]:
    """The word 3-shingles of a text, hashed (CRC-32: stable everywhere); empty if it has under `MIN_WORDS` words."""
    words = _WORD.findall(_URL.sub(" ", unicodedata.normalize("NFKC", text).casefold()))
    if len(words) < MIN_WORDS:
        return frozenset()
    return frozenset(zlib.crc32(" ".join(words[i : i + SHINGLE]).encode()) for i in range(len(words) - SHINGLE + 1))


def similarity(a: frozenset[int], b: frozenset[int]) -> float:
    """Jaccard similarity of two shingle sets (0 when either is empty)."""
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


def bands(hashed: frozenset[int]) -> list[str]:
    """The MinHash band keys of a shingle set ("b<i>:<hex>"), by one-permutation hashing: each shingle's
    hash, mixed to 64 bits, goes to one of `BANDS * ROWS` bins (its remainder) and each bin keeps its least
    value (the quotient): one pass over the shingles, not one per hash function. Two sets agree on a bin
    with probability about their Jaccard similarity. A band whose bins are all empty (a short text) gives no key."""
    if not hashed:
        return []
    bins = BANDS * ROWS
    mins = [-1] * bins
    for h in hashed:
        value, slot = divmod((h * _MIX) & _MASK, bins)
        if mins[slot] < 0 or value < mins[slot]:
            mins[slot] = value
    keys = []
    for band in range(BANDS):
        rows = mins[band * ROWS : (band + 1) * ROWS]
        if max(rows) < 0:
            continue
        digest = hashlib.blake2b(repr(rows).encode(), digest_size=12).hexdigest()
        keys.append(f"b{band}:{digest}")
    return keys


def link_key(url: str) -> str:
    """The voice key of a canonical link: "" when the item has none, or links only to a site's home page (the
    items of a podcast or a small site often all do: that names the site, not the story)."""
    link = canonical_link(url)
    if not link or not urlsplit(link).path.strip("/") and not urlsplit(link).query:
        return ""
    return "u:" + hashlib.sha256(link.encode()).hexdigest()[:40]


@dataclass
class Print:
    """What identifies an item: its link key, its shingles, its band keys."""

    link: str
    shingles: frozenset[int]
    bands: list[str]

    @classmethod
    def of(cls, url: str, title: str, text: str) -> Print:
        hashed = shingles(f"{title}\n{text}")
        return cls(link_key(url), hashed, bands(hashed))

    @property
    def keys(self) -> list[str]:
        return ([self.link] if self.link else []) + self.bands


async def merged_into(uow: UnitOfWork, conversation: Conversation) -> int | None:
    """The conversation this one was merged into by hand (`merge #12 into #9`) while it is a voice of it
    (`split` makes it its own again); None for any other. Its cards say so (`views.card_for(merged_into=)`)."""
    if conversation.status != Status.DISMISSED or conversation.id is None:
        return None
    voice = await uow.voices.merged_from(conversation.id)
    return voice.conversation_id if voice is not None else None


Owner = tuple[int, datetime, str, list[str], bool]  # storage.voices.VoiceRepo.owners


def _match(
    fp: Print, owners: dict[str, Owner], *, since: datetime, matching: Matching, me: int | None = None
) -> tuple[int, str, float] | None:
    """The open conversation (other than `me`) this item is a voice of: (id, how, similarity), or None."""
    if fp.link and fp.link in owners:
        cid, at, status, _, erased = owners[fp.link]
        if cid != me and status in ACTIVE and not erased and at >= since:
            return cid, "link", 1.0
    best: tuple[int, str, float] | None = None
    checked: set[int] = set()
    for key in fp.bands:
        if key not in owners:
            continue
        cid, at, status, texts, erased = owners[key]
        if cid == me or cid in checked or status not in ACTIVE or erased or at < since:
            continue
        checked.add(cid)
        score = max(similarity(fp.shingles, shingles(text)) for text in texts)  # like it, or like one of its voices
        if score >= matching.similarity and (best is None or score > best[2]):
            best = (cid, "text", score)
    return best


def voice_row(
    item: Incoming, conversation_id: int, *, how: str, score: float, now: datetime, origin: int | None = None
) -> dict[str, Any]:
    """The `voice` row of an item joining a conversation (`origin`: the conversation it was, merged by hand)."""
    return {
        "conversation_id": conversation_id,
        **item.said(),
        "joined_at": now,
        "how": how,
        "similarity": round(score, 3),
        "origin_id": origin,
        "data": {"channel": item.channel, "reply_url": item.reply_url, "tags": list(item.tags)},
    }


class Joiner:
    """Decides, for one ingest batch, which items are voices of open conversations.

    `before(items)`: the items already matching a conversation by the index (they are never inserted).
    `after(inserted)`: the new conversations claim their keys; one that finds a key taken by a matching
    conversation (a replica's, committed meanwhile, or an earlier item of the batch) is deleted and becomes
    its voice. The caller stores the rest as usual.
    """

    def __init__(self, uow: UnitOfWork, matching: Matching) -> None:
        self.uow = uow
        self.matching = matching
        self.now = uow.now()
        self.since = self.now - matching.window
        self.prints: dict[tuple[str, str], Print] = {}
        self.voices: list[dict[str, Any]] = []
        self.keys: list[tuple[str, int, datetime]] = []
        self.events: list[dict[str, Any]] = []

    def _join(self, item: Incoming, cid: int, how: str, score: float) -> None:
        self.voices.append(voice_row(item, cid, how=how, score=score, now=self.now))
        # Its keys find the conversation too (where no other holds them): a repost of this voice's text joins it.
        self.keys.extend((k, cid, self.now) for k in self.prints[(item.source, item.external_id)].keys)
        self.events.append(
            {
                "conversation_id": cid,
                "kind": "voice_added",
                "actor_id": None,
                "actor_name": "",
                "at": self.now,
                "data": {"source": item.source, "how": how, "similarity": round(score, 3)},
            }
        )

    async def before(self, items: dict[tuple[str, str], Incoming]) -> set[tuple[str, str]]:
        """Items that are voices of conversations already stored; recorded, to be left out of the insert."""
        for key, item in items.items():
            self.prints[key] = Print.of(item.url, item.title, item.text)
        owners = await self.uow.voices.owners([k for fp in self.prints.values() for k in fp.keys])
        joined = set()
        for key, item in items.items():
            found = _match(self.prints[key], owners, since=self.since, matching=self.matching)
            if found is not None:
                self._join(item, *found)
                joined.add(key)
        return joined

    async def after(self, inserted: dict[tuple[str, str], int], items: dict[tuple[str, str], Incoming]) -> set[tuple[str, str]]:
        """Claim the keys of the new conversations; the items that lost to a matching owner (their rows deleted)."""
        rows = [(k, cid, self.now) for key, cid in inserted.items() for k in self.prints[key].keys]
        claimed = await self.uow.voices.claim(rows)
        lost = [(k, cid) for k, cid, _ in rows if (k, cid) not in claimed]
        if not lost:
            return set()
        owners = await self.uow.voices.owners([k for k, _ in lost])
        merged: dict[int, int] = {}  # a new conversation -> the one it became a voice of
        gone: set[tuple[str, str]] = set()
        for key, cid in sorted(inserted.items(), key=lambda pair: pair[1]):
            fp = self.prints[key]
            mine = {k: owners[k] for k in fp.keys if k in owners}
            for k, owner in list(mine.items()):  # an owner merged into another just now: follow it
                target = owner[0]
                while target in merged:
                    target = merged[target]
                if target != owner[0]:
                    mine[k] = (target, *owner[1:])
            found = _match(fp, mine, since=self.since, matching=self.matching, me=cid)
            if found is not None:
                merged[cid] = found[0]
                self._join(items[key], *found)
                await self.uow.voices.move_keys(cid, found[0])
                await self.uow.voices.drop_conversation(cid)
                gone.add(key)
                continue
            for k, owner in mine.items():  # keys held by a closed or out-of-window owner: take them over
                if owner[0] != cid and (owner[2] not in ACTIVE or owner[4] or owner[1] < self.since):
                    await self.uow.voices.take_over(k, owner[0], cid, self.now)
        return gone

    async def finish(self) -> list[int]:
        """Store the voices and their events; the conversations whose cards must be refreshed."""
        added = await self.uow.voices.add(self.voices, now=self.now)
        await self.uow.voices.claim(self.keys)
        await self.uow.events.add_many([e for e in self.events if e["conversation_id"] in added])
        for cid in added:
            self.uow.mark_changed(cid)
        return sorted(added)


def described(count: int, sources: Iterable[str]) -> str:
    """`3 voices · twitter, forum, reviews` (each source once, first seen first)."""
    seen: list[str] = []
    for source in sources:
        if source and source not in seen:
            seen.append(source)
    return f"{count} voice{'s' if count != 1 else ''} · {', '.join(seen)}"


def total(voice_count: int) -> int:
    """Voices of a conversation: its own item and those merged into it."""
    return 1 + max(0, voice_count)


def sources_of(first: str, voices: Sequence[Any]) -> list[str]:
    """The sources of a conversation and its voices, in order."""
    return [first, *(v.source for v in voices)]
