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
from bot.views import Action, Button

logger = logging.getLogger(__name__)

OPEN = verbs.OPEN  # a link button: the platform opens its URL, nothing reaches Unsilo
ANSWER = "do"  # the key of an answer button's fields (`views.Action`); a card button has "id" instead
MAX_ENCODED = 2000  # the smallest button value a platform takes (characters): an answer button longer is not offered


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


def action_data(action: Action) -> dict[str, Any]:
    """The command an answer button carries, as a small dict: its verb and its fields."""
    return {"cmd": action.verb, ANSWER: dict(action.fields)}


def encode_action(action: Action) -> str:
    """The command an answer button carries, as a compact ASCII string."""
    return json.dumps(action_data(action), separators=(",", ":"))


def fits(action: Action) -> bool:
    """Whether the answer button's command fits every platform's button value."""
    return len(encode_action(action)) <= MAX_ENCODED


def is_action(value: str | Mapping[str, Any]) -> bool:
    """Whether a click's value is an answer button's (`views.Action`) rather than a card button's."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return False
    return isinstance(value, Mapping) and isinstance(value.get(ANSWER), Mapping)


def action_command(value: str | Mapping[str, Any], actor: Actor) -> Command:
    """The command of an answer button's click, from its verb's `act` and the fields it carries (all text,
    within the size it was sent with); anything else is refused as damaged."""
    try:
        data = json.loads(value) if isinstance(value, str) else dict(value)
        name, fields = str(data["cmd"]), data[ANSWER]
        if not isinstance(fields, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items()):
            raise TypeError("fields are not text")
        if len(json.dumps(fields)) > MAX_ENCODED:
            raise ValueError("too long")
    except (ValueError, KeyError, TypeError) as exc:
        logger.warning("undecodable answer button %r: %s", str(value)[:200], exc)
        raise InvalidInput("That button is out of date or damaged; type the command again.") from exc
    verb = verbs.get(name)
    if verb is None or verb.act is None:
        logger.warning("answer button for an unknown verb %r", name[:40])
        raise InvalidInput(f"That button ({name[:40]}) is not supported any more; type the command again.")
    return verb.act(actor, fields)
