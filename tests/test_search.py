"""The company's memory: ranked full-text search with filters and snippets, and "seen before" on new cards,
on SQLite (FTS5) and PostgreSQL (tsvector), kept in step with every write, erasure included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot import commands as c
from bot import output
from bot.bootstrap import Container, build
from bot.config import Config
from bot.domain import InvalidInput
from bot.ingest import make_incoming, recall_after, store_items
from bot.outbox import commit_with_deliveries
from bot.seenbefore import THRESHOLD
from bot.settings import Settings
from storage import erasure
from storage import search as search_index
from tests.conftest import PG_URL, _drop_schema, _postgres_schema
from tests.test_outbox import Recorder

carol = c.Actor("cli", "carol", name="carol")  # manager of support and triage
alice = c.Actor("slack", "U0ALICE", name="alice")

# Ten topics: one resolved conversation each, then a new one in other words that shares its telling ones.
TOPICS: dict[str, tuple[str, str, str]] = {
    "refund": (
        "Refund for a double charge",
        "My card was charged twice for order 1182, I want a refund of the duplicate payment",
        "I was charged twice again, the duplicate payment is still on my card statement; refund please",
    ),
    "courier": (
        "Parcel lost by the courier",
        "The courier marked my parcel delivered but it never arrived at my doorstep",
        "Tracking says delivered, courier left no parcel on the doorstep, where is it",
    ),
    "password": (
        "Cannot reset my password",
        "The password reset email never arrives, I am locked out of my account",
        "Locked out: the reset email for my password does not come",
    ),
    "allergy": (
        "Allergy label missing",
        "The granola jar lists no peanut warning but my son had an allergic reaction to the peanuts",
        "Peanut traces in your granola and no allergy warning on the jar",
    ),
    "invoice": (
        "VAT missing on invoice",
        "Our company invoice shows no VAT number, accounting needs a corrected invoice",
        "Please send a corrected invoice with our VAT number for accounting",
    ),
    "battery": (
        "Battery swelling",
        "The battery of my scooter is swelling and hot after charging overnight",
        "Scooter battery got hot and swollen while charging",
    ),
    "subscription": (
        "Cancel subscription",
        "I cancelled my subscription in March but you keep renewing it every month",
        "Subscription renewed again although I cancelled it, stop renewing",
    ),
    "app": (
        "App crashes on login",
        "The android app crashes right after the login screen since the update",
        "After the update the android app crashes at login every time",
    ),
    "size": (
        "Wrong shoe size",
        "Ordered sneakers in size 42, received size 38, need an exchange",
        "Sneakers arrived in the wrong size, I want an exchange for 42",
    ),
    "warranty": (
        "Warranty repair for the blender",
        "The blender motor died after eight months, is the repair covered by the warranty",
        "Blender motor stopped, within warranty, how do I get the repair",
    ),
}
# Everyday words all topics share, so that only the telling ones tell them apart.
FILLER = "hello team, thanks for your help, please answer soon, best regards"
UNRELATED = "Your lighthouse photography workshop in Lisbon was wonderful, any dates for autumn"


async def _ingest(container: Container, key: str, title: str, text: str, **kwargs: str) -> int:
    item = make_incoming(source="reviews", external_id=key, title=title, text=f"{text}. {FILLER}", **kwargs)
    report = await container.ingest([item])
    assert report.new_ids
    return report.new_ids[0]


async def _resolve(container: Container, cid: int, *, reply: str = "") -> None:
    await container.bus.handle(c.Claim(cid, alice))
    if reply:
        await container.bus.handle(c.ReplyToCustomer(cid, alice, reply))
        await container.bus.handle(c.MarkPosted(cid, alice))
    await container.bus.handle(c.Resolve(cid, alice, "answered", ""))


async def _seen(container: Container, cid: int) -> list[int]:
    shown = await container.bus.handle(c.Show(cid, carol))
    assert shown.card is not None
    return [item.id for item in shown.card.seen_before]


async def _ids(container: Container, words: str) -> list[int]:
    return [card.id for card in (await container.bus.handle(c.Search(carol, tuple(words.split()), limit=50))).cards]


async def test_seen_before_finds_the_resolved_one_of_the_same_topic_and_never_an_unrelated_one(container: Container) -> None:
    old: dict[str, int] = {}
    for name, (title, first, _) in TOPICS.items():
        old[name] = await _ingest(container, f"old-{name}", title, first)
        await _resolve(container, old[name], reply="We refunded the duplicate.\nKind regards" if name == "refund" else "")
    for i in range(6):  # an open one like the courier topic (one post six times: one conversation, five voices), never
        # listed: only resolved conversations are "seen before"
        item = make_incoming(source="reviews", external_id=f"open-{i}", title="", text=f"{TOPICS['courier'][1]}. {FILLER}")
        report = await container.ingest([item])
        assert len(report.new_ids) == (1 if i == 0 else 0)
    hits = 0
    fresh: dict[str, int] = {}
    for name, (_, _, again) in TOPICS.items():
        new = fresh[name] = await _ingest(container, f"new-{name}", "", again)
        seen = await _seen(container, new)
        assert set(seen) <= {old[name]}, f"{name}: an unrelated conversation above the threshold ({THRESHOLD})"
        hits += seen[:1] == [old[name]]
    assert hits >= 8, f"only {hits} of 10 topics saw their resolved conversation first"
    assert await _seen(container, await _ingest(container, "unrelated", "", UNRELATED)) == []

    # The card says how it ended, who handled it, and the reply's first line; `show` lists the ids.
    new_refund = fresh["refund"]  # (the same post again would be another voice of it: bot/voices.py)
    shown = await container.bus.handle(c.Show(new_refund, carol))
    assert shown.card is not None
    seen_fact = [f.value for f in shown.card.facts if f.label == "Seen before:"]
    assert seen_fact == [f"#{old['refund']} (answered by alice: “We refunded the duplicate.”)"]
    lines = output.result_lines(shown, command="show", limit=20)
    assert lines[lines.index("  Seen before:") + 1].startswith(f"    #{old['refund']} (answered by alice")

    # Erased: off the index and off every "seen before" list (its reply quoted the customer).
    async with container.uow() as uow:
        found = await erasure.find(uow.session, erasure.Selector(conversation_id=old["refund"]))
        await erasure.erase(uow.session, found, at=uow.now(), why="request")
        await uow.commit()
    assert await _seen(container, new_refund) == []
    assert old["refund"] not in await _ids(container, "duplicate payment")
    shown = await container.bus.handle(c.Show(new_refund, carol))
    assert shown.card is not None and not [f for f in shown.card.facts if f.label == "Seen before:"]


async def _fixture(container: Container) -> dict[str, int]:
    """Conversations whose words sit in the title, the text, a note or a reply: what each query should rank."""
    ids = {}
    ids["title"] = await _ingest(container, "a", "Refund for my kettle", "The kettle stopped working after a week")
    ids["text"] = await _ingest(container, "b", "Broken toaster", "Toaster broken, I would like refunds or a new one")
    ids["both"] = await _ingest(container, "c", "Refund: courier lost it", "The courier lost the parcel, refund please")
    ids["note"] = await _ingest(container, "d", "Question", "Where is my order 4471")
    ids["tom"] = await _ingest(container, "e", "Customer service", "Your customer service was rude", author_name="Tom W.")
    ids["legal"] = await _ingest(container, "f", "Legal threat", "I will sue unless you pay back the courier fee")
    ids["phrase"] = await _ingest(container, "g", "", "The late delivery was a problem; delivery was late again")
    ids["words"] = await _ingest(container, "h", "", "It was late, and the delivery too was a problem")
    await container.bus.handle(c.Claim(ids["note"], alice))
    await container.bus.handle(c.AddNote(ids["note"], alice, "customer asked about a refund by phone"))
    return ids


QUERIES = ("refund", "refunds courier", "courier", '"late delivery"', "late delivery", "customer", "courier dept:legal", "kettle")


async def _ranked(container: Container) -> dict[str, list[int]]:
    ids = await _fixture(container)
    order = {name: i for i, name in enumerate(ids)}
    # Ids are renumbered by their name, so the two stores' results compare.
    by_id = {cid: name for name, cid in ids.items()}
    found = {q: [order[by_id[i]] for i in await _ids(container, q)] for q in QUERIES}
    return found | {"ids": [ids[name] for name in ids]}


async def test_search_ranks_by_relevance_with_stems_phrases_filters_and_snippets(container: Container) -> None:
    ids = await _fixture(container)
    ranked = await _ids(container, "refund")
    # Stemmed: "refunds" is found by "refund"; a title and text match ranks above one in the text or a note.
    assert ranked == [ids["both"], ids["title"], ids["text"], ids["note"]]
    assert await _ids(container, "refunds courier") == [ids["both"]]
    assert await _ids(container, '"late delivery"') == [ids["phrase"]]
    assert set(await _ids(container, "late delivery")) == {ids["phrase"], ids["words"]}
    # Whole words by stem, not substrings: "tom" is the author, never "cus-tom-er".
    assert await _ids(container, "tom") == [ids["tom"]]
    assert await _ids(container, "courier dept:legal") == [ids["legal"]]
    assert await _ids(container, "courier tag:delivery dept:ops tag:legal") == [ids["legal"]]
    assert await _ids(container, "courier dept:ops status:claimed") == []
    assert await _ids(container, "courier dept:ops dept:support status:open status:claimed") == [ids["both"], ids["legal"]]
    assert await _ids(container, 'customer from:"Tom W."') == [ids["tom"]]
    assert await _ids(container, "refund status:claimed since:1d") == [ids["note"]]
    assert await _ids(container, "refund dept:legal") == []

    found = await container.bus.handle(c.Search(carol, ("kettle",)))
    (card,) = found.cards
    assert ("kettle", True) in [(t.lower(), m) for t, m in card.snippet] or ("Kettle", True) in card.snippet
    assert "1 match for “kettle”" == found.text
    listed = "\n".join(output.result_lines(found, command="search", limit=20))
    assert "[kettle]" in listed.lower()
    assert output.card_json(card)["snippet"] and any(s["matched"] for s in output.card_json(card)["snippet"])


HOSTILE = (
    '"',
    '"refund',
    "*",
    "refund*",
    "NEAR(refund kettle)",
    "refund OR kettle",
    "-refund",
    "refund AND NOT kettle",
    "title:refund",
    ":",
    "refund :",
    "^refund",
    "'; DROP TABLE conversation; --",
    "x" * 10_000,
    "refund " * 2000,
)


async def test_hostile_search_text_never_breaks_the_index_nor_matches_everything(container: Container) -> None:
    kettle = await _ingest(container, "a", "Refund for my kettle", "The kettle stopped working")
    await _ingest(container, "b", "Other", "Nothing to see here")
    for query in HOSTILE:
        try:
            found = await container.bus.handle(c.Search(carol, tuple(query.split()) or (query,)))
        except InvalidInput as refused:
            assert str(refused) and "\n" not in str(refused), query[:40]
            continue
        assert [card.id for card in found.cards] in ([], [kettle]), query[:40]
    assert await _ids(container, "refund*") == [kettle]  # the star is no prefix operator: "refund" alone


async def test_unknown_filters_and_bad_values_are_named() -> None:
    from datetime import UTC, datetime

    from bot.search import parse

    now = datetime(2026, 11, 16, tzinfo=UTC)
    with pytest.raises(InvalidInput, match=r"unknown filter “owner:”; the filters are dept:, status:, from:, tag:, since:"):
        parse("refund owner:dana", now=now)
    with pytest.raises(InvalidInput, match="status: is one of"):
        parse("refund status:lost", now=now)
    with pytest.raises(InvalidInput, match="since: takes"):
        parse("refund since:yesterday", now=now)
    with pytest.raises(InvalidInput, match="at least one word"):
        parse("dept:legal", now=now)
    assert parse("https://shop.example/o/4471", now=now).terms == ("https", "shop", "example", "o", "4471")
    query = parse('Refunds "late  DELIVERY" from:"Tom W." since:30d tag:x tag:y', now=now)
    assert query.terms == ("refunds", "late delivery") and query.authors == ("Tom W.",) and query.tags == ("x", "y")
    assert query.since == now - timedelta(days=30)


@pytest.fixture
async def both_stores(tmp_path: Path, test_config: Config) -> AsyncIterator[tuple[Container, Container]]:
    schema = await _postgres_schema(migrated=True)
    lite = build(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'lite.db'}"), config=test_config)
    pg = build(Settings(database_url=f"{PG_URL}?search_path={schema}"), config=test_config)
    try:
        await lite.prepare()
        await pg.prepare()
        yield lite, pg
    finally:
        await lite.close()
        await pg.close()
        await _drop_schema(schema)


async def test_both_stores_rank_the_same_fixture_in_the_same_order(both_stores: tuple[Container, Container]) -> None:
    lite, pg = both_stores
    on_sqlite, on_postgres = await _ranked(lite), await _ranked(pg)
    assert {q: on_sqlite[q] for q in QUERIES} == {q: on_postgres[q] for q in QUERIES}


def test_snippets_and_seen_before_render_valid_and_escaped_on_both_platforms() -> None:
    """What a user sees: the matched word bold, the customer's markup inert, the seen-before ids on the card
    and in the App Home; every message valid against the platforms' own schemas."""
    import json

    from adapters.slack import render as slack
    from adapters.teams import render as teams
    from bot.views import Result, SeenBefore
    from tests.cards import make_card
    from tests.test_slack_render import check_message, check_view
    from tests.test_teams_render import check_card, runs_text

    snippet = (("… the <b>courier</b> & ", False), ("refunds", True), (" *now* <@U123> …", False))
    seen = (SeenBefore(12, "answered", "Dana", "We refunded <script> & more"), SeenBefore(40))
    card = make_card(snippet=snippet, seen_before=seen)
    found = Result("1 match for “refund”", cards=(card,))

    listed = slack.result_message(found)
    check_message(listed)
    shown = json.dumps(listed)
    assert "*refunds*" in shown and "&lt;b&gt;courier&lt;/b&gt; &amp;" in shown
    assert "<@U123>" not in shown and "<b>" not in shown
    posted = slack.card_message(card)
    check_message(posted)
    assert "Seen before: #12 (answered by Dana: “We refunded &lt;script&gt; &amp; more”), #40 (resolved)" in json.dumps(
        posted, ensure_ascii=False
    )
    home = slack.home_view(mine=Result("", cards=(card,)), queue=Result(""), recent=Result(""))
    check_view(home)
    assert "Seen before: #12, #40" in json.dumps(home)

    listed_teams = teams.result_card(found, outcomes=("answered",))
    check_card(listed_teams)
    bold = [r["text"] for r in teams_runs(listed_teams) if r.get("weight") == "Bolder"]
    assert "refunds" in bold and "<b>courier</b>" in runs_text(listed_teams)  # a TextRun shows text as it is
    card_teams = teams.card(card, outcomes=("answered",))
    check_card(card_teams)
    assert "#12 (answered by Dana: “We refunded <script> & more”), #40 (resolved)" in runs_text(card_teams)


