"""A manager's weekly digest and an employee's own stats, hand-computed, on SQLite and on PostgreSQL.

One week of legal's work is played through the bus on a clock moved by hand: who claimed,
answered and closed what, and when. Every figure of the digest is then checked against
the arithmetic written out below.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot import commands as c
from bot.bootstrap import Container, load_config
from bot.digest import Digest, TeamPart, WaitingItem, build_digest, build_stats, digest_notice, format_duration
from bot.domain import NotFound
from bot.ingest import make_incoming
from bot.policy import identify
from storage.reports import Timing
from tests.conftest import FakeClock

CONFIG = """
[unsilo]
default_department = "triage"
require_claim_to_reply = false

[departments.triage]

[departments.legal]
sla_minutes = 30
managers = ["dana"]

[departments.ops]
managers = ["erin"]

[departments.hr]

[[rules]]
name = "legal"
departments = ["legal"]
any = ["lawyer"]
tags = ["legal"]

[[rules]]
name = "delivery"
departments = ["ops"]
any = ["parcel"]
"""

T0 = datetime(2026, 11, 16, 9, 0, tzinfo=UTC)  # the digest covers [T0, T0 + 7 days)
UNTIL = T0 + timedelta(days=7)
MIN = 60.0

dana = c.Actor("cli", "dana", name="dana")  # legal, manager of legal
lee = c.Actor("slack", "U0LEE", name="lee")  # legal
walt = c.Actor("teams", "aad-walt", name="walt")  # warehouse
hana = c.Actor("slack", "U0HANA", name="hana")  # hr
ursula = c.Actor("slack", "U0URSULA", name="ursula")  # no department
erin = c.Actor("cli", "erin", name="erin")  # no department, manages ops only

DEPARTMENTS = {dana: "legal", lee: "legal", walt: "warehouse", hana: "hr", ursula: None, erin: None}


@pytest.fixture
async def week(
    make_container: Callable[..., Container], tmp_path: Path
) -> AsyncIterator[tuple[Container, FakeClock, dict[str, int]]]:
    """Legal's week, played through the bus; yields the container, its clock (at the end of the week) and the ids."""
    path = tmp_path / "digest.toml"
    path.write_text(CONFIG)
    clock = FakeClock(T0 - timedelta(days=2))
    container = make_container(config=load_config(path), clock=clock)
    await container.prepare()
    async with container.uow() as uow:
        for actor, department in DEPARTMENTS.items():
            (await identify(uow, actor)).person.department = department
        await uow.commit()
    ids: dict[str, int] = {}

    def at(minutes: float) -> None:
        clock.now = T0 + timedelta(minutes=minutes)

    async def ingest(name: str, minutes: float, text: str, *tags: str) -> None:
        at(minutes)
        item = make_incoming(source="reviews", external_id=name, text=text, tags=tags, url=f"https://reviews.example.com/{name}")
        ids[name] = (await container.ingest([item])).new_ids[0]

    async def do(minutes: float, command: Callable[[int], c.Command], name: str) -> None:
        at(minutes)
        await container.bus.handle(command(ids[name]))

    # Before the period (minutes are relative to T0; negative = before it).
    await ingest("P3", -2880, "My lawyer got an answer already")
    await do(-2860, lambda i: c.Claim(i, lee), "P3")
    await do(-2800, lambda i: c.Resolve(i, lee, "answered"), "P3")  # closed before the period: counts nowhere
    await ingest("P1", -1440, "Waiting for my lawyer's letter since Sunday")  # never claimed
    await ingest("P2", -120, "A lawyer question from Sunday night")
    # The period.
    await ingest("C1", 0, "Our lawyer reviewed the contract", "contract")
    await do(10, lambda i: c.Claim(i, lee), "C1")
    await do(30, lambda i: c.Claim(i, lee), "P2")
    await do(40, lambda i: c.ReplyToCustomer(i, lee, "We'll send the signed copy"), "C1")
    await do(40, lambda i: c.MarkPosted(i, lee), "C1")  # it reached the customer
    await do(45, lambda i: c.AddNote(i, hana, "HR has the original"), "C1")
    await do(60, lambda i: c.Resolve(i, lee, "answered"), "C1")
    await ingest("C2", 60, "Contract terms, says my lawyer", "contract")
    await do(80, lambda i: c.Claim(i, dana), "C2")
    await do(90, lambda i: c.Resolve(i, lee, "no-action"), "P2")
    await do(120, lambda i: c.ReplyToCustomer(i, dana, "Clause 4 applies"), "C2")
    await do(120, lambda i: c.MarkPosted(i, dana), "C2")  # it reached the customer
    await ingest("C3", 120, "My lawyer wants my data (GDPR) and the pallet records", "gdpr")
    await do(150, lambda i: c.Claim(i, walt), "C3")
    await do(180, lambda i: c.Resolve(i, dana, "fixed"), "C2")
    await do(210, lambda i: c.ReplyToCustomer(i, walt, "Pallet records attached"), "C3")
    await do(210, lambda i: c.MarkPosted(i, walt), "C3")  # it reached the customer
    await do(300, lambda i: c.Resolve(i, walt, "answered"), "C3")
    await ingest("D1", 600, "Where is my parcel?")  # ops, not legal
    await do(610, lambda i: c.Claim(i, walt), "D1")
    await ingest("C4", 1440, "Lawyer letter attached")
    await do(1480, lambda i: c.Claim(i, lee), "C4")
    await ingest("C5", 1500, "Lawyer: please delete my data", "gdpr")
    await do(1550, lambda i: c.ReplyToCustomer(i, hana, "Deletion requested"), "C5")  # unclaimed: the reply claims it
    await do(1550, lambda i: c.MarkPosted(i, hana), "C5")  # it reached the customer
    await ingest("C6", 2880, "My lawyer   will\ncall you about the contract " + "x" * 200, "contract")
    await do(2900, lambda i: c.AddNote(i, ursula, "I know this customer"), "C6")
    await do(2950, lambda i: c.AddNote(i, ursula, "Same lawyer as last week"), "P3")  # closed before, noted now
    await ingest("C9", 3000, "My lawyer says buy cheap watches", "spam")
    await do(3100, lambda i: c.Dismiss(i, dana, "spam"), "C9")
    await ingest("C7", 10020, "<b>Lawyer</b> & co: call me")
    await ingest("C8", 10080, "A lawyer, exactly at the end of the week")  # at `until`: after the period
    clock.now = UNTIL
    yield container, clock, ids
    await container.close()


