"""A customer asks to be forgotten: an admin erases their data from chat (a dry run, then a confirmation),
on SQLite and PostgreSQL, with the cards already posted on Slack and Teams updated.

Afterwards nothing of theirs is anywhere: every text and JSON column of every table is scanned
(from the SQLModel metadata, so a new table is scanned too), the search finds nothing, and what
Slack and Teams received after the erasure carries none of it. The figures do not move: the
digest of the period is the same before and after. Retention erases closed conversations past
their source's period, exactly once across three replicas on one PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from sqlalchemy import select, update
from sqlmodel import SQLModel

from bot import commands as c
from bot.bootstrap import build, load_config
from bot.cli import main
from bot.config import ConfigError
from bot.digest import build_digest
from bot.domain import IllegalTransition
from bot.ingest import make_incoming
from bot.scheduler import RETENTION_TRIGGER, Scheduler, due_time, post_digest
from bot.settings import Settings
from storage import erasure
from storage.models import Conversation, Delivery, Event, JobRun
from tests.conftest import PG_URL, _drop_schema, _postgres_schema, reference_dir
from tests.slack_support import SlackHarness
from tests.teams_support import running_teams
from tests.test_slack_render import check_message
from tests.test_teams import card_text, link_support

TOM = {
    "author_name": "Tom W.",
    "author_handle": "@tomwhistler",
    "author_url": "https://forum.example/u/tomwhistler",
}
TOM_TEXT = "My Quixotic kettle arrived broken and leaks. Refund please, it scalded my hand!"
# What must be gone: his name, handle, profile, the words of his posts and their links.
TRACES = ("tom w.", "tomwhistler", "quixotic", "scalded my hand", "forum.example/t/77", "zanzibar")


def traces_in(value: Any) -> set[str]:
    blob = json.dumps(value, ensure_ascii=False, default=str).lower()
    return {t for t in TRACES if t in blob}


async def scan_store(container: Any) -> dict[str, set[str]]:
    """Every table, every row: which of TRACES any of its text or JSON values holds."""
    found: dict[str, set[str]] = {}
    async with container.engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            for row in (await conn.execute(select(table))).mappings():
                hits = traces_in([v for v in row.values() if isinstance(v, str | dict | list)])
                if hits:
                    found.setdefault(table.name, set()).update(hits)
    return found


def figures(digest: Any) -> dict[str, Any]:
    """A digest's figures, and which items wait (their snippets quote customers: those may change)."""
    values = dataclasses.asdict(digest)
    values["oldest_unclaimed"] = [(w["id"], w["age_seconds"]) for w in values["oldest_unclaimed"]]
    return values


