"""One error path at the edge (issue 13.4): a click is answered from one unit of work, refusal included;
a handler that fails is logged once, with its traceback, and the person gets the one apology."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from adapters.teams import render
from bot import bus as bus_module
from bot import commands as c
from bot.edge import SORRY
from bot.views import Result
from storage.uow import UnitOfWork
from tests.slack_support import running_slack
from tests.teams_support import running_teams
from tests.test_slack import button
from tests.test_slack import ingest as slack_ingest
from tests.test_teams import card_text
from tests.test_teams import ingest as teams_ingest


@pytest.fixture
def units_of_work(monkeypatch: pytest.MonkeyPatch) -> list[UnitOfWork]:
    """Every unit of work entered from now on."""
    entered: list[UnitOfWork] = []
    enter = UnitOfWork.__aenter__

    async def counted(self: UnitOfWork) -> UnitOfWork:
        entered.append(self)
        return await enter(self)

    monkeypatch.setattr(UnitOfWork, "__aenter__", counted)
    return entered


@pytest.fixture
def claims_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Claim handler fails the way a bug does."""

    async def broken(cmd: c.Claim, uow: UnitOfWork, **_: Any) -> Result:
        raise RuntimeError("claim handler exploded")

    monkeypatch.setitem(bus_module.HANDLERS, c.Claim, broken)


def logged_failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info and "claim handler exploded" in str(r.exc_info[1])]


async def test_a_refused_teams_click_is_answered_from_one_unit_of_work_with_the_card_show_gives(
    tmp_path: Path, units_of_work: list[UnitOfWork]
) -> None:
    async with running_teams(tmp_path) as teams:
        cid = await teams_ingest(teams)
        status, _ = await teams.invoke("claim", cid, user="aad-alice", name="Alice")
        assert status == 200
        units_of_work.clear()
        status, body = await teams.invoke("claim", cid, user="aad-bob", name="Bob")
        assert status == 200
        assert len(units_of_work) == 1
        assert f"#{cid} is already claimed by Alice" in card_text(body["value"])
        # The card under the refusal is the one `Show` gives.
        shown = await teams.container.bus.handle(c.Show(cid, c.Actor("teams", "aad-bob")))
        expected = render.result_card(
            Result(f"#{cid} is already claimed by Alice", card=shown.card),
            outcomes=teams.container.config.outcomes,
            departments=teams.container.config.department_names(),
        )
        assert body["value"] == expected


async def test_a_failing_handler_behind_a_teams_click_is_logged_once_and_the_person_gets_the_apology(
    tmp_path: Path, claims_fail: None, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_teams(tmp_path) as teams:
        cid = await teams_ingest(teams)
        caplog.set_level(logging.INFO)
        status, body = await teams.invoke("claim", cid, user="aad-bob", name="Bob")
        assert status == 200 and body["statusCode"] == 200
        assert SORRY in card_text(body["value"]) and f"#{cid}" in card_text(body["value"])  # the card stays, apology on top
        (failure,) = logged_failures(caplog)
        assert failure.levelno == logging.ERROR
        assert "Claim" in failure.getMessage() and "aad-bob" in failure.getMessage()


async def test_a_failing_handler_behind_a_slack_button_is_logged_once_and_the_person_gets_the_apology(
    tmp_path: Path, claims_fail: None, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_slack(tmp_path) as slack:
        cid = await slack_ingest(slack, "My parcel arrived broken")
        caplog.set_level(logging.INFO)
        status, _, _ = await slack.click(*button("claim", cid), user="UBOB")
        assert status == 200
        (told,) = await slack.slack.wait_for("chat.postEphemeral", timeout=5)
        assert told.args["user"] == "UBOB" and told.args["text"] == SORRY
        (failure,) = logged_failures(caplog)
        assert failure.levelno == logging.ERROR
        assert "Claim" in failure.getMessage() and "UBOB" in failure.getMessage()
