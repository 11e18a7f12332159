"""A burst is announced once: a spike of new conversations over a quiet baseline posts one alert to
each of the department's channels, nothing more while its cooldown lasts, once across replicas,
and shows in the digest."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from adapters.slack import render as slack_render
from adapters.teams import render as teams_render
from bot import codec, terminal
from bot import commands as c
from bot.bootstrap import Container, load_config
from bot.config import Config, ConfigError, SpikeConfig
from bot.digest import build_digest, digest_lines
from bot.ingest import make_incoming
from bot.outbox import notice_of
from bot.scheduler import Scheduler
from bot.spikes import alert_notice, check_spikes, find_spikes
from storage.clock import utcnow
from storage.models import Conversation, Delivery, JobRun, SpikeAlert
from storage.spikes import WindowItem
from tests.conftest import TEST_CONFIG, FakeClock
from tests.slack_support import running_slack
from tests.slack_support import sample as slack_sample
from tests.teams_support import CHANNEL as TEAMS_STANDIN_CHANNEL
from tests.teams_support import running_teams
from tests.test_slack_render import check_message, check_no_live_markup
from tests.test_teams_render import check_card

TEAMS_CHANNEL = "19:support@thread.tacv2"
CHANNELS = ("log:support", "slack:C0SUPPORT", f"teams:{TEAMS_CHANNEL}")
SPIKE_CONFIG = TEST_CONFIG.replace('channels = ["log:support"]', f"channels = {list(CHANNELS)!r}".replace("'", '"')) + (
    """