async def test_an_author_erased_from_chat_leaves_nothing_of_theirs_and_the_figures_unchanged(
    tmp_path: Path, database_url: str
) -> None:
    schema = jsonschema.Draft6Validator(
        json.loads((reference_dir() / "schemas/adaptive-cards/adaptive-card-1.5.0.schema.json").read_text())
    )
    async with running_teams(tmp_path, with_slack=True, database_url=database_url) as h:
        assert h.slack is not None
        slack = SlackHarness(container=h.container, slack=h.slack, url=h.url, http=h.http)
        await link_support(h)
        report = await h.container.ingest(
            [
                make_incoming(source="forum", external_id="77", text=TOM_TEXT, url="https://forum.example/t/77", **TOM),
                make_incoming(
                    source="forum",
                    external_id="78",
                    title="Zanzibar order still broken",
                    text="Still broken, refund?",
                    url="https://forum.example/t/78",
                    reply_url="https://forum.example/t/78/replies",
                    **{**TOM, "author_name": "tom w."},
                ),
                make_incoming(source="forum", external_id="90", text="my kettle is broken too, refund", author_name="Tommy"),
            ]
        )
        tom1, tom2, tommy = report.new_ids
        await h.deliver()
        alice = c.Actor("teams", "aad-alice", name="Alice")
        await h.container.bus.handle(c.Claim(tom1, alice))
        await h.container.bus.handle(
            c.ReplyToCustomer(tom1, alice, "> My Quixotic kettle arrived broken and leaks.\nHi Tom W., a new one ships today.")
        )
        await h.container.bus.handle(c.AddNote(tom1, c.Actor("slack", "UBOB"), "Tom W. says it scalded my hand! Call him."))
        await h.container.bus.handle(c.Resolve(tom1, alice, "answered", "Sent Tom W. a new kettle"))
        now = h.container.clock()
        since, until = now - timedelta(days=7), now + timedelta(minutes=1)
        support = next(d for d in h.container.config.departments if d.name == "support")
        async with h.container.uow() as uow:
            await post_digest(uow, support, since=since, until=until)  # quotes the waiting #tom2
            await uow.commit()
        await h.deliver()
        await h.container.bus.handle(c.Claim(tom2, alice))
        await h.container.bus.handle(c.ReplyToCustomer(tom2, alice, "Hi Tom W., on its way"))  # queued, not sent yet
        async with h.container.uow() as uow:
            before = figures(await build_digest(uow, department="support", since=since, until=until))
        traced = await scan_store(h.container)
        assert traced.keys() >= {"conversation", "reply", "note", "event", "delivery"}, traced

        # Exact matching: a name that is only part of his is nobody's.
        _, answer, _ = await slack.command('erase --author "Tom" --reason "GDPR request #5"', user="UADMIN")
        assert "Nothing to erase" in answer, answer
        status, answer, _ = await slack.command('erase --author "Tom W." --reason "GDPR request #5"', user="UALICE")
        assert "only admins can erase" in answer, answer
        status, answer, _ = await slack.command(
            "erase --author \u201cTom W.\u201d --reason \u201cGDPR request #5\u201d", user="UADMIN"
        )
        assert status == 200 and "Would erase the customer data of 2 conversations" in answer, answer
        assert f"#{tom1} (forum, resolved): author name, handle, profile URL, text, link" in answer
        assert "--confirm" in answer and str(tommy) not in answer.split("\n", 1)[1]
        assert await scan_store(h.container) == traced  # a dry run changes nothing

        slack_seen, teams_seen = len(h.slack.calls), len(h.connector.calls)
        confirm = answer.rsplit("type: ", 1)[1].strip().strip("`").removeprefix("/unsilo ")
        status, answer, _ = await slack.command(confirm, user="UADMIN")
        assert status == 200 and f"Erased the customer data of 2 conversations: #{tom1}, #{tom2}" in answer, answer
        await h.deliver()

        assert await scan_store(h.container) == {}
        slack_after = [call.args for call in h.slack.calls[slack_seen:]]
        teams_after = [call.body for call in h.connector.calls[teams_seen:]]
        assert traces_in(slack_after) == set() and traces_in(teams_after) == set()
        updated = [a for a in slack_after if "Erased on request" in json.dumps(a)]
        assert len(updated) == 2 and all(a.get("ts") for a in updated), "both posted Slack cards were updated in place"
        for args in updated:
            check_message(
                {
                    "text": args["text"],
                    "blocks": json.loads(args["blocks"]) if isinstance(args["blocks"], str) else args["blocks"],
                }
            )
        teams_cards = [
            a["attachments"][0]["content"] for a in teams_after if a and "Erased on request" in card_text(a.get("attachments"))
        ]
        assert len(teams_cards) == 2 and len(h.connector.calls_to("update")) >= 2
        for card in teams_cards:
            errors = list(schema.iter_errors({k: v for k, v in card.items() if k != "msteams"}))
            assert errors == [], errors[0].message

        found = await h.container.bus.handle(c.Search(alice, ("quixotic",)))
        assert found.cards == ()
        assert [card.id for card in (await h.container.bus.handle(c.Search(alice, ("tommy",)))).cards] == [tommy]
        async with h.container.uow() as uow:
            after = figures(await build_digest(uow, department="support", since=since, until=until))
            events = [e for e in await uow.events.for_conversation(tom1) if e.kind == "erased"]
        assert after == before
        assert [(e.actor_name, e.data) for e in events] == [("uadmin", {"reason": "GDPR request #5", "conversations": 2})]

        async with h.container.uow() as uow:
            (held,) = await uow.replies.for_conversation(tom2)
            outbound = (await uow.session.exec(select(Delivery).where(Delivery.kind == "reply"))).scalars().all()
        assert [(d.conversation_id, d.status, d.sent_at) for d in outbound] == [(tom2, "failed", None)]
        assert (held.status, held.error) == ("failed", "not sent: the customer's data was erased")
        with pytest.raises(IllegalTransition, match="customer data was erased"):
            await h.container.bus.handle(c.ReplyToCustomer(tom2, alice, "Anyone there?"))

        # The next poll of the same feed knows the old item; his new post starts fresh.
        again = await h.container.ingest([make_incoming(source="forum", external_id="77", text=TOM_TEXT, **TOM)])
        assert again.new_ids == [] and again.duplicates == 1
        fresh = await h.container.ingest([make_incoming(source="forum", external_id="95", text="Broken again", **TOM)])
        shown = await h.container.bus.handle(c.Show(fresh.new_ids[0], alice))
        assert shown.card is not None and shown.card.author == "Tom W." and shown.card.status == "open"


