"""The console's settings: where it is served, who the one-time link signs in, and why it is off."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from adapters.web.providers import Provider, providers_from_env, url_problem

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """Whether `host` (UNSILO_HOST) is reachable from this machine only."""
    if host.strip().lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class WebSettings:
    """UNSILO_CONSOLE (`off` turns it off), UNSILO_CONSOLE_USER (the console user id the one-time link
    signs in: `web:<it>` in the config's people, managers and admins), and where `unsilo run` listens
    (UNSILO_HOST, UNSILO_PORT), which the printed link names. Deployed sign-in (`oidc.py`): the providers
    of `providers_from_env`, and UNSILO_CONSOLE_URL, the public base URL their redirect URIs start with."""

    enabled: bool = True
    user: str = "owner"
    host: str = "127.0.0.1"
    port: int = 3978
    providers: tuple[Provider, ...] = ()
    problems: tuple[str, ...] = ()  # what is wrong with a half-configured provider
    console_url: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WebSettings:
        port = (env.get("UNSILO_PORT") or env.get("PORT") or "3978").strip()
        providers, problems = providers_from_env(env)
        return cls(
            enabled=(env.get("UNSILO_CONSOLE") or "on").strip().lower() not in ("off", "0", "false", "no"),
            user=(env.get("UNSILO_CONSOLE_USER") or "owner").strip() or "owner",
            host=(env.get("UNSILO_HOST") or "127.0.0.1").strip(),
            port=int(port) if port.isdigit() else 3978,
            providers=providers,
            problems=problems,
            console_url=(env.get("UNSILO_CONSOLE_URL") or "").strip().rstrip("/"),
        )

    def missing(self) -> str | None:
        """Nobody gets in by default: the one-time link is offered on loopback only."""
        if not self.enabled:
            return "turned off (UNSILO_CONSOLE=off)"
        if self.problems:
            return "; ".join(self.problems)
        if self.providers:
            return url_problem(self.console_url)
        if not is_loopback(self.host):
            return (
                f"served only when `unsilo run` listens on loopback (UNSILO_HOST is {self.host!r}): its one-time "
                "sign-in link is for this machine; configure sign-in with Slack or Entra ID to serve it deployed"
            )
        return None

    def login_url(self, token: str) -> str:
        """The one-time link `unsilo run` prints."""
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}/console/login?token={token}"
