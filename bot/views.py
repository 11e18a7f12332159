"""Platform-neutral views that handlers answer with and adapters render."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from bot import verbs
from bot.domain import Status
from bot.verbs import Input, Verb
from bot.voices import described
from storage import EARLIER_COUNTED

if TYPE_CHECKING:
    from bot.commands import Command
    from storage.models import Conversation, Event, Note, Reply, Voice

_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")  # Unicode Cc but \t \n, and Cs


# Bidi embeddings, overrides and isolates (LRE RLE PDF LRO RLO, LRI RLI FSI PDI) and the Arabic
# letter mark: in a customer's text they reorder the card's own text around it (a date reads
# backwards). Directional marks (LRM, RLM) only affect their neighbours and are kept.
_BIDI_CONTROLS = re.compile(r"[\u202a-\u202e\u2066-\u2069\u061c]")
# Characters that show nothing: a name made only of these looks blank.
_INVISIBLE = re.compile(r"[\u200b-\u200f\u2060-\u2064\ufeff\u180e\u3164\u115f\u1160\uffa0\u00ad\u034f]")
NO_NAME = "(no name)"
FSI, PDI = "\u2068", "\u2069"  # first-strong isolate ... pop directional isolate


def storable(text: str | None) -> str:
    """Text as the store keeps it: without NUL and the other control characters (Unicode Cc but newline
    and tab), which PostgreSQL refuses or which show as nothing, and without lone surrogates (Cs), which
    no encoding can write. What people type goes through this before it is stored."""
    return _UNPRINTABLE.sub("", text or "")


def printable(text: str | None) -> str:
    """Text without control characters (Unicode Cc) other than newline and tab, lone
    surrogates (Cs) that break JSON, or bidi controls that reorder the text around it:
    what every renderer does first to untrusted text."""
    return _BIDI_CONTROLS.sub("", _UNPRINTABLE.sub("", text or ""))


def display_name(name: str | None) -> str:
    """A person's name as shown on a card: printable, on one line, without invisible
    characters; "(no name)" when nothing visible is left."""
    shown = " ".join(_INVISIBLE.sub("", printable(name)).split())
    return shown or NO_NAME


def has_visible(text: str | None) -> bool:
    """Whether anything would show: not only spaces, controls and invisible characters."""
    return display_name(text) != NO_NAME


def isolate(text: str) -> str:
    """Customer text wrapped in a bidi isolate (FSI ... PDI), so right-to-left text in it
    never reorders the card's own words and figures next to it (UAX #9, X5c/X6a)."""
    return f"{FSI}{text}{PDI}" if text else text


ELLIPSIS = "…"


def cut(text: str, limit: int) -> str:
    """`text` within `limit` characters, ending in "…" when cut; an isolate (`isolate`) stays closed.

    Plain text counted in code points; a platform that counts in other units (Slack: UTF-16)
    or must not cut inside its own markup keeps its own cut for its limits."""
    if len(text) <= limit:
        return text
    if text.startswith(FSI) and text.endswith(PDI) and limit > 3:
        return FSI + text[1 : limit - 2] + ELLIPSIS + PDI
    return text[: limit - 1] + ELLIPSIS


def first_line(text: str | None) -> str:
    """The first line of `text` that has something visible on it, stripped."""
    return next((ln.strip() for ln in (text or "").splitlines() if has_visible(ln)), "")


def when(at: datetime | None) -> str:
    """A short timestamp; aware times are shown in UTC ("2026-11-16 09:00 UTC"), naive ones as they are."""
    if at is None:
        return ""
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if at.tzinfo else at.strftime("%Y-%m-%d %H:%M")


@dataclass(frozen=True)
class Button:
    """A button that carries one encoded command (`bot.codec`) or opens a URL.

    `inputs` are what its verb asks for before it is done (`bot.verbs`: a platform shows them in a
    form or in the card), `priority` how important it is when there is room for only a few
    (lower first), `title` and `submit` name the form that asks for the inputs; `picks` the saved answers
    the form offers to start from, as (id, title) (its verb's `picks` field carries the chosen id).
    """

    label: str
    verb: str
    conversation_id: int
    style: str = "default"
    url: str | None = None
    inputs: tuple[Input, ...] = ()
    priority: int = 50
    title: str = ""
    submit: str = ""
    picks: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class AnswerChoice:
    """A saved answer a reply form offers: its id, title and text (plain, untrusted text)."""

    id: int
    title: str
    text: str = ""