[[rules]]
name = "outage"
departments = ["support"]
any = ["outage", "down"]
tags = ["outage"]
"""
)
DAVE = c.Actor("slack", "UDAVE", "Dave")


@pytest.fixture
def spike_config(tmp_path: Path) -> Config:
    path = tmp_path / "spikes.toml"
    path.write_text(SPIKE_CONFIG)
    return load_config(path)


@pytest.fixture
async def store(make_container: Callable[..., Container], spike_config: Config) -> AsyncIterator[tuple[Container, FakeClock]]:
    clock = FakeClock()
    container = make_container(clock=clock, config=spike_config)
    await container.prepare()
    yield container, clock
    await container.close()


async def _ingest(container: Container, clock: FakeClock, n: int, *, prefix: str, every: timedelta, text: str) -> None:
    """`n` posts, `every` apart (all at once, in one batch, when `every` is zero)."""
    items = [
        make_incoming(
            source="status-forum" if i % 3 else "twitter",
            external_id=f"{prefix}-{i}",
            author_name=f"<!channel> customer {i}",
            text=text.format(i=i),
            url=f"https://forum.example/t/{prefix}-{i}",
        )
        for i in range(n)
    ]
    if not every:
        await container.ingest(items)
        return
    for item in items:
        await container.ingest([item])
        clock.advance(seconds=every.total_seconds())


async def _quiet_week(container: Container, clock: FakeClock) -> None:
    """One outage report a day at about this hour, for a week: the baseline is about 1 an hour."""
    for day in range(7):
        await _ingest(container, clock, 1, prefix=f"day{day}", every=timedelta(0), text="the site was down for a minute")
        clock.advance(days=1)


async def _alert_rows(container: Container) -> list[Delivery]:
    async with container.uow() as uow:
        rows = (await uow.session.exec(select(Delivery).where(Delivery.kind == "notice").order_by(Delivery.id))).all()
        return [d for d in rows if d.key.startswith("spike:")]


async def _alerts(container: Container) -> list[SpikeAlert]:
    async with container.uow() as uow:
        return list((await uow.session.exec(select(SpikeAlert).order_by(SpikeAlert.id))).all())


BURST = "Checkout outage, error 503 at checkout #{i}"  # under 12 words: each its own conversation (bot/voices.py)
# The same complaint reposted: near-identical texts, which become voices of one conversation.
REPOSTED = "Checkout outage again today: the payment page is down and shows error 503 at checkout, ref {i}"


async def test_a_burst_merged_into_one_conversation_still_counts_every_voice(store: tuple[Container, FakeClock]) -> None:
    container, clock = store
    clock.now -= timedelta(days=7, minutes=30)
    await _quiet_week(container, clock)
    clock.advance(minutes=20)
    await _ingest(container, clock, 30, prefix="repost", every=timedelta(seconds=20), text=REPOSTED)
    async with container.uow() as uow:
        burst = [cv for cv in (await uow.session.exec(select(Conversation))).all() if "ref " in cv.text]
    assert len(burst) == 1 and burst[0].voice_count == 29, "one card for the reposted complaint"

    assert await Scheduler(container, holder="A").run_spikes(due_at=clock.now)
    notice = notice_of((await _alert_rows(container))[0].payload)
    assert notice.title == "Spike in support: 30 new tagged “outage” in the last 1 h", "every voice counts"
    shown = await container.bus.handle(c.ShowSpike(DAVE, 1))
    assert shown.text == "Spike 1 in support (outage): 1 conversation", "its list names the conversation once"


async def test_a_burst_of_outages_is_announced_once_per_channel_and_not_again_within_the_cooldown(
    store: tuple[Container, FakeClock],
) -> None:
    container, clock = store
    clock.now -= timedelta(days=7, minutes=30)
    await _quiet_week(container, clock)
    clock.advance(minutes=20)
    await _ingest(container, clock, 30, prefix="burst1", every=timedelta(seconds=20), text=BURST)  # 30 in 10 minutes
    scheduler = Scheduler(container, holder="A")

    assert await scheduler.run_spikes(due_at=clock.now)
    rows = await _alert_rows(container)
    assert sorted((d.platform, d.payload["channel_id"]) for d in rows) == sorted(
        (name, channel) for name, _, channel in (ch.partition(":") for ch in CHANNELS)
    ), "one alert in each of support's channels, on every platform"
    notice = notice_of(rows[0].payload)
    assert notice.title == "Spike in support: 30 new tagged “outage” in the last 1 h"
    assert notice.lines[0].startswith("Usually 1 in that 1 h") and "30x" in notice.lines[0]
    assert any(line.startswith("Also up: ") and "rule “outage”" in line for line in notice.lines)
    terms = next(line for line in notice.lines if line.startswith("Top terms: "))
    assert "checkout" in terms and "down" not in terms, "words of the quiet days are not distinctive"
    assert "Sources: status-forum 20, twitter 10" in notice.lines
    examples = [line for line in notice.lines if line.startswith("#")]
    assert len(examples) == 3 and "customer 29" in examples[0], "the three newest posts"
    assert [label for label, _ in notice.links] == [e.split(" ")[0] for e in examples]
    assert [a.label for a in notice.actions] == ["See all 30"]

    # The button shows every conversation of the spike.
    action = notice.actions[0]
    command = codec.action_command(codec.action_data(action), DAVE)
    assert command == c.ShowSpike(DAVE, 1)
    shown = await container.bus.handle(command)
    assert shown.text == "Spike 1 in support (outage): 30 conversations"
    assert len(shown.cards) + shown.more == 30 and shown.cards[0].author.endswith("customer 29")

    await container.worker().run_until_idle()
    sent = [job for job in container.senders["log"].sent if job.kind == "notice"]  # type: ignore[attr-defined]
    assert [job.channel_id for job in sent] == ["support"]

    # A second burst 30 minutes later: the spike goes on, nobody is told again.
    clock.advance(minutes=30)
    await _ingest(container, clock, 30, prefix="burst2", every=timedelta(seconds=20), text=BURST)
    assert await Scheduler(container, holder="B").run_spikes(due_at=clock.now), "the check ran"
    assert len(await _alert_rows(container)) == len(CHANNELS), "no alert within the cooldown"

    # Past the cooldown, a new burst is news again.
    clock.advance(hours=2)
    await _ingest(container, clock, 30, prefix="burst3", every=timedelta(seconds=20), text=BURST)
    assert await scheduler.run_spikes(due_at=clock.now)
    assert len(await _alerts(container)) == 2 and len(await _alert_rows(container)) == 2 * len(CHANNELS)

    # The digest of the day lists both.
    clock.advance(minutes=5)
    async with container.uow() as uow:
        digest = await build_digest(uow, department="support", since=clock.now - timedelta(days=1), until=clock.now)
    lines = digest_lines(digest)
    assert "Spikes: 2" in lines
    assert [ln.split(" · ")[1] for ln in lines if ln.endswith(("spike 1", "spike 2"))] == [
        "30 tagged outage in 1 h (usually 1)"
    ] * 1 + ["30 tagged outage in 1 h (usually 0)"]


@pytest.fixture
async def replicas(
    store: tuple[Container, FakeClock], make_container: Callable[..., Container], spike_config: Config
) -> AsyncIterator[list[Container]]:
    """Three more processes on the store, after a quiet week and a burst of 30 outages in the last 10 minutes."""
    container, clock = store
    clock.now -= timedelta(days=7, minutes=30)
    await _quiet_week(container, clock)
    await _ingest(container, clock, 30, prefix="burst", every=timedelta(0), text=BURST)
    clock.advance(minutes=1)
    started = [make_container(clock=clock, config=spike_config) for _ in range(3)]
    try:
        for replica in started:
            await replica.prepare()
        yield started
    finally:
        for replica in started:
            await replica.close()


async def test_three_replicas_checking_at_once_post_one_alert(
    store: tuple[Container, FakeClock], replicas: list[Container], spike_config: Config
) -> None:
    container, clock = store
    ran = await asyncio.gather(*(Scheduler(r, holder=f"R{i}").run_spikes(due_at=clock.now) for i, r in enumerate(replicas)))
    assert sorted(ran) == [False, False, True], "one replica holds the run's lease"

    clock.advance(seconds=30)  # without the lease (a run taken over late): the cooldown still holds

    async def check(replica: Container) -> int:
        async with replica.uow() as uow:
            made = await check_spikes(uow, now=clock.now, settings=spike_config.spikes, channels={"support": []})
            await uow.commit()
            return len(made)

    assert sum(await asyncio.gather(*(check(r) for r in replicas))) == 0, "the first alert's scopes are cooling down"
    assert len(await _alerts(container)) == 1
    assert len(await _alert_rows(container)) == len(CHANNELS)


async def test_replicas_racing_past_the_cooldown_check_still_record_one_alert(
    store: tuple[Container, FakeClock], replicas: list[Container], spike_config: Config, database_url: str
) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite runs one writing transaction at a time (BEGIN IMMEDIATE): checks cannot interleave there")
    container, clock = store
    uows = [replica.uow() for replica in replicas]
    for uow in uows:
        await uow.__aenter__()
    settings = spike_config.spikes
    try:
        first = await check_spikes(uows[0], now=clock.now, settings=settings, channels={"support": []})
        assert len(first) == 1  # recorded, not yet committed: the others see no alert cooling down
        others = [
            asyncio.create_task(check_spikes(uow, now=clock.now, settings=settings, channels={"support": []})) for uow in uows[1:]
        ]
        await asyncio.sleep(0.5)  # both reach their insert and wait on the first one's key
        assert not any(task.done() for task in others)
        await uows[0].commit()
        assert [len(made) for made in await asyncio.gather(*others)] == [0, 0], "the unique key lets one through"
        for uow in uows[1:]:
            await uow.commit()
    finally:
        for uow in uows:
            await uow.__aexit__(None, None, None)
    assert len(await _alerts(container)) == 1


NOW = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)


def _items(per_hour: dict[int, int], *, tags: tuple[str, ...] = ("outage",)) -> list[WindowItem]:
    """`per_hour[d]` items in the hour ending `d` days before NOW."""
    return [
        WindowItem(d * 1000 + n, "support", NOW - timedelta(days=d, minutes=1 + n % 59), "forum", tags, "", "", "", "", "")
        for d, count in per_hour.items()
        for n in range(count)
    ]


def test_a_busy_hour_that_is_as_busy_every_day_is_no_spike_and_a_small_jump_neither() -> None:
    settings = SpikeConfig()
    steady = _items({0: 30, **{d: 28 + d % 3 for d in range(1, 8)}})
    assert find_spikes(steady, now=NOW, settings=settings) == []
    small = _items({0: 9, **{d: 0 for d in range(1, 8)}})
    assert find_spikes(small, now=NOW, settings=settings) == [], "under the minimum count"
    tripled = _items({0: 40, **{d: 10 + d % 2 for d in range(1, 8)}})
    assert {s.scope for s in find_spikes(tripled, now=NOW, settings=settings)} == {"department:support", "tag:outage"}
    noisy = _items({0: 40, 1: 40, 2: 0, 3: 0, 4: 0, 5: 0, 6: 0, 7: 0})
    assert find_spikes(noisy, now=NOW, settings=settings) == [], "within three standard deviations of a noisy week"


def test_the_alert_renders_escaped_and_valid_on_every_platform(reference: Path) -> None:
    hostile = "<!channel> <@U0BOSS> <https://evil.example|click> **bold** [x](https://evil.example) \u202e"
    items = [
        WindowItem(
            i,
            "support",
            NOW - timedelta(minutes=i + 1),
            "forum<!here>",
            ("outage",),
            "",
            hostile,
            hostile,
            "javascript:alert(1)" if i == 0 else f"https://forum.example/{i}",
            hostile,
        )
        for i in range(12)
    ]
    (spike, *_) = find_spikes(items, now=NOW, settings=SpikeConfig())
    alert = SpikeAlert(
        id=7,
        key="k",
        department="support",
        scope=spike.scope,
        scopes=[spike.scope],
        window_start=NOW,
        window_end=NOW,
        count=spike.count,
        baseline=0.0,
        conversation_ids=[],
        terms=["evil", "click"],
    )
    notice = alert_notice(alert, spike, [], settings=SpikeConfig())
    message = slack_render.notice_message(notice)
    check_message(message)
    check_no_live_markup(message, links_allowed=2)  # the two examples with a web link; never the javascript: one
    (button,) = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert button["text"]["text"] == "See all 12"
    assert codec.action_command(button["value"], DAVE) == c.ShowSpike(DAVE, 7)

    card = teams_render.notice_card(notice)
    check_card(card)
    execute = [a for a in card["actions"] if a["type"] == "Action.Execute"]
    assert [a["title"] for a in execute] == ["See all 12"] and codec.action_command(execute[0]["data"], DAVE) == c.ShowSpike(
        DAVE, 7
    )

    text = "\n".join(terminal.notice_lines(notice))
    assert "\u202e" not in text and "Every one of them: spike 7" in text


def test_spike_settings_come_from_the_config_with_their_defaults(tmp_path: Path) -> None:
    path = tmp_path / "u.toml"
    path.write_text(TEST_CONFIG + "\n[spikes]\nwindow_minutes = 30\nratio = 4\nmin_count = 20\n")
    spikes = load_config(path).spikes
    assert (spikes.window_minutes, spikes.ratio, spikes.min_count, spikes.cooldown_minutes) == (30, 4.0, 20, 120)
    path.write_text(TEST_CONFIG + '\n[spikes]\nratio = "lots"\nwindow = 3\n')
    with pytest.raises(ConfigError, match="spikes.ratio") as raised:
        load_config(path)
    assert "spikes.window" in str(raised.value)


async def test_on_slack_the_alert_is_posted_once_and_see_all_answers_the_clicker_alone(tmp_path: Path) -> None:
    clock = FakeClock()
    async with running_slack(tmp_path, clock=clock) as slack:
        await slack.container.prepare()
        for i in range(30):
            item = make_incoming(
                source="status-page",
                external_id=f"s{i}",
                text=f"refund please, checkout broken by the outage <!here> #{i}",
                url=f"https://status.example/{i}",
                tags=("outage",),
            )
            await slack.container.ingest([item])
            clock.advance(seconds=20)
        assert await Scheduler(slack.container, holder="A").run_spikes(due_at=clock.now)
        assert await slack.deliver() >= 1
        assert await slack.deliver() == 0
        (message,) = [m for m in slack.slack.messages("C0SUPPORT") if "Spike in support" in m["text"]]
        check_message({"text": message["text"], "blocks": message["blocks"]})
        check_no_live_markup(message["blocks"], links_allowed=3)  # the three examples' links, nothing live from customers
        (button,) = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
        assert button["text"]["text"] == "See all 30"

        payload = slack_sample("block_actions.button.json")
        payload["user"].update(id="UALICE", username="alice", name="alice")
        payload["channel"]["id"] = "C0SUPPORT"
        payload["container"].update(channel_id="C0SUPPORT", message_ts=message["ts"], is_ephemeral=False)
        payload["actions"][0].update(action_id=button["action_id"], value=button["value"])
        payload["response_url"] = slack.slack.response_url("actions")
        status, _, _ = await slack.interactive(payload)
        assert status == 200
        for _ in range(500):
            told = slack.slack.calls_to("chat.postEphemeral")
            if told:
                break
            await asyncio.sleep(0.01)
        (call,) = told
        assert call.args["user"] == "UALICE" and "Spike 1 in support (outage): 30 conversations" in call.args["text"]
        assert "Top terms:" in json.dumps(call.args["blocks"]), "the alert is shown again above its list"
        assert slack.slack.responses == [], "the channel's alert is left as everyone sees it"
        assert slack.slack.message("C0SUPPORT", message["ts"]) is not None


async def test_the_check_is_scheduled_every_few_minutes_and_runs_once_per_due_time(store: tuple[Container, FakeClock]) -> None:
    container, clock = store
    scheduler = Scheduler(container, holder="A")
    scheduler.start()
    try:
        assert scheduler.scheduler.get_job("spikes").trigger.interval == timedelta(minutes=5)
    finally:
        await scheduler.shutdown()
    clock.now = clock.now.replace(minute=7, second=30)
    await scheduler.spike_job()
    await Scheduler(container, holder="B").spike_job()  # another replica, the same due time
    clock.advance(minutes=5)
    await Scheduler(container, holder="B").spike_job()
    async with container.uow() as uow:
        runs = (await uow.session.exec(select(JobRun).where(JobRun.job == "spikes").order_by(JobRun.due_at))).all()
    assert [(run.due_at.minute, run.holder, run.outcome) for run in runs] == [
        (5, "A", "0 spike alert(s)"),
        (10, "B", "0 spike alert(s)"),
    ]


async def test_on_teams_the_alert_is_posted_in_the_linked_channel_and_see_all_keeps_it_above_the_list(
    tmp_path: Path,
) -> None:
    async with running_teams(tmp_path) as teams:
        status, _ = await teams.mention("link support", user="aad-admin")
        assert status in (200, 201)
        items = [
            make_incoming(
                source="status-page",
                external_id=f"t{i}",
                text=f"refund please, checkout broken by the outage <at>Everyone</at> #{i}",
                url=f"https://status.example/{i}",
                tags=("outage",),
            )
            for i in range(30)
        ]
        await teams.container.ingest(items)
        assert await Scheduler(teams.container, holder="A").run_spikes(due_at=utcnow() + timedelta(seconds=1))
        await teams.deliver()
        posted = [
            (call, attachment["content"])
            for call in teams.connector.calls
            for attachment in ((call.body or {}).get("activity", call.body) or {}).get("attachments") or []
            if "Spike in support" in json.dumps(attachment["content"])
        ]
        assert len(posted) == 1, "one alert in the linked channel"
        call, card = posted[0]
        assert TEAMS_STANDIN_CHANNEL in call.path
        check_card(card)
        message_id = call.response.get("id") or call.response["activityId"]

        status, body = await teams.click(card, "spike", message_id, user="aad-alice", name="Alice")
        assert status == 200
        shown = json.dumps(body, ensure_ascii=False)
        assert "Spike 1 in support (outage): 30 conversations" in shown and "Top terms:" in shown
