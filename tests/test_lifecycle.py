"""A conversation's life through the bus, on SQLite and on PostgreSQL: ingest, claim, note, reply, resolve."""

from __future__ import annotations

import pytest
from sqlmodel import func, select

from bot import codec
from bot import commands as c
from bot.bootstrap import Container
from bot.domain import AlreadyClaimed, DomainError, Forbidden, IllegalTransition, InvalidInput, NotFound
from bot.ingest import make_incoming
from storage.models import Conversation, Delivery, Event, Note, Reply

alice = c.Actor("slack", "U0ALICE", name="alice")
bob = c.Actor("teams", "aad-bob", name="bob")
carol = c.Actor("cli", "carol", name="carol")  # manager of support and triage in the test config


async def ingest_one(container: Container, text: str, *, external_id: str = "post-1", title: str = "") -> int:
    item = make_incoming(
        source="reviews",
        external_id=external_id,
        text=text,
        title=title,
        author_name="Priya N.",
        url=f"https://reviews.example.com/r/{external_id}",
    )
    report = await container.ingest([item])
    assert report.new_ids, "expected a new conversation"
    return report.new_ids[0]


async def count(container: Container, model: type, **where: object) -> int:
    async with container.uow() as uow:
        stmt = select(func.count()).select_from(model)
        for key, value in where.items():
            stmt = stmt.where(getattr(model, key) == value)
        return (await uow.session.exec(stmt)).one()


async def snapshot(container: Container) -> dict[str, int]:
    """Row counts of every table a refused action could touch."""
    return {m.__name__: await count(container, m) for m in (Conversation, Event, Note, Reply, Delivery)}


async def test_the_whole_story_from_ingest_to_resolution(container: Container) -> None:
    cid = await ingest_one(container, "My parcel never arrived and I want a refund")
    bus = container.bus

    claimed = await bus.handle(c.Claim(cid, alice))
    assert claimed.card and claimed.card.status == "claimed" and claimed.card.owner == "alice"
    assert [b.verb for b in claimed.card.buttons][:2] == ["release", "reply"]

    await bus.handle(c.AddNote(cid, bob, "Courier confirms it was lost"))
    replied = await bus.handle(c.ReplyToCustomer(cid, alice, "Sorry! A replacement ships today."))
    assert replied.card and replied.card.status == "claimed"  # recorded for a read-only source: not posted yet
    posted = await bus.handle(c.MarkPosted(cid, alice))
    assert posted.card and posted.card.status == "replied"
    resolved = await bus.handle(c.Resolve(cid, alice, "answered", "replacement sent"))
    assert resolved.card and resolved.card.status == "resolved" and resolved.card.outcome == "answered"

    shown = await bus.handle(c.Show(cid, carol))
    assert [(h.actor, h.kind) for h in shown.history] == [
        ("unsilo", "ingested"),
        ("alice", "claimed"),
        ("bob", "noted"),
        ("alice", "replied"),
        ("alice", "marked the reply as posted"),
        ("alice", "resolved"),
    ]
    assert "Courier confirms it was lost" in shown.history[2].detail
    assert shown.card and set(shown.card.departments) == {"ops", "support"}

    # The store is the company's memory: the note and the reply are searchable.
    assert [card.id for card in (await bus.handle(c.Search(carol, ("courier", "lost")))).cards] == [cid]
    assert [card.id for card in (await bus.handle(c.Search(carol, ("replacement",)))).cards] == [cid]
    assert (await bus.handle(c.Search(carol, ("courier", "unicorn")))).cards == ()


async def test_ingesting_the_same_item_twice_makes_one_conversation(container: Container) -> None:
    item = make_incoming(source="reviews", external_id="r-9", text="broken on arrival")
    first = await container.ingest([item, item])
    second = await container.ingest([item])
    assert len(first.new_ids) == 1 and first.duplicates == 1
    assert second.new_ids == [] and second.duplicates == 1
    assert await count(container, Conversation) == 1


async def test_routing_sends_one_item_to_several_departments_and_unmatched_to_triage(container: Container) -> None:
    legal_and_ops = await ingest_one(container, "The courier broke my door, my lawyer will call", external_id="a")
    nothing = await ingest_one(container, "Nice weather today", external_id="b")
    async with container.uow() as uow:
        assert [d.name for d in await uow.conversations.departments_of(legal_and_ops)] == ["legal", "ops"]
        assert [d.name for d in await uow.conversations.departments_of(nothing)] == ["triage"]
        first = await uow.conversations.get(legal_and_ops)
    assert first is not None and first.priority == "high" and first.sensitive
    assert first.tags == ["legal", "delivery"]
    assert "legal: 'lawyer'" in first.routing_reason