@dataclass(frozen=True)
class Confirm:
    """What a platform asks before an action that cannot be undone is done: a title, the question (plain
    text), and the two answers. Slack shows it as a dialog, Teams in the card, under the button."""

    title: str
    text: str
    yes: str
    no: str = "Cancel"


@dataclass(frozen=True)
class Action:
    """A button on an answer rather than on a card (e.g. "Erase 2 conversations" under an erasure's dry run).

    It carries its whole command, small: its verb and `fields`, the values that verb's `act` builds the
    command from (`bot.codec.action_data`). The handler checks those again when it is clicked, as if typed.
    """

    label: str
    verb: str
    fields: tuple[tuple[str, str], ...] = ()
    style: Literal["default", "primary", "danger"] = "default"
    confirm: Confirm | None = None


def answer_action(
    command: Command,
    fields: dict[str, str],
    *,
    label: str,
    style: Literal["default", "primary", "danger"] = "default",
    confirm: Confirm | None = None,
) -> Action:
    """The answer button that carries out `command` (the verb table says which verb's `act` builds it),
    from the non-blank `fields`."""
    kept = tuple((k, v) for k, v in fields.items() if v)
    return Action(label, verbs.acting(command).name, kept, style, confirm)


@dataclass(frozen=True)
class Card:
    """Everything a person needs to see to act on a conversation.

    What it shows beyond its own fields is decided here, once, from them: `facts`, `summary`
    (its one line in lists, fallbacks and notifications: the title, else the first line of the
    text), `list_note` (what a list shows under that line: a reply waiting for approval), `tone`
    (its priority: urgent and high ask for attention) and `reply_tone` (where the
    latest reply stands). Renderers map these; they do not decide them.
    """

    id: int
    status: str
    source: str
    author: str
    title: str
    text: str
    url: str
    priority: str
    tags: tuple[str, ...]
    departments: tuple[str, ...]
    routing_reason: str
    owner: str | None
    outcome: str | None
    created_at: datetime | None
    buttons: tuple[Button, ...]
    reply_status: str | None = None
    reply_note: str = ""  # plain text: where the latest reply stands, for everyone looking at the card
    # A search's snippet: (text, matched) segments of plain, untrusted text; renderers mark the matched ones.
    snippet: tuple[tuple[str, bool], ...] = ()
    seen_before: tuple[SeenBefore, ...] = ()  # resolved conversations most like this one, best first
    suggested: tuple[Suggested, ...] = ()  # people outside its departments to ask (`bot.suggest`), best first
    earlier: tuple[tuple[int, str], ...] = ()  # the author's newest earlier conversations: (id, status)
    earlier_count: int | None = None  # how many earlier conversations the author has in all (None: not read, in lists)
    moved: bool = False  # a copy in a channel that no longer gets its cards (rerouted): it says where it went
    merged_into: int | None = None  # merged by hand into another conversation (`merge`): it says which
    # Other items merged into it (`bot.voices`): (source, author, link) of each, oldest first; `voice_count`
    # counts them all (the card lists the first `VOICES_LISTED`); 0 when none or not read.
    voices: tuple[tuple[str, str, str], ...] = ()
    voice_count: int = 0
    facts: tuple[Fact, ...] = field(init=False, repr=False, compare=False)
    summary: str = field(init=False, repr=False, compare=False)
    tone: Tone = field(init=False, repr=False, compare=False)
    reply_tone: Tone = field(init=False, repr=False, compare=False)
    list_note: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        decided = {
            # Under its line in a list (a queue, the approvals): the reply waiting for approval, its text and author.
            "list_note": self.reply_note if self.reply_status == "pending_approval" else "",
            "facts": _facts(self),
            "summary": (self.title or "").strip() or first_line(self.text) or NO_TEXT,
            "tone": PRIORITY_TONES.get(self.priority, "default"),
            "reply_tone": REPLY_TONES.get(self.reply_status or "", "default") if self.reply_note else "default",
        }
        for name, value in decided.items():
            object.__setattr__(self, name, value)  # frozen: set once, here


