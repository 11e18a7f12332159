"""The TOML config file: departments, routing rules, feeds, outcomes, admins.

`load_config` returns a validated `Config` or raises `ConfigError` listing every
problem with its file, line and key, so `unsilo config check` can print them all.
"""

from __future__ import annotations

import difflib
import logging
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot import noise
from bot.domain import DEFAULT_OUTCOMES, PRIORITIES, InvalidInput
from bot.platform import Platform

logger = logging.getLogger(__name__)

CONFIG_CANDIDATES = ("unsilo.toml", "unsilo.example.toml")
LOG = "log"  # the core's own destination: cards written to the log (`log:<name>`), for trying things out
CLI = "cli"  # the core's own accounts: logins of the `unsilo` command (`cli:<login>`)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Problem:
    """One thing wrong in the config file."""

    key: str
    message: str
    line: int | None = None

    def format(self, path: str) -> str:
        """`file:line: key: message`, the form editors can jump to."""
        where = f"{path}:{self.line}" if self.line else path
        return f"{where}: {self.key}: {self.message}"


class ConfigError(Exception):
    """The config file has problems; `problems` lists all of them."""

    def __init__(self, path: str, problems: list[Problem]) -> None:
        self.path = path
        self.problems = problems
        super().__init__("\n".join(p.format(path) for p in problems))


@dataclass(frozen=True)
class DepartmentConfig:
    """A department as the config file declares it."""

    name: str
    sla_minutes: int = 240
    managers: tuple[str, ...] = ()
    channels: tuple[tuple[str, str], ...] = ()
    digest: str = ""  # a crontab line ("30 8 * * 1-5"); empty: no scheduled digest
    timezone: str = "UTC"
    digest_channels: tuple[tuple[str, str], ...] = ()  # the managers' channel(s); default: `channels`
    reuse_approved_answers: bool = False  # a pre-approved saved answer reused unchanged skips a second approval


@dataclass(frozen=True)
class ChannelConfig:
    """A channel's noise budget as the config declares it (`[channels."slack:C0123"]`): its delivery mode
    in stored form ("realtime", "batched 900", "digest-only", `bot.noise.parse_mode`) and its quiet hours."""

    platform: str
    channel_id: str
    mode: str = "realtime"
    quiet: str = ""


@dataclass(frozen=True)
class RuleConfig:
    """A routing rule as the config file declares it."""

    name: str
    departments: tuple[str, ...]
    any_words: tuple[str, ...] = ()
    all_words: tuple[str, ...] = ()
    regex: str = ""
    source: str = ""
    author: str = ""
    priority: str = ""
    tags: tuple[str, ...] = ()
    sensitive: bool = False


@dataclass(frozen=True)
class FeedConfig:
    """A feed to poll."""

    name: str
    url: str
    every_seconds: int = 300
    tags: tuple[str, ...] = ()
    line: int | None = field(default=None, compare=False)  # where it is declared, for problems found later (the store)
    retain_days: int | None = None  # None: the global `[unsilo] retain_days`


@dataclass(frozen=True)
class PersonConfig:
    """One person's accounts, linked by the config (`[people.<key>]`): the four-eyes check and
    every right compare persons, so one person's ids on each chat platform and CLI name count as one."""

    key: str
    name: str = ""
    accounts: tuple[tuple[str, str], ...] = ()  # (platform, user id) on each chat platform listed, e.g. a Slack U…
    cli: str = ""  # the login name used with the `unsilo` command
    email: str = ""
    department: str = ""  # the department they belong to (digests: who helped outside theirs)

    def identities(self) -> tuple[tuple[str, str], ...]:
        """(platform, user id) of every account listed."""
        return (*self.accounts, *(((CLI, self.cli),) if self.cli else ()))


@dataclass(frozen=True)
class SpikeConfig:
    """When a jump in new conversations is a spike (`[spikes]`; `bot.spikes` checks).

    A scope (a department, a tag or a rule within it) spikes when its new conversations of the
    last `window_minutes` are at least `min_count`, at least `ratio` times its usual count (the mean
    of the same window on each of the last `baseline_days` days, 1 when that is less) and above that
    mean by `sigmas` standard deviations. One alert per department and check; each scope it covers
    stays quiet for `cooldown_minutes`. Checked every `every_minutes`.
    """

    enabled: bool = True
    window_minutes: int = 60
    baseline_days: int = 7
    min_count: int = 10
    ratio: float = 3.0
    sigmas: float = 3.0
    cooldown_minutes: int = 120
    every_minutes: int = 5


