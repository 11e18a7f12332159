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
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def platforms(self) -> dict[str, str | None]:
        """Each chat platform and why it is disabled (None when enabled)."""
        slack = None
        if not (self.slack_bot_token and (self.slack_signing_secret or self.slack_app_token)):
            slack = "SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (or SLACK_APP_TOKEN) are not set"
        teams = None if self.teams_app_id or self.teams_local else (
            "MicrosoftAppId is not set (or set UNSILO_TEAMS_LOCAL=1 for local use without authentication)")
        return {"slack": slack, "teams": teams}
