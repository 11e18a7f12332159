"""Deployed sign-in to the console with OpenID Connect: "Sign in with Slack" and Microsoft Entra ID.

The flow is the authorization code flow (OpenID Connect Core 1.0 §3.1) with PKCE (RFC 7636, S256),
`state` and `nonce`:

1. `GET /console/oidc/<provider>/start` remembers a pending sign-in under a random `state` (its
   nonce, its PKCE verifier, and a random value also set as a short-lived cookie of this browser,
   so a `state` started in one browser cannot finish in another), and redirects to the provider.
2. The provider sends the browser back to `GET /console/oidc/<provider>/callback?code&state`. The
   `state` is taken out of the pending ones (a replay finds nothing: 400), the code is exchanged at
   the token endpoint (with the client secret and the PKCE verifier), and the ID token is verified
   with PyJWT: its RS256 signature against the issuer's JWKS, `iss`, `aud` (our client id), `exp`,
   `iat`, our `nonce`, and the organisation: Slack's `https://slack.com/team_id` must be the
   configured workspace, Entra's `tid` the configured tenant.
3. The account is the chat one, `slack:<https://slack.com/user_id>` or `teams:<oid>`, and it must be
   a known person's (the config's `[people]`, or someone the bot has met in chat): the console
   session acts as that person's `web` account (linked to the person on first sign-in), so rights,
   the four-eyes check and credit follow the person exactly as in chat. Anybody else gets 403.

Sources (cited, not copied):
- Sign in with Slack: https://docs.slack.dev/authentication/sign-in-with-slack (authorize at
  `/openid/connect/authorize`, scopes `openid email profile`, code exchanged with
  `openid.connect.token`); the ID token's claims, among them `https://slack.com/user_id` and
  `https://slack.com/team_id`: https://docs.slack.dev/reference/methods/openid.connect.token ;
  the endpoints and RS256: https://slack.com/.well-known/openid-configuration (issuer
  `https://slack.com`, JWKS `https://slack.com/openid/connect/keys`).
- Microsoft Entra ID: the ID token claims reference,
  https://learn.microsoft.com/en-us/entra/identity-platform/id-token-claims-reference — `aud` is the
  application (client) id and must be validated; `iss` ends in `/v2.0` and names the tenant; `tid`
  is the tenant's GUID; `oid` is the user's immutable object id, the same in every application of
  the tenant (Teams' `aadObjectId`, which adapters/teams keys people by), and needs the `profile`
  scope. The endpoints come from the tenant's discovery document,
  `https://login.microsoftonline.com/<tenant>/v2.0/.well-known/openid-configuration`.

The library is PyJWT with its `crypto` extra (`jwt.PyJWKSet` + `jwt.decode`): small, well kept, and
already in the tree through botbuilder's msal. Its `PyJWKClient` fetches keys with blocking urllib,
so the discovery document and the JWKS are fetched here with aiohttp and cached (the JWKS is read
again once when a token names an unknown key id: the provider rotated its keys).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from adapters.web.providers import Provider

if TYPE_CHECKING:
    from adapters.web.service import Console

logger = logging.getLogger(__name__)

SCOPES = "openid profile email"  # `profile` brings Entra's `oid` (see the claims reference above)
PENDING_SECONDS = 600  # a sign-in must come back from the provider within this long
PENDING_MAX = 10_000  # pending sign-ins kept at most (the oldest go first): nobody can fill the memory
CACHE_SECONDS = 3600  # the discovery document and the JWKS are read again after this long
LEEWAY_SECONDS = 60  # clock skew allowed on exp / iat
BROWSER_COOKIE = "unsilo_console_oidc"


class Refused(Exception):
    """A sign-in that must not go on; `message` is for the person, the log gets the details."""

    def __init__(self, message: str, *, detail: str = "", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or message
        self.status = status


@dataclass
class Pending:
    """A sign-in sent to the provider and not back yet."""

    provider: str
    nonce: str
    verifier: str
    browser: str  # the value of this browser's BROWSER_COOKIE
    started: float = field(default_factory=time.monotonic)


@dataclass
class _Cached:
    value: dict[str, Any]
    read: float


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 §4.2, S256: BASE64URL(SHA256(verifier)) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


class SignIn:
    """The providers, the pending sign-ins, and the discovery documents and key sets read from them."""

    def __init__(self, providers: tuple[Provider, ...], *, base_url: str) -> None:
        self.providers = {p.name: p for p in providers}
        self.base_url = base_url.rstrip("/")
        self._pending: dict[str, Pending] = {}
        self._documents: dict[str, _Cached] = {}
        self._keys: dict[str, _Cached] = {}
        self._http: ClientSession | None = None

    def redirect_uri(self, provider: Provider) -> str:
        """What the provider sends the browser back to; register it with the app (Slack: Redirect URLs;
        Entra: the app registration's Web redirect URI)."""
        return f"{self.base_url}/console/oidc/{provider.name}/callback"

    def http(self) -> ClientSession:
        if self._http is None or self._http.closed:
            self._http = ClientSession(timeout=ClientTimeout(total=10))
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    # --- step 1 -------------------------------------------------------------------------------

    def start(self, provider: Provider) -> tuple[str, str]:
        """A new pending sign-in: its `state`, and the value of the cookie that binds it to this browser."""
        now = time.monotonic()
        for state in [s for s, p in self._pending.items() if now - p.started > PENDING_SECONDS]:
            del self._pending[state]
        while len(self._pending) >= PENDING_MAX:
            del self._pending[next(iter(self._pending))]
        state = secrets.token_urlsafe(32)
        pending = Pending(
            provider.name, nonce=secrets.token_urlsafe(32), verifier=secrets.token_urlsafe(64), browser=secrets.token_urlsafe(32)
        )
        self._pending[state] = pending
        return state, pending.browser

    async def authorize_url(self, provider: Provider, state: str) -> str:
        pending = self._pending[state]
        document = await self.document(provider)
        query = {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": self.redirect_uri(provider),
            "scope": SCOPES,
            "state": state,
            "nonce": pending.nonce,
            # PKCE: Entra ID checks it; a provider that does not know it ignores both parameters (RFC 7636 §5),
            # and `state`, `nonce` and the client secret still hold there.
            "code_challenge": pkce_challenge(pending.verifier),
            "code_challenge_method": "S256",
        }
        return f"{document['authorization_endpoint']}?{urlencode(query)}"

    # --- step 2 -------------------------------------------------------------------------------

    def take(self, provider: Provider, state: str, browser: str) -> Pending:
        """The pending sign-in of `state`, spent: a second callback with it finds nothing."""
        pending = self._pending.pop(state, None) if state else None
        if pending is None or time.monotonic() - pending.started > PENDING_SECONDS:
            raise Refused("This sign-in was used already or took too long; start again.", detail="unknown or spent state")
        if pending.provider != provider.name or not hmac.compare_digest(browser.encode(), pending.browser.encode()):
            raise Refused("This sign-in was started elsewhere; start again.", detail="state of another provider or browser")
        return pending

    async def finish(self, provider: Provider, pending: Pending, code: str) -> dict[str, Any]:
        """Exchange the code at the token endpoint and return the verified ID token's claims."""
        document = await self.document(provider)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri(provider),
            "client_id": provider.client_id,
            "client_secret": provider.client_secret,  # client_secret_post: both providers take it
            "code_verifier": pending.verifier,
        }
        try:
            async with self.http().post(document["token_endpoint"], data=form) as response:
                body = await response.json(content_type=None)
        except (ClientError, TimeoutError, ValueError) as exc:
            raise Refused(
                "The sign-in service did not answer; try again.", detail=f"token endpoint: {exc!r}", status=502
            ) from exc
        # Slack answers 200 with {"ok": false, "error": …}; Entra a 400 with {"error": …}.
        token = body.get("id_token") if isinstance(body, dict) and body.get("ok", True) else None
        if not isinstance(token, str):
            error = body.get("error") if isinstance(body, dict) else None
            raise Refused("The sign-in service refused the sign-in; start again.", detail=f"token endpoint: {error!r}")
        return await self.verify(provider, token, nonce=pending.nonce)

    async def verify(self, provider: Provider, token: str, *, nonce: str) -> dict[str, Any]:
        """The claims of an ID token that the provider signed for us, now, for this sign-in and organisation."""
        import jwt

        try:
            header = jwt.get_unverified_header(token)
            key = await self.key(provider, str(header.get("kid", "")))
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],  # both providers sign with RS256; never "none" or an HMAC with a public key
                audience=provider.client_id,
                issuer=provider.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["iss", "aud", "exp", "iat", "nonce"]},
            )
        except jwt.PyJWTError as exc:
            raise Refused("The sign-in could not be verified; start again.", detail=f"ID token: {exc}") from exc
        if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
            raise Refused("The sign-in could not be verified; start again.", detail="ID token: wrong nonce")
        org = str(claims.get(provider.org_claim, ""))
        if org.lower() != provider.org.lower():
            raise Refused(
                f"This console is for another {'workspace' if provider.platform == 'slack' else 'organisation'}.",
                detail=f"ID token: {provider.org_claim} {org!r} is not the configured {provider.org!r}",
                status=403,
            )
        if not str(claims.get(provider.user_claim, "")).strip():
            raise Refused("The sign-in did not say who you are.", detail=f"ID token without {provider.user_claim}")
        return claims

    # --- what the providers publish --------------------------------------------------------------

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self.http().get(url) as response:
                response.raise_for_status()
                value = await response.json(content_type=None)
        except (ClientError, TimeoutError, ValueError) as exc:
            raise Refused("The sign-in service did not answer; try again.", detail=f"{url}: {exc!r}", status=502) from exc
        if not isinstance(value, dict):
            raise Refused("The sign-in service did not answer; try again.", detail=f"{url}: not a JSON object", status=502)
        return value

    async def document(self, provider: Provider) -> dict[str, Any]:
        """The provider's discovery document (OpenID Connect Discovery 1.0), checked to be its issuer's."""
        cached = self._documents.get(provider.name)
        if cached is not None and time.monotonic() - cached.read < CACHE_SECONDS:
            return cached.value
        document = await self._get_json(provider.discovery_url)
        if document.get("issuer") != provider.issuer or not all(
            isinstance(document.get(k), str) for k in ("authorization_endpoint", "token_endpoint", "jwks_uri")
        ):
            raise Refused(
                "The sign-in service is misconfigured.", detail=f"discovery document of {document.get('issuer')!r}", status=502
            )
        self._documents[provider.name] = _Cached(document, time.monotonic())
        return document

    async def key(self, provider: Provider, kid: str) -> Any:
        """The provider's public key `kid`; the JWKS is read again once for a key id it does not hold."""
        import jwt

        for fresh in (False, True):
            cached = self._keys.get(provider.name)
            if fresh or cached is None or time.monotonic() - cached.read >= CACHE_SECONDS:
                document = await self.document(provider)
                cached = _Cached(await self._get_json(document["jwks_uri"]), time.monotonic())
                self._keys[provider.name] = cached
            try:
                return jwt.PyJWKSet.from_dict(cached.value)[kid].key
            except (KeyError, jwt.PyJWKError, jwt.PyJWKSetError):
                if fresh:
                    raise jwt.InvalidSignatureError(f"no key {kid!r} in the issuer's JWKS") from None
        raise AssertionError("unreachable")


