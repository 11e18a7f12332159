"""Deployed sign-in to the console (adapters/web/oidc.py): Sign in with Slack and Entra ID against a
loopback OpenID Connect provider (tests/standins/oidc.py), through the running service."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web

from adapters.web.settings import WebSettings
from bot.app import create_app
from bot.bootstrap import Container, build, load_config, settings_from_env
from bot.ingest import make_incoming
from tests.standins.oidc import OIDCStandIn
from tests.test_console import forms

if TYPE_CHECKING:
    from playwright.async_api import Page

    from tests.browser import Screenshot

pytest_plugins = ("tests.browser",)

TEAM = "T0ACME"
TENANT = "7d1c5e4a-0000-4000-8000-0000000000aa"
ALICE_OID = "6f1c2d3e-0000-4000-8000-00000000a11c"
CONFIG = f"""
[unsilo]
admins = ["web:owner"]

[people.alice]
name = "Alice Agent"
slack = "U0ALICE"
teams = "{ALICE_OID}"

[departments.support]
channels = ["web:support"]

[[rules]]
name = "support"
departments = ["support"]
any = ["refund", "broken"]
"""


@dataclass
class Deployed:
    url: str
    container: Container
    slack: OIDCStandIn
    entra: OIDCStandIn

    def browser(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def sign_in(self, browser: aiohttp.ClientSession, provider: str = "slack") -> aiohttp.ClientResponse:
        """The whole flow, redirects followed: console -> provider -> console's callback."""
        async with browser.get(f"{self.url}/console/oidc/{provider}/start") as response:
            await response.read()
            return response


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def deployed(tmp_path: Path, *, scheme: str = "http", idp_host: str = "127.0.0.1") -> AsyncIterator[Deployed]:
    """The service with both providers configured, on a loopback port that UNSILO_CONSOLE_URL names
    (`https`: as behind a TLS-terminating proxy, the browser's side of which a test plays by hand)."""
    (tmp_path / "u.toml").write_text(CONFIG)
    async with (
        OIDCStandIn(
            client_id="slack-cid", client_secret="slack-secret", user={"https://slack.com/user_id": "U0ALICE"}, host=idp_host
        ) as slack,
        OIDCStandIn(client_id="entra-cid", client_secret="entra-secret", user={}, path=f"/{TENANT}/v2.0", host=idp_host) as entra,
    ):
        slack.user["https://slack.com/team_id"] = TEAM
        slack.slack_style = True
        entra.user.update(oid=ALICE_OID, tid=TENANT, name="Alice A.")
        port = free_port()
        env = {
            "UNSILO_CONSOLE_URL": f"{scheme}://127.0.0.1:{port}",
            "UNSILO_CONSOLE_SLACK_CLIENT_ID": "slack-cid",
            "UNSILO_CONSOLE_SLACK_SECRET": "slack-secret",
            "UNSILO_CONSOLE_SLACK_TEAM": TEAM,
            "UNSILO_CONSOLE_SLACK_ISSUER": slack.issuer,
            "UNSILO_CONSOLE_ENTRA_TENANT": TENANT,
            "UNSILO_CONSOLE_ENTRA_CLIENT_ID": "entra-cid",
            "UNSILO_CONSOLE_ENTRA_SECRET": "entra-secret",
            "UNSILO_CONSOLE_ENTRA_AUTHORITY": entra.url,
        }
        settings = settings_from_env(env, database_url=f"sqlite+aiosqlite:///{tmp_path / 'u.db'}")
        container = build(settings, config=load_config(tmp_path / "u.toml"))
        runner = web.AppRunner(create_app(container, run_worker=False))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield Deployed(f"http://127.0.0.1:{port}", container, slack, entra)
        finally:
            await runner.cleanup()


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Deployed]:
    async with deployed(tmp_path) as running:
        yield running


async def owner(console: Deployed, cid: int) -> tuple[str | None, set[tuple[str, str]]]:
    async with console.container.uow() as uow:
        conversation = await uow.conversations.get(cid)
        assert conversation is not None
        if conversation.owner_id is None:
            return conversation.status, set()
        return conversation.status, {(i.platform, i.user_id) for i in await uow.people.identities(conversation.owner_id)}


