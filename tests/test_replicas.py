"""Three real `unsilo run` processes on one PostgreSQL: each digest and each escalation is posted once.

The Slack Web API is the loopback stand-in; every replica has Slack enabled and posts through
it. The digest is due every 6 seconds (a 6-field schedule, seconds first) so the test sees
several due times; killing the replica that posted one does not stop the next being posted once.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import asyncpg
from sqlalchemy import update

from bot.bootstrap import build, load_config
from bot.ingest import make_incoming
from bot.settings import Settings
from storage.models import Conversation
from tests.conftest import PG_URL, _drop_schema, _postgres_schema, service_env
from tests.standins.slack_api import SlackStandIn
from tests.test_service import free_port

CONFIG = """
[departments.support]
sla_minutes = 30
managers = ["slack:UCAROL"]
channels = ["slack:C0SUPPORT"]
digest = "*/6 * * * * *"
digest_channels = ["slack:C0MANAGERS"]

[[rules]]
name = "support"
departments = ["support"]
any = ["refund"]
"""

UP_TO = re.compile(r"figures up to (\S+ \S+) UTC")


def _posts(slack: SlackStandIn, channel: str) -> list[dict[str, object]]:
    return [call.args for call in slack.calls_to("chat.postMessage") if call.args.get("channel") == channel and call.ok]


def _title(args: dict[str, object]) -> str:
    blocks = args.get("blocks") or []
    return str(blocks[0]["text"]["text"]) if blocks else str(args.get("text", ""))  # type: ignore[index]


async def _holders(schema: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        rows = await conn.fetch(
            f'SELECT due_at::text, holder FROM "{schema}".jobrun WHERE finished_at IS NOT NULL ORDER BY due_at'
        )
        return [(r["due_at"], r["holder"]) for r in rows]
    finally:
        await conn.close()


async def test_three_replicas_post_each_digest_and_escalation_once(tmp_path: Path) -> None:
    schema = await _postgres_schema(migrated=True)
    url = f"{PG_URL}?search_path={schema}"
    config_path = tmp_path / "unsilo.toml"
    config_path.write_text(CONFIG)
    # A conversation already 2 hours unclaimed: past support's 30-minute SLA when the replicas start.
    seeder = build(Settings(database_url=url), config=load_config(config_path))
    await seeder.prepare()
    cid = (await seeder.ingest([make_incoming(source="forum", external_id="1", text="refund never came")])).new_ids[0]
    async with seeder.uow() as uow:
        await uow.session.exec(
            update(Conversation)
            .where(Conversation.id == cid)
            .values(  # type: ignore[call-overload]
                ingested_at=uow.now() - timedelta(hours=2)
            )
        )
        await uow.commit()
    await seeder.close()

    processes: dict[int, subprocess.Popen[str]] = {}
    async with SlackStandIn() as slack:
        env = service_env(
            DATABASE_URL=url,
            UNSILO_CONFIG=str(config_path),
            SLACK_BOT_TOKEN="xoxb-replicas",
            SLACK_SIGNING_SECRET="replica-secret",
            SLACK_API_URL=slack.url + "/",
        )
        try:
            for _ in range(3):
                process = subprocess.Popen(
                    [sys.executable, "-m", "bot.cli", "run", "--port", str(free_port())],
                    cwd=tmp_path,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                processes[process.pid] = process
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and len(await _holders(schema)) < 3:
                await asyncio.sleep(0.5)
            first_round = await _holders(schema)
            assert len(first_round) >= 3, "three digests were due and done within a minute"

            # Kill the replica that posted the latest digest; the others carry on.
            victim = int(first_round[-1][1].rsplit(":", 1)[1])
            assert victim in processes, first_round
            processes[victim].send_signal(signal.SIGKILL)
            processes[victim].wait(timeout=10)
            done_before = len(first_round)
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and len(await _holders(schema)) < done_before + 2:
                await asyncio.sleep(0.5)
            await asyncio.sleep(3)  # let the outbox of the survivors send what is due
            after = await _holders(schema)
            assert len(after) >= done_before + 2, "digests kept coming after the lease holder died"
            assert all(int(holder.rsplit(":", 1)[1]) != victim for _, holder in after[done_before:])
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
            errors = {pid: p.communicate(timeout=20)[1] for pid, p in processes.items()}
            await _drop_schema(schema)

        per_due_time = Counter(
            match.group(1) for args in _posts(slack, "C0MANAGERS") for match in [UP_TO.search(str(args.get("blocks")))] if match
        )
        assert len(per_due_time) >= len(after) - 2, (per_due_time, after)  # the last ones may not be sent yet
        print(f"digests per due time: {dict(per_due_time)}; runs: {after}")
        assert set(per_due_time.values()) == {1}, f"a digest was posted twice: {per_due_time}"
        escalations = [args for args in _posts(slack, "C0SUPPORT") if "still unclaimed" in _title(args)]
        assert len(escalations) == 1, "one escalation for one breach, whatever the number of replicas"
        assert "<@UCAROL>" in _title(escalations[0])
    for pid, stderr in errors.items():
        if pid != victim:
            assert "Traceback" not in stderr, stderr[-3000:]
