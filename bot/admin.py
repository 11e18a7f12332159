"""Who may read the service's insides (`/metrics`, the details of `/healthz`): a request from this
machine that no proxy forwarded, or one that carries `Authorization: Bearer $UNSILO_ADMIN_TOKEN`.

Everything else the service serves is public by design (Slack's, Teams' and the webhooks' paths,
each with its own signature check). Behind a reverse proxy on the same host every request comes
from loopback: a request that carries `Forwarded` or `X-Forwarded-For` is therefore never taken for
a local one, and the proxy configurations in `deploy/` forward only the public paths anyway.
"""

from __future__ import annotations

import hmac
import ipaddress

from aiohttp import web

PROXIED = ("Forwarded", "X-Forwarded-For")  # headers a reverse proxy adds


def is_loopback(remote: str | None) -> bool:
    """Whether a peer address is this machine (127.0.0.0/8, ::1, or 127.x mapped into IPv6)."""
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def allowed(request: web.Request, token: str) -> bool:
    """Whether `request` may read `/metrics` and the details of `/healthz`."""
    given = request.headers.get("Authorization", "")
    if token and given[:7].lower() == "bearer ":
        if hmac.compare_digest(given[7:].strip().encode("utf-8", "replace"), token.encode("utf-8")):
            return True
    return is_loopback(request.remote) and not any(h in request.headers for h in PROXIED)


def refused() -> web.Response:
    """The answer to a request that may not read them."""
    return web.json_response(
        {"error": "served only on loopback, or with Authorization: Bearer <UNSILO_ADMIN_TOKEN>"},
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="unsilo admin"'},
    )
