"""Adaptive Card 1.5 rendering of the platform-neutral views (`bot.views`) for Teams.

Pure functions: a view goes in, a JSON-ready dict comes out; no I/O, no botbuilder.
Untrusted text is only ever shown as `TextRun`s inside `RichTextBlock`s (a TextRun is
never markdown-processed, unlike a `TextBlock`); `TextBlock` is kept for the fixed labels
written here (`LABELS`). Every string is cleaned and cut to a limit here, once.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from bot import codec, verbs
from bot.verbs import Input
from bot.views import (
    ELLIPSIS,
    FSI,
    PDI,
    Action,
    Batch,
    Button,
    Card,
    Fact,
    HistoryLine,
    Listing,
    Notice,
    Result,
    cut,
    display_name,
    first_line,
    isolate,
    main_button,
    printable,
    when,
)

logger = logging.getLogger(__name__)

CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.5"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
MESSAGE_CONTENT_TYPE = "application/vnd.microsoft.activity.message"

# Teams refuses a bot message over its size limit with 413 MessageSizeTooBig (40 KB counted
# as UTF-16 in Microsoft's docs, ~28 KB in others). The card's JSON as it goes on the wire
# (non-ASCII escaped, an emoji = 12 characters) is kept under MAX_CARD_JSON characters and
# the activity's summary under MAX_SUMMARY_JSON, so that even counted as UTF-16 the whole
# activity (~1,000 characters more) stays under 40 KB.
MAX_CARD_JSON = 16_000
MAX_SUMMARY_JSON = 400
# Our caps, so one field cannot crowd out the others.
MAX_TEXT = 3000
MAX_MESSAGE_TEXT = 4000
MAX_TITLE = 250
MAX_FIELD = 300
MAX_SHORT = 40
MAX_NAME = 80
MAX_SUMMARY = 150
MAX_HISTORY_LINE = 300
MAX_HISTORY_LINES = 30
MAX_TEXT_PARAGRAPHS = 30
# At a typical Teams card width about three buttons fit before their titles are cut ("Rele…"):
# the three that matter most stay buttons, the rest go to the card's overflow menu ("…",
# `mode: secondary`, Adaptive Cards 1.5; Teams: "cards-format.md", overflow menu).
MAX_PRIMARY_ACTIONS = 3
MAX_ACTIONS = 20  # primary and overflow together
MAX_ACTION_TITLE = 50
MAX_INPUT = 3000
MAX_CHOICES = 100
MAX_CHOICE_VALUE = 150
MAX_URL = 2048

ZWSP = "\u200b"
_HTTP_URL = re.compile(r"^https?://[^\s]+$", re.IGNORECASE)
_AT_TAG = re.compile(r"<(?=at)", re.IGNORECASE)
_AT_TAGS = re.compile(r"</?at\b[^>]*>", re.IGNORECASE)
_TEAMS_USER = re.compile(r"[\w:.@-]{1,200}")  # an AAD object id, a 29: id or a UPN
_NOT_IN_NAME = re.compile(r"[^\w .'-]|_")
_STYLES = {"primary": "positive", "danger": "destructive"}
_TONE_COLORS = {"attention": "Attention", "warning": "Warning"}  # a run's colour for a tone (`bot.views.Tone`)
ERROR_CONTENT_TYPE = "application/vnd.microsoft.error"
# Every text that may appear in a TextBlock: fixed labels written here or in the verb table, nothing else.
LABELS = frozenset(
    {"Done.", "History", "Unclaimed", "Outcome", "Choose an outcome."} | {i.label for v in verbs.TABLE for i in v.inputs}
)


# --- text --------------------------------------------------------------------------


def _defuse(text: str) -> str:
    """Break every `<at` with a zero-width space after the `<`.

    Teams turns `<at>name</at>` in a message into a mention when it has a matching
    entity; we never send entities, but a customer's text must not be able to become
    live mention markup if a card is ever copied into a message, so none survives here.
    """
    return _AT_TAG.sub("<" + ZWSP, text)


_cut = cut  # Adaptive Cards count characters: the core's cut is Teams' own


def safe(text: str | None, limit: int, *, empty: str = "") -> str:
    """Untrusted text made inert for a TextRun: cleaned, `<at` broken, cut; `empty` if blank."""
    cleaned = _defuse(printable(text).strip())
    return _cut(cleaned, limit) if cleaned else empty


def customer(text: str | None, limit: int, *, empty: str = "") -> str:
    """Someone else's words (a customer's, a title, a note) made inert and wrapped in a bidi
    isolate, so right-to-left text or stray controls in it never reorder the card's own text."""
    cleaned = safe(text, limit - 2)
    return isolate(cleaned) if cleaned else empty


