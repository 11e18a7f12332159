"""A noise budget per channel: a batched channel gets one message per window listing every new
conversation of the window (their cards in its thread), nothing lost or doubled across a restart in
the middle of a window; quiet hours hold all but urgent conversations until they end; a digest-only
channel gets no cards. On SQLite and PostgreSQL, with the store's clock frozen and moved by hand."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from bot import commands as c
from bot import noise
from bot.bootstrap import Container, load_config, sync_config
from bot.config import Config, ConfigError
from bot.domain import Forbidden, InvalidInput
from bot.ingest import make_incoming
from bot.outbox import Job, LoggingSender
from bot.textcommands import parse
from storage.models import Delivery
from tests.conftest import TEST_CONFIG, FakeClock

CAROL = c.Actor("cli", "carol", "Carol")  # manages support and triage
ERIN = c.Actor("cli", "erin", "Erin")  # manages ops only
URGENT_RULE = """
[[rules]]
name = "outage"
departments = ["support"]
any = ["outage"]
priority = "urgent"
"""


def _config(tmp_path: Path, extra: str = "", *, admins: str = "") -> Config:
    text = TEST_CONFIG.replace("require_claim_to_reply = true", f"require_claim_to_reply = true\nadmins = [{admins}]")
    path = tmp_path / "budget.toml"
    path.write_text(text + URGENT_RULE + extra)
    return load_config(path)


BATCHED = '\n[channels."log:support"]\nmode = "batched 15m"\n'


async def _ingest(container: Container, key: str, text: str) -> int:
    return (await container.ingest([make_incoming(source="forum", external_id=key, text=text)])).new_ids[0]


def _support(sender: LoggingSender) -> list[Job]:
    return [job for job in sender.sent if job.channel_id == "support"]


def _log(container: Container) -> LoggingSender:
    sender = container.senders["log"]
    assert isinstance(sender, LoggingSender)
    return sender


async def _batches(container: Container) -> list[Delivery]:
    async with container.uow() as uow:
        return list((await uow.session.exec(select(Delivery).where(Delivery.kind == "batch").order_by(Delivery.id))).all())


async def test_a_batched_channel_gets_one_message_per_window_with_every_new_conversation(
    make_container: Callable[..., Container], tmp_path: Path
) -> None:
    clock = FakeClock(datetime(2026, 11, 16, 9, 0, 30, tzinfo=UTC))
    container = make_container(clock=clock, config=_config(tmp_path, BATCHED))
    await container.prepare()
    try:
        worker, sender = container.worker(), _log(container)
        first = await _ingest(container, "a", "my refund never came")
        clock.advance(minutes=4)
        second = await _ingest(container, "b", "the app is broken since the update")
        await worker.run_until_idle()
        assert _support(sender) == []  # the window 09:00-09:15 is still open
        assert [j.channel_id for j in sender.sent] == []  # support only: no other channel had them

        clock.advance(minutes=11)  # 09:15:30, into the next window
        third = await _ingest(container, "c", "help, I cannot log in")
        await worker.run_until_idle()
        posted = _support(sender)
        assert [j.kind for j in posted] == ["batch", "card", "card"]
        batch = posted[0].batch
        assert batch is not None and [card.id for card in batch.listing.cards] == [first, second]
        assert batch.title == "2 new conversations, 09:00-09:15 UTC"
        assert all(j.thread_id == f"log-{posted[0].delivery_id}" for j in posted[1:])  # the cards in its thread
        assert {j.card.id for j in posted[1:] if j.card} == {first, second}

        # A card already posted is updated at once (an edit, not a new message), even mid-window.
        await container.bus.handle(c.Claim(first, CAROL))
        await worker.run_until_idle()
        update = _support(sender)[3:]
        assert [(j.kind, j.card.id if j.card else None, j.message_id is not None) for j in update] == [("card", first, True)]

        clock.advance(minutes=15)  # 09:30:30: the second window's batch holds the third only
        await worker.run_until_idle()
        later = _support(sender)[4:]
        assert [j.kind for j in later] == ["batch", "card"]
        assert later[0].batch is not None and [card.id for card in later[0].batch.listing.cards] == [third]
        assert len(await _batches(container)) == 2
    finally:
        await container.close()


QUIET = '\n[channels."log:support"]\nquiet = "22:00-07:00 Europe/Berlin"\n'


async def test_a_batched_channel_with_quiet_hours_gets_one_batch_in_the_morning(
    make_container: Callable[..., Container], tmp_path: Path
) -> None:
    both = '\n[channels."log:support"]\nmode = "batched 15m"\nquiet = "22:00-07:00 Europe/Berlin"\n'
    clock = FakeClock(datetime(2026, 11, 16, 21, 20, tzinfo=UTC))  # 22:20 in Berlin
    container = make_container(clock=clock, config=_config(tmp_path, both))
    await container.prepare()
    try:
        worker, sender = container.worker(), _log(container)
        night = []
        for n, words in enumerate(("refund please", "my refund never came", "still no refund", "refund the lid", "a refund?")):
            night.append(await _ingest(container, f"n{n}", words))
            clock.advance(minutes=50)  # each in a window of its own, all in the quiet hours
        await worker.run_until_idle()
        assert _support(sender) == []
        clock.now = datetime(2026, 11, 17, 6, 0, 1, tzinfo=UTC)  # 07:00:01 in Berlin
        await worker.run_until_idle()
        posted = _support(sender)
        assert [j.kind for j in posted] == ["batch"] + ["card"] * 5, "one batch message for the night, not one per window"
        assert posted[0].batch is not None and [card.id for card in posted[0].batch.listing.cards] == night
        assert posted[0].batch.title == "5 new conversations, 21:15-06:00 UTC"
    finally:
        await container.close()


async def test_quiet_hours_hold_what_is_not_urgent_until_they_end(
    make_container: Callable[..., Container], tmp_path: Path
) -> None:
    clock = FakeClock(datetime(2026, 11, 16, 21, 30, tzinfo=UTC))  # 22:30 in Berlin
    container = make_container(clock=clock, config=_config(tmp_path, QUIET))
    await container.prepare()
    try:
        worker, sender = container.worker(), _log(container)
        calm = await _ingest(container, "calm", "a refund question, whenever you can")
        urgent = await _ingest(container, "fire", "total outage, nobody can pay")
        await worker.run_until_idle()
        assert [j.card.id for j in _support(sender) if j.card] == [urgent]  # urgent goes at once

        clock.now = datetime(2026, 11, 17, 5, 59, tzinfo=UTC)  # 06:59 in Berlin: still quiet
        await worker.run_until_idle()
        assert [j.card.id for j in _support(sender) if j.card] == [urgent]

        clock.now = datetime(2026, 11, 17, 6, 0, 1, tzinfo=UTC)  # 07:00:01 in Berlin
        await worker.run_until_idle()
        assert [j.card.id for j in _support(sender) if j.card] == [urgent, calm]
        assert all(j.thread_id is None for j in _support(sender))  # realtime with quiet hours: no batch
    finally:
        await container.close()


async def test_a_digest_only_channel_gets_no_cards_and_its_digest_lists_them(
    make_container: Callable[..., Container], tmp_path: Path
) -> None:
    clock = FakeClock()
    extra = '\n[channels."log:support"]\nmode = "digest-only"\n'
    container = make_container(clock=clock, config=_config(tmp_path, extra))
    await container.prepare()
    try:
        cid = await _ingest(container, "a", "my refund never came")
        waiting = await _ingest(container, "b", "the app is broken")
        await container.bus.handle(c.Claim(cid, CAROL))  # a later version of its card: still not posted
        clock.advance(days=1)
        await container.worker().run_until_idle()
        assert _support(_log(container)) == []
        async with container.uow() as uow:
            rows = list((await uow.session.exec(select(Delivery).where(Delivery.kind == "card"))).all())
        assert {r.status for r in rows if r.destination_id is not None} >= {noise.KEPT_FOR_DIGEST}
        assert {r.status for r in rows if r.conversation_id == cid} == {noise.KEPT_FOR_DIGEST}
        digest = await container.bus.handle(c.ShowDigest(CAROL, department="support", days=7))
        assert digest.notice is not None
        lines = "\n".join(digest.notice.lines)
        assert lines.startswith("2 new (+2) · 1 claimed (+1)") and f"#{waiting} · waiting" in lines
    finally:
        await container.close()


async def test_the_mode_set_from_chat_wins_over_the_config_until_reset(
    make_container: Callable[..., Container], tmp_path: Path
) -> None:
    clock = FakeClock(datetime(2026, 11, 16, 9, 0, 30, tzinfo=UTC))
    container = make_container(clock=clock, config=_config(tmp_path, admins='"dana"'))
    await container.prepare()
    try:
        shown = await container.bus.handle(parse("mode log:support", CAROL))
        assert shown.text == "This channel gets new conversations realtime (from the config)"
        with pytest.raises(Forbidden, match="only managers of support or admins"):
            await container.bus.handle(parse("mode log:support batched 15m", ERIN))
        with pytest.raises(InvalidInput, match="a mode is one of"):
            parse("mode log:support sometimes", CAROL)
        with pytest.raises(InvalidInput, match="time zone"):
            parse("quiet log:support 22:00-07:00 Mars/Olympus", CAROL)

        done = await container.bus.handle(parse("mode log:support batched 15m", CAROL))
        assert done.text == "This channel now gets new conversations batched every 15m (until `mode reset`)"
        await container.bus.handle(parse("quiet log:support 22:00-07:00 Europe/Berlin", CAROL))
        # Typed in a chat channel, the command is about that channel (the CLI names it, as above).
        in_chat = c.Actor("slack", "carol", "Carol")
        assert parse("mode batched 1h", in_chat, channel_id="C0SUPPORT") == c.ChannelBudget(
            in_chat, "slack", "C0SUPPORT", mode="batched 3600"
        )
        assert parse("quiet off", in_chat, channel_id="C0SUPPORT") == c.ChannelBudget(in_chat, "slack", "C0SUPPORT", quiet="")

        await sync_config(container.uow, container.config)  # a config reload keeps the chat's setting
        cid = await _ingest(container, "a", "my refund never came")
        await container.worker().run_until_idle()
        assert _support(_log(container)) == []  # batched now: held for the window
        shown = await container.bus.handle(parse("mode log:support", CAROL))
        assert "batched every 15m, quiet 22:00-07:00 Europe/Berlin (set from chat" in shown.text

        await container.bus.handle(parse("mode log:support reset", CAROL))
        shown = await container.bus.handle(parse("mode log:support", CAROL))
        assert shown.text == "This channel gets new conversations realtime (from the config)"
        clock.advance(minutes=15)
        await container.worker().run_until_idle()  # what was held still goes, with its window
        assert [j.kind for j in _support(_log(container))] == ["batch", "card"]
        assert _support(_log(container))[1].card is not None and _support(_log(container))[1].card.id == cid  # type: ignore[union-attr]
    finally:
        await container.close()


def test_the_config_says_what_is_wrong_with_a_channel_budget(tmp_path: Path) -> None:
    extra = '\n[channels."log:support"]\nmode = "batched 2s"\nquiet = "25:00-07:00"\n[channels."nowhere"]\nmode = "realtime"\n'
    with pytest.raises(ConfigError) as caught:
        _config(tmp_path, extra)
    text = str(caught.value)
    assert "channels.log:support.mode: a batch window is 1 minute to 24 hours long" in text
    assert "channels.log:support.quiet" in text
    assert "'nowhere' should be 'platform:channel'" in text
    good = _config(tmp_path, '\n[channels."log:support"]\nmode = "batched 1h"\nquiet = "22:00-07:00 Europe/Berlin"\n')
    assert [(ch.platform, ch.channel_id, ch.mode, ch.quiet) for ch in good.channels] == [
        ("log", "support", "batched 3600", "22:00-07:00 Europe/Berlin")
    ]


def test_quiet_hours_across_midnight_and_a_daylight_saving_change() -> None:
    quiet = noise.Quiet.parse("22:00-07:00 Europe/Berlin")
    assert quiet.active(datetime(2026, 3, 28, 23, 30, tzinfo=UTC))  # 00:30 in Berlin
    # The night the clocks go forward (29 March 2026): 07:00 in Berlin is 05:00 UTC, not 06:00.
    assert quiet.ends_after(datetime(2026, 3, 28, 23, 30, tzinfo=UTC)) == datetime(2026, 3, 29, 5, 0, tzinfo=UTC)
    assert not quiet.active(datetime(2026, 3, 29, 5, 0, tzinfo=UTC))
    day = noise.Quiet.parse("12:00-13:00")
    assert day.active(datetime(2026, 1, 1, 12, 30, tzinfo=UTC)) and not day.active(datetime(2026, 1, 1, 13, 0, tzinfo=UTC))
    budget = noise.Budget(noise.BATCHED, 900, quiet)
    # A batched window that ends in the quiet hours waits for their end; urgent goes at once.
    until, window = budget.hold(now=datetime(2026, 11, 16, 21, 50, tzinfo=UTC), priority="normal")
    assert (until, window) == (datetime(2026, 11, 17, 6, 0, tzinfo=UTC), datetime(2026, 11, 16, 21, 45, tzinfo=UTC))
    assert budget.hold(now=datetime(2026, 11, 16, 21, 50, tzinfo=UTC), priority="urgent") == (None, None)
