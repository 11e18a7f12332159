"""One encoding of a button's command, shared by every platform.

Slack puts the encoded string in a button's `value`; Teams puts the dict in an
Adaptive Card action's `data`. Both decode it here into a core command.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from bot.commands import Actor, ApproveReply, Claim, Command, MarkPosted, Release, Show
from bot.domain import InvalidInput, parse_conversation_id
from bot.views import Button

logger = logging.getLogger(__name__)

# Verbs that need no further input from the person and map straight to a command.
_DIRECT: dict[str, Callable[[int, Actor], Command]] = {
    "claim": Claim,
    "release": Release,
    "show": Show,
    "approve": ApproveReply,
    "posted": MarkPosted,
}


def button_data(button: Button) -> dict[str, Any]:
    """The command a button carries, as a small dict."""
    return {"cmd": button.verb, "id": button.conversation_id}


def encode(button: Button) -> str:
    """The command a button carries, as a compact string (Slack `value`, <= 2,000 chars)."""
    return json.dumps(button_data(button), separators=(",", ":"))


def decode(value: str | dict[str, Any]) -> tuple[str, int]:
    """Read a button's `(verb, conversation id)` back, refusing anything malformed."""
    try:
        data = json.loads(value) if isinstance(value, str) else dict(value)
        verb = str(data["cmd"])
        conversation_id = parse_conversation_id(data["id"])
    except (ValueError, KeyError, TypeError) as exc:
        logger.warning("undecodable button value %r: %s", value, exc)
        raise InvalidInput("That button is out of date or damaged; open the conversation with `show #id`.") from exc
    return verb, conversation_id


def direct_command(verb: str, conversation_id: int, actor: Actor) -> Command | None:
    """The command for a verb that needs no more input, or None (reply, note, resolve...)."""
    factory = _DIRECT.get(verb)
    return factory(conversation_id, actor) if factory else None
