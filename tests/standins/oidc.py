"""A loopback OpenID Connect provider, for the console's deployed sign-in (adapters/web/oidc.py).

`OIDCStandIn` is a real aiohttp server on 127.0.0.1 that plays Slack's "Sign in with Slack" or an
Entra ID tenant: it serves a discovery document at `<issuer>/.well-known/openid-configuration`, its
JWKS (an RSA key generated when it starts), an authorization endpoint that signs in `user` at once
(redirecting back with a one-use code, or `error=access_denied` when `deny`), and a token endpoint
that checks the client's id and secret, the redirect URI and the PKCE verifier, and issues an
RS256-signed ID token with the nonce of the authorization request::

    async with OIDCStandIn(client_id="cid", client_secret="s", user={"https://slack.com/user_id": "U1"}) as idp:
        ...  # point the console's issuer at idp.issuer

`rotate()` replaces the signing key (and its key id), as a provider rolling its keys does.
`tamper` overrides claims of the next ID tokens (a wrong `aud`, an old `exp`, another nonce or team)
and `sign_with_other_key` signs them with a key the JWKS does not hold under that key id.
Every request is recorded in `calls` as (route, query or form).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any, Self

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.standins import serve

KID = "standin-key-1"


class OIDCStandIn:
    def __init__(
        self, *, client_id: str, client_secret: str, user: dict[str, Any], path: str = "", host: str = "127.0.0.1"
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.user = dict(user)  # the signed-in person's claims (`https://slack.com/user_id`, `oid`, `tid`…)
        self.path = path.rstrip("/")  # e.g. "/<tenant>/v2.0" for an Entra tenant
        self.host = host  # the name its URLs use ("localhost": another site than the console's 127.0.0.1)
        self.tamper: dict[str, Any] = {}
        self.sign_with_other_key = False
        self.slack_style = False  # Slack's token endpoint answers 200 {"ok": false, …} when it refuses
        self.deny = False
        self.calls: list[tuple[str, dict[str, str]]] = []
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = KID
        self._codes: dict[str, dict[str, str]] = {}
        self._runner: web.AppRunner | None = None
        self.url = ""

    @property
    def issuer(self) -> str:
        return f"{self.url}{self.path}"

    async def start(self) -> Self:
        app = web.Application()
        app.router.add_get(f"{self.path}/.well-known/openid-configuration", self._discovery)
        app.router.add_get(f"{self.path}/keys", self._keys)
        app.router.add_get(f"{self.path}/authorize", self._authorize)
        app.router.add_post(f"{self.path}/token", self._token)
        self._runner, url = await serve(app)
        self.url = url.replace("127.0.0.1", self.host, 1)
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def routes(self, name: str) -> list[dict[str, str]]:
        return [params for route, params in self.calls if route == name]

    async def _discovery(self, request: web.Request) -> web.Response:
        self.calls.append(("discovery", {}))
        return web.json_response(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/keys",
                "response_types_supported": ["code"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def _keys(self, request: web.Request) -> web.Response:
        self.calls.append(("keys", {}))
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return web.json_response({"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]})

    def rotate(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = f"{KID}-{secrets.token_hex(4)}"

    async def _authorize(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        self.calls.append(("authorize", query))
        if query.get("response_type") != "code" or query.get("client_id") != self.client_id or "redirect_uri" not in query:
            return web.Response(status=400, text="bad authorization request")
        back = query["redirect_uri"]
        if self.deny:
            return web.Response(status=302, headers={"Location": f"{back}?error=access_denied&state={query.get('state', '')}"})
        code = secrets.token_urlsafe(16)
        self._codes[code] = query
        return web.Response(status=302, headers={"Location": f"{back}?code={code}&state={query.get('state', '')}"})

    def _refuse(self, error: str) -> web.Response:
        if self.slack_style:
            return web.json_response({"ok": False, "error": error})
        return web.json_response({"error": error}, status=400)

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        self.calls.append(("token", form))
        asked = self._codes.pop(form.get("code", ""), None)  # a code is good once
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return self._refuse("invalid_client")
        if asked is None or form.get("grant_type") != "authorization_code" or form.get("redirect_uri") != asked["redirect_uri"]:
            return self._refuse("invalid_grant")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(form.get("code_verifier", "").encode()).digest()).rstrip(b"=")
        if asked.get("code_challenge_method") != "S256" or challenge.decode() != asked.get("code_challenge"):
            return self._refuse("invalid_grant")  # PKCE: the verifier does not match the challenge
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.client_id,
            "sub": str(self.user.get("sub", "subject")),
            "iat": now,
            "exp": now + 300,
            "nonce": asked.get("nonce", ""),
            **self.user,
            **self.tamper,
        }
        key = self._other if self.sign_with_other_key else self._key
        token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": self.kid})
        return web.json_response({"ok": True, "access_token": "at-" + code_of(form), "token_type": "Bearer", "id_token": token})


def code_of(form: dict[str, str]) -> str:
    return form.get("code", "")[:8]