def test_quotes_of_the_customer_are_redacted_as_whole_words_and_quote_lines() -> None:
    conversation = Conversation(id=1, source="s", external_id="e", author_name="Al B.", text="The lid cracked on day two. Help")
    words = erasure.needles(conversation)
    quoted = "Also, al b. wrote: the lid cracked on day two.\n> The lid cracked, Help me\nAl B is upset; help him"
    # In a reply or note on the erased conversation, every quote line is the customer's.
    assert erasure.redact(quoted, words, quotes=True) == "Also, [erased] wrote: [erased]\n> [erased]\n[erased] is upset; help him"
    assert erasure.redact("> The lid cracked, Help me", words) == "> The lid cracked, Help me"


RETENTION_CONFIG = """
[unsilo]
retain_days = 30

[departments.triage]
managers = ["dana"]

[[feeds]]
name = "reviews"
url = "https://reviews.example.com/feed"
retain_days = 7
"""


async def test_retention_erases_closed_conversations_past_their_period_once_across_three_replicas(tmp_path: Path) -> None:
    schema_name = await _postgres_schema(migrated=True)
    url = f"{PG_URL}?search_path={schema_name}"
    (tmp_path / "unsilo.toml").write_text(RETENTION_CONFIG)
    config = load_config(tmp_path / "unsilo.toml")
    replicas = [build(Settings(database_url=url), config=config) for _ in range(3)]
    try:
        await replicas[0].prepare()
        bus, dana = replicas[0].bus, c.Actor("cli", "dana")
        ids = (
            await replicas[0].ingest(
                [
                    make_incoming(source="reviews", external_id="r1", text="reviews: closed 10 days ago", author_name="Ann"),
                    make_incoming(source="forum", external_id="f1", text="forum: closed 10 days ago", author_name="Bea"),
                    make_incoming(source="forum", external_id="f2", text="forum: closed 40 days ago", author_name="Cy"),
                    make_incoming(source="forum", external_id="f3", text="forum: open for 40 days", author_name="Di"),
                ]
            )
        ).new_ids
        for cid in ids[:2]:
            await bus.handle(c.Claim(cid, dana))
            await bus.handle(c.Resolve(cid, dana, "answered"))
        await bus.handle(c.Dismiss(ids[2], dana, "spam"))
        now = replicas[0].clock()
        async with replicas[0].uow() as uow:
            for cid, days in zip(ids, (10, 10, 40, 40), strict=True):
                values = (
                    {"resolved_at": now - timedelta(days=days)} if cid != ids[3] else {"ingested_at": now - timedelta(days=40)}
                )
                await uow.session.exec(update(Conversation).where(Conversation.id == cid).values(**values))  # type: ignore[call-overload]
            await uow.commit()

        due = due_time(RETENTION_TRIGGER, now)
        assert due <= now and now - due < timedelta(days=1)
        schedulers = [Scheduler(r, holder=f"replica-{i}") for i, r in enumerate(replicas)]
        ran = await asyncio.gather(*(s.run_retention(due_at=due) for s in schedulers))
        assert sorted(ran) == [False, False, True]
        assert await asyncio.gather(*(s.run_retention(due_at=due) for s in schedulers)) == [False] * 3

        async with replicas[1].uow() as uow:
            rows = {cv.id: cv for cv in (await uow.session.exec(select(Conversation))).scalars()}
            erased = [
                (e.conversation_id, e.data["reason"])
                for e in (await uow.session.exec(select(Event))).scalars()
                if e.kind == "erased"
            ]
            runs = [(r.job, r.outcome) for r in (await uow.session.exec(select(JobRun))).scalars()]
            card = (await bus.handle(c.Show(ids[0], dana))).card
        assert sorted(erased) == [(ids[0], "retention (7 days)"), (ids[2], "retention (30 days)")]
        assert [rows[i].text == "" and rows[i].author_name == "" for i in ids] == [True, False, True, False]
        assert runs == [("retention", "erased 2 conversation(s)")]
        assert card is not None and card.text == f"Erased: retention (7 days), {due:%Y-%m-%d}" and card.author == "(erased)"
    finally:
        for replica in replicas:
            await replica.close()
        await _drop_schema(schema_name)