def name(text: str | None, limit: int = MAX_NAME) -> str:
    """A person's name: bidi controls and invisible characters gone, "(no name)" when blank, isolated."""
    return isolate(_cut(_defuse(display_name(text)), limit - 2))


def _label(text: str) -> str:
    if text not in LABELS:
        raise ValueError(f"{text!r} is not a fixed label; untrusted text belongs in a TextRun")
    return text


def _text_block(label: str, **style: Any) -> dict[str, Any]:
    """A TextBlock for one of our fixed labels (TextBlocks process markdown)."""
    return {"type": "TextBlock", "text": _label(label), "wrap": True, **style}


def _run(text: str, **style: Any) -> dict[str, Any]:
    """A TextRun; `text` must already be `safe()` (or our own words)."""
    return {"type": "TextRun", "text": text, **style}


def _rich(*runs: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {"type": "RichTextBlock", "inlines": [r for r in runs if r["text"]] or [_run("-")], **props}


def _envelope(
    body: list[dict[str, Any]], actions: list[dict[str, Any]] | None = None, *, entities: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    card_json: dict[str, Any] = {
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "$schema": CARD_SCHEMA,
        "body": body,
        "actions": actions or [],
    }
    if entities:
        card_json["msteams"] = {"entities": entities}  # Teams' own extension of the card: who is pinged
    return _fit(card_json)


def summary(text: str | None) -> str:
    """An activity's summary (the notification preview): cleaned like card text and small on the wire."""
    shown = safe(text, 200)
    while len(json.dumps(shown)) > MAX_SUMMARY_JSON:
        shown = _cut(shown, len(shown) // 2)
    return shown


def _fit(card_json: dict[str, Any]) -> dict[str, Any]:
    """The card within `MAX_CARD_JSON`: the longest text runs are halved (ending in "…") until
    it fits, then, if runs are already tiny, trailing blocks are dropped. Per-field caps make
    this rare: it takes text that escapes large, such as thousands of emoji.
    """
    size = len(json.dumps(card_json))
    if size <= MAX_CARD_JSON:
        return card_json
    original, body = size, card_json["body"]
    runs = [inline for block in body for inline in block.get("inlines", ()) if inline.get("type") == "TextRun"]
    wire = {id(run): len(json.dumps(run["text"])) for run in runs}
    while size > MAX_CARD_JSON:
        longest = max(runs, key=lambda run: wire[id(run)], default=None)
        if longest is None or len(longest["text"]) <= 8:
            break
        longest["text"] = _cut(longest["text"], len(longest["text"]) // 2)
        before, wire[id(longest)] = wire[id(longest)], len(json.dumps(longest["text"]))
        size -= before - wire[id(longest)]
    while len(json.dumps(card_json)) > MAX_CARD_JSON and len(body) > 2:
        body.pop()  # from the end: the title and a notice's mention line come first
    logger.info("Teams card cut to fit %s characters of JSON (was %s)", MAX_CARD_JSON, original)
    return card_json


# --- actions -----------------------------------------------------------------------


def _safe_url(url: str | None) -> str | None:
    """An http(s) URL without whitespace or control characters, or None."""
    raw = (url or "").strip()
    if not raw or printable(raw) != raw or not _HTTP_URL.match(raw) or len(raw) > MAX_URL:
        return None
    return raw


def _execute(button: Button, title: str, style: str | None = None) -> dict[str, Any]:
    action: dict[str, Any] = {
        "type": "Action.Execute",
        "title": _cut(printable(title).strip() or button.verb, MAX_ACTION_TITLE),
        "verb": button.verb,
        "data": codec.button_data(button),
    }
    if style:
        action["style"] = style
    return action


def input_id(verb: str, field: str = "text") -> str:
    """The id of a verb's input: unique within a card, where a Reply and a Note form sit side by
    side (two inputs with one id make Microsoft's renderer fail with DuplicateId, and Teams would
    send only one of their values)."""
    return f"{verb}.{field}"


def input_value(verb: str, data: dict[str, Any], field: str = "text") -> str:
    """What a person typed in a verb's input (cards sent before the ids were per verb used `text`)."""
    return str(data.get(input_id(verb, field)) or data.get(field) or "")


def _text_input(verb: str, wanted: Input) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "Input.Text",
        "id": input_id(verb, wanted.name),
        "label": wanted.label,
        "placeholder": wanted.placeholder,
        "isMultiline": wanted.multiline,
        "maxLength": MAX_INPUT,
    }
    if wanted.required:
        element.update(isRequired=True, errorMessage="Please write something first.")
    return element


def _choices(values: Sequence[str]) -> list[dict[str, str]]:
    """Choices; values that would not round-trip intact are left out, not cut."""
    choices = []
    for value in dict.fromkeys(values):
        if not value or len(value) > MAX_CHOICE_VALUE or printable(value) != value or "," in value:
            logger.warning("choice %r cannot be offered as a Teams choice; left out", value[:40])
            continue
        choices.append({"title": safe(value, MAX_NAME, empty=value), "value": value})
    return choices[:MAX_CHOICES]


def _choice_input(verb: str, wanted: Input, values: Sequence[str]) -> dict[str, Any] | None:
    choices = _choices(values)
    if not choices:
        return None
    element: dict[str, Any] = {
        "type": "Input.ChoiceSet",
        "id": input_id(verb, wanted.name),
        "label": wanted.label,
        "choices": choices,
        "style": "compact",
    }
    if wanted.required:
        element.update(isRequired=True, errorMessage=f"Choose {wanted.missing or 'one'}.")
    return element


def input_values(button_data: Mapping[str, Any], verb: str) -> dict[str, str]:
    """What a person typed or chose in a verb's inputs, by input name (from a submitted card's data)."""
    found = verbs.get(verb)
    names = [i.name for i in (found.inputs if found else ())] + ([found.picks] if found and found.picks else [])
    return {name: input_value(verb, dict(button_data), name) for name in names}


def _picker(button: Button, field: str) -> dict[str, Any]:
    """The choice of the saved answers that fit (`Button.picks`): its value the answer's id. Sent with a
    blank text, the answer's text is the reply; a typed text wins over it (`bot.commands.ReplyToCustomer`)."""
    return {
        "type": "Input.ChoiceSet",
        "id": input_id(button.verb, field),
        "label": "Or send a saved answer (used when the text is left empty)",
        "placeholder": "Saved answers that fit",
        "choices": [
            {"title": safe(title, MAX_NAME, empty=f"Answer #{aid}"), "value": str(aid)}
            for aid, title in button.picks[:MAX_CHOICES]
        ],
        "style": "compact",
    }


def _action(button: Button, choices: Mapping[str, Sequence[str]]) -> dict[str, Any] | None:
    """One card action for a button, or None when it cannot be rendered: a link, a button that acts
    at once (`Action.Execute`), or one whose inputs (`Button.inputs`) show in the card (`Action.ShowCard`)."""
    title = _cut(printable(button.label).strip() or button.verb, MAX_ACTION_TITLE)
    style = _STYLES.get(button.style)
    if button.url is not None or button.verb == codec.OPEN:
        url = _safe_url(button.url)
        if url is None:
            logger.warning("button %s for #%s has no safe http(s) URL; left out", button.verb, button.conversation_id)
            return None
        return {"type": "Action.OpenUrl", "title": title, "url": url}
    if not button.inputs:
        return _execute(button, title, style)
    body = []
    for wanted in button.inputs:
        if wanted.kind == "choice":
            element = _choice_input(button.verb, wanted, choices.get(wanted.choices) or ())
            if element is None:
                logger.warning(
                    "no %s fits a Teams choice; %s left out for #%s", wanted.choices, button.verb, button.conversation_id
                )
                return None
            body.append(element)
        else:
            body.append(_text_input(button.verb, wanted))
    verb = verbs.get(button.verb)
    if button.picks and verb is not None and verb.picks:
        # Either the text or an answer: the text is not required then (the core refuses a reply with neither).
        body = [{k: v for k, v in e.items() if k not in ("isRequired", "errorMessage")} for e in body]
        body.append(_picker(button, verb.picks))
    inner = {"type": "AdaptiveCard", "body": body, "actions": [_execute(button, button.submit or button.label, style)]}
    return {"type": "Action.ShowCard", "title": title, "card": inner}


def _answer_action(action: Action) -> dict[str, Any]:
    """An answer's own button (`Result.actions`): `Action.Execute` with its command; one to be confirmed
    shows its question and the confirming `Action.Execute` in the card first (`Action.ShowCard`)."""
    title = _cut(printable(action.label).strip() or action.verb, MAX_ACTION_TITLE)
    execute: dict[str, Any] = {"type": "Action.Execute", "title": title, "verb": action.verb, "data": codec.action_data(action)}
    if action.style in _STYLES:
        execute["style"] = _STYLES[action.style]
    if action.confirm is None:
        return execute
    question = [
        _rich(_run(safe(action.confirm.title, MAX_TITLE), weight="bolder")),
        _rich(_run(safe(action.confirm.text, MAX_FIELD))),
    ]
    yes = {**execute, "title": _cut(printable(action.confirm.yes).strip() or title, MAX_ACTION_TITLE)}
    return {"type": "Action.ShowCard", "title": title, "card": {"type": "AdaptiveCard", "body": question, "actions": [yes]}}


def _rank(button: Button) -> tuple[int, int]:
    """Lower ranks stay on the card: the core's primary button, then the verb table's priority."""
    return (0 if button.style == "primary" else 1, button.priority)


def overflow(actions: list[dict[str, Any]], ranks: Sequence[tuple[int, int]] | None = None) -> list[dict[str, Any]]:
    """At most `MAX_PRIMARY_ACTIONS` buttons (the best ranked, in their own order), the rest in the
    card's overflow menu (`mode: secondary`), after them; nothing is dropped below `MAX_ACTIONS`."""
    if len(actions) > MAX_ACTIONS:
        logger.warning("%d actions for one card; only the first %d are shown", len(actions), MAX_ACTIONS)
        actions, ranks = actions[:MAX_ACTIONS], (ranks[:MAX_ACTIONS] if ranks else None)
    if len(actions) <= MAX_PRIMARY_ACTIONS:
        return actions
    ranked = ranks or [(0, i) for i in range(len(actions))]
    keep = set(sorted(range(len(actions)), key=lambda i: (ranked[i], i))[:MAX_PRIMARY_ACTIONS])
    primary = [a for i, a in enumerate(actions) if i in keep]
    secondary = [{**a, "mode": "secondary"} for i, a in enumerate(actions) if i not in keep]
    return primary + secondary


def _actions(buttons: Sequence[Button], outcomes: Sequence[str], departments: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Actions for unique, renderable buttons: the three that matter most, the rest in the overflow."""
    choices = verbs.choice_lists(outcomes=outcomes, departments=departments)  # once per card, for every button's inputs
    actions: list[dict[str, Any]] = []
    ranks: list[tuple[int, int]] = []
    seen: set[str] = set()
    for button in buttons:
        if button.verb in seen:
            continue
        action = _action(button, choices)
        if action is not None:
            seen.add(button.verb)
            actions.append(action)
            ranks.append(_rank(button))
    return overflow(actions, ranks)


# --- cards -------------------------------------------------------------------------


def _title(card: Card) -> dict[str, Any]:
    title = customer(card.summary, MAX_TITLE, empty="(no title)")
    return _rich(_run(f"#{card.id} ", weight="Bolder", size="Medium"), _run(title, weight="Bolder", size="Medium"))


def _badges(card: Card) -> dict[str, Any]:
    priority = safe(card.priority, MAX_SHORT, empty="normal")
    status = safe(card.status, MAX_SHORT, empty="?")
    color = _TONE_COLORS.get(card.tone, "Default")
    return _rich(_run(priority, weight="Bolder", color=color), _run(" · "), _run(status, fontType="Monospace"), spacing="None")


def _byline(card: Card) -> dict[str, Any]:
    author = name(card.author, MAX_FIELD) if (card.author or "").strip() else "unknown author"
    runs = [
        _run(customer(card.source, MAX_FIELD, empty="unknown source"), weight="Bolder", isSubtle=True),
        _run(" · from ", isSubtle=True),
        _run(author, isSubtle=True),
    ]
    at = when(card.created_at)
    if at:
        runs.append(_run(f" · {at}", isSubtle=True))
    return _rich(*runs, spacing="Small")


def _paragraphs(text: str | None) -> list[dict[str, Any]]:
    """The customer's words, cut to 3,000 chars, one RichTextBlock per line (bounded)."""
    cleaned = safe(text, MAX_TEXT)
    if not cleaned:
        return [_rich(_run("(no text)", italic=True, isSubtle=True))]
    lines = cleaned.split("\n")
    if len(lines) > MAX_TEXT_PARAGRAPHS:
        lines = lines[: MAX_TEXT_PARAGRAPHS - 1] + [" ".join(ln for ln in lines[MAX_TEXT_PARAGRAPHS - 1 :] if ln.strip())]
    blocks = [_rich(_run(isolate(line) if line.strip() else " "), spacing="None") for line in lines]
    blocks[0]["spacing"] = "Medium"
    blocks[0]["separator"] = True
    return blocks


def _fact(fact: Fact) -> dict[str, Any] | None:
    """`label value` as two runs (a person's name bold, the rest subtle), a label alone as a
    TextBlock, or None when the value has nothing to show."""
    if not fact.value:
        if fact.label in LABELS:
            return _text_block(fact.label, weight="Bolder")
        return _rich(_run(safe(fact.label, MAX_FIELD), weight="Bolder"))
    if fact.kind == "person":
        return _rich(_run(f"{fact.label} ", weight="Bolder"), _run(name(fact.value, MAX_FIELD)))
    value = customer(fact.value, MAX_FIELD)
    if not value:
        return None
    return _rich(_run(f"{fact.label} ", weight="Bolder", isSubtle=True), _run(value, isSubtle=True), spacing="None")


def _facts(card: Card) -> list[dict[str, Any]]:
    blocks = [block for block in map(_fact, card.facts) if block is not None]
    if blocks:
        blocks[0]["separator"] = True
    return blocks


def _reply_state(card: Card) -> list[dict[str, Any]]:
    """Where the latest reply stands, as an inert run (coloured by its tone: it failed, or waits)."""
    if not card.reply_note:
        return []
    color = _TONE_COLORS.get(card.reply_tone)
    style = {"color": color, "weight": "Bolder"} if color else {}
    return [_rich(_run(safe(card.reply_note, MAX_MESSAGE_TEXT), **style), separator=True)]


def _card_body(card: Card) -> list[dict[str, Any]]:
    return [_title(card), _badges(card), _byline(card), *_paragraphs(card.text), *_facts(card), *_reply_state(card)]


def card(card: Card, *, outcomes: Sequence[str], departments: Sequence[str] = ()) -> dict[str, Any]:
    """The Adaptive Card of a conversation as posted in a channel, with its actions (claim, reply, resolve…).

    Its buttons say they belong to a posted copy (`POSTED_COPY`): a click on a copy that was
    posted twice (a send whose result was lost) is recognised by the message it comes from.
    """
    return _envelope(_card_body(card), _as_posted(_actions(card.buttons, outcomes, departments)))


POSTED_COPY = "copy"  # a key of the data of a posted card's buttons (answers' buttons have none)


def _as_posted(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for action in actions:
        if action["type"] == "Action.Execute":
            action["data"] = {**action["data"], POSTED_COPY: 1}
        elif action["type"] == "Action.ShowCard":
            _as_posted(action["card"]["actions"])
    return actions


FROM_BATCH = "batch"  # a key of the data of a batch message's buttons: a click there leaves the batch card in place


def batch_card(batch: Batch) -> dict[str, Any]:
    """A channel's batch message: a title, then one compact line per conversation with its main button
    (Claim) under it, "…and N more", and where the full cards are."""
    body: list[dict[str, Any]] = [_rich(_run(safe(batch.title, MAX_TITLE, empty="New conversations"), weight="Bolder"))]
    for item in batch.listing.cards:
        body.append(_compact(item))
        button = main_button(item)
        if button is not None:
            action = _execute(button, button.label, "positive")
            action["data"] = {**action["data"], FROM_BATCH: 1}
            body.append({"type": "ActionSet", "actions": [action], "spacing": "None"})
    if batch.listing.more:
        body.append(_rich(_run(f"{ELLIPSIS}and {batch.listing.more} more", isSubtle=True)))
    body.append(_rich(_run(safe(batch.note, 300), isSubtle=True)))
    return _envelope(body)


def from_batch(data: Mapping[str, Any]) -> bool:
    """Whether a button's data comes from a batch message (`batch_card`)."""
    return data.get(FROM_BATCH) == 1


def from_posted_copy(data: Mapping[str, Any]) -> bool:
    """Whether a button's data comes from a card posted in a channel (`card`), not from an answer."""
    return data.get(POSTED_COPY) == 1


def duplicate_card(conversation_id: int, *, link: str | None, said: str = "") -> dict[str, Any]:
    """What an older copy of a conversation's card (posted twice) shows instead: where the live copy is.

    `said` is what the click on it did (the click was carried out like any other).
    """
    body = _message(said)
    body.append(
        _rich(_run(f"#{conversation_id} continues in a newer card", weight="Bolder", size="Medium"), separator=bool(body))
    )
    body.append(
        _rich(
            _run(
                "Teams received this card twice; this older copy is no longer updated. Its buttons still "
                f"work and notes in its thread are kept, but the live card shows where #{conversation_id} "
                "stands."
            ),
            spacing="Small",
        )
    )
    url = _safe_url(link)
    return _envelope(body, [{"type": "Action.OpenUrl", "title": "Go to the live card", "url": url}] if url else [])


def duplicate_summary(conversation_id: int) -> str:
    """The notification preview of `duplicate_card`."""
    return summary(f"#{conversation_id} continues in a newer card")


TEAMS_LINKS = "https://teams.microsoft.com/l/message"


def message_link(conversation_id: str, message_id: str, *, tenant_id: str | None) -> str | None:
    """A Teams deep link to a message: a channel post (a card starts its own thread) or a group chat's message.

    None for a 1:1 chat, whose bot conversation id (`a:…`) is not the chat id a link needs. The
    formats: MicrosoftDocs/msteams-docs, msteams-platform/concepts/build-and-test/deep-link-teams.md
    ("Deep link to navigate to channel conversation", "... to chat messages"); a channel message id is
    its creation time in epoch milliseconds, as that page's example shows for `createdTime`.
    """
    if not message_id.isdigit() or not conversation_id.startswith("19:"):
        return None
    if conversation_id.endswith(("@thread.tacv2", "@thread.skype")):
        query = {"parentMessageId": message_id, "createdTime": message_id}
    else:
        query = {"context": json.dumps({"contextType": "chat"}, separators=(",", ":"))}
    if tenant_id:
        query = {"tenantId": tenant_id, **query}
    return _safe_url(f"{TEAMS_LINKS}/{quote(conversation_id, safe=':@')}/{message_id}?{urlencode(query)}")


# --- results and messages ----------------------------------------------------------


def _compact(item: Card) -> dict[str, Any]:
    """One line of a list: `#id · status · author: summary`."""
    status = safe(item.status, MAX_SHORT, empty="?")
    author = name(item.author) if (item.author or "").strip() else "unknown author"
    return _rich(
        _run(f"#{item.id}", weight="Bolder"),
        _run(f" · {status} · "),
        _run(author),
        _run(": "),
        _run(customer(item.summary, MAX_SUMMARY, empty="(no text)")),
        spacing="Small",
    )


MAX_SNIPPET = 300


def _snippet(item: Card) -> dict[str, Any] | None:
    """A search's snippet under its line: each segment a TextRun (no markdown), the matched words bold."""
    runs, used = [], 0
    for text, matched in item.snippet:
        piece = safe(text, MAX_SNIPPET - used) if text.strip() else " "
        if not piece or used >= MAX_SNIPPET:
            break
        used += len(piece)
        runs.append(_run(piece, weight="Bolder") if matched else _run(piece, isSubtle=True))
    return _rich(_run(FSI), *runs, _run(PDI), spacing="None") if runs else None


def _card_list(listing: Listing) -> list[dict[str, Any]]:
    """Compact lines for the listed cards (each with its `list_note` or snippet under it), then "…and N more"."""
    blocks = []
    for item in listing.cards:
        blocks.append(_compact(item))
        if item.list_note:
            blocks.append(_rich(_run(customer(item.list_note, 2 * MAX_SUMMARY), isSubtle=True), spacing="None"))
        snippet = _snippet(item)
        if snippet is not None:
            blocks.append(snippet)
    if listing.more:
        blocks.append(_rich(_run(f"{ELLIPSIS}and {listing.more} more", isSubtle=True)))
    return blocks


def _history_line(line: HistoryLine) -> dict[str, Any]:
    runs = [
        _run(f"{when(line.at)} ", fontType="Monospace", isSubtle=True),
        _run(name(line.actor) if (line.actor or "").strip() else "unsilo", weight="Bolder"),
        _run(f" {safe(line.kind, MAX_SHORT)}"),
    ]
    detail = customer(line.detail, MAX_HISTORY_LINE)
    if detail:
        runs.append(_run(f" — {detail}"))
    return _rich(*runs, spacing="None")


def _history(lines: Sequence[HistoryLine]) -> list[dict[str, Any]]:
    blocks = [_text_block("History", weight="Bolder", separator=True)]
    blocks += [_history_line(line) for line in lines[:MAX_HISTORY_LINES]]
    if len(lines) > MAX_HISTORY_LINES:
        blocks.append(_rich(_run(f"{ELLIPSIS}and {len(lines) - MAX_HISTORY_LINES} more", isSubtle=True)))
    return blocks


def _message(text: str | None) -> list[dict[str, Any]]:
    """A message (ours or echoing people's input) as inert runs, one block per line."""
    cleaned = safe(text, MAX_MESSAGE_TEXT)
    if not cleaned:
        return []
    return [_rich(_run(line or " "), spacing="None") for line in cleaned.split("\n")[:60]]


def _notice_body(notice: Notice) -> list[dict[str, Any]]:
    """A notice's title and lines as inert runs (its mentions are added by `notice_card`)."""
    body = [_rich(_run(safe(notice.title, MAX_FIELD, empty="Unsilo"), weight="Bolder", size="Medium"))]
    body += [_rich(_run(safe(line, MAX_MESSAGE_TEXT) or " "), spacing="None") for line in notice.lines[:80]]
    return body


def _links(notice: Notice) -> list[dict[str, Any]]:
    """Every link of a notice (a digest's oldest unclaimed items…): three buttons, the rest in the overflow menu."""
    actions = []
    for label, url in notice.links:
        safe_url = _safe_url(url)
        if safe_url:
            actions.append(
                {"type": "Action.OpenUrl", "title": _cut(printable(label).strip() or "Open", MAX_ACTION_TITLE), "url": safe_url}
            )
    return overflow(actions)


def notice_card(notice: Notice) -> dict[str, Any]:
    """A notice (digest, escalation, reminder, failed reply, spike) as a card, links as OpenUrl actions,
    its own buttons first."""
    actions = overflow([*(_answer_action(a) for a in notice.actions), *_links(notice)])
    body = _notice_body(notice)
    mention_line, entities = _mentions(notice.mentions)
    if mention_line is not None:
        body.insert(1, mention_line)  # under the title
    return _envelope(body, actions, entities=entities)


def _mentions(mentions: Sequence[tuple[str, str]]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The Teams people among `mentions` as one TextBlock of `<at>Name</at>`, and their mention entities.

    The only markup a card carries: built here from a display name reduced to letters,
    digits, spaces and . ' - (never from customer text), matched to an entity by its text.
    """
    entities: list[dict[str, Any]] = []
    texts: set[str] = set()
    for key, name in mentions:
        platform, _, user_id = key.partition(":")
        if platform != "teams" or not _TEAMS_USER.fullmatch(user_id):
            continue
        shown = _cut(" ".join(_NOT_IN_NAME.sub(" ", printable(name)).split()), MAX_NAME) or "team member"
        if shown in texts:  # Teams tells entities apart by their text: namesakes get a number
            shown = next(f"{shown} {n}" for n in range(2, len(mentions) + 2) if f"{shown} {n}" not in texts)
        texts.add(shown)
        entities.append({"type": "mention", "text": f"<at>{shown}</at>", "mentioned": {"id": user_id, "name": shown}})
    if not entities:
        return None, []
    return {"type": "TextBlock", "text": " ".join(e["text"] for e in entities), "wrap": True}, entities


def result_card(result: Result, *, outcomes: Sequence[str], departments: Sequence[str] = ()) -> dict[str, Any]:
    """What a handler answered: text, notice, card list, full card with actions, history."""
    shown_by_notice = result.notice is not None and result.text.strip() == result.notice.title.strip()
    body = [] if shown_by_notice else _message(result.text)  # a digest's title once, not twice
    if result.notice is not None:
        body += _notice_body(result.notice)
    body += _card_list(result.listing)
    actions = _links(result.notice) if result.notice is not None else []
    if result.card is not None:
        body += _card_body(result.card)
        actions = _actions(result.card.buttons, outcomes, departments)
    if result.history:
        body += _history(result.history)
    actions = [*actions, *(_answer_action(a) for a in result.actions)][:MAX_ACTIONS]
    return _envelope(body or [_text_block("Done.")], actions)


def confirmation_card(result: Result) -> dict[str, Any]:
    """A command's answer in the conversation where it was typed: the outcome in words, one line
    about the conversation, and a Show button that brings its card as it is *now*.

    The full card with its buttons is not repeated here: that copy would be left out of every
    later update (it would still say "open" after a claim); the posted cards are kept current.
    """
    body = _message(result.text)
    actions: list[dict[str, Any]] = []
    if result.card is not None:
        body.append(_compact(result.card))
        actions = [_execute(Button(f"Show #{result.card.id}", "show", result.card.id), f"Show #{result.card.id}")]
    return _envelope(body or [_text_block("Done.")], actions)


def text_card(text: str) -> dict[str, Any]:
    """One message (help, refusals) as a card; backticks and markdown stay literal."""
    return _envelope(_message(text) or [_text_block("Done.")])


def refreshed_invoke_body(card_json: dict[str, Any]) -> dict[str, Any]:
    """The `adaptiveCard/action` invoke answer that replaces the card in place."""
    return {"statusCode": 200, "type": CARD_CONTENT_TYPE, "value": card_json}


def error_invoke_body(status: int, code: str, message: str) -> dict[str, Any]:
    """The `adaptiveCard/action` invoke answer for a refusal: Teams shows `message` and keeps the card
    (Universal Actions' `application/vnd.microsoft.error` response)."""
    return {"statusCode": status, "type": ERROR_CONTENT_TYPE, "value": {"code": code, "message": message}}


def message_invoke_body(text: str) -> dict[str, Any]:
    """The `adaptiveCard/action` invoke answer that shows a short message instead."""
    return {"statusCode": 200, "type": MESSAGE_CONTENT_TYPE, "value": text}


def attachment(card_json: dict[str, Any]) -> dict[str, Any]:
    """A card as a message attachment (Bot Framework JSON casing)."""
    return {"contentType": CARD_CONTENT_TYPE, "content": card_json}


def addressed_text(text: str, *, bot_mentions: Sequence[str], other_mentions: Sequence[tuple[str, str]]) -> str:
    """A message's text as the person meant it: the bot's own mentions removed, everyone else's
    kept as their plain name ("please ask <at>Megan Bowen</at> to call" -> "please ask Megan Bowen
    to call"), any leftover `<at>` tags dropped, whitespace collapsed.

    `other_mentions` are (markup, display name) pairs from the activity's mention entities.
    """
    for markup in bot_mentions:
        if markup:
            text = text.replace(markup, " ")
    for markup, shown in other_mentions:
        if markup:
            text = text.replace(markup, shown)
    return " ".join(_AT_TAGS.sub("", text).split())


def summary_of(result: Result) -> str:
    """What the notification preview of an answer says: its first line, else the notice or card it shows."""
    if result.text.strip():
        return summary(first_line(result.text))
    if result.notice is not None:
        return summary(result.notice.title)
    if result.card is not None:
        return card_summary(result.card)
    return ""


def card_summary(item: Card) -> str:
    """A card's notification preview: `#2 · open · <title or first line>` (Teams shows "Sent a card" without one)."""
    return summary(f"#{item.id} · {item.status} · {item.summary}")
