"""What a search says: words, "quoted phrases" and filters, parsed into a query the index runs safely.

`refund courier dept:legal status:open from:"Tom W." tag:delivery since:30d`

- Free words match by stem (refunds ~ refund), every one must match; a "quoted phrase" matches its
  words in a row (an unbalanced quote runs to the end).
- Filters: `dept:` (a department), `status:`, `from:` (the author's name or handle, exactly),
  `tag:`, `since:` (`30d`, `12h`, `2w`, or a date `2026-11-01`). `dept:`, `status:` or `from:` twice:
  either value; `tag:` twice: both tags.
- Only letters and digits of the user's text reach the index, each word quoted by the store:
  index syntax (`"`, `*`, `NEAR`, `:`, `-`, `^`…) typed by a user is just more words or nothing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.domain import InvalidInput, Status
from bot.views import ELLIPSIS
from storage.search import MARK_END, MARK_START, Query

MAX_QUERY = 500  # characters in one search
MAX_TERMS = 8  # words and phrases in one search
MAX_WORD = 64  # characters in one word
MAX_PHRASE = 6  # words in one phrase
FILTERS = ("dept", "status", "from", "tag", "since")
_UNITS = {"h": "hours", "d": "days", "w": "weeks"}

_TOKEN = re.compile(
    r'(?P<name>[A-Za-z]+):(?:"(?P<qvalue>[^"]*)"?|(?P<value>\S*))'  # a filter, its value quoted or not
    r'|"(?P<phrase>[^"]*)"?'  # a phrase (an unbalanced quote runs to the end)
    r"|(?P<free>[^\s\"]+)"
)
_WORDS = re.compile(r"[^\W_]+")


def _words(text: str) -> list[str]:
    return [w.casefold() for w in _WORDS.findall(text)]


def _since(value: str, now: datetime) -> datetime:
    match = re.fullmatch(r"(\d{1,4})([hdw])", value.lower())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        day = datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise InvalidInput(f"since: takes a period like 30d, 12h or 2w, or a date like 2026-11-01 (got “{value[:20]}”)") from None
    return day.replace(tzinfo=UTC)


def parse(text: str, *, now: datetime) -> Query:
    """The query a search's text asks for; InvalidInput (a one-line reason) for what cannot be run."""
    text = " ".join((text or "").split())
    if len(text) > MAX_QUERY:
        raise InvalidInput(f"a search is at most {MAX_QUERY} characters (got {len(text):,}); pick the most telling words")
    terms: list[str] = []
    filters: dict[str, list[str]] = {name: [] for name in FILTERS}
    for match in _TOKEN.finditer(text):
        if match.group("name") is not None and (match.group("value") or "").startswith("//"):
            terms.extend(_words(match.group(0)))  # a link (https://…): its words
        elif match.group("name") is not None:
            name = match.group("name").lower()
            value = (match.group("qvalue") if match.group("qvalue") is not None else match.group("value") or "").strip()
            if name not in filters:
                known = ", ".join(f"{f}:" for f in FILTERS)
                raise InvalidInput(f"unknown filter “{name[:20]}:”; the filters are {known}")
            if not value:
                raise InvalidInput(f"{name}: needs a value, e.g. {name}:{_EXAMPLES[name]}")
            filters[name].append(value)
        elif match.group("phrase") is not None:
            words = _words(match.group("phrase"))
            if len(words) > MAX_PHRASE:
                raise InvalidInput(f"a quoted phrase is at most {MAX_PHRASE} words")
            if words:
                terms.append(" ".join(words))
        else:
            terms.extend(_words(match.group("free")))
    terms = list(dict.fromkeys(terms))
    if not terms:
        raise InvalidInput('search needs at least one word, e.g. `search refund` or `search "late delivery" dept:legal`')
    if len(terms) > MAX_TERMS:
        raise InvalidInput(f"search takes at most {MAX_TERMS} words or phrases (got {len(terms)}); pick the most telling ones")
    long = next((w for t in terms for w in t.split() if len(w) > MAX_WORD), None)
    if long is not None:
        raise InvalidInput(f"search words are at most {MAX_WORD} characters; “{long[:20]}…” is {len(long):,}")
    statuses = [s.lower() for s in filters["status"]]
    wrong = next((s for s in statuses if s not in set(Status)), None)
    if wrong is not None:
        raise InvalidInput(f"status: is one of {', '.join(Status)} (got “{wrong[:20]}”)")
    since = max((_since(v, now) for v in filters["since"]), default=None)
    return Query(
        terms=tuple(terms),
        departments=tuple(filters["dept"]),
        statuses=tuple(statuses),
        authors=tuple(filters["from"]),
        tags=tuple(filters["tag"]),
        since=since,
    )


