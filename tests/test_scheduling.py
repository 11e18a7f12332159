"""Nothing waits unseen, and nothing is said twice: SLA escalations, reminders and digests,
exactly once per breach or due time, across restarts and across replicas."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from bot import commands as c
from bot.bootstrap import Container
from bot.config import digest_trigger
from bot.ingest import make_incoming
from bot.scheduler import INBOUND_KEPT, due_time, post_digest, previous_time, purge_inbound, run_leased, sweep_sla
from storage.models import Delivery, Event
from tests.conftest import FakeClock

ALICE = c.Actor("slack", "UALICE", "Alice")
CAROL = c.Actor("slack", "carol", "Carol")  # manager of support and triage in the test config


@pytest.fixture
async def store(make_container: Callable[..., Container]) -> AsyncIterator[tuple[Container, FakeClock]]:
    clock = FakeClock()
    container = make_container(clock=clock)
    await container.prepare()
    yield container, clock
    await container.close()


async def _rows(container: Container, kind: str) -> list[Delivery]:
    async with container.uow() as uow:
        stmt = select(Delivery).where(Delivery.kind == kind).order_by(Delivery.id)
        return list((await uow.session.exec(stmt)).all())


async def _events(container: Container, kind: str) -> list[Event]:
    async with container.uow() as uow:
        return list((await uow.session.exec(select(Event).where(Event.kind == kind))).all())


async def test_an_unclaimed_conversation_past_its_sla_is_escalated_once_even_across_restarts(
    store: tuple[Container, FakeClock], make_container: Callable[..., Container]
) -> None:
    container, clock = store
    other = (await container.ingest([make_incoming(source="t", external_id="x", text="help with my refund")])).new_ids[0]
    await container.bus.handle(c.AddNote(other, CAROL, "seen"))  # Carol is known to Slack as `carol`
    cid = (await container.ingest([make_incoming(source="t", external_id="y", text="refund still missing")])).new_ids[0]
    await container.bus.handle(c.Claim(other, ALICE))

    clock.advance(minutes=119)  # support's SLA is 120 minutes
    assert await sweep_sla(container.uow) == (0, 0)
    clock.advance(minutes=2)
    assert await sweep_sla(container.uow) == (1, 1)  # #cid escalated; #other's owner reminded
    assert await sweep_sla(container.uow) == (0, 0)

    restarted = make_container(clock=clock)
    try:
        await restarted.prepare()
        clock.advance(hours=5)
        assert await sweep_sla(restarted.uow) == (0, 0), "a restart must not chase the same breach again"
    finally:
        await restarted.close()

    escalations = [d for d in await _rows(container, "notice") if d.key.startswith("escalation:")]
    assert [d.conversation_id for d in escalations] == [cid]
    notice = escalations[0].payload["notice"]
    assert "still unclaimed after its 120-minute SLA" in notice["title"]
    assert notice["mentions"] == [["slack:carol", "Carol"]]
    assert len(await _events(container, "escalated")) == 1

    await container.worker().run_until_idle()
    sent = [job for job in container.senders["log"].sent if job.kind == "notice"]  # type: ignore[attr-defined]
    assert [job.channel_id for job in sent] == ["support"], "posted under the card in its channel, once"


async def test_an_owner_without_a_reply_past_the_sla_gets_one_direct_message(store: tuple[Container, FakeClock]) -> None:
    container, clock = store
    cid = (await container.ingest([make_incoming(source="t", external_id="z", text="broken screen")])).new_ids[0]
    await container.bus.handle(c.Claim(cid, ALICE))
    clock.advance(minutes=121)
    assert await sweep_sla(container.uow) == (0, 1)
    clock.advance(minutes=121)
    assert await sweep_sla(container.uow) == (0, 0)
    reminders = [d for d in await _rows(container, "notice") if d.key.startswith("reminder:")]
    assert len(reminders) == 1
    assert reminders[0].platform == "slack" and reminders[0].payload["dm"] is True
    assert reminders[0].payload["channel_id"] == "UALICE"
    assert "is yours and still has no reply" in reminders[0].payload["notice"]["title"]
    assert len(await _events(container, "reminded")) == 1


async def test_a_replied_or_claimed_conversation_is_not_escalated(store: tuple[Container, FakeClock]) -> None:
    container, clock = store
    cid = (await container.ingest([make_incoming(source="t", external_id="r", text="refund please")])).new_ids[0]
    await container.bus.handle(c.Claim(cid, ALICE))
    await container.bus.handle(c.ReplyToCustomer(cid, ALICE, "done"))
    clock.advance(days=2)
    assert await sweep_sla(container.uow) == (0, 0)


async def test_a_digest_run_is_leased_once_and_taken_over_when_its_holder_dies(store: tuple[Container, FakeClock]) -> None:
    container, clock = store
    await container.ingest([make_incoming(source="t", external_id="d", text="refund for order 9")])
    department = next(d for d in container.config.departments if d.name == "support")
    due = clock.now.replace(minute=30)
    ran: list[str] = []

    async def work(uow: object, name: str) -> str:
        ran.append(name)
        return await post_digest(uow, department, since=due - timedelta(days=7), until=due)  # type: ignore[arg-type]

    # Replica A takes the lease and dies before finishing (no work, no finish).
    async with container.uow() as uow:
        assert await uow.jobs.take("digest:support", due_at=due, holder="A", now=clock.now, lease=timedelta(minutes=5))
        await uow.commit()
    assert not await run_leased(container.uow, "digest:support", due_at=due, holder="B", work=lambda u: work(u, "B"))
    clock.advance(minutes=6)  # A's lease expires
    assert await run_leased(container.uow, "digest:support", due_at=due, holder="B", work=lambda u: work(u, "B"))
    assert not await run_leased(container.uow, "digest:support", due_at=due, holder="C", work=lambda u: work(u, "C"))
    assert ran == ["B"]
    digests = [d for d in await _rows(container, "notice") if d.key.startswith("digest:")]
    assert len(digests) == 1 and digests[0].payload["channel_id"] == "support"
    assert "support" in digests[0].payload["notice"]["title"]


async def test_a_quiet_department_gets_one_line_not_an_empty_table(store: tuple[Container, FakeClock]) -> None:
    container, clock = store
    department = next(d for d in container.config.departments if d.name == "legal")
    async with container.uow() as uow:
        await post_digest(uow, department, since=clock.now - timedelta(days=7), until=clock.now)
        await uow.commit()
    (row,) = await _rows(container, "notice")
    lines = row.payload["notice"]["lines"]
    assert len(lines) == 1 and lines[0].startswith("No activity in legal")


def test_weekday_numbers_mean_what_crontab_means() -> None:
    """ "30 8 * * 1-5" is Monday to Friday (APScheduler 3 alone would read Tuesday to Saturday)."""
    trigger = digest_trigger("30 8 * * 1-5", "Europe/Berlin")
    saturday_noon = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    monday = trigger.get_next_fire_time(None, saturday_noon)
    assert monday.isoformat() == "2026-11-23T08:30:00+01:00"
    friday = trigger.get_next_fire_time(None, datetime(2026, 11, 27, 0, 0, tzinfo=UTC))
    assert friday.strftime("%A %H:%M") == "Friday 08:30"
    assert due_time(trigger, datetime(2026, 11, 23, 7, 31, 40, tzinfo=UTC)) == datetime(2026, 11, 23, 7, 30, tzinfo=UTC)
    assert previous_time(trigger, datetime(2026, 11, 23, 7, 30, tzinfo=UTC)) == datetime(2026, 11, 20, 7, 30, tzinfo=UTC)


def test_a_digest_period_starts_at_the_previous_due_time_whatever_the_schedule() -> None:
    due = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert previous_time(digest_trigger("*/6 * * * * *"), due) == due - timedelta(seconds=6)
    assert previous_time(digest_trigger("0 9 1 * *"), due) == datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    assert previous_time(digest_trigger("0 9 * * *"), due) == due - timedelta(days=1)


async def test_processed_event_keys_are_forgotten_after_a_week_and_recognised_until_then(
    store: tuple[Container, FakeClock],
) -> None:
    container, clock = store
    async with container.uow() as uow:
        assert await uow.inbound.first_time("slack", "Ev-old", at=uow.now())
        await uow.commit()
    clock.advance(days=6)
    async with container.uow() as uow:
        assert await uow.inbound.first_time("slack", "Ev-new", at=uow.now())
        await uow.commit()
    clock.advance(days=1, minutes=1)
    assert await purge_inbound(container.uow) == 1  # the old key is past INBOUND_KEPT; the new one is not
    async with container.uow() as uow:
        assert not await uow.inbound.first_time("slack", "Ev-new", at=uow.now()), "a retry of a recent event is still recognised"
        assert await uow.inbound.first_time("slack", "Ev-old", at=uow.now()), "the old key is gone"
    assert INBOUND_KEPT == timedelta(days=7)
