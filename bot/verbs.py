"""The verb table: the only description of each user intent's surface.

One `Verb` row says what a person can ask for and how: its button (label, style, where it
shows, how important it is when a card has no room), the inputs it asks for, how its
command is built, its usage line (text commands, help, the platforms' command menus).
Every platform reads this table: Slack opens a modal for a verb's inputs, Teams shows them
in the card (`Action.ShowCard`), the CLI takes them as arguments, and `bot.textcommands`
parses `/unsilo …` and `@Unsilo …` with it. A platform never lists verbs of its own.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from bot import commands as c
from bot import noise
from bot.domain import InvalidInput, Status, parse_conversation_id

Fields = Mapping[str, str]
OPEN = "open"  # a link button's verb: the platform opens its URL, nothing reaches Unsilo


@dataclass(frozen=True)
class Input:
    """One thing a verb asks the person for.

    `kind` "text" is free text (multi-line where `multiline`); "choice" is one of the values
    a platform is given under `choices` (e.g. "outcomes": the config's outcomes). `missing`
    completes "reply needs …" when a required input is left out of a text command; `lead` is a word a
    text command may type before the value (`to`), skipped when it does.
    """

    name: str
    label: str
    kind: Literal["text", "choice"] = "text"
    placeholder: str = ""
    required: bool = True
    multiline: bool = True
    choices: str = ""
    missing: str = ""
    lead: str = ""  # a word a text command may put before the value (`reroute #12 to ops`)


@dataclass(frozen=True)
class Typed:
    """Where a text command was typed: the channel, the platform's way of invoking Unsilo, and
    (Teams) the conversation reference to post in that channel later."""

    channel_id: str = ""
    prefix: str = "/unsilo"
    conversation_ref: dict[str, object] | None = None

    def usage(self, verb: Verb) -> str:
        """The verb's usage line as this platform types it."""
        return f"usage: `{self.prefix} {verb.syntax}`"


ConversationCommand = Callable[[int, c.Actor, Fields], c.Command]
AnswerCommand = Callable[[c.Actor, Fields], c.Command]
TextCommand = Callable[[str, c.Actor, Typed], c.Command]
Menu = Literal["channel", "personal"]


@dataclass(frozen=True)
class Verb:
    """One user intent.

    A verb about one conversation has `build` (conversation id, actor, the inputs' values ->
    its command); its text command is `verb #42 …`, its inputs read from the rest of the line in
    order (a choice takes one word, the last text input the rest). Other verbs (`queue`,
    `digest`…) have `parse` (the rest of the line -> the command) and no button.

    `act` builds the command of the verb's button on an answer (`views.Action`: e.g. the Erase
    button under an erasure's dry run) from the values that button carries (the actor, the fields).

    `on` are the statuses whose cards show its button, `on_reply` the reply states that do
    (those buttons come first); `primary_on` the statuses where it is the card's main action.
    `priority` orders the buttons that stay visible when a platform has room for only a few
    (lower first; the rest go behind the platform's overflow menu, never dropped silently).
    `menu` are the platforms' command menus it is listed in ("channel": team channels and
    group chats, "personal": the person's chat with the app); `hint` its example in the one-line
    usage hint of a slash command (none: not in it). `cli`: a verb with `parse` that the CLI offers
    as `unsilo NAME words… --as NAME`, read by the same `parse`. `needs`: the conversation's field that
    must be non-empty for its button to show (Ask: the people suggested on the card). `picks`: the field
    carrying the id of a saved answer its form offers to start from (Reply: the answers that fit the
    conversation, `Conversation.answers`); never typed, so not an input of its text command.
    """

    name: str
    usage: str
    label: str = ""
    build: ConversationCommand | None = None
    parse: TextCommand | None = None
    act: AnswerCommand | None = None
    inputs: tuple[Input, ...] = ()
    title: str = ""
    submit: str = ""
    style: Literal["default", "primary", "danger"] = "default"
    primary_on: tuple[Status, ...] = ()
    on: tuple[Status, ...] = ()
    on_reply: tuple[str, ...] = ()
    priority: int = 50
    menu: tuple[Menu, ...] = ()
    menu_description: str = ""
    hint: str = ""
    cli: bool = False
    needs: str = ""
    picks: str = ""

    @property
    def syntax(self) -> str:
        """The usage line without its explanation (`reply #42 text`)."""
        return self.usage.split(" — ")[0]

    @property
    def asks(self) -> bool:
        """Whether its button asks for input before anything is done."""
        return bool(self.inputs)

    def style_on(self, status: str) -> str:
        """The button's style on a card in `status`."""
        return "primary" if status in self.primary_on else self.style

    def form_title(self, conversation_id: int) -> str:
        """The title of the form that asks for its inputs."""
        return (self.title or self.label).format(id=conversation_id)

    def command(self, conversation_id: int, actor: c.Actor, fields: Fields | None = None) -> c.Command:
        """Its command for a conversation, from the inputs' values (missing ones read as "")."""
        assert self.build is not None, self.name
        names = [i.name for i in self.inputs] + ([self.picks] if self.picks else [])
        values = {name: str((fields or {}).get(name) or "") for name in names}
        return self.build(conversation_id, actor, values)


# --- the text-only verbs' parsers -----------------------------------------------------


def _queue(rest: str, actor: c.Actor, typed: Typed) -> c.Command:
    return c.ShowQueue(actor, department=rest.strip().lower() or None)


def _digest(rest: str, actor: c.Actor, typed: Typed) -> c.Command:
    words = rest.strip().lower().split()
    days = next((int(w.rstrip("d")) for w in words if w.rstrip("d").isdigit()), 7)
    if not 1 <= days <= 366:
        raise InvalidInput(f"a digest covers 1 to 366 days; {typed.usage(VERBS['digest'])}")
    department = next((w for w in words if not w.rstrip("d").isdigit()), None)
    return c.ShowDigest(actor, department=department, days=days)


def _search(rest: str, actor: c.Actor, typed: Typed) -> c.Command:
    if not rest.strip():
        raise InvalidInput(f"search needs words; {typed.usage(VERBS['search'])}")
    return c.Search(actor, tuple(rest.split()))


def _spike(rest: str, actor: c.Actor, typed: Typed) -> c.Command:
    number = rest.strip().lstrip("#")
    if not number.isdigit():
        raise InvalidInput(f"spike needs the alert's number; {typed.usage(VERBS['spike'])}")
    return c.ShowSpike(actor, int(number))


def _spike_shown(actor: c.Actor, fields: Fields) -> c.Command:
    """The "See all" button of a spike alert: its conversations (the handler checks the alert exists)."""
    number = fields.get("alert", "")
    return c.ShowSpike(actor, int(number) if number.isdigit() else 0)


def _report(rest: str, actor: c.Actor, typed: Typed) -> c.Command:
    link, _, body = rest.strip().partition(" ")
    link = link.strip("<>").split("|")[0]  # Slack wraps links as <https://…> or <https://…|label>
    if not link.startswith(("http://", "https://")):
        raise InvalidInput(f"report needs the post's link first; {typed.usage(VERBS['report'])}")
    if not body.strip():
        raise InvalidInput(f"report needs the post's text after the link; {typed.usage(VERBS['report'])}")
    return c.Report(actor, body.strip(), link=link)


def _link(rest: str, actor: c.Actor, typed: Typed) -> c.Command:
    if not rest.strip():
        raise InvalidInput(f"link needs a department; {typed.usage(VERBS['link'])}")
    return c.LinkChannel(actor, rest.strip().lower(), typed.channel_id, typed.conversation_ref)


def _where(words: list[str], actor: c.Actor, typed: Typed, verb: str) -> tuple[str, str]:
    """The channel a channel verb is about: where it was typed, or (the CLI) `platform:channel` as its first word."""
    if typed.channel_id:
        return actor.platform, typed.channel_id
    platform, sep, channel = (words.pop(0) if words else "").partition(":")
    if not sep or not platform or not channel:
        raise InvalidInput(f"{verb} needs the channel first outside a chat, as platform:channel; {typed.usage(VERBS[verb])}")
    return platform, channel


def _mode(rest: str, actor: c.Actor, typed: Typed) -> c.Command:
    words = rest.split()
    platform, channel = _where(words, actor, typed, "mode")
    if not words:
        return c.ChannelBudget(actor, platform, channel)
    if words == ["reset"]:
        return c.ChannelBudget(actor, platform, channel, reset=True)
    try:
        mode = noise.parse_mode(" ".join(words))
    except InvalidInput as exc:
        raise InvalidInput(f"{exc.message}; {typed.usage(VERBS['mode'])}") from None
    return c.ChannelBudget(actor, platform, channel, mode=mode)


def _quiet(rest: str, actor: c.Actor, typed: Typed) -> c.Command:
    words = rest.split()
    platform, channel = _where(words, actor, typed, "quiet")
    if not words:
        return c.ChannelBudget(actor, platform, channel)
    if [w.lower() for w in words] == ["off"]:
        return c.ChannelBudget(actor, platform, channel, quiet="")
    try:
        quiet = str(noise.Quiet.parse(" ".join(words)))
    except InvalidInput as exc:
        raise InvalidInput(f"{exc.message}; {typed.usage(VERBS['quiet'])}") from None
    return c.ChannelBudget(actor, platform, channel, quiet=quiet)


_ERASE_OPTIONS = {
    "--author": "author",
    "--handle": "handle",
    "--url": "url",
    "--conversation": "conversation",
    "--reason": "reason",
}
CONFIRM = "--confirm"


def _erase(rest: str, actor: c.Actor, typed: Typed) -> c.Command:
    """`erase --author "Tom W." --reason "GDPR request #5"`: a dry run that says what to type to go
    ahead (the same line with `--confirm`); only the confirmed line erases."""
    line = rest.replace("\u201c", '"').replace("\u201d", '"').replace("\u2018", "'").replace("\u2019", "'")
    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise InvalidInput(f"erase: {exc}; {typed.usage(VERBS['erase'])}") from None
    values: dict[str, str] = {}
    confirmed = False
    while words:
        word = words.pop(0)
        if word == CONFIRM:
            confirmed = True
        elif word in _ERASE_OPTIONS and words:
            values[_ERASE_OPTIONS[word]] = words.pop(0)
        else:
            raise InvalidInput(f"erase: unexpected {word[:40]!r}; {typed.usage(VERBS['erase'])}")
    if not values.get("reason", "").strip():
        raise InvalidInput(f"erase needs --reason; {typed.usage(VERBS['erase'])}")
    conversation = parse_conversation_id(values["conversation"]) if "conversation" in values else None
    confirm = f"{typed.prefix} erase {' '.join(shlex.quote(w) for w in shlex.split(line))} {CONFIRM}"
    return c.Erase(
        actor,
        values["reason"],
        author=values.get("author", ""),
        handle=values.get("handle", ""),
        url=values.get("url", "").strip("<>").split("|")[0],  # Slack wraps links as <https://…|label>
        conversation_id=conversation,
        dry_run=not confirmed,
        confirm="" if confirmed else confirm,
    )


def _erase_confirmed(actor: c.Actor, fields: Fields) -> c.Command:
    """The Erase button under a dry run: the same selector and reason, confirmed (the handler checks them again)."""
    conversation = fields.get("conversation", "")
    return c.Erase(
        actor,
        fields.get("reason", ""),
        author=fields.get("author", ""),
        handle=fields.get("handle", ""),
        url=fields.get("url", ""),
        conversation_id=parse_conversation_id(conversation) if conversation else None,
    )


def _expert(rest: str, actor: c.Actor, typed: Typed) -> c.Command:
    action, _, topics = rest.strip().partition(" ")
    listed = tuple(t.strip() for t in topics.split(",") if t.strip())
    if action.lower() not in ("add", "remove") or not listed:
        raise InvalidInput(f"expert needs add or remove, then topics; {typed.usage(VERBS['expert'])}")
    if action.lower() == "add":
        return c.DeclareExpertise(actor, add=listed)
    return c.DeclareExpertise(actor, remove=listed)


def _who(rest: str, actor: c.Actor, typed: Typed) -> c.Command:
    first, _, words = rest.strip().partition(" ")
    if first.lower() != "knows" or not words.strip():
        raise InvalidInput(f"who knows needs words; {typed.usage(VERBS['who'])}")
    return c.WhoKnows(actor, tuple(words.split()))


def _answers(rest: str, actor: c.Actor, typed: Typed) -> c.Command:
    if not rest.strip():
        raise InvalidInput(f"answers needs words; {typed.usage(VERBS['answers'])}")
    if re.fullmatch(r"#\d+", rest.strip()):  # `answers #42`: the answers that fit that conversation
        return c.SearchAnswers(actor, (), conversation_id=parse_conversation_id(rest.strip()), limit=3)
    return c.SearchAnswers(actor, tuple(rest.split()))


def _notify(rest: str, actor: c.Actor, typed: Typed) -> c.Command:
    word = rest.strip().lower()
    if word not in ("on", "off"):
        raise InvalidInput(f"notify needs on or off; {typed.usage(VERBS['notify'])}")
    return c.SetNotify(actor, on=word == "on")


PICKED = "answer"  # the reply form's saved-answer picker


def picked_id(value: str) -> int | None:
    """The id of the saved answer picked in a form ("" or anything but a positive number: none)."""
    value = value.strip()
    return int(value) if value.isdigit() and 0 < len(value) < 10 and int(value) > 0 else None


def _merge(cid: int, actor: c.Actor, fields: Fields) -> c.Command:
    """`merge #12 into #9` (the "into" may be left out)."""
    target = re.sub(r"^\s*into\s+", "", fields["into"].strip(), flags=re.IGNORECASE)
    return c.Merge(cid, actor, parse_conversation_id(target) if target else 0)  # 0: refused by the handler


def _split(cid: int, actor: c.Actor, fields: Fields) -> c.Command:
    """`split #9 2` (its 2nd voice), or `split #12` (#12 merged into another, or #9's only voice)."""
    which = re.sub(r"^\s*voice\s+", "", fields["voice"].strip(), flags=re.IGNORECASE)
    if which and not re.fullmatch(r"[0-9]{1,4}", which):
        raise InvalidInput(f"which voice? a number as `show` lists them, not {which[:20]!r}")
    return c.Split(cid, actor, int(which) if which else 0)


def _text(name: str = "text", label: str = "", *, missing: str, placeholder: str = "") -> Input:
    return Input(name, label, placeholder=placeholder, missing=missing)


_ACTIVE = (Status.OPEN, Status.CLAIMED, Status.REPLIED)
_TAKEN = (Status.CLAIMED, Status.REPLIED)
_EVERY = tuple(Status)
_OUTCOME = Input("outcome", "Outcome", kind="choice", choices="outcomes", multiline=False, missing="an outcome")
_CLOSING_NOTE = Input("text", "Note (optional)", placeholder="How it ended (optional)", required=False)

# The table. Card buttons show in this order (those for a reply's state first); help lists it in this order.
TABLE: tuple[Verb, ...] = (
    Verb("help", "help — this list", hint="help", menu=("channel", "personal"), menu_description="List the commands"),
    Verb("queue", "queue [department] — what is waiting", hint="queue", parse=_queue, menu=("channel", "personal")),
    Verb(
        "mine",
        "mine — the conversations you own",
        parse=lambda rest, actor, typed: c.ShowQueue(actor, mine=True),
        menu=("personal",),
    ),
    Verb(
        "show",
        "show #42 — a conversation with its history",
        label="Show",
        build=lambda cid, actor, f: c.Show(cid, actor),
        priority=80,
        menu=("channel", "personal"),
    ),
    Verb(
        "approve",
        "approve #42 — let its held reply go to the customer (approvers)",
        label="Approve reply",
        build=lambda cid, actor, f: c.ApproveReply(cid, actor),
        style="primary",
        on_reply=("pending_approval",),
        priority=0,
    ),
    Verb(
        "reject",
        "reject #42 reason — stop its held reply for good (approvers)",
        label="Reject reply",
        build=lambda cid, actor, f: c.RejectReply(cid, actor, f["text"]),
        inputs=(_text(label="Why is it rejected? Its author will read this.", placeholder="A short reason", missing="a reason"),),
        submit="Reject",
        style="danger",
        on_reply=("pending_approval",),
        priority=1,
    ),
    Verb(
        "posted",
        "posted #42 — the recorded reply was posted by hand on the source",
        label="Mark as posted",
        build=lambda cid, actor, f: c.MarkPosted(cid, actor),
        on_reply=("recorded",),
        priority=2,
    ),
    Verb(
        "claim",
        "claim #42 — take it",
        hint="claim #42",
        label="Claim",
        build=lambda cid, actor, f: c.Claim(cid, actor),
        style="primary",
        on=(Status.OPEN,),
        priority=10,
        menu=("channel", "personal"),
    ),
    Verb(
        "release",
        "release #42 — give it back to the queue",
        label="Release",
        build=lambda cid, actor, f: c.Release(cid, actor),
        on=_TAKEN,
        priority=70,
    ),
    Verb(
        "reply",
        "reply #42 text — answer the customer",
        hint="reply #42 text",
        label="Reply",
        build=lambda cid, actor, f: c.ReplyToCustomer(cid, actor, f["text"], answer_id=picked_id(f.get(PICKED, ""))),
        inputs=(_text(label="Your answer (sent as you)", placeholder="What the customer will read", missing="the reply's text"),),
        picks=PICKED,
        title="Reply to the customer",
        submit="Send reply",
        primary_on=(Status.CLAIMED,),
        on=_ACTIVE,
        priority=20,
        menu=("channel", "personal"),
    ),
    Verb(
        "note",
        "note #42 text — an internal note (never sent to the customer)",
        label="Note",
        build=lambda cid, actor, f: c.AddNote(cid, actor, f["text"], origin=actor.platform),
        inputs=(
            _text(label="Note (never sent to the customer)", placeholder="Only your team sees this", missing="the note's text"),
        ),
        title="Internal note",
        submit="Add note",
        on=_EVERY,
        priority=60,
        menu=("channel", "personal"),
    ),
    Verb(
        "ask",
        "ask #42 [name] — ask the people suggested on its card for help (mentioned in its thread, or sent a message)",
        label="Ask",
        build=lambda cid, actor, f: c.Ask(cid, actor, f["person"]),
        inputs=(
            Input(
                "person",
                "Who? (empty: everyone suggested)",
                placeholder="A name from the card's “Ask” line",
                required=False,
                multiline=False,
            ),
        ),
        title="Ask for help with #{id}",
        submit="Ask",
        on=_ACTIVE,
        needs="suggested",
        priority=65,
    ),
    Verb(
        "resolve",
        "resolve #42 outcome [what was done] — close it",
        label="Resolve",
        build=lambda cid, actor, f: c.Resolve(cid, actor, f["outcome"], f["text"]),
        inputs=(_OUTCOME, _CLOSING_NOTE),
        title="Resolve #{id}",
        submit="Resolve",
        primary_on=(Status.REPLIED,),
        on=_TAKEN,
        priority=30,
        menu=("channel",),
    ),
    Verb(
        "reroute",
        "reroute #42 to department — not for us: move it to another department (its owner, its department, managers)",
        label="Not for us",
        build=lambda cid, actor, f: c.Reroute(cid, actor, f["department"]),
        inputs=(
            Input(
                "department",
                "Which department is it for?",
                kind="choice",
                choices="departments",
                multiline=False,
                missing="a department",
                lead="to",
            ),
        ),
        title="Not for us: move #{id}",
        submit="Move",
        on=_ACTIVE,
        priority=78,
    ),
    Verb(
        "dismiss",
        "dismiss #42 reason — close it as needing no action (managers)",
        label="Dismiss",
        build=lambda cid, actor, f: c.Dismiss(cid, actor, f["text"]),
        inputs=(_text(label="Why does this need no action?", placeholder="A short reason", missing="a reason"),),
        submit="Dismiss",
        style="danger",
        on=(Status.OPEN, Status.CLAIMED),
        priority=90,
    ),
    Verb(
        "merge",
        "merge #12 into #9 — make #12 another voice of #9, the same issue (owners, managers)",
        build=_merge,
        inputs=(
            Input(
                "into", "Into which conversation?", placeholder="#9", multiline=False, missing="the conversation to merge into"
            ),
        ),
    ),
    Verb(
        "split",
        "split #12 [voice] — take a voice back out into its own conversation (owners, managers)",
        build=_split,
        inputs=(Input("voice", "Which voice (as listed)?", placeholder="2", multiline=False, required=False),),
    ),
    Verb(
        "approvals",
        "approvals — replies waiting for your approval (managers)",
        hint="approvals",
        parse=lambda rest, actor, typed: c.ShowApprovals(actor),
        menu=("personal",),
    ),
    Verb(
        "digest",
        "digest [department] [days] — the manager digest, just for you",
        hint="digest",
        parse=_digest,
        menu=("personal",),
    ),
    Verb(
        "notify",
        "notify on|off — whether you get a message when a conversation you sent in is resolved",
        parse=_notify,
        cli=True,
    ),
    Verb("stats", "stats — your own figures", parse=lambda rest, actor, typed: c.ShowStats(actor)),
    Verb("search", "search words — past conversations, notes and answers", parse=_search, menu=("channel", "personal")),
    Verb("spike", "spike 7 — every conversation of spike alert 7", parse=_spike, act=_spike_shown),
    Verb(
        "save-answer",
        "save-answer #42 title — save its sent reply in the answer library (also `save answer #42 title`)",
        label="Save as answer",
        build=lambda cid, actor, f: c.SaveAnswer(cid, actor, f["title"]),
        inputs=(
            Input(
                "title",
                "Title of the saved answer",
                placeholder="e.g. Refund after a late delivery",
                multiline=False,
                missing="a title",
            ),
        ),
        title="Save as answer",
        submit="Save",
        on_reply=("sent", "posted"),
        priority=75,
    ),
    Verb(
        "answers",
        "answers words | answers #42 — the saved answers that match, or that fit that conversation best",
        parse=_answers,
        cli=True,
    ),
    Verb("report", "report <link> text — send in a post you spotted", parse=_report),
    Verb(
        "link",
        "link department — post that department's conversations in this channel (admins)",
        hint="link support",
        parse=_link,
        menu=("channel",),
    ),
    Verb(
        "unlink",
        "unlink [department] — stop posting them here (admins)",
        parse=lambda rest, actor, typed: c.UnlinkChannel(actor, typed.channel_id, rest.strip().lower() or None),
        menu=("channel",),
    ),
    Verb(
        "mode",
        "mode [realtime | batched 15m | digest-only | reset] — how this channel gets new conversations: at once, "
        "one list per 15m (cards in its thread), or only in the digest; `mode` alone shows it. Set here, it wins "
        "over the config until `mode reset` (managers, admins)",
        parse=_mode,
        cli=True,
    ),
    Verb(
        "quiet",
        "quiet 22:00-07:00 Europe/Berlin | quiet off — quiet hours for this channel: only urgent conversations post "
        "during them, the rest when they end; wins over the config until `mode reset` (managers, admins)",
        parse=_quiet,
        cli=True,
    ),
    Verb(
        "expert",
        "expert add topic, topic | expert remove topic — the topics you know about (`who knows` finds you by them)",
        parse=_expert,
        cli=True,
    ),
    Verb("experts", "experts — the topics you declared", parse=lambda rest, actor, typed: c.ShowExpertise(actor), cli=True),
    Verb(
        "who",
        "who knows words — who to turn to: who handled conversations like these, and who declared the topic",
        hint="who knows gdpr",
        parse=_who,
        cli=True,
    ),
    Verb(
        "erase",
        'erase --author "NAME" | --handle H | --url U | --conversation #42 --reason "why" — '
        "remove a customer's personal data: shows what would go, then erases once you click Erase or add --confirm (admins)",
        parse=_erase,
        act=_erase_confirmed,
    ),
)

VERBS: dict[str, Verb] = {verb.name: verb for verb in TABLE}
_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")
assert all(_NAME.fullmatch(v.name) for v in TABLE) and len(VERBS) == len(TABLE)


_NAMES: dict[type, str] = {}


def name_of(command: c.Command) -> str:
    """The verb a command is the intent of (`claim`), for counting; a command no button builds is
    named by its class (`ShowQueue`, `ThreadNote`)."""
    if not _NAMES:
        nobody = c.Actor("", "")
        for verb in TABLE:
            if verb.build is not None:
                _NAMES.setdefault(type(verb.command(0, nobody)), verb.name)
    return _NAMES.get(type(command)) or type(command).__name__


def acting(command: c.Command) -> Verb:
    """The verb whose answer button (`Verb.act`) builds commands of this command's kind."""
    nobody = c.Actor("", "")
    found = next((v for v in TABLE if v.act is not None and type(v.act(nobody, {})) is type(command)), None)
    assert found is not None, type(command).__name__
    return found


def get(name: str) -> Verb | None:
    """The verb called `name`, or None."""
    return VERBS.get(name)


def on_cards() -> tuple[Verb, ...]:
    """The verbs whose buttons show on cards, in the order they show."""
    reply_first = [v for v in TABLE if v.on_reply]
    return (*reply_first, *(v for v in TABLE if v.on and not v.on_reply))


def choice_lists(*, outcomes: Sequence[str], departments: Sequence[str] = ()) -> dict[str, tuple[str, ...]]:
    """The values of every named choice list the verbs' inputs offer, from the config."""
    return {"outcomes": tuple(outcomes), "departments": tuple(departments)}


@dataclass(frozen=True)
class MenuCommand:
    """One entry of a platform's command menu."""

    title: str
    description: str


def menu(where: Menu) -> tuple[MenuCommand, ...]:
    """The command menu for `where`, in the table's order."""
    return tuple(MenuCommand(v.name, v.menu_description or v.usage) for v in TABLE if where in v.menu)


def hint() -> str:
    """The one-line usage hint of the slash command (Slack's `usage_hint`), in the table's order."""
    return " | ".join(v.hint for v in TABLE if v.hint)


def read_conversation_line(verb: Verb, rest: str, actor: c.Actor, typed: Typed) -> c.Command:
    """`verb #42 …` typed as text: the conversation id, then each input from the rest of the line."""
    head, _, tail = rest.strip().partition(" ")
    if not head:
        raise InvalidInput(f"{verb.name} needs a conversation id; {typed.usage(verb)}")
    try:
        conversation_id = parse_conversation_id(head)
    except InvalidInput as exc:
        raise InvalidInput(f"{exc.message}; {typed.usage(verb)}") from exc
    fields: dict[str, str] = {}
    remaining = tail.strip()
    for index, wanted in enumerate(verb.inputs):
        last_text = wanted.kind == "text" and index == len(verb.inputs) - 1
        if last_text:
            value, remaining = remaining, ""
        else:
            if wanted.lead and remaining.lower().startswith(wanted.lead + " "):
                remaining = remaining[len(wanted.lead) :].strip()
            value, _, remaining = remaining.partition(" ")
            remaining = remaining.strip()
        if wanted.required and not value:
            raise InvalidInput(f"{verb.name} needs {wanted.missing or wanted.label.lower()}; {typed.usage(verb)}")
        fields[wanted.name] = value
    return verb.command(conversation_id, actor, fields)