_EXAMPLES = {"dept": "legal", "status": "open", "from": '"Tom W."', "tag": "delivery", "since": "30d"}


def described(query: Query) -> str:
    """The query in words, for the answer's first line: `“refund courier” in legal, open`."""
    words = " ".join(f'"{t}"' if " " in t else t for t in query.terms)
    narrowed = [*query.departments, *query.statuses, *(f"from {a}" for a in query.authors)]
    narrowed += [f"tagged {t}" for t in query.tags]
    if query.since is not None:
        narrowed.append(f"since {query.since:%Y-%m-%d}")
    return f"“{words}”" + (f" ({', '.join(narrowed)})" if narrowed else "")


Segments = tuple[tuple[str, bool], ...]


SNIPPET_BEFORE, SNIPPET_AFTER = 8, 16  # words around the first matched one


def _pieces(marked: str) -> list[tuple[str, bool, bool]]:
    """The document's words and word parts: (text, matched, glued to the one before)."""
    pieces: list[tuple[str, bool, bool]] = []
    inside, spaced = False, True
    for part in re.split(f"([{MARK_START}{MARK_END}])", marked or ""):
        if part in (MARK_START, MARK_END):
            inside = part == MARK_START
            continue
        for piece in re.split(r"(\s+)", part):
            if not piece:
                continue
            if piece.isspace():
                spaced = True
                continue
            pieces.append((piece, inside, not spaced and bool(pieces)))
            spaced = False
    return pieces


def segments(marked: str) -> Segments:
    """The snippet of a document the store marked (MARK_START word MARK_END around every matched word):
    the words around the first match, on one line, as (text, matched) segments; "…" where it was cut.
    A matched segment never starts or ends with a space (a renderer can wrap it in its bold marks)."""
    pieces = _pieces(marked)
    first = next((i for i, (_, matched, _) in enumerate(pieces) if matched), None)
    if first is None:
        return ()
    starts = [i for i, (_, _, glued) in enumerate(pieces) if not glued]  # where whole words begin
    word = sum(1 for i in starts if i <= first) - 1
    start = starts[max(0, word - SNIPPET_BEFORE)]
    end = starts[word + SNIPPET_AFTER] if word + SNIPPET_AFTER < len(starts) else len(pieces)
    shown: list[list[Any]] = []
    for index, (text, matched, glued) in enumerate(pieces[start:end]):
        space = "" if glued or index == 0 else " "
        if shown and shown[-1][1] == matched:
            shown[-1][0] += space + text
        elif matched:
            if space and shown:
                shown[-1][0] += space
            shown.append([text, True])
        else:
            shown.append([space + text, False])
    if start > 0:
        shown.insert(0, [ELLIPSIS + " ", False]) if shown[0][1] else shown[0].__setitem__(0, f"{ELLIPSIS} {shown[0][0]}")
    if end < len(pieces):
        shown.append([" " + ELLIPSIS, False]) if shown[-1][1] else shown[-1].__setitem__(0, f"{shown[-1][0]} {ELLIPSIS}")
    return tuple((str(text), bool(matched)) for text, matched in shown)
