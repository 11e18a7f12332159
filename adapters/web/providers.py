"""The console's sign-in providers as the environment configures them (see `oidc.py` for the flow).

Imported by `settings.py`, so by every command: nothing here imports aiohttp or PyJWT.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

SLACK_ISSUER = "https://slack.com"
ENTRA_AUTHORITY = "https://login.microsoftonline.com"
MULTI_TENANT = ("common", "organizations", "consumers")  # never accepted: any tenant's users could sign in
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


@dataclass(frozen=True)
class Provider:
    """One OpenID Connect provider the console trusts, and how its ID token names a chat account.

    `name` is the URL segment (`slack`, `entra`), `platform` the chat platform whose account the
    token's user is (`slack`, `teams`), `org_claim` the claim that must equal `org` (the workspace or
    tenant), `user_claim` the claim holding the platform's user id."""

    name: str
    title: str
    platform: str
    client_id: str
    client_secret: str
    issuer: str
    discovery_url: str
    org_claim: str
    org: str
    user_claim: str

    def __repr__(self) -> str:  # the secret never reaches a log or a traceback
        return f"Provider({self.name!r}, client_id={self.client_id!r}, issuer={self.issuer!r}, org={self.org!r})"


def providers_from_env(env: Mapping[str, str]) -> tuple[tuple[Provider, ...], tuple[str, ...]]:
    """The providers configured in `env`, and what is wrong with the half-configured ones.

    Slack: UNSILO_CONSOLE_SLACK_CLIENT_ID, _SECRET, _TEAM (the workspace id `T…`; default
    SLACK_TEAM_ID), _ISSUER (default https://slack.com; https://slack-gov.com for GovSlack).
    Entra ID: UNSILO_CONSOLE_ENTRA_TENANT (the tenant id, a GUID), _CLIENT_ID, _SECRET, _AUTHORITY
    (default https://login.microsoftonline.com; another cloud's login host)."""

    def get(name: str) -> str:
        return (env.get(name) or "").strip()

    providers: list[Provider] = []
    problems: list[str] = []
    slack_id, slack_secret = get("UNSILO_CONSOLE_SLACK_CLIENT_ID"), get("UNSILO_CONSOLE_SLACK_SECRET")
    if slack_id or slack_secret:
        team = get("UNSILO_CONSOLE_SLACK_TEAM") or get("SLACK_TEAM_ID")
        issuer = (get("UNSILO_CONSOLE_SLACK_ISSUER") or SLACK_ISSUER).rstrip("/")
        if not (slack_id and slack_secret):
            problems.append("Sign in with Slack needs both UNSILO_CONSOLE_SLACK_CLIENT_ID and UNSILO_CONSOLE_SLACK_SECRET")
        elif not team:
            problems.append("Sign in with Slack needs the workspace id (UNSILO_CONSOLE_SLACK_TEAM or SLACK_TEAM_ID, T…)")
        else:
            providers.append(
                Provider(
                    name="slack",
                    title="Slack",
                    platform="slack",
                    client_id=slack_id,
                    client_secret=slack_secret,
                    issuer=issuer,
                    discovery_url=f"{issuer}/.well-known/openid-configuration",
                    org_claim="https://slack.com/team_id",
                    org=team,
                    user_claim="https://slack.com/user_id",
                )
            )
    tenant, entra_id, entra_secret = (
        get("UNSILO_CONSOLE_ENTRA_TENANT"),
        get("UNSILO_CONSOLE_ENTRA_CLIENT_ID"),
        get("UNSILO_CONSOLE_ENTRA_SECRET"),
    )
    if tenant or entra_id or entra_secret:
        authority = (get("UNSILO_CONSOLE_ENTRA_AUTHORITY") or ENTRA_AUTHORITY).rstrip("/")
        if not (tenant and entra_id and entra_secret):
            problems.append(
                "Sign in with Entra ID needs UNSILO_CONSOLE_ENTRA_TENANT, UNSILO_CONSOLE_ENTRA_CLIENT_ID and "
                "UNSILO_CONSOLE_ENTRA_SECRET"
            )
        elif tenant.lower() in MULTI_TENANT or not GUID.match(tenant):
            problems.append(
                f"UNSILO_CONSOLE_ENTRA_TENANT must be your tenant id (a GUID), not {tenant!r}: "
                "only the people of your own tenant may sign in"
            )
        else:
            issuer = f"{authority}/{tenant.lower()}/v2.0"
            providers.append(
                Provider(
                    name="entra",
                    title="Microsoft Entra ID",
                    platform="teams",
                    client_id=entra_id,
                    client_secret=entra_secret,
                    issuer=issuer,
                    discovery_url=f"{issuer}/.well-known/openid-configuration",
                    org_claim="tid",
                    org=tenant.lower(),
                    user_claim="oid",
                )
            )
    return tuple(providers), tuple(problems)


def url_problem(url: str) -> str | None:
    """What is wrong with UNSILO_CONSOLE_URL, the public URL the providers send people back to (None: fine)."""
    from adapters.web.settings import is_loopback

    if not url:
        return "sign-in with Slack or Entra ID needs UNSILO_CONSOLE_URL, the console's public base URL (https://…)"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") or parts.query:
        return f"UNSILO_CONSOLE_URL must be a base URL like https://unsilo.example.com, not {url!r}"
    if parts.scheme != "https" and not is_loopback(parts.hostname):
        return f"UNSILO_CONSOLE_URL must be https beyond this machine (the console's cookies are Secure), not {url!r}"
    return None
