"""One card per issue: the same story from several feeds is one conversation with several voices.

On both stores: two feeds with different ids whose links differ only in tracking parameters, and a
near-identical repost, make ONE conversation with 3 voices, also when two replicas ingest them at once;
unrelated items sharing a phrase stay apart; the reference feeds ingested together merge nothing false;
the card (Slack and Teams) is updated, never re-posted, and says "3 voices · twitter, forum, reviews".
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlmodel import col, func, select

from bot import commands as c
from bot import textcommands
from bot.bootstrap import Container, load_config
from bot.domain import Forbidden, InvalidInput
from bot.ingest import Incoming, IngestError, make_incoming, parse_feed
from bot.terminal import card_lines
from bot.voices import canonical_link, link_key, shingles, similarity
from storage.models import Conversation, Event, Voice
from tests.conftest import TEST_CONFIG, reference_dir
from tests.teams_support import running_teams
from tests.test_slack_render import check_message
from tests.test_teams import link_support
from tests.test_teams_render import assert_valid

STORY = (
    "The checkout page has been down for an hour: every payment fails with error 502 after the card "
    "details are entered, and the support chat does not answer either. Several of us tried different "
    "cards and browsers, same result."
)
ADMIN = c.Actor("cli", "admin")


def the_story() -> list[Incoming]:
    """The same story: a tweet, a forum post on the same link with tracking parameters, a repost elsewhere."""
    return [
        make_incoming(
            source="twitter",
            external_id="tw-1",
            text=STORY,
            author_handle="@ann",
            url="https://www.Shop.example/news/checkout-outage/?utm_source=twitter&utm_medium=social",
        ),
        make_incoming(
            source="forum",
            external_id="thread-77",
            title="Checkout broken?",
            text="Anyone else unable to pay? It just spins.",
            author_name="Bob <!channel>",
            url="https://shop.example/news/checkout-outage?fbclid=IwAR0abc&gclid=x#comments",
        ),
        make_incoming(
            source="reviews",
            external_id="r-5",
            text="Reposting from twitter: " + STORY.replace("an hour", "two hours"),
            author_name="Cy",
            url="https://reviews.example.org/r/5",
        ),
    ]


def test_canonical_links_drop_tracking_mobile_and_amp_variants() -> None:
    same = [
        "https://www.example.com/a/story/",
        "http://EXAMPLE.com/a/story?utm_source=x&utm_campaign=y",
        "https://m.example.com/a/story#top",
        "https://amp.example.com/a/story/amp",
        "https://mobile.example.com/a/story?amp=1&fbclid=1&mc_cid=2&mc_eid=3&igshid=4&ref=hn",
    ]
    assert {canonical_link(u) for u in same} == {"https://example.com/a/story"}
    assert canonical_link("https://example.com/s?b=2&a=1&utm_x=3") == canonical_link("https://example.com/s?a=1&b=2")
    assert canonical_link("https://example.com/s?a=1") != canonical_link("https://example.com/s?a=2")
    assert canonical_link("https://example.com/a/story") != canonical_link("https://example.com/a/other")
    assert canonical_link("javascript:alert(1)") == "" and canonical_link("not a url") == ""
    assert link_key("https://www.example.com/") == "", "a site's home page names no story"
    # Comments on one page (a comments feed, an issue tracker) are posts of their own: their fragments tell them apart.
    comments = {canonical_link(f"https://blog.example/post/#comment-{n}") for n in (101, 102)}
    assert len(comments) == 2 and canonical_link("https://blog.example/post/#top") == "https://blog.example/post"


def test_a_shared_phrase_is_not_near_identical_text() -> None:
    one = shingles("Hi, my order never arrived and the tracking page has said 'in transit' for twelve days now, please help")
    two = shingles("Hi, my order never arrived with the right size: I asked for a medium jacket and got a small one instead")
    assert similarity(one, two) < 0.2
    assert similarity(shingles(STORY), shingles("Reposting from twitter: " + STORY.replace("an hour", "two hours"))) > 0.7


async def _one_story(container: Container) -> Conversation:
    async with container.uow() as uow:
        rows = (await uow.session.exec(select(Conversation))).all()
        voices = (await uow.session.exec(select(Voice).order_by(col(Voice.id)))).all()
    assert len(rows) == 1, [(r.id, r.source, r.url) for r in rows]
    print("merges:", [(v.conversation_id, v.source, v.how, v.similarity) for v in voices])
    # Which feed's item came first decides which is the conversation (two replicas: either); the repost
    # joins by its text, the other by the link.
    assert sorted([rows[0].source, *(v.source for v in voices)]) == ["forum", "reviews", "twitter"]
    assert sorted(v.how for v in voices) == ["link", "text"]
    assert rows[0].voice_count == 2
    return rows[0]


async def test_the_same_story_from_three_feeds_is_one_conversation_with_three_voices(container: Container) -> None:
    reports = [await container.ingest([item]) for item in the_story()]
    assert [len(r.new_ids) for r in reports] == [1, 0, 0] and [r.voices for r in reports] == [0, 1, 1]
    conversation = await _one_story(container)

    shown = await container.bus.handle(c.Show(conversation.id or 0, ADMIN))
    assert shown.card is not None
    text = "\n".join(card_lines(shown.card))
    assert "3 voices · twitter, forum, reviews" in text
    assert "Bob <!channel> on forum https://shop.example/news/checkout-outage?fbclid=IwAR0abc&gclid=x#comments" in text
    assert "Cy on reviews https://reviews.example.org/r/5" in text

    # Read again (a feed polled twice): nothing new, no voice twice.
    again = await container.ingest(the_story())
    assert again.new_ids == [] and again.voices == 0 and again.duplicates == 3
    await _one_story(container)


async def test_one_batch_holding_the_whole_story_makes_one_conversation(container: Container) -> None:
    report = await container.ingest(the_story())
    assert len(report.new_ids) == 1 and report.voices == 2
    await _one_story(container)


async def test_two_replicas_ingesting_the_story_at_once_make_one_conversation(
    make_container: Callable[..., Container],
) -> None:
    first, second = make_container(), make_container()
    await first.prepare()
    await second.prepare()
    try:
        tweet, forum, repost = the_story()
        # Each replica reads other feeds of the same story at the same moment; a third item follows on either.
        await asyncio.gather(first.ingest([tweet]), second.ingest([forum]))
        await second.ingest([repost])
        await _one_story(first)
        # And racing on texts alone: two near-identical reposts at once, in a fresh story.
        text = "Our warehouse in Leeds flooded last night and every parcel due today will be late by at least two days, sorry."
        await asyncio.gather(
            first.ingest([make_incoming(source="blog", external_id="b1", text=text)]),
            second.ingest([make_incoming(source="news", external_id="n1", text="UPDATE: " + text)]),
        )
        async with first.uow() as uow:
            flood = (
                await uow.session.exec(
                    select(func.count()).select_from(Conversation).where(col(Conversation.text).contains("Leeds"))
                )
            ).one()
        assert flood == 1
    finally:
        await first.close()
        await second.close()


async def test_unrelated_items_sharing_a_phrase_stay_apart(container: Container) -> None:
    texts = [
        "Hi, my order never arrived and the tracking page has said in transit for twelve days now, please help me",
        "Hi, my order never arrived with the right size: I asked for a medium jacket and got a small one instead",
        "My order was charged twice on my card, the bank statement shows two payments of 49.90 for the same jacket",
    ]
    report = await container.ingest([make_incoming(source="mail", external_id=str(i), text=t) for i, t in enumerate(texts)])
    assert len(report.new_ids) == 3 and report.voices == 0


async def test_a_closed_conversation_gets_no_new_voice(container: Container) -> None:
    tweet, forum, _ = the_story()
    cid = (await container.ingest([tweet])).new_ids[0]
    async with container.uow() as uow:  # resolved (how is not the point here)
        await uow.session.exec(update(Conversation).where(col(Conversation.id) == cid).values(status="resolved"))  # type: ignore[call-overload]
        await uow.commit()
    report = await container.ingest([forum])
    assert len(report.new_ids) == 1 and report.voices == 0, "the same link after it was fixed is a new conversation"


# Merges over the reference feeds that are right: the same Craigslist listing (same flat, same text) reposted.
TRUE_MERGES = {("rss-parser/craigslist.rss", "6170765620.html", "6170826650.html")}


async def test_the_reference_feeds_ingested_together_merge_nothing_false(container: Container) -> None:
    root = reference_dir() / "feeds"
    items = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix != ".md" and p.name != "LICENSE"):
        try:
            parsed, _ = parse_feed(path.read_bytes(), source=str(path.relative_to(root))[:128])
        except IngestError:
            continue
        items += len(parsed)
        if parsed:
            await container.ingest(parsed)
    async with container.uow() as uow:
        rows = (
            await uow.session.exec(select(Voice, Conversation).join(Conversation, col(Conversation.id) == Voice.conversation_id))
        ).all()
    merges = set()
    print(f"{items} items from the reference feeds; {len(rows)} merges:")
    for voice, conversation in rows:
        print(f"  #{conversation.id} {conversation.source} {conversation.url}")
        print(f"    <= {voice.source} {voice.url} ({voice.how}, similarity {voice.similarity})")
        merges.add((conversation.source, conversation.url.rsplit("/", 1)[-1], voice.url.rsplit("/", 1)[-1]))
    assert items > 300
    assert merges <= TRUE_MERGES, f"false merges: {merges - TRUE_MERGES}"


async def test_the_card_is_updated_not_reposted_on_both_platforms(tmp_path: Path) -> None:
    async with running_teams(tmp_path, with_slack=True) as h:
        assert h.slack is not None
        await link_support(h)
        items = [
            make_incoming(**{**vars(item), "text": item.text + " Refund please."}) if i != 1 else item
            for i, item in enumerate(the_story())
        ]
        await h.container.ingest(items[:1])
        await h.deliver()
        assert len(h.slack.calls_to("chat.postMessage")) == 1 and len(h.connector.calls_to("create")) == 1
        await h.container.ingest(items[1:2])
        await h.container.ingest(items[2:])
        await h.deliver()
        assert len(h.slack.calls_to("chat.postMessage")) == 1, "updated, never re-posted"
        assert len(h.connector.calls_to("create")) == 1 and len(h.connector.calls_to("send")) == 0
        (message,) = h.slack.messages("C0SUPPORT")
        blocks = json.dumps(message["blocks"], ensure_ascii=False)
        assert "3 voices · twitter, forum, reviews" in blocks
        assert "<!channel>" not in blocks and "&lt;!channel&gt;" in blocks, "a voice's author cannot ping"
        check_message({"text": message["text"], "blocks": message["blocks"]})
        update = h.connector.calls_to("update")[-1].body
        card = update["attachments"][0]["content"]
        assert_valid(card)
        shown = json.dumps(card, ensure_ascii=False)
        assert "3 voices · twitter, forum, reviews" in shown and "Cy on reviews" in shown


async def test_erasing_an_author_erases_their_voices_in_others_conversations(
    make_container: Callable[..., Container], tmp_path: Path
) -> None:
    path = tmp_path / "admins.toml"
    path.write_text(TEST_CONFIG.replace("[unsilo]\n", '[unsilo]\nadmins = ["root"]\n', 1))
    container = make_container(config=load_config(path))
    await container.prepare()
    try:
        await container.ingest(the_story())
        root = c.Actor("cli", "root")
        dry = await container.bus.handle(c.Erase(root, "asked by mail", author="Cy", dry_run=True))
        assert "0 conversations and 1 voice in #1" in dry.text
        done = await container.bus.handle(c.Erase(root, "asked by mail", author="Cy"))
        assert "#1" in done.text
        shown = await container.bus.handle(c.Show(1, ADMIN))
        assert shown.card is not None
        text = "\n".join(card_lines(shown.card))
        assert "3 voices" in text and "Cy" not in text and "reviews.example.org" not in text
        assert "Reposting" not in json.dumps([v for v in shown.card.voices])
        again = await container.ingest(the_story()[2:])  # the feed read again: known, never back
        assert again.new_ids == [] and again.voices == 0
        # Erasing the conversation itself takes its voices and the keys that found it.
        await container.bus.handle(c.Erase(root, "asked by phone", conversation_id=1))
        async with container.uow() as uow:
            voices = (await uow.session.exec(select(Voice))).all()
        assert all(v.author_name == "" and v.text == "" and v.url == "" for v in voices)
        fresh = await container.ingest([make_incoming(**{**vars(the_story()[0]), "external_id": "tw-2"})])
        assert len(fresh.new_ids) == 1, "an erased conversation is found by nothing"
    finally:
        await container.close()


async def test_merge_and_split_by_hand_are_logged_and_refresh_both_cards(container: Container) -> None:
    carol = c.Actor("cli", "carol")  # a manager of triage, where these went
    await container.ingest(the_story())
    other = await container.ingest([make_incoming(source="mail", external_id="m1", text="Checkout fails for me too, error 502")])
    second = other.new_ids[0]
    merged = await container.bus.handle(textcommands.parse(f"merge #{second} into #1", carol))
    assert merged.text == f"#{second} is now a voice of #1 (4 voices)"
    shown = await container.bus.handle(c.Show(1, ADMIN))
    assert shown.card is not None and "4 voices · twitter, forum, reviews, mail" in "\n".join(card_lines(shown.card))
    gone = await container.bus.handle(c.Show(second, ADMIN))
    assert gone.card is not None and gone.card.status == "dismissed"

    # The one merged by hand comes back as itself; an ingested voice becomes a conversation of its own.
    back = await container.bus.handle(textcommands.parse(f"split #{second}", carol))
    assert back.text == f"Split out of #1: it is #{second} again" and back.card is not None and back.card.status == "open"
    with pytest.raises(InvalidInput, match="which one"):
        await container.bus.handle(textcommands.parse("split #1", carol))
    out = await container.bus.handle(textcommands.parse("split #1 2", carol))
    assert out.card is not None and out.card.source == "reviews" and out.card.id not in (1, second)
    # Its link finds it now, not #1: the same review shared again joins the conversation it became.
    again = await container.ingest(
        [make_incoming(source="mail", external_id="m2", text="see this", url="https://reviews.example.org/r/5?utm_source=x")]
    )
    assert again.joined == [out.card.id]
    shown = await container.bus.handle(c.Show(1, ADMIN))
    assert shown.card is not None and shown.card.voice_count == 1
    async with container.uow() as uow:
        kinds = [e.kind for e in (await uow.session.exec(select(Event).order_by(col(Event.id)))).all()]
    assert kinds.count("merged") == 1 and kinds.count("merged_in") == 1 and kinds.count("split") >= 2
    with pytest.raises(Forbidden):  # neither owner nor manager
        await container.bus.handle(c.Merge(second, c.Actor("cli", "mallory"), 1))


async def test_the_digest_counts_voices(container: Container) -> None:
    await container.ingest(the_story())
    digest = await container.bus.handle(c.ShowDigest(c.Actor("cli", "carol"), department="triage", days=1))
    assert digest.notice is not None and "1 new (+1) (and 2 more voices of them)" in "\n".join(digest.notice.lines)


async def test_the_digest_names_the_conversations_with_the_most_voices_then_the_tags(container: Container) -> None:
    await container.ingest(the_story())  # #1: 3 voices
    login = "I cannot log in since this morning, the page says my password is wrong although I reset it twice today"
    pair = [
        make_incoming(source="forum", external_id=f"l{i}", title="Login loop", text=login, url=url, tags=("login",))
        for i, url in enumerate(("https://shop.example/help/login?utm_source=a", "https://m.shop.example/help/login/"))
    ]
    alone = make_incoming(source="mail", external_id="m1", text="Where is my invoice?", tags=("billing", "login"))
    report = await container.ingest([*pair, alone])
    assert len(report.new_ids) == 2  # the login pair is one conversation with 2 voices
    login_id = min(report.new_ids)
    digest = await container.bus.handle(c.ShowDigest(c.Actor("cli", "carol"), department="triage", days=1))
    assert digest.notice is not None
    lines = list(digest.notice.lines)
    print("\n".join(lines))
    start = lines.index("Recurring issues (the most voices first):")
    assert lines[start + 1].startswith("#1 · 3 voices · The checkout page has been down for an hour")
    assert lines[start + 2] == f"#{login_id} · 2 voices · Login loop · https://shop.example/help/login?utm_source=a"
    assert lines[start + 3] == "Recurring (tags on the most conversations): login 2 (+2), billing 1 (+1)"
    assert [line for line in lines if " voices · " in line] == lines[start + 1 : start + 3], "one voice is not recurring"


async def test_two_replicas_merging_two_conversations_into_each_other_merge_one_way(
    make_container: Callable[..., Container],
) -> None:
    """`merge #1 into #2` and `merge #2 into #1` at the same moment: one wins, the other is refused clearly
    (no deadlock, no pair of conversations each closed into the other)."""
    first, second = make_container(), make_container()
    await first.prepare()
    await second.prepare()
    try:
        carol = c.Actor("cli", "carol")  # a manager of triage, where these go
        a = (await first.ingest([make_incoming(source="mail", external_id="x1", text="Checkout fails, error 502")])).new_ids[0]
        b = (await first.ingest([make_incoming(source="mail", external_id="x2", text="Cannot pay at checkout")])).new_ids[0]
        outcomes = await asyncio.gather(
            first.bus.handle(c.Merge(b, carol, a)), second.bus.handle(c.Merge(a, carol, b)), return_exceptions=True
        )
        refused = [o for o in outcomes if isinstance(o, Exception)]
        assert len(refused) == 1 and isinstance(refused[0], InvalidInput), outcomes
        async with first.uow() as uow:
            rows = {cv.id: cv for cv in (await uow.session.exec(select(Conversation))).all()}
        assert sorted(cv.status for cv in rows.values()) == ["dismissed", "open"]
        kept = next(cv for cv in rows.values() if cv.status == "open")
        assert kept.voice_count == 1
    finally:
        await first.close()
        await second.close()
