"""No list is cut silently, `--json` says what the text says, and a reply counts once the customer got it
(issue 14, points 11 and 14): on SQLite and on PostgreSQL, and through the real `unsilo` entry point."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from bot import commands as c
from bot import output
from bot.bootstrap import Container
from bot.cli import main
from bot.digest import build_digest
from bot.domain import InvalidInput
from bot.ingest import make_incoming
from bot.views import Result
from storage.models import Conversation
from tests.conftest import ROOT, FakeClock
from tests.test_replies import ALICE, DANA, Receiver, _conversation, _deliver, receiver, store  # noqa: F401 (fixtures)

CAROL = c.Actor("cli", "carol", "carol")


async def test_a_queue_of_159_lists_50_urgent_first_and_says_how_many_more(container: Container) -> None:
    items = [make_incoming(source="reviews", external_id=f"q{i}", text=f"refund please, order {i}") for i in range(159)]
    ids = (await container.ingest(items)).new_ids
    urgent, high = ids[-3:], ids[100:105]  # the newest are the most urgent: age alone would list them last
    async with container.uow() as uow:
        await uow.session.exec(update(Conversation).where(Conversation.id.in_(urgent)).values(priority="urgent"))  # type: ignore[union-attr]
        await uow.session.exec(update(Conversation).where(Conversation.id.in_(high)).values(priority="high"))  # type: ignore[union-attr]
        await uow.commit()

    result = await container.bus.handle(c.ShowQueue(CAROL))
    assert result.text == "159 conversations in the queue"
    assert len(result.cards) == 50 and result.more == 109
    listed = [card.id for card in result.cards]
    normal = [i for i in ids if i not in urgent and i not in high]
    assert listed == urgent + high + normal[:42]
    lines = output.result_lines(result, command="queue", limit=50)
    assert lines[-1].strip() == "…and 109 more" and sum(line.startswith("  #") for line in lines) == 50
    assert result.listing.more == 139 and len(result.listing.cards) == 20  # a chat list: 20 cards, the rest counted

    small = await container.bus.handle(c.ShowQueue(CAROL, limit=5))
    assert [card.id for card in small.cards] == urgent + high[:2] and small.more == 154
    found = await container.bus.handle(c.Search(CAROL, ("refund",), limit=10))
    assert found.text.startswith("159 matches") and len(found.cards) == 10 and found.more == 149
    with pytest.raises(InvalidInput, match="1 to 1000"):
        await container.bus.handle(c.ShowQueue(CAROL, limit=1001))


async def _status(container: Container, cid: int) -> str:
    async with container.uow() as uow:
        conversation = await uow.conversations.get(cid)
        assert conversation is not None
        return conversation.status


async def test_a_reply_counts_from_when_the_customer_got_it_never_from_a_rejected_one(
    store: tuple[Container, FakeClock],  # noqa: F811
    receiver: Receiver,  # noqa: F811
) -> None:
    container, clock = store
    start = clock.now
    cid = await _conversation(container, "My lawyer will hear about this", reply_url=receiver.url)
    await container.bus.handle(c.Claim(cid, ALICE))
    clock.advance(minutes=5)
    held = await container.bus.handle(c.ReplyToCustomer(cid, ALICE, "Calm down, it is only a parcel."))
    assert held.card is not None and held.card.status == "claimed" and held.card.reply_status == "pending_approval"

    waiting = await container.bus.handle(c.ShowApprovals(DANA))
    assert waiting.text == "1 reply is waiting for your approval" and waiting.more == 0
    (line,) = [x for x in output.result_lines(waiting, command="approvals", limit=50) if "waiting for approval" in x]
    assert "Reply by Alice" in line and "Calm down, it is only a parcel." in line

    rejected = await container.bus.handle(c.RejectReply(cid, DANA, "too informal"))
    assert rejected.card is not None and rejected.card.status == "claimed" and "still claimed" in rejected.text
    await _deliver(container, clock, rounds=1)
    assert receiver.requests == []
    async with container.uow() as uow:
        department = await uow.departments.by_name("legal")
        assert department is not None
        sla = department.sla_minutes
        digest = await build_digest(uow, department="legal", since=start, until=clock.now)
    assert digest.replied == 0 and digest.to_first_reply.count == 0, "a rejected reply never reached the customer"

    shown = await container.bus.handle(c.Show(cid, DANA))
    words = [f"{h.actor} {h.kind}: {h.detail}" for h in shown.history]
    assert "Alice replied: Calm down, it is only a parcel. (rejected, never sent)" in words
    assert "Alice asked for approval of the reply: from legal managers" in words
    assert "Dana rejected the reply: too informal" in words
    text = "\n".join(output.result_lines(shown, command="show", limit=50))
    assert "approval_requested" not in text and "[pending_approval]" not in text

    clock.advance(minutes=5)
    await container.bus.handle(c.ReplyToCustomer(cid, ALICE, "We are sorry; our legal team will call you today."))
    clock.advance(minutes=sla + 30)  # the approver takes longer than the SLA: the customer waited that long
    approved = await container.bus.handle(c.ApproveReply(cid, DANA))
    assert approved.card is not None and approved.card.status == "claimed", "on its way is not delivered"
    delivered_at = clock.now
    await _deliver(container, clock, rounds=1)
    assert len(receiver.accepted) == 1 and await _status(container, cid) == "replied"

    async with container.uow() as uow:
        conversation = await uow.conversations.get(cid)
        assert conversation is not None and conversation.first_reply_at == delivered_at
        digest = await build_digest(uow, department="legal", since=start, until=clock.now)
    assert (digest.replied, digest.to_first_reply.count, digest.to_first_reply.within_sla) == (1, 1, 0)
    assert digest.to_first_reply.median == pytest.approx((delivered_at - conversation.ingested_at).total_seconds(), abs=1)


# --- the real `unsilo` entry point: --json, --limit -------------------------------------------------


def _readme_fields() -> dict[str, tuple[set[str], str]]:
    """The README's "JSON output" tables: each command's fields and its items' kind, each item kind's fields."""
    section = (ROOT / "README.md").read_text().split("### JSON output", 1)[1].split("\n## ", 1)[0]
    rows = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in section.splitlines() if row.startswith("| ")]
    table: dict[str, tuple[set[str], str]] = {}
    for cells in rows:
        name = cells[0].strip("`")
        names = set(re.findall(r"`([a-z_]+)`", cells[1]))
        table[name] = (names, cells[2].split(" ")[0] if len(cells) > 2 else "")
    return table


def test_every_json_document_carries_the_documented_fields(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "unsilo.example.toml").write_text((ROOT / "unsilo.example.toml").read_text())
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "UNSILO_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    assert main(["demo"]) == 0
    assert main(["claim", "12", "--as", "alice"]) == 0  # "Thinking about suing…": legal, sensitive
    assert main(["reply", "12", "Sorry\x1b[2J\u202e", "--as", "alice"]) == 0  # held for dana's approval
    capsys.readouterr()
    documented = _readme_fields()
    assert set(documented) >= set(output.FIELDS)
    documents = {}
    for argv in (
        ["queue", "--json", "--limit", "3"],
        ["search", "parcel", "--json"],
        ["approvals", "--json", "--as", "dana"],
        ["show", "12", "--json"],
        ["digest", "--json", "--as", "dana"],
        ["stats", "--json", "--as", "alice"],
        ["sources", "--json"],
    ):
        assert main(argv) == 0, argv
        raw = capsys.readouterr().out
        assert raw.isascii() and "\x1b" not in raw, "safe to print raw in a terminal"
        document = documents[argv[0]] = json.loads(raw)
        fields, kind = documented[argv[0]]
        assert set(document) == fields == set(output.FIELDS[argv[0]][0]), argv
        items = document.get("items") or document.get("history") or []
        if kind != "—":
            assert items and all(set(item) == documented[kind][0] for item in items), argv
    queue = documents["queue"]
    assert len(queue["items"]) == 3 and queue["more"] == 9 and isinstance(queue["items"][0]["id"], int)
    text = (main(["queue", "--limit", "3"]), capsys.readouterr().out)[1]
    assert re.findall(r"^  #(\d+)", text, re.M) == [str(item["id"]) for item in queue["items"]]  # the text says the same
    assert text.rstrip().endswith("…and 9 more")
    shown = documents["show"]
    assert shown["conversation"]["id"] == 12 and shown["conversation"]["created_at"].endswith("+00:00")
    assert shown["conversation"]["status"] == "claimed", "held for approval: not replied"
    # The text as stored (ESC is dropped when it is stored), the bidi override kept but written as "\u202e".
    assert any(h["event"] == "replied" and h["detail"].startswith("Sorry[2J\u202e") for h in shown["history"])
    assert main(["reply", "3", "On it", "--as", "alice"]) == 1
    assert "claim it first (`unsilo claim 3`)" in capsys.readouterr().err
    assert main(["claim", "3", "--as", "alice"]) == 0 and main(["reply", "3", "On it", "--as", "alice"]) == 0
    assert "then mark it as posted (`unsilo posted 3`)" in capsys.readouterr().out

    with pytest.raises(SystemExit) as usage:
        main(["queue", "--limit", "0"])
    assert usage.value.code == 2 and "is not a number from 1 to 1000" in capsys.readouterr().err


async def test_upgrading_old_data_takes_back_replied_from_a_reply_that_never_reached_the_customer(container: Container) -> None:
    """Schema 0009 corrects what was stored before: `replied` and a first reply time from a reply that was
    only written (then rejected) become `claimed` and no time; a sent reply dates from its sending."""
    from alembic import command

    from storage import migrate
    from storage.models import Reply

    ids = (await container.ingest([make_incoming(source="reviews", external_id=f"m{i}", text="help") for i in range(3)])).new_ids
    rejected_only, sent, closed = ids
    written = container.clock()
    delivered = written + timedelta(hours=3)
    async with container.uow() as uow:
        for cid, status in ((rejected_only, "replied"), (sent, "replied"), (closed, "resolved")):
            await uow.session.exec(
                update(Conversation).where(Conversation.id == cid).values(status=status, first_reply_at=written)
            )  # type: ignore[arg-type]
        uow.replies.add(Reply(conversation_id=rejected_only, text="no", status="rejected", created_at=written))
        uow.replies.add(Reply(conversation_id=sent, text="yes", status="sent", created_at=written, sent_at=delivered))
        uow.replies.add(Reply(conversation_id=closed, text="no", status="rejected", created_at=written))
        await uow.commit()

    def back_to_0008(connection) -> None:  # type: ignore[no-untyped-def]
        config = migrate.alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0008")

    async with container.engine.begin() as conn:
        await conn.run_sync(back_to_0008)
    await migrate.upgrade(container.engine)

    async with container.uow() as uow:
        rows = {cid: await uow.conversations.get(cid) for cid in ids}
    got = {cid: (row.status, row.first_reply_at, row.reply_written_at) for cid, row in rows.items() if row is not None}
    assert got == {
        rejected_only: ("claimed", None, written),
        sent: ("replied", delivered, written),
        closed: ("resolved", None, written),
    }


def test_chat_lists_show_the_waiting_reply_and_how_many_more() -> None:
    """Slack and Teams list the approvals as the CLI does: each waiting reply's text and author under its
    line, then "…and N more" (20 cards in a chat list, the rest counted)."""
    from adapters.slack import render as slack_render
    from adapters.teams import render as teams_render
    from tests.cards import make_card

    note = "Reply by Alice waiting for approval (sensitive): “<!channel> we will refund you”"
    cards = tuple(make_card(id=i, reply_status="pending_approval", reply_note=note) for i in range(1, 31))
    result = Result("35 replies are waiting for your approval", cards=cards, more=5)
    slack = json.dumps(slack_render.result_message(result), ensure_ascii=False)
    teams = json.dumps(teams_render.result_card(result, outcomes=()), ensure_ascii=False)
    for rendered in (slack, teams):
        assert "…and 15 more" in rendered and rendered.count("Reply by Alice waiting for approval") == 20
    assert "<!channel>" not in slack and "&lt;!channel&gt;" in slack  # the reply's text is escaped
