"""The shape a Slack request body must have before Bolt routes it: what is read as an object is one.

Bolt 1.30 reads a body's ids and routes it (`slack_bolt.request.internals`, `payload_utils`, the
built-in authorization and self-event middleware, the listener matchers) assuming the types
Slack sends: `body["event"].get(...)`, `body["actions"][0]`, `re.search(..., callback_id)`. A
signed body with `"event": null`, an empty `actions` or a number for `user` made it raise
inside its dispatcher, which answers 500 with a traceback. `problem()` finds those first so the
request is answered 400 with the reason. The rules name only the fields Bolt and our listeners
read; anything else may hold anything.

Nothing in a body may hold a NUL or a lone surrogate (the JSON escape `\\ud800` decodes to one):
SQLite and PostgreSQL refuse them, and Slack's own JSON is UTF-8 text without them. Ids and names
are stored (a thread note's channel and event id, a person's account and name), so they must also
be one line without control characters, within the store's 255 characters.

A rule is a type (`str`), `None` (JSON null), `LINE` (an id or name as above), an object's rules
(`{field: rule}`, a `!` after a field's name: it must be there), a list's item rule (`[rule]`;
`[rule, ...]`: not empty either), or a tuple of alternatives.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import Any

Rule = Any


class _Line:
    """An id or a name: a string of at most `MAX` characters without control characters or lone surrogates."""

    MAX = 255
    UNSTORABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

    def problem(self, value: str) -> tuple[str, str] | None:
        if len(value) > self.MAX:
            return "", f"is longer than {self.MAX} characters"
        if not (value.isascii() and value.isprintable()) and self.UNSTORABLE.search(value):  # ids: printable ASCII
            return "", "holds a control character or a lone surrogate"
        return None


LINE = _Line()
_ID = (LINE, None)
_TEXT = (str, None)
_USER = (LINE, None, {"id": _ID, "name": _ID, "username": _ID, "team_id": _ID})
_TEAM = (LINE, None, {"id": _ID, "enterprise_id": _ID, "domain": _ID})
_CHANNEL = (LINE, None, {"id": _ID, "name": _ID})
_PERSON = {"id!": LINE, "name": _ID, "username": _ID, "team_id": _ID}  # who clicked, submitted or asked
_MESSAGE = (
    None,
    {
        "user": _USER,
        "team": _TEAM,
        "channel": _CHANNEL,
        "ts": _ID,
        "thread_ts": _ID,
        "subtype": _ID,
        "text": _TEXT,
        "bot_id": _ID,
    },
)
_EVENT = {
    "type": _ID,
    "subtype": _ID,
    "user": _USER,
    "team": _TEAM,
    "channel": _CHANNEL,
    "user_team": _ID,
    "source_team": _ID,
    "text": _TEXT,
    "ts": _ID,
    "thread_ts": _ID,
    "event_ts": _ID,
    "bot_id": _ID,
    "tab": _ID,
    "channel_type": _ID,
    "files": (None, list),
    "message": _MESSAGE,
    "previous_message": _MESSAGE,
    "item": (None, {"channel": _CHANNEL}),
    "assistant_thread": (None, {"channel_id": _ID, "thread_ts": _ID}),
}
_VIEW = {
    "callback_id": _ID,
    "private_metadata": _TEXT,
    "type": _ID,
    "id": _ID,
    "team_id": _ID,
    "app_installed_team_id": _ID,
    "state": (None, {"values": (None, dict)}),
}
_BODY = {
    "type": _ID,
    "token": _TEXT,
    "team_id": _ID,
    "enterprise_id": _ID,
    "api_app_id": _ID,
    "user_id": _ID,
    "user_name": _ID,
    "channel_id": _ID,
    "command": _ID,
    "text": _TEXT,
    "trigger_id": _ID,
    "response_url": _TEXT,
    "callback_id": _ID,
    "event_id": _ID,
    "challenge": _TEXT,
    "team": _TEAM,
    "user": _USER,
    "channel": _CHANNEL,
    "enterprise": (LINE, None, {"id": _ID}),
    "event": _EVENT,
    "authorizations": (None, [{"team_id": _ID, "enterprise_id": _ID, "user_id": _ID}]),
    "actions": [{"action_id": LINE, "block_id": _ID, "type": _ID}, ...],
    "view": _VIEW,
    "container": (None, {"channel_id": _ID, "message_ts": _ID}),
    "message": _MESSAGE,
    "response_urls": (None, [{"response_url": _TEXT}]),
}
# What each kind of request must carry for Bolt to route it and for our listener to act on it.
_BY_TYPE: dict[str, dict[str, Rule]] = {
    "event_callback": {"event!": {"type!": LINE}},
    "block_actions": {"user!": _PERSON, "actions!": [{"action_id!": LINE}, ...], "trigger_id!": LINE},
    "view_submission": {"user!": _PERSON, "view!": {"callback_id!": LINE, "type!": LINE}},
    "view_closed": {"user!": _PERSON, "view!": {"callback_id!": LINE, "type!": LINE}},
    "message_action": {"user!": _PERSON, "callback_id!": LINE, "trigger_id!": LINE},
    "shortcut": {"user!": _PERSON, "callback_id!": LINE, "trigger_id!": LINE},
}
_NAMES = {str: "a string", dict: "an object", list: "a list", None: "null", int: "a number", bool: "true/false"}


_UNSTORABLE_ANYWHERE = re.compile(r"[\x00\ud800-\udfff]")  # no store takes them; Slack's UTF-8 JSON never holds them


def problem(body: Any) -> str | None:
    """Why `body` (a parsed Slack request) is not one Bolt and our listeners can read; None when it is."""
    if _holds_unstorable(body):
        return "body holds a NUL character or a lone surrogate"
    found = _CHECK_BODY(body)
    if found is None and isinstance(body.get("type"), str) and body["type"] in _CHECK_BY_TYPE:
        kind = body["type"]
        found = _CHECK_BY_TYPE[kind](body)
        return None if found is None else _said(f"body (type {kind})", found)
    return None if found is None else _said("body", found)


def _holds_unstorable(body: Any) -> bool:
    """Whether any key or string anywhere in `body` holds a NUL or a lone surrogate (walked without recursion;
    the strings are searched at once, joined: a character is in the whole when it is in one of them)."""
    pending, strings = [body], []
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, dict):
            strings += value.keys()
            pending += value.values()
        elif isinstance(value, list):
            pending += value
    return _UNSTORABLE_ANYWHERE.search("".join(strings)) is not None


# A rule is compiled once into a check: value -> None, or (where below the value, what is wrong). The
# path is spelled out only for a problem: every request is checked on the way to its ack.
Problem = tuple[str, str]
Check = Callable[[Any], Problem | None]


def _said(at: str, found: Problem) -> str:
    where, what = found
    return f"{at}{where} {what}"


def _compile(rule: Rule) -> Check:
    if isinstance(rule, tuple):
        return _alternatives(rule)
    matches, wrong = _kind(rule), ("", f"must be {_describe(rule)}")
    if isinstance(rule, _Line):
        line = rule

        def check_line(value: Any) -> Problem | None:
            return line.problem(value) if matches(value) else wrong

        return check_line
    if isinstance(rule, dict):
        return _fields(rule, wrong)
    if isinstance(rule, list):
        return _items(rule, wrong)

    def check_kind(value: Any) -> Problem | None:
        return None if matches(value) else wrong

    return check_kind


def _alternatives(rule: tuple[Rule, ...]) -> Check:
    wrong = ("", f"must be {' or '.join(_describe(r) for r in rule)}")
    if rule == _ID:  # most fields: the same answer as below, in one call

        def check_id(value: Any) -> Problem | None:
            if value is None:
                return None
            return LINE.problem(value) if isinstance(value, str) else wrong

        return check_id
    choices = [(_kind(r), _compile(r)) for r in rule]

    def check(value: Any) -> Problem | None:
        for matches, inner in choices:
            if matches(value):
                return inner(value)
        return wrong

    return check


def _fields(rule: dict[str, Rule], wrong: Problem) -> Check:
    fields = [(key.rstrip("!"), key.endswith("!"), _compile(inner)) for key, inner in rule.items()]

    def check(value: Any) -> Problem | None:
        if not isinstance(value, dict):
            return wrong
        for name, required, inner in fields:
            if name in value:
                found = inner(value[name])
                if found is not None:
                    return f".{name}{found[0]}", found[1]
            elif required:
                return "", f"has no {name}"
        return None

    return check


def _items(rule: list[Rule], wrong: Problem) -> Check:
    inner, not_empty = _compile(rule[0]), rule[1:] == [...]

    def check(value: Any) -> Problem | None:
        if not isinstance(value, list):
            return wrong
        if not value and not_empty:
            return "", "must not be empty"
        for n, item in enumerate(value):
            found = inner(item)
            if found is not None:
                return f"[{n}]{found[0]}", found[1]
        return None

    return check


def _kind(rule: Rule) -> Callable[[Any], bool]:
    """Whether a value is of the kind `rule` asks for (before its contents are checked): `_kind_matches`,
    as one predicate."""
    if rule is None:
        return lambda value: value is None
    if isinstance(rule, (_Line, dict, list)):
        kind = str if isinstance(rule, _Line) else type(rule)
        return lambda value: isinstance(value, kind)
    if isinstance(rule, tuple):
        return partial(_kind_matches, rule=rule)
    if rule is int:
        return lambda value: isinstance(value, int) and not isinstance(value, bool)
    return lambda value: isinstance(value, rule)


def _kind_matches(value: Any, *, rule: Rule) -> bool:
    if rule is None:
        return value is None
    if isinstance(rule, _Line):
        return isinstance(value, str)
    if isinstance(rule, dict):
        return isinstance(value, dict)
    if isinstance(rule, list):
        return isinstance(value, list)
    if isinstance(rule, tuple):
        return any(_kind_matches(value, rule=r) for r in rule)
    return isinstance(value, rule) and not (rule is int and isinstance(value, bool))


def _describe(rule: Rule) -> str:
    if isinstance(rule, _Line):
        return "an id (a string)"
    if isinstance(rule, dict):
        return "an object"
    if isinstance(rule, list):
        return "a list"
    return _NAMES.get(rule, getattr(rule, "__name__", str(rule)))


_CHECK_BODY = _compile(_BODY)
_CHECK_BY_TYPE = {kind: _compile(rule) for kind, rule in _BY_TYPE.items()}
