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

from bot.domain import InvalidInput, Status
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
        if match.group("name") is not None:
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


def segments(marked: str) -> Segments:
    """A snippet the store marked (MARK_START word MARK_END) as (text, matched) segments, on one line."""
    raw = re.split(f"[{MARK_START}{MARK_END}]", marked or "")
    result: list[tuple[str, bool]] = []
    for index, part in enumerate(raw):
        text = " ".join(part.split())
        if not text:
            continue
        lead = " " if part[:1].isspace() and result else ""
        trail = " " if part[-1:].isspace() and index < len(raw) - 1 else ""
        result.append((lead + text + trail, index % 2 == 1))
    return tuple(result)