async def digest_of(container: Container, department: str) -> Digest:
    async with container.uow() as uow:
        return await build_digest(uow, department=department, since=T0, until=UNTIL)


async def test_every_figure_of_the_weekly_digest_is_the_hand_computed_one(week) -> None:
    container, _, ids = week
    digest = await digest_of(container, "legal")

    # New = ingested in [T0, UNTIL): C1 C2 C3 C4 C5 C6 C9 C7 (not P1-P3 before, not C8 at UNTIL, not D1 in ops).
    assert digest.new == 8
    # Still open at UNTIL: P1 (open), C4 (claimed), C5 (replied), C6 (open), C7 (open); unclaimed: P1, C6, C7.
    assert (digest.still_open, digest.unclaimed, digest.dismissed) == (5, 3, 1)

    # First claims in the period, minutes after ingestion: C1 10, C2 20, C3 30, C4 40, C5 50 (by its reply), P2 150.
    # Sorted seconds: 600 1200 1800 2400 3000 9000 (n = 6).
    #   median: h = 0.5 * 5 = 2.5 -> 1800 + 0.5 * (2400 - 1800) = 2100 s (35 min)
    #   p90:    h = 0.9 * 5 = 4.5 -> 3000 + 0.5 * (9000 - 3000) = 6000 s (100 min)
    #   within the 30 min SLA (<= 1800 s): 600, 1200, 1800 -> 3
    assert digest.claimed == 6
    assert digest.to_claim == Timing(count=6, median=pytest.approx(2100.0), p90=pytest.approx(6000.0), within_sla=3)

    # First replies in the period, minutes after ingestion: C1 40, C2 60, C3 90, C5 50.
    # Sorted seconds: 2400 3000 3600 5400 (n = 4).
    #   median: h = 1.5 -> 3000 + 0.5 * 600  = 3300 s (55 min)
    #   p90:    h = 2.7 -> 3600 + 0.7 * 1800 = 4860 s (81 min)
    #   within 1800 s: none
    assert digest.replied == 4
    assert digest.to_first_reply == Timing(count=4, median=pytest.approx(3300.0), p90=pytest.approx(4860.0), within_sla=0)

    # Resolved in the period (C9 was dismissed, P3 resolved before): C1 60, C2 120, C3 180, P2 210 minutes.
    # Sorted seconds: 3600 7200 10800 12600 (n = 4).
    #   median: h = 1.5 -> 7200 + 0.5 * 3600  = 9000 s (2.5 h)
    #   p90:    h = 2.7 -> 10800 + 0.7 * 1800 = 12060 s
    assert digest.resolved == 4
    assert digest.to_resolve == Timing(count=4, median=pytest.approx(9000.0), p90=pytest.approx(12060.0), within_sla=0)
    assert digest.outcomes == (("answered", 2), ("fixed", 1), ("no-action", 1))

    # Tags of the 8 new ones: legal on all (the rule), contract C1 C2 C6, gdpr C3 C5, spam C9.
    assert digest.top_tags == (("legal", 8), ("contract", 3), ("gdpr", 2), ("spam", 1))

    # Oldest unclaimed, with their age at UNTIL: P1 8 days, C6 5 days, C7 1 hour.
    assert digest.oldest_unclaimed == (
        WaitingItem(ids["P1"], "Waiting for my lawyer's letter since Sunday", 8 * 86400.0, "https://reviews.example.com/P1"),
        WaitingItem(
            ids["C6"],
            "My lawyer will call you about the contract " + "x" * 36 + "…",
            5 * 86400.0,
            "https://reviews.example.com/C6",
        ),
        WaitingItem(ids["C7"], "<b>Lawyer</b> & co: call me", 3600.0, "https://reviews.example.com/C7"),
    )

    # Who took part, by their own department (walt's claim of the ops parcel D1 and P3's history don't count):
    #   legal:      lee claimed C1 P2 C4, replied C1, resolved C1 P2; dana claimed C2, replied C2, resolved C2
    #   warehouse:  walt claimed, replied, resolved C3
    #   hr:         hana noted C1, replied C5 (her reply claimed it: no claim event)
    #   unassigned: ursula noted C6, and P3 (closed before the period: the note still counts)
    assert digest.taking_part == (
        TeamPart("legal", ("dana", "lee"), claimed=4, replied=2, resolved=3, noted=0),
        TeamPart("warehouse", ("walt",), claimed=1, replied=1, resolved=1, noted=0),
        TeamPart("hr", ("hana",), claimed=0, replied=1, resolved=0, noted=1),
        TeamPart("unassigned", ("ursula",), claimed=0, replied=0, resolved=0, noted=2),
    )


