"""Who a Slack user is, from Slack's own directory (`users.info`), cached in memory.

The email in `profile.email` (scope `users:read.email`) is the only address Unsilo trusts
for a Slack user: the core links the Slack identity to the Person with that verified email
(the same person on Teams). A lookup is bounded in time and never fails the request that
needed it; each kind of failure is logged once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import commands as c

logger = logging.getLogger(__name__)

FRESH_FOR = 6 * 3600.0  # seconds a profile is trusted before it is asked again
RETRY_AFTER = 300.0  # seconds before a failed lookup is tried again
TIMEOUT = 2.0  # seconds one lookup may take; the person's command goes on without it


@dataclass(frozen=True)
class Profile:
    """What Slack's directory says about one user (None where it said nothing)."""

    name: str | None = None
    email: str | None = None


_UNKNOWN = Profile()


class SlackDirectory:
    """`users.info` lookups, at most one in flight per user, remembered for `FRESH_FOR` seconds."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        timeout: float = TIMEOUT,
        fresh_for: float = FRESH_FOR,
        retry_after: float = RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.fresh_for = fresh_for
        self.retry_after = retry_after
        self.clock = clock
        self._known: dict[str, tuple[float, Profile]] = {}
        self._asking: dict[str, asyncio.Task[Profile]] = {}
        self._logged: set[str] = set()

    async def profile(self, user_id: str, *, timeout: float | None = None) -> Profile:
        """The user's profile, from the cache or Slack; an empty `Profile` when Slack can't say in time."""
        if not user_id:
            return _UNKNOWN
        cached = self._known.get(user_id)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        task = self._asking.get(user_id)
        if task is None or task.done():
            task = self._asking[user_id] = asyncio.ensure_future(self._ask(user_id))
        bound = self.timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(asyncio.shield(task), bound)
        except TimeoutError:
            self._log_once("timeout", "Slack users.info took over %.1f s; going on without the profile", bound)
            return cached[1] if cached is not None else _UNKNOWN

    async def names(self, user_ids: list[str], *, timeout: float | None = None) -> Mapping[str, str]:
        """Display names of several users (those Slack could name in time)."""
        profiles = await asyncio.gather(*(self.profile(u, timeout=timeout) for u in user_ids))
        return {u: p.name for u, p in zip(user_ids, profiles, strict=True) if p.name}

    async def actor(self, user_id: str, name: str | None = None, *, timeout: float | None = None) -> c.Actor:
        """The core's actor for a Slack user: the directory's name and verified email when known."""
        found = await self.profile(user_id, timeout=timeout)
        return c.Actor(platform="slack", user_id=user_id, name=found.name or name or None, email=found.email)

    async def _ask(self, user_id: str) -> Profile:
        """One `users.info` call; the answer (or a failure) is remembered."""
        try:
            response = await self.client.users_info(user=user_id)
        except SlackApiError as exc:
            error = str(exc.response.get("error") or exc.response.status_code)
            self._log_once(
                error,
                "Slack users.info failed (%s); names and emails of Slack users stay unknown%s",
                error,
                " until the app has the users:read.email scope" if error == "missing_scope" else "",
            )
            self._known[user_id] = (self.clock() + self.retry_after, _UNKNOWN)
            return _UNKNOWN
        except Exception as exc:  # network trouble: the command goes on without the profile
            self._log_once(type(exc).__name__, "Slack users.info failed: %r", exc)
            self._known[user_id] = (self.clock() + self.retry_after, _UNKNOWN)
            return _UNKNOWN
        found = _profile_of(response.get("user") or {})
        self._known[user_id] = (self.clock() + self.fresh_for, found)
        return found

    def _log_once(self, kind: str, message: str, *args: object) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            logger.warning(message, *args)


def _profile_of(user: Mapping[str, object]) -> Profile:
    """Name and email of a `users.info` user object; no email for bots or deactivated accounts."""
    profile = user.get("profile") if isinstance(user.get("profile"), Mapping) else {}
    assert isinstance(profile, Mapping)
    name = next(
        (
            str(v).strip()
            for v in (profile.get("display_name"), profile.get("real_name"), user.get("real_name"), user.get("name"))
            if v and str(v).strip()
        ),
        None,
    )
    email = profile.get("email")
    trusted = isinstance(email, str) and "@" in email and not user.get("is_bot") and not user.get("deleted")
    return Profile(name=name, email=email.strip().lower() if trusted and isinstance(email, str) else None)
