"""The outbox: deliveries are committed with the change and sent exactly once, even across a crash."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlmodel import select

from bot import commands as c
from bot.ingest import make_incoming
from bot.outbox import DeliveryWorker, Job, PermanentFailure, RetryLater, Sent, commit_with_deliveries, notice_of, notice_payload
from bot.views import Notice
from storage.models import Delivery, Destination, Event, Posting
from tests.conftest import FakeClock

alice = c.Actor("cli", "alice", name="alice")


class Recorder:
    """A platform that records what it is sent; it can be told to fail first."""

    def __init__(self, failures: list[Exception] | None = None) -> None:
        self.jobs: list[Job] = []
        self.failures = list(failures or [])

    async def send(self, job: Job) -> Sent:
        if self.failures:
            raise self.failures.pop(0)
        self.jobs.append(job)
        return Sent(message_id=job.message_id or f"m{len(self.jobs)}")


async def rows(container, model):
    async with container.uow() as uow:
        return list((await uow.session.exec(select(model).order_by(model.id))).all())


async def test_a_crash_before_sending_loses_nothing_and_sends_once_after_restart(make_container) -> None:
    clock = FakeClock()
    first = make_container(clock=clock)
    await first.prepare()
    report = await first.ingest([make_incoming(source="feed", external_id="1", text="parcel lost, refund?")])
    cid = report.new_ids[0]
    await first.bus.handle(c.Claim(cid, alice))
    pending = [d for d in await rows(first, Delivery) if d.status == "pending"]
    assert {d.destination_id for d in pending} and len({d.destination_id for d in pending}) == 2  # ops + support
    await first.close()  # the process dies: nothing was sent

    restarted = make_container(clock=clock)
    platform = Recorder()
    restarted.senders = {"log": platform}
    try:
        await restarted.worker().run_until_idle()
        await restarted.worker().run_until_idle()
        assert sorted(j.channel_id for j in platform.jobs) == ["ops", "support"]
        assert {j.card.status for j in platform.jobs} == {"claimed"}  # the card shows the state as it is now
        assert {j.card.owner for j in platform.jobs} == {"alice"}
        assert len(await rows(restarted, Posting)) == 2
        assert {d.status for d in await rows(restarted, Delivery)} <= {"sent", "coalesced"}

        # A later change updates the posted copies instead of posting again.
        await restarted.bus.handle(c.Release(cid, alice))
        await restarted.worker().run_until_idle()
        updates = platform.jobs[2:]
        assert len(updates) == 2 and all(j.message_id for j in updates)
        assert len(await rows(restarted, Posting)) == 2
    finally:
        await restarted.close()


async def test_a_worker_that_dies_mid_send_leaves_the_delivery_to_another_after_the_lease(container) -> None:
    clock = FakeClock()
    container.clock = clock
    await container.ingest([make_incoming(source="feed", external_id="1", text="nice day")])  # triage only

    class Dies:
        async def send(self, job: Job) -> Sent:
            raise KeyboardInterrupt  # stands in for the process being killed mid-send

    with pytest.raises(KeyboardInterrupt):
        await container.worker().__class__(container.uow, {"log": Dies()}).run_once()
    survivor = Recorder()
    worker = container.worker().__class__(container.uow, {"log": survivor}, lease=timedelta(seconds=60))
    assert await worker.run_once() == 0  # still leased by the dead worker
    clock.advance(seconds=61)
    assert await worker.run_once() == 1
    assert len(survivor.jobs) == 1


async def test_a_send_after_two_crashes_still_looks_back_to_the_first_post(container) -> None:
    """Worker 1 posts the card and is killed before recording it; worker 2 takes it over and is killed
    too (after finding and updating that copy); then a rate limit refuses worker 3. Whoever sends next
    must look for a copy from the FIRST attempt on: a window that starts at a later attempt misses the
    post and puts a second copy in the channel (seen in the kill -9 soak)."""
    clock = FakeClock()
    container.clock = clock
    await container.ingest([make_incoming(source="feed", external_id="1", text="nice day")])  # triage only
    seen: list[Job] = []

    class Killed:
        """Does its send, then the process dies before the outcome is recorded."""

        async def send(self, job: Job) -> Sent:
            seen.append(job)
            raise KeyboardInterrupt

    def worker(sender: object):
        return container.worker().__class__(container.uow, {"log": sender}, lease=timedelta(seconds=60))

    with pytest.raises(KeyboardInterrupt):
        await worker(Killed()).run_once()  # posted, never recorded
    first_attempt = (await rows(container, Delivery))[0].attempted_at
    assert first_attempt is not None and seen[0].attempted_at is None  # nothing to look for the first time
    clock.advance(seconds=61)
    with pytest.raises(KeyboardInterrupt):
        await worker(Killed()).run_once()  # looked, updated that copy, killed again
    assert seen[1].attempted_at == first_attempt
    clock.advance(seconds=61)

    class Limited:
        async def send(self, job: Job) -> Sent:
            seen.append(job)
            raise RetryLater(5)  # a 429: this attempt posted nothing

    assert await worker(Limited()).run_once() == 1
    assert seen[2].attempted_at == first_attempt  # from the first post on, not from the second worker's try
    (row,) = await rows(container, Delivery)
    assert row.status == "pending" and row.attempted_at == first_attempt, "the unknown first post still stands"
    clock.advance(seconds=6)
    last = Recorder()
    assert await worker(last).run_once() == 1
    assert [j.attempted_at for j in last.jobs] == [first_attempt]  # looks back to the first post, not to the 429


async def test_retry_after_is_honoured_and_errors_back_off_until_they_give_up(container) -> None:
    clock = FakeClock()
    container.clock = clock
    await container.ingest([make_incoming(source="feed", external_id="1", text="nice day")])
    platform = Recorder(failures=[RetryLater(30), ConnectionError("reset")])
    worker = container.worker().__class__(container.uow, {"log": platform}, base_delay=5)

    await worker.run_once()  # 429: wait 30 s
    (delivery,) = await rows(container, Delivery)
    assert delivery.status == "pending" and delivery.attempts == 0 and "retry after 30s" in delivery.last_error
    clock.advance(seconds=29)
    assert await worker.run_once() == 0
    clock.advance(seconds=1)
    await worker.run_once()  # connection reset: back off
    (delivery,) = await rows(container, Delivery)
    assert delivery.attempts == 1 and delivery.next_attempt_at > clock.now
    clock.advance(seconds=10)
    await worker.run_once()
    assert len(platform.jobs) == 1

    await container.ingest([make_incoming(source="feed", external_id="2", text="another day")])
    broken = Recorder(failures=[ConnectionError("down")] * 10)
    giving_up = container.worker().__class__(container.uow, {"log": broken}, max_attempts=3, base_delay=1)
    for _ in range(5):
        await giving_up.run_once()
        clock.advance(seconds=60)
    failed = [d for d in await rows(container, Delivery) if d.status == "failed"]
    assert len(failed) == 1 and failed[0].attempts == 3
    events = [e for e in await rows(container, Event) if e.kind == "delivery_failed"]
    assert len(events) == 1 and "down" in events[0].data["error"]


async def test_a_permanent_failure_is_recorded_at_once(container) -> None:
    await container.ingest([make_incoming(source="feed", external_id="1", text="nice day")])
    worker = container.worker().__class__(container.uow, {"log": Recorder(failures=[PermanentFailure("channel_not_found")])})
    await worker.run_once()
    (delivery,) = await rows(container, Delivery)
    assert delivery.status == "failed" and "channel_not_found" in delivery.last_error


async def test_several_changes_before_a_send_become_one_post_of_the_latest_state(container) -> None:
    report = await container.ingest([make_incoming(source="feed", external_id="1", text="nice day")])
    cid = report.new_ids[0]
    carol = c.Actor("cli", "carol", name="carol")
    await container.bus.handle(c.Claim(cid, alice))
    await container.bus.handle(c.Release(cid, alice))
    await container.bus.handle(c.Claim(cid, carol))
    platform = Recorder()
    await container.worker().__class__(container.uow, {"log": platform}).run_until_idle()
    assert len(platform.jobs) == 1
    assert (platform.jobs[0].card.status, platform.jobs[0].card.owner) == ("claimed", "carol")
    assert sorted(d.status for d in await rows(container, Delivery)) == ["coalesced"] * 3 + ["sent"]


SHARED_CHANNEL_CONFIG = """
[unsilo]
default_department = "support"

