"""How fast does Unsilo answer Teams card clicks, against a bare botbuilder bot?

Two scenarios against the running service, then the same number of clicks against a bare
botbuilder 4.17.1 bot on CloudAdapter that returns a static card; all on loopback, same run,
no authentication (empty app id), 50 concurrent by a team of 50 people:
- claims: 1,000 `adaptiveCard/action` Claim invokes, each on its own conversation (a real
  store write and a refreshed card; each person's first click also creates them);
- repeated clicks: 1,000 Claim invokes on the same 5 cards, already claimed (each refused,
  answered with the card as it is and the refusal on top).
Prints p50/p99, the ratio of p50s to the bare bot's, and the server's CPU per click
(`process_time` of this process, which runs the servers; the load comes from a child process).

    .venv/bin/python -m bench.teams_invoke [--invokes 1000] [--concurrency 50] [--database-url URL]

`--database-url postgresql://postgres@127.0.0.1:5432/test` runs it on PostgreSQL, in a
schema of its own that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path

from aiohttp import web
from botbuilder.core import TurnContext
from botbuilder.core.teams import TeamsActivityHandler
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import AdaptiveCardInvokeResponse, InvokeResponse

from bench.common import Load, fire, store, summary
from bot.ingest import make_incoming
from tests.standins import serve
from tests.teams_support import running_teams

TEAM = 50  # people clicking
HOT_CARDS = 5  # the cards everyone clicks Claim on in the repeated-click scenario
STATIC_CARD = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "ok"}]}


def invoke(service_url: str, conversation_id: int, user: int) -> tuple[bytes, dict[str, str]]:
    """An unauthenticated Claim click (adaptiveCard/action invoke) as JSON."""
    return json.dumps(
        {
            "type": "invoke",
            "name": "adaptiveCard/action",
            "channelId": "msteams",
            "id": f"f:{user}",
            "serviceUrl": service_url,
            "from": {"id": f"29:u{user}", "name": f"User {user}", "aadObjectId": f"aad-{user}"},
            "recipient": {"id": "28:bot", "name": "Unsilo"},
            "conversation": {"id": "a:personal", "conversationType": "personal"},
            "channelData": {"tenant": {"id": "t"}},
            "value": {
                "action": {"type": "Action.Execute", "verb": "claim", "data": {"cmd": "claim", "id": conversation_id}},
                "trigger": "manual",
            },
        }
    ).encode(), {"Content-Type": "application/json"}


class _Config:
    APP_ID, APP_PASSWORD, APP_TYPE, APP_TENANTID = "", "", "MultiTenant", ""


class BareBot(TeamsActivityHandler):
    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        return InvokeResponse(
            status=200,
            body=AdaptiveCardInvokeResponse(status_code=200, type="application/vnd.microsoft.card.adaptive", value=STATIC_CARD),
        )


async def bare_bot() -> tuple[web.AppRunner, str]:
    adapter, bot = CloudAdapter(ConfigurationBotFrameworkAuthentication(_Config())), BareBot()

    async def messages(request: web.Request) -> web.StreamResponse:
        return await adapter.process(request, bot) or web.Response(status=201)

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    runner, url = await serve(app)
    return runner, f"{url}/api/messages"


async def main(invokes: int, concurrency: int, database: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with store(database) as url, running_teams(Path(tmp), database_url=url) as unsilo, Load() as load:
            items = [
                make_incoming(source="bench", external_id=str(i), text=f"refund {i}") for i in range(invokes + 1 + HOT_CARDS)
            ]
            ids = (await unsilo.container.ingest(items)).new_ids
            fresh, hot = ids[1 : invokes + 1], ids[invokes + 1 :]
            url = f"{unsilo.url}/api/messages"
            await fire(url, [invoke(unsilo.connector.url, ids[0], 0)], 1)
            await fire(url, [invoke(unsilo.connector.url, cid, 0) for cid in hot], 1)  # claimed by user 0
            claims, claims_cpu = await load.fire(
                url, [invoke(unsilo.connector.url, cid, 1 + i % TEAM) for i, cid in enumerate(fresh)], concurrency
            )
            repeated, repeated_cpu = await load.fire(
                url, [invoke(unsilo.connector.url, hot[i % HOT_CARDS], 1 + i % TEAM) for i in range(invokes)], concurrency
            )
            runner, bare_url = await bare_bot()
            try:
                await fire(bare_url, [invoke(unsilo.connector.url, 1, 0)], 1)
                bare, bare_cpu = await load.fire(
                    bare_url, [invoke(unsilo.connector.url, i, 1 + i % TEAM) for i in range(invokes)], concurrency
                )
            finally:
                await runner.cleanup()
    print(
        f"{invokes} adaptiveCard/action invokes per scenario, {concurrency} concurrent, loopback, "
        f"{'PostgreSQL' if database else 'SQLite'} store"
    )
    bare_p50, _ = summary("bare botbuilder (static card)", bare)
    for name, latencies, cpu in (
        ("unsilo claims (claim + card)", claims, claims_cpu),
        ("unsilo repeated (refused + card)", repeated, repeated_cpu),
    ):
        p50, _ = summary(name, latencies)
        print(
            f"  ratio unsilo/bare p50: {p50 / bare_p50:.2f}x (goal <= 0.3x); "
            f"server CPU per click {cpu:.2f} ms vs bare {bare_cpu:.2f} ms ({cpu / bare_cpu:.2f}x)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invokes", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--database-url", default=None, help="a PostgreSQL URL (default: a SQLite file)")
    args = parser.parse_args()
    asyncio.run(main(args.invokes, args.concurrency, args.database_url))
