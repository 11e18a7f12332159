"""Posts that employees spot themselves and send in from chat."""

from __future__ import annotations

import hashlib
import logging

from bot.commands import Report
from bot.domain import InvalidInput
from bot.ingest import make_incoming, store_items
from bot.policy import Context, identify
from bot.routing import Router
from bot.views import Result
from handlers._common import card, load, require_text
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

MAX_TITLE = 120  # a reported post's title is its first line, cut here


def first_line_title(text: str) -> str:
    """A title for a post that has none: its first non-empty line, cut with "…"."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    return line if len(line) <= MAX_TITLE else line[: MAX_TITLE - 1].rstrip() + "…"


async def handle_report(cmd: Report, uow: UnitOfWork, *, ctx: Context) -> Result:
    """Create a conversation of source `<platform>-report`, credited to the reporter."""
    who = await identify(uow, cmd.actor)
    text = require_text(cmd.text, "The reported text")
    link = (cmd.link or "").strip()
    if link and not link.startswith(("http://", "https://")):
        raise InvalidInput(f"{link!r} is not a web link; give the post's https:// address")
    if cmd.department is not None and await uow.departments.by_name(cmd.department) is None:
        names = ", ".join(d.name for d in await uow.departments.all())
        raise InvalidInput(f"no department {cmd.department!r}; departments: {names}")
    source = f"{cmd.actor.platform}-report"
    external_id = cmd.external_id or "sha256:" + hashlib.sha256(f"{link}\n{text}".encode()).hexdigest()[:40]
    item = make_incoming(
        source=source, external_id=external_id, text=text, url=link, author_name=cmd.author, title=first_line_title(text)
    )
    router = Router(await uow.rules.enabled(), default_department=ctx.default_department)
    report = await store_items(
        uow, [item], router=router, actor_id=who.id, actor_name=who.name, department=cmd.department, kind="reported"
    )
    ingested = ((source, len(report.new_ids), report.duplicates),)
    if not report.new_ids:
        existing = await uow.conversations.id_for(source, external_id)
        return Result(f"That post is already #{existing}", ingested=ingested)
    conversation = await load(uow, report.new_ids[0])
    return Result(f"Thanks! That post is now #{conversation.id}", card=await card(uow, conversation), ingested=ingested)