@dataclass(frozen=True)
class Config:
    """The whole validated config."""

    path: str = "<built-in>"
    default_department: str = "triage"
    outcomes: tuple[str, ...] = DEFAULT_OUTCOMES
    require_claim_to_reply: bool = True
    admins: tuple[str, ...] = ()
    departments: tuple[DepartmentConfig, ...] = ()
    rules: tuple[RuleConfig, ...] = ()
    feeds: tuple[FeedConfig, ...] = field(default_factory=tuple)
    people: tuple[PersonConfig, ...] = ()
    channels: tuple[ChannelConfig, ...] = ()  # the channels with a noise budget other than the default
    warnings: tuple[Problem, ...] = ()  # not errors: `unsilo config check` prints them
    retain_days: int | None = None  # keep closed conversations' text this long; None: forever
    expertise_half_life_days: int = 90  # what someone did counts half as much as expertise after this long
    spikes: SpikeConfig = SpikeConfig()
    # One card per issue (`bot.voices`, which says why these defaults): how alike a text must be to an open
    # conversation's (Jaccard of word 3-shingles, 0-1; 1 turns text matching off) and for how long after it came in.
    duplicate_similarity: float = 0.7
    duplicate_window_hours: int = 72

    def retention_for(self, source: str, stored: int | None = None) -> int | None:
        """How many days a source's closed conversations keep their text: a config feed's own (the config
        wins for its feeds), else the source's own (`stored`, set with `unsilo sources`), else the default."""
        return self.retention_of(source, stored)[0]

    def retention_of(self, source: str, stored: int | None = None) -> tuple[int | None, str]:
        """`retention_for` and where it comes from: "config" (a feed's own), "source" or "default"."""
        feed = next((f for f in self.feeds if f.name == source), None)
        if feed is not None and feed.retain_days is not None:
            return feed.retain_days, "config"
        if feed is None and stored is not None:
            return stored, "source"
        return self.retain_days, "default"

    def department_names(self) -> list[str]:
        """Every department name, the default one included."""
        names = [d.name for d in self.departments]
        return names if self.default_department in names else [*names, self.default_department]


def find_config(explicit: str | None = None) -> Path | None:
    """The config file to use: the one named, else `unsilo.toml`, else the example."""
    if explicit:
        return Path(explicit)
    for candidate in CONFIG_CANDIDATES:
        path = Path(candidate)
        if path.is_file():
            return path
    return None


def load_config(path: str | Path | None, *, platforms: Sequence[Platform]) -> Config:
    """Read and validate a config file; None gives the built-in minimal config.

    `platforms` are the chat platforms a destination (`<name>:<channel>`) or an account
    (`<name>:<user id>`) may name, beside `log:` and `cli:` (the composition root's list)."""
    if path is None:
        logger.warning("no config file found (%s); using a single 'triage' department", ", ".join(CONFIG_CANDIDATES))
        return Config()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [Problem("file", f"cannot read: {exc.strerror or exc}")]) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))  # Python < 3.14 has no exc.lineno
        line = int(found.group(1)) if found else getattr(exc, "lineno", None)
        raise ConfigError(str(path), [Problem("syntax", str(exc), line)]) from exc
    checker = _Checker(text, platforms)
    config = checker.build(data, str(path))
    if checker.problems:
        raise ConfigError(str(path), checker.problems)
    return config