async def signed_in_page(console: Deployed, browser: aiohttp.ClientSession) -> str:
    async with browser.get(f"{console.url}/console") as response:
        assert response.status == 200, response.status
        return await response.text()


async def test_sign_in_with_slack_acts_as_the_chat_person(console: Deployed) -> None:
    cid = (
        await console.container.ingest(
            [make_incoming(source="reviews", external_id="1", text="My parcel arrived broken", author_name="Priya")]
        )
    ).new_ids[0]
    async with console.browser() as browser:
        async with browser.get(f"{console.url}/console") as response:  # no session: 401, with the ways in
            page = await response.text()
            assert response.status == 401
        assert 'href="/console/oidc/slack/start">Sign in with Slack</a>' in page
        assert 'href="/console/oidc/entra/start">Sign in with Microsoft Entra ID</a>' in page
        response = await console.sign_in(browser)
        assert response.status == 200 and 'url=/console"' in await response.text()
        (authorize,) = console.slack.routes("authorize")
        assert authorize["scope"] == "openid profile email" and authorize["code_challenge_method"] == "S256"
        assert authorize["redirect_uri"] == f"{console.url}/console/oidc/slack/callback"
        assert len(authorize["state"]) >= 32 and len(authorize["nonce"]) >= 32
        (token,) = console.slack.routes("token")
        assert token["client_secret"] == "slack-secret" and len(token["code_verifier"]) >= 43
        cookie = response.headers.getall("Set-Cookie")
        assert any("unsilo_console=" in c and "HttpOnly" in c and "SameSite=Strict" in c for c in cookie)
        page = await signed_in_page(console, browser)
        assert "Signed in as Alice Agent (web)" in page
        claim = forms(page)["Claim"]
        async with browser.post(f"{console.url}/console/act", data=claim) as response:
            assert response.status == 200
        signout = re.search(r'action="/console/logout".*?name="csrf" value="([^"]+)"', page, re.S)
        assert signout is not None
        async with browser.post(f"{console.url}/console/logout", data={"csrf": signout.group(1)}) as response:
            assert response.status == 200 and "Sign in with Slack" in await response.text()  # back to the ways in
        async with browser.get(f"{console.url}/console") as response:
            assert response.status == 401
    status, accounts = await owner(console, cid)
    assert status == "claimed"
    assert {("slack", "U0ALICE"), (("teams", ALICE_OID)), ("web", "slack:U0ALICE")} <= accounts  # Alice, her web account linked


async def test_sign_in_with_entra_is_the_teams_person_and_links_one_web_account(console: Deployed) -> None:
    async with console.browser() as browser:
        assert (await console.sign_in(browser, "slack")).status == 200
    async with console.browser() as browser:
        assert (await console.sign_in(browser, "entra")).status == 200
        assert "Signed in as Alice Agent (web)" in await signed_in_page(console, browser)
    async with console.container.uow() as uow:
        person = await uow.people.by_identity("teams", ALICE_OID)
        assert person is not None
        web_accounts = [i.user_id for i in await uow.people.identities(person.id) if i.platform == "web"]  # type: ignore[arg-type]
    assert web_accounts == ["slack:U0ALICE"]  # the same person's one console account, whichever way she came


@pytest.mark.parametrize(
    ("provider", "change", "status"),
    [
        ("slack", {"aud": "someone-else"}, 400),
        ("slack", {"exp": int(time.time()) - 3600}, 400),
        ("slack", {"nonce": "not-the-one-sent"}, 400),
        ("slack", {"iss": "https://evil.example"}, 400),
        ("slack", {"https://slack.com/team_id": "T0OTHER"}, 403),
        ("slack", "other key", 400),
        ("entra", {"tid": "00000000-0000-4000-8000-000000000bad"}, 403),
        ("entra", {"aud": "someone-else"}, 400),
        ("entra", "other key", 400),
    ],
)
async def test_a_forged_or_foreign_id_token_is_refused(console: Deployed, provider: str, change: Any, status: int) -> None:
    idp = console.slack if provider == "slack" else console.entra
    if change == "other key":
        idp.sign_with_other_key = True
    else:
        idp.tamper = change
    async with console.browser() as browser:
        response = await console.sign_in(browser, provider)
        assert response.status == status
        assert "Sign-in failed" in await response.text()
        async with browser.get(f"{console.url}/console") as page:
            assert page.status == 401  # no session came of it


