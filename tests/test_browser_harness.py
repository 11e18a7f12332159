"""The browser harness works: a page served on loopback, with a server-drawn chart, opened in Debian's chromium.

The chart's labels are hostile (customer tags): the browser shows them as text and runs
none of them, while the page's own script does run (so "nothing ran" means something).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from adapters.web.charts import Series, bar_chart, series_chart
from tests.standins import serve

pytest_plugins = ("tests.browser",)

HOSTILE = '<script>window.pwned = "script"; alert(1)</script>'
IMG = '<img src="x" onerror="window.pwned = \'img\'; alert(2)">'

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="color-scheme" content="light dark"><title>charts</title></head>
<body><main><h1>Outcomes</h1>{outcomes}<h1>Per day</h1>{days}</main>
<script>window.ready = "yes";</script></body></html>"""


@pytest.fixture
async def site() -> AsyncIterator[str]:
    outcomes = bar_chart("Outcomes", [("answered", 5), (HOSTILE, 3), (IMG, 1)], desc="How the week's conversations ended.")
    days = series_chart("New and resolved", ["16 Nov", "17 Nov", IMG], [Series("new", [3, 1, 2]), Series(HOSTILE, [1, 0, 4])])

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=PAGE.format(outcomes=outcomes, days=days), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    runner, url = await serve(app)
    yield url
    await runner.cleanup()


async def test_a_chart_is_drawn_and_its_hostile_labels_run_nothing(site: str, page, page_log, screenshot) -> None:  # type: ignore[no-untyped-def]
    await page.goto(site)
    chart = page.locator("svg.unsilo-chart").first
    assert await chart.is_visible()
    box = await chart.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 80
    assert await page.get_by_role("img", name="Outcomes").count() == 1  # its <title>, through aria-labelledby
    bars = chart.locator("rect.s0")
    assert await bars.count() == 3
    widths = [float(await bars.nth(i).get_attribute("width") or 0) for i in range(3)]
    assert widths[0] > widths[1] > widths[2] > 0  # 5, 3, 1
    labels = await chart.locator("text").all_text_contents()
    assert "<script>window.pwned =…" in labels  # shown as text, cut short
    assert await page.evaluate("window.ready") == "yes"  # the page's own script ran
    assert await page.evaluate("typeof window.pwned") == "undefined"  # the labels' did not
    assert await page.locator("main script, main img").count() == 0  # nor became elements
    assert page_log.dialogs == [] and page_log.errors == []
    await screenshot(page, "light")


async def test_the_chart_reads_in_dark_mode(site: str, page, screenshot) -> None:  # type: ignore[no-untyped-def]
    fill = "el => getComputedStyle(el).fill"
    await page.emulate_media(color_scheme="light")
    await page.goto(site)
    light = await page.locator("rect.s0").first.evaluate(fill)
    await page.emulate_media(color_scheme="dark")
    dark = await page.locator("rect.s0").first.evaluate(fill)
    assert light != dark and "rgb" in dark
    text = await page.locator("svg.unsilo-chart text").first.evaluate(fill)
    body = await page.evaluate("getComputedStyle(document.body).color")
    assert text == body and body != await page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert body == "rgb(255, 255, 255)"  # currentColor: the dark page's light text
    await screenshot(page, "dark")
