"""The `unsilo` command line: the demo, the service, and every action for scripts.

Exit codes: 0 done, 1 refused (the reason is printed on one line), 2 bad usage,
3 the config or the store is unusable.
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import getpass
import logging
import re
import secrets
import sys
import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bot import bootstrap, export, logs, output, terminal, verbs
from bot import commands as c
from bot.bootstrap import Container, build, feed_poller, load_config, sample_path, settings_from_env
from bot.config import ConfigError, find_config
from bot.domain import DomainError, InvalidInput, parse_conversation_id
from bot.ingest import IngestError, parse_feed
from bot.settings import Settings
from bot.views import Card, Listing, Result, printable, when
from storage.export import conversation_rows
from storage.models import Source

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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unsilo", description="Route customer conversations to the people who can act on them.")
    parser.add_argument("--database-url", help="store URL (default: $DATABASE_URL or sqlite+aiosqlite:///./unsilo.db)")
    parser.add_argument("--config", help="config file (default: $UNSILO_CONFIG, ./unsilo.toml, ./unsilo.example.toml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
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

    cmd("demo", "ingest the bundled sample feed, deliver the cards and print every department's queue")
    p = cmd("run", "start the service (health check, Slack/Teams endpoints, delivery loop)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    for verb in verbs.TABLE:  # every verb about one conversation, with its inputs as arguments
        if verb.build is not None:
            p = cmd(verb.name, verb.usage.partition(" — ")[2] or verb.usage)
            p.add_argument("id", type=_conversation_id)
            for wanted in verb.inputs:
                if wanted.kind == "text" and wanted.required:
                    p.add_argument(wanted.name, help=wanted.label)
                else:
                    p.add_argument(f"--{wanted.name}", required=wanted.required, default="", help=wanted.label)
            actor_arg(p)
            if verb.name == "show":
                json_arg(p)
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
    s = sources.add_parser("add-webhook", help="accept signed POSTs at /hooks/NAME; prints the new secret once", parents=[common])
    s.add_argument("name")
    s.add_argument("--tags", default="", help="tags for every item, comma-separated")
    s.add_argument("--reply-url", default="", help="where replies are POSTed when an item carries no reply_url")
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
    p = cmd("db", "database maintenance")
    p.add_argument("action", choices=["upgrade"])
    p = cmd("config", "configuration file")
    p.add_argument("action", choices=["check"])
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
    raise ValueError(args.command)


async def _demo(container: Container) -> None:
    items, _ = parse_feed(sample_path("demo-feed.xml").read_bytes(), source=DEMO_SOURCE)
    report = await container.ingest(items)
    sent = await container.worker().run_until_idle()
    echo(
        f"Ingested {len(report.new_ids)} new conversations from the sample feed "
        f"({report.duplicates} already known); {sent} card deliveries sent to log channels."
    )
    if not container.senders or sent == 0 and report.new_ids:
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


async def _ingest(container: Container, args: argparse.Namespace) -> None:
    from pathlib import Path

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


async def _sources(container: Container, args: argparse.Namespace) -> None:
    action = args.action or "list"
    tags = [t.strip() for t in getattr(args, "tags", "").split(",") if t.strip()]
    reply_url = getattr(args, "reply_url", "")
    from adapters.web import guard  # the CLI is an entry point: it may import adapters

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
    if action in ("add-feed", "add-webhook"):
        if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", args.name):
            raise InvalidInput(f"a source name is lower-case letters, digits, '.', '_' or '-' (at most 64), not {args.name!r}")
        if action == "add-feed" and not args.url.startswith(("https://", "http://")):
            raise InvalidInput(f"a feed URL must be http(s), not {args.url!r}")
        if action == "add-feed" and args.every < 30:
            raise InvalidInput("--every must be at least 30 seconds")
        secret = secrets.token_urlsafe(32) if action == "add-webhook" or reply_url else None
        async with container.uow() as uow:
            if await uow.sources.by_name(args.name) is not None:
                raise InvalidInput(f"a source named {args.name!r} already exists; `unsilo sources` lists them")
            uow.sources.add(
                Source(
                    name=args.name,
                    kind="feed" if action == "add-feed" else "webhook",
                    origin="cli",
                    url=args.url if action == "add-feed" else "",
                    every_seconds=getattr(args, "every", 300),
                    tags=tags,
                    reply_url=reply_url,
                    secret=secret,
                )
            )
            await uow.commit()
        if action == "add-feed":
            echo(f"feed {args.name} added: polled every {args.every}s by `unsilo run`")
        else:
            echo(f"webhook {args.name} added: POST signed items to /hooks/{args.name} (see the README)")
        if secret:
            echo(f"signing secret (shown once, keep it safe): {secret}")
        return
    async with container.uow() as uow:
        listed = await uow.sources.all()
    if getattr(args, "json", False):
        from_config = {feed.name for feed in container.config.feeds}
        echo(output.sources_json({**source.model_dump(), "configured": source.name in from_config} for source in listed))
        return
    if not listed:
        echo("no sources yet: add [[feeds]] to the config, or `unsilo sources add-feed NAME URL`")
    for source in listed:
        where = source.url or (f"/hooks/{source.name}" if source.kind == "webhook" else "")
        configured = any(feed.name == source.name for feed in container.config.feeds)
        echo(f"{source.name} ({source.kind}{', from the config' if configured else ''}) {where}".rstrip())
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


async def _export(container: Container, args: argparse.Namespace) -> None:
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
        await container.prepare()
        if args.command == "demo":
            await _demo(container)
        elif args.command == "ingest":
            await _ingest(container, args)
        elif args.command == "sources":
            await _sources(container, args)
        elif args.command == "export":
            await _export(container, args)
        elif args.command == "deliver":
            echo(f"{await container.worker().run_until_idle()} deliveries handled")
        elif args.command == "db":
            echo("database is at the newest schema")
        elif args.command == "config":
            echo(
                f"{container.config.path}: ok ({len(container.config.department_names())} departments, "
                f"{len(container.config.rules)} rules, {len(container.config.feeds)} feeds)"
            )
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
    echo(f"unsilo listening on http://{settings.host}:{settings.port} (health: /healthz)", flush=True)
    server.run(
        app,
        settings.host,
        settings.port,
        max_connections=server.connection_limit(settings.max_connections, db_pool_size=settings.db_pool_size),
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `unsilo` console script."""
    args = _parser().parse_args(argv)
    settings = settings_from_env(
        database_url=args.database_url,
        config_path=args.config,
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
    )
    logs.configure(logging.INFO if args.verbose or args.command == "run" else logging.WARNING)
    try:
        if args.command == "config":
            checked = load_config(find_config(settings.config_path) or "unsilo.toml")
            for warning in checked.warnings:
                echo(f"warning: {warning.format(checked.path)}", file=sys.stderr)
        if args.command == "run":
            return _serve(settings)
        if args.command == "manifest":
            return _manifest(args, settings)
        return asyncio.run(_run_async(args, settings))
    except ConfigError as exc:
        echo(str(exc), file=sys.stderr)
        echo(f"{len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''} in {exc.path}", file=sys.stderr)
        return 3
    except DomainError as exc:
        echo(output.cli_hint(exc.message), file=sys.stderr)
        return 1
    except IngestError as exc:
        echo(str(exc), file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        return _store_problem(exc, settings)
    except Exception as exc:
        if type(exc).__module__.startswith(("sqlalchemy", "asyncpg", "sqlite3")):
            return _store_problem(exc, settings)
        raise


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


def _store_problem(exc: Any, settings: Settings) -> int:
    echo(f"cannot use the store at {settings.database_url}: {exc}", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
