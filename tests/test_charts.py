"""Charts drawn on the server: well-formed SVG, accessible, hostile labels inert, colours for light and dark."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from adapters.web.charts import LABEL_CHARS, Series, bar_chart, series_chart, sla_chart
from bot.digest import format_duration

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = [
    '<script>alert("x")</script>',
    "<img src=x onerror=alert(1)>",
    "a & b \"quoted\" 'single'",
    "bell\x07\x00nul\ud800",
    "]]>",
]


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def texts(root: ET.Element) -> list[str]:
    return ["".join(e.itertext()) for e in root.iter(f"{SVG}text")]


def charts(labels: list[str]) -> list[str]:
    return [
        series_chart(
            "Per day", labels, [Series(labels[0], [1, 2, 3, 4, 5][: len(labels)]), Series("resolved", [0] * len(labels))]
        ),
        series_chart("Per day", labels, [Series(labels[0], [1.0] * len(labels))], kind="line"),
        sla_chart("Time to claim", labels, [60.0] * len(labels), [120.0] * len(labels), sla=90.0),
        bar_chart("Outcomes", [(label, i + 1) for i, label in enumerate(labels)]),
    ]


@pytest.mark.parametrize("index", range(4))
def test_hostile_labels_stay_text_in_well_formed_svg(index: int) -> None:
    svg = charts(HOSTILE)[index]
    root = parse(svg)  # well-formed XML, though the labels hold <, &, quotes, controls and a lone surrogate
    assert [e for e in root.iter() if e.tag.split("}")[-1] in ("script", "img", "foreignObject", "a", "image", "use")] == []
    assert not any(name.startswith("on") for e in root.iter() for name in e.attrib)
    assert "<script" not in svg and "<img" not in svg
    shown = " ".join(texts(root)) + " ".join("".join(e.itertext()) for e in root.iter(f"{SVG}title"))
    assert '<script>alert("x")' in shown  # the label itself, as text (shortened on the chart, whole in a tooltip)
    assert "\x07" not in svg and "\x00" not in svg


def test_a_chart_names_itself_for_screen_readers_and_says_every_value() -> None:
    svg = series_chart("New and resolved per day", ["16 Nov", "17 Nov"], [Series("new", [3, 1]), Series("resolved", [2, None])])
    root = parse(svg)
    assert root.get("role") == "img"
    title_id, desc_id = (root.get("aria-labelledby") or "").split()
    by_id = {e.get("id"): "".join(e.itertext()) for e in root.iter() if e.get("id")}
    assert by_id[title_id] == "New and resolved per day"
    assert by_id[desc_id] == "16 Nov: new 3, resolved 2; 17 Nov: new 1, resolved none."
    tooltips = ["".join(t.itertext()) for r in root.iter(f"{SVG}rect") for t in r.iter(f"{SVG}title")]
    assert tooltips == ["16 Nov · new: 3", "17 Nov · new: 1", "16 Nov · resolved: 2"]
    # Two charts of one page never share an id.
    other = parse(series_chart("Another", ["16 Nov"], [Series("new", [1])]))
    assert other.get("aria-labelledby") != root.get("aria-labelledby")


def test_bars_are_to_scale_on_round_integer_ticks() -> None:
    root = parse(series_chart("Per day", ["a", "b", "c"], [Series("new", [4, 2, 0])]))
    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]  # the legend's swatches have none
    heights = [float(r.get("height") or 0) for r in bars]
    assert heights[0] == pytest.approx(2 * heights[1]) and heights[2] == 0
    ticks = [t for t in texts(root) if t.replace(".", "").isdigit()]
    assert ticks == ["0", "1", "2", "3", "4"]
    widths = [
        float(r.get("width") or 0) for r in parse(bar_chart("Outcomes", [("fixed", 6), ("answered", 3)])).iter(f"{SVG}rect")
    ]
    assert widths[0] == pytest.approx(2 * widths[1])


def test_the_sla_line_and_the_points_over_it() -> None:
    svg = sla_chart(
        "Time to claim", ["9 Nov", "16 Nov", "23 Nov"], [600, None, 1200], [900, None, 4000], sla=1800, fmt=format_duration
    )
    root = parse(svg)
    (sla,) = [e for e in root.iter(f"{SVG}line") if e.get("class") == "sla" and e.find(f"{SVG}title") is not None]
    points = {"".join(c.itertext()): float(c.get("cy") or 0) for c in root.iter(f"{SVG}circle")}
    assert set(points) == {
        "9 Nov · median: 10 min",
        "23 Nov · median: 20 min",
        "9 Nov · p90: 15 min",
        "23 Nov · p90: 1.1 h (over the SLA)",
    }
    y = float(sla.get("y1") or 0)  # SVG's y grows downwards
    assert points["23 Nov · p90: 1.1 h (over the SLA)"] < y < points["23 Nov · median: 20 min"]
    # The week without a value breaks each line: two one-point runs draw no segment across it.
    assert all(len((p.get("points") or "").split()) == 1 for p in root.iter(f"{SVG}polyline"))
    assert "SLA 30 min" in texts(root)


def test_nothing_to_draw_says_so() -> None:
    for svg in (series_chart("Per day", [], []), bar_chart("Outcomes", []), sla_chart("To claim", ["w"], [None], [None], sla=60)):
        root = parse(svg)
        assert "No data" in texts(root)
        assert "No data." in "".join(next(root.iter(f"{SVG}desc")).itertext())


def test_long_labels_are_cut_and_kept_whole_in_the_tooltip() -> None:
    label = "a customer tag " * 10
    root = parse(bar_chart("Tags", [(label, 1)]))
    shown = texts(root)[0]
    assert len(shown) == LABEL_CHARS and shown.endswith("…")
    assert "".join(next(root.iter(f"{SVG}rect")).itertext()) == f"{label}: 1"


def test_colours_are_css_properties_for_light_and_dark_and_text_is_current_color() -> None:
    svg = bar_chart("Outcomes", [("fixed", 1)], nonce='n"1')
    style = next(parse(svg).iter(f"{SVG}style"))
    css = style.text or ""
    assert "@media (prefers-color-scheme: dark)" in css and "fill: currentColor" in css
    assert "var(--chart-1, var(--c1))" in css
    assert style.get("nonce") == 'n"1'  # for a page whose CSP forbids inline styles without it
    assert "fill=" not in svg and "url(" not in svg and "http" not in svg.replace("http://www.w3.org/2000/svg", "")
