"""The web console (adapters/web/), over HTTP against the running service with Slack stood in for:
sign-in with the one-time link, the cards and their buttons, CSRF, customer text made inert, live updates."""

from __future__ import annotations

import asyncio
import contextlib
import html
import io
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from bot.app import create_app
from bot.bootstrap import build, load_config, settings_from_env
from bot.ingest import make_incoming
from tests.slack_support import SECRET, SLACK_CONFIG, TOKEN, SlackHarness
from tests.standins import serve
from tests.standins.slack_api import SlackStandIn

# Slack's test config, with a console-only channel beside Slack's for support.
CONSOLE_CONFIG = SLACK_CONFIG.replace('channels = ["slack:C0SUPPORT"]', 'channels = ["slack:C0SUPPORT", "web:support"]')
LINK = re.compile(r"console: (http://\S+/console/login\?token=(\S+))")


@dataclass
class Console:
    harness: SlackHarness
    token: str

    @property
    def url(self) -> str:
        return self.harness.url

    def browser(self) -> aiohttp.ClientSession:
        """A fresh browser: its own cookies (IP hosts allowed, as a browser does)."""
        return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def signed_in(self, browser: aiohttp.ClientSession) -> None:
        async with browser.get(f"{self.url}/console/login", params={"token": self.token}) as response:
            assert response.status == 200, await response.text()  # the 303 to /console, followed

    async def page(self, browser: aiohttp.ClientSession, path: str, **params: str) -> str:
        async with browser.get(f"{self.url}{path}", params=params) as response:
            assert response.status == 200, (path, response.status)
            return await response.text()

    async def ingest(self, text: str, external_id: str = "1", **fields: str) -> int:
        values = {"url": "https://reviews.example.com/r/1", "author_name": "Priya", **fields}
        report = await self.harness.container.ingest(
            [make_incoming(source="reviews", external_id=external_id, text=text, **values)]
        )
        return report.new_ids[0]


@asynccontextmanager
async def running_console(tmp_path: Path) -> AsyncIterator[Console]:
    """The whole service on a free loopback port, Slack and the console enabled; the sign-in link read
    from what `unsilo run` prints."""
    from tests.conftest import reference_dir

    reference_dir()  # the Slack stand-in replays the real samples
    config_path = tmp_path / "console.toml"
    config_path.write_text(CONSOLE_CONFIG)
    async with SlackStandIn() as slack:
        settings = settings_from_env(
            {"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": slack.url},
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'console.db'}",
        )
        container = build(settings, config=load_config(config_path))
        with contextlib.redirect_stdout(io.StringIO()) as out:
            runner, url = await serve(create_app(container, run_worker=False))
        printed = LINK.search(out.getvalue())
        assert printed is not None, "unsilo run prints the console's one-time link"
        assert printed.group(1).startswith("http://127.0.0.1:3978/console/login?token=")
        try:
            async with aiohttp.ClientSession() as http:
                yield Console(SlackHarness(container=container, slack=slack, url=url, http=http), printed.group(2))
        finally:
            await runner.cleanup()


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    async with running_console(tmp_path) as running:
        yield running