[departments.support]
channels = ["log:frontline"]

[departments.ops]
channels = ["log:frontline", "log:ops"]

[[rules]]
name = "both"
departments = ["support", "ops"]
any = ["parcel"]

[[rules]]
name = "ops"
departments = ["ops"]
any = ["courier"]
"""


@pytest.fixture
async def shared_channel(make_container, tmp_path):
    """A prepared container whose support and ops departments share the channel "frontline"."""
    from bot.bootstrap import load_config

    path = tmp_path / "shared.toml"
    path.write_text(SHARED_CHANNEL_CONFIG)
    container = make_container(config=load_config(path))
    await container.prepare()
    yield container
    await container.close()


async def test_a_channel_two_departments_share_gets_one_card_per_version(shared_channel) -> None:
    from bot.outbox import enqueue_card_syncs

    container = shared_channel
    cid = (await container.ingest([make_incoming(source="feed", external_id="1", text="parcel broken")])).new_ids[0]
    await container.bus.handle(c.Claim(cid, alice))
    deliveries = await rows(container, Delivery)
    async with container.uow() as uow:
        destinations = {d.id: d.channel_id for d in await uow.session.exec(select(Destination))}
    by_version: dict[int, list[str]] = {}
    for d in deliveries:
        assert d.key == f"card:{cid}:{d.destination_id}:v{d.payload['version']}"
        assert (d.kind, d.status, d.attempts, d.platform) == ("card", "pending", 0, "log")
        by_version.setdefault(d.payload["version"], []).append(destinations[d.destination_id])
    assert {v: sorted(channels) for v, channels in by_version.items()} == {
        1: ["frontline", "ops"],
        2: ["frontline", "ops"],
    }  # the shared channel once per version

    async with container.uow() as uow:  # asking again for the same version adds nothing
        assert await enqueue_card_syncs(uow, [cid, cid]) == 0
        await uow.commit()
    assert len(await rows(container, Delivery)) == 4
    async with container.uow() as uow:  # a new version: one per channel again, counted
        await uow.conversations.touch(cid, at=uow.now())
        assert await enqueue_card_syncs(uow, [cid]) == 2
        await uow.commit()
    assert len(await rows(container, Delivery)) == 6


class Held:
    """A platform whose sends wait for `gate`: a post still in flight while the test acts."""

    def __init__(self, posted: list[Job]) -> None:
        self.posted = posted
        self.started, self.gate = asyncio.Event(), asyncio.Event()

    async def send(self, job: Job) -> Sent:
        self.started.set()
        await self.gate.wait()
        self.posted.append(job)
        return Sent(message_id=job.message_id or "m1")


class Appends:
    """A platform that answers at once, recording into a shared list."""

    def __init__(self, posted: list[Job]) -> None:
        self.posted = posted

    async def send(self, job: Job) -> Sent:
        self.posted.append(job)
        return Sent(message_id=job.message_id or f"m{len(self.posted)}")


@pytest.fixture
async def replicas(make_container):
    """Two prepared containers on the same store: two replicas' worth."""
    first, second = make_container(), make_container()
    await first.prepare()
    await second.prepare()
    yield first, second
    await first.close()
    await second.close()


