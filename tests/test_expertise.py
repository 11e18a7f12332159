"""Who to turn to for what (issue 15, point 4): people declare topics (`expert add gdpr, refunds`,
`expert remove …`, `experts`) on Slack, Teams and the CLI, and `who knows <words>` ranks people by what
the log says they did to conversations like these (resolved, replied, approved, noted; fading with age)
and by what they declared, with the evidence, across departments and platforms."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlmodel import select

from bot import commands as c
from bot.bootstrap import Container, load_config
from bot.cli import main
from bot.config import ConfigError
from bot.domain import InvalidInput
from bot.ingest import make_incoming
from bot.textcommands import parse
from storage.models import Event
from tests.conftest import TEST_CONFIG, FakeClock
from tests.slack_support import SlackHarness
from tests.teams_support import running_teams
from tests.test_teams import card_text, sent_cards

ROOT = Path(__file__).resolve().parent.parent
RECENT = c.Actor("teams", "aad-rita", name="Rita")  # a Teams user
OLD = c.Actor("slack", "UOLIVER", name="Oliver")  # a Slack user
DECLARER = c.Actor("slack", "UDANA", name="Dana")
OTHER = c.Actor("cli", "otto", name="Otto")
DANA = '[people.dana]\nslack = "dana"\n'


async def _gdpr(container: Container, n: int) -> int:
    text = f"GDPR request {n}: please delete my account data"
    return (await container.ingest([make_incoming(source="forum", external_id=f"g{n}", text=text)])).new_ids[0]


async def _resolve(container: Container, cid: int, actor: c.Actor) -> None:
    await container.bus.handle(c.Claim(cid, actor))
    await container.bus.handle(c.Resolve(cid, actor, "answered"))


async def _who(container: Container, words: str) -> list[str]:
    result = await container.bus.handle(c.WhoKnows(OTHER, tuple(words.split())))
    return list(result.notice.lines) if result.notice is not None else [result.text]


async def test_recent_resolutions_rank_above_old_ones_and_above_a_declaration(make_container: Callable[..., Container]) -> None:
    clock = FakeClock()
    container = make_container(clock=clock)
    await container.prepare()
    try:
        for n in range(5):  # a year ago, Oliver (Slack) resolved five GDPR requests
            await _resolve(container, await _gdpr(container, n), OLD)
        clock.advance(days=335)
        for n in range(5, 10):  # over the last month, Rita (Teams) resolved five
            await _resolve(container, await _gdpr(container, n), RECENT)
            clock.advance(days=6)
        parcel = (await container.ingest([make_incoming(source="forum", external_id="p1", text="my parcel never came")])).new_ids[
            0
        ]  # tagged "delivery" by the rules; the word is nowhere in its text
        await _resolve(container, parcel, OLD)
        unrelated = (await container.ingest([make_incoming(source="forum", external_id="u1", text="broken kettle")])).new_ids[0]
        await _resolve(container, unrelated, OTHER)
        await container.bus.handle(c.DeclareExpertise(DECLARER, add=("GDPR", "refunds")))

        lines = await _who(container, "gdpr")
        assert [line.split(":")[0] for line in lines] == ["1. Rita", "2. Dana", "3. Oliver"], lines
        assert lines[0] == "1. Rita: resolved 5 similar, last 6 days ago", lines
        assert lines[1] == "2. Dana: declared: gdpr" and lines[2].startswith("3. Oliver: resolved 5 similar, last 36"), lines

        by_tag = await _who(container, "delivery")
        assert by_tag == ["1. Oliver: resolved 1 similar, last today"], by_tag
        assert (await _who(container, "zanzibar")) == [
            "Nobody yet for “zanzibar”: nobody handled such a conversation or declared the topic"
        ]
    finally:
        await container.close()


def test_expert_and_who_knows_read_as_commands_or_say_how_to_type_them() -> None:
    actor = c.Actor("slack", "U1")
    assert parse("expert add gdpr, data protection", actor) == c.DeclareExpertise(actor, add=("gdpr", "data protection"))
    assert parse("expert remove refunds", actor) == c.DeclareExpertise(actor, remove=("refunds",))
    assert parse("experts", actor) == c.ShowExpertise(actor)
    assert parse("who knows GDPR fines", actor) == c.WhoKnows(actor, ("GDPR", "fines"))
    for wrong in ("expert gdpr", "expert add", "who gdpr", "who knows"):
        with pytest.raises(InvalidInput, match="usage: `@Unsilo (expert|who)"):
            parse(wrong, actor, prefix="@Unsilo")


async def test_topics_declared_on_slack_and_teams_are_found_from_either(tmp_path: Path, database_url: str) -> None:
    async with running_teams(tmp_path, with_slack=True, database_url=database_url) as h:
        assert h.slack is not None
        slack = SlackHarness(container=h.container, slack=h.slack, url=h.url, http=h.http)
        status, answer, _ = await slack.command("expert add GDPR, refunds, #Fines", user="UALICE")
        assert status == 200 and "Added gdpr, refunds, fines. Your topics: gdpr, refunds, fines" in answer, answer
        _, answer, _ = await slack.command("expert remove refunds, payroll", user="UALICE")
        assert "Removed refunds. You had not declared payroll. Your topics: gdpr, fines" in answer, answer
        _, answer, _ = await slack.command("experts", user="UALICE")
        assert "Your topics: gdpr, fines" in answer, answer
        _, answer, _ = await slack.command("who gdpr", user="UALICE")
        assert "usage: `/unsilo who knows words`" in answer, answer

        await h.mention("expert add gdpr", user="aad-bob", name="Bob")
        assert "Your topics: gdpr" in card_text(sent_cards(h)[-1])
        await h.mention("who knows gdpr", user="aad-bob", name="Bob")
        answer = card_text(sent_cards(h)[-1])
        assert "Who knows “gdpr”: 2 people" in answer and "Bob: declared: gdpr" in answer, answer
        url = h.slack.response_url()
        _, title, _ = await slack.command("who knows gdpr", user="UALICE", response_url=url)
        blocks = json.dumps([r.get("blocks") for r in h.slack.responses if r["url"] == url], ensure_ascii=False)
        assert title == "Who knows “gdpr”: 2 people" and "1. Bob: declared: gdpr" in blocks, blocks

        async with h.container.uow() as uow:
            logged = (await uow.session.exec(select(Event).where(Event.kind == "expertise_declared"))).all()
        assert [e.data for e in logged] == [
            {"added": ["gdpr", "refunds", "fines"], "removed": []},
            {"added": [], "removed": ["refunds"]},
            {"added": ["gdpr"], "removed": []},
        ]


def test_the_cli_declares_lists_and_asks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "unsilo.example.toml").write_text((ROOT / "unsilo.example.toml").read_text())
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "UNSILO_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    assert main(["expert", "add", "gdpr,", "refunds", "--as", "carol"]) == 0
    assert main(["experts", "--as", "carol"]) == 0
    assert main(["who", "knows", "refunds", "--as", "alice"]) == 0
    out = capsys.readouterr().out
    assert "Your topics: gdpr, refunds" in out and "1. Carol Jones (support, triage): declared: refunds" in out, out
    assert main(["who", "refunds"]) == 1
    assert "usage: `unsilo who knows words`" in capsys.readouterr().err


async def test_the_digest_says_who_helped_outside_their_department(
    make_container: Callable[..., Container], tmp_path: Path
) -> None:
    path = tmp_path / "people.toml"
    path.write_text(TEST_CONFIG.replace(DANA, f'{DANA}department = "legal"\n'))
    container = make_container(config=load_config(path))
    await container.prepare()
    try:
        dana = c.Actor("cli", "dana", name="Dana")
        refund = (await container.ingest([make_incoming(source="forum", external_id="r1", text="refund please")])).new_ids[0]
        await _resolve(container, refund, dana)  # a support conversation: outside legal
        await _resolve(container, await _gdpr(container, 1), OTHER)
        digest = await container.bus.handle(c.ShowDigest(c.Actor("cli", "carol"), department="support"))
        assert digest.notice is not None
        assert "Helped outside their department: Dana (legal) 2 times" in digest.notice.lines, digest.notice.lines
        assert (await _who(container, "refund")) == ["1. Dana (legal): resolved 1 similar, last today"]
    finally:
        await container.close()


def test_a_persons_department_must_be_one_of_the_config(tmp_path: Path) -> None:
    path = tmp_path / "unsilo.toml"
    path.write_text(TEST_CONFIG.replace(DANA, f'{DANA}department = "leagl"\n'))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [p.key for p in caught.value.problems] == ["people.dana.department"]
    assert "no department 'leagl' is declared" in str(caught.value)