@pytest.mark.parametrize(
    "setup, action, error, message",
    [
        ([], lambda cid: c.ReplyToCustomer(cid, alice, "hi"), IllegalTransition, "not claimed yet; claim it first"),
        ([], lambda cid: c.Release(cid, alice), IllegalTransition, "is open; it can't be released"),
        (["claim"], lambda cid: c.Claim(cid, bob), AlreadyClaimed, "is already claimed by alice"),
        (["claim"], lambda cid: c.Resolve(cid, bob, "answered"), Forbidden, "only #1's owner (alice) or a manager"),
        (["claim"], lambda cid: c.Resolve(cid, alice, "maybe"), InvalidInput, "unknown outcome 'maybe'"),
        (["claim"], lambda cid: c.Dismiss(cid, alice, "dup"), Forbidden, "only a manager of"),
        (["claim"], lambda cid: c.AddNote(cid, bob, "   "), InvalidInput, "A note can't be empty"),
        (["claim", "resolve"], lambda cid: c.Claim(cid, bob), IllegalTransition, "is resolved; it can't be claimed any more"),
        (["claim", "resolve"], lambda cid: c.Dismiss(cid, carol, "dup"), IllegalTransition, "is resolved; it can't be dismissed"),
        (["dismiss"], lambda cid: c.Resolve(cid, carol, "answered"), IllegalTransition, "is dismissed; it can't be resolved"),
        (["dismiss"], lambda cid: c.ReplyToCustomer(cid, carol, "hello"), IllegalTransition, "is dismissed"),
        ([], lambda cid: c.Claim(cid + 100, alice), NotFound, "doesn't exist"),
    ],
)
async def test_every_illegal_action_is_refused_clearly_and_changes_nothing(
    container: Container, setup: list[str], action, error: type[DomainError], message: str
) -> None:
    cid = await ingest_one(container, "please help, it is broken")
    steps = {
        "claim": c.Claim(cid, alice),
        "resolve": c.Resolve(cid, alice, "fixed"),
        "dismiss": c.Dismiss(cid, carol, "spam bot"),
    }
    for step in setup:
        await container.bus.handle(steps[step])
    before = await snapshot(container)
    async with container.uow() as uow:
        version_before = (await uow.conversations.get(cid)).version  # type: ignore[union-attr]

    with pytest.raises(error) as refused:
        await container.bus.handle(action(cid))

    assert message in refused.value.message
    assert await snapshot(container) == before
    async with container.uow() as uow:
        assert (await uow.conversations.get(cid)).version == version_before  # type: ignore[union-attr]


async def test_a_manager_may_act_for_the_owner_and_reassign(container: Container) -> None:
    cid = await ingest_one(container, "please help")  # support: managed by carol
    await container.bus.handle(c.Claim(cid, alice))
    moved = await container.bus.handle(c.Reassign(cid, carol, to=bob))
    assert moved.card and moved.card.owner == "bob"
    with pytest.raises(Forbidden):
        await container.bus.handle(c.Resolve(cid, alice, "answered"))  # alice no longer owns it
    await container.bus.handle(c.Resolve(cid, carol, "answered"))


async def test_replying_unclaimed_claims_it_when_the_config_allows(make_container, test_config) -> None:
    from dataclasses import replace

    container = make_container(config=replace(test_config, require_claim_to_reply=False))
    await container.prepare()
    try:
        cid = await ingest_one(container, "help please")
        result = await container.bus.handle(c.ReplyToCustomer(cid, bob, "On it!"))
        assert result.card and result.card.status == "claimed" and result.card.owner == "bob"  # recorded, not posted
    finally:
        await container.close()


async def test_queue_lists_active_work_per_department_and_mine(container: Container) -> None:
    first = await ingest_one(container, "refund please", external_id="1")
    second = await ingest_one(container, "parcel lost", external_id="2")
    done = await ingest_one(container, "broken kettle", external_id="3")
    await container.bus.handle(c.Claim(second, alice))
    await container.bus.handle(c.Claim(done, alice))
    await container.bus.handle(c.Resolve(done, alice, "fixed"))

    support = await container.bus.handle(c.ShowQueue(carol, department="support"))
    assert [card.id for card in support.cards] == [first]
    mine = await container.bus.handle(c.ShowQueue(alice, mine=True))
    assert [card.id for card in mine.cards] == [second]
    everything = await container.bus.handle(c.ShowQueue(carol))
    assert everything.counts == {"legal": 0, "ops": 1, "support": 1, "triage": 0}
    with pytest.raises(InvalidInput, match="no department 'nope'"):
        await container.bus.handle(c.ShowQueue(carol, department="nope"))


async def test_a_report_from_chat_is_credited_to_the_employee(container: Container) -> None:
    spotted = c.Report(bob, "Customer on the forum says our courier was rude", link="https://forum.example.com/t/1")
    result = await container.bus.handle(spotted)
    assert result.card is not None and result.card.source == "teams-report"
    again = await container.bus.handle(spotted)
    assert again.text == f"That post is already #{result.card.id}"
    shown = await container.bus.handle(c.Show(result.card.id, carol))
    assert (shown.history[0].actor, shown.history[0].kind) == ("bob", "reported")
    with pytest.raises(InvalidInput, match="not a web link"):
        await container.bus.handle(c.Report(bob, "text", link="javascript:alert(1)"))


