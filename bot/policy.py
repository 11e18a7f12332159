"""Who may do what: the one place that decides, with a refusal that says why."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from bot.commands import Actor
from bot.config import Config
from bot.domain import Forbidden
from storage.models import Conversation, Department, Identity, Person
from storage.repositories import NAMED_BY_CONFIG
from storage.uow import UnitOfWork

logger = logging.getLogger(__name__)

ANYONE = frozenset({"claim", "note", "show", "queue", "search", "report", "ask"})
OWNER_OR_MANAGER = frozenset({"reply", "resolve", "release", "save-answer", "merge", "split"})
MANAGER = frozenset({"reassign", "dismiss"})
OWNER_MEMBER_OR_MANAGER = frozenset({"reroute"})  # its owner, a member of its departments, their managers


@dataclass(frozen=True)
class Context:
    """What handlers need from the config: outcomes, reply rules, admins."""

    outcomes: tuple[str, ...]
    require_claim_to_reply: bool
    admins: tuple[str, ...]
    default_department: str
    feeds: tuple[str, ...] = ()  # the config's feed names: the config adds and removes them, not a command
    expertise_half_life_days: int = 90  # `who knows`: what someone did counts half after this many days
    reuse_approved_answers: frozenset[str] = frozenset()  # departments where a pre-approved answer skips approval

    @classmethod
    def from_config(cls, config: Config) -> Context:
        """The handler context of a loaded config."""
        return cls(
            outcomes=config.outcomes,
            require_claim_to_reply=config.require_claim_to_reply,
            admins=config.admins,
            default_department=config.default_department,
            feeds=tuple(feed.name for feed in config.feeds),
            expertise_half_life_days=config.expertise_half_life_days,
            reuse_approved_answers=frozenset(d.name for d in config.departments if d.reuse_approved_answers),
        )


@dataclass(frozen=True)
class Who:
    """The person behind an actor, and every name they can be listed under."""

    person: Person
    keys: frozenset[str]

    @property
    def id(self) -> int:
        """The person's id."""
        assert self.person.id is not None
        return self.person.id

    @property
    def name(self) -> str:
        """The person's display name."""
        return self.person.name


async def identify(uow: UnitOfWork, actor: Actor) -> Who:
    """Resolve an actor to a person (created on first sight) and the keys the config may list them by.

    Rights come only from verified identities: `platform:user id` of each of the person's
    accounts, their email when a platform's directory (or the config's `[people]`) vouched
    for it, and — for plain names — CLI logins and `[people]` keys. A display name or a
    username chosen by the user is never a key. `actor.email`, set only by adapters from the
    platform's own directory, links the account to the person with that email.
    """
    known = await uow.people.with_identities(actor.platform, actor.user_id)
    if known is not None and not (actor.name and known[0].name == actor.user_id != actor.name):
        person, identities = known
    else:
        person = await uow.people.resolve(actor.platform, actor.user_id, name=actor.name, email=actor.email)
        identities = await uow.people.identities(person.id)  # type: ignore[arg-type]
    if actor.email and (person.email or "").lower() != actor.email.strip().lower():
        person = await uow.people.adopt_email(person, actor.email)
        identities = await uow.people.identities(person.id)  # type: ignore[arg-type]
    return Who(person=person, keys=keys_of(person, identities))


def keys_of(person: Person, identities: Iterable[Identity]) -> frozenset[str]:
    """Every name the config may list a person by (see `identify`), lowercase."""
    keys = set()
    for identity in identities:
        keys.add(f"{identity.platform}:{identity.user_id}")
        if identity.platform in NAMED_BY_CONFIG:
            keys.add(identity.user_id)
    if person.email:
        keys.add(person.email)
    return frozenset(k.lower() for k in keys if k)


def manages(who: Who, departments: list[Department]) -> bool:
    """True if the person is a manager of any of these departments (a retired department has no managers)."""
    return any(m.lower() in who.keys for d in departments if d.retired_at is None for m in d.managers)