class _Checker:
    """Collects every problem instead of stopping at the first."""

    def __init__(self, text: str, platforms: Sequence[Platform]) -> None:
        self.platforms = tuple(platforms)
        self.lines = text.splitlines()
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.plain_names: list[tuple[str, str, dict[str, Any]]] = []  # (name, key, where) of managers/admins

    def _line(self, header: str | None, index: int, key: str | None) -> int | None:
        """Line of `key` under the `index`-th occurrence of `header` (None: top level)."""
        start = 0
        if header is not None:
            pattern = re.compile(r"^\s*" + re.escape(header) + r"\s*(#.*)?$")
            hits = [i for i, line in enumerate(self.lines) if pattern.match(line)]
            if index >= len(hits):
                return None
            start = hits[index]
        if key is None:
            return start + 1
        key_pattern = re.compile(r"^\s*" + re.escape(key) + r"\s*=")
        for i in range(start + (1 if header else 0), len(self.lines)):
            if header is not None and i > start and self.lines[i].lstrip().startswith("["):
                break
            if key_pattern.match(self.lines[i]):
                return i + 1
        return start + 1 if header else None

    def bad(self, key: str, message: str, *, header: str | None = None, index: int = 0, field_: str | None = None) -> None:
        self.problems.append(Problem(key, message, self._line(header, index, field_)))

    def _accounts(self) -> str:
        """How the config names people's accounts: `slack:<user id>, …` for each chat platform."""
        return ", ".join(f"{p.name}:<{p.account}>" for p in self.platforms)

    def _who(self, value: Any, key: str, **where: Any) -> tuple[str, ...]:
        """Managers or admins: `<platform>:<user id>` on a chat platform, `cli:<login>`, an email, or a
        plain name (which means the CLI login of that name only: chat display names grant nothing)."""
        entries = self._strings(value, key, **where)
        known = {*(p.name for p in self.platforms), CLI}
        for entry in entries:
            platform, sep, user_id = entry.partition(":")
            if sep and platform in known and user_id:
                continue
            if sep:
                accounts = ", ".join(filter(None, (self._accounts(), f"{CLI}:<login>")))
                self.bad(key, f"{entry!r}: use {accounts} or an email", **where)
            elif "@" not in entry:
                self.plain_names.append((entry, key, where))
        return entries

    def _strings(self, value: Any, key: str, **where: Any) -> tuple[str, ...]:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.bad(key, "must be a list of strings", **where)
            return ()
        return tuple(v.strip() for v in value if v.strip())

    def _int(self, value: Any, key: str, default: int, *, minimum: int = 1, **where: Any) -> int:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.bad(key, f"must be a whole number >= {minimum} (got {value!r})", **where)
            return default
        return value

    def _unknown(self, table: dict[str, Any], known: set[str], prefix: str, **where: Any) -> None:
        for key in sorted(set(table) - known):
            self.bad(
                f"{prefix}.{key}" if prefix else key,
                f"unknown key; expected one of {', '.join(sorted(known))}",
                field_=key,
                **where,
            )

    def build(self, data: dict[str, Any], path: str) -> Config:
        self._unknown(data, {"unsilo", "departments", "rules", "feeds", "people", "channels", "spikes"}, "")
        top = data.get("unsilo", {})
        if not isinstance(top, dict):
            self.bad("unsilo", "must be a table")
            top = {}
        where: dict[str, Any] = {"header": "[unsilo]"}
        self._unknown(
            top,
            {
                "default_department",
                "outcomes",
                "require_claim_to_reply",
                "admins",
                "retain_days",
                "expertise_half_life_days",
                "duplicate_similarity",
                "duplicate_window_hours",
            },
            "unsilo",
            **where,
        )
        half_life = self._int(top.get("expertise_half_life_days"), "unsilo.expertise_half_life_days", 90, **where)
        retain_days = self._retain(top.get("retain_days"), "unsilo.retain_days", **where)
        window = self._int(top.get("duplicate_window_hours"), "unsilo.duplicate_window_hours", 72, **where)
        alike = top.get("duplicate_similarity", 0.7)
        if isinstance(alike, bool) or not isinstance(alike, int | float) or not 0.3 <= alike <= 1:
            self.bad("unsilo.duplicate_similarity", f"must be a number from 0.3 to 1 (got {alike!r})", **where)
            alike = 0.7
        default = top.get("default_department", "triage")
        if not isinstance(default, str) or not _NAME.match(default):
            self.bad("unsilo.default_department", "must be a lowercase name like 'triage'", field_="default_department", **where)
            default = "triage"
        outcomes = self._strings(top.get("outcomes", list(DEFAULT_OUTCOMES)), "unsilo.outcomes", field_="outcomes", **where)
        if not outcomes:
            self.bad("unsilo.outcomes", "needs at least one outcome", field_="outcomes", **where)
            outcomes = DEFAULT_OUTCOMES
        require_claim = top.get("require_claim_to_reply", True)
        if not isinstance(require_claim, bool):
            self.bad("unsilo.require_claim_to_reply", "must be true or false", field_="require_claim_to_reply", **where)
            require_claim = True
        admins = self._who(top.get("admins"), "unsilo.admins", field_="admins", **where)
        departments = self._departments(data.get("departments", {}))
        declared = [d.name for d in departments]
        if "default_department" in top and declared and default not in declared:
            close = difflib.get_close_matches(default, declared, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            self.bad(
                "unsilo.default_department",
                f"no department {default!r} is declared; {hint}declare [departments.{default}] or name one of "
                f"{', '.join(declared)}",
                field_="default_department",
                **where,
            )
        known = {d.name for d in departments} | {default}
        rules = self._rules(data.get("rules", []), known)
        feeds = self._feeds(data.get("feeds", []))
        people = self._people(data.get("people", {}), known)
        channels = self._budgets(data.get("channels", {}))
        linked = {p.key.lower() for p in people} | {p.cli.lower() for p in people if p.cli}
        for name, key, place in self.plain_names:
            if name.lower() in linked:
                continue
            self.warnings.append(
                Problem(
                    key,
                    (
                        f"{name!r} is a plain name: it matches only the CLI login {name!r}, never a "
                        f"{' or '.join(p.title for p in self.platforms) or 'chat'} user "
                        f"(display names are chosen by users); list people as {self._accounts() or 'CLI logins'} or "
                        f"by email, or link their accounts under [people.{name}]"
                    ),
                    self._line(place.get("header"), place.get("index", 0), place.get("field_")),
                )
            )
        return Config(
            path=path,
            default_department=default,
            outcomes=outcomes,
            require_claim_to_reply=require_claim,
            admins=admins,
            departments=departments,
            rules=rules,
            feeds=feeds,
            people=people,
            channels=channels,
            warnings=tuple(self.warnings),
            retain_days=retain_days,
            expertise_half_life_days=half_life,
            spikes=self._spikes(data.get("spikes", {})),
            duplicate_similarity=float(alike),
            duplicate_window_hours=window,
        )

    def _budgets(self, raw: Any) -> tuple[ChannelConfig, ...]:
        """`[channels."<platform>:<channel>"]` tables: `mode` ("realtime", "batched 15m", "digest-only") and
        `quiet` ("22:00-07:00 Europe/Berlin")."""
        if not isinstance(raw, dict):
            self.bad("channels", 'must be tables like [channels."slack:C0123456789"]')
            return ()
        result = []
        for name, table in raw.items():
            key = f"channels.{name}"
            where: dict[str, Any] = {"header": f'[channels."{name}"]'}
            found = self._channels({"channel": [name]}, "channel", "channels", where)
            if not found:
                continue
            if not isinstance(table, dict):
                self.bad(key, "must be a table with mode and/or quiet", **where)
                continue
            self._unknown(table, {"mode", "quiet"}, key, **where)
            mode, quiet = "realtime", ""
            try:
                mode = noise.parse_mode(str(table.get("mode", "realtime")))
            except InvalidInput as exc:
                self.bad(f"{key}.mode", str(exc), field_="mode", **where)
            try:
                quiet = str(noise.Quiet.parse(str(table["quiet"]))) if table.get("quiet") else ""
            except InvalidInput as exc:
                self.bad(f"{key}.quiet", str(exc), field_="quiet", **where)
            result.append(ChannelConfig(found[0][0], found[0][1], mode, quiet))
        return tuple(result)

    def _spikes(self, table: Any) -> SpikeConfig:
        """`[spikes]`: the thresholds of spike alerts (`SpikeConfig`), each with its default."""
        default = SpikeConfig()
        if not isinstance(table, dict):
            self.bad("spikes", "must be a table")
            return default
        where: dict[str, Any] = {"header": "[spikes]"}
        whole = ("window_minutes", "baseline_days", "min_count", "cooldown_minutes", "every_minutes")
        self._unknown(table, {"enabled", "ratio", "sigmas", *whole}, "spikes", **where)
        enabled = table.get("enabled", True)
        if not isinstance(enabled, bool):
            self.bad("spikes.enabled", "must be true or false", field_="enabled", **where)
            enabled = True
        numbers: dict[str, float] = {}
        for key in ("ratio", "sigmas"):
            value = table.get(key, getattr(default, key))
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                self.bad(f"spikes.{key}", f"must be a number >= 0 (got {value!r})", field_=key, **where)
                value = getattr(default, key)
            numbers[key] = float(value)
        counts = {key: self._int(table.get(key), f"spikes.{key}", getattr(default, key), field_=key, **where) for key in whole}
        return SpikeConfig(enabled=enabled, ratio=numbers["ratio"], sigmas=numbers["sigmas"], **counts)

    def _people(self, raw: Any, departments: set[str]) -> tuple[PersonConfig, ...]:
        if not isinstance(raw, dict):
            self.bad("people", "must be tables like [people.dana]")
            return ()
        result: list[PersonConfig] = []
        seen: dict[tuple[str, str], str] = {}
        for key, table in raw.items():
            where: dict[str, Any] = {"header": f"[people.{key}]" if re.match(r"^[A-Za-z0-9_-]+$", key) else f'[people."{key}"]'}
            if not isinstance(table, dict):
                self.bad(f"people.{key}", "must be a table", **where)
                continue
            chats = [p.name for p in self.platforms]
            fields = {"name", CLI, "email", "department", *chats}
            self._unknown(table, fields, f"people.{key}", **where)
            values = {}
            for name in sorted(fields):
                value = table.get(name, "")
                if not isinstance(value, str):
                    self.bad(f"people.{key}.{name}", "must be a string", field_=name, **where)
                    value = ""
                values[name] = value.strip()
            if values["email"] and "@" not in values["email"]:
                self.bad(f"people.{key}.email", f"{values['email']!r} is not an email address", field_="email", **where)
                values["email"] = ""
            if values["department"] and values["department"] not in departments:
                self.bad(
                    f"people.{key}.department",
                    f"no department {values['department']!r} is declared; name one of {', '.join(sorted(departments))}",
                    field_="department",
                    **where,
                )
                values["department"] = ""
            person = PersonConfig(
                key=key,
                name=values["name"],
                accounts=tuple((p, values[p]) for p in chats if values[p]),
                cli=values[CLI],
                email=values["email"],
                department=values["department"],
            )
            accounts = [*person.identities(), *((("email", person.email.lower()),) if person.email else ())]
            if not accounts:
                self.bad(f"people.{key}", f"list at least one of {', '.join([*chats, CLI])} or email", **where)
                continue
            for account in accounts:
                if account in seen:
                    self.bad(
                        f"people.{key}", f"{account[0]} {account[1]!r} is already listed under [people.{seen[account]}]", **where
                    )
                seen[account] = key
            result.append(person)
        return tuple(result)

    def _departments(self, raw: Any) -> tuple[DepartmentConfig, ...]:
        if not isinstance(raw, dict):
            self.bad("departments", "must be tables like [departments.support]")
            return ()
        result = []
        for name, table in raw.items():
            key = f"departments.{name}"
            where: dict[str, Any] = {
                "header": f"[departments.{name}]" if re.match(r"^[A-Za-z0-9_-]+$", name) else f'[departments."{name}"]'
            }
            if not _NAME.match(name):
                self.bad(key, "department names are lowercase letters, digits, '-' or '_'", **where)
                continue
            if not isinstance(table, dict):
                self.bad(key, "must be a table", **where)
                continue
            self._unknown(
                table,
                {"sla_minutes", "managers", "channels", "digest", "timezone", "digest_channels", "reuse_approved_answers"},
                key,
                **where,
            )
            reuse = table.get("reuse_approved_answers", False)
            if not isinstance(reuse, bool):
                self.bad(f"{key}.reuse_approved_answers", "must be true or false", field_="reuse_approved_answers", **where)
                reuse = False
            channels = self._channels(table, "channels", key, where)
            digest = table.get("digest", "")
            if not isinstance(digest, str) or digest and _crontab_problem(digest):
                problem = _crontab_problem(digest) if isinstance(digest, str) else "must be a string"
                self.bad(f"{key}.digest", f'{problem} (a crontab line like "30 8 * * 1-5")', field_="digest", **where)
                digest = ""
            timezone = table.get("timezone", "UTC")
            if not isinstance(timezone, str) or _zone_problem(timezone):
                self.bad(
                    f"{key}.timezone", f'{timezone!r} is not a time zone name like "Europe/Berlin"', field_="timezone", **where
                )
                timezone = "UTC"
            result.append(
                DepartmentConfig(
                    name=name,
                    sla_minutes=self._int(table.get("sla_minutes"), f"{key}.sla_minutes", 240, field_="sla_minutes", **where),
                    managers=self._who(table.get("managers"), f"{key}.managers", field_="managers", **where),
                    channels=channels,
                    digest=digest.strip(),
                    timezone=timezone,
                    digest_channels=self._channels(table, "digest_channels", key, where),
                    reuse_approved_answers=reuse,
                )
            )
        return tuple(result)

    def _channels(self, table: dict[str, Any], name: str, key: str, where: dict[str, Any]) -> tuple[tuple[str, str], ...]:
        channels = []
        destinations = (*(p.name for p in self.platforms), LOG)
        for channel in self._strings(table.get(name), f"{key}.{name}", field_=name, **where):
            platform, sep, channel_id = channel.partition(":")
            if not sep or platform not in destinations or not channel_id:
                self.bad(
                    f"{key}.{name}",
                    f"{channel!r} should be 'platform:channel' with platform one of {', '.join(destinations)}",
                    field_=name,
                    **where,
                )
                continue
            channels.append((platform, channel_id))
        return tuple(channels)

    def _rules(self, raw: Any, departments: set[str]) -> tuple[RuleConfig, ...]:
        if not isinstance(raw, list):
            self.bad("rules", "must be an array of tables: [[rules]]")
            return ()
        result = []
        names: set[str] = set()
        fields = {"name", "departments", "any", "all", "regex", "source", "author", "priority", "tags", "sensitive"}
        for i, table in enumerate(raw):
            key = f"rules[{i + 1}]"
            where: dict[str, Any] = {"header": "[[rules]]", "index": i}
            if not isinstance(table, dict):
                self.bad(key, "must be a table", **where)
                continue
            self._unknown(table, fields, key, **where)
            name = table.get("name")
            if not isinstance(name, str) or not name.strip():
                self.bad(f"{key}.name", "every rule needs a name", field_="name", **where)
                name = f"rule {i + 1}"
            elif name in names:
                self.bad(f"{key}.name", f"duplicate rule name {name!r}", field_="name", **where)
            names.add(name)
            targets = self._strings(table.get("departments"), f"{key}.departments", field_="departments", **where)
            if not targets:
                self.bad(f"{key}.departments", "name at least one department", field_="departments", **where)
            for target in targets:
                if target not in departments:
                    self.bad(
                        f"{key}.departments",
                        f"unknown department {target!r}; declare [departments.{target}]",
                        field_="departments",
                        **where,
                    )
            regex = table.get("regex", "")
            if not isinstance(regex, str):
                self.bad(f"{key}.regex", "must be a string", field_="regex", **where)
                regex = ""
            elif regex:
                try:
                    re.compile(regex)
                except re.error as exc:
                    self.bad(f"{key}.regex", f"invalid regular expression: {exc}", field_="regex", **where)
            any_words = self._strings(table.get("any"), f"{key}.any", field_="any", **where)
            all_words = self._strings(table.get("all"), f"{key}.all", field_="all", **where)
            source = table.get("source", "")
            author = table.get("author", "")
            for fname, value in (("source", source), ("author", author)):
                if not isinstance(value, str):
                    self.bad(f"{key}.{fname}", "must be a string", field_=fname, **where)
            if not (any_words or all_words or regex or source or author):
                self.bad(key, "matches nothing: give any, all, regex, source or author", **where)
            priority = table.get("priority", "")
            if priority and priority not in PRIORITIES:
                self.bad(
                    f"{key}.priority", f"must be one of {', '.join(PRIORITIES)} (got {priority!r})", field_="priority", **where
                )
                priority = ""
            sensitive = table.get("sensitive", False)
            if not isinstance(sensitive, bool):
                self.bad(f"{key}.sensitive", "must be true or false", field_="sensitive", **where)
                sensitive = False
            result.append(
                RuleConfig(
                    name=name,
                    departments=targets,
                    any_words=any_words,
                    all_words=all_words,
                    regex=regex,
                    source=source if isinstance(source, str) else "",
                    author=author if isinstance(author, str) else "",
                    priority=priority,
                    tags=self._strings(table.get("tags"), f"{key}.tags", field_="tags", **where),
                    sensitive=sensitive,
                )
            )
        return tuple(result)

    def _feeds(self, raw: Any) -> tuple[FeedConfig, ...]:
        if not isinstance(raw, list):
            self.bad("feeds", "must be an array of tables: [[feeds]]")
            return ()
        result = []
        first: dict[str, str] = {}  # feed name -> where it is declared first
        for i, table in enumerate(raw):
            key = f"feeds[{i + 1}]"
            where: dict[str, Any] = {"header": "[[feeds]]", "index": i}
            if not isinstance(table, dict):
                self.bad(key, "must be a table", **where)
                continue
            self._unknown(table, {"name", "url", "every", "tags", "retain_days"}, key, **where)
            name, url = table.get("name"), table.get("url")
            if not isinstance(name, str) or not _NAME.match(name):
                self.bad(f"{key}.name", "every feed needs a lowercase name like 'reviews'", field_="name", **where)
                continue
            line = self._line("[[feeds]]", i, "name")
            if name in first:
                self.bad(
                    f"{key}.name",
                    f"duplicate feed name {name!r}: {first[name]} has it already (the second would replace the first)",
                    field_="name",
                    **where,
                )
                continue
            first[name] = f"feeds[{i + 1}]" + (f" (line {line})" if line else "")
            if not isinstance(url, str) or not url.strip():
                self.bad(f"{key}.url", "every feed needs a url", field_="url", **where)
                continue
            if not re.match(r"(?i)^https?://[^/\s]+", url.strip()):
                self.bad(f"{key}.url", f"{url.strip()[:200]!r} is not an http(s) URL", field_="url", **where)
                continue
            result.append(
                FeedConfig(
                    name=name,
                    url=url.strip(),
                    every_seconds=self._int(table.get("every"), f"{key}.every", 300, minimum=30, field_="every", **where),
                    tags=self._strings(table.get("tags"), f"{key}.tags", field_="tags", **where),
                    line=line,
                    retain_days=self._retain(table.get("retain_days"), f"{key}.retain_days", **where),
                )
            )
        return tuple(result)

    def _retain(self, value: Any, key: str, **where: Any) -> int | None:
        """A retention period: a positive whole number of days, or absent (keep forever)."""
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            self.bad(
                key,
                f"must be a whole number of days >= 1 (got {value!r}); leave it out to keep text forever",
                field_="retain_days",
                **where,
            )
            return None
        return value


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _weekdays(field: str) -> str:
    """A crontab day-of-week field with numbers (0 or 7 = Sunday) written as names.

    APScheduler 3 counts 0 as Monday (its `from_crontab` warns about it), so "1-5" would
    mean Tuesday to Saturday; names mean the same thing to both.
    """
    if field == "*" or re.search(r"[a-zA-Z]", field):
        return field
    days: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        first, _, last = span.partition("-")
        low, high = (0, 6) if first == "*" else (int(first), int(last) if last else int(first))
        if not last and step_text and first != "*":
            high = 6
        if not (0 <= low <= 7 and 0 <= high <= 7 and low <= high and step >= 1):
            raise ValueError(f"day of week {part!r} is not within 0-7")
        days.update(d % 7 for d in range(low, high + 1, step))
    return ",".join(_WEEKDAYS[d] for d in sorted(days))


def digest_trigger(line: str, timezone: str = "UTC") -> Any:
    """The APScheduler trigger of a digest schedule: a crontab line (5 fields, crontab weekday
    numbers), or 6 fields with seconds first."""
    from zoneinfo import ZoneInfo

    from apscheduler.triggers.cron import CronTrigger

    fields = line.split()
    if len(fields) not in (5, 6):
        raise ValueError(f"wrong number of fields: got {len(fields)}, expected 5 (or 6 with seconds first)")
    second = fields.pop(0) if len(fields) == 6 else "0"
    minute, hour, day, month, dow = fields
    return CronTrigger(
        second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=_weekdays(dow), timezone=ZoneInfo(timezone)
    )


def _crontab_problem(line: str) -> str | None:
    """Why a digest schedule is unusable, or None."""
    try:
        digest_trigger(line)
    except ValueError as exc:
        return str(exc)
    return None


def _zone_problem(name: str) -> str | None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return "unknown"
    return None