async def test_the_digest_notice_says_it_in_plain_lines(week) -> None:
    container, _, ids = week
    notice = digest_notice(await digest_of(container, "legal"))

    assert notice.title == "Weekly digest — legal, 16–23 Nov"
    # The week before (T0 - 7 days to T0): P3, P1, P2 came in (3 new); P3 claimed after 20 min and resolved
    # after 80 min (1 claimed, 1 resolved, none replied or dismissed); P1 and P2 still open at T0 (2).
    assert notice.lines == (
        "8 new (+5) · 6 claimed (+5) · 4 replied (+4) · 4 resolved (+3) · 1 dismissed (+1) · 5 still open (+3; 3 unclaimed)",
        "Time to claim: median 35 min (was 20 min), p90 1.7 h; 3 of 6 within the 30 min SLA",
        "Time to first reply: median 55 min, p90 1.4 h; 0 of 4 within the 30 min SLA",
        "Time to resolve: median 2.5 h (was 1.3 h), p90 3.4 h; 0 of 4 within the 30 min SLA",
        "Oldest unclaimed:",
        f"#{ids['P1']} · waiting 8 d · Waiting for my lawyer's letter since Sunday · https://reviews.example.com/P1",
        f"#{ids['C6']} · waiting 5 d · My lawyer will call you about the contract {'x' * 36}… · https://reviews.example.com/C6",
        f"#{ids['C7']} · waiting 1 h · <b>Lawyer</b> & co: call me · https://reviews.example.com/C7",
        # C4: claimed by lee at 1480, no reply; in since minute 1440: 8640 min at UNTIL, 30 min of it the SLA.
        "Claimed, no answer past the SLA (most overdue first):",
        f"#{ids['C4']} · lee · 6 d past the SLA · Lawyer letter attached · https://reviews.example.com/C4",
        "Outcomes: answered 2, fixed 1, no-action 1",
        # The week before, the legal tag was on P3, P1, P2 (3) and no other tag was used.
        "Recurring (tags on the most conversations): legal 8 (+5), contract 3 (+3), gdpr 2 (+2), spam 1 (+1)",
        "Who took part, by their department:",
        "legal: 2 people (dana, lee) — 4 claimed, 2 replied, 3 resolved",
        "warehouse: 1 person (walt) — 1 claimed, 1 replied, 1 resolved",
        "hr: 1 person (hana) — 1 replied, 1 noted",
        "unassigned: 1 person (ursula) — 2 noted",
        "Helped outside their department: walt (warehouse) 3 times, hana (hr) 2 times",
        "Routing rules: legal routed 8, 0 rerouted away",  # the 8 new ones: the rule "legal" sent each here
    )
    assert all("\n" not in line for line in notice.lines)
    assert notice.links[0] == (f"#{ids['P1']}", "https://reviews.example.com/P1")


async def test_a_department_with_nothing_going_on_gets_one_line(week) -> None:
    container, _, _ = week
    digest = await digest_of(container, "hr")
    assert digest.quiet
    assert digest_notice(digest).lines == ("No activity in hr from 16 Nov to 23 Nov: nothing new, nothing open.",)


