"""Settings from the environment (and `.env`, loaded by python-dotenv)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from dotenv import load_dotenv

from bot.platform import Platform, PlatformSettings
from storage import DEFAULT_DATABASE_URL, masked_url

N = TypeVar("N", int, float)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """Everything that differs between installs; secrets never have defaults.

    The core's own settings, and each platform's, read by its adapter (`Platform.settings_from`)
    and kept by platform name.
    """

    database_url: str = DEFAULT_DATABASE_URL
    config_path: str | None = None
    host: str = "127.0.0.1"
    port: int = 3978
    log_level: str = ""  # LOG_LEVEL (a name or a number); empty: the command's default
    # Hosts and CIDR ranges outbound URLs (feeds, reply endpoints) may reach although internal.
    allow_private_urls: tuple[str, ...] = ()
    db_pool_size: int = 10  # PostgreSQL connections per replica (UNSILO_DB_POOL_SIZE), plus as many again in bursts
    db_pool_timeout: float = 10.0  # seconds a request waits for a free connection (UNSILO_DB_POOL_TIMEOUT)
    # Client connections open at once (UNSILO_MAX_CONNECTIONS); 0: what the file-descriptor limit allows.
    max_connections: int = 0
    log_format: str = ""  # LOG_FORMAT: "json" for one JSON object per line, else plain lines
    admin_token: str = ""  # UNSILO_ADMIN_TOKEN: a bearer token that may read /metrics and /healthz's details
    platforms: Mapping[str, PlatformSettings] = field(default_factory=dict)  # by platform name
    # UNSILO_SEARCH_LANGUAGE: the text-search language (PostgreSQL: a text-search configuration; SQLite:
    # English stemming whatever it says, see storage/search.py)
    search_language: str = "english"

    @classmethod
    def from_env(
        cls,
        *,
        platforms: Sequence[Platform] = (),
        env: Mapping[str, str] | None = None,
        dotenv: bool = True,
        **overrides: object,
    ) -> Settings:
        """Read the environment (after `.env`, which never overrides real variables), or `env` when given;
        each of `platforms` reads its own settings from it."""
        if env is None:
            if dotenv:
                load_dotenv(override=False)
            env = os.environ
        values: dict[str, object] = {
            "database_url": env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            "config_path": env.get("UNSILO_CONFIG") or None,
            "host": env.get("UNSILO_HOST") or "127.0.0.1",
            "port": _number(env, ("UNSILO_PORT", "PORT"), 3978, int),
            "log_level": (env.get("LOG_LEVEL") or "").strip(),
            "log_format": (env.get("LOG_FORMAT") or "").strip().lower(),
            "admin_token": (env.get("UNSILO_ADMIN_TOKEN") or "").strip(),
            "allow_private_urls": tuple(a.strip() for a in (env.get("UNSILO_ALLOW_PRIVATE_URLS") or "").split(",") if a.strip()),
            "db_pool_size": _number(env, ("UNSILO_DB_POOL_SIZE",), 10, int),
            "db_pool_timeout": _number(env, ("UNSILO_DB_POOL_TIMEOUT",), 10.0, float),
            "max_connections": _number(env, ("UNSILO_MAX_CONNECTIONS",), 0, int),
            "search_language": (env.get("UNSILO_SEARCH_LANGUAGE") or "english").strip().lower(),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        # The platforms see the address the service listens on, also when given as `unsilo run --host/--port`.
        bound = {**env, "UNSILO_HOST": str(values["host"]), "UNSILO_PORT": str(values["port"])}
        values.setdefault("platforms", {p.name: p.settings_from(bound) for p in platforms})
        return cls(**values)  # type: ignore[arg-type]

    @property
    def shown_database_url(self) -> str:
        """`database_url` fit to print or log: its password masked."""
        return masked_url(self.database_url)

    def of(self, platform: Platform) -> PlatformSettings:
        """A platform's settings (as if nothing were set, when they were not read)."""
        found = self.platforms.get(platform.name)
        return found if found is not None else platform.settings_from({})


def _number(env: Mapping[str, str], names: Sequence[str], default: N, kind: Callable[[str], N]) -> N:
    """The first of `names` that is set, as a number; a ValueError naming the variable if it is not one."""
    for name in names:
        raw = env.get(name)
        if raw:
            try:
                return kind(raw.strip())
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not {'a whole number' if kind is int else 'a number'}") from None
    return default
