"""The managers' dashboard: a department's read model (`storage.dashboard`) drawn as server-side SVG charts.

Each chart is an `adapters.web.charts` SVG, its labels escaped there, handed to the template as
`markupsafe.Markup`; its `<style>` carries the page's CSP nonce (the console allows no other
inline style). The figures beside them are the digest's, worded as the digest words them.
"""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup

from adapters.web.charts import Series, bar_chart, series_chart, sla_chart
from bot.digest import by_department, format_duration
from storage.dashboard import Dashboard
from storage.reports import Timing


@dataclass(frozen=True)
class Chart:
    """One chart of the page: its anchor, its heading and its SVG."""

    id: str
    heading: str
    svg: Markup


@dataclass(frozen=True)
class Figure:
    """One figure of the window, as the digest says it."""

    label: str
    value: str
    wide: bool = False  # a sentence rather than a number: two columns


def _day(board: Dashboard, index: int) -> str:
    start = board.days[index].start
    return f"{start.day} {start:%b}"


def _timing(timing: Timing, sla_minutes: int) -> str:
    if not timing.count:
        return "none"
    return (
        f"median {format_duration(timing.median)} · p90 {format_duration(timing.p90)} · "
        f"{timing.within_sla} of {timing.count} within the SLA ({format_duration(sla_minutes * 60)})"
    )


def figures_of(board: Dashboard) -> list[Figure]:
    """The window's totals (the last `len(board.days)` days)."""
    t = board.totals
    return [
        Figure("New", str(t.new)),
        Figure("Claimed", str(t.claimed)),
        Figure("Resolved", str(t.resolved)),
        Figure("Dismissed", str(t.dismissed)),
        Figure("Still open", f"{t.still_open} ({t.unclaimed} unclaimed)"),
        Figure("Time to claim", _timing(t.to_claim, board.sla_minutes), wide=True),
        Figure("Time to first reply", _timing(t.to_first_reply, board.sla_minutes), wide=True),
    ]


def charts_of(board: Dashboard, *, nonce: str) -> list[Chart]:
    """New/resolved per day, time to claim and to first reply per week against the SLA, outcomes,
    participation by department."""
    days = [_day(board, i) for i in range(len(board.days))]
    weeks = [f"wk {w.start.day} {w.start:%b}" for w in board.weeks]
    sla = board.sla_minutes * 60.0
    name = board.department

    def timing_chart(title: str, pick: str) -> str:
        timings = [getattr(w, pick) for w in board.weeks]
        return sla_chart(
            title,
            weeks,
            [t.median for t in timings],
            [t.p90 for t in timings],
            sla=sla,
            fmt=format_duration,
            desc=f"{name}: median and 90th percentile per week, against the SLA of {board.sla_minutes} min.",
            nonce=nonce,
        )

    drawn = [
        (
            "per-day",
            "New and resolved per day",
            series_chart(
                "New and resolved per day",
                days,
                [
                    Series("new", [d.new for d in board.days]),
                    Series("resolved", [d.resolved for d in board.days]),
                    Series("dismissed", [d.dismissed for d in board.days]),
                ],
                desc=f"{name}: conversations per day over the last {len(days)} days.",
                nonce=nonce,
            ),
        ),
        ("to-claim", "Time to claim, per week", timing_chart("Time to claim", "to_claim")),
        ("to-first-reply", "Time to first reply, per week", timing_chart("Time to first reply", "to_first_reply")),
        (
            "outcomes",
            "Outcomes",
            bar_chart(
                "Outcomes",
                board.totals.outcomes,
                desc=f"{name}: how the conversations resolved in the last {len(days)} days ended.",
                nonce=nonce,
            ),
        ),
        (
            "participation",
            "Participation by department",
            bar_chart(
                "Participation by department",
                [(part.department, part.actions) for part in by_department(board.totals.participants)],
                desc=f"Actions on {name}'s conversations in the last {len(days)} days, by the actor's department.",
                nonce=nonce,
            ),
        ),
    ]
    # The SVG is built by charts.py, which escapes every label: it is markup, not text.
    return [Chart(anchor, heading, Markup(svg)) for anchor, heading, svg in drawn]  # noqa: S704
