"""One encoding of a button's command, shared by every platform.

Slack puts the encoded string in a button's `value`; Teams puts the dict in an
Adaptive Card action's `data` (with the values typed in its inputs). Both decode it here
into a core command, through the verb table (`bot.verbs`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from bot import verbs
from bot.commands import Actor, Command
from bot.domain import InvalidInput, parse_conversation_id
from bot.views import Button

logger = logging.getLogger(__name__)

OPEN = verbs.OPEN  # a link button: the platform opens its URL, nothing reaches Unsilo


def button_data(button: Button) -> dict[str, Any]:
    """The command a button carries, as a small dict."""
    return {"cmd": button.verb, "id": button.conversation_id}


def encode(button: Button) -> str:
    """The command a button carries, as a compact string (Slack `value`, <= 2,000 chars)."""
    return json.dumps(button_data(button), separators=(",", ":"))


def decode(value: str | Mapping[str, Any]) -> tuple[str, int]:
    """Read a button's `(verb, conversation id)` back, refusing anything malformed."""
    try:
        data = json.loads(value) if isinstance(value, str) else dict(value)
        verb = str(data["cmd"])
        conversation_id = parse_conversation_id(data["id"])
    except (ValueError, KeyError, TypeError) as exc:
        logger.warning("undecodable button value %r: %s", value, exc)
        raise InvalidInput("That button is out of date or damaged; open the conversation with `show #id`.") from exc
    return verb, conversation_id


def verb_of(name: str) -> verbs.Verb:
    """The verb a button names, or a refusal saying the button is not one Unsilo knows (any more)."""
    verb = verbs.get(name)
    if verb is None or verb.build is None:
        logger.warning("button for an unknown verb %r", name[:40])
        raise InvalidInput(f"That button ({name[:40]}) is not supported any more; try `show #id`.")
    return verb


def to_command(data: str | Mapping[str, Any], actor: Actor, *, fields: Mapping[str, Any] | None = None) -> Command:
    """The command of any button on any platform: its verb and conversation, with the values of its
    inputs (`fields`, or the data's own keys named after the verb's inputs)."""
    name, conversation_id = decode(data)
    verb = verb_of(name)
    values = fields if fields is not None else (data if isinstance(data, Mapping) else {})
    return verb.command(conversation_id, actor, {k: str(v) for k, v in values.items() if isinstance(v, str | int)})
