"""The console end to end in Debian's headless chromium: the whole service on loopback with Slack
stood in for, the demo's conversations in it, one browser for the module, signed in once with the
one-time link that `unsilo run` prints.

Each page is screenshotted under the run's screenshots folder (tests/browser.py): channels,
conversation, search, dashboard light and dark, login refused.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
from aiohttp import web

from bot import commands as c
from bot.bootstrap import sample_path
from bot.ingest import make_incoming, parse_feed
from tests.browser import TIMEOUT_MS, PageLog, Screenshot, launched_chromium, recorded
from tests.slack_support import SlackHarness
from tests.standins import serve
from tests.test_console import running_console

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Locator, Page

pytest_plugins = ("tests.browser",)
pytestmark = pytest.mark.asyncio(loop_scope="module")

# Would set window.pwned and open a dialog if any of it ran; "refund" routes it to support.
HOSTILE = (
    "refund <script>window.pwned = 'script'; alert(1)</script> <img src=x onerror=\"window.pwned = 'img'; alert(2)\"> "
    "<a href=\"javascript:window.pwned='link';alert(3)\">click me</a>"
)


@dataclass
class Site:
    harness: SlackHarness
    link: str  # the one-time sign-in link, on the port actually served
    hostile: int  # the conversation of HOSTILE
    ids: dict[str, int] = field(default_factory=dict)  # the demo's conversations by title

    @property
    def url(self) -> str:
        return self.harness.url

    async def status_of(self, cid: int) -> str:
        async with self.harness.container.uow() as uow:
            conversation = await uow.conversations.get(cid)
            assert conversation is not None
            return conversation.status


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    """The service of tests/test_console.py (Slack stood in for, a console-only channel), with the demo's
    conversations, one hostile one, and one resolved on Slack (for the dashboard), delivered."""
    async with running_console(tmp_path_factory.mktemp("console-browser")) as console:
        container = console.harness.container
        items, _ = parse_feed(sample_path("demo-feed.xml").read_bytes(), source="demo-feed")
        report = await container.ingest(items)
        hostile = await console.ingest(
            HOSTILE,
            external_id="evil",
            title="<b onmouseover=alert(4)>hi</b>",
            url="javascript:alert(5)",
            author_name="<img src=x onerror=alert(6)>",
        )
        ids = {}
        async with container.uow() as uow:
            for cid in report.new_ids:
                conversation = await uow.conversations.get(cid)
                assert conversation is not None
                ids[conversation.title] = cid
        alice = c.Actor("slack", "UALICE")
        await container.bus.handle(c.Claim(ids["Charged twice for one order"], alice))
        await container.bus.handle(c.Resolve(ids["Charged twice for one order"], alice, outcome="answered"))
        await console.harness.deliver()
        yield Site(console.harness, f"{console.url}/console/login?token={console.token}", hostile, ids)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium() -> AsyncIterator[Browser]:
    """One headless chromium for the module (its start is most of a test's cost)."""
    async with launched_chromium() as launched:
        yield launched


async def _context(chromium: Browser, **kwargs: Any) -> BrowserContext:
    context = await chromium.new_context(viewport={"width": 1100, "height": 800}, **kwargs)
    context.set_default_timeout(TIMEOUT_MS)
    return context


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def signed_in(chromium: Browser, site: Site) -> dict[str, Any]:
    """The cookies of a browser signed in with the one-time link (what every page test starts from)."""
    context = await _context(chromium)
    page = await context.new_page()
    response = await page.goto(site.link)
    assert response is not None and response.status == 200
    assert page.url == f"{site.url}/console"  # the link is exchanged for a cookie, and out of the address bar
    assert await page.get_by_text("Signed in as owner (web)").is_visible()
    state = await context.storage_state()
    await context.close()
    return dict(state)


@pytest_asyncio.fixture(loop_scope="module")
async def page(chromium: Browser, signed_in: dict[str, Any]) -> AsyncIterator[Page]:
    """A page of a signed-in browser; its script errors, console errors (CSP reports) and dialogs are recorded."""
    context = await _context(chromium, storage_state=signed_in)
    opened = await context.new_page()
    record = recorded(opened)  # and the console's errors: a style or script the CSP refused is reported there
    opened.on("console", lambda message: record.errors.append(message.text) if message.type == "error" else None)
    try:
        yield opened
    finally:
        await context.close()


def card(page: Page, cid: int) -> Locator:
    return page.locator(f"#card-{cid}")


async def test_the_channels_show_the_demos_cards(site: Site, page: Page, page_log: PageLog, screenshot: Screenshot) -> None:
    await page.goto(f"{site.url}/console")
    channels = page.get_by_role("navigation", name="Channels")
    for key in ("slack:C0SUPPORT", "slack:C0OPS", "web:support"):
        assert await channels.get_by_role("link", name=key).is_visible()
    await channels.get_by_role("link", name="slack:C0SUPPORT").click()
    await page.wait_for_url("**/console?channel=slack*")
    broken = card(page, site.ids["Broken lid and the shipping box was crushed"])
    assert await broken.get_by_role("heading").inner_text() == (
        f"#{site.ids['Broken lid and the shipping box was crushed']} Broken lid and the shipping box was crushed"
    )
    assert await broken.get_by_role("button", name="Claim").is_visible()
    assert page_log.errors == [] and page_log.dialogs == []
    await screenshot(page, "channels")


async def test_a_claim_changes_the_card_here_and_on_slack(site: Site, page: Page) -> None:
    cid = site.ids["Broken lid and the shipping box was crushed"]
    (before,) = [m for m in site.harness.slack.messages("C0SUPPORT") if f"#{cid}" in json.dumps(m["blocks"])]
    assert "Unclaimed" in json.dumps(before["blocks"])
    await page.goto(f"{site.url}/console?channel=slack:C0SUPPORT")
    await card(page, cid).get_by_role("button", name="Claim").click()
    await page.get_by_role("status").filter(has_text=f"You claimed #{cid}").wait_for()
    assert await card(page, cid).get_by_role("button", name="Release").is_visible()
    assert await card(page, cid).get_by_role("button", name="Claim").count() == 0
    assert await site.status_of(cid) == "claimed"
    await site.harness.deliver()  # the outbox updates the same Slack message
    (after,) = [m for m in site.harness.slack.messages("C0SUPPORT") if f"#{cid}" in json.dumps(m["blocks"])]
    assert "Claimed by" in json.dumps(after["blocks"]) and "owner" in json.dumps(after["blocks"]) and "edited" in after


async def test_a_claim_on_slack_shows_in_the_open_page_within_a_second(site: Site, page: Page) -> None:
    from tests.test_slack import button

    cid = site.ids["Your courier was rude to my mother"]
    await page.goto(f"{site.url}/console?channel=slack:C0OPS")
    assert await card(page, cid).get_by_role("button", name="Claim").is_visible()
    status, _, _ = await site.harness.click(*button("claim", cid), user="UALICE", channel="C0OPS")
    assert status == 200
    await card(page, cid).get_by_role("button", name="Release").wait_for(timeout=1_500)  # live, with no reload


async def test_the_claim_button_is_reached_with_the_keyboard(site: Site, page: Page) -> None:
    cid = site.ids["My parcel never arrived"]
    await page.goto(f"{site.url}/console?channel=slack:C0OPS")
    claim = card(page, cid).get_by_role("button", name="Claim")
    for _ in range(60):
        await page.keyboard.press("Tab")
        if await claim.evaluate("el => el === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the Claim button")
    outline = await claim.evaluate("el => getComputedStyle(el).outlineStyle + ' ' + getComputedStyle(el).outlineWidth")
    assert outline == "solid 3px"  # focus is visible
    report = await site.harness.container.ingest(
        [
            make_incoming(
                source="reviews", external_id="keyboard", text="Another parcel lost", url="https://reviews.example.com/r/9"
            )
        ]
    )
    await card(page, report.new_ids[0]).wait_for()  # the live page put the channel's new cards in place...
    assert await claim.evaluate("el => el === document.activeElement")  # ...and the keyboard's place with them
    await page.keyboard.press("Enter")
    await page.get_by_role("status").filter(has_text=f"You claimed #{cid}").wait_for()
    assert await site.status_of(cid) == "claimed"


async def test_a_reply_through_the_form_and_a_search(site: Site, page: Page, screenshot: Screenshot) -> None:
    cid = site.ids["Smart plug keeps disconnecting"]
    await page.goto(f"{site.url}/console/c/{cid}")
    await card(page, cid).get_by_role("button", name="Claim").click()
    await page.get_by_role("status").filter(has_text=f"You claimed #{cid}").wait_for()
    await card(page, cid).locator("summary", has_text="Reply").click()
    await card(page, cid).get_by_label("Your answer (sent as you)").fill("Sorry! A technician calls you today.")
    await card(page, cid).get_by_role("button", name="Send reply").click()
    await page.wait_for_load_state()
    history = page.get_by_role("region", name="History: events, notes and replies")
    await history.get_by_text("Sorry! A technician calls you today.").wait_for()
    await screenshot(page, "conversation")

    await page.get_by_role("navigation", name="Console").get_by_role("link", name="Search").click()
    await page.get_by_label("Search conversations, notes and answers").fill("technician")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/console/search?q=technician")
    assert await page.locator(".results").get_by_role("link", name=f"#{cid}").is_visible()
    assert await page.locator(".results mark").count() >= 1
    await screenshot(page, "search")


async def test_the_dashboard_draws_its_charts_in_light_and_dark(
    site: Site, page: Page, page_log: PageLog, screenshot: Screenshot
) -> None:
    await page.emulate_media(color_scheme="light")
    await page.goto(f"{site.url}/console/dashboard")
    await page.get_by_label("Department", exact=True).select_option("support")
    await page.get_by_role("button", name="Show").click()
    await page.wait_for_url("**/console/dashboard?department=support")
    assert await page.get_by_role("heading", level=1).inner_text() == "Dashboard: support"
    charts = page.locator("#charts svg.unsilo-chart")
    assert await charts.count() == 5
    for i in range(5):
        box = await charts.nth(i).bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 30, i
    for name in ("New and resolved per day", "Time to claim", "Time to first reply", "Outcomes", "Participation by department"):
        assert await page.get_by_role("img", name=name).is_visible()
    outcomes = page.get_by_role("img", name="Outcomes")
    assert await outcomes.locator("text", has_text="answered").count() == 1  # the resolution made on Slack
    fill = "el => getComputedStyle(el).fill"
    light = await outcomes.locator("rect.s0").first.evaluate(fill)
    assert light == "rgb(37, 99, 235)"  # the chart's own style applied: its nonce let it through the CSP
    assert page_log.errors == []  # and no CSP violation was reported
    await screenshot(page, "dashboard-light")
    await page.emulate_media(color_scheme="dark")
    assert await outcomes.locator("rect.s0").first.evaluate(fill) != light
    text = await outcomes.locator("text").first.evaluate(fill)
    assert text == await page.evaluate("getComputedStyle(document.body).color") == "rgb(236, 236, 236)"
    await screenshot(page, "dashboard-dark")


async def test_without_a_session_the_console_answers_401_and_the_spent_link_is_refused(
    site: Site, chromium: Browser, signed_in: dict[str, Any], screenshot: Screenshot
) -> None:
    context = await _context(chromium)
    try:
        page = await context.new_page()
        response = await page.goto(f"{site.url}/console/dashboard")
        assert response is not None and response.status == 401
        assert await page.get_by_role("heading", name="Sign-in needed").is_visible()
        response = await page.goto(site.link)  # spent by `signed_in`
        assert response is not None and response.status == 401
        assert await page.get_by_role("heading", name="This link is used or wrong").is_visible()
        assert await context.cookies() == []
        assert await page.locator(".skip").evaluate("el => getComputedStyle(el).position") == "absolute"  # styled
        await screenshot(page, "login-refused")
    finally:
        await context.close()


async def test_a_cross_site_form_without_the_csrf_token_is_refused(site: Site, page: Page) -> None:
    cid = site.ids["Can't log in since the update"]
    await page.goto(f"{site.url}/console/c/{cid}")
    value = await card(page, cid).locator('form:has(button:text-is("Claim")) input[name="value"]').get_attribute("value")
    assert value

    async def evil(request: web.Request) -> web.Response:
        form = (
            f'<form id="f" method="post" action="{site.url}/console/act">'
            f'<input type="hidden" name="value" value="{value.replace(chr(34), "&quot;")}">'
            '<input type="hidden" name="back" value="/console"></form>'
            '<script>document.getElementById("f").submit()</script>'
        )
        return web.Response(text=f"<!doctype html><title>prize</title>{form}", content_type="text/html")

    app = web.Application()
    app.router.add_get("/", evil)
    runner, other = await serve(app)  # another origin: another port
    try:
        async with page.expect_response(f"{site.url}/console/act") as answer:
            await page.goto(other)
        response = await answer.value
        assert response.status == 403  # the session cookie came along, the CSRF token could not
    finally:
        await runner.cleanup()
    assert await site.status_of(cid) == "open"


async def test_hostile_customer_text_runs_nothing(site: Site, page: Page, page_log: PageLog) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    for path in (f"/console/c/{site.hostile}", "/console?channel=web:support", "/console/search?q=refund"):
        await page.goto(f"{site.url}{path}")
        main = page.locator("main")
        await main.get_by_text("<script>window.pwned", exact=False).first.wait_for()  # shown, as text
        assert await main.locator("script, img, b").count() == 0, path
        assert await main.locator('a[href^="javascript:" i]').count() == 0, path
        assert await page.evaluate("typeof window.pwned") == "undefined", path
    await page.goto(f"{site.url}/console/c/{site.hostile}")
    await page.get_by_text("click me", exact=False).first.click()
    assert await page.evaluate("typeof window.pwned") == "undefined"
    assert any("/console/events?" in url for url in requested)  # the console's own script did run
    assert page_log.dialogs == [] and page_log.errors == []
    assert not any(url.startswith(f"{site.url}/x") for url in requested)  # no <img src=x> was fetched


# Every text on the page against what is behind it: WCAG's contrast ratio, 4.5:1 at least.
CONTRAST = """() => {
  const rgb = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  const luminance = ([r, g, b]) => {
    const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  };
  const behind = (el) => {
    for (let at = el; at; at = at.parentElement) {
      const [r, g, b, a = 1] = rgb(getComputedStyle(at).backgroundColor);
      if (a > 0.5 && !(at instanceof SVGElement)) return [r, g, b];
    }
    return [255, 255, 255];
  };
  const poor = [];
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    const box = el.getBoundingClientRect();
    if (!own || !box.width || !box.height) continue;
    const style = getComputedStyle(el);
    const fg = rgb(el instanceof SVGElement ? style.fill : style.color);
    const [l1, l2] = [luminance(fg), luminance(behind(el))].sort((a, b) => b - a);
    const ratio = (l1 + 0.05) / (l2 + 0.05);
    if (ratio < 4.5) poor.push(`${el.tagName} "${el.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}`);
  }
  return poor;
}"""

UNLABELLED = """() => [...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")).map((el) => el.outerHTML)"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_every_input_is_labelled_and_every_text_is_readable(site: Site, page: Page, scheme: str) -> None:
    await page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
    for path in (
        "/console?channel=web:support",
        f"/console/c/{site.hostile}",
        "/console/search?q=refund",
        "/console/dashboard?department=support",
    ):
        await page.goto(f"{site.url}{path}")
        for details in await page.locator("details").all():  # the forms too, opened
            await details.evaluate("el => el.open = true")
        assert await page.evaluate(UNLABELLED) == [], path
        assert await page.evaluate(CONTRAST) == [], (scheme, path)
