"""The chat command language shared by Slack's `/unsilo …` and Teams' `@Unsilo …`.

`parse` turns a line of text into a core command, `HELP` for a help request, or
raises `InvalidInput` saying what was wrong and what to type instead.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from bot import commands as c
from bot.codec import direct_command
from bot.domain import InvalidInput, parse_conversation_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HelpRequest:
    """The person asked for help (or typed nothing)."""

    topic: str = ""


HELP = HelpRequest()

USAGE: dict[str, str] = {
    "help": "help — this list",
    "queue": "queue [department] — what is waiting",
    "mine": "mine — the conversations you own",
    "show": "show #42 — a conversation with its history",
    "claim": "claim #42 — take it",
    "release": "release #42 — give it back to the queue",
    "note": "note #42 text — an internal note (never sent to the customer)",
    "reply": "reply #42 text — answer the customer",
    "resolve": "resolve #42 outcome [what was done] — close it",
    "dismiss": "dismiss #42 reason — close it as needing no action (managers)",
    "approvals": "approvals — replies waiting for your approval (managers)",
    "approve": "approve #42 — let its held reply go to the customer (approvers)",
    "reject": "reject #42 reason — stop its held reply for good (approvers)",
    "posted": "posted #42 — the recorded reply was posted by hand on the source",
    "digest": "digest [department] [days] — the manager digest, just for you",
    "stats": "stats — your own figures",
    "search": "search words — past conversations, notes and answers",
    "report": "report <link> text — send in a post you spotted",
    "link": "link department — post that department's conversations in this channel (admins)",
    "unlink": "unlink [department] — stop posting them here (admins)",
}


def help_text(prefix: str) -> str:
    """Every command with its usage, written the way the platform invokes it."""
    return "Unsilo commands:\n" + "\n".join(f"• `{prefix} {line}".replace(" — ", "` — ", 1) for line in USAGE.values())


def _usage(verb: str, prefix: str) -> str:
    return f"usage: `{prefix} {USAGE[verb].split(' — ')[0]}`"


def _id_and_rest(verb: str, rest: str, prefix: str, *, need_text: str | None) -> tuple[int, str]:
    head, _, tail = rest.strip().partition(" ")
    if not head:
        raise InvalidInput(f"{verb} needs a conversation id; {_usage(verb, prefix)}")
    try:
        conversation_id = parse_conversation_id(head)
    except InvalidInput as exc:
        raise InvalidInput(f"{exc.message}; {_usage(verb, prefix)}") from exc
    tail = tail.strip()
    if need_text and not tail:
        raise InvalidInput(f"{verb} needs {need_text}; {_usage(verb, prefix)}")
    return conversation_id, tail


def parse(
    text: str, actor: c.Actor, *, channel_id: str = "", prefix: str = "/unsilo", conversation_ref: dict[str, object] | None = None
) -> c.Command | HelpRequest:
    """One line of chat text as a command for `actor`, typed in `channel_id`."""
    text = re.sub(r"\s+", " ", (text or "").strip())
    verb, _, rest = text.partition(" ")
    verb = verb.lower()
    if verb in ("", "help", "?"):
        return HelpRequest(rest.strip())
    if verb not in USAGE:
        raise InvalidInput(f"unknown command `{verb}`; try `{prefix} help`")
    match verb:
        case "queue":
            return c.ShowQueue(actor, department=rest.strip().lower() or None)
        case "mine":
            return c.ShowQueue(actor, mine=True)
        case "show" | "claim" | "release":
            conversation_id, _ = _id_and_rest(verb, rest, prefix, need_text=None)
            return _direct(verb, conversation_id, actor)
        case "note":
            conversation_id, body = _id_and_rest(verb, rest, prefix, need_text="the note's text")
            return c.AddNote(conversation_id, actor, body, origin=actor.platform)
        case "reply":
            conversation_id, body = _id_and_rest(verb, rest, prefix, need_text="the reply's text")
            return c.ReplyToCustomer(conversation_id, actor, body)
        case "resolve":
            conversation_id, body = _id_and_rest(verb, rest, prefix, need_text="an outcome")
            outcome, _, note = body.partition(" ")
            return c.Resolve(conversation_id, actor, outcome, note)
        case "dismiss":
            conversation_id, body = _id_and_rest(verb, rest, prefix, need_text="a reason")
            return c.Dismiss(conversation_id, actor, body)
        case "approvals":
            return c.ShowApprovals(actor)
        case "approve" | "posted":
            conversation_id, _ = _id_and_rest(verb, rest, prefix, need_text=None)
            return _direct(verb, conversation_id, actor)
        case "reject":
            conversation_id, body = _id_and_rest(verb, rest, prefix, need_text="a reason")
            return c.RejectReply(conversation_id, actor, body)
        case "digest":
            words = rest.strip().lower().split()
            days = next((int(w.rstrip("d")) for w in words if w.rstrip("d").isdigit()), 7)
            if not 1 <= days <= 366:
                raise InvalidInput(f"a digest covers 1 to 366 days; {_usage(verb, prefix)}")
            department = next((w for w in words if not w.rstrip("d").isdigit()), None)
            return c.ShowDigest(actor, department=department, days=days)
        case "stats":
            return c.ShowStats(actor)
        case "search":
            if not rest.strip():
                raise InvalidInput(f"search needs words; {_usage(verb, prefix)}")
            return c.Search(actor, tuple(rest.split()))
        case "report":
            link, _, body = rest.strip().partition(" ")
            link = link.strip("<>").split("|")[0]  # Slack wraps links as <https://…> or <https://…|label>
            if not link.startswith(("http://", "https://")):
                raise InvalidInput(f"report needs the post's link first; {_usage(verb, prefix)}")
            if not body.strip():
                raise InvalidInput(f"report needs the post's text after the link; {_usage(verb, prefix)}")
            return c.Report(actor, body.strip(), link=link)
        case "link":
            if not rest.strip():
                raise InvalidInput(f"link needs a department; {_usage(verb, prefix)}")
            return c.LinkChannel(actor, rest.strip().lower(), channel_id, conversation_ref)
        case "unlink":
            return c.UnlinkChannel(actor, channel_id, rest.strip().lower() or None)
    raise InvalidInput(f"unknown command `{verb}`; try `{prefix} help`")  # pragma: no cover


def _direct(verb: str, conversation_id: int, actor: c.Actor) -> c.Command:
    """A verb whose whole command is a conversation id: the same command as its button."""
    command = direct_command(verb, conversation_id, actor)
    assert command is not None, verb
    return command