#: How much a card, or a line of it, asks to be looked at; each platform maps it to its own
#: colour or mark (Teams: a colour; Slack: an emoji; the terminal: a prefix).
Tone = Literal["default", "good", "warning", "attention"]
PRIORITY_TONES: dict[str, Tone] = {"urgent": "attention", "high": "attention"}
REPLY_TONES: dict[str, Tone] = {
    "failed": "attention",
    "rejected": "attention",
    "pending_approval": "warning",
    "sent": "good",
    "posted": "good",
}
MAX_LISTED_CARDS = 20  # cards in one list (a queue, a search): the rest are counted, "…and N more"
NO_TEXT = "(no text)"


@dataclass(frozen=True)
class Fact:
    """One fact a card shows under its text, in the order the core gives.

    `label` is our own words and ends where the value starts ("Departments:", "Claimed by"),
    so every renderer writes `label value`, or the label alone when `value` is "". `value` is
    plain, untrusted text (a tag, a routing reason); `kind` "person" when it is a person's
    name (already `display_name`d: "(no name)" when blank).
    """

    label: str
    value: str = ""
    kind: Literal["text", "person"] = "text"


@dataclass(frozen=True)
class SeenBefore:
    """A resolved conversation much like this one: its id, how it ended, who handled it, the first line of
    the reply sent (plain, untrusted text; "" when none)."""

    id: int
    outcome: str = ""
    by: str = ""
    reply: str = ""

    def described(self) -> str:
        """`#12 (answered by Dana: “We refunded…”)`."""
        detail = (self.outcome or "resolved") + (f" by {display_name(self.by)}" if self.by else "")
        if self.reply:
            detail += f": “{cut(self.reply, 60)}”"
        return f"#{self.id} ({detail})"


SEEN_BEFORE = "Seen before:"


@dataclass(frozen=True)
class Suggested:
    """Someone outside a conversation's departments to ask about it, and why: how many conversations like
    it they resolved and replied to (`bot.suggest`)."""

    person_id: int
    name: str
    departments: tuple[str, ...] = ()
    resolved: int = 0
    replied: int = 0
    asked: bool = False  # someone asked them already (Ask): the card says "Asked Dana (legal): …"

    def described(self) -> str:
        """`Dana (legal): resolved 6 similar` (plain text)."""
        where = f" ({', '.join(self.departments)})" if self.departments else ""
        did = [f"resolved {self.resolved}"] if self.resolved else []
        did += [f"replied to {self.replied}"] if self.replied else []
        return f"{display_name(self.name)}{where}: {' and '.join(did)} similar"


ASK = "Ask"
ASKED = "Asked"


def suggested_of(conversation: Conversation) -> tuple[Suggested, ...]:
    """The stored suggestions of a conversation (`bot.suggest`), as the card shows them."""
    found = []
    for item in conversation.suggested or []:
        if isinstance(item, dict) and isinstance(item.get("person_id"), int):
            found.append(
                Suggested(
                    item["person_id"],
                    str(item.get("name") or ""),
                    tuple(str(d) for d in item.get("departments") or () if d),
                    int(item.get("resolved") or 0),
                    int(item.get("replied") or 0),
                    bool(item.get("asked")),
                )
            )
    return tuple(found)


def seen_before_of(conversation: Conversation) -> tuple[SeenBefore, ...]:
    """The stored "seen before" list of a conversation (`storage.search`), as the card shows it."""
    found = []
    for item in conversation.seen_before or []:
        if isinstance(item, dict) and isinstance(item.get("id"), int):
            found.append(
                SeenBefore(item["id"], str(item.get("outcome") or ""), str(item.get("by") or ""), str(item.get("reply") or ""))
            )
    return tuple(found)


