"""A manager's dashboard, hand-computed, on SQLite and on PostgreSQL (the same numbers on both).

Two weeks of legal's work are played through the bus on a clock moved by hand; the dashboard
up to Monday 23 Nov 2026 00:00 UTC (7 days, 2 weeks) is checked against the arithmetic below.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from adapters.web.charts import Series, bar_chart, series_chart, sla_chart
from bot import commands as c
from bot.bootstrap import Container, load_config
from bot.digest import build_digest, by_department, format_duration
from bot.ingest import make_incoming
from bot.policy import identify
from storage.dashboard import Dashboard, Day, build_dashboard
from storage.reports import Participant, Timing
from tests.conftest import FakeClock
from tests.test_charts import SVG
from tests.test_digest import CONFIG, dana, lee, walt  # legal (SLA 30 min), ops; dana and lee of legal, walt of warehouse

UNTIL = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # a Monday: the days are 16..22 Nov, the weeks 9.. and 16.. Nov


def at(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC)


@pytest.fixture
async def played(make_container: Callable[..., Container], tmp_path: Path) -> AsyncIterator[Container]:
    path = tmp_path / "dashboard.toml"
    path.write_text(CONFIG)
    clock = FakeClock(at(9))
    container = make_container(config=load_config(path), clock=clock)
    await container.prepare()
    async with container.uow() as uow:
        for actor, department in ((dana, "legal"), (lee, "legal"), (walt, "warehouse")):
            (await identify(uow, actor)).person.department = department
        await uow.commit()
    ids: dict[str, int] = {}

    async def ingest(name: str, when: datetime, text: str) -> None:
        clock.now = when
        ids[name] = (await container.ingest([make_incoming(source="reviews", external_id=name, text=text)])).new_ids[0]

    async def do(when: datetime, command: Callable[[int], c.Command], name: str) -> None:
        clock.now = when
        await container.bus.handle(command(ids[name]))

    async def reply(when: datetime, actor: c.Actor, name: str) -> None:
        await do(when, lambda i: c.ReplyToCustomer(i, actor, "On it"), name)
        await do(when, lambda i: c.MarkPosted(i, actor), name)  # it reached the customer: first reply

    # Week 0 (9..15 Nov), before the days.
    await ingest("A", at(10, 10), "My lawyer asks")
    await do(at(10, 10, 20), lambda i: c.Claim(i, lee), "A")  # 20 min to claim
    await reply(at(10, 11), lee, "A")  # 60 min to first reply
    await ingest("B", at(12, 8), "A lawyer question")
    await do(at(12, 9), lambda i: c.Claim(i, lee), "B")  # 60 min to claim
    await do(at(12, 10), lambda i: c.Resolve(i, lee, "fixed"), "B")  # closed before the days: in no day
    # Week 1 = the 7 days (16..22 Nov).
    await do(at(16, 9), lambda i: c.Resolve(i, dana, "answered"), "A")  # day 0
    await ingest("C", at(16, 9), "Lawyer letter")  # day 0
    await do(at(16, 9, 10), lambda i: c.Claim(i, lee), "C")  # 10 min
    await reply(at(16, 9, 40), lee, "C")  # 40 min
    await do(at(17, 12), lambda i: c.Resolve(i, lee, "answered"), "C")  # day 1
    await ingest("D", at(17, 23, 59, 59), "My lawyer, just before midnight")  # day 1 (its last second)
    await do(at(18, 0, 30), lambda i: c.Claim(i, walt), "D")  # 1801 s: one second past the SLA
    await reply(at(18, 2), walt, "D")  # 7201 s
    await ingest("E", at(18, 12), "Lawyer spam")  # day 2
    await do(at(18, 13), lambda i: c.Dismiss(i, dana, "spam"), "E")  # day 2
    await ingest("F", at(22, 23), "Lawyer, unclaimed")  # day 6
    await ingest("G", UNTIL, "A lawyer at the end")  # at `until`: after the window
    await ingest("H", at(17, 9), "Where is my parcel?")  # ops: not legal's
    await do(at(17, 9, 5), lambda i: c.Claim(i, walt), "H")
    clock.now = UNTIL
    yield container
    await container.close()


async def dashboard_of(container: Container, department: str = "legal", **kwargs: int) -> Dashboard | None:
    async with container.uow() as uow:
        return await build_dashboard(uow, department, until=UNTIL, **kwargs)


async def test_new_and_resolved_per_day_and_the_timings_per_week_against_the_sla(played: Container) -> None:
    board = await dashboard_of(played, days=7, weeks=2)
    assert board is not None
    assert (board.department, board.sla_minutes, board.until) == ("legal", 30, UNTIL)
    assert board.days == (
        Day(at(16), new=1, resolved=1),  # C in, A out
        Day(at(17), new=1, resolved=1),  # D in (23:59:59), C out
        Day(at(18), new=1, dismissed=1),  # E in and dismissed
        Day(at(19)),
        Day(at(20)),
        Day(at(21)),
        Day(at(22), new=1),  # F; G (at `until`) and ops' H count nowhere
    )

    assert [w.start for w in board.weeks] == [at(9), at(16)]
    week0, week1 = board.weeks
    # Claims 1200 s and 3600 s: median 2400, p90 = 1200 + 0.9 * 2400; one within the 1800 s SLA.
    assert week0.to_claim == Timing(count=2, median=2400.0, p90=pytest.approx(3360.0), within_sla=1)
    assert week0.to_first_reply == Timing(count=1, median=3600.0, p90=3600.0, within_sla=0)
    # Claims 600 s and 1801 s; first replies 2400 s and 7201 s (percentile_cont's interpolation).
    assert week1.to_claim == Timing(count=2, median=pytest.approx(1200.5), p90=pytest.approx(1680.9), within_sla=1)
    assert week1.to_first_reply == Timing(count=2, median=pytest.approx(4800.5), p90=pytest.approx(6720.9), within_sla=0)


async def test_totals_are_the_digest_of_the_days_outcomes_and_who_took_part(played: Container) -> None:
    board = await dashboard_of(played, days=7, weeks=2)
    assert board is not None
    totals = board.totals
    assert totals.outcomes == (("answered", 2),)  # A and C; B was resolved before the days
    assert totals.participants == (
        Participant(person_id=totals.participants[0].person_id, name="dana", department="legal", resolved=1),
        Participant(person_id=totals.participants[1].person_id, name="lee", department="legal", claimed=1, replied=1, resolved=1),
        Participant(person_id=totals.participants[2].person_id, name="walt", department="warehouse", claimed=1, replied=1),
    )
    async with played.uow() as uow:
        digest = await build_digest(uow, department="legal", since=UNTIL - timedelta(days=7), until=UNTIL)
    assert (totals.new, totals.resolved, totals.dismissed, totals.still_open) == (4, 2, 1, 2)
    assert (digest.new, digest.outcomes, digest.to_claim, digest.participants) == (
        totals.new,
        totals.outcomes,
        totals.to_claim,
        totals.participants,
    )
    # The week of the dashboard that is the digest's week has the digest's timings.
    assert board.weeks[-1].to_claim == digest.to_claim
    assert board.weeks[-1].to_first_reply == digest.to_first_reply


async def test_another_department_an_unknown_one_and_an_empty_week(played: Container) -> None:
    ops = await dashboard_of(played, "ops", days=7, weeks=1)
    assert ops is not None
    assert sum(d.new for d in ops.days) == 1 and ops.days[1].new == 1  # H, on 17 Nov
    assert ops.weeks[0].to_claim == Timing(count=1, median=300.0, p90=300.0, within_sla=1)  # ops' SLA: 240 min
    assert await dashboard_of(played, "nobody") is None
    board = await dashboard_of(played, days=7, weeks=3)  # a week with nothing is there, empty
    assert board is not None
    assert board.weeks[0].start == at(2)
    assert board.weeks[0].to_claim == Timing(count=0, median=None, p90=None)
    assert board.weeks[0].to_first_reply.count == 0
    assert board.weeks[2].to_claim.count == 2


async def test_the_console_draws_the_dashboard_with_the_charts(played: Container) -> None:
    """The wiring /console/dashboard does: each figure into its chart (well-formed SVG, saying the values)."""
    board = await dashboard_of(played, days=7, weeks=2)
    assert board is not None
    days = [f"{d.start.day} {d.start:%b}" for d in board.days]
    weeks = [f"week of {w.start.day} {w.start:%b}" for w in board.weeks]
    drawn = {
        "days": series_chart(
            "New and resolved per day",
            days,
            [Series("new", [d.new for d in board.days]), Series("resolved", [d.resolved for d in board.days])],
        ),
        "claim": sla_chart(
            "Time to claim",
            weeks,
            [w.to_claim.median for w in board.weeks],
            [w.to_claim.p90 for w in board.weeks],
            sla=board.sla_minutes * 60,
            fmt=format_duration,
        ),
        "outcomes": bar_chart("Outcomes", board.totals.outcomes),
        "participation": bar_chart(
            "Participation by department", [(p.department, p.actions) for p in by_department(board.totals.participants)]
        ),
    }
    desc = {name: "".join(next(ET.fromstring(svg).iter(f"{SVG}desc")).itertext()) for name, svg in drawn.items()}
    assert desc["days"].startswith("16 Nov: new 1, resolved 1; 17 Nov: new 1, resolved 1; 18 Nov: new 1, resolved 0;")
    assert desc["claim"] == "SLA 30 min. week of 9 Nov: median 40 min, p90 56 min; week of 16 Nov: median 20 min, p90 28 min."
    assert desc["outcomes"] == "answered: 2."
    assert desc["participation"] == "legal: 4; warehouse: 2."


async def test_a_department_with_no_claim_and_no_reply_in_its_weeks_has_empty_timings(played: Container) -> None:
    """The console shows a quiet department's dashboard (it used to fail on SQLite: no duration to rank)."""
    async with played.uow() as uow:
        quiet = await build_dashboard(uow, "legal", until=at(9), days=7, weeks=2)  # before anything happened
    assert quiet is not None
    assert [w.to_claim for w in quiet.weeks] == [Timing(count=0, median=None, p90=None)] * 2
    assert [w.to_first_reply.count for w in quiet.weeks] == [0, 0] and sum(d.new for d in quiet.days) == 0
