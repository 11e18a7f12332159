"""What one card click costs the store (issue 13: clicks get cheaper, not dearer): a Claim is five
statements, a Claim lost to someone else three reads and no write, on SQLite and on PostgreSQL; and a
refused command's card never shows what it had changed before it was refused."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from bot import bus as bus_module
from bot import commands as c
from bot.bootstrap import Container
from bot.domain import Forbidden
from bot.ingest import make_incoming
from bot.policy import Context, identify
from bot.views import Result
from handlers._common import transition
from storage.uow import UnitOfWork
from tests.teams_support import running_teams
from tests.test_teams import card_text
from tests.test_teams import ingest as teams_ingest

# Who clicked, the card (with its departments), the compare-and-set, its event, its card deliveries, and
# the channels whose noise budget may hold a new card back (bot/noise.py: one read of a few destinations).
CLAIM_STATEMENTS = 6
# Who clicked, the card, its owner with their accounts (to name the winner): the card is made from these.
REFUSED_STATEMENTS = 3


@contextmanager
def statements(container: Container) -> Iterator[list[str]]:
    """The SQL statements the store runs meanwhile, transaction control left out (SQLite's `BEGIN
    IMMEDIATE` is a statement, PostgreSQL's BEGIN is not)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")):
            seen.append(statement)

    engine = container.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def is_read(statement: str) -> bool:
    return statement.lstrip().upper().startswith("SELECT")


async def test_a_teams_claim_and_a_claim_lost_to_someone_else_cost_a_fixed_number_of_statements(
    tmp_path: Path, database_url: str
) -> None:
    async with running_teams(tmp_path, database_url=database_url) as teams:
        first, second, third = [await teams_ingest(teams, external_id=str(n)) for n in range(3)]
        for cid, user, name in ((first, "aad-alice", "Alice"), (second, "aad-bob", "Bob")):  # each person's first sight
            status, _ = await teams.invoke("claim", cid, user=user, name=name)
            assert status == 200

        with statements(teams.container) as claim:
            status, body = await teams.invoke("claim", third, user="aad-alice", name="Alice")
        assert status == 200 and "Claimed by Alice" in card_text(body["value"])
        assert len(claim) == CLAIM_STATEMENTS, claim

        with statements(teams.container) as refused:
            status, body = await teams.invoke("claim", third, user="aad-bob", name="Bob")
        assert status == 200
        shown = card_text(body["value"])
        assert f"#{third} is already claimed by Alice" in shown and "Claimed by Alice" in shown
        assert len(refused) == REFUSED_STATEMENTS and all(is_read(s) for s in refused), refused


async def test_a_refused_command_never_shows_what_it_had_changed_before_the_refusal(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler that claims, then refuses: the card that comes with the refusal is the committed one."""
    cid = (await container.ingest([make_incoming(source="forum", external_id="t-1", text="refund please")])).new_ids[0]

    async def claims_then_refuses(cmd: c.Claim, uow: UnitOfWork, *, ctx: Context) -> Result:
        who = await identify(uow, cmd.actor)
        await transition(uow, cmd.conversation_id, "claim", who=who, values=lambda _: {"owner_id": who.id})
        raise Forbidden("changed my mind")

    monkeypatch.setitem(bus_module.HANDLERS, c.Claim, claims_then_refuses)
    with pytest.raises(Forbidden) as refused:
        await container.bus.handle(c.Claim(cid, c.Actor("slack", "U1", name="alice")), show=True)
    assert refused.value.card is not None
    assert refused.value.card.status == "open" and refused.value.card.owner is None
