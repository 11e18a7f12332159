"""Who to ask: a new card names up to two people outside its departments who handled conversations like it,
and its Ask button reaches each on their own platform (a mention under the card, or a 1:1 chat with a link).

One story through the real Slack and Teams apps (stand-ins for both): Dana (legal, on Teams) resolved two
refund conversations and Sam (ops, on Slack) replied to them; a new refund conversation posted on Slack
suggests both; Ask from Slack mentions Sam in the Slack thread and opens a Teams chat with Dana.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bot import codec, output, verbs, views
from bot import commands as c
from bot.domain import InvalidInput
from bot.ingest import make_incoming, store_items
from bot.outbox import commit_with_deliveries
from bot.textcommands import parse
from tests.slack_support import SlackHarness
from tests.teams_support import TEAMS_CONFIG, TeamsHarness, running_teams
from tests.test_search import FILLER, TOPICS
from tests.test_slack_render import check_message
from tests.test_teams_render import check_card, runs_text

CONFIG = (
    TEAMS_CONFIG
    + """
[departments.legal]

[departments.ops]

[[rules]]
name = "lawyers"
departments = ["legal"]
any = ["lawyer"]

[people.dana]
name = "Dana"
teams = "aad-dana"
department = "legal"

[people.sam]
name = "Sam"
slack = "USAM"
department = "ops"
"""
)
DANA = c.Actor("teams", "aad-dana", "Dana")
SAM = c.Actor("slack", "USAM", "Sam")
MANAGER = c.Actor("teams", "aad-manager", "Maria")
TITLE, FIRST, AGAIN = TOPICS["refund"]


async def _ingest(h: TeamsHarness, key: str, text: str, **how: Any) -> int:
    item = make_incoming(source="reviews", external_id=key, text=text, url=f"https://reviews.example.com/r/{key}")
    if how:  # `store_items` itself (e.g. `matching=None`: never another voice)
        router = await h.container.router()
        async with h.container.uow() as uow:
            report = await store_items(uow, [item], router=router, **how)
            await commit_with_deliveries(uow)
    else:
        report = await h.container.ingest([item])
    return report.new_ids[0]


async def _handled_before(h: TeamsHarness) -> None:
    """Other topics fill the index; two refund conversations Sam replied to and Dana resolved, one the manager did."""
    bus = h.container.bus
    for name, (title, first, _) in TOPICS.items():
        if name != "refund":
            await _ingest(h, f"old-{name}", f"{title}. {first}. {FILLER}")
    for n in range(2):
        cid = await _ingest(h, f"old-refund-{n}", f"{TITLE}. {AGAIN}. {FILLER}")
        await bus.handle(c.Claim(cid, SAM))
        await bus.handle(c.ReplyToCustomer(cid, SAM, "We refunded the duplicate"))
        await bus.handle(c.Release(cid, SAM))
        await bus.handle(c.Claim(cid, DANA))
        await bus.handle(c.Resolve(cid, DANA, "answered", ""))
    cid = await _ingest(h, "old-refund-m", f"{TITLE}. {AGAIN}. {FILLER}")
    await bus.handle(c.Claim(cid, MANAGER))
    await bus.handle(c.Resolve(cid, MANAGER, "answered", ""))


async def test_a_slack_card_suggests_a_teams_and_a_slack_person_and_ask_reaches_each_on_their_platform(
    tmp_path: Path, database_url: str
) -> None:
    async with running_teams(tmp_path, with_slack=True, config=CONFIG, database_url=database_url) as h:
        assert h.slack is not None
        status, _ = await h.mention("link legal", user="aad-admin")  # Unsilo is in a Teams channel (legal's)
        assert status in (200, 201)
        await _handled_before(h)
        await h.deliver()
        # The customer's text tries to ping the whole channel: it must stay inert everywhere.
        cid = await _ingest(h, "new", f"<!channel> {TITLE}. {AGAIN}. {FILLER}")
        shown = await h.container.bus.handle(c.Show(cid, MANAGER))
        assert shown.card is not None
        asks = [f.value for f in shown.card.facts if f.label == views.ASK]
        assert asks == ["Dana (legal): resolved 2 similar", "Sam (ops): replied to 2 similar"]  # not the manager: support's own
        as_json = output.card_json(shown.card)["suggested"]
        assert [(s["name"], s["resolved"], s["replied"]) for s in as_json] == [("Dana", 2, 0), ("Sam", 0, 2)]
        assert "Ask" in [b.label for b in shown.card.buttons]

        await h.deliver()
        posted = h.slack.messages("C0SUPPORT")[-1]
        check_message({"text": posted["text"], "blocks": posted["blocks"]})
        assert "Ask Dana (legal): resolved 2 similar" in json.dumps(posted["blocks"], ensure_ascii=False)
        assert "<!channel>" not in json.dumps(posted)

        # Ask from the Slack card: a form (who, optional), submitted empty: everyone suggested.
        slack = SlackHarness(container=h.container, slack=h.slack, url=h.url, http=h.http)
        button = next(b for b in shown.card.buttons if b.label == "Ask")
        from adapters.slack import render as slack_render

        opened = len(h.slack.calls_to("views.open"))
        status, _, _ = await slack.click(slack_render.action_id(button), codec.encode(button), user="UBOB")
        assert status == 200
        form = (await h.slack.wait_for("views.open", count=opened + 1))[-1].args["view"]
        block = form["blocks"][0]
        empty = {block["block_id"]: {block["element"]["action_id"]: {"type": "plain_text_input", "value": None}}}
        status, body, _ = await slack.submit(form, empty, user="UBOB")
        assert (status, body) == (200, "")
        for _ in range(200):  # the click's work runs after the ack
            async with h.container.uow() as uow:
                asked = [e for e in await uow.events.for_conversation(cid) if e.kind == "asked"]
            if len(asked) == 2:
                break
            await asyncio.sleep(0.02)
        assert sorted((e.actor_name, e.data["name"], e.data["how"]) for e in asked) == [
            ("ubob", "Dana", "dm"),
            ("ubob", "Sam", "thread"),
        ]
        await h.deliver()

        # Sam: mentioned under the card in its Slack thread; the customer's text quoted but inert.
        card_ts = posted["ts"]
        thread = [m for m in h.slack.messages("C0SUPPORT") if m.get("thread_ts") == card_ts and m["ts"] != card_ts]
        assert len(thread) == 1
        check_message({"text": thread[0]["text"], "blocks": thread[0]["blocks"]})
        said = json.dumps(thread[0]["blocks"], ensure_ascii=False)
        assert "<@USAM>" in said and f"ubob asks for your help with #{cid}" in said
        assert "<!channel>" not in json.dumps(thread[0]) and "&lt;!channel&gt;" in said

        # Dana: a 1:1 Teams chat, mentioning her, saying where the card is (she has no Slack account).
        chats = [x for x in h.connector.calls_to("create") if x.body.get("members")]
        assert [x.body["members"][0]["id"] for x in chats] == ["aad-dana"]
        dm = [s for s in h.connector.calls_to("send") if s.conversation_id == chats[0].response["id"]]
        assert len(dm) == 1
        content = dm[0].body["attachments"][0]["content"]
        check_card(content)
        text = runs_text(content)
        assert f"asks for your help with #{cid}" in text and "C0SUPPORT" in text and "<!channel>" in text  # inert in a TextRun
        assert content["msteams"]["entities"] == [
            {"type": "mention", "text": "<at>Dana</at>", "mentioned": {"id": "aad-dana", "name": "Dana"}}
        ]
        assert any(a.get("url") == "https://reviews.example.com/r/new" for a in content.get("actions", []))
        # ...and a link to the card on Slack: its permalink, asked of Slack when the card was posted.
        permalink = f"https://{h.slack.team_domain}.slack.com/archives/C0SUPPORT/p{card_ts.replace('.', '')}"
        opens = [a for a in content.get("actions", []) if a.get("url") == permalink]
        assert len(opens) == 1 and opens[0]["title"] == f"Open the card of #{cid} (slack)", content.get("actions")

        # The card says who was asked, on every copy (the Slack card was updated in place).
        after = await h.container.bus.handle(c.Show(cid, SAM))
        assert [(f.label, f.value) for f in after.card.facts if f.label in (views.ASK, views.ASKED)] == [
            (views.ASKED, "Dana (legal): resolved 2 similar"),
            (views.ASKED, "Sam (ops): replied to 2 similar"),
        ]
        updated = h.slack.message("C0SUPPORT", card_ts)
        assert updated is not None
        assert "Asked Dana (legal): resolved 2 similar" in json.dumps(updated["blocks"], ensure_ascii=False)
        assert [s["asked"] for s in output.card_json(after.card)["suggested"]] == [True, True]

        history = (await h.container.bus.handle(c.Show(cid, SAM))).history
        assert [(x.actor, x.kind, x.detail) for x in history if x.event == "asked"] == [
            ("ubob", "asked for help", "Dana"),
            ("ubob", "asked for help", "Sam"),
        ]  # in the card's order

        # Asking again pings nobody, and says so; a name not suggested is refused with who is.
        sends = len(h.connector.calls_to("send")) + len(h.slack.calls_to("chat.postMessage"))
        again = await h.container.bus.handle(verbs.VERBS["ask"].command(cid, SAM, {"person": "dana"}))
        assert "Dana was asked already (by ubob); not asking again." in again.text
        with pytest.raises(InvalidInput, match=f"'zoe' is not suggested on #{cid}; ask Dana, Sam"):
            await h.container.bus.handle(parse(f"ask #{cid} zoe", SAM))
        await h.deliver()
        assert len(h.connector.calls_to("send")) + len(h.slack.calls_to("chat.postMessage")) == sends

        # A refund conversation routed to legal too: Dana is of its departments, so only Sam is suggested.
        # (by hand: the same words as #new's would join it as another voice, bot/voices.py)
        legal = await _ingest(h, "lawyer", f"{TITLE}. {AGAIN}, my lawyer. {FILLER}", matching=None)
        in_legal = await h.container.bus.handle(c.Show(legal, MANAGER))
        assert in_legal.card is not None
        assert [f.value for f in in_legal.card.facts if f.label == views.ASK] == ["Sam (ops): replied to 2 similar"]

        # Ask on Teams (its card is in legal's Teams channel too): Sam is mentioned under its Slack copy.
        await h.deliver()
        async with h.container.uow() as uow:
            links = {p.platform: p.link for p in await uow.postings.for_conversation(legal)}
        assert links["teams"].startswith("https://teams.microsoft.com/l/message/19:") and "parentMessageId=" in links["teams"]
        assert links["slack"].startswith(f"https://{h.slack.team_domain}.slack.com/archives/C0SUPPORT/p")
        slack_copy = h.slack.messages("C0SUPPORT")[-1]
        from adapters.teams import render as teams_render

        card_json = teams_render.card(in_legal.card, outcomes=h.container.config.outcomes)
        typed = {teams_render.input_id("ask", "person"): "sam"}
        code, answer = await h.click(card_json, "ask", f"17000{legal:08d}", user="aad-manager", name="Maria", **typed)
        assert code == 200 and "Asked for help with" in json.dumps(answer["value"])
        await h.deliver()
        under = [
            m for m in h.slack.messages("C0SUPPORT") if m.get("thread_ts") == slack_copy["ts"] and m["ts"] != slack_copy["ts"]
        ]
        assert len(under) == 1 and "<@USAM>" in under[0]["text"] and "Maria asks for your help" in under[0]["text"]
