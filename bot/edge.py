"""The edge of the core: a person's command carried out, as one of three outcomes.

Every adapter runs what a person asked through `attempt` and renders only what it returns:
`Done` (with the handler's result), `Refused` (a message for the person, maybe with the card as
it stands) or `Failed` (our fault: logged once, with its traceback, and the person gets `SORRY`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot import commands as c
from bot.bus import Bus
from bot.domain import DomainError
from bot.views import Card, Result

logger = logging.getLogger(__name__)

SORRY = "Sorry, that failed on our side (it is logged). Please try again in a moment."


@dataclass(frozen=True)
class Done:
    """Carried out. `result` is None when an earlier delivery (or try) of the same event had done it."""

    result: Result | None


@dataclass(frozen=True)
class Refused:
    """Not done, and why, for the person who asked; `card` is the conversation's card as it stands
    (when the command was on one and `show` was asked), read in the refused command's unit of work."""

    message: str
    error: DomainError
    card: Card | None = None

    @classmethod
    def of(cls, error: DomainError) -> Refused:
        """A refusal raised anywhere on the way to a command (a damaged button, a form out of date)."""
        return cls(error.message, error, error.card)


@dataclass(frozen=True)
class Failed:
    """Not done, through a fault of ours: already logged with its traceback. Say `SORRY`."""


Outcome = Done | Refused | Failed


async def attempt(
    bus: Bus,
    command: c.Command,
    *,
    show: bool = False,
    event_id: str | None = None,
    unavailable: tuple[type[BaseException], ...] = (),
) -> Outcome:
    """Carry out `command` (`Bus.handle_once` with `event_id`, else `Bus.handle`) as an `Outcome`.

    A `DomainError` is a `Refused` (the bus logs it, at info); any other exception is a `Failed`,
    logged here once with its traceback. `unavailable`: exceptions passed through to the caller
    instead (Slack tries again while the store does not answer: `storage.db.UNAVAILABLE`).
    """
    try:
        if event_id is None:
            result: Result | None = await bus.handle(command, show=show)
        else:
            result = await bus.handle_once(command, event_id=event_id, show=show)
    except DomainError as exc:
        return Refused.of(exc)
    except unavailable:
        raise
    except Exception:
        logger.exception("%s by %s user %s failed", type(command).__name__, command.actor.platform, command.actor.user_id)
        return Failed()
    return Done(result)