async def test_a_replayed_or_transplanted_state_is_refused(console: Deployed) -> None:
    async with console.browser() as browser:
        async with browser.get(f"{console.url}/console/oidc/slack/start", allow_redirects=False) as start:
            assert start.status == 302
            assert any("SameSite=Lax" in c and "HttpOnly" in c for c in start.headers.getall("Set-Cookie"))
            authorize = start.headers["Location"]
        async with browser.get(authorize, allow_redirects=False) as provider:
            callback = provider.headers["Location"]
        async with console.browser() as other:  # the same callback in another browser (login CSRF): refused
            async with other.get(callback) as response:
                assert response.status == 400 and "started elsewhere" in await response.text()
        async with console.browser() as browser:
            response = await console.sign_in(browser)
            assert response.status == 200
            callback = str(response.url)
            async with browser.get(callback) as again:  # the same state (and code) a second time
                assert again.status == 400 and "used already" in await again.text()
    assert len(console.slack.routes("token")) == 1  # the replay never reached the token endpoint


async def test_an_unknown_person_or_a_cancelled_sign_in_gets_no_session(console: Deployed) -> None:
    console.slack.user["https://slack.com/user_id"] = "U0STRANGER"
    async with console.browser() as browser:
        response = await console.sign_in(browser)
        page = await response.text()
        assert response.status == 403
        assert "Not someone this console knows" in page and "slack:U0STRANGER" in page and "[people]" in page
        async with browser.get(f"{console.url}/console") as denied:
            assert denied.status == 401
    async with console.container.uow() as uow:
        assert await uow.people.by_identity("slack", "U0STRANGER") is None  # nobody was made of them
        assert await uow.people.by_identity("web", "slack:U0STRANGER") is None
    console.slack.deny = True
    async with console.browser() as browser:
        response = await console.sign_in(browser)
        assert response.status == 401 and "cancelled" in await response.text()


async def test_the_token_endpoints_refusal_is_a_failed_sign_in(console: Deployed) -> None:
    console.slack.client_secret = "rotated"  # the console's secret is no longer the app's
    async with console.browser() as browser:
        response = await console.sign_in(browser)
        assert response.status == 400 and "refused the sign-in" in await response.text()


def test_deployed_settings() -> None:
    slack = {"UNSILO_CONSOLE_SLACK_CLIENT_ID": "c", "UNSILO_CONSOLE_SLACK_SECRET": "s", "SLACK_TEAM_ID": TEAM}
    deployed = WebSettings.from_env({**slack, "UNSILO_HOST": "0.0.0.0", "UNSILO_CONSOLE_URL": "https://unsilo.example.com"})
    assert deployed.missing() is None and [p.org for p in deployed.providers] == [TEAM]
    assert "UNSILO_CONSOLE_URL" in (WebSettings.from_env({**slack, "UNSILO_HOST": "0.0.0.0"}).missing() or "")
    plain = WebSettings.from_env({**slack, "UNSILO_HOST": "0.0.0.0", "UNSILO_CONSOLE_URL": "http://unsilo.example.com"})
    assert "https" in (plain.missing() or "")
    assert "SECRET" in (WebSettings.from_env({"UNSILO_CONSOLE_SLACK_CLIENT_ID": "c"}).missing() or "")
    no_team = {k: v for k, v in slack.items() if k != "SLACK_TEAM_ID"}
    assert "workspace" in (WebSettings.from_env({**no_team, "UNSILO_CONSOLE_URL": "https://u.example"}).missing() or "")
    entra = {"UNSILO_CONSOLE_ENTRA_CLIENT_ID": "c", "UNSILO_CONSOLE_ENTRA_SECRET": "s", "UNSILO_CONSOLE_URL": "https://u.example"}
    for tenant in ("common", "organizations", "contoso.onmicrosoft.com"):
        problem = WebSettings.from_env({**entra, "UNSILO_CONSOLE_ENTRA_TENANT": tenant}).missing() or ""
        assert "GUID" in problem, tenant
    (provider,) = WebSettings.from_env({**entra, "UNSILO_CONSOLE_ENTRA_TENANT": TENANT.upper()}).providers
    assert provider.issuer == f"https://login.microsoftonline.com/{TENANT}/v2.0" and provider.platform == "teams"
    assert "s" not in repr(provider).split("client_id")[0] and "secret" not in repr(provider)
    assert WebSettings.from_env({"UNSILO_HOST": "0.0.0.0"}).missing() is not None  # no provider: loopback only, as before