def _facts(card: Card) -> tuple[Fact, ...]:
    """What a card states about a conversation, and in which order: its departments, tags, why it
    was routed so, who owns it, and how it ended (only once it is resolved). Blank values are left out."""
    departments = ", ".join(d for d in card.departments if d.strip())
    facts = [
        Fact(MOVED, departments) if card.moved else Fact("", ""),
        Fact(MERGED_INTO, f"#{card.merged_into}") if card.merged_into is not None else Fact("", ""),
        Fact("Departments:", departments),
        Fact("Tags:", ", ".join(t for t in card.tags if t.strip())),
        Fact("Why:", card.routing_reason),
    ]
    facts = [f for f in facts if printable(f.value).strip()]
    if card.earlier_count:
        facts.append(_earlier_fact(card.earlier_count, card.earlier))
    if card.voice_count:
        facts.extend(voice_facts(card))
    facts.append(Fact("Claimed by", display_name(card.owner), "person") if card.owner is not None else Fact("Unclaimed"))
    if card.status == Status.RESOLVED and printable(card.outcome).strip():
        facts.append(Fact("Outcome:", card.outcome or ""))
    if card.seen_before:
        facts.append(Fact(SEEN_BEFORE, ", ".join(s.described() for s in card.seen_before)))
    if card.status not in (Status.RESOLVED, Status.DISMISSED):  # who to ask, while there is something to ask
        facts.extend(Fact(ASKED if s.asked else ASK, s.described()) for s in card.suggested)
    return tuple(facts)


MOVED = "Not for this channel any more: moved to"
MERGED_INTO = "Merged into"  # "Merged into #9"
VOICES_LISTED = 5  # voices named on a card; the rest are counted


def voices_line(card: Card) -> str:
    """`3 voices · twitter, forum, reviews`: the conversation's own item and those merged into it, each
    source once (every source is named even when only the first voices are listed)."""
    return described(1 + card.voice_count, [card.source, *(source for source, _, _ in card.voices)])


def voice_facts(card: Card) -> list[Fact]:
    """What a card says of its voices: the count and sources, then each voice's author and link."""
    facts = [Fact(voices_line(card))]
    for n, (source, author, url) in enumerate(card.voices[:VOICES_LISTED], start=1):  # `split #42 2` takes the 2nd out
        facts.append(Fact(f"Voice {n}:", f"{display_name(author)} on {source}" + (f" {url}" if url else "")))
    rest = card.voice_count - min(len(card.voices), VOICES_LISTED)
    if rest > 0:
        facts.append(Fact(f"and {rest} more voice{'s' if rest != 1 else ''}"))
    return facts


def _earlier_fact(count: int, earlier: Sequence[tuple[int, str]]) -> Fact:
    """What a card says of the author's earlier conversations: "2 earlier conversations from this
    author: #7 resolved, #3 open" (the rest counted; "100+" where the store stops counting)."""
    plus = "+" if count >= EARLIER_COUNTED else ""
    listed = ", ".join(f"#{cid} {status}" for cid, status in earlier)
    rest = count - len(earlier)
    more = f" and {rest}{plus} more" if rest > 0 else ""
    return Fact(f"{count}{plus} earlier conversation{'s' if count != 1 else ''} from this author:", listed + more)


@dataclass(frozen=True)
class Listing:
    """A list of cards as every platform shows it: at most `MAX_LISTED_CARDS` distinct cards,
    and how many more there are (renderers write "…and N more")."""

    cards: tuple[Card, ...] = ()
    more: int = 0

    @classmethod
    def of(cls, cards: Iterable[Card], limit: int = MAX_LISTED_CARDS, *, more: int = 0) -> Listing:
        """At most `limit` distinct cards; `more`: how many the store counted beyond `cards`."""
        unique = tuple({card.id: card for card in cards}.values())
        return cls(unique[:limit], max(0, len(unique) - limit) + more)


@dataclass(frozen=True)
class Batch:
    """A channel's batch message (`bot.noise`): the new conversations of one window, compact, each with its
    main button (`main_button`); their full cards follow in the message's thread."""

    title: str
    listing: Listing
    note: str = "Full cards are in this message's thread."


def main_button(card: Card) -> Button | None:
    """The button a compact line of the card offers: its primary one when it asks for nothing (Claim on an
    open card), if any; the rest are on the full card."""
    return next((b for b in card.buttons if b.style == "primary" and b.url is None and not b.inputs), None)