async def test_two_workers_never_post_the_same_new_card_twice(replicas) -> None:
    """Replicas: while one worker is posting a card, another must not post the same card again."""
    first, second = replicas
    cid = (await first.ingest([make_incoming(source="feed", external_id="1", text="nice day")])).new_ids[0]
    posted: list[Job] = []
    held = Held(posted)
    slow = asyncio.create_task(first.worker().__class__(first.uow, {"log": held}).run_once())
    await asyncio.wait_for(held.started.wait(), 10)
    await second.bus.handle(c.Claim(cid, alice))  # a newer version of the same card is due now
    other = second.worker().__class__(second.uow, {"log": Appends(posted)})
    await other.run_once()
    assert posted == []  # the card being posted elsewhere is left alone
    held.gate.set()
    await slow
    await other.run_until_idle()
    assert [j.message_id for j in posted] == [None, "m1"]  # one post, then an update to it
    assert posted[-1].card.status == "claimed"
    assert len(await rows(first, Posting)) == 1


async def test_a_rate_limit_on_one_replica_does_not_free_a_card_another_is_sending(replicas) -> None:
    """Replica B's 429 defers the channel's queue, but not the card replica A is posting right now."""
    first, second = replicas
    sending = (await first.ingest([make_incoming(source="feed", external_id="1", text="nice day")])).new_ids[0]
    posted: list[Job] = []
    held = Held(posted)
    slow = asyncio.create_task(first.worker().__class__(first.uow, {"log": held}, batch=1).run_once())
    await asyncio.wait_for(held.started.wait(), 10)
    await second.ingest([make_incoming(source="feed", external_id="2", text="nice evening")])  # same channel
    await first.bus.handle(c.Claim(sending, alice))  # a newer version of the card being posted
    limited = second.worker().__class__(second.uow, {"log": Recorder(failures=[RetryLater(30)])}, batch=1)
    await limited.run_once()  # the other conversation's card: 429, the channel is deferred 30 s
    (held_row,) = [d for d in await rows(first, Delivery) if d.conversation_id == sending and d.payload["version"] == 1]
    assert held_row.locked_until is not None, "the lease of the card being sent is kept"
    fast = Recorder()
    await second.worker().__class__(second.uow, {"log": fast}).run_once()
    assert fast.jobs == []  # nothing of that card is sent by another replica meanwhile
    held.gate.set()
    await slow
    assert [j.message_id for j in posted] == [None]