# --- routes ---------------------------------------------------------------------------------------


def mount(app: web.Application, console: Console) -> None:
    """Serve `/console/signin` and each provider's start and callback."""
    signin = SignIn(console.settings.providers, base_url=console.settings.console_url)

    async def closed(_: web.Application) -> None:
        await signin.close()

    app.on_cleanup.append(closed)
    routes = _Routes(console, signin)
    app.router.add_get("/console/signin", routes.choose)
    app.router.add_get("/console/oidc/{provider}/start", routes.start)
    app.router.add_get("/console/oidc/{provider}/callback", routes.callback)


class _Routes:
    def __init__(self, console: Console, signin: SignIn) -> None:
        self.console = console
        self.signin = signin
        self.secure = console.settings.console_url.startswith("https://")

    def _page(self, status: int, title: str, message: str = "") -> web.StreamResponse:
        from adapters.web import render, service

        page = render.page_response(
            "error.html", status=status, title=title, session=None, message=message, signin=service.signin_links(self.console)
        )
        return service.secured(page)

    def _provider(self, request: web.Request) -> Provider:
        provider = self.signin.providers.get(request.match_info["provider"])
        if provider is None:
            raise web.HTTPNotFound()
        return provider

    async def choose(self, request: web.Request) -> web.StreamResponse:
        return self._page(200, "Sign in")

    async def start(self, request: web.Request) -> web.StreamResponse:
        provider = self._provider(request)
        state, browser = self.signin.start(provider)
        try:
            url = await self.signin.authorize_url(provider, state)
        except Refused as exc:
            logger.warning("console sign-in with %s not started: %s", provider.name, exc.detail)
            return self._page(exc.status, "Sign-in failed", exc.message)
        from adapters.web import service

        response = web.Response(status=302, headers={"Location": url})
        # Lax, not Strict: the provider's redirect back is a cross-site navigation, and must carry it.
        response.set_cookie(
            BROWSER_COOKIE,
            browser,
            path=f"/console/oidc/{provider.name}",
            httponly=True,
            samesite="Lax",
            secure=self.secure,
            max_age=PENDING_SECONDS,
        )
        return service.secured(response)

    async def callback(self, request: web.Request) -> web.StreamResponse:
        provider = self._provider(request)
        try:
            if "error" in request.query:  # the person said no, or the provider refused (RFC 6749 §4.1.2.1)
                self.signin.take(provider, request.query.get("state", ""), request.cookies.get(BROWSER_COOKIE, ""))
                raise Refused("The sign-in was cancelled.", detail=f"provider error {request.query['error'][:100]!r}", status=401)
            pending = self.signin.take(provider, request.query.get("state", ""), request.cookies.get(BROWSER_COOKIE, ""))
            claims = await self.signin.finish(provider, pending, request.query.get("code", ""))
        except Refused as exc:
            logger.warning("console sign-in with %s refused: %s", provider.name, exc.detail)
            return self._page(exc.status, "Sign-in failed", exc.message)
        user_id = str(claims[provider.user_claim]).strip()
        known = await self.account(provider.platform, user_id)
        if known is None:
            logger.warning("console sign-in refused: %s:%s is nobody Unsilo knows", provider.platform, user_id)
            return self._page(
                403,
                "Not someone this console knows",
                f"You signed in as {provider.platform}:{user_id}, but Unsilo does not know that account: ask an admin "
                f'to list it under [people] in the config ({provider.platform} = "{user_id}").',
            )
        account, name = known
        from adapters.web import auth, service

        session_id = self.console.sessions.start(account, name)
        logger.info("console sign-in with %s: %s:%s as web:%s", provider.name, provider.platform, user_id, account)
        # A page of ours, not a redirect: a browser that counts a redirect chain begun on the provider's
        # site as cross-site withholds the SameSite=Strict cookie from the chain's next request (Chromium
        # today sends it; tests/test_console_oidc.py checks the flow in it); from this page it is same-site.
        page = service.secured(
            web.Response(
                text=(
                    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
                    '<meta http-equiv="refresh" content="0;url=/console"><title>Signed in · Unsilo console</title>'
                    '</head><body><p>Signed in. <a href="/console">Open the console</a>.</p></body></html>'
                ),
                content_type="text/html",
            )
        )
        auth.set_cookie(page, request, session_id, secure=self.secure)
        page.del_cookie(BROWSER_COOKIE, path=f"/console/oidc/{provider.name}")
        return page

    async def account(self, platform: str, user_id: str) -> tuple[str, str] | None:
        """The console (`web`) account and name of the person behind the chat account, linking one to
        the person on their first sign-in; None for nobody known."""
        async with self.console.wiring.bus.uow_factory() as uow:
            known = await uow.people.with_identities(platform, user_id)
            if known is None:
                return None
            person, identities = known
            web_accounts = sorted(i.user_id for i in identities if i.platform == "web")
            if web_accounts:
                return web_accounts[0], person.name
            account = f"{platform}:{user_id}"
            linked = await uow.people.resolve("web", account, name=person.name)
            if linked.id != person.id:  # new: the console account is the person's from now on
                await uow.people.merge(linked, into=person)
            await uow.commit()
            return account, person.name