def require(action: str, *, who: Who, conversation: Conversation, departments: list[Department], owner: str | None) -> None:
    """Refuse with `Forbidden` unless `who` may do `action` to this conversation."""
    if action in ANYONE:
        return
    if action in OWNER_MEMBER_OR_MANAGER:
        require_member(action, who=who, conversation=conversation, departments=departments)
        return
    is_owner = conversation.owner_id is not None and conversation.owner_id == who.id
    if manages(who, departments):
        return
    names = ", ".join(d.name for d in departments) or "its department"
    if action in OWNER_OR_MANAGER:
        if is_owner:
            return
        if conversation.owner_id is None:
            if action == "reply":
                return  # an unclaimed reply claims it, when the config allows replying unclaimed
            raise Forbidden(f"#{conversation.id} has no owner; claim it first, or ask a manager of {names}")
        verb = {"reply": "reply to", "save-answer": "save an answer from"}.get(action, action)
        raise Forbidden(f"only #{conversation.id}'s owner ({owner}) or a manager of {names} can {verb} it")
    if action in MANAGER:
        raise Forbidden(f"only a manager of {names} can {action} #{conversation.id}")
    raise Forbidden(f"{action} is not allowed")


def require_member(action: str, *, who: Who, conversation: Conversation, departments: list[Department]) -> None:
    """Refuse with `Forbidden` unless `who` is the conversation's owner, a member of one of its current
    departments (the config's `[people.x] department`) or a manager of one of them: e.g. to say "not for us"
    and reroute it (anyone else would be moving work out of a queue that is not theirs)."""
    names = [d.name for d in departments]
    if conversation.owner_id is not None and conversation.owner_id == who.id:
        return
    if who.person.department and who.person.department in names:
        return
    if manages(who, departments):
        return
    listed = ", ".join(names) or "its department"
    raise Forbidden(f"only #{conversation.id}'s owner, a member or a manager of {listed} can {action} it")


def may_approve(who: Who, *, departments: list[Department], reply_author_id: int | None) -> bool:
    """Approvers of a held reply: a manager of one of its departments who did not write it."""
    return reply_author_id != who.id and manages(who, departments)


def require_approver(who: Who, *, conversation: Conversation, departments: list[Department], reply_author_id: int | None) -> None:
    """Refuse with `Forbidden` unless `who` may approve or reject the reply held on `conversation`."""
    if reply_author_id == who.id:
        raise Forbidden(f"you wrote the reply to #{conversation.id}; another approver must decide on it")
    if not may_approve(who, departments=departments, reply_author_id=reply_author_id):
        names = ", ".join(d.name for d in departments) or "its department"
        raise Forbidden(f"only an approver (a manager of {names}) can approve or reject the reply to #{conversation.id}")


def require_poster(who: Who, *, conversation: Conversation, departments: list[Department], reply_author_id: int | None) -> None:
    """Refuse with `Forbidden` unless `who` may mark a recorded reply as posted by hand."""
    if who.id not in (reply_author_id, conversation.owner_id) and not manages(who, departments):
        raise Forbidden(f"only the reply's author, #{conversation.id}'s owner or a manager can mark it as posted")


def is_admin(who: Who, admins: tuple[str, ...]) -> bool:
    """Admins from the config; while none are listed (a fresh install) everyone is, with a warning."""
    if not admins:
        logger.warning("no admins configured: letting %s act as admin (set [unsilo] admins)", who.name)
        return True
    return any(a.lower() in who.keys for a in admins)


def require_admin(who: Who, admins: tuple[str, ...], *, doing: str) -> None:
    """Refuse with `Forbidden` unless `who` is an admin (`is_admin`); `doing` says what was refused."""
    if not is_admin(who, admins):
        raise Forbidden(f"only admins can {doing}; ask one to add you to [unsilo] admins")


def require_channel_manager(who: Who, admins: tuple[str, ...], departments: list[Department], *, doing: str) -> None:
    """Refuse with `Forbidden` unless `who` is an admin or manages a department posting in the channel."""
    if manages(who, departments) or is_admin(who, admins):
        return
    names = ", ".join(d.name for d in departments) or "the departments posting here"
    raise Forbidden(f"only managers of {names} or admins can {doing}")