async def test_one_person_across_platforms_is_linked_by_email(container: Container) -> None:
    cid = await ingest_one(container, "help")
    await container.bus.handle(c.Claim(cid, c.Actor("slack", "U1", name="Ann", email="ann@example.com")))
    # The same person on Teams may act as the owner.
    result = await container.bus.handle(
        c.ReplyToCustomer(cid, c.Actor("teams", "aad-1", name="Ann", email="ann@example.com"), "hi")
    )
    assert result.card and result.card.owner == "Ann"


@pytest.mark.parametrize("text", ["#99999999999999999999999", "#2147483648", "#²", "٣", "#0", "-1", "", "#"])
async def test_every_surface_refuses_an_impossible_conversation_id_clearly(container, text) -> None:
    """Unicode digits and ids beyond the store's INTEGER are refused with a reason, never a traceback."""
    from bot.domain import InvalidInput
    from bot.textcommands import parse

    with pytest.raises(InvalidInput, match="conversation id"):
        parse(f"claim {text}" if text else "claim", carol)
    with pytest.raises(InvalidInput):
        codec.decode({"cmd": "claim", "id": text})
    biggest = 2**31 - 1
    with pytest.raises(NotFound):  # the largest possible id is looked up (and not found), on both stores
        await container.bus.handle(c.Show(biggest, carol))


async def test_long_distinct_item_ids_never_collide_and_hostile_characters_are_cleaned(container) -> None:
    """Feed ids longer than the column (tracking URLs) used to be cut to 512 characters: 9 items became 3."""
    base = "https://tracker.example.com/click?u=" + "x" * 600
    items = [make_incoming(source="feed", external_id=f"{base}&item={i}", text=f"item {i}") for i in range(9)]
    report = await container.ingest(items)
    assert len(report.new_ids) == 9 and report.duplicates == 0
    again = await container.ingest(items)
    assert again.new_ids == [] and again.duplicates == 9
    hostile = make_incoming(
        source="hooks",
        external_id="a\x00b\ud800c",
        text="hello",
        author_handle="@m\x1b[31maya",
        channel="tw\x00itter",
        url="https://x.example/\x00p",
    )
    assert (hostile.external_id, hostile.author_handle, hostile.channel) == ("abc", "@m[31maya", "twitter")
    stored = await container.ingest([hostile])
    assert len(stored.new_ids) == 1


async def test_a_search_is_bounded_with_a_clear_message_and_repeated_words_count_once(container) -> None:
    """2,000 words froze the loop for seconds (SQLite refused ~1,000: "Expression tree is too large")."""
    cid = (await container.ingest([make_incoming(source="reviews", external_id="s1", text="my Refund never came")])).new_ids[0]
    with pytest.raises(InvalidInput, match="at most 500 characters"):
        await container.bus.handle(c.Search(carol, tuple(f"w{i}" for i in range(2000))))
    with pytest.raises(InvalidInput, match="at most 8 words"):
        await container.bus.handle(c.Search(carol, tuple(f"w{i}" for i in range(9))))
    with pytest.raises(InvalidInput, match="at most 64 characters"):
        await container.bus.handle(c.Search(carol, ("x" * 65,)))
    found = await container.bus.handle(c.Search(carol, ("refund",) * 50))  # one word, said 50 times
    assert [card.id for card in found.cards] == [cid]


async def test_what_people_type_is_stored_without_nul_or_lone_surrogates(container: Container) -> None:
    """A NUL (PostgreSQL refuses it in text and in JSON) or a lone surrogate (no encoding writes it), as a
    chat client may send them, is left out; the rest is stored as typed."""
    cid = await ingest_one(container, "refund please")
    await container.bus.handle(c.Claim(cid, alice))
    await container.bus.handle(c.AddNote(cid, alice, "called\x00 her \ud800back"))
    await container.bus.handle(c.ReplyToCustomer(cid, alice, "Dear\x00 customer \udfff"))
    resolved = await container.bus.handle(c.Resolve(cid, alice, "answered", "sent\x00 a \ud83dnew one"))
    assert resolved.card is not None and resolved.card.status == "resolved"
    async with container.uow() as uow:
        notes = await uow.notes.for_conversation(cid)
        replies = await uow.replies.for_conversation(cid)
        events = await uow.events.for_conversation(cid)
    assert [n.text for n in notes] == ["called her back"]
    assert [r.text for r in replies] == ["Dear customer"]
    assert next(e.data for e in events if e.kind == "resolved")["text"] == "sent a new one"