@dataclass(frozen=True)
class HistoryLine:
    """One audit-log line: when, who, what (`kind`: in words, e.g. "rejected the reply"), and the
    event's stored name (`event`, e.g. "reply_rejected": for machines, the JSON output)."""

    at: datetime
    actor: str
    kind: str
    detail: str
    event: str = ""


@dataclass(frozen=True)
class Notice:
    """A message that is not a card: a digest, an escalation, a reminder, a delivery failure.

    Every string is plain text (renderers escape it: digests quote customer text);
    `mentions` are people to notify, as ("platform:user_id", display name) (Slack needs
    the id, Teams the name as well; the name may be ""); `links` are (label, url); `actions`
    are buttons on it, as on an answer (a spike alert's "See all 30").
    """

    title: str
    lines: tuple[str, ...] = ()
    mentions: tuple[tuple[str, str], ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True)
class CardCopy:
    """A posted copy of a conversation's card: which conversation it shows, and, when it is an older
    duplicate, the message id of the channel's live copy (the one kept up to date)."""

    conversation_id: int
    live_message_id: str | None = None


@dataclass(frozen=True)
class Result:
    """What a handler answers: a message for the asker, plus cards or history to show.

    `more`: how many more matched than `cards` holds (the store counted them; none is silently left out);
    `actions`: buttons on the answer itself (`Action`), after everything else; `ingested`: the items the
    command brought in, as (source, new, duplicates), counted by the bus once committed (not shown)."""

    text: str
    card: Card | None = None
    cards: tuple[Card, ...] = ()
    more: int = 0
    history: tuple[HistoryLine, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)
    notice: Notice | None = None
    copy: CardCopy | None = None
    actions: tuple[Action, ...] = ()
    ingested: tuple[tuple[str, int, int], ...] = ()
    answers: tuple[AnswerChoice, ...] = ()  # saved answers found (`answers`), for a form to offer

    @property
    def listing(self) -> Listing:
        """`cards` as a chat platform lists them: cut at the core's limit, with the count left out."""
        return Listing.of(self.cards, more=self.more)

    def listed(self, limit: int) -> Listing:
        """`cards` as a surface with room for `limit` lists them (the CLI: its `--limit`)."""
        return Listing.of(self.cards, limit, more=self.more)


OPEN_ORIGINAL = "Open original"
OPEN_PRIORITY = 85  # a link to the original post: shown after the actions that change something


def answers_of(conversation: Conversation) -> tuple[tuple[int, str], ...]:
    """The stored fitting answers of a conversation (`storage.answers`), as (id, title), best first."""
    return tuple(
        (item["id"], str(item.get("title") or ""))
        for item in conversation.answers or []
        if isinstance(item, dict) and isinstance(item.get("id"), int)
    )


def button(verb: Verb, conversation_id: int, *, status: str = "", picks: Sequence[tuple[int, str]] = ()) -> Button:
    """The button of a verb for one conversation, with its inputs and its style on a card in `status`
    (`picks`: the saved answers its form offers, when its verb picks one)."""
    return Button(
        verb.label,
        verb.name,
        conversation_id,
        verb.style_on(status),
        inputs=verb.inputs,
        priority=verb.priority,
        title=verb.form_title(conversation_id),
        submit=verb.submit or verb.label,
        picks=tuple(picks) if verb.picks else (),
    )


def buttons_for(conversation: Conversation, reply: Reply | None = None) -> tuple[Button, ...]:
    """The actions a card offers in the conversation's current status and its latest reply's state
    (the verb table decides which), and a link to the original post."""
    assert conversation.id is not None
    reply_status = reply.status if reply is not None else None
    picks = () if conversation.erased_at is not None else answers_of(conversation)
    shown = [
        button(verb, conversation.id, status=conversation.status, picks=picks)
        for verb in verbs.on_cards()
        if (conversation.status in verb.on or (reply_status is not None and reply_status in verb.on_reply))
        and (not verb.needs or getattr(conversation, verb.needs, None))
    ]
    if conversation.url:
        shown.append(Button(OPEN_ORIGINAL, verbs.OPEN, conversation.id, url=conversation.url, priority=OPEN_PRIORITY))
    return tuple(shown)


