"""What the config means for rows it does not describe alone: feeds beside the store's webhooks,
and departments the config no longer lists (retired) or lists again (back in service).

Called by `bootstrap.sync_config` inside its unit of work, so each step commits with the rest
of the config's sync or not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.config import Config, ConfigError, Problem
from bot.domain import ACTIVE
from bot.outbox import enqueue_card_syncs, enqueue_copy_updates
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)


async def feed_clashes(uow: UnitOfWork, config: Config) -> list[Problem]:
    """A problem for every config feed named like a source of another kind in the store (a webhook
    added by `unsilo sources add-webhook`): the feed would take the webhook's row over."""
    kinds = await uow.sources.kinds([feed.name for feed in config.feeds])
    return [
        Problem(
            f"feeds[{index + 1}].name",
            f"{feed.name!r} is already a {kinds[feed.name]} source in the store (`unsilo sources` lists it): "
            f"rename the feed, or `unsilo sources remove {feed.name}` first",
            feed.line,
        )
        for index, feed in enumerate(config.feeds)
        if kinds.get(feed.name, "feed") != "feed"
    ]


async def check_against_store(uow_factory: Callable[[], UnitOfWork], config: Config) -> str:
    """What `unsilo config check` checks in the store, which it neither migrates nor changes: raises
    `ConfigError` for a feed named like a webhook; returns a line saying whether the store was read."""
    try:
        async with uow_factory() as uow:
            problems = await feed_clashes(uow, config)
    except Exception as exc:  # noqa: BLE001 - no store (yet), or not migrated: the file alone was checked
        logger.info("config check: the store could not be read: %s", exc)
        return f"the store could not be read ({type(exc).__name__}): feed names not checked against its webhooks"
    if problems:
        raise ConfigError(config.path, problems)
    return "feed names checked against the store's webhooks too"


async def retire_departments(uow: UnitOfWork, config: Config) -> list[str]:
    """Retire every department in service the config no longer lists, and bring back retired ones it
    lists again; returns the names retired now.

    A retired department's managers lose their rights for it, and its active conversations move to
    the default department: their cards go to its channels, and the copies already posted in the
    retired department's channels are updated to say where they went. Each retirement is one
    compare-and-set on the department's row, so replicas starting together retire it once.
    """
    wanted = set(config.department_names())
    for department in await uow.departments.all(retired=True):
        if department.retired_at is not None and department.name in wanted:
            if await uow.departments.set_retired(department, at=None):
                logger.warning("department %s is in the config again: back in service", department.name)
                await _event(uow, "department_restored", {"department": department.name})
    default = await uow.departments.by_name(config.default_department)
    assert default is not None and default.id is not None, "sync_config upserts the config's departments first"
    retired = []
    for department in await uow.departments.all():
        if department.name in wanted or department.id is None:
            continue
        if not await uow.departments.set_retired(department, at=uow.now()):
            continue  # another replica retired it first
        versions = await uow.departments.move_active(
            department.id, to=default.id, statuses=[s.value for s in ACTIVE], at=uow.now()
        )
        await enqueue_card_syncs(uow, versions)  # the default department's channels
        updated = await _update_posted_copies(uow, department.id, versions)
        logger.warning(
            "department %s is no longer in the config: retired (its managers' rights end); %d active "
            "conversation(s) moved to %s, %d posted card(s) there updated",
            department.name,
            len(versions),
            default.name,
            updated,
        )
        await _event(uow, "department_retired", {"department": department.name, "moved_to": default.name, "moved": len(versions)})
        retired.append(department.name)
    return retired


async def _update_posted_copies(uow: UnitOfWork, department_id: int, versions: dict[int, int]) -> int:
    """A card delivery for every copy posted through the retired department's channels, at the moved
    conversation's new version: the copy is updated in place (it says where the conversation went)."""
    destinations = await uow.departments.destinations([department_id])
    postings = await uow.postings.at_destinations(list(versions), [d.id for d in destinations if d.id is not None])
    return await enqueue_copy_updates(uow, postings, versions)


async def _event(uow: UnitOfWork, kind: str, data: dict[str, object]) -> None:
    await uow.events.add_many(
        [{"conversation_id": None, "kind": kind, "actor_id": None, "actor_name": "config", "at": uow.now(), "data": data}]
    )


async def sync_budgets(uow: UnitOfWork, config: Config) -> int:
    """Give every destination the noise budget the config declares for its channel (`[channels."…"]`),
    realtime with no quiet hours where it declares none; a setting made from chat still wins
    (`chat_mode`/`chat_quiet`, until `mode reset`). Returns how many destinations changed."""
    declared = {(ch.platform, ch.channel_id): ch for ch in config.channels}
    changed = 0
    for destination in await uow.departments.all_destinations():
        entry = declared.get((destination.platform, destination.channel_id))
        mode, quiet = (entry.mode, entry.quiet) if entry is not None else ("realtime", "")
        if (destination.mode, destination.quiet) != (mode, quiet):
            destination.mode, destination.quiet = mode, quiet
            changed += 1
    unused = set(declared) - {(d.platform, d.channel_id) for d in await uow.departments.all_destinations()}
    for platform, channel_id in sorted(unused):
        logger.warning('[channels."%s:%s"] names a channel no department posts in: it has no effect', platform, channel_id)
    return changed
