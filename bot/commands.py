"""Platform-neutral commands: every user intent, from any platform, becomes one of these."""

from __future__ import annotations

from dataclasses import dataclass

LIST_LIMIT = 50  # conversations in one list (queue, search, approvals) unless asked otherwise: the rest are counted
MAX_LIST_LIMIT = 1000


@dataclass(frozen=True)
class Actor:
    """Who asked: a platform and that platform's user id (plus what it told us about them).

    `name` is for showing only. `email`, when set, must come from the platform's own
    directory (Slack `users.info`, the Teams member API): it links accounts into one person.
    """

    platform: str
    user_id: str
    name: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class Claim:
    """Take ownership of an open conversation."""

    conversation_id: int
    actor: Actor


@dataclass(frozen=True)
class Release:
    """Give a claimed conversation back to the queue."""

    conversation_id: int
    actor: Actor


@dataclass(frozen=True)
class Reassign:
    """Give a conversation to someone else (managers)."""

    conversation_id: int
    actor: Actor
    to: Actor


@dataclass(frozen=True)
class Reroute:
    """Move a conversation to another department ("not for us"): its cards there, the old ones say where it went."""

    conversation_id: int
    actor: Actor
    department: str


@dataclass(frozen=True)
class SetNotify:
    """Whether the actor is told when a conversation they sent in is resolved (`notify on|off`)."""

    actor: Actor
    on: bool


@dataclass(frozen=True)
class AddNote:
    """An internal note; never reaches the customer."""

    conversation_id: int
    actor: Actor
    text: str
    origin: str = ""


@dataclass(frozen=True)
class Ask:
    """Ask the people suggested on a conversation's card for help (`person`: one of them by name; "": all)."""

    conversation_id: int
    actor: Actor
    person: str = ""


@dataclass(frozen=True)
class ReplyToCustomer:
    """An answer to the customer, credited to the actor. `answer_id`: the saved answer picked in the reply form
    (its text is the reply's when `text` is blank; a typed text wins)."""

    conversation_id: int
    actor: Actor
    text: str
    answer_id: int | None = None


@dataclass(frozen=True)
class Resolve:
    """Close a conversation with an outcome."""

    conversation_id: int
    actor: Actor
    outcome: str
    text: str = ""


@dataclass(frozen=True)
class Merge:
    """Make a conversation another voice of an open one (`bot.voices`): it closes, its voices go along."""

    conversation_id: int
    actor: Actor
    into: int


@dataclass(frozen=True)
class Split:
    """Take a voice back out into its own conversation: the `voice`-th of this conversation (1: the first
    merged into it; 0: its only one), or, for a conversation merged into another, that conversation again."""

    conversation_id: int
    actor: Actor
    voice: int = 0


@dataclass(frozen=True)
class Dismiss:
    """Close a conversation that needs no action (managers)."""

    conversation_id: int
    actor: Actor
    reason: str


@dataclass(frozen=True)
class Show:
    """A conversation with its notes, replies and full history."""

    conversation_id: int
    actor: Actor


@dataclass(frozen=True)
class ShowQueue:
    """What is waiting: per department, or the actor's own."""

    actor: Actor
    department: str | None = None
    mine: bool = False
    limit: int = LIST_LIMIT


@dataclass(frozen=True)
class Search:
    """Past conversations, notes and answers matching every word."""

    actor: Actor
    words: tuple[str, ...]
    limit: int = LIST_LIMIT


@dataclass(frozen=True)
class ShowSpike:
    """Every conversation of a spike alert (its "See all" button, or `spike 7`), newest first."""

    actor: Actor
    alert_id: int
    limit: int = LIST_LIMIT


@dataclass(frozen=True)
class Report:
    """A post an employee spotted and sends in from chat."""

    actor: Actor
    text: str
    link: str = ""
    department: str | None = None
    author: str = ""
    external_id: str = ""


@dataclass(frozen=True)
class ShowRecent:
    """Recently resolved or dismissed conversations, with their outcomes."""

    actor: Actor
    limit: int = 10


@dataclass(frozen=True)
class ThreadNote:
    """A message in a card's thread: stored as a note if the thread belongs to a card."""

    actor: Actor
    channel_id: str
    message_id: str
    text: str


@dataclass(frozen=True)
class LocateCard:
    """Which conversation a posted message shows (someone clicked it, or replied in its thread), and
    whether it is that channel's live copy of the card.

    With `conversation_id` (a card's button says which conversation it shows), a copy nobody
    recorded (a send whose result was lost, then sent again) is recorded: as the live copy
    when the channel has none yet, else as an older duplicate that is made to point at the live one.
    """

    actor: Actor
    channel_id: str
    message_id: str
    conversation_id: int | None = None


@dataclass(frozen=True)
class LinkChannel:
    """Make a chat channel one of a department's destinations (admins)."""

    actor: Actor
    department: str
    channel_id: str
    conversation_ref: dict[str, object] | None = None


