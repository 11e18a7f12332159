"""Every real-world and edge-case feed in ../shared/reference/feeds: ingested once, or refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import func, select

from bot.bootstrap import Container
from bot.ingest import IngestError, clean_text, html_to_text, parse_feed
from storage.models import Conversation, Event, Voice
from tests.conftest import reference_dir

# Files that are not feeds at all: they must be refused with the source named.
NOT_A_FEED = {"unrecognized.rss"}


def feed_files() -> list[Path]:
    root = reference_dir() / "feeds"
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".xml", ".rss", ".atom", ".json"))


def _ids(path: Path) -> str:
    return path.name


@pytest.fixture(scope="module")
def all_feeds() -> list[Path]:
    return feed_files()


async def count(container: Container, model: type) -> int:
    async with container.uow() as uow:
        return (await uow.session.exec(select(func.count()).select_from(model))).one()


def test_the_reference_folder_has_the_feeds_we_expect(all_feeds: list[Path]) -> None:
    assert len(all_feeds) == 30


def test_every_feed_parses_to_items_or_a_clear_error_naming_the_source(all_feeds: list[Path]) -> None:
    for path in all_feeds:
        source = f"ref-{path.stem}"
        if path.name in NOT_A_FEED:
            with pytest.raises(IngestError, match=f"source '{source}': cannot read the feed"):
                parse_feed(path.read_bytes(), source=source)
            continue
        items, _warning = parse_feed(path.read_bytes(), source=source)
        for item in items:
            assert item.external_id and item.source == source
            assert "<script" not in item.text.lower()
            assert not any(ord(ch) < 32 and ch not in "\n\t" for ch in item.text + item.title)


async def test_ingesting_every_reference_feed_twice_never_duplicates(container: Container, all_feeds: list[Path]) -> None:
    expected = 0
    for path in all_feeds:
        if path.name in NOT_A_FEED:
            continue
        items, _ = parse_feed(path.read_bytes(), source=f"ref-{path.stem}")
        expected += len({i.external_id for i in items})
        await container.ingest(items)
    # Each item is stored once: as a conversation, or as another voice of one (the same post twice: bot/voices.py).
    first = await count(container, Conversation) + await count(container, Voice)
    for path in all_feeds:
        if path.name not in NOT_A_FEED:
            report = await container.ingest(parse_feed(path.read_bytes(), source=f"ref-{path.stem}")[0])
            assert report.new_ids == [] and report.voices == 0, path.name
    assert first == expected == await count(container, Conversation) + await count(container, Voice)
    assert await count(container, Event) == first  # one `ingested` or `voice_added` event each, nothing more


async def test_duplicate_guids_inside_one_feed_make_one_conversation(container: Container, reference: Path) -> None:
    items, _ = parse_feed((reference / "feeds/rss-parser/itunes-missing-image.rss").read_bytes(), source="podcast")
    report = await container.ingest(items)
    assert len(items) == 131 and report.duplicates == 1 and len(report.new_ids) == 130


async def test_an_unreadable_feed_changes_nothing(container: Container, reference: Path) -> None:
    with pytest.raises(IngestError, match="source 'moved': cannot read the feed"):
        parse_feed((reference / "feeds/rss-parser/unrecognized.rss").read_bytes(), source="moved")
    assert await count(container, Conversation) == 0


def test_odd_encodings_and_ill_formed_xml_still_give_readable_text(reference: Path) -> None:
    feeds = reference / "feeds"
    latin1, warning = parse_feed((feeds / "rss-parser/uolNoticias.rss").read_bytes(), source="uol")
    assert len(latin1) == 15 and warning is None  # undeclared Latin-1 is detected, not an error
    assert any(ch in "".join(i.title for i in latin1) for ch in "ãçéõ")
    koi8, _ = parse_feed((feeds / "feedparser/illformed/chardet/koi8r.xml").read_bytes(), source="koi8")
    assert any("\u0400" <= ch <= "\u04ff" for ch in koi8[0].title + koi8[0].text)
    moron, _ = parse_feed((feeds / "feedparser/encoding/demoronize-1.xml").read_bytes(), source="moron")
    assert "don\u2019t" in moron[0].title + moron[0].text
    amp, _ = parse_feed((feeds / "feedparser/illformed/rss_item_link_corrupted_ampersands.xml").read_bytes(), source="amp")
    assert amp[0].url.endswith("a=1&b=2")


def test_json_feed_items_are_read(reference: Path) -> None:
    items, _ = parse_feed((reference / "feeds/feedparser/json/example.json").read_bytes(), source="json")
    assert [(i.external_id, i.url) for i in items] == [
        ("2", "https://example.org/second-item"),
        ("1", "https://example.org/initial-post"),
    ]
    assert items[1].text == "Hello, world!" and items[1].author_name == "you"


def test_an_ill_formed_feed_is_read_as_far_as_possible_with_a_warning(reference: Path) -> None:
    items, warning = parse_feed((reference / "feeds/feedparser/illformed/rss_incomplete_cdata.xml").read_bytes(), source="cdata")
    assert len(items) == 1 and warning and "source 'cdata': feed is ill-formed" in warning


def test_relative_links_are_made_absolute(reference: Path) -> None:
    items, _ = parse_feed((reference / "feeds/rss-parser/gulp-atom.atom").read_bytes(), source="gulp")
    assert all(i.url.startswith("https://github.com/") for i in items)


def test_entries_without_id_get_a_stable_hash_id(reference: Path) -> None:
    data = (reference / "feeds/rss-parser/heraldsun.rss").read_bytes()
    first, _ = parse_feed(data, source="hs")
    second, _ = parse_feed(data, source="hs")
    assert [i.external_id for i in first] == [i.external_id for i in second]
    assert len({i.external_id for i in first}) == len(first)


def test_hostile_html_becomes_plain_text() -> None:
    text = html_to_text('<p>Hello <b>there</b></p><script>alert("x")</script><style>p{}</style>&amp; bye<br>next')
    assert text == "Hello there\n& bye\nnext"
    assert clean_text("a\x00b\x1bc\u0092d") == "abc\u2019d"
    assert clean_text("lone \ud800surrogate") == "lone surrogate"