async def test_a_card_already_in_a_channel_is_updated_when_another_department_of_that_channel_joins(shared_channel) -> None:
    container = shared_channel
    cid = (await container.ingest([make_incoming(source="feed", external_id="1", text="courier lost it")])).new_ids[0]
    platform = Recorder()
    worker = container.worker().__class__(container.uow, {"log": platform})
    await worker.run_until_idle()
    assert sorted(j.channel_id for j in platform.jobs) == ["frontline", "ops"]  # via ops' destinations
    async with container.uow() as uow:  # support (whose frontline destination is older) joins
        support = next(d for d in await uow.departments.all() if d.name == "support")
        await uow.conversations.link_departments([(cid, support.id)])
        await uow.conversations.touch(cid, at=uow.now())
        uow.mark_changed(cid)
        await commit_with_deliveries(uow)
    await worker.run_until_idle()
    frontline = [j for j in platform.jobs if j.channel_id == "frontline"]
    assert [j.message_id for j in frontline] == [None, "m1"]  # updated in place, not posted again
    assert len(await rows(container, Posting)) == 2


def test_notice_payloads_round_trip_and_old_ones_without_names_still_read() -> None:
    notice = Notice(title="t", lines=("a",), mentions=(("teams:aad-1", "Carol"),), links=(("x", "https://x.example"),))
    assert notice_of(notice_payload(notice)) == notice
    old = {"notice": {"title": "t", "lines": [], "mentions": ["slack:U1", "teams:aad-1"], "links": []}}
    assert notice_of(old).mentions == (("slack:U1", ""), ("teams:aad-1", ""))


class Slow:
    """A platform that takes `seconds` per send (Slack answering slowly), recording into a shared list."""

    def __init__(self, posted: list[Job], seconds: float) -> None:
        self.posted, self.seconds = posted, seconds

    async def send(self, job: Job) -> Sent:
        await asyncio.sleep(self.seconds)
        self.posted.append(job)
        return Sent(message_id=job.message_id or f"m{job.delivery_id}")


async def test_two_healthy_replicas_post_each_card_once_when_a_batch_outlasts_its_lease(replicas) -> None:
    """A batch sent one by one outlasts its lease: the tail is renewed, never sent by a second replica."""
    first, second = replicas
    await first.ingest([make_incoming(source="feed", external_id=str(i), text=f"item {i}") for i in range(12)])
    posted: list[Job] = []
    lease = timedelta(seconds=0.5)  # 12 sends of 0.15 s take 1.8 s: over three leases
    a = DeliveryWorker(first.uow, {"log": Slow(posted, 0.15)}, lease=lease)
    b = DeliveryWorker(second.uow, {"log": Slow(posted, 0.15)}, lease=lease)

    async def keep_polling(worker: DeliveryWorker) -> None:
        for _ in range(40):
            await worker.run_once()
            await asyncio.sleep(0.1)

    await asyncio.gather(a.run_once(), keep_polling(b))
    cards = [j.card.id for j in posted if j.card is not None and j.message_id is None]
    assert sorted(cards) == sorted(set(cards)) and len(cards) == 12  # every card posted, none twice
    assert len(await rows(first, Posting)) == 12


async def test_a_worker_whose_lease_was_taken_over_does_not_send(replicas) -> None:
    first, second = replicas
    await first.ingest([make_incoming(source="feed", external_id="1", text="nice day")])
    posted: list[Job] = []
    late = DeliveryWorker(first.uow, {"log": Appends(posted)}, lease=timedelta(seconds=60))
    async with first.uow() as uow:
        leased = await uow.deliveries.lease_due(
            platforms=["log"], now=uow.now(), lease=timedelta(seconds=-1), limit=10, holder=late.holder
        )  # leased, then expired (a stall)
        await uow.commit()
    taker = DeliveryWorker(second.uow, {"log": Appends(posted)})
    async with second.uow() as uow:
        taken = await uow.deliveries.lease_due(
            platforms=["log"], now=uow.now(), lease=timedelta(seconds=60), limit=10, holder=taker.holder
        )
        await uow.commit()
    assert [d.id for d in taken] == [d.id for d in leased]
    assert await late._deliver(leased[0]) == "skipped" and posted == []  # the lease is the other worker's
    assert await taker._deliver(taken[0]) == "sent" and len(posted) == 1