async def test_a_deployed_console_beyond_loopback_prints_no_link_and_answers_anyone_signed_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        "UNSILO_HOST": "0.0.0.0",
        "UNSILO_CONSOLE_URL": "https://unsilo.example.com",
        "UNSILO_CONSOLE_SLACK_CLIENT_ID": "c",
        "UNSILO_CONSOLE_SLACK_SECRET": "s",
        "UNSILO_CONSOLE_SLACK_TEAM": TEAM,
    }
    container = build(settings_from_env(env, database_url=f"sqlite+aiosqlite:///{tmp_path / 'u.db'}"), config=load_config(None))
    capsys.readouterr()
    runner = web.AppRunner(create_app(container, run_worker=False))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        assert "console:" not in capsys.readouterr().out  # no one-time link for a console other machines reach
        async with aiohttp.ClientSession() as http:
            headers = {"Host": "unsilo.example.com", "X-Forwarded-Proto": "https"}  # behind the reverse proxy
            async with http.get(f"http://127.0.0.1:{port}/console", headers=headers) as response:
                assert response.status == 401 and "Sign in with Slack" in await response.text()
            async with http.get(f"http://127.0.0.1:{port}/console/signin", headers=headers) as response:
                assert response.status == 200 and re.search(r'href="/console/oidc/slack/start"', await response.text())
    finally:
        await runner.cleanup()


async def test_behind_https_both_cookies_are_secure(tmp_path: Path) -> None:
    async with deployed(tmp_path, scheme="https") as console, console.browser() as browser:
        async with browser.get(f"{console.url}/console/oidc/slack/start", allow_redirects=False) as start:
            (binding,) = start.headers.getall("Set-Cookie")
            assert "Secure" in binding and "SameSite=Lax" in binding
            async with browser.get(start.headers["Location"], allow_redirects=False) as provider:
                back = provider.headers["Location"]
        assert back.startswith(f"https://127.0.0.1:{console.url.rsplit(':', 1)[1]}/console/oidc/slack/callback?")
        # The proxy's TLS ends here: the callback reaches the service over http, the cookie as the browser sends it.
        cookie = {"Cookie": binding.split(";", 1)[0].removeprefix("Set-Cookie: ")}
        async with browser.get("http" + back.removeprefix("https"), headers=cookie) as response:
            assert response.status == 200, await response.text()
            session = [c for c in response.headers.getall("Set-Cookie") if c.startswith("unsilo_console=")]
        assert len(session) == 1 and "Secure" in session[0] and "SameSite=Strict" in session[0]


async def test_the_providers_new_signing_key_is_fetched_once_it_is_used(console: Deployed) -> None:
    async with console.browser() as browser:
        assert (await console.sign_in(browser)).status == 200
    console.slack.rotate()
    async with console.browser() as browser:
        assert (await console.sign_in(browser)).status == 200
    assert len(console.slack.routes("keys")) == 2 and len(console.slack.routes("discovery")) == 1  # both cached otherwise


async def test_in_a_real_browser_sign_in_with_slack_lands_on_the_console(
    tmp_path: Path, page: Page, screenshot: Screenshot
) -> None:
    # The provider on another site (localhost, the console on 127.0.0.1): its redirect back is cross-site,
    # as Slack's is, and the SameSite=Strict session cookie must still be in use on the page that follows.
    async with deployed(tmp_path, idp_host="localhost") as console:
        response = await page.goto(f"{console.url}/console")
        assert response is not None and response.status == 401
        await screenshot(page, "sign-in")
        await page.get_by_role("link", name="Sign in with Slack").click()
        await page.wait_for_url(f"{console.url}/console")
        await page.get_by_text("Signed in as Alice Agent (web)").wait_for()
        await screenshot(page, "signed-in")
        assert console.slack.routes("authorize")[0]["redirect_uri"] == f"{console.url}/console/oidc/slack/callback"
        await page.goto("about:blank")  # closes the page's event stream, which the service would wait for