@pytest.mark.parametrize(
    ("snippet", "message"),
    [
        ("[unsilo]\nretain_days = 0", "unsilo.retain_days: must be a whole number of days >= 1 (got 0)"),
        (
            '[[feeds]]\nname = "x"\nurl = "https://x.example/f"\nretain_days = "30"',
            "feeds[1].retain_days: must be a whole number",
        ),
    ],
)
def test_a_retention_that_is_not_a_positive_number_of_days_is_refused_clearly(tmp_path: Path, snippet: str, message: str) -> None:
    (tmp_path / "unsilo.toml").write_text(snippet)
    with pytest.raises(ConfigError) as refused:
        load_config(tmp_path / "unsilo.toml")
    assert message in str(refused.value)


CLI_CONFIG = """
[unsilo]
admins = ["root"]
retain_days = 90

[departments.triage]

[[feeds]]
name = "reviews"
url = "https://reviews.example.com/feed"
retain_days = 14
"""


def test_unsilo_erase_lists_with_dry_run_refuses_non_admins_and_erases(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "unsilo.toml").write_text(CLI_CONFIG)
    (tmp_path / "posts.json").write_text(
        json.dumps(
            {
                "version": "https://jsonfeed.org/version/1.1",
                "title": "t",
                "items": [
                    {
                        "id": "p1",
                        "content_text": "Quixotic kettle",
                        "url": "https://forum.example/t/77",
                        "authors": [{"name": "Tom W."}],
                    },
                    {"id": "p2", "content_text": "another post", "authors": [{"name": "Ann"}]},
                ],
            }
        )
    )
    common = ["--database-url", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}", "--config", str(tmp_path / "unsilo.toml")]
    assert main([*common, "ingest", str(tmp_path / "posts.json"), "--source", "reviews"]) == 0
    capsys.readouterr()

    assert main([*common, "erase", "--author", "tom w.", "--reason", "GDPR #5", "--dry-run", "--as", "root"]) == 0
    listed = capsys.readouterr().out
    assert "Would erase the customer data of 1 conversation" in listed and "#1 (reviews, open): author name, text, link" in listed
    assert main([*common, "erase", "--author", "Tom W.", "--reason", "GDPR #5", "--as", "mallory"]) == 1
    assert capsys.readouterr().err.strip() == "only admins can erase customer data; ask one to add you to [unsilo] admins"
    assert main([*common, "erase", "--author", "Tom W.", "--reason", "GDPR #5", "--as", "root"]) == 0
    assert "Erased the customer data of 1 conversation: #1" in capsys.readouterr().out
    assert main([*common, "show", "1"]) == 0
    shown = capsys.readouterr().out
    assert "Erased on request" in shown and "Quixotic" not in shown and "Tom" not in shown

    assert main([*common, "sources"]) == 0
    sources = capsys.readouterr().out
    assert "keeps text 14 days" in sources
    with pytest.raises(SystemExit) as usage:
        main([*common, "erase", "--reason", "x", "--as", "root"])
    assert (
        usage.value.code == 2
        and "one of the arguments --author --handle --url --conversation is required" in capsys.readouterr().err
    )
