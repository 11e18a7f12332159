"""A customer's history (issue 15, point 3): a card says "2 earlier conversations from this author" (same
handle or same profile URL, whatever the case, from any source; never by name alone) with their #ids and
status, on every platform, in `show` and in its JSON; it costs a click no extra statement, and an erased
conversation is nobody's history."""

from __future__ import annotations

from bot import commands as c
from bot import output, terminal
from bot.bootstrap import Container
from bot.ingest import make_incoming
from tests.test_click_cost import statements

ALICE = c.Actor("slack", "alice", name="alice")


async def _ingest(container: Container, external_id: str, *, source: str = "forum", **author: str) -> int:
    item = make_incoming(source=source, external_id=external_id, text=f"my parcel {external_id} is late", **author)
    return (await container.ingest([item])).new_ids[0]


async def test_a_card_names_the_authors_earlier_conversations_across_sources(container: Container) -> None:
    first = await _ingest(container, "1", author_name="Tom W.", author_handle="@TomW")
    second = await _ingest(container, "2", source="reviews", author_name="Tom", author_url="https://Social.example/tomw")
    namesake = await _ingest(container, "3", author_name="Tom W.", author_handle="@other-tom")  # same name: not him
    third = await _ingest(
        container, "4", source="mail", author_name="T. W.", author_handle="@tomw", author_url="https://social.example/TomW"
    )
    await container.bus.handle(c.Claim(first, ALICE))
    await container.bus.handle(c.Resolve(first, ALICE, "answered"))

    shown = (await container.bus.handle(c.Show(third, ALICE))).card
    assert shown is not None
    assert (shown.earlier_count, shown.earlier) == (2, ((second, "open"), (first, "resolved")))
    text = "\n".join(terminal.card_lines(shown))
    assert f"2 earlier conversations from this author: #{second} open, #{first} resolved" in text, text
    assert f"#{namesake}" not in text
    document = output.card_json(shown)
    assert document["earlier"] == [{"id": second, "status": "open"}, {"id": first, "status": "resolved"}]
    assert document["earlier_count"] == 2
    listed = (await container.bus.handle(c.ShowQueue(ALICE))).cards
    assert {output.card_json(card)["earlier_count"] for card in listed} == {None}, "a list does not read it: null, not 0"

    first_card = (await container.bus.handle(c.Show(first, ALICE))).card
    assert first_card is not None and first_card.earlier_count == 0
    assert not any("earlier" in fact.label for fact in first_card.facts), "nothing before the first one"
    namesake_card = (await container.bus.handle(c.Show(namesake, ALICE))).card
    assert namesake_card is not None and namesake_card.earlier_count == 0


async def test_the_history_costs_a_claim_no_statement_and_an_erased_conversation_is_nobodys(container: Container) -> None:
    warm_up, alone = [await _ingest(container, name, author_name="Ann") for name in ("w", "a")]
    await container.bus.handle(c.Claim(warm_up, ALICE))  # alice's first sight: she is looked up once
    earlier = [await _ingest(container, f"t{n}", author_handle="@tom") for n in range(3)]
    latest = await _ingest(container, "t9", author_handle="@TOM")
    with statements(container) as plain:
        await container.bus.handle(c.Claim(alone, ALICE))
    with statements(container) as with_history:
        claimed = await container.bus.handle(c.Claim(latest, ALICE))
    assert len(with_history) == len(plain), with_history
    assert claimed.card is not None and claimed.card.earlier_count == 3

    await container.bus.handle(c.Erase(ALICE, "GDPR request #5", conversation_id=earlier[1]))
    card = (await container.bus.handle(c.Show(latest, ALICE))).card
    assert card is not None
    assert card.earlier == ((earlier[2], "open"), (earlier[0], "open")) and card.earlier_count == 2
    erased = (await container.bus.handle(c.Show(earlier[1], ALICE))).card
    assert erased is not None and erased.earlier_count == 0 and "@tom" not in str(output.card_json(erased))


def test_a_long_history_is_counted_up_to_the_stores_limit_and_named_in_part() -> None:
    from storage import EARLIER_COUNTED
    from tests.cards import make_card

    card = make_card(earlier=((9, "open"), (8, "resolved")), earlier_count=7)
    assert terminal.fact(card.facts[-2]) == "7 earlier conversations from this author: #9 open, #8 resolved and 5 more"
    capped = make_card(earlier=((9, "open"),), earlier_count=EARLIER_COUNTED)
    assert "100+ earlier conversations from this author: #9 open and 99+ more" in terminal.fact(capped.facts[-2])
