"""Slack's settings, from the environment (stdlib only: reading them never loads the SDK)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_API_URL = "https://slack.com/api/"


@dataclass(frozen=True)
class SlackSettings:
    """What Slack needs: the bot token, and the signing secret (HTTP mode) or an app token (Socket Mode)."""

    bot_token: str = ""
    signing_secret: str = ""
    app_token: str = ""
    api_url: str = DEFAULT_API_URL
    # The workspace (team id) and Enterprise Grid org whose requests are accepted; by default
    # the workspace `auth.test` reports for SLACK_BOT_TOKEN.
    team_id: str = ""
    enterprise_id: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SlackSettings:
        """SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, SLACK_APP_TOKEN, SLACK_API_URL, SLACK_TEAM_ID, SLACK_ENTERPRISE_ID."""
        return cls(
            bot_token=env.get("SLACK_BOT_TOKEN", ""),
            signing_secret=env.get("SLACK_SIGNING_SECRET", ""),
            app_token=env.get("SLACK_APP_TOKEN", ""),
            api_url=env.get("SLACK_API_URL") or DEFAULT_API_URL,
            team_id=env.get("SLACK_TEAM_ID", "").strip(),
            enterprise_id=env.get("SLACK_ENTERPRISE_ID", "").strip(),
        )

    def missing(self) -> str | None:
        """What to set for Slack, or None when it can start."""
        if self.bot_token and (self.signing_secret or self.app_token):
            return None
        if self.app_token:
            return "SLACK_BOT_TOKEN is not set (Socket Mode needs it beside SLACK_APP_TOKEN)"
        if self.bot_token:
            return "SLACK_SIGNING_SECRET is not set (or set SLACK_APP_TOKEN for Socket Mode)"
        if self.signing_secret:
            return "SLACK_BOT_TOKEN is not set (SLACK_SIGNING_SECRET is)"
        return "SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET are not set (or SLACK_BOT_TOKEN and SLACK_APP_TOKEN for Socket Mode)"
