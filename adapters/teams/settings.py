"""Teams' settings, from the environment (stdlib only: reading them never loads botbuilder)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class TeamsSettings:
    """The Azure Bot's credentials (the Bot Framework's names for them) and the tenants accepted."""

    app_id: str = ""
    app_password: str = ""
    app_type: str = "MultiTenant"
    tenant_id: str = ""
    local: bool = False  # no authentication: the emulator or a local stand-in
    # Teams tenants whose requests are accepted (MicrosoftAppTenantId and UNSILO_TEAMS_TENANTS).
    tenants: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TeamsSettings:
        """MicrosoftAppId, MicrosoftAppPassword, MicrosoftAppType, MicrosoftAppTenantId, UNSILO_TEAMS_LOCAL,
        UNSILO_TEAMS_TENANTS."""
        return cls(
            app_id=env.get("MicrosoftAppId", ""),
            app_password=env.get("MicrosoftAppPassword", ""),
            app_type=env.get("MicrosoftAppType") or "MultiTenant",
            tenant_id=env.get("MicrosoftAppTenantId", ""),
            local=(env.get("UNSILO_TEAMS_LOCAL") or "").lower() in ("1", "true", "yes"),
            tenants=tuple(t.strip() for t in (env.get("UNSILO_TEAMS_TENANTS") or "").split(",") if t.strip()),
        )

    def allowed_tenants(self) -> frozenset[str]:
        """The Teams tenants whose requests are accepted; empty means any (with a warning at start-up)."""
        return frozenset(t.lower() for t in (*self.tenants, self.tenant_id) if t)

    def missing(self) -> str | None:
        """What to set for Teams, or None when it can start."""
        if not self.app_id:
            if self.local:
                return None
            return "MicrosoftAppId is not set (or set UNSILO_TEAMS_LOCAL=1 for local use without authentication)"
        if not self.app_password:
            return "MicrosoftAppPassword is not set (MicrosoftAppId is; Teams needs both to post cards)"
        if self.app_type.lower() == "singletenant" and not self.tenant_id:
            return "MicrosoftAppTenantId is not set (MicrosoftAppType is SingleTenant)"
        return None
