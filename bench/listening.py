"""What does "one card per issue" cost at ingest? (`bot.voices`)

Seeds a store with N existing open conversations (default 100,000; their voice keys claimed as ingest
does), then ingests 10,000 new entries of which 20% are near-duplicates of existing ones (the generator
knows which: a repost with a prefix, a word changed, or the same link with tracking parameters). Prints
- the duplicate check per item (fingerprint, index look-up of its keys, verification of the candidates),
  p50 and p99 (goal: < 2 ms, p99 < 10 ms);
- end-to-end ingest of the 10,000 with the check and without it, in the same run, and their ratio
  (goal: <= 1.3x);
- the merges it made against the merges it should have made.
SQLite file in a temp dir unless --database-url.

    .venv/bin/python -m bench.listening [--existing 100000] [--entries 10000] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.common import store, summary
from bot.bootstrap import Container, build, load_config
from bot.ingest import Incoming, make_incoming, store_items
from bot.outbox import commit_with_deliveries
from bot.settings import Settings
from bot.voices import Joiner, Matching, Print, _match

CONFIG = Path(__file__).resolve().parents[1] / "unsilo.example.toml"
PHRASES = (  # shared by unrelated items, as real complaints share them
    "my order never arrived",
    "I want a refund",
    "the app keeps crashing",
    "please help me",
    "thank you for your help",
    "I was charged twice",
)
BATCH = 500


def vocabulary(rng: random.Random, size: int = 6000) -> list[str]:
    """Pseudo-words: enough of them that unrelated texts share few 3-word runs (as real ones do)."""
    letters = "abcdefghijklmnoprstuvwy"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(size)]


def text(rng: random.Random, words: Sequence[str]) -> str:
    body = [rng.choice(words) for _ in range(rng.randint(18, 60))]
    body.insert(rng.randint(0, len(body)), rng.choice(PHRASES))
    return " ".join(body).capitalize() + "."


def near_duplicate(rng: random.Random, item: Incoming, words: Sequence[str], n: int) -> Incoming:
    """Another feed's copy of `item`: a repost with a prefix, one word changed, or its link with tracking."""
    kind = n % 3
    body = item.text
    url = f"https://elsewhere.example/p/{n}"
    if kind == 0:
        body = "Reposting this: " + body
    elif kind == 1:
        parts = body.split()
        parts[rng.randrange(len(parts))] = rng.choice(words)
        body = " ".join(parts)
    else:
        url = item.url.replace("https://", "https://www.") + f"?utm_source=feed{n}&fbclid=x{n}"
        body = text(rng, words)  # a different text on the same link: the link decides
    return make_incoming(source="mirror", external_id=f"dup-{n}", text=body, url=url, author_name=f"Reposter {n}")


def existing_items(rng: random.Random, words: Sequence[str], count: int) -> list[Incoming]:
    return [
        make_incoming(source="reviews", external_id=f"old-{i}", text=text(rng, words), url=f"https://reviews.example.com/r/{i}")
        for i in range(count)
    ]


def new_items(rng: random.Random, words: Sequence[str], old: Sequence[Incoming], count: int, tag: str) -> list[Incoming]:
    """`count` entries, 20% of them near-duplicates of `old` (each of a different one), shuffled."""
    dupes = count // 5
    targets = rng.sample(range(len(old)), dupes)
    items = [near_duplicate(rng, old[t], words, i) for i, t in enumerate(targets)]
    items = [make_incoming(**{**vars(item), "external_id": f"{tag}-{item.external_id}"}) for item in items]
    items += [
        make_incoming(
            source="forum", external_id=f"{tag}-new-{i}", text=text(rng, words), url=f"https://forum.example/t/{tag}{i}"
        )
        for i in range(count - dupes)
    ]
    rng.shuffle(items)
    return items


