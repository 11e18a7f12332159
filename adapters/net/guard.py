"""Outbound URLs someone else gave us (feeds, reply endpoints) never reach internal addresses.

Every connection is checked on the addresses it is about to use, after DNS resolution and
for every redirect hop (each hop opens its own connection), so neither a redirect nor a
name that resolves to an internal address (DNS rebinding) gets through. Loopback, private,
link-local (the cloud metadata service at 169.254.169.254 included), shared, multicast,
reserved and unspecified addresses are refused, IPv4 and IPv6 (IPv4-mapped too), unless
`UNSILO_ALLOW_PRIVATE_URLS` lists the host or a range holding it. The platform APIs the
operator configured (`SLACK_API_URL`, Bot Connector service URLs) do not go through here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp

logger = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeURL(aiohttp.ClientError):
    """The URL (or an address it resolves or redirects to) is internal, or not http(s)."""


def is_internal(address: Address) -> bool:
    """True for any address that is not on the public internet (IPv4-mapped IPv6 read as IPv4)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


class AddressGuard:
    """Decides which hosts and addresses outbound requests may reach."""

    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self.hosts: set[str] = set()
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in (a.strip() for a in allowed):
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower().rstrip("."))

    def permits(self, host: str, address: str) -> bool:
        """May a connection to `host` use `address`?"""
        if host.lower().rstrip(".") in self.hosts:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        return not is_internal(ip) or any(ip in network for network in self.networks)

    def check_url(self, url: str) -> None:
        """Refuse a URL that is not http(s), has no host, or names an internal address literally."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UnsafeURL(f"{url[:200]!r} is not an http(s) URL")
        host = parts.hostname
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if host.lower().rstrip(".") in ("localhost", "localhost.localdomain") and host not in self.hosts:
                raise UnsafeURL(f"{url[:200]!r} points at this machine (localhost)") from None
            return
        if not self.permits(host, host):
            raise UnsafeURL(f"{url[:200]!r} points at an internal address ({host})")

    async def check_resolved(self, url: str) -> None:
        """`check_url`, and refuse a name that resolves to an internal address now (for a clear
        answer when a URL is added; connections are checked again when they are made)."""
        self.check_url(url)
        host = urlsplit(url).hostname or ""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError:
            return  # not resolvable today: the poll will say so
        refused = sorted({str(info[4][0]) for info in infos if not self.permits(host, str(info[4][0]))})
        if refused:
            raise UnsafeURL(f"{url[:200]!r}: {host} resolves to an internal address ({', '.join(refused)})")

    def connector(self, **kwargs: Any) -> aiohttp.TCPConnector:
        """An aiohttp connector that checks every address it connects to."""
        return _GuardedConnector(self, **kwargs)


class _GuardedConnector(aiohttp.TCPConnector):
    """Drops internal addresses from every resolution (literal IP hosts included) before connecting."""

    def __init__(self, guard: AddressGuard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._guard = guard

    async def _resolve_host(self, host: str, port: int, traces: Sequence[Any] | None = None) -> list[Any]:
        results = await super()._resolve_host(host, port, traces)  # aiohttp 3.x; literal IPs come back as-is
        safe = [r for r in results if self._guard.permits(host, str(r["host"]))]
        if not safe:
            addresses = ", ".join(sorted({str(r["host"]) for r in results}))
            logger.warning("refused a connection to %s: internal address %s", host, addresses)
            raise UnsafeURL(f"{host} is an internal address ({addresses}); set UNSILO_ALLOW_PRIVATE_URLS to allow it")
        return safe
