"""Replies reach the customer where the source allows it; sensitive ones only after approval.

A loopback HTTP receiver stands in for a listening tool's reply endpoint: it checks the
signature like a real receiver would, can fail the first tries, and records every request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from aiohttp import web

from adapters.slack.render import card_message
from adapters.sources.webhooks import sign
from adapters.teams.render import card as teams_card
from bot import commands as c
from bot.bootstrap import Container
from bot.domain import Forbidden, IllegalTransition, NotFound
from bot.ingest import make_incoming
from bot.terminal import card_lines
from tests.conftest import FakeClock
from tests.standins import serve
from tests.test_teams import card_text

SECRET = "s3cret-for-replies"
ALICE = c.Actor("slack", "alice", "Alice")  # support agent, writes the replies
BOB = c.Actor("slack", "bob", "Bob")  # colleague, manages nothing
DANA = c.Actor("slack", "dana", "Dana")  # manager (approver) of legal


@dataclass
class Receiver:
    """A reply endpoint: 500 for the first `fail_first` requests, then 200; checks signatures."""

    fail_first: int = 0
    requests: list[dict[str, object]] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        timestamp = request.headers.get("X-Unsilo-Timestamp", "")
        valid = request.headers.get("X-Unsilo-Signature") == sign(SECRET, timestamp, body)
        self.requests.append({"body": json.loads(body), "valid": valid, "key": request.headers.get("X-Unsilo-Delivery")})
        if not valid:
            return web.json_response({"error": "bad signature"}, status=401)
        if len(self.requests) <= self.fail_first:
            return web.json_response({"error": "try later"}, status=500)
        return web.json_response({"ok": True})

    @property
    def accepted(self) -> list[dict[str, object]]:
        return self.requests[self.fail_first :]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    stand_in = Receiver()
    app = web.Application()
    app.router.add_post("/replies", stand_in.handle)
    runner, url = await serve(app)
    stand_in.url = f"{url}/replies"
    yield stand_in
    await runner.cleanup()


@pytest.fixture
async def store(make_container: Callable[..., Container]) -> AsyncIterator[tuple[Container, FakeClock]]:
    clock = FakeClock()
    container = make_container(clock=clock)
    await container.prepare()
    async with container.uow() as uow:
        source = await uow.sources.ensure("listening", kind="webhook")
        source.secret = SECRET
        await uow.commit()
    yield container, clock
    await container.close()


async def _conversation(container: Container, text: str, *, reply_url: str = "", source: str = "listening", url: str = "") -> int:
    url = url or f"https://forum.example/t/{abs(hash(text)) % 10**8}"  # a post of its own: its own link (bot/voices.py)
    item = make_incoming(source=source, external_id=text[:20], text=text, url=url, reply_url=reply_url)
    return (await container.ingest([item])).new_ids[0]


async def _deliver(container: Container, clock: FakeClock, *, rounds: int = 12) -> None:
    """Run the outbox, moving the clock past every backoff, until nothing more is due."""
    worker = container.worker(base_delay=2.0, max_attempts=5)
    for _ in range(rounds):
        await worker.run_until_idle()
        clock.advance(minutes=20)


async def _reply_status(container: Container, conversation_id: int) -> str:
    async with container.uow() as uow:
        reply = await uow.replies.latest(conversation_id)
        return reply.status if reply else ""


async def _events(container: Container, conversation_id: int) -> list[str]:
    async with container.uow() as uow:
        return [e.kind for e in await uow.events.for_conversation(conversation_id)]


async def test_a_sensitive_reply_waits_for_an_approver_and_arrives_exactly_once(
    store: tuple[Container, FakeClock], receiver: Receiver
) -> None:
    container, clock = store
    receiver.fail_first = 2
    cid = await _conversation(container, "My lawyer will sue you over this", reply_url=receiver.url)
    await container.bus.handle(c.Claim(cid, ALICE))
    done = await container.bus.handle(c.ReplyToCustomer(cid, ALICE, "We are sorry; our legal team will call you."))
    assert done is not None and "waiting for approval" in done.text
    assert done.card is not None and done.card.reply_status == "pending_approval"
    assert [b.verb for b in done.card.buttons][:2] == ["approve", "reject"]

    await _deliver(container, clock)
    assert receiver.requests == [], "nothing may leave before approval"

    with pytest.raises(Forbidden, match="another approver"):
        await container.bus.handle(c.ApproveReply(cid, c.Actor("slack", "alice", "Alice")))
    with pytest.raises(Forbidden, match="only an approver"):
        await container.bus.handle(c.ApproveReply(cid, BOB))
    assert (await container.bus.handle(c.ShowApprovals(DANA))).cards[0].id == cid  # type: ignore[union-attr]

    approved = await container.bus.handle(c.ApproveReply(cid, DANA))
    assert approved is not None and "on its way" in approved.text
    with pytest.raises(NotFound):
        await container.bus.handle(c.ApproveReply(cid, DANA))  # a second click finds nothing left to approve

    await _deliver(container, clock)
    assert len(receiver.requests) == 3 and all(r["valid"] for r in receiver.requests)
    assert len(receiver.accepted) == 1, "the receiver failed twice, then got it exactly once"
    assert {r["key"] for r in receiver.requests} == {receiver.requests[0]["key"]}  # same key on every retry
    body = receiver.accepted[0]["body"]
    assert body["text"] == "We are sorry; our legal team will call you."  # type: ignore[index]
    assert body["author"] == {"name": "Alice"}  # type: ignore[index]
    assert await _reply_status(container, cid) == "sent"
    events = await _events(container, cid)
    assert events.count("approval_requested") == 1 and events.count("reply_approved") == 1
    assert events.count("reply_sent") == 1


async def test_a_rejected_reply_is_never_sent(store: tuple[Container, FakeClock], receiver: Receiver) -> None:
    container, clock = store
    cid = await _conversation(container, "I will sue, my lawyer says", reply_url=receiver.url)
    await container.bus.handle(c.Claim(cid, ALICE))
    await container.bus.handle(c.ReplyToCustomer(cid, ALICE, "That's your problem."))
    with pytest.raises(IllegalTransition, match="waiting for approval"):
        await container.bus.handle(c.ReplyToCustomer(cid, ALICE, "second thoughts"))
    rejected = await container.bus.handle(c.RejectReply(cid, DANA, "Tone: never write this to a customer"))
    assert rejected is not None and rejected.card is not None
    said = "Reply rejected by Dana: Tone: never write this to a customer"
    assert rejected.card.reply_note == said
    shown = (await container.bus.handle(c.Show(cid, ALICE))).card  # read afresh: the rejecter named from the store
    assert shown is not None and shown.reply_note == said
    assert said in json.dumps(card_message(shown)["blocks"], ensure_ascii=False)
    assert said in card_text(teams_card(shown, outcomes=()))
    assert any(said in line for line in card_lines(shown))
    await _deliver(container, clock)
    assert receiver.requests == []
    assert await _reply_status(container, cid) == "rejected"
    assert "reply_rejected" in await _events(container, cid)
    with pytest.raises(NotFound):
        await container.bus.handle(c.ApproveReply(cid, DANA))  # a rejected reply can't be approved later


async def test_an_ordinary_reply_goes_out_at_once(store: tuple[Container, FakeClock], receiver: Receiver) -> None:
    container, clock = store
    cid = await _conversation(container, "my parcel never arrived", reply_url=receiver.url)
    await container.bus.handle(c.Claim(cid, ALICE))
    done = await container.bus.handle(c.ReplyToCustomer(cid, ALICE, "A new one is on its way."))
    assert done is not None and "on its way to the customer" in done.text
    await _deliver(container, clock)
    assert len(receiver.accepted) == 1 and await _reply_status(container, cid) == "sent"


async def test_a_reply_that_never_gets_through_is_shown_and_told_to_its_author(
    store: tuple[Container, FakeClock], receiver: Receiver
) -> None:
    container, clock = store
    receiver.fail_first = 1000
    cid = await _conversation(container, "my parcel is lost", reply_url=receiver.url)
    await container.bus.handle(c.Claim(cid, ALICE))
    await container.bus.handle(c.ReplyToCustomer(cid, ALICE, "Sorry!"))
    await _deliver(container, clock)
    assert len(receiver.requests) == 5, "bounded: max_attempts tries, then it stops"
    assert await _reply_status(container, cid) == "failed"
    assert "reply_failed" in await _events(container, cid)
    shown = await container.bus.handle(c.Show(cid, ALICE))
    assert shown is not None and shown.card is not None
    assert shown.card.reply_note.startswith("Reply could NOT be delivered: ")
    log = container.senders["log"]
    notices = [job for job in log.sent if job.kind == "notice"]  # type: ignore[attr-defined]
    assert len(notices) == 1 and ["slack:alice", "Alice"] in notices[0].payload["notice"]["mentions"]
    assert "could not be delivered" in notices[0].payload["notice"]["title"]


async def test_a_read_only_source_gets_the_reply_recorded_with_where_to_post_it(
    store: tuple[Container, FakeClock], receiver: Receiver
) -> None:
    container, clock = store
    cid = await _conversation(container, "broken on arrival, want a refund", source="reviews", url="https://reviews.example/r/9")
    await container.bus.handle(c.Claim(cid, ALICE))
    done = await container.bus.handle(c.ReplyToCustomer(cid, ALICE, "Refund issued."))
    assert done is not None and done.card is not None
    assert done.card.reply_note == (
        f"Reply recorded — post it at https://reviews.example/r/9, then mark it as posted (Mark as posted, or `posted {cid}`):"
        "\nRefund issued."
    )  # the text the person must paste, whole
    assert "posted" in [b.verb for b in done.card.buttons]
    assert done.card.status == "claimed", "recorded is not answered: the customer has seen nothing yet"
    await _deliver(container, clock)
    assert receiver.requests == []
    with pytest.raises(Forbidden):
        await container.bus.handle(c.MarkPosted(cid, BOB))
    posted = await container.bus.handle(c.MarkPosted(cid, ALICE))
    assert posted is not None and posted.card is not None and posted.card.reply_status == "posted"
    assert posted.card.status == "replied"
    assert "posted" not in [b.verb for b in posted.card.buttons]
    assert "reply_posted" in await _events(container, cid)


async def test_clock_is_what_moves_the_retries(store: tuple[Container, FakeClock], receiver: Receiver) -> None:
    """Without time passing, a failed reply is not hammered: one try, then it waits its backoff."""
    container, clock = store
    receiver.fail_first = 1
    cid = await _conversation(container, "parcel late", reply_url=receiver.url)
    await container.bus.handle(c.Claim(cid, ALICE))
    await container.bus.handle(c.ReplyToCustomer(cid, ALICE, "On it."))
    await container.worker(base_delay=60.0).run_until_idle()
    assert len(receiver.requests) == 1 and await _reply_status(container, cid) == "sending"
    clock.advance(seconds=timedelta(minutes=5).total_seconds())
    await container.worker(base_delay=60.0).run_until_idle()
    assert len(receiver.accepted) == 1 and await _reply_status(container, cid) == "sent"


async def test_a_reply_command_delivered_twice_reaches_the_customer_once(
    store: tuple[Container, FakeClock], receiver: Receiver
) -> None:
    """A user retrying after a timeout, the Bot Connector redelivering, a replayed request: one reply."""
    from bot.domain import AlreadyDone

    container, clock = store
    cid = await _conversation(container, "my refund never came", reply_url=receiver.url)
    await container.bus.handle(c.Claim(cid, ALICE))
    await container.bus.handle(c.ReplyToCustomer(cid, ALICE, "Refund issued today."))
    with pytest.raises(AlreadyDone, match="already replied this"):
        await container.bus.handle(c.ReplyToCustomer(cid, ALICE, "  Refund issued today.  "))
    # At the same moment, from two replicas: one wins, the other is refused as the same reply.
    other = await _conversation(container, "where is my parcel", reply_url=receiver.url)
    await container.bus.handle(c.Claim(other, ALICE))
    outcomes = await asyncio.gather(
        *(container.bus.handle(c.ReplyToCustomer(other, ALICE, "It ships Monday.")) for _ in range(5)), return_exceptions=True
    )
    assert sum(not isinstance(o, Exception) for o in outcomes) == 1
    assert all(isinstance(o, AlreadyDone) for o in outcomes if isinstance(o, Exception)), outcomes
    await _deliver(container, clock)
    texts = sorted(r["body"]["text"] for r in receiver.accepted)
    assert texts == ["It ships Monday.", "Refund issued today."]  # each reached the customer once
    # A different text is a new reply.
    assert await container.bus.handle(c.ReplyToCustomer(cid, ALICE, "And a voucher, sorry!")) is not None
