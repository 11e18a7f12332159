"""Rights come only from verified identities: names people choose never make them managers or
admins, and one person's accounts (linked by a verified email or by `[people]`) are one person
for every right and for the four-eyes check. On SQLite and PostgreSQL, through the bus."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from sqlmodel import select

from bot import commands as c
from bot.bootstrap import Container, load_config
from bot.domain import Forbidden
from bot.ingest import make_incoming
from bot.policy import identify
from storage.models import Person
from tests.conftest import ROOT

CONFIG = """
[unsilo]
admins = ["slack:UADMIN", "ada@example.com"]

[people.dana]
slack = "UDANA"
cli = "dana"
teams = "aad-dana"

[departments.triage]
managers = ["carol"]

[departments.legal]
managers = ["dana", "lena@example.com"]

[[rules]]
name = "legal"
departments = ["legal"]
any = ["lawyer"]
sensitive = true
"""


@pytest.fixture
async def store(make_container: Callable[..., Container], tmp_path: Path) -> AsyncIterator[Container]:
    path = tmp_path / "identity.toml"
    path.write_text(CONFIG)
    container = make_container(config=load_config(path))
    await container.prepare()
    yield container
    await container.close()


async def conversation(container: Container, text: str = "my lawyer will call you", external_id: str = "1") -> int:
    report = await container.ingest([make_incoming(source="reviews", external_id=external_id, text=text, author_name="Priya")])
    return report.new_ids[0]


async def test_display_names_and_usernames_grant_no_rights(store: Container) -> None:
    cid = await conversation(store)
    impostors = [
        c.Actor("slack", "UCAROL2", name="carol"),  # a Slack user who named themselves like a manager
        c.Actor("teams", "aad-guest", name="Dana"),  # a Teams guest displayed as the legal manager
        c.Actor("teams", "aad-other", name="slack:UADMIN"),  # a display name shaped like an admin's id
        c.Actor("teams", "aad-third", name="ada@example.com"),  # ...or like an admin's email
        c.Actor("slack", "dana"),  # a Slack user whose *id* equals a CLI manager's login
    ]
    for actor in impostors:
        with pytest.raises(Forbidden):
            await store.bus.handle(c.Dismiss(cid, actor, "spam"))
        with pytest.raises(Forbidden, match="only admins"):
            await store.bus.handle(c.LinkChannel(actor, "legal", "C0EVIL", None))
    # The real ones: the CLI login, and the Slack and Teams accounts [people.dana] links to it.
    for actor in (c.Actor("cli", "dana"), c.Actor("slack", "UDANA", name="Dana"), c.Actor("teams", "aad-dana")):
        async with store.uow() as uow:
            who = await identify(uow, actor)
            assert "dana" in who.keys and "slack:udana" in who.keys
    assert (await store.bus.handle(c.Dismiss(cid, c.Actor("slack", "UDANA"), "spam"))) is not None


async def test_an_email_from_the_platform_directory_grants_what_the_config_lists(store: Container) -> None:
    cid = await conversation(store)
    lena_slack = c.Actor("slack", "ULENA", name="Lena", email="Lena@Example.com")
    await store.bus.handle(c.Claim(cid, lena_slack))
    await store.bus.handle(c.Release(cid, c.Actor("teams", "aad-lena", name="Lena B.", email="lena@example.com")))
    async with store.uow() as uow:
        slack_who = await identify(uow, c.Actor("slack", "ULENA"))
        teams_who = await identify(uow, c.Actor("teams", "aad-lena"))
    assert slack_who.id == teams_who.id and "lena@example.com" in slack_who.keys
    # Without the directory's word the same account has no email and no rights.
    with pytest.raises(Forbidden):
        await store.bus.handle(c.Dismiss(cid, c.Actor("slack", "UOTHER", name="lena@example.com"), "spam"))
    assert (
        await store.bus.handle(c.LinkChannel(c.Actor("slack", "UADA", email="ada@example.com"), "legal", "C0LEGAL", None))
        is not None
    )


async def test_a_new_users_first_commands_at_once_are_one_person(store: Container) -> None:
    """Found by the kill -9 soak: on PostgreSQL two concurrent first commands of a new account each
    created a person; the account was linked to one, and the claim credited to the other, so the
    claimer was refused their own reply ("only #7's owner (Alice) ... can reply")."""
    ids = [await conversation(store, external_id=str(n)) for n in range(6)]
    first = c.Actor("cli", "newcomer", "New Comer")
    await asyncio.gather(*(store.bus.handle(c.Claim(cid, first)) for cid in ids))
    async with store.uow() as uow:
        who = await identify(uow, first)
        owners = {(await uow.conversations.get(cid)).owner_id for cid in ids}  # type: ignore[union-attr]
        people = (await uow.session.exec(select(Person).where(Person.name == "New Comer"))).all()
    assert owners == {who.id} and len(people) == 1
    for cid in ids:  # the owner may go on with each of them
        assert await store.bus.handle(c.Release(cid, first)) is not None


async def test_four_eyes_compares_persons_not_accounts(store: Container) -> None:
    cid = await conversation(store)
    await store.bus.handle(c.Claim(cid, c.Actor("slack", "UDANA", name="Dana")))
    await store.bus.handle(c.ReplyToCustomer(cid, c.Actor("slack", "UDANA", name="Dana"), "We will call you."))
    for second_account in (c.Actor("cli", "dana"), c.Actor("teams", "aad-dana")):
        with pytest.raises(Forbidden, match="you wrote the reply"):
            await store.bus.handle(c.ApproveReply(cid, second_account))
    # Linked by email after the fact: Lena's Teams account is found to be the Slack author's person.
    other = await conversation(store, external_id="2")
    await store.bus.handle(c.Claim(other, c.Actor("slack", "ULENA", name="Lena")))
    await store.bus.handle(c.ReplyToCustomer(other, c.Actor("slack", "ULENA"), "Our lawyer agrees."))
    await store.bus.handle(c.ShowQueue(c.Actor("teams", "aad-lena", email="lena@example.com"), mine=True))  # first sight
    await store.bus.handle(c.ShowQueue(c.Actor("slack", "ULENA", email="lena@example.com"), mine=True))  # Slack vouches
    with pytest.raises(Forbidden, match="you wrote the reply"):
        await store.bus.handle(c.ApproveReply(other, c.Actor("teams", "aad-lena")))
    # The merged person still owns what the Slack account claimed, and a real second approver decides.
    assert await store.bus.handle(c.ApproveReply(other, c.Actor("cli", "dana"))) is not None


async def test_escalations_mention_accounts_linked_by_the_config_never_namesakes(store: Container) -> None:
    await conversation(store)
    await store.bus.handle(c.ShowQueue(c.Actor("slack", "UCAROL2", name="carol"), mine=True))
    async with store.uow() as uow:
        mentions = await uow.people.mentionable(["carol", "dana", "slack:UNEW"])
    assert ("slack:UCAROL2", "carol") not in mentions  # "carol" is a CLI login, not this Slack user
    assert ("slack:UDANA", "dana") in mentions and ("teams:aad-dana", "dana") in mentions
    assert ("slack:UNEW", "") in mentions


def test_config_check_warns_about_plain_name_managers(tmp_path: Path) -> None:
    path = tmp_path / "unsilo.toml"
    path.write_text(CONFIG)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(path), "config", "check"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "'carol' is a plain name" in warnings[0] and "[people.carol]" in warnings[0]
    assert ":11: departments.triage.managers" in warnings[0]  # file:line: key, like every problem
    example = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(ROOT / "unsilo.example.toml"), "config", "check"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert example.returncode == 0 and "warning:" not in example.stderr, example.stderr


def test_people_entries_are_checked(tmp_path: Path) -> None:
    from bot.config import ConfigError

    path = tmp_path / "bad.toml"
    path.write_text('[people.x]\nslack = "U1"\n[people.y]\nslack = "U1"\nemail = "nope"\n[people.z]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert "already listed under [people.x]" in text and "'nope' is not an email" in text
    assert "list at least one of slack, teams, web, cli or email" in text


@pytest.mark.parametrize("email", ["ivy@example.com", None])
async def test_a_new_persons_first_two_actions_at_once_both_succeed_as_one_person(store: Container, email: str | None) -> None:
    """A person's first actions arrive together (two windows, or retries released at once when a stalled
    store answers again): both created the person, and the loser failed (unique email) or became a
    second person, without an account, owning what it claimed."""
    first, second = await conversation(store, "refund please"), await conversation(store, "refund too", "2")
    async with store.uow() as uow:
        people_before = len((await uow.session.exec(select(Person))).all())
    actor = c.Actor("slack", "UNEW", name="ivy", email=email)
    results = await asyncio.gather(store.bus.handle(c.Claim(first, actor)), store.bus.handle(c.Claim(second, actor)))
    assert [r.text for r in results if r] == [f"You claimed #{first}", f"You claimed #{second}"]
    async with store.uow() as uow:
        person = await uow.people.by_identity("slack", "UNEW")
        assert person is not None
        assert {(await uow.conversations.get(cid)).owner_id for cid in (first, second)} == {person.id}
        assert len((await uow.session.exec(select(Person))).all()) == people_before + 1


async def test_two_accounts_learning_one_email_at_once_become_one_person(store: Container) -> None:
    """A Slack and a Teams account of one person, both seen before without an email (their directory did not
    say), act at once now that it does: each tries to take the email; the later one merges into the earlier
    (PostgreSQL: the unique email makes it wait, then fail, inside a savepoint)."""
    first, second = await conversation(store, "refund please"), await conversation(store, "refund too", "2")
    slack_account, teams_account = c.Actor("slack", "UIVY", name="Ivy"), c.Actor("teams", "aad-ivy", name="Ivy")
    for actor, cid in ((slack_account, first), (teams_account, second)):
        await store.bus.handle(c.AddNote(cid, actor, "seen"))  # both known, no email
    with_email = [replace(a, email="ivy@example.com") for a in (slack_account, teams_account)]
    results = await asyncio.gather(
        *(store.bus.handle(c.Claim(cid, a)) for cid, a in zip((first, second), with_email, strict=True))
    )
    assert [r.text for r in results] == [f"You claimed #{first}", f"You claimed #{second}"]
    async with store.uow() as uow:
        on_slack = await uow.people.by_identity("slack", "UIVY")
        on_teams = await uow.people.by_identity("teams", "aad-ivy")
        assert on_slack is not None and on_teams is not None and on_slack.id == on_teams.id
        assert on_slack.email == "ivy@example.com"
        assert {(await uow.conversations.get(cid)).owner_id for cid in (first, second)} == {on_slack.id}
