"""Charts drawn on the server as SVG strings: no library, no script, no font or asset fetched.

- `series_chart`: one value per period for a few series (bars side by side, or lines), e.g.
  conversations new and resolved per day;
- `sla_chart`: median and p90 per period as lines against a dashed SLA line, e.g. time to claim
  per week;
- `bar_chart`: one horizontal bar per label, e.g. outcomes, or participation by department.

Each is one `<svg role="img">` with a `<title>` and a `<desc>` (what it shows, then every value
in words) that `aria-labelledby` names, and a `<title>` on each bar and point (the tooltip).
Labels may be customer text (tags, names): they are XML-escaped, stripped of characters XML
cannot hold, and cut short (the full label stays in the tooltip), so a label can never become
markup. Colours come from CSS custom properties, with defaults for light and dark mode
(`prefers-color-scheme`) set in the chart's own `<style>`; text is `currentColor`, so it reads
on the page's background. A page can set `--chart-1` … `--chart-4`, `--chart-sla`,
`--chart-grid` to restyle every chart; under a Content-Security-Policy without
'unsafe-inline' styles, pass the page's `nonce`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal
from xml.sax.saxutils import escape

WIDTH = 640
HEIGHT = 260
LABEL_CHARS = 24  # of a label drawn on a chart (the tooltip has it all)
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 16, 36, 44
_ROW = 26  # a horizontal bar's row
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")

CSS = """
svg.unsilo-chart { --c1: #2563eb; --c2: #d97706; --c3: #059669; --c4: #7c3aed; --csla: #dc2626; --cgrid: #8884; }
@media (prefers-color-scheme: dark) {
  svg.unsilo-chart { --c1: #60a5fa; --c2: #fbbf24; --c3: #34d399; --c4: #a78bfa; --csla: #f87171; --cgrid: #aaa4; }
}
svg.unsilo-chart text { fill: currentColor; font: 12px system-ui, sans-serif; }
svg.unsilo-chart .grid { stroke: var(--chart-grid, var(--cgrid)); stroke-width: 1; }
svg.unsilo-chart .axis { stroke: currentColor; stroke-width: 1; }
svg.unsilo-chart .s0 { fill: var(--chart-1, var(--c1)); stroke: var(--chart-1, var(--c1)); }
svg.unsilo-chart .s1 { fill: var(--chart-2, var(--c2)); stroke: var(--chart-2, var(--c2)); }
svg.unsilo-chart .s2 { fill: var(--chart-3, var(--c3)); stroke: var(--chart-3, var(--c3)); }
svg.unsilo-chart .s3 { fill: var(--chart-4, var(--c4)); stroke: var(--chart-4, var(--c4)); }
svg.unsilo-chart polyline { fill: none; stroke-width: 2; }
svg.unsilo-chart .sla { stroke: var(--chart-sla, var(--csla)); stroke-width: 2; stroke-dasharray: 6 4; }
svg.unsilo-chart text.sla { fill: var(--chart-sla, var(--csla)); stroke: none; }
""".strip()

Format = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    """One named series: a value per label (None where there is none)."""

    name: str
    values: Sequence[float | None]


def series_chart(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    kind: Literal["bar", "line"] = "bar",
    desc: str = "",
    fmt: Format | None = None,
    nonce: str | None = None,
) -> str:
    """Up to four series over the same periods (`labels`, oldest first): bars side by side, or lines."""
    fmt = fmt or _number
    series = list(series)[:4]
    chart = _Chart(title, desc, _summary(labels, series, fmt), nonce)
    chart.y_axis(max([v for s in series for v in s.values if v is not None], default=0.0), fmt)
    chart.x_labels(labels)
    slot = chart.plot_width / max(len(labels), 1)
    for index, one in enumerate(series):
        if kind == "bar":
            width = slot * 0.8 / max(len(series), 1)
            for i, value in enumerate(one.values[: len(labels)]):
                if value is None:
                    continue
                height = chart.y_of(0) - chart.y_of(value)
                x = _LEFT + i * slot + slot * 0.1 + index * width
                chart.add(
                    f'<rect class="s{index}" x="{x:.1f}" y="{chart.y_of(value):.1f}" width="{width:.1f}" '
                    f'height="{height:.1f}"><title>{_text(f"{labels[i]} · {one.name}: {fmt(value)}")}</title></rect>'
                )
        else:
            chart.line(index, [(_LEFT + (i + 0.5) * slot, v) for i, v in enumerate(one.values[: len(labels)])])
            for i, value in enumerate(one.values[: len(labels)]):
                if value is not None:
                    chart.point(index, _LEFT + (i + 0.5) * slot, value, f"{labels[i]} · {one.name}: {fmt(value)}")
    chart.legend([s.name for s in series])
    return chart.svg()


def sla_chart(
    title: str,
    labels: Sequence[str],
    median: Sequence[float | None],
    p90: Sequence[float | None],
    *,
    sla: float,
    desc: str = "",
    fmt: Format | None = None,
    nonce: str | None = None,
) -> str:
    """Median and p90 per period (lines; a period without a value breaks them) against the SLA (dashed)."""
    fmt = fmt or _number
    series = [Series("median", median), Series("p90", p90)]
    values = [v for s in series for v in s.values if v is not None]
    summary = f"SLA {fmt(sla)}. " + _summary(labels, series, fmt)
    chart = _Chart(title, desc, summary, nonce)
    chart.y_axis(max([*values, sla]) * 1.05, fmt)
    chart.x_labels(labels)
    slot = chart.plot_width / max(len(labels), 1)
    y = chart.y_of(sla)
    chart.add(
        f'<line class="sla" x1="{_LEFT}" y1="{y:.1f}" x2="{WIDTH - _RIGHT}" y2="{y:.1f}">'
        f"<title>{_text(f'SLA: {fmt(sla)}')}</title></line>"
        f'<text class="sla" x="{WIDTH - _RIGHT}" y="{y - 4:.1f}" text-anchor="end">{_text(f"SLA {fmt(sla)}")}</text>'
    )
    for index, one in enumerate(series):
        points = [(_LEFT + (i + 0.5) * slot, v) for i, v in enumerate(one.values[: len(labels)])]
        chart.line(index, points)
        for (x, value), label in zip(points, labels, strict=False):
            if value is not None:
                chart.point(index, x, value, f"{label} · {one.name}: {fmt(value)}" + (" (over the SLA)" if value > sla else ""))
    chart.legend([s.name for s in series], sla=True)
    return chart.svg()


def bar_chart(
    title: str,
    rows: Sequence[tuple[str, float]],
    *,
    desc: str = "",
    fmt: Format | None = None,
    nonce: str | None = None,
) -> str:
    """One horizontal bar per (label, value), in the order given; labels on the left, values at the bars' ends."""
    fmt = fmt or _number
    rows = list(rows)
    top = max([v for _, v in rows], default=0.0) or 1.0
    height = 12 + max(len(rows), 1) * _ROW + 12
    summary = "; ".join(f"{label}: {fmt(value)}" for label, value in rows) + "." if rows else "No data."
    chart = _Chart(title, desc, summary, nonce, height=height)
    left, right = 180, WIDTH - _RIGHT - 56
    for i, (label, value) in enumerate(rows):
        y = 12 + i * _ROW
        width = max(value, 0.0) / top * (right - left)
        chart.add(
            f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{_text(_short(label))}</text>'
            f'<rect class="s0" x="{left}" y="{y + 4}" width="{width:.1f}" height="{_ROW - 8}">'
            f"<title>{_text(f'{label}: {fmt(value)}')}</title></rect>"
            f'<text x="{left + width + 6:.1f}" y="{y + 16}">{_text(fmt(value))}</text>'
        )
    return chart.svg()


class _Chart:
    """The frame every chart shares: the svg element, its title, desc and style, the plot's vertical scale."""

    def __init__(self, title: str, desc: str, summary: str, nonce: str | None, *, height: int = HEIGHT) -> None:
        self.title, self.desc, self.summary, self.nonce, self.height = title, desc, summary, nonce, height
        self.parts: list[str] = []
        self.top = 1.0
        self.plot_width = WIDTH - _LEFT - _RIGHT
        self.empty = not summary or summary.endswith("No data.")

    def add(self, part: str) -> None:
        self.parts.append(part)

    def y_of(self, value: float) -> float:
        bottom, top = self.height - _BOTTOM, _TOP
        return bottom - (value / self.top) * (bottom - top)

    def y_axis(self, highest: float, fmt: Format) -> None:
        """A scale from 0 to a round value at or above `highest`, with a grid line and a label at each round step."""
        step = _step(highest / 4)
        steps = max(1, math.ceil(highest / step - 1e-9))
        self.top = step * steps
        for i in range(steps + 1):
            value = step * i
            y = self.y_of(value)
            self.add(
                f'<line class="grid" x1="{_LEFT}" y1="{y:.1f}" x2="{WIDTH - _RIGHT}" y2="{y:.1f}"/>'
                f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_text(fmt(value))}</text>'
            )
        bottom = self.height - _BOTTOM
        self.add(f'<line class="axis" x1="{_LEFT}" y1="{bottom}" x2="{WIDTH - _RIGHT}" y2="{bottom}"/>')

    def x_labels(self, labels: Sequence[str]) -> None:
        slot = self.plot_width / max(len(labels), 1)
        every = max(1, math.ceil(len(labels) / 8))  # at most 8 labels, so that they never overlap
        for i, label in enumerate(labels):
            if i % every == 0 or i == len(labels) - 1 and len(labels) <= 8:
                x = _LEFT + (i + 0.5) * slot
                self.add(
                    f'<text x="{x:.1f}" y="{self.height - _BOTTOM + 18}" text-anchor="middle">{_text(_short(label, 12))}</text>'
                )

    def line(self, index: int, points: Sequence[tuple[float, float | None]]) -> None:
        """A polyline per run of points with a value (a missing value breaks the line)."""
        run: list[str] = []
        for x, value in [*points, (0.0, None)]:
            if value is not None:
                run.append(f"{x:.1f},{self.y_of(value):.1f}")
            elif run:
                self.add(f'<polyline class="s{index}" points="{" ".join(run)}"/>')
                run = []

    def point(self, index: int, x: float, value: float, tooltip: str) -> None:
        self.add(
            f'<circle class="s{index}" cx="{x:.1f}" cy="{self.y_of(value):.1f}" r="4"><title>{_text(tooltip)}</title></circle>'
        )

    def legend(self, names: Sequence[str], *, sla: bool = False) -> None:
        """A swatch and a name per series, along the top (and the SLA's dashed line)."""
        x = float(_LEFT)
        for index, name in enumerate([*names, *(["SLA"] if sla else [])]):
            shape = (
                f'<line class="sla" x1="{x:.1f}" y1="14" x2="{x + 14:.1f}" y2="14"/>'
                if index == len(names)
                else f'<rect class="s{index}" x="{x:.1f}" y="8" width="12" height="12"/>'
            )
            label = _short(name, 20)
            self.add(f'{shape}<text x="{x + 18:.1f}" y="18">{_text(label)}</text>')
            x += 30 + 7.5 * len(label)

    def svg(self) -> str:
        key = hashlib.sha256("\0".join([self.title, self.summary, *self.parts]).encode("utf-8", "surrogatepass")).hexdigest()[:10]
        nonce = f' nonce="{_attr(self.nonce)}"' if self.nonce else ""
        body = "".join(self.parts)
        if self.empty:
            body += f'<text x="{WIDTH / 2}" y="{self.height / 2}" text-anchor="middle">No data</text>'
        description = " ".join(part for part in (self.desc.strip(), self.summary) if part)
        return (
            f'<svg xmlns="http://www.w3.org/2000/svg" class="unsilo-chart" viewBox="0 0 {WIDTH} {self.height}" '
            f'width="100%" role="img" aria-labelledby="chart-{key}-title chart-{key}-desc">'
            f'<title id="chart-{key}-title">{_text(self.title)}</title>'
            f'<desc id="chart-{key}-desc">{_text(description)}</desc>'
            f"<style{nonce}>{CSS}</style>{body}</svg>"
        )


def _summary(labels: Sequence[str], series: Sequence[Series], fmt: Format) -> str:
    """Every value in words, for the desc (what a screen reader says)."""
    if not labels or all(v is None for s in series for v in s.values):
        return "No data."

    def value(one: Series, i: int) -> str:
        found = one.values[i] if i < len(one.values) else None
        return "none" if found is None else fmt(found)

    return "; ".join(f"{label}: " + ", ".join(f"{s.name} {value(s, i)}" for s in series) for i, label in enumerate(labels)) + "."


def _step(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `value`, and at least 1 (counts, seconds)."""
    if value <= 1:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1.0, 2.0, 5.0, 10.0) if step * power >= value - 1e-9)


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _clean(text: str) -> str:
    """Without the characters XML 1.0 cannot hold (controls, lone surrogates)."""
    return _INVALID_XML.sub("", text)


def _text(text: str) -> str:
    """Text content, escaped."""
    return escape(_clean(text))


def _attr(text: str) -> str:
    """An attribute value (between double quotes), escaped."""
    return escape(_clean(text), {'"': "&quot;"})


def _short(label: str, limit: int = LABEL_CHARS) -> str:
    flat = " ".join(_clean(label).split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"
