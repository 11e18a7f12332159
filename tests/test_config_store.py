"""What the config means for the store at start: a department dropped from it is retired (its
managers' rights end, its active conversations and their cards move to the default department),
and a feed may not take a webhook's name. Sources are managed by admins, through the bus."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlmodel import select

from bot import commands as c
from bot import configsync
from bot.bootstrap import Container, load_config
from bot.config import Config, ConfigError
from bot.domain import Forbidden, InvalidInput
from bot.ingest import make_incoming
from bot.outbox import LoggingSender
from storage.models import Event, Source
from tests.conftest import TEST_CONFIG

DANA = c.Actor("cli", "dana", name="dana")  # legal's manager in the test config
CAROL = c.Actor("cli", "carol", name="carol")


def config_of(tmp_path: Path, text: str, name: str = "next.toml") -> Config:
    path = tmp_path / name
    path.write_text(text)
    return load_config(path)


def without_legal() -> str:
    """The test config after legal was taken out of it (its department and its rule)."""
    department = '[departments.legal]\nmanagers = ["dana"]\nchannels = ["log:legal"]\n'
    rule = TEST_CONFIG[TEST_CONFIG.index('[[rules]]\nname = "legal"') : TEST_CONFIG.index('[[rules]]\nname = "delivery"')]
    assert department in TEST_CONFIG and rule
    return TEST_CONFIG.replace(department, "").replace(rule, "")


async def events(container: Container, kind: str) -> list[Event]:
    async with container.uow() as uow:
        return list((await uow.session.exec(select(Event).where(Event.kind == kind))).all())


async def test_a_department_dropped_from_the_config_is_retired_once_and_its_open_work_moves_to_the_default(
    container: Container, make_container: Callable[..., Container], tmp_path: Path
) -> None:
    report = await container.ingest(
        [
            make_incoming(source="forum", external_id="open", text="my lawyer will call you"),
            make_incoming(source="forum", external_id="closed", text="I will sue unless you answer"),
        ]
    )
    waiting, closed = report.new_ids
    await container.worker().run_until_idle()  # both cards posted in log:legal
    await container.bus.handle(c.Resolve(closed, DANA, "answered"))
    await container.worker().run_until_idle()

    # Two replicas start together with the new config.
    replicas = [make_container(config=config_of(tmp_path, without_legal())) for _ in range(2)]
    try:
        await asyncio.gather(*(replica.prepare() for replica in replicas))
        after = replicas[0]
        [retired] = await events(after, "department_retired")
        assert retired.data == {"department": "legal", "moved_to": "triage", "moved": 1}

        async with after.uow() as uow:
            assert await uow.conversations.department_names([waiting, closed]) == {waiting: ["triage"], closed: ["legal"]}
            assert await uow.departments.by_name("legal") is None  # no longer offered (link, report, queue…)
        queue = await after.bus.handle(c.ShowQueue(CAROL))
        assert "legal" not in queue.counts and queue.counts["triage"] == 1

        with pytest.raises(Forbidden, match="only a manager of triage can dismiss"):
            await after.bus.handle(c.Dismiss(waiting, DANA, "not ours"))

        log = LoggingSender()
        await after.worker().__class__(after.uow, {"log": log}).run_until_idle()
        shown = {(job.channel_id, job.message_id is not None): job.card.departments for job in log.sent if job.card}
        assert shown == {("triage", False): ("triage",), ("legal", True): ("triage",)}  # posted there; updated here

        back = make_container(config=config_of(tmp_path, TEST_CONFIG, "again.toml"))
        try:
            await back.prepare()
            async with back.uow() as uow:
                legal = await uow.departments.by_name("legal")
                assert legal is not None and legal.managers == ["dana"]
            assert len(await events(back, "department_restored")) == 1
        finally:
            await back.close()
    finally:
        for replica in replicas:
            await replica.close()


async def test_a_config_feed_named_like_a_webhook_is_refused_and_changes_nothing(
    container: Container, make_container: Callable[..., Container], tmp_path: Path
) -> None:
    added = await container.bus.handle(c.AddSource(CAROL, "listening", "webhook"))
    assert "signing secret (shown once" in added.text
    text = TEST_CONFIG + '\n[[feeds]]\nname = "listening"\nurl = "https://listening.example/feed.rss"\n'
    # `unsilo config check` reads the store (it changes nothing there) …
    assert await configsync.check_against_store(container.uow, container.config) == (
        "feed names checked against the store's webhooks too"
    )
    with pytest.raises(ConfigError, match="'listening' is already a webhook source in the store"):
        await configsync.check_against_store(container.uow, config_of(tmp_path, text, "check.toml"))
    # … and the service refuses to start with it.
    clashing = make_container(config=config_of(tmp_path, text))
    try:
        with pytest.raises(ConfigError) as caught:
            await clashing.prepare()
    finally:
        await clashing.close()
    [problem] = caught.value.problems
    assert problem.key == "feeds[1].name" and problem.line == text.splitlines().index('name = "listening"') + 1
    assert "'listening' is already a webhook source in the store" in problem.message
    async with container.uow() as uow:
        source = await uow.sources.by_name("listening")
        assert source is not None and (source.kind, source.url) == ("webhook", "")


async def test_only_admins_manage_sources_and_a_source_with_conversations_is_kept_when_removed(
    make_container: Callable[..., Container], tmp_path: Path
) -> None:
    text = TEST_CONFIG.replace("[unsilo]\n", '[unsilo]\nadmins = ["carol"]\n') + (
        '\n[[feeds]]\nname = "reviews"\nurl = "https://shop.example/reviews.rss"\n'
    )
    container = make_container(config=config_of(tmp_path, text))
    try:
        await container.prepare()
        with pytest.raises(Forbidden, match="only admins can add sources"):
            await container.bus.handle(c.AddSource(DANA, "blog", "feed", url="https://blog.example/feed"))
        await container.bus.handle(c.AddSource(CAROL, "blog", "feed", url="https://blog.example/feed"))
        await container.bus.handle(c.AddSource(CAROL, "spare", "webhook"))
        await container.ingest([make_incoming(source="blog", external_id="p-1", text="refund please")])

        with pytest.raises(Forbidden, match="only admins can remove sources"):
            await container.bus.handle(c.RemoveSource(DANA, "blog"))
        with pytest.raises(InvalidInput, match="'reviews' is a feed in the config: remove it from the config"):
            await container.bus.handle(c.RemoveSource(CAROL, "reviews"))
        kept = await container.bus.handle(c.RemoveSource(CAROL, "blog"))
        assert kept.text == "feed blog removed: no longer polled; the conversations it brought stay"
        await container.bus.handle(c.RemoveSource(CAROL, "spare"))

        async with container.uow() as uow:
            names = {s.name: s.removed_at is not None for s in (await uow.session.exec(select(Source))).all()}
            assert names == {"blog": True, "reviews": False}  # spare brought nothing: gone
            assert [s.name for s in await uow.sources.due_feeds(uow.now())] == ["reviews"]
        logged = [(e.kind, e.actor_name, e.data.get("source")) for e in await events(container, "source_added")]
        logged += [(e.kind, e.actor_name, e.data.get("source")) for e in await events(container, "source_removed")]
        assert logged == [
            ("source_added", "carol", "blog"),
            ("source_added", "carol", "spare"),
            ("source_removed", "carol", "blog"),
            ("source_removed", "carol", "spare"),
        ]
    finally:
        await container.close()