@dataclass(frozen=True)
class ChannelBudget:
    """Show or set a channel's noise budget (`bot.noise`): its delivery mode and quiet hours (managers, admins).

    `mode`: the stored form ("realtime", "batched 900", "digest-only"); `quiet`: "22:00-07:00 Europe/Berlin",
    "" for none; None leaves either as it is. `reset`: back to the config's. All None and no reset: show it."""

    actor: Actor
    platform: str
    channel_id: str
    mode: str | None = None
    quiet: str | None = None
    reset: bool = False


@dataclass(frozen=True)
class UnlinkChannel:
    """Stop posting cards in a channel (admins)."""

    actor: Actor
    channel_id: str
    department: str | None = None


@dataclass(frozen=True)
class ApproveReply:
    """Let a held reply to a sensitive conversation go out (the department's approvers)."""

    conversation_id: int
    actor: Actor


@dataclass(frozen=True)
class RejectReply:
    """Stop a held reply for good, with the reason its author will see."""

    conversation_id: int
    actor: Actor
    reason: str


@dataclass(frozen=True)
class MarkPosted:
    """Say that a reply recorded for a read-only source was posted there by hand."""

    conversation_id: int
    actor: Actor


@dataclass(frozen=True)
class ShowApprovals:
    """Replies waiting for the caller's approval."""

    actor: Actor
    limit: int = LIST_LIMIT


@dataclass(frozen=True)
class ShowDigest:
    """A department's digest for a period, to the caller only (all departments if none named)."""

    actor: Actor
    department: str | None = None
    days: int = 7


@dataclass(frozen=True)
class ShowStats:
    """The caller's own figures: claimed, replied, resolved, median response time."""

    actor: Actor


@dataclass(frozen=True)
class AddSource:
    """Start taking conversations from a feed (polled) or a webhook (signed POSTs) (admins)."""

    actor: Actor
    name: str
    kind: str  # "feed" or "webhook"
    url: str = ""
    every_seconds: int = 300
    tags: tuple[str, ...] = ()
    reply_url: str = ""
    retain_days: int | None = None  # None: the global `[unsilo] retain_days`


@dataclass(frozen=True)
class SetRetention:
    """Change how long a source's closed conversations keep their text: days, or None for the global
    default (admins; a config feed's is set in the config)."""

    actor: Actor
    name: str
    retain_days: int | None


@dataclass(frozen=True)
class RemoveSource:
    """Stop taking conversations from a source; the conversations it brought stay (admins)."""

    actor: Actor
    name: str


@dataclass(frozen=True)
class RotateSecret:
    """Give a source a new signing secret; the old one keeps working for `grace_seconds` (admins)."""

    actor: Actor
    name: str
    grace_seconds: int = 24 * 3600


@dataclass(frozen=True)
class Erase:
    """Remove a customer's personal data (admins): whose, by exactly one of author name, handle, profile
    URL or conversation; why (recorded). `dry_run` lists what would go and changes nothing;
    `confirm` is what the asker types to go ahead (chat answers a dry run with it)."""

    actor: Actor
    reason: str
    author: str = ""
    handle: str = ""
    url: str = ""
    conversation_id: int | None = None
    dry_run: bool = False
    confirm: str = ""


@dataclass(frozen=True)
class DeclareExpertise:
    """Topics the actor says they know about (`expert add gdpr, refunds`), or no longer does."""

    actor: Actor
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShowExpertise:
    """The topics the actor has declared."""

    actor: Actor


@dataclass(frozen=True)
class SaveAnswer:
    """Save the conversation's latest sent or posted reply in the answer library, under a title."""

    conversation_id: int
    actor: Actor
    title: str


@dataclass(frozen=True)
class SearchAnswers:
    """Saved answers matching every word (the search's query syntax), most relevant first; with
    `conversation_id` (and no words), the ones that fit that conversation best."""

    actor: Actor
    words: tuple[str, ...]
    limit: int = LIST_LIMIT
    conversation_id: int | None = None
    answer_id: int | None = None  # with `conversation_id`: only this answer (the one picked in a reply form)


@dataclass(frozen=True)
class WhoKnows:
    """Who to turn to for these words: people ranked by what they did on conversations like these
    (fading with age) and by the topics they declared, with the evidence."""

    actor: Actor
    words: tuple[str, ...]
    limit: int = 5


Command = (
    Claim
    | Release
    | Reassign
    | Reroute
    | SetNotify
    | AddNote
    | ReplyToCustomer
    | Resolve
    | Dismiss
    | Merge
    | Split
    | Show
    | ShowQueue
    | Search
    | ShowSpike
    | Report
    | ShowRecent
    | ThreadNote
    | LocateCard
    | LinkChannel
    | UnlinkChannel
    | ChannelBudget
    | ApproveReply
    | RejectReply
    | MarkPosted
    | ShowApprovals
    | ShowDigest
    | ShowStats
    | AddSource
    | RemoveSource
    | RotateSecret
    | SetRetention
    | Erase
    | DeclareExpertise
    | ShowExpertise
    | WhoKnows
    | Ask
    | SaveAnswer
    | SearchAnswers
)
