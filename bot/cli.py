"""The `unsilo` command line: the demo, the service, and every action for scripts.

Exit codes: 0 done (`unsilo help`, `unsilo --version` too), 1 refused (the reason is printed on
one line), 2 bad usage (`unsilo` without a command prints the help and exits 2), 3 the config or
the store is unusable.

Starting is quick (`bench/startup.py`): the parser needs only the verb table and the platforms'
names, so the store, the bus and the feeds are imported when a command runs, never for the help.
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import getpass
import logging
import re
import sys
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bot import bootstrap, export, logs, output, terminal, verbs
from bot import commands as c
from bot.bootstrap import build, feed_poller, load_config, sample_path, settings_from_env
from bot.config import ConfigError, find_config
from bot.domain import DomainError, InvalidInput, parse_conversation_id
from bot.views import Card, Listing, Result, printable, when

if TYPE_CHECKING:
    from bot.bootstrap import Container
    from bot.settings import Settings

logger = logging.getLogger(__name__)


def echo(*values: object, file: Any = None, **kwargs: Any) -> None:
    """`print`, with every untrusted character made inert for the terminal: stored fields (a URL,
    a handle, a customer's text) can carry ESC sequences, other controls and bidi overrides that
    would recolour, move or rewrite what the terminal shows."""
    builtins.print(*(printable(v) if isinstance(v, str) else v for v in values), file=file, **kwargs)


DEMO_SOURCE = "demo-feed"


def _conversation_id(text: str) -> int:
    try:
        return parse_conversation_id(text)
    except DomainError as exc:
        raise argparse.ArgumentTypeError(exc.message) from exc


def _days(text: str) -> int:
    raw = text.strip().lower().removesuffix("d")
    if not raw.isdigit() or not 1 <= int(raw) <= 366:
        raise argparse.ArgumentTypeError(f"{text!r} is not a period like 7d (1 to 366 days)")
    return int(raw)


def _grace(text: str) -> int:
    """A grace period like 24h, 2h, 30m, 1d or 0, in seconds."""
    found = re.fullmatch(r"(\d{1,4})([dhm]?)", text.strip().lower())
    if not found or (found.group(1) != "0" and not found.group(2)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a period like 24h, 2h, 30m, 1d or 0")
    return int(found.group(1)) * {"d": 86400, "h": 3600, "m": 60, "": 0}[found.group(2)]


class _Version(argparse.Action):
    """`unsilo --version`: the installed distribution's version (read only when asked)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        from importlib import metadata

        echo(f"unsilo {metadata.version('unsilo')}")
        parser.exit()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unsilo", description="Route customer conversations to the people who can act on them.")
    parser.add_argument("--database-url", help="store URL (default: $DATABASE_URL or sqlite+aiosqlite:///./unsilo.db)")
    parser.add_argument("--config", help="config file (default: $UNSILO_CONFIG, ./unsilo.toml, ./unsilo.example.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    # The same options are accepted after the command too (`unsilo queue --config x.toml`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--database-url", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def actor_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--as", dest="actor", default=None, help="who is acting (default: your login name)")

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, description=help_, parents=[common])

    def json_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print one JSON document (fields: README, JSON output)")

    def limit_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--limit", type=output.limit_arg, default=c.LIST_LIMIT, help=f"list at most N (default {c.LIST_LIMIT})")

    p = cmd("demo", "ingest the bundled sample feed, deliver the cards and print every department's queue")
    demo = p.add_mutually_exclusive_group()
    demo.add_argument("--into-existing", action="store_true", help="add the demo to a store that holds other conversations")
    demo.add_argument(
        "--reset", action="store_true", help="remove exactly what the demo added (its conversations and all on them)"
    )
    p = cmd("run", "start the service (health check, Slack/Teams endpoints, delivery loop)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    for verb in verbs.TABLE:  # every verb about one conversation, with its inputs as arguments
        if verb.build is not None:
            p = cmd(verb.name, verb.usage.partition(" — ")[2] or verb.usage)
            p.add_argument("id", type=_conversation_id)
            for wanted in verb.inputs:
                if wanted.kind == "text" and wanted.required and wanted.multiline:
                    p.add_argument(wanted.name, help=wanted.label)
                else:
                    p.add_argument(f"--{wanted.name}", required=wanted.required, default="", help=wanted.label)
            actor_arg(p)
            if verb.name == "show":
                json_arg(p)
    for verb in verbs.TABLE:  # verbs the CLI reads with their chat parser: `unsilo who knows gdpr --as dana`
        if verb.cli and verb.parse is not None:
            p = cmd(verb.name, verb.usage.partition(" — ")[2] or verb.usage)
            p.add_argument("words", nargs="*", help=verb.syntax)
            actor_arg(p)
    p = cmd("approvals", "replies waiting for your approval")
    actor_arg(p)
    limit_arg(p)
    json_arg(p)
    p = cmd("reassign", "give a conversation to someone else (managers)")
    p.add_argument("id", type=_conversation_id)
    p.add_argument("--to", required=True, help="the new owner")
    actor_arg(p)
    p = cmd("queue", "what is waiting, per department")
    p.add_argument("--department", "-d")
    p.add_argument("--mine", action="store_true", help="only conversations you own")
    actor_arg(p)
    limit_arg(p)
    json_arg(p)
    p = cmd("search", "search conversations, notes and replies")
    p.add_argument("words", nargs="+")
    limit_arg(p)
    json_arg(p)
    p = cmd("report", "send in a post you spotted yourself")
    p.add_argument("text")
    p.add_argument("--link", default="")
    p.add_argument("--department", "-d")
    p.add_argument("--author", default="")
    actor_arg(p)
    p = cmd("erase", "remove a customer's personal data from the store, the search and the posted cards (admins)")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--author", default="", help="the author's name, exactly (case-insensitive)")
    who.add_argument("--handle", default="", help="the author's handle")
    who.add_argument("--url", default="", help="the author's profile URL")
    who.add_argument("--conversation", type=_conversation_id, default=None, help="one conversation, #42")
    p.add_argument("--reason", required=True, help="why (recorded in the history, e.g. 'GDPR request #5')")
    p.add_argument("--dry-run", action="store_true", help="list what would go, change nothing")
    actor_arg(p)
    p = cmd("ingest", "ingest a feed file (RSS, Atom, RDF or JSON Feed)")
    p.add_argument("path")
    p.add_argument("--source", help="source name (default: the file name)")
    cmd("deliver", "send every due card and message now")
    p = cmd("sources", "where conversations come from: list them, add a feed or a webhook, poll feeds now")
    json_arg(p)
    sources = p.add_subparsers(dest="action", metavar="ACTION")
    s = sources.add_parser("list", help="every source with its last poll, items seen, last error and next poll", parents=[common])
    json_arg(s)
    s = sources.add_parser("add-feed", help="poll a feed (RSS, Atom, RDF or JSON Feed)", parents=[common])
    s.add_argument("name")
    s.add_argument("url")
    s.add_argument("--every", type=int, default=300, metavar="SECONDS", help="poll interval (default: 300)")
    s.add_argument("--tags", default="", help="tags for every item, comma-separated")
    s.add_argument("--reply-url", default="", help="an endpoint that takes replies (a signing secret is made)")
    s.add_argument("--retain-days", type=_retain_days, default=None, metavar="N", help=_RETAIN_HELP)
    s = sources.add_parser("add-webhook", help="accept signed POSTs at /hooks/NAME; prints the new secret once", parents=[common])
    s.add_argument("name")
    s.add_argument("--tags", default="", help="tags for every item, comma-separated")
    s.add_argument("--reply-url", default="", help="where replies are POSTed when an item carries no reply_url")
    s.add_argument("--retain-days", type=_retain_days, default=None, metavar="N", help=_RETAIN_HELP)
    s = sources.add_parser("set", help="change a source's retention (a config feed's is set in the config)", parents=[common])
    s.add_argument("name")
    s.add_argument("--retain-days", type=_retain_days, required=True, metavar="N|default", help=_RETAIN_HELP)
    s = sources.add_parser("remove", help="stop taking conversations from a source (those it brought stay)", parents=[common])
    s.add_argument("name")
    s = sources.add_parser(
        "rotate-secret", help="give a source a new signing secret, printed once; the old one works for a while", parents=[common]
    )
    s.add_argument("name")
    s.add_argument(
        "--grace", type=_grace, default=24 * 3600, help="how long the old secret still works: 24h (default), 2h, 30m, 0"
    )
    for name in ("add-feed", "add-webhook", "remove", "rotate-secret", "set"):  # admin actions: who is acting
        actor_arg(sources.choices[name])
    sources.add_parser("poll", help="poll every feed that is due now, once", parents=[common])
    p = cmd("digest", "a department's digest, printed here")
    p.add_argument("--department", "-d")
    p.add_argument("--since", default="7d", type=_days, help="how far back, e.g. 7d (default) or 30d")
    actor_arg(p)
    json_arg(p)
    p = cmd("export", "one row per conversation (times, durations, departments, owner, outcome), streamed")
    p.add_argument("--since", type=_days, help="only those that arrived in the last N days, e.g. 30d (default: all)")
    p.add_argument("--department", "-d")
    p.add_argument("--format", choices=export.FORMATS, default="csv")
    p.add_argument("--out", help="write to this file (default: standard output)")
    p = cmd("stats", "your own figures")
    actor_arg(p)
    json_arg(p)
    p = cmd("manifest", "build an app package")
    p.add_argument("platform", choices=[platform.name for platform in bootstrap.PLATFORMS if platform.manifest])
    p.add_argument("--out", help="where to write the zip (default: unsilo-<platform>.zip)")
    p.add_argument("--app-id", default="", help="the bot's app id (default: the platform's own, e.g. $MicrosoftAppId)")
    p = cmd("db", "database maintenance: upgrade the schema, copy the store elsewhere, back it up")
    p.add_argument("action", choices=["upgrade", "copy", "backup"])
    p.add_argument("file", nargs="?", help="backup: the new file to write (SQLite) or to name in the pg_dump line")
    p.add_argument("--to", metavar="URL", help="copy: the empty store to copy into, e.g. postgresql://user@host/db")
    p.add_argument("--force", action="store_true", help="backup: replace FILE if it exists")
    p = cmd("config", "configuration file")
    p.add_argument("action", choices=["check"])
    p = cmd("help", "this help, or a command's: unsilo help COMMAND")
    p.add_argument("topic", nargs="*", metavar="COMMAND")
    return parser


def _print_result(result: Result, *, command: str, args: argparse.Namespace) -> None:
    """A command's answer through the CLI's renderers (`bot.output`: the terminal's text, or JSON)."""
    as_json = bool(getattr(args, "json", False))
    output.print_result(result, command=command, as_json=as_json, limit=getattr(args, "limit", c.LIST_LIMIT), echo=echo)


def _actor(args: argparse.Namespace) -> c.Actor:
    name = args.actor or getpass.getuser()
    return c.Actor(platform="cli", user_id=name, name=name)


def _command(args: argparse.Namespace) -> c.Command:
    actor = _actor(args) if hasattr(args, "actor") else c.Actor("cli", getpass.getuser())
    verb = verbs.get(args.command)
    if verb is not None and verb.build is not None:
        return verb.command(args.id, actor, {i.name: getattr(args, i.name) for i in verb.inputs})
    if verb is not None and verb.cli and verb.parse is not None:
        return verb.parse(" ".join(args.words), actor, verbs.Typed(prefix="unsilo"))
    match args.command:
        case "reassign":
            return c.Reassign(args.id, actor, to=c.Actor("cli", args.to, name=args.to))
        case "queue":
            return c.ShowQueue(actor, department=args.department, mine=args.mine, limit=args.limit)
        case "search":
            return c.Search(actor, tuple(args.words), limit=args.limit)
        case "report":
            return c.Report(actor, args.text, link=args.link, department=args.department, author=args.author)
        case "approvals":
            return c.ShowApprovals(actor, limit=args.limit)
        case "digest":
            return c.ShowDigest(actor, department=args.department, days=args.since)
        case "stats":
            return c.ShowStats(actor)
        case "erase":
            return c.Erase(
                actor,
                args.reason,
                author=args.author,
                handle=args.handle,
                url=args.url,
                conversation_id=args.conversation,
                dry_run=args.dry_run,
            )
    raise ValueError(args.command)


async def _demo(container: Container, args: argparse.Namespace) -> None:
    from bot import maintenance
    from bot.ingest import parse_feed

    if args.reset:
        await maintenance.demo_reset(container.engine, DEMO_SOURCE)
        return
    if not args.into_existing:
        await maintenance.refuse_non_demo(container.engine, DEMO_SOURCE)

    items, _ = parse_feed(sample_path("demo-feed.xml").read_bytes(), source=DEMO_SOURCE)
    report = await container.ingest(items)
    # Into a real store, the outbox also holds real cards: the demo sends none of them (`unsilo deliver` does).
    sent = 0 if args.into_existing else await container.worker().run_until_idle()
    echo(
        f"Ingested {len(report.new_ids)} new conversations from the sample feed "
        f"({report.duplicates} already known); {sent} card deliveries sent to log channels."
    )
    if args.into_existing:
        echo("(Added beside the store's own conversations: its cards wait in the outbox; `unsilo demo --reset` removes it.)")
    elif not container.senders or sent == 0 and report.new_ids:
        echo("(No chat platform is configured: cards wait in the outbox until one is.)")
    result = await container.bus.handle(c.ShowQueue(c.Actor("cli", "demo")))
    echo()
    echo(f"{result.text}, by department:")
    by_department: dict[str, list[Card]] = {}
    for card in result.cards:
        for name in card.departments:
            by_department.setdefault(name, []).append(card)
    for name, count in sorted(result.counts.items()):
        echo(f"\n{name} ({count} waiting)")
        for text in terminal.listing_lines(Listing.of(by_department.get(name, []))):
            echo(text)
    echo(
        textwrap.dedent("""
        Next, try:
          unsilo claim 3 --as alice
          unsilo note 3 "Checked the order: courier lost it" --as bob
          unsilo reply 3 "Sorry! A replacement ships today." --as alice
          unsilo resolve 3 --outcome answered --as alice
          unsilo show 3
          unsilo queue --department legal
          unsilo search refund""")
    )
    settings = container.settings
    echo(
        "\nOr see the cards in the browser: `unsilo run`, then open the one-time link it prints "
        f"(console: http://{settings.host}:{settings.port}/console/login?token=…)."
    )


async def _ingest(container: Container, args: argparse.Namespace) -> None:
    from pathlib import Path

    from bot.ingest import IngestError, parse_feed

    path = Path(args.path)
    source = args.source or path.stem
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        raise IngestError(f"source {source!r}: cannot read {path}: {exc.strerror or exc}") from exc
    items, warning = parse_feed(data, source=source)
    report = await container.ingest(items)
    if warning:
        echo(f"warning: {warning}", file=sys.stderr)
    echo(f"{source}: {len(report.new_ids)} new, {report.duplicates} already known")


def _when(at: datetime | None) -> str:
    """A stored time (naive ones are UTC) as the terminal shows it, or "never"."""
    return when(at if at is None or at.tzinfo else at.replace(tzinfo=UTC)) or "never"


DEFAULT = "default"
_RETAIN_HELP = "days a closed conversation keeps its text (default: [unsilo] retain_days); `default` with set"
_RETENTION_FROM = {
    "config": "the config's, for this feed",
    "source": "this source's own: `unsilo sources set NAME --retain-days N|default`",
    "default": "the default, [unsilo] retain_days",
}


def _retain_days(text: str) -> int | str:
    """`--retain-days N` (1 or more) or `default` (the global default), or argparse's clear usage error."""
    if text.strip().lower() == DEFAULT:
        return DEFAULT
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number of days or `default`, not {text!r}") from None
    if days < 1:
        raise argparse.ArgumentTypeError(f"at least 1 day, not {days}")
    return days


async def _sources(container: Container, args: argparse.Namespace) -> None:
    action = args.action or "list"
    tags = [t.strip() for t in getattr(args, "tags", "").split(",") if t.strip()]
    reply_url = getattr(args, "reply_url", "")
    from adapters.net import guard  # the CLI is an entry point: it may import adapters

    checker = guard.AddressGuard(container.settings.allow_private_urls)
    for option, url in (("--reply-url", reply_url), ("the feed URL", getattr(args, "url", "") if action == "add-feed" else "")):
        if url:
            try:
                await checker.check_resolved(url)
            except guard.UnsafeURL as exc:
                raise InvalidInput(f"{option} is refused: {exc} (UNSILO_ALLOW_PRIVATE_URLS lists the exceptions)") from None
    if action == "poll":
        poller = feed_poller(container)
        outcomes = await poller.poll_due()
        for outcome in outcomes:
            echo(
                f"{outcome.source}: {getattr(outcome.status, 'value', outcome.status)}"
                + (f" ({outcome.error})" if outcome.error else "")
            )
        echo(f"{len(outcomes)} feed{'s' if len(outcomes) != 1 else ''} polled")
        return
    if action in ("add-feed", "add-webhook", "remove", "rotate-secret", "set"):
        actor = _actor(args)
        command: c.Command
        if action == "set":
            command = c.SetRetention(actor, args.name, None if args.retain_days == DEFAULT else args.retain_days)
        elif action == "remove":
            command = c.RemoveSource(actor, args.name)
        elif action == "rotate-secret":
            command = c.RotateSecret(actor, args.name, grace_seconds=args.grace)
        else:
            kind = "feed" if action == "add-feed" else "webhook"
            url, every = (args.url, args.every) if kind == "feed" else ("", 300)
            retain = None if args.retain_days == DEFAULT else args.retain_days
            command = c.AddSource(
                actor, args.name, kind, url=url, every_seconds=every, tags=tuple(tags), reply_url=reply_url, retain_days=retain
            )
        for text in terminal.result_lines(await container.bus.handle(command)):
            echo(text)
        return
    async with container.uow() as uow:
        listed = await uow.sources.all()
    if getattr(args, "json", False):
        from_config = {feed.name for feed in container.config.feeds}
        retention = {s.name: container.config.retention_of(s.name, s.retain_days) for s in listed}
        echo(
            output.sources_json(
                {
                    **source.model_dump(),
                    "configured": source.name in from_config,
                    "retain_days": retention[source.name][0],
                    "retain_days_from": retention[source.name][1],
                }
                for source in listed
            )
        )
        return
    if not listed:
        echo("no sources yet: add [[feeds]] to the config, or `unsilo sources add-feed NAME URL`")
    for source in listed:
        where = source.url or (f"/hooks/{source.name}" if source.kind == "webhook" else "")
        configured = any(feed.name == source.name for feed in container.config.feeds)
        removed = f", removed {_when(source.removed_at)}" if source.removed_at else ""
        echo(f"{source.name} ({source.kind}{', from the config' if configured else ''}{removed}) {where}".rstrip())
        if source.previous_secret and source.previous_secret_expires_at:
            echo(f"  the secret before the last rotation works until {_when(source.previous_secret_expires_at)}")
        if source.kind == "feed" and not source.url:
            echo(f"  no URL: items come from `unsilo ingest`; last ingest {_when(source.last_polled_at)}")
        elif source.kind == "feed":
            echo(
                f"  every {source.every_seconds}s · last poll {_when(source.last_polled_at)} · "
                f"next poll {_when(source.next_poll_at) if source.next_poll_at else 'now'}"
            )
        else:
            echo(f"  last item {_when(source.last_polled_at)}")
        echo(
            f"  items seen {source.items_seen} · failures {source.failures}"
            + (f" · last error: {source.last_error}" if source.last_error else "")
        )
        if source.reply_url:
            echo(f"  replies go to {source.reply_url}")
        days, origin = container.config.retention_of(source.name, source.retain_days)
        kept = f"keeps text {days} days after it is closed" if days else "keeps text forever"
        echo(f"  {kept} ({_RETENTION_FROM[origin]})")


async def _export(container: Container, args: argparse.Namespace) -> None:
    from storage.export import conversation_rows

    since = container.clock() - timedelta(days=args.since) if args.since else None
    department = args.department.strip().lower() if args.department else None
    if department is not None and department not in container.config.department_names():
        raise InvalidInput(f"no department {department!r}; departments: {', '.join(container.config.department_names())}")
    async with container.uow() as uow:
        rows = conversation_rows(uow.session, since=since, department=department)
        if args.out:
            with open(args.out, "w", encoding="utf-8", newline="") as out:  # noqa: ASYNC230 - the CLI's loop runs only this
                written = await export.write(rows, out, fmt=args.format)
            echo(f"{written} conversations exported to {args.out}", file=sys.stderr)
        else:
            written = await export.write(rows, sys.stdout, fmt=args.format)
            echo(f"{written} conversations exported", file=sys.stderr)


async def _run_async(args: argparse.Namespace, settings: Settings) -> int:
    container = build(settings)
    try:
        if args.command == "config":  # a check: the store is read, never migrated nor changed
            from bot import configsync

            checked = await configsync.check_against_store(container.uow, container.config)
            config = container.config
            counts = f"{len(config.department_names())} departments, {len(config.rules)} rules, {len(config.feeds)} feeds"
            echo(f"{config.path}: ok ({counts}); {checked}")
            return 0
        await container.prepare()
        if args.command == "demo":
            await _demo(container, args)
        elif args.command == "ingest":
            await _ingest(container, args)
        elif args.command == "sources":
            await _sources(container, args)
        elif args.command == "export":
            await _export(container, args)
        elif args.command == "deliver":
            echo(f"{await container.worker().run_until_idle()} deliveries handled")
        elif args.command == "db" and args.action == "copy":
            from bot import maintenance

            return await maintenance.copy(container.engine, args.to)
        elif args.command == "db":
            echo("database is at the newest schema")
        else:
            _print_result(await container.bus.handle(_command(args)), command=args.command, args=args)
        return 0
    finally:
        await container.close()


def _serve(settings: Settings) -> int:
    from bot import server
    from bot.app import create_app

    container = build(settings)
    app = create_app(container)
    server.run(
        app,
        settings.host,
        settings.port,
        max_connections=server.connection_limit(settings.max_connections, db_pool_size=settings.db_pool_size),
        ready=lambda: echo(f"unsilo listening on http://{settings.host}:{settings.port} (health: /healthz)", flush=True),
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `unsilo` console script."""
    try:
        try:
            return _main(argv)
        finally:
            sys.stdout.flush()  # a closed pipe shows here, not at exit (also after argparse's help and exit)
    except BrokenPipeError:
        return _stdout_gone()


def _main(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if not argv:  # no command: the help, as a usage error
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.command == "help":  # `unsilo help [COMMAND…]` is `unsilo [COMMAND…] --help`
        if args.topic:
            parser.parse_args([*args.topic, "--help"])  # prints the command's help and exits 0 (or 2 if unknown)
        parser.print_help()
        return 0
    try:
        settings = settings_from_env(
            database_url=args.database_url,
            config_path=args.config,
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
        )
    except ValueError as exc:  # a variable that is not a number
        echo(f"cannot read the settings: {exc}", file=sys.stderr)
        return 3
    if args.command == "db":
        from bot import maintenance

        if problem := maintenance.usage_problem(args.action, file=args.file, to=args.to):
            parser.error(problem)
    logs.configure(
        logging.INFO if args.verbose or args.command == "run" else logging.WARNING,
        level=settings.log_level,
        fmt=settings.log_format,
    )
    try:
        if args.command == "config":
            checked = load_config(find_config(settings.config_path) or "unsilo.toml")
            for warning in checked.warnings:
                echo(f"warning: {warning.format(checked.path)}", file=sys.stderr)
        if args.command == "run":
            return _serve(settings)
        if args.command == "manifest":
            return _manifest(args, settings)
        if args.command == "db" and args.action == "backup":  # before any connection: nothing is written to the store
            from bot import maintenance

            return asyncio.run(maintenance.backup(settings.database_url, args.file, force=args.force))
        return asyncio.run(_run_async(args, settings))
    except ConfigError as exc:
        echo(str(exc), file=sys.stderr)
        echo(f"{len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''} in {exc.path}", file=sys.stderr)
        return 3
    except DomainError as exc:
        echo(output.cli_hint(exc.message), file=sys.stderr)
        return 1
    except Exception as exc:
        from bot import failures
        from bot.ingest import IngestError

        if isinstance(exc, IngestError):
            echo(str(exc), file=sys.stderr)
            return 1
        failure = failures.explain(
            exc, database_url=settings.database_url, host=settings.host, port=settings.port if args.command == "run" else None
        )
        if failure is None:
            raise
        echo(failure.message, file=sys.stderr)
        return failure.code


def _stdout_gone() -> int:
    """The reader of our output left (`unsilo show 7 | head`): stop quietly, as `cat` does.

    Python's recipe (the docs' "Note on SIGPIPE"): point stdout at devnull, so the flush at
    exit does not fail again. 141 is what a shell reports for a command ended by SIGPIPE."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


def _manifest(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    (platform,) = [p for p in bootstrap.PLATFORMS if p.name == args.platform]
    assert platform.manifest is not None  # the parser offers only platforms with one
    try:
        done = platform.manifest(settings.of(platform), out=Path(args.out or f"unsilo-{platform.name}.zip"), app_id=args.app_id)
    except ValueError as exc:
        echo(str(exc), file=sys.stderr)
        return 2
    echo(done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
