"""The chat command language shared by Slack's `/unsilo …` and Teams' `@Unsilo …`.

`parse` turns a line of text into a core command, `HELP` for a help request, or
raises `InvalidInput` saying what was wrong and what to type instead. Every verb, its
usage and how its line is read come from the verb table (`bot.verbs`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from bot import commands as c
from bot import verbs
from bot.domain import InvalidInput

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HelpRequest:
    """The person asked for help (or typed nothing)."""

    topic: str = ""


HELP = HelpRequest()

USAGE: dict[str, str] = {verb.name: verb.usage for verb in verbs.TABLE}


def help_text(prefix: str) -> str:
    """Every command with its usage, written the way the platform invokes it."""
    return "Unsilo commands:\n" + "\n".join(f"• `{prefix} {line}".replace(" — ", "` — ", 1) for line in USAGE.values())


def parse(
    text: str, actor: c.Actor, *, channel_id: str = "", prefix: str = "/unsilo", conversation_ref: dict[str, object] | None = None
) -> c.Command | HelpRequest:
    """One line of chat text as a command for `actor`, typed in `channel_id`."""
    text = re.sub(r"\s+", " ", (text or "").strip())
    name, _, rest = text.partition(" ")
    name = name.lower()
    second, _, after = rest.partition(" ")
    if verbs.get(f"{name}-{second.lower()}") is not None:  # `save answer #42 …` is `save-answer #42 …`
        name, rest = f"{name}-{second.lower()}", after
    if name in ("", "help", "?"):
        return HelpRequest(rest.strip())
    verb = verbs.get(name)
    if verb is None or (verb.parse is None and verb.build is None):
        raise InvalidInput(f"unknown command `{name}`; try `{prefix} help`")
    typed = verbs.Typed(channel_id=channel_id, prefix=prefix, conversation_ref=conversation_ref)
    if verb.parse is not None:
        return verb.parse(rest, actor, typed)
    return verbs.read_conversation_line(verb, rest, actor, typed)