def reply_note(reply: Reply, url: str, *, author: str = "", decided_by: str = "") -> str:
    """One plain-text line saying where a reply stands (`author`: who wrote it, when it is to be named;
    `decided_by`: who approved or rejected it)."""
    excerpt = cut(" ".join(reply.text.split()), 300)
    if reply.status == "pending_approval":
        by = f" by {display_name(author)}" if author else ""
        return f"Reply{by} waiting for approval (sensitive): “{excerpt}”"
    if reply.status == "recorded":  # the person pastes it on the source by hand: the whole text, not an excerpt
        where = f"Reply recorded — post it at {url}" if url else "Reply recorded — post it where the customer wrote"
        text = reply.text.strip()
        return f"{where}, then mark it as posted (Mark as posted, or `posted {reply.conversation_id}`):\n{cut(text, 2500)}"
    if reply.status == "sending":
        return "Reply on its way to the customer"
    if reply.status == "sent":
        return "Reply delivered to the customer"
    if reply.status == "posted":
        return "Reply posted by hand on the source"
    if reply.status == "failed":
        return f"Reply could NOT be delivered: {reply.error or 'unknown error'}"
    if reply.status == "rejected":
        by = display_name(decided_by) if decided_by else "an approver"
        return f"Reply rejected by {by}: {reply.decision_reason or 'no reason given'}"  # "Reply rejected by Dana: too informal"
    return ""


ERASED_AUTHOR = "(erased)"


def erased_note(conversation: Conversation) -> str:
    """What an erased conversation's card says where the customer's words were ("" if not erased)."""
    if conversation.erased_at is None:
        return ""
    day = (
        conversation.erased_at.astimezone(UTC).strftime("%Y-%m-%d")
        if conversation.erased_at.tzinfo
        else f"{conversation.erased_at:%Y-%m-%d}"
    )
    why = conversation.erased_why or "request"
    if why == "request":
        return f"Erased on request, {day}"
    return f"Erased: {why}, {day}"  # "Erased: retention (30 days), 2026-12-01"


def card_for(
    conversation: Conversation,
    *,
    owner: str | None,
    departments: list[str],
    reply: Reply | None = None,
    snippet: tuple[tuple[str, bool], ...] = (),
    decided_by: str = "",
    earlier: tuple[int, Sequence[tuple[int, str]]] | None = None,
    moved: bool = False,
    voices: Sequence[Voice] = (),
    merged_into: int | None = None,
) -> Card:
    """The card of a conversation as it is now, with its latest reply's state (`decided_by`: who approved or
    rejected it, named on a rejected one) and what it was seen like before; an erased one says so
    ("Erased on request, <date>") where the customer's words were. `earlier`: how many earlier
    conversations its author has, and the newest of them as (id, status) (None: not read, as in lists).
    `moved`: the copy in a channel that no longer gets this conversation (it was rerouted): it says where it
    went, and offers nothing to do there but the link to the original post. `merged_into`: the conversation
    it was merged into by hand (`bot.voices.merged_into`): the same, "Merged into #9", in every channel."""
    assert conversation.id is not None
    erased = erased_note(conversation)
    author = ERASED_AUTHOR if erased else conversation.author_name or conversation.author_handle or "unknown author"
    buttons = buttons_for(conversation, reply)
    if moved or merged_into is not None:  # gone from here: only the link to the original post is left
        buttons = tuple(b for b in buttons if b.url)
    return Card(
        id=conversation.id,
        status=conversation.status,
        source=conversation.source,
        author=author,
        title=conversation.title,
        text=erased or conversation.text,
        url=conversation.url,
        priority=conversation.priority,
        tags=tuple(conversation.tags),
        departments=tuple(departments),
        routing_reason=conversation.routing_reason,
        owner=owner,
        outcome=conversation.outcome,
        created_at=conversation.created_at or conversation.ingested_at,
        buttons=buttons,
        reply_status=reply.status if reply is not None else None,
        reply_note=reply_note(reply, conversation.url, decided_by=decided_by) if reply is not None else "",
        earlier=tuple(earlier[1]) if earlier is not None and not erased else (),
        earlier_count=(0 if erased else earlier[0]) if earlier is not None else None,
        snippet=snippet,
        seen_before=() if erased else seen_before_of(conversation),
        suggested=() if erased else suggested_of(conversation),
        moved=moved,
        merged_into=merged_into,
        voices=tuple((v.source, v.author_name or v.author_handle or "unknown author", v.url) for v in voices),
        voice_count=conversation.voice_count or 0,
    )


