"""The routing engine: which departments a conversation goes to, with what priority and tags."""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.domain import priority_rank

logger = logging.getLogger(__name__)


class RuleLike(Protocol):
    """What a rule offers the engine (a stored `Rule` or a `RuleConfig`)."""

    # Read-only members, so that a stored rule's lists and a config rule's tuples both qualify.
    @property
    def name(self) -> str: ...
    @property
    def departments(self) -> Sequence[str]: ...
    @property
    def any_words(self) -> Sequence[str]: ...
    @property
    def all_words(self) -> Sequence[str]: ...
    @property
    def regex(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def author(self) -> str: ...
    @property
    def priority(self) -> str: ...
    @property
    def tags(self) -> Sequence[str]: ...
    @property
    def sensitive(self) -> bool: ...


@dataclass(frozen=True)
class Routed:
    """Where a conversation goes and why."""

    departments: tuple[str, ...]
    priority: str
    tags: tuple[str, ...]
    reason: str
    sensitive: bool
    rules: tuple[str, ...] = ()  # the names of the rules that matched; (NO_RULE,) when none did


NO_RULE = "(no rule matched)"  # what the per-rule figures call the default department's routing


def _word_source(word: str) -> str:
    # Word boundaries only where the word itself starts/ends with a word character,
    # so "sue" does not match "issue" but "c++" still matches.
    start = r"\b" if re.match(r"\w", word) else ""
    end = r"\b" if re.search(r"\w$", word) else ""
    return start + re.escape(word) + end


def _word_pattern(word: str) -> re.Pattern[str]:
    return re.compile(_word_source(word), re.IGNORECASE)


def _any_pattern(words: Sequence[str]) -> re.Pattern[str] | None:
    """One pattern that finds any of the words: one scan of the text instead of one per word."""
    return re.compile("|".join(f"(?:{_word_source(w)})" for w in words), re.IGNORECASE) if words else None


@dataclass(frozen=True)
class _Compiled:
    rule: RuleLike
    any_words: tuple[tuple[str, re.Pattern[str]], ...]
    all_words: tuple[tuple[str, re.Pattern[str]], ...]
    regex: re.Pattern[str] | None
    any_of: re.Pattern[str] | None = None

    def match(self, *, text: str, source: str, author: str) -> str | None:
        """Why this rule matches, or None."""
        rule = self.rule
        why = []
        if rule.source:
            if not fnmatch.fnmatchcase(source.lower(), rule.source.lower()):
                return None
            why.append(f"source {source}")
        if rule.author:
            if not fnmatch.fnmatchcase(author.lower(), rule.author.lower()):
                return None
            why.append(f"author {author}")
        if self.all_words:
            if not all(p.search(text) for _, p in self.all_words):
                return None
            why.append("all of " + ", ".join(f"'{w}'" for w, _ in self.all_words))
        if self.any_words:
            if self.any_of is not None and self.any_of.search(text) is None:
                return None
            hits = [w for w, p in self.any_words if p.search(text)]
            if not hits:
                return None
            why.append("'" + "', '".join(hits) + "'")
        if self.regex is not None:
            found = self.regex.search(text)
            if found is None:
                return None
            why.append(f"/{rule.regex}/")
        return "; ".join(why)


class Router:
    """Rules compiled once; `route` is pure and cheap enough for every ingested item."""

    def __init__(self, rules: Sequence[RuleLike], *, default_department: str) -> None:
        self.default_department = default_department
        self._rules = [
            _Compiled(
                rule=r,
                any_words=tuple((w, _word_pattern(w)) for w in r.any_words),
                all_words=tuple((w, _word_pattern(w)) for w in r.all_words),
                regex=re.compile(r.regex, re.IGNORECASE) if r.regex else None,
                any_of=_any_pattern(r.any_words),
            )
            for r in rules
        ]

    def route(self, *, text: str, source: str, author: str, extra_tags: Sequence[str] = ()) -> Routed:
        """Every matching rule contributes its departments, tags and priority."""
        departments: list[str] = []
        tags: list[str] = list(dict.fromkeys(extra_tags))
        reasons: list[str] = []
        matched: list[str] = []
        priority = "normal"
        sensitive = False
        for compiled in self._rules:
            why = compiled.match(text=text, source=source, author=author)
            if why is None:
                continue
            rule = compiled.rule
            reasons.append(f"{rule.name}: {why}")
            matched.append(rule.name)
            departments.extend(d for d in rule.departments if d not in departments)
            tags.extend(t for t in rule.tags if t not in tags)
            if rule.priority and priority_rank(rule.priority) > priority_rank(priority):
                priority = rule.priority
            sensitive = sensitive or rule.sensitive
        if not departments:
            departments = [self.default_department]
            reasons.append("no rule matched")
            matched.append(NO_RULE)
        return Routed(tuple(departments), priority, tuple(tags), "; ".join(reasons), sensitive, tuple(matched))
