"""How fast does Unsilo ack Slack button clicks, against a bare Bolt app that only acks?

N concurrent, signed Claim clicks (each on its own conversation, so each is a real
store write) against the running service, then the same number against a bare Bolt
app on aiohttp; both on loopback in the same run. Prints p50/p99, the ratio, and the server's
CPU per click (`process_time` of this process while the clicks are answered; the load comes from a
child process). Each run starts after a full garbage collection, with what is alive frozen
(`gc.freeze`), so that no run pays for a collection of the other's objects. Beside them, for
Unsilo: when the last claim was stored (work done after the ack may end after the last answer)
and the server's CPU per click until then.

    .venv/bin/python -m bench.slack_ack [--clicks 200] [--concurrency 50] [--team 50]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import re
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from sqlalchemy import func
from sqlmodel import select

from bench.common import Load, fire, summary
from bot import codec
from bot.ingest import make_incoming
from bot.views import Button
from storage.models import Conversation
from tests.slack_support import SECRET, TOKEN, SlackHarness, running_slack
from tests.standins import serve
from tests.standins.slack_api import sign

TEAM = "T111"  # the workspace the Slack stand-in's auth.test reports: the installed one
PAYLOAD = {
    "type": "block_actions",
    "user": {"id": "U0", "username": "u", "name": "u", "team_id": TEAM},
    "api_app_id": "A1",
    "token": "t",
    "container": {"type": "message", "message_ts": "1.1", "channel_id": "C0SUPPORT"},
    "trigger_id": "1.1.x",
    "team": {"id": TEAM, "domain": "d"},
    "channel": {"id": "C0SUPPORT", "name": "support"},
    "response_url": "http://127.0.0.1:9/unused",
    "actions": [],
}


def click_body(user: str, conversation_id: int) -> tuple[bytes, dict[str, str]]:
    """A signed Claim click, as Slack sends it."""
    button = Button("Claim", "claim", conversation_id)
    action = {
        "action_id": f"unsilo:claim:{conversation_id}",
        "block_id": "b",
        "type": "button",
        "value": codec.encode(button),
        "action_ts": "1.1",
        "text": {"type": "plain_text", "text": "Claim"},
    }
    payload = {**PAYLOAD, "user": {**PAYLOAD["user"], "id": user}, "actions": [action]}
    body = urlencode({"payload": json.dumps(payload)}).encode()
    return body, {"Content-Type": "application/x-www-form-urlencoded", **sign(SECRET, body)}


async def bare_bolt(port_holder: list[int]) -> web.AppRunner:
    """A Bolt app that only acks, mounted on aiohttp the same way as ours."""

    async def authorize(enterprise_id: str | None = None, team_id: str | None = None) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token=TOKEN)

    bolt = AsyncApp(signing_secret=SECRET, authorize=authorize)

    @bolt.action(re.compile(".*"))
    async def only_ack(ack):  # type: ignore[no-untyped-def]
        await ack()

    async def endpoint(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    app = web.Application()
    app.router.add_post("/slack/events", endpoint)
    runner, url = await serve(app)
    port_holder.append(int(url.rsplit(":", 1)[1]))
    return runner


def settle() -> None:
    """Before each measured run: collect, then freeze what is alive, so that neither run pays for a full
    collection of the other's (and the start-up's) objects (one took 170 ms, more than a whole p99)."""
    gc.collect()
    gc.freeze()


async def claimed(unsilo: SlackHarness) -> int:
    """How many conversations are claimed in the store."""
    async with unsilo.container.uow() as uow:
        return (await uow.session.exec(select(func.count()).where(Conversation.status == "claimed"))).one()


async def until_claimed(unsilo: SlackHarness, count: int, *, timeout: float = 60.0) -> None:
    """Wait until `count` conversations are claimed (checked every 20 ms)."""
    deadline = time.monotonic() + timeout
    while await claimed(unsilo) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {await claimed(unsilo)} of {count} claims stored")
        await asyncio.sleep(0.02)


async def main(clicks: int, concurrency: int, team: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with running_slack(Path(tmp)) as unsilo, Load() as load:
            items = [make_incoming(source="bench", external_id=str(i), text=f"refund {i}") for i in range(clicks)]
            ids = (await unsilo.container.ingest(items)).new_ids
            await fire(f"{unsilo.url}/slack/events", [click_body("UWARM", ids[0])], 1)  # warm-up
            await until_claimed(unsilo, 1)
            settle()
            started, started_cpu = time.perf_counter(), time.process_time()
            ours, ours_cpu = await load.fire(
                f"{unsilo.url}/slack/events", [click_body(f"U{i % team:04d}", cid) for i, cid in enumerate(ids[1:])], concurrency
            )
            answered_ms = (time.perf_counter() - started) * 1000
            await until_claimed(unsilo, clicks)
            stored_ms = (time.perf_counter() - started) * 1000
            stored_cpu = (time.process_time() - started_cpu) / (clicks - 1) * 1000
            port: list[int] = []
            runner = await bare_bolt(port)
            try:
                bare_url = f"http://127.0.0.1:{port[0]}/slack/events"
                await fire(bare_url, [click_body("UWARM", 1)], 1)
                settle()
                bare, bare_cpu = await load.fire(
                    bare_url, [click_body(f"U{i % team:04d}", i + 1) for i in range(len(ids) - 1)], concurrency
                )
            finally:
                await runner.cleanup()
    print(
        f"{clicks - 1} signed Claim clicks by a team of {team}, {concurrency} concurrent, loopback, SQLite store "
        "(each person's first click also reads their profile with users.info, from the in-process stand-in)"
    )
    our_p50, our_p99 = summary("unsilo (claim + store)", ours)
    bare_p50, bare_p99 = summary("bare Bolt (ack only)", bare)
    print(f"ratio unsilo/bare: p50 {our_p50 / bare_p50:.2f}x  p99 {our_p99 / bare_p99:.2f}x (goals <= 1.1x, <= 1.5x)")
    print(f"server CPU per click: unsilo {ours_cpu:.2f} ms, bare {bare_cpu:.2f} ms ({ours_cpu / bare_cpu:.2f}x)")
    print(
        f"unsilo, every claim stored: {stored_ms:.0f} ms after the first click was sent "
        f"(the last answer at {answered_ms:.0f} ms); server CPU per click until then {stored_cpu:.2f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=201)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--team", type=int, default=50, help="people clicking (default 50, as bench.teams_invoke)")
    args = parser.parse_args()
    asyncio.run(main(args.clicks, args.concurrency, args.team))