async def test_show_digest_through_the_bus_covers_the_last_days_of_the_managers_departments(week) -> None:
    container, _, _ = week
    result = await container.bus.handle(c.ShowDigest(dana))  # dana manages legal only
    assert result is not None and result.notice is not None
    assert result.notice.title == "Weekly digest — legal, 16–23 Nov"
    assert result.notice.lines[0].startswith("8 new (+5) · 6 claimed (+5) · 4 replied (+4) · 4 resolved (+3)")

    named = await container.bus.handle(c.ShowDigest(ursula, department="hr", days=7))
    assert named is not None and named.notice is not None
    assert named.notice.lines == ("No activity in hr from 16 Nov to 23 Nov: nothing new, nothing open.",)

    everyone = await container.bus.handle(c.ShowDigest(ursula, days=1))  # manages nothing: every department
    assert everyone is not None and everyone.notice is not None
    assert everyone.notice.title == "Daily digest — hr, legal, ops, triage, 22–23 Nov"
    assert "— legal —" in everyone.notice.lines
    # Legal's last day: C7 came in, and the three old unclaimed ones are still waiting; the day before nothing
    # came in or moved, and P1, C4, C5, C6 were open at its end (4).
    legal_at = everyone.notice.lines.index("— legal —")
    assert everyone.notice.lines[legal_at + 1] == (
        "1 new (+1) · 0 claimed · 0 replied · 0 resolved · 0 dismissed · 5 still open (+1; 3 unclaimed)"
    )


async def test_an_unknown_department_is_refused_naming_the_known_ones(week) -> None:
    container, _, _ = week
    with pytest.raises(NotFound) as refused:
        await container.bus.handle(c.ShowDigest(dana, department="finance"))
    assert refused.value.message == "no department 'finance'; departments: hr, legal, ops, triage"


async def test_show_stats_gives_a_person_their_own_figures(week) -> None:
    container, _, ids = week
    # lee: claimed P3 C1 P2 C4, replied C1, resolved P3 C1 P2; response C1: claim at 10, reply at 40 -> 30 min.
    result = await container.bus.handle(c.ShowStats(lee))
    assert result is not None and result.notice is not None
    assert result.notice.title == "Your figures — lee (legal), all time"
    assert result.notice.lines == (
        "4 claimed · 1 replied · 3 resolved · 0 noted",
        "Response time (claim to your first reply): median 30 min, p90 30 min over 1 conversation",
    )

    # walt: C3 claimed at 150, answered at 210 (60 min); D1 in ops claimed at 610, never answered.
    async with container.uow() as uow:
        walt_id = (await identify(uow, walt)).id
        stats = await build_stats(uow, person_id=walt_id)
        later = await build_stats(uow, person_id=walt_id, since=T0 + timedelta(minutes=200))
    assert (stats.claimed, stats.replied, stats.resolved, stats.noted) == (2, 1, 1, 0)
    assert stats.response == Timing(count=1, median=pytest.approx(3600.0), p90=pytest.approx(3600.0))
    assert (later.claimed, later.replied, later.resolved) == (1, 1, 1)  # D1's claim, C3's reply and resolution


async def test_the_response_time_of_several_replies_is_a_true_median(week) -> None:
    container, clock, ids = week
    # dana answers two more, each counted from the claim to her first reply: C6 10 min, C7 70 min.
    for name, claim_at, reply_at in (("C6", 0, 10), ("C7", 20, 90)):
        clock.now = UNTIL + timedelta(minutes=claim_at)
        await container.bus.handle(c.Claim(ids[name], dana))
        clock.now = UNTIL + timedelta(minutes=reply_at)
        await container.bus.handle(c.ReplyToCustomer(ids[name], dana, "On it"))
        clock.advance(minutes=5)
        await container.bus.handle(c.ReplyToCustomer(ids[name], dana, "A second reply does not count"))
    async with container.uow() as uow:
        stats = await build_stats(uow, person_id=(await identify(uow, dana)).id)
    # With C2 (claimed at 80, answered at 120: 40 min), sorted seconds: 600 2400 4200.
    #   median: h = 0.5 * 2 = 1 -> 2400;  p90: h = 0.9 * 2 = 1.8 -> 2400 + 0.8 * (4200 - 2400) = 3840
    assert stats.response == Timing(count=3, median=pytest.approx(2400.0), p90=pytest.approx(3840.0))
    assert stats.replied == 3


@pytest.mark.parametrize(
    "seconds, shown",
    [
        (None, "n/a"),
        (42, "42 s"),
        (42 * MIN, "42 min"),
        (90 * MIN, "1.5 h"),
        (3.5 * 3600, "3.5 h"),
        (2 * 3600, "2 h"),
        (8 * 86400, "8 d"),
        (2.5 * 86400, "2.5 d"),
    ],
)
def test_durations_read_like_people_say_them(seconds: float | None, shown: str) -> None:
    assert format_duration(seconds) == shown
