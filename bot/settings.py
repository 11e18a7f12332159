"""Settings from the environment (and `.env`, loaded by python-dotenv)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from dotenv import load_dotenv

from storage.db import DEFAULT_DATABASE_URL

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """Everything that differs between installs; secrets never have defaults."""

    database_url: str = DEFAULT_DATABASE_URL
    config_path: str | None = None
    host: str = "127.0.0.1"
    port: int = 3978
    log_level: str = "INFO"
    slack_bot_token: str = ""
    slack_signing_secret: str = ""
    slack_app_token: str = ""
    slack_api_url: str = "https://slack.com/api/"
    teams_app_id: str = ""
    teams_app_password: str = ""
    teams_app_type: str = "MultiTenant"
    teams_tenant_id: str = ""
    teams_local: bool = False
    # The Slack workspace (team id) and Enterprise Grid org whose requests are accepted; by default
    # the workspace `auth.test` reports for SLACK_BOT_TOKEN.
    slack_team_id: str = ""
    slack_enterprise_id: str = ""
    # Teams tenants whose requests are accepted (MicrosoftAppTenantId and UNSILO_TEAMS_TENANTS).
    teams_tenants: tuple[str, ...] = ()
    # Hosts and CIDR ranges outbound URLs (feeds, reply endpoints) may reach although internal.
    allow_private_urls: tuple[str, ...] = ()
    db_pool_size: int = 10  # PostgreSQL connections per replica (UNSILO_DB_POOL_SIZE), plus as many again in bursts
    db_pool_timeout: float = 10.0  # seconds a request waits for a free connection (UNSILO_DB_POOL_TIMEOUT)
    # Client connections open at once (UNSILO_MAX_CONNECTIONS); 0: what the file-descriptor limit allows.
    max_connections: int = 0

    @classmethod
    def from_env(cls, *, dotenv: bool = True, **overrides: object) -> Settings:
        """Read the environment (after `.env`, which never overrides real variables)."""
        if dotenv:
            load_dotenv(override=False)
        env = os.environ
        values: dict[str, object] = {
            "database_url": env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            "config_path": env.get("UNSILO_CONFIG") or None,
            "host": env.get("UNSILO_HOST") or "127.0.0.1",
            "port": int(env.get("UNSILO_PORT") or env.get("PORT") or 3978),
            "log_level": env.get("LOG_LEVEL") or "INFO",
            "slack_bot_token": env.get("SLACK_BOT_TOKEN", ""),
            "slack_signing_secret": env.get("SLACK_SIGNING_SECRET", ""),
            "slack_app_token": env.get("SLACK_APP_TOKEN", ""),
            "slack_api_url": env.get("SLACK_API_URL") or "https://slack.com/api/",
            "teams_app_id": env.get("MicrosoftAppId", ""),
            "teams_app_password": env.get("MicrosoftAppPassword", ""),
            "teams_app_type": env.get("MicrosoftAppType") or "MultiTenant",
            "teams_tenant_id": env.get("MicrosoftAppTenantId", ""),
            "teams_local": (env.get("UNSILO_TEAMS_LOCAL") or "").lower() in ("1", "true", "yes"),
            "slack_team_id": env.get("SLACK_TEAM_ID", "").strip(),
            "slack_enterprise_id": env.get("SLACK_ENTERPRISE_ID", "").strip(),
            "allow_private_urls": tuple(a.strip() for a in (env.get("UNSILO_ALLOW_PRIVATE_URLS") or "").split(",") if a.strip()),
            "db_pool_size": int(env.get("UNSILO_DB_POOL_SIZE") or 10),
            "db_pool_timeout": float(env.get("UNSILO_DB_POOL_TIMEOUT") or 10),
            "max_connections": int(env.get("UNSILO_MAX_CONNECTIONS") or 0),
            "teams_tenants": tuple(t.strip() for t in (env.get("UNSILO_TEAMS_TENANTS") or "").split(",") if t.strip()),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def allowed_tenants(self) -> frozenset[str]:
        """The Teams tenants whose requests are accepted; empty means any (with a warning at start-up)."""
        return frozenset(t.lower() for t in (*self.teams_tenants, self.teams_tenant_id) if t)

    def platforms(self) -> dict[str, str | None]:
        """Each chat platform and why it is disabled (None when enabled)."""
        return {"slack": self._slack_missing(), "teams": self._teams_missing()}

    def _slack_missing(self) -> str | None:
        """What to set for Slack, or None when it can start."""
        if self.slack_bot_token and (self.slack_signing_secret or self.slack_app_token):
            return None
        if self.slack_app_token:
            return "SLACK_BOT_TOKEN is not set (Socket Mode needs it beside SLACK_APP_TOKEN)"
        if self.slack_bot_token:
            return "SLACK_SIGNING_SECRET is not set (or set SLACK_APP_TOKEN for Socket Mode)"
        if self.slack_signing_secret:
            return "SLACK_BOT_TOKEN is not set (SLACK_SIGNING_SECRET is)"
        return "SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are not set (or SLACK_BOT_TOKEN and SLACK_APP_TOKEN for Socket Mode)"

    def _teams_missing(self) -> str | None:
        """What to set for Teams, or None when it can start."""
        if not self.teams_app_id:
            if self.teams_local:
                return None
            return "MicrosoftAppId is not set (or set UNSILO_TEAMS_LOCAL=1 for local use without authentication)"
        if not self.teams_app_password:
            return "MicrosoftAppPassword is not set (MicrosoftAppId is; Teams needs both to post cards)"
        if self.teams_app_type.lower() == "singletenant" and not self.teams_tenant_id:
            return "MicrosoftAppTenantId is not set (MicrosoftAppType is SingleTenant)"
        return None