async def ingest(container: Container, items: Sequence[Incoming], matching: Matching | None) -> tuple[float, int, int]:
    """Seconds to store `items` in batches (like `Container.ingest`), new conversations, voices."""
    router = await container.router()
    new = voices = 0
    started = time.perf_counter()
    for i in range(0, len(items), BATCH):
        async with container.uow() as uow:
            report = await store_items(uow, items[i : i + BATCH], router=router, matching=matching)
            await commit_with_deliveries(uow)
        new += len(report.new_ids)
        voices += report.voices
    return time.perf_counter() - started, new, voices


async def check_costs(
    container: Container, items: Sequence[Incoming], matching: Matching
) -> tuple[list[float], list[float], int]:
    """The duplicate check of each item alone (fingerprint, key look-up, verification): wall-clock ms, CPU ms
    of this process (its SQLite thread included; what a shared, busy machine's scheduling leaves out), matches."""
    costs, cpu, found = [], [], 0
    async with container.uow() as uow:
        joiner = Joiner(uow, matching)
        for item in items:
            started, started_cpu = time.perf_counter(), time.process_time()
            fp = Print.of(item.url, item.title, item.text)
            owners = await uow.voices.owners(fp.keys)
            hit = _match(fp, owners, since=joiner.since, matching=matching)
            costs.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
            found += hit is not None
    return costs, cpu, found


async def main(existing: int, entries: int, database_url: str | None) -> None:
    rng = random.Random(16)
    words = vocabulary(rng)
    old = existing_items(rng, words, existing)
    with_check = new_items(rng, words, old, entries, "a")
    without_check = new_items(rng, words, old, entries, "b")
    async with store(database_url) as schema_url:
        with tempfile.TemporaryDirectory() as tmp:
            url = schema_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
            container = build(Settings(database_url=url), config=load_config(CONFIG))
            try:
                await container.prepare()
                matching = container.matching
                started = time.perf_counter()
                seeded, _, _ = await ingest(container, old, matching)
                print(f"seeded {existing:,} existing conversations in {time.perf_counter() - started:.1f} s")
                costs, cpu, predicted = await check_costs(container, with_check, matching)
                # Same run, alternating halves so neither side gets a warmer or emptier store.
                half = entries // 2
                t_off1, new_off1, _ = await ingest(container, without_check[:half], None)
                t_on1, new_on1, voices1 = await ingest(container, with_check[:half], matching)
                t_off2, new_off2, _ = await ingest(container, without_check[half:], None)
                t_on2, new_on2, voices2 = await ingest(container, with_check[half:], matching)
            finally:
                await container.close()
    expected = sum(1 for item in with_check if item.source == "mirror")
    off, on = t_off1 + t_off2, t_on1 + t_on2
    print(
        f"{existing:,} existing, {entries:,} new entries ({expected:,} near-duplicates); "
        f"{container.engine.dialect.name} store; batches of {BATCH}"
    )
    p50, p99 = summary("duplicate check per item", costs)
    print(f"duplicate check per item: p50 {p50:.2f} ms, p99 {p99:.2f} ms (goal < 2 ms, p99 < 10 ms)")
    p50, p99 = summary("  its CPU time", cpu)
    print(
        f"  CPU time of it: p50 {p50:.2f} ms, p99 {p99:.2f} ms (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)"
    )
    print(f"{'ingest without the check':<28} {off:7.2f} s  {entries / off:8,.0f} items/s  ({new_off1 + new_off2:,} new)")
    print(f"{'ingest with the check':<28} {on:7.2f} s  {entries / on:8,.0f} items/s  ({new_on1 + new_on2:,} new)")
    print(f"ratio with/without: {on / off:.2f}x (goal <= 1.3x)")
    print(f"merges made: {voices1 + voices2:,} (the check alone predicted {predicted:,}); expected: {expected:,}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--existing", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--database-url", default=None, help="e.g. postgresql://user@host/db (default: a temp SQLite file)")
    args = parser.parse_args()
    asyncio.run(main(args.existing, args.entries, args.database_url))