def teams_runs(node: object) -> list[dict[str, object]]:
    from tests.test_teams_render import of_type

    return of_type(node, "TextRun")


async def test_a_word_in_very_many_conversations_ranks_the_newest_and_says_more_than_it_counts(
    both_stores: tuple[Container, Container], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bounds made small: a common word ranks only the newest CANDIDATES matches, counted up to COUNTED.
    monkeypatch.setattr(search_index, "CANDIDATES", 3)
    monkeypatch.setattr(search_index, "COUNTED", 4)
    for store in both_stores:
        oldest = await _ingest(store, "k0", "Kettle kettle broken", "The kettle is a broken kettle")
        newer = [await _ingest(store, f"k{i}", f"Question {i}", f"about the kettle, case {i}") for i in range(1, 5)]
        found = await store.bus.handle(c.Search(carol, ("kettle",)))
        assert found.text == "more than 4 matches for “kettle”" and not found.more
        assert {card.id for card in found.cards} == set(newer[-3:])  # the best match is older than the newest 3
        assert oldest not in await _ids(store, "kettle")
        assert await _ids(store, "broken kettle") == [oldest]
        found = await store.bus.handle(c.Search(carol, ("kettle", "case")))
        assert found.text == "4 matches for “kettle case”" and found.more == 1  # three cards, one more counted


async def test_seen_before_found_after_the_ingest_commits_updates_a_card_already_posted_without_it(
    container: Container,
) -> None:
    platform = Recorder()
    container.senders = {"log": platform}
    title, first, again = TOPICS["battery"]
    old = await _ingest(container, "old-battery", title, first)
    await _resolve(container, old)
    for name, (other, text, _) in TOPICS.items():  # the everyday words common, the telling ones rare
        if name != "battery":
            await _ingest(container, f"other-{name}", other, text)
    await container.worker().run_until_idle()
    # Stored and committed without "seen before" (as a feed's batch is); its card goes out at once, without it.
    item = make_incoming(source="reviews", external_id="new-battery", title="", text=f"{again}. {FILLER}")
    router = await container.router()
    async with container.uow() as uow:
        report = await store_items(uow, [item], router=router, recalled=False)
        await commit_with_deliveries(uow)
    (new,) = report.new_ids
    await container.worker().run_until_idle()
    posted = [job for job in platform.jobs if job.card is not None and job.card.id == new]
    assert posted and all(job.message_id is None and not job.card.seen_before for job in posted if job.card)
    # Then found in a unit of work of its own: each posted copy is updated in place, never posted again.
    async with container.uow() as uow:
        assert await recall_after(uow, [new]) == [new]
        await commit_with_deliveries(uow)
    await container.worker().run_until_idle()
    updated = [job for job in platform.jobs if job.card is not None and job.card.id == new][len(posted) :]
    assert len(updated) == len(posted)
    assert all(job.message_id and job.card and [s.id for s in job.card.seen_before] == [old] for job in updated)
    assert await _seen(container, new) == [old]

    # A feed's ingest finds them in the background: `settled` waits for them.
    background = await container.ingest(  # (the old one's words: the same post as #new would join it as a voice)
        [make_incoming(source="reviews", external_id="new-battery-2", text=f"{first}. {FILLER}")], background=True
    )
    await container.settled()
    assert await _seen(container, background.new_ids[0]) == [old]
