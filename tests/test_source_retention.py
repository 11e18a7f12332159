"""Every source can keep its closed conversations' text for its own number of days: a webhook added with
`--retain-days 1` loses a conversation resolved two days ago at the daily run, while other sources keep theirs."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from bot import commands as c
from bot.bootstrap import build, load_config
from bot.cli import main
from bot.ingest import make_incoming
from bot.scheduler import RETENTION_TRIGGER, Scheduler, due_time
from bot.settings import Settings
from storage.models import Conversation
from tests.test_erasure import CLI_CONFIG


def test_a_webhook_with_its_own_retention_is_erased_sooner_than_the_others(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "unsilo.toml").write_text(CLI_CONFIG)  # default 90 days; the config feed "reviews" 14
    db = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    common = ["--database-url", db, "--config", str(tmp_path / "unsilo.toml")]

    assert main([*common, "sources", "add-webhook", "hooky", "--retain-days", "3", "--as", "root"]) == 0
    assert "keep their text 3 days after they are closed" in capsys.readouterr().out
    assert main([*common, "sources", "add-webhook", "plain", "--as", "root"]) == 0
    capsys.readouterr()
    assert main([*common, "sources", "set", "hooky", "--retain-days", "1", "--as", "mallory"]) == 1
    assert "only admins can change sources" in capsys.readouterr().err
    assert main([*common, "sources", "set", "reviews", "--retain-days", "1", "--as", "root"]) == 1
    assert "is a feed in the config: set its retain_days there" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*common, "sources", "set", "hooky", "--retain-days", "0", "--as", "root"])
    assert "at least 1 day" in capsys.readouterr().err
    assert main([*common, "sources", "set", "hooky", "--retain-days", "1", "--as", "root"]) == 0
    assert "hooky now keeps closed conversations' text 1 day after" in capsys.readouterr().out

    assert main([*common, "sources", "--json"]) == 0
    listed = {item["name"]: item for item in json.loads(capsys.readouterr().out)["items"]}
    assert {n: (i["retain_days"], i["retain_days_from"]) for n, i in listed.items()} == {
        "hooky": (1, "source"),
        "plain": (90, "default"),
        "reviews": (14, "config"),
    }
    assert main([*common, "sources"]) == 0
    text = capsys.readouterr().out
    assert "keeps text 1 days after it is closed (this source's own" in text
    assert "keeps text 14 days after it is closed (the config's, for this feed)" in text

    async def closed_two_days_ago_then_the_daily_run() -> dict[str, bool]:
        container = build(Settings(database_url=db), config=load_config(tmp_path / "unsilo.toml"))
        try:
            await container.prepare()
            ids = (
                await container.ingest(
                    [make_incoming(source=s, external_id="1", text=f"{s}: broken", author_name="Ann") for s in listed]
                )
            ).new_ids
            dana = c.Actor("cli", "dana")
            now = container.clock()
            for cid in ids:
                await container.bus.handle(c.Claim(cid, dana))
                await container.bus.handle(c.Resolve(cid, dana, "answered"))
            async with container.uow() as uow:
                stmt = update(Conversation).where(Conversation.id.in_(ids)).values(resolved_at=now - timedelta(days=2))  # type: ignore[union-attr]
                await uow.session.exec(stmt)  # type: ignore[call-overload]
                await uow.commit()
            assert await Scheduler(container, holder="one").run_retention(due_at=due_time(RETENTION_TRIGGER, now))
            async with container.uow() as uow:
                return {cv.source: cv.erased_at is not None for cv in [await uow.conversations.get(i) for i in ids] if cv}
        finally:
            await container.close()

    assert asyncio.run(closed_two_days_ago_then_the_daily_run()) == {"hooky": True, "plain": False, "reviews": False}
