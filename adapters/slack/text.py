"""Text as Slack sends it, made plain at the edge: Slack's markup and its three entities undone.

Slack escapes `&`, `<`, `>` as `&amp;`, `&lt;`, `&gt;` in message events and slash-command
text, and writes mentions, channels and links as `<@U…>`, `<#C…|name>`, `<https://…|label>`.
Unsilo stores plain text (what the person meant) and escapes again only when rendering
for Slack (`render.escape`). `plain_text_input` values of view submissions arrive raw:
they never go through here.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping

# One piece of Slack markup: everything between a raw `<` and the next raw `>` (a literal
# `<` or `>` typed by the person arrives as an entity, so it is never matched here).
_MARKUP = re.compile(r"<([^<>]*)>")
_ENTITIES = {"&lt;": "<", "&gt;": ">", "&amp;": "&"}
_ENTITY = re.compile(r"&(?:lt|gt|amp);")
_USER = re.compile(r"@([UW][A-Z0-9]+)")
_SPECIAL = {"here": "@here", "channel": "@channel", "everyone": "@everyone"}

#: Looks Slack user ids up to a display name (or None when unknown); bounded by the caller.
NameLookup = Callable[[list[str]], Awaitable[Mapping[str, str]]]


def unescape(text: str) -> str:
    """Slack's three entities undone, and nothing else (`&quot;` stays as typed)."""
    return _ENTITY.sub(lambda m: _ENTITIES[m.group(0)], text)


def user_ids(text: str) -> list[str]:
    """The user ids mentioned as `<@U…>` in Slack text, in order, once each."""
    found = (_USER.fullmatch(m.group(1).split("|")[0]) for m in _MARKUP.finditer(text or ""))
    return list(dict.fromkeys(m.group(1) for m in found if m))


def _link(target: str, label: str) -> str:
    """A link as plain text: its URL, or `label (url)` when the label says something else."""
    url = target.removeprefix("mailto:") if target.startswith("mailto:") else target
    shown = label.strip()
    if not shown or shown == url or url.split("://", 1)[-1].rstrip("/") == shown.rstrip("/"):
        return url
    return f"{shown} ({url})"


def _piece(inner: str, names: Mapping[str, str]) -> str:
    """One `<…>` markup piece as the person saw it in Slack's client."""
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        user = target[1:]
        return f"@{label or names.get(user) or user}"
    if target.startswith("#"):
        return f"#{label or target[1:]}"
    if target.startswith("!subteam^"):
        return label if label.startswith("@") else f"@{label or 'group'}"
    if target.startswith("!"):
        word = target[1:].split("^")[0]
        return label or _SPECIAL.get(word, f"@{word}")
    return _link(unescape(target), unescape(label))


def to_plain(text: str | None, names: Mapping[str, str] | None = None) -> str:
    """Slack text (a message's or a slash command's) as plain text: markup read, entities undone.

    `<@U123>` becomes `@name` (from `names`, else `@U123`), `<#C1|ops>` `#ops`, `<!here>`
    `@here`, a link its URL (or `label (url)`); then `&lt;` `&gt;` `&amp;` become `< > &`.
    """
    known = names or {}
    parts: list[str] = []
    last = 0
    for match in _MARKUP.finditer(text or ""):
        parts.append(unescape((text or "")[last : match.start()]))
        parts.append(_piece(match.group(1), known))
        last = match.end()
    parts.append(unescape((text or "")[last:]))
    return "".join(parts)


async def read(text: str | None, lookup: NameLookup | None = None) -> str:
    """`to_plain` with mentioned people's names looked up (the lookup bounds its own time)."""
    ids = user_ids(text or "")
    names = await lookup(ids) if ids and lookup is not None else {}
    return to_plain(text, names)