#: Where a reply stands, in words (the history, the answer to a repeated reply, JSON `reply_state_words`).
REPLY_STATES = {
    "pending_approval": "waiting for approval",
    "approved": "approved, on its way",
    "recorded": "recorded, not posted yet",
    "sending": "on its way",
    "sent": "delivered",
    "posted": "posted by hand",
    "failed": "could not be delivered",
    "rejected": "rejected, never sent",
}

#: What an event is called in a conversation's history ("alice claimed", "dana rejected the reply").
EVENT_WORDS = {
    "approval_requested": "asked for approval of the reply",
    "reply_approved": "approved the reply",
    "reply_rejected": "rejected the reply",
    "reply_posted": "marked the reply as posted",
    "reply_sent": "delivered the reply",
    "reply_failed": "could not deliver the reply",
    "reminded": "reminded the owner",
    "erased": "erased the customer's data",
    "asked": "asked for help",
    "answer_saved": "saved the reply as an answer",
    "approval_skipped": "sent the reply without a second approval",
    "sender_told": "told who sent it in",
}


def reply_state(status: str, *, departments: Sequence[str] = ()) -> str:
    """A reply's state in words; a held one names whose approval it waits for."""
    if status == "pending_approval" and departments:
        return f"waiting for approval by {', '.join(departments)} managers"
    return REPLY_STATES.get(status, status)


def history_for(
    events: list[Event], notes: list[Note], replies: list[Reply], *, departments: Sequence[str] = ()
) -> tuple[HistoryLine, ...]:
    """The audit log as readable lines, in words (notes and replies are shown with their text, a
    reply with where it stands, a rejection with its reason)."""
    note_text = {n.id: n.text for n in notes}
    reply_of = {r.id: r for r in replies}
    lines = []
    for event in events:
        detail = ""
        data = event.data or {}
        reply = reply_of.get(data.get("reply_id"))
        if event.kind == "noted":
            detail = note_text.get(data.get("note_id"), "")
        elif event.kind == "replied":
            detail = f"{reply.text} ({reply_state(reply.status, departments=departments)})" if reply else ""
        elif event.kind == "approval_requested":
            detail = f"from {', '.join(departments)} managers" if departments else ""
        elif event.kind in ("reply_rejected", "dismissed", "erased"):
            detail = data.get("reason", "")
        elif event.kind == "answer_saved":
            detail = f"#{data.get('answer_id', '')} “{data.get('title', '')}”" + (
                " (pre-approved)" if data.get("pre_approved") else ""
            )
        elif event.kind == "approval_skipped":
            detail = f"reused pre-approved answer #{data.get('answer_id', '')} (approved by {data.get('approved_by', '')})"
        elif event.kind == "reply_failed":
            detail = data.get("error", "")
        elif event.kind == "resolved":
            detail = data.get("outcome", "") + (f": {data['text']}" if data.get("text") else "")
        elif event.kind == "asked":
            detail = str(data.get("name", ""))
        elif event.kind == "reassigned":
            detail = f"to {data.get('to', '')}"
        elif event.kind == "rerouted":
            detail = f"from {', '.join(data.get('from', []))} to {data.get('to', '')}"
        elif event.kind == "sender_told":
            detail = str(data.get("name", ""))
        elif event.kind in ("ingested", "reported"):
            detail = f"from {data.get('source', '')} to {', '.join(data.get('departments', []))}"
        lines.append(
            HistoryLine(
                at=event.at,
                actor=event.actor_name or "unsilo",
                kind=EVENT_WORDS.get(event.kind, event.kind),
                detail=detail,
                event=event.kind,
            )
        )
    return tuple(lines)
