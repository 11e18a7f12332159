"""How fast does Unsilo ingest a big feed, against feedparser parsing the same bytes alone?

Generates a 10,000-entry RSS 2.0 feed (guid, title, link, author, an HTML description of
a few sentences, some matching the routing rules), then times (a) `feedparser.parse` of
those bytes with the options Unsilo uses, and (b) Unsilo's whole ingest of the same bytes:
`bot.ingest.parse_feed` (parse, normalize) then `Container.ingest` (dedupe, route, store,
enqueue card deliveries), with `unsilo.example.toml` (six departments with `log:` channels,
six rules). Prints items/s of both and the ratio, then ingests the same feed again and
checks that it makes no new conversation. SQLite file in a temp dir unless --database-url.

    .venv/bin/python -m bench.ingest [--entries 10000] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape
from pathlib import Path

import feedparser
from sqlmodel import func, select

from bench.common import store
from bot.bootstrap import Container, build, load_config
from bot.ingest import parse_feed
from bot.settings import Settings
from storage.models import Delivery

CONFIG = Path(__file__).resolve().parents[1] / "unsilo.example.toml"
WORDS = (
    "order account invoice app update screen page button email message team store price plan "
    "subscription week morning evening colour size model version photo review checkout basket "
    "voucher discount receipt address phone website manual warranty battery charger cable"
).split()
TOPICS = (
    "my parcel never arrived and the tracking page says nothing",
    "I would love a dark mode, please add it",
    "the app keeps showing an error after the update",
    "I want a refund, I was charged twice",
    "your driver was rude to my mother",
    "my lawyer will be in touch about the contract",
    "great service, thank you all",
    "login fails with my new password",
    "the courier left the package in the rain",
    "a suggestion: let me pay with vouchers",
)
NAMES = (
    "Ana Souza",
    "Bram de Vries",
    "Chloé Martin",
    "Dmitri Ivanov",
    "Eun-ji Park",
    "Farah Khan",
    "Göran Lind",
    "Hiroshi Sato",
    "Ifeoma Obi",
    "João Pereira",
    "Katarzyna Nowak",
    "Liam O'Brien",
)


def sentence(rng: random.Random) -> str:
    """A plausible sentence of customer text, in varied words."""
    words = rng.sample(WORDS, rng.randint(6, 12))
    return (" ".join(words)).capitalize() + rng.choice([".", "!", "?"])


def make_feed(entries: int, *, seed: int = 7) -> bytes:
    """An RSS 2.0 feed of `entries` realistic items, newest first (the same bytes for the same seed)."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)
    items = []
    for i in range(entries):
        topic = rng.choice(TOPICS)
        sentences = [sentence(rng) for _ in range(rng.randint(2, 5))]
        sentences.insert(rng.randint(0, len(sentences)), topic.capitalize() + ".")
        html = "<p>" + "</p><p>".join(escape(s) for s in sentences) + f"</p><p><em>Order #{100000 + i}</em></p>"
        author = rng.choice(NAMES)
        items.append(
            f'<item><guid isPermaLink="false">review-{i}</guid>'
            f"<title>{escape(topic[:40].capitalize())} ({i})</title>"
            f"<link>https://reviews.example.com/acme/{i}</link>"
            f"<author>{author.split()[0].lower()}@example.com ({escape(author)})</author>"
            f"<pubDate>{format_datetime(start - timedelta(minutes=7 * i))}</pubDate>"
            f"<description>{escape(html)}</description></item>"
        )
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        "<title>Acme reviews</title><link>https://reviews.example.com/acme</link>"
        "<description>What customers say about Acme</description>" + "\n".join(items) + "</channel></rss>\n"
    ).encode()


async def deliveries(container: Container) -> int:
    """How many deliveries the outbox holds."""
    async with container.uow() as uow:
        return (await uow.session.exec(select(func.count()).select_from(Delivery))).one()


async def main(entries: int, database_url: str | None) -> None:
    data = make_feed(entries)
    source = f"bench-{uuid.uuid4().hex[:8]}"  # a shared database never has seen it
    async with store(database_url) as schema_url:
        with tempfile.TemporaryDirectory() as tmp:
            url = schema_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            container = build(Settings(database_url=url), config=load_config(CONFIG))
            try:
                await container.prepare()
                outbox_before = await deliveries(container)

                started = time.perf_counter()
                parsed = feedparser.parse(data, sanitize_html=True, resolve_relative_uris=True)
                bare = time.perf_counter() - started

                started = time.perf_counter()
                items, _ = parse_feed(data, source=source)
                parsed_at = time.perf_counter()
                report = await container.ingest(items)
                ours = time.perf_counter() - started
                stored = time.perf_counter() - parsed_at
                enqueued = await deliveries(container) - outbox_before

                started = time.perf_counter()
                again = await container.ingest(parse_feed(data, source=source)[0])
                repeat = time.perf_counter() - started
            finally:
                await container.close()
    assert len(parsed.entries) == len(items) == entries, (len(parsed.entries), len(items))
    assert len(report.new_ids) == entries, len(report.new_ids)
    assert again.new_ids == [] and again.duplicates == entries, (len(again.new_ids), again.duplicates)

    print(
        f"{entries} entries, {len(data) / 2**20:.1f} MB of RSS; {container.engine.dialect.name} store; "
        f"{len(container.config.rules)} rules, {len(container.config.departments)} departments"
    )
    print(f"{'feedparser.parse alone':<36} {bare:7.2f} s  {entries / bare:9,.0f} items/s")
    print(f"{'unsilo ingest (end to end)':<36} {ours:7.2f} s  {entries / ours:9,.0f} items/s")
    print(f"{'  of which store (route, write...)':<36} {stored:7.2f} s  {entries / stored:9,.0f} items/s")
    print(f"ratio unsilo/feedparser time: {ours / bare:.2f}x")
    print(f"{len(report.new_ids)} new conversations, {enqueued} card deliveries enqueued")
    print(
        f"{'same feed again':<36} {repeat:7.2f} s  {entries / repeat:9,.0f} items/s: "
        f"{len(again.new_ids)} new conversations, {again.duplicates} already known"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--database-url", default=None, help="e.g. postgresql://user@host/db (default: a temp SQLite file)")
    args = parser.parse_args()
    asyncio.run(main(args.entries, args.database_url))