def forms(page: str) -> dict[str, dict[str, str]]:
    """The console's button forms on a page, by their button's label: their hidden fields."""
    found = {}
    for form in re.findall(r'<form method="post" action="/console/act".*?</form>', page, re.S):
        fields = {name: html.unescape(value) for name, value in re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', form)}
        label = re.findall(r'<button type="submit"[^>]*>([^<]+)</button>', form)[-1]
        found[html.unescape(label)] = fields
    return found


async def owner_of(console: Console, cid: int) -> tuple[str | None, list[tuple[str, str]]]:
    async with console.harness.container.uow() as uow:
        conversation = await uow.conversations.get(cid)
        assert conversation is not None
        if conversation.owner_id is None:
            return conversation.status, []
        return conversation.status, [(i.platform, i.user_id) for i in await uow.people.identities(conversation.owner_id)]


async def test_nobody_gets_in_without_a_session_and_a_wrong_token_gets_nothing(console: Console) -> None:
    async with console.browser() as browser:
        for path in ("/console", "/console/c/1", "/console/search?q=refund", "/console/events", "/console/static/console.js"):
            async with browser.get(f"{console.url}{path}") as response:
                assert response.status == 401, path
                assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        async with browser.post(f"{console.url}/console/act", data={"value": "{}"}) as response:
            assert response.status == 401
        async with browser.get(
            f"{console.url}/console/login", params={"token": ("y" if console.token[0] == "x" else "x") + console.token[1:]}
        ) as response:
            assert response.status == 401
        assert not browser.cookie_jar.filter_cookies(console.url)  # type: ignore[arg-type]


async def test_the_one_time_link_signs_in_once_with_a_strict_httponly_cookie(console: Console) -> None:
    async with console.browser() as browser:
        rebound = {"Host": "evil.example"}  # a page of another site whose name was made to point here (DNS rebinding)
        async with browser.get(f"{console.url}/console/login", params={"token": console.token}, headers=rebound) as response:
            assert response.status == 403  # and the link is not spent:
        async with browser.get(
            f"{console.url}/console/login", params={"token": console.token}, allow_redirects=False
        ) as response:
            assert response.status == 303 and response.headers["Location"] == "/console"
            cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
        page = await console.page(browser, "/console")
        assert "Signed in as owner (web)" in page and "slack:C0SUPPORT" in page and "web:support" in page
        signout = re.search(r'action="/console/logout".*?name="csrf" value="([^"]+)"', page, re.S)
        assert signout is not None
        async with browser.post(f"{console.url}/console/logout", data={"csrf": signout.group(1)}) as response:
            assert response.status == 401  # sent to the sign-in page, which wants a new link
        async with browser.get(f"{console.url}/console") as response:
            assert response.status == 401
    async with console.browser() as other:  # the same link, again: spent
        async with other.get(f"{console.url}/console/login", params={"token": console.token}) as response:
            assert response.status == 401


async def test_a_claim_in_the_console_is_the_persons_and_updates_the_slack_card(console: Console) -> None:
    cid = await console.ingest("My parcel arrived broken")  # support (slack:C0SUPPORT, web:support) and ops
    assert await console.harness.deliver() == 3  # the console-only channel's card too
    (before,) = console.harness.slack.messages("C0SUPPORT")
    assert "Unclaimed" in json.dumps(before["blocks"])
    async with console.browser() as browser:
        await console.signed_in(browser)
        page = await console.page(browser, "/console", channel="slack:C0SUPPORT")
        assert f"#{cid}</a> My parcel arrived broken" in page
        claim = forms(page)["Claim"]
        async with browser.post(f"{console.url}/console/act", data=claim, allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/console?channel=slack:C0SUPPORT"
        assert await owner_of(console, cid) == ("claimed", [("web", "owner")])
        page = await console.page(browser, "/console", channel="slack:C0SUPPORT")
        assert f'role="status">You claimed #{cid}</p>' in page  # the answer, shown once
        assert "You claimed" not in await console.page(browser, "/console", channel="slack:C0SUPPORT")
        assert "Claim" not in forms(page) and "Release" in forms(page)
        await console.harness.deliver()
        (after,) = console.harness.slack.messages("C0SUPPORT")
        assert "Claimed by" in json.dumps(after["blocks"]) and "owner" in json.dumps(after["blocks"])
        assert "edited" in after  # the same Slack message, updated by the outbox


async def test_a_reply_and_a_note_through_the_forms_show_on_the_conversation_page_and_in_search(console: Console) -> None:
    cid = await console.ingest("Where is my refund for order 1234?")
    async with console.browser() as browser:
        await console.signed_in(browser)
        page = await console.page(browser, "/console", channel="web:support")
        async with browser.post(f"{console.url}/console/act", data=forms(page)["Claim"]) as response:
            assert response.status == 200
        page = await console.page(browser, f"/console/c/{cid}")
        note = {**forms(page)["Add note"], "text": "Checked the order: courier lost it"}
        async with browser.post(f"{console.url}/console/act", data=note) as response:
            assert response.status == 200
        labels = forms(await console.page(browser, f"/console/c/{cid}"))
        reply = {**labels[next(k for k in labels if k.startswith("Send"))], "text": "Sorry! A replacement ships today."}
        async with browser.post(f"{console.url}/console/act", data=reply) as response:
            assert response.status == 200
        page = await console.page(browser, f"/console/c/{cid}")
        assert "Checked the order: courier lost it" in page and "Sorry! A replacement ships today." in page
        found = await console.page(browser, "/console/search", q="courier")
        assert f'href="/console/c/{cid}"' in found and "<mark>" in found
        nothing = await console.page(browser, "/console/search", q="zebra")
        assert f'href="/console/c/{cid}"' not in nothing


async def test_the_console_has_the_rights_of_chat(console: Console) -> None:
    cid = await console.ingest("refund please")
    async with console.browser() as browser:
        await console.signed_in(browser)
        page = await console.page(browser, f"/console/c/{cid}")
        dismiss = {**forms(page)["Dismiss"], "text": "spam"}
        async with browser.post(f"{console.url}/console/act", data=dismiss) as response:
            shown = await response.text()
        assert "only a manager of support" in shown
        assert (await owner_of(console, cid))[0] == "open"


async def test_a_post_without_the_csrf_token_is_refused(console: Console) -> None:
    cid = await console.ingest("My parcel arrived broken")
    async with console.browser() as browser:
        await console.signed_in(browser)
        claim = forms(await console.page(browser, "/console"))["Claim"]
        for data in ({k: v for k, v in claim.items() if k != "csrf"}, {**claim, "csrf": "forged"}):
            async with browser.post(f"{console.url}/console/act", data=data, headers={"Origin": "https://evil.example"}) as r:
                assert r.status == 403
        assert await owner_of(console, cid) == ("open", [])
        headers = {"X-CSRF-Token": claim["csrf"]}  # the header does as well as the field
        async with browser.post(
            f"{console.url}/console/act", data={k: v for k, v in claim.items() if k != "csrf"}, headers=headers
        ) as response:
            assert response.status == 200
        assert (await owner_of(console, cid))[0] == "claimed"
        release = forms(await console.page(browser, "/console"))["Release"]
        elsewhere = {**release, "back": "//evil.example/console"}
        async with browser.post(f"{console.url}/console/act", data=elsewhere, allow_redirects=False) as response:
            assert response.status == 303 and response.headers["Location"] == "/console"  # never another site


HOSTILE = '<script>alert("x")</script> <img src=x onerror=alert(1)> <a href="javascript:alert(2)">click</a>'


async def test_hostile_customer_text_is_escaped_and_no_script_link_is_made(console: Console) -> None:
    cid = await console.ingest(HOSTILE, title="<b onmouseover=alert(3)>hi</b>", url="javascript:alert(4)")
    async with console.browser() as browser:
        await console.signed_in(browser)
        for path, params in (
            (f"/console/c/{cid}", {}),
            ("/console", {"channel": "web:support"}),
            ("/console/search", {"q": "alert"}),
        ):
            async with browser.get(f"{console.url}{path}", params=params) as response:
                page = await response.text()
                policy = response.headers["Content-Security-Policy"]
            assert "script-src 'self'" in policy and "unsafe-inline" not in policy
            assert "<script>alert" not in page and "<img" not in page and "<b " not in page, path
            assert 'href="javascript:' not in page.lower(), path
            assert re.search(r"<[a-z][^>]*\son\w+=", page) is None, path  # no tag carries an event handler
            assert re.findall(r"<script\b[^>]*>", page) == ['<script src="/console/static/console.js" defer>'], path
        page = await console.page(browser, f"/console/c/{cid}")
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
        assert "Open original: javascript:alert(4)" in page  # shown as text, not a link


async def read_event(stream: aiohttp.StreamReader, timeout: float) -> str:
    """The data of the next `change` event."""
    while True:
        line = (await asyncio.wait_for(stream.readline(), timeout)).decode()
        if line.startswith("data: "):
            return line.removeprefix("data: ").strip()


async def test_the_event_stream_reports_a_claim_made_on_slack_within_a_second(console: Console) -> None:
    from tests.test_slack import button

    cid = await console.ingest("My parcel arrived broken")
    await console.harness.deliver()
    async with console.browser() as browser:
        await console.signed_in(browser)
        async with browser.get(f"{console.url}/console/events", params={"channel": "slack:C0SUPPORT"}) as events:
            assert events.headers["Content-Type"].startswith("text/event-stream")
            first = await read_event(events.content, 2.0)
            status, _, _ = await console.harness.click(*button("claim", cid), user="UALICE")
            assert status == 200
            started = asyncio.get_running_loop().time()
            changed = await read_event(events.content, 3.0)
            assert changed != first and asyncio.get_running_loop().time() - started < 1.5
        cards = await console.page(browser, "/console/cards", channel="slack:C0SUPPORT")
        assert "Claimed by" in cards and "Claim</button>" not in cards


def test_the_console_is_off_unless_on_loopback_or_when_turned_off() -> None:
    from adapters.web.settings import WebSettings

    assert WebSettings.from_env({}).missing() is None
    assert WebSettings.from_env({"UNSILO_HOST": "::1", "UNSILO_PORT": "8080"}).missing() is None
    assert (
        WebSettings.from_env({"UNSILO_HOST": "::1", "UNSILO_PORT": "8080"}).login_url("t")
        == "http://[::1]:8080/console/login?token=t"
    )
    exposed = WebSettings.from_env({"UNSILO_HOST": "0.0.0.0"}).missing()
    assert exposed is not None and "loopback" in exposed and "'0.0.0.0'" in exposed
    assert WebSettings.from_env({"UNSILO_CONSOLE": "off"}).missing() == "turned off (UNSILO_CONSOLE=off)"


def test_the_printed_link_names_the_address_given_to_unsilo_run() -> None:
    from adapters.web import PLATFORM

    given = settings_from_env({}, host="::1", port=8123)  # `unsilo run --host ::1 --port 8123`
    web = given.of(PLATFORM)
    assert web.missing() is None and web.login_url("t") == "http://[::1]:8123/console/login?token=t"  # type: ignore[attr-defined]
    exposed = settings_from_env({"UNSILO_HOST": "127.0.0.1"}, host="0.0.0.0").of(PLATFORM).missing()
    assert exposed is not None and "'0.0.0.0'" in exposed


async def test_a_console_bound_beyond_loopback_serves_nothing_and_prints_no_link(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = settings_from_env({"UNSILO_HOST": "0.0.0.0"}, database_url=f"sqlite+aiosqlite:///{tmp_path / 'u.db'}")
    container = build(settings, config=load_config(None))
    capsys.readouterr()
    runner, url = await serve(create_app(container, run_worker=False))
    try:
        assert "console:" not in capsys.readouterr().out
        async with aiohttp.ClientSession() as http, http.get(f"{url}/console/login", params={"token": "x"}) as response:
            assert response.status == 404
        assert "loopback" in (container.health.snapshot()["web"].get("reason") or "")
    finally:
        await runner.cleanup()


async def test_the_dashboard_lets_in_its_charts_style_by_a_nonce_of_its_own(console: Console) -> None:
    await console.ingest("My parcel arrived broken")
    async with console.browser() as browser:
        await console.signed_in(browser)
        nonces = []
        for _ in range(2):
            async with browser.get(f"{console.url}/console/dashboard", params={"department": "support"}) as response:
                assert response.status == 200
                page, policy = await response.text(), response.headers["Content-Security-Policy"]
            found = re.search(r"style-src 'self' 'nonce-([\w-]+)';", policy)
            assert found is not None and "unsafe-inline" not in policy and "script-src 'self';" in policy
            assert re.findall(r"<style(?: nonce=\"([^\"]*)\")?>", page) == [found.group(1)] * 5  # each chart's, no other
            assert "<h1>Dashboard: support</h1>" in page and "selected>support</option>" in page
            nonces.append(found.group(1))
        assert nonces[0] != nonces[1]  # a fresh one per page
        async with browser.get(f"{console.url}/console") as response:
            assert "nonce" not in response.headers["Content-Security-Policy"]


async def test_a_request_relayed_by_a_proxy_on_this_machine_is_not_local(console: Console) -> None:
    """Behind nginx on the same box every request comes from 127.0.0.1 for host 127.0.0.1 (`proxy_set_header
    Host $proxy_host`): the proxy's own headers say it came from elsewhere, so the one-time link is refused."""
    async with console.browser() as browser:
        for relayed in ({"X-Forwarded-For": "203.0.113.9"}, {"Forwarded": "for=203.0.113.9"}, {"X-Real-IP": "203.0.113.9"}):
            async with browser.get(f"{console.url}/console/login", params={"token": console.token}, headers=relayed) as response:
                assert response.status == 403, relayed
        await console.signed_in(browser)  # not spent by the refusals: this machine still signs in


async def test_the_one_time_link_expires_and_is_not_made_where_deployed_sign_in_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from adapters.web import auth

    sessions = auth.Sessions(user_id="owner")
    token = sessions.login_token
    assert token is not None
    monkeypatch.setattr(auth.time, "monotonic", lambda: sessions._login_at + auth.LINK_SECONDS + 1)
    assert sessions.sign_in(token) is None and sessions.login_token is None, "printed over 15 minutes ago: spent"
    assert auth.Sessions(user_id="owner", one_time_link=False).login_token is None  # Slack / Entra sign-in only


async def test_the_event_stream_ends_when_its_session_does(console: Console) -> None:
    async with console.browser() as browser:
        await console.signed_in(browser)
        page = await console.page(browser, "/console")
        signout = re.search(r'action="/console/logout".*?name="csrf" value="([^"]+)"', page, re.S)
        assert signout is not None
        async with browser.get(f"{console.url}/console/events", params={"channel": "slack:C0SUPPORT"}) as events:
            await read_event(events.content, 2.0)
            async with browser.post(f"{console.url}/console/logout", data={"csrf": signout.group(1)}) as response:
                assert response.status == 401
            rest = await asyncio.wait_for(events.content.read(), 3.0)  # the server closes the stream
            assert b"event: change" not in rest
