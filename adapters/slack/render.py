"""Block Kit rendering of the platform-neutral views (`bot.views`) for Slack.

Pure functions: a view goes in, a JSON-ready dict comes out; no I/O, no Bolt. Every
piece of untrusted text is escaped for mrkdwn and cut to Slack's limits here, once.
Lengths are counted in UTF-16 code units, as Slack's clients count them (an emoji is 2).
Every mrkdwn object is `verbatim: true`, so Slack never turns a bare URL or `#channel`
inside customer text into a link; customer text sits in a bidi isolate (`isolate`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bot import codec, verbs
from bot.views import (
    ELLIPSIS,
    SEEN_BEFORE,
    Action,
    Batch,
    Button,
    Card,
    Confirm,
    Fact,
    HistoryLine,
    Listing,
    Notice,
    Result,
    display_name,
    has_visible,
    isolate,
    main_button,
    printable,
    when,
)

logger = logging.getLogger(__name__)

ACTION_PREFIX = "unsilo:"

# Block Kit limits (PLATFORM_NOTES.md, Slack section).
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_FALLBACK_TEXT = 3000
MAX_ID = 255
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_URL = 3000
MAX_ACTIONS = 25
MAX_CONTEXT_ELEMENTS = 10
MAX_HEADER_TEXT = 150
MAX_MODAL_TEXT = 24
MAX_LABEL = 2000
MAX_INPUT = 3000
MAX_OPTIONS = 100
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_METADATA = 3000
MAX_CONFIRM_TITLE, MAX_CONFIRM_TEXT, MAX_CONFIRM_BUTTON = 100, 300, 30  # a button's confirmation dialog

# Our own, shorter caps so one field cannot crowd out the others.
MAX_TITLE = 250
MAX_CONTEXT_TEXT = 300
MAX_SUMMARY = 150
MAX_HISTORY_LINE = 300

READ_ORIGINAL = "Read the original"
_STYLES = {"primary": "primary", "danger": "danger"}
_PRIORITY_BADGES = {
    "urgent": ":rotating_light:",
    "high": ":red_circle:",
    "normal": ":large_blue_circle:",
    "low": ":white_circle:",
}
_URL_ESCAPES = {"|": "%7C", "<": "%3C", ">": "%3E", " ": "%20", '"': "%22"}
_HTTP_URL = re.compile(r"^https?://", re.IGNORECASE)
_TONE_BADGES = {"attention": ":warning: ", "warning": ":hourglass: "}  # a line's tone (`bot.views.Tone`)


# --- text --------------------------------------------------------------------------


def units(text: str) -> int:
    """The length of `text` as Slack counts it: UTF-16 code units (an emoji outside the BMP is 2)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def _head(text: str, limit: int) -> str:
    """The longest start of `text` within `limit` UTF-16 units (never half a character)."""
    used = 0
    for index, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > limit:
            return text[:index]
    return text


def escape(text: str) -> str:
    """Escape `&`, `<`, `>` for Slack mrkdwn (nothing else) and drop control characters."""
    return printable(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    """`text` within `limit` UTF-16 units, ending in "…" when cut, never mid-entity."""
    if units(text) <= limit:
        return text
    head = _head(text, limit - 1)
    amp = head.rfind("&", max(0, len(head) - 4))
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    return head + ELLIPSIS


def _esc(text: str | None, limit: int, *, empty: str = "") -> str:
    """Escaped, cut text; `empty` when nothing printable is left."""
    escaped = escape(text or "").strip()
    return _cut(escaped, limit) if escaped else empty


def _quote(escaped: str) -> str:
    """Escaped customer text as a mrkdwn block quote (the marker written escaped), each line isolated."""
    return "\n".join(f"&gt; {isolate(line)}" for line in escaped.split("\n"))


def _customer(text: str | None, limit: int, *, empty: str = "") -> str:
    """Customer text escaped, cut and isolated, so it can't reorder the card's own words."""
    if not has_visible(text):
        return empty
    return isolate(_esc(text, limit - 2))


def _name(name: str | None, limit: int) -> str:
    """A person's name: one line, no bidi or invisible characters, "(no name)" when blank; escaped."""
    return _cut(escape(display_name(name)), limit)


def _plain(text: str, limit: int) -> dict[str, Any]:
    """A plain_text object (our own labels; control characters dropped, cut)."""
    return {"type": "plain_text", "text": _cut(printable(text).strip() or "-", limit)}


def _mrkdwn(text: str) -> dict[str, Any]:
    """A mrkdwn object Slack shows as written: no auto-linked URLs, channels or mentions."""
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(_cut(text, MAX_SECTION_TEXT))}


def _context(texts: Iterable[str]) -> dict[str, Any]:
    elements = [_mrkdwn(_cut(t, MAX_SECTION_TEXT)) for t in texts if t][:MAX_CONTEXT_ELEMENTS]
    return {"type": "context", "elements": elements or [_mrkdwn("-")]}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": _plain(text, MAX_HEADER_TEXT)}


# --- links and buttons -------------------------------------------------------------


def _safe_url(url: str | None) -> str | None:
    """An http(s) URL with the characters that could end a mrkdwn link percent-encoded."""
    raw = printable(url or "").strip()
    if not raw or not _HTTP_URL.match(raw) or "\n" in raw or "\t" in raw:
        return None
    safe = "".join(_URL_ESCAPES.get(ch, ch) for ch in raw)
    return safe if units(safe) <= MAX_URL else None


def _link(url: str | None, label: str) -> str:
    """`<url|label>` for a safe URL (with `&` written as `&amp;`), or "" if unsafe."""
    safe = _safe_url(url)
    return f"<{safe.replace('&', '&amp;')}|{label}>" if safe else ""


def action_id(button: Button) -> str:
    """The button's `action_id`: one prefix for the single Bolt listener, then verb and id."""
    return f"{ACTION_PREFIX}{button.verb}:{button.conversation_id}"


def _button(button: Button) -> dict[str, Any] | None:
    """One button element, or None when it cannot be rendered within Slack's limits."""
    element: dict[str, Any] = {
        "type": "button",
        "text": _plain(button.label, MAX_BUTTON_TEXT),
        "action_id": action_id(button),
        "value": codec.encode(button),
    }
    if units(element["action_id"]) > MAX_ID or units(element["value"]) > MAX_BUTTON_VALUE:
        logger.warning("button %s for #%s exceeds Slack's id/value limits; left out", button.verb, button.conversation_id)
        return None
    if button.url is not None or button.verb == "open":
        url = _safe_url(button.url)
        if url is None:
            logger.warning("button %s for #%s has no safe http(s) URL; left out", button.verb, button.conversation_id)
            return None
        element["url"] = url
    if button.style in _STYLES:
        element["style"] = _STYLES[button.style]
    return element


def _actions(buttons: Sequence[Button]) -> dict[str, Any] | None:
    """An actions block of unique, renderable buttons (at most 25), or None if there are none."""
    elements: list[dict[str, Any]] = []
    seen: set[str] = set()
    for button in buttons:
        element = _button(button)
        if element is None or element["action_id"] in seen:
            continue
        seen.add(element["action_id"])
        elements.append(element)
    return {"type": "actions", "elements": elements[:MAX_ACTIONS]} if elements else None


def _confirm(confirm: Confirm) -> dict[str, Any]:
    """Block Kit's confirmation dialog object: Slack asks it before the click is sent."""
    return {
        "title": _plain(confirm.title, MAX_CONFIRM_TITLE),
        "text": _plain(confirm.text, MAX_CONFIRM_TEXT),
        "confirm": _plain(confirm.yes, MAX_CONFIRM_BUTTON),
        "deny": _plain(confirm.no, MAX_CONFIRM_BUTTON),
        "style": "danger",
    }


def _answer_actions(actions: Sequence[Action]) -> dict[str, Any] | None:
    """An actions block of an answer's own buttons (`Result.actions`), or None if none fits."""
    elements: list[dict[str, Any]] = []
    for index, action in enumerate(actions[:MAX_ACTIONS]):
        element: dict[str, Any] = {
            "type": "button",
            "text": _plain(action.label, MAX_BUTTON_TEXT),
            "action_id": f"{ACTION_PREFIX}{action.verb}:answer{index}",
            "value": codec.encode_action(action),
        }
        if units(element["action_id"]) > MAX_ID or units(element["value"]) > MAX_BUTTON_VALUE:
            logger.warning("answer button %s exceeds Slack's id/value limits; left out", action.verb)
            continue
        if action.style in _STYLES:
            element["style"] = _STYLES[action.style]
        if action.confirm is not None:
            element["confirm"] = _confirm(action.confirm)
        elements.append(element)
    return {"type": "actions", "elements": elements} if elements else None


# --- cards -------------------------------------------------------------------------


def _badges(card: Card) -> str:
    badge = _PRIORITY_BADGES.get(card.priority, "")
    return f"{badge} `{_esc(card.priority, 40, empty='normal')}` · `{_esc(card.status, 40, empty='?')}`".strip()


def _title_block(card: Card) -> dict[str, Any]:
    title = _customer(card.summary, MAX_TITLE, empty="(no title)")
    return _section(f"*#{card.id}* {title}\n{_badges(card)}")


def _byline(card: Card) -> dict[str, Any]:
    parts = [f"*{_esc(card.source, MAX_CONTEXT_TEXT, empty='unknown source')}*"]
    parts.append(f"from {_name(card.author, MAX_CONTEXT_TEXT)}")
    if card.created_at:
        parts.append(when(card.created_at))
    return _context([" · ".join(parts)])


def _text_block(card: Card) -> dict[str, Any]:
    """The customer's words as a quote, cut to fit, with a link to the original."""
    link = _link(card.url, READ_ORIGINAL)
    suffix = f"\n{link}" if link else ""
    quoted = _quote(_esc(card.text, MAX_SECTION_TEXT, empty="_(no text)_"))
    return {"type": "section", "text": _mrkdwn(_cut(quoted, MAX_SECTION_TEXT - units(suffix)) + suffix)}


def _fact(fact: Fact) -> str:
    """`label value` (the value escaped and cut; a person's name as a name), or the label alone."""
    if not fact.value:
        return escape(fact.label)
    value = _name(fact.value, MAX_CONTEXT_TEXT) if fact.kind == "person" else _esc(fact.value, MAX_CONTEXT_TEXT)
    return f"{escape(fact.label)} {value}" if value else ""


def _facts(card: Card) -> dict[str, Any]:
    return _context(_fact(fact) for fact in card.facts)


def _reply_block(card: Card) -> dict[str, Any] | None:
    """Where the latest reply stands (held, recorded for posting by hand, failed...), if there is one."""
    if not card.reply_note:
        return None
    badge = _TONE_BADGES.get(card.reply_tone, "")
    return _section(badge + _esc(card.reply_note, MAX_SECTION_TEXT - units(badge)))


def _card_blocks(card: Card) -> list[dict[str, Any]]:
    blocks = [_title_block(card), _byline(card), _text_block(card), _facts(card)]
    reply = _reply_block(card)
    if reply is not None:
        blocks.append(reply)
    actions = _actions(card.buttons)
    return blocks + [actions] if actions else blocks


def _fallback(card: Card) -> str:
    head = f"#{card.id} [{card.priority}/{card.status}] {card.summary} — {card.author}: {card.text}"
    return _esc(head, MAX_FALLBACK_TEXT, empty=f"#{card.id}")


def card_message(card: Card) -> dict[str, Any]:
    """`{"text", "blocks"}` of a card, for chat.postMessage / chat.update."""
    return {"text": _fallback(card), "blocks": _card_blocks(card)[:MAX_MESSAGE_BLOCKS]}


# --- results -----------------------------------------------------------------------


def _compact(card: Card, *, outcome: bool = False) -> dict[str, Any]:
    """One line of a list: `#id · status · author: summary`."""
    status = _esc(card.status, 40, empty="?")
    if outcome and card.outcome:
        status = f"{status} ({_esc(card.outcome, 60)})"
    author = _name(card.author, 80)
    return _section(f"*#{card.id}* · {status} · {author}: {_customer(card.summary, MAX_SUMMARY, empty='(no text)')}")


MAX_SNIPPET = 400


def _snippet(card: Card) -> str:
    """A search's snippet in mrkdwn: every segment escaped, the matched words bold, isolated; "" if none."""
    parts, used = [], 0
    for text, matched in card.snippet:
        escaped = escape(" ".join(text.split()))
        if not escaped or used + units(escaped) > MAX_SNIPPET:
            break
        used += units(escaped) + 3
        lead = " " if text[:1].isspace() else ""
        trail = " " if text[-1:].isspace() else ""
        # Bold only around a word: mrkdwn ignores `*` next to a space. A `*` inside is dropped (it would end the bold).
        word = escaped.replace("*", "")
        parts.append(f"{lead}*{word}*{trail}" if matched and word else lead + escaped + trail)
    return isolate("".join(parts).strip()) if parts else ""


def _seen_line(card: Card) -> str:
    """The App Home's short "seen before" line under a card: the ids only."""
    return f"{SEEN_BEFORE} " + ", ".join(f"#{item.id}" for item in card.seen_before) if card.seen_before else ""


def _card_list(listing: Listing, *, outcome: bool = False, seen: bool = False) -> list[dict[str, Any]]:
    """Compact sections for the listed cards (each with its `list_note`, search snippet and, with `seen`,
    its "seen before" ids under it), then "…and N more"."""
    blocks = []
    for card in listing.cards:
        blocks.append(_compact(card, outcome=outcome))
        if card.list_note:
            blocks.append(_context([_customer(card.list_note, MAX_CONTEXT_TEXT)]))
        under = [text for text in (_snippet(card), _seen_line(card) if seen else "") if text]
        if under:
            blocks.append(_context(under))
    if listing.more:
        blocks.append(_context([f"{ELLIPSIS}and {listing.more} more"]))
    return blocks


def _history_line(line: HistoryLine) -> str:
    detail = _esc(line.detail, MAX_HISTORY_LINE)
    text = f"`{when(line.at)}` *{_name(line.actor, 80) if line.actor else 'unsilo'}* {_esc(line.kind, 40)}"
    return f"{text} — {detail}" if detail else text


def _history(lines: Sequence[HistoryLine]) -> dict[str, Any]:
    """The audit lines in one section, as many as fit, then "…and N more"."""
    rendered: list[str] = []
    budget = MAX_SECTION_TEXT - 40  # room for the "…and N more" line
    for index, line in enumerate(lines):
        text = _history_line(line)
        if sum(units(r) + 1 for r in rendered) + units(text) > budget:
            rendered.append(f"{ELLIPSIS}and {len(lines) - index} more")
            break
        rendered.append(text)
    return _section("\n".join(rendered))


def _mention(identity: str) -> str:
    """`<@U123>` for a Slack identity ("slack:U123"); "" for other platforms or anything odd."""
    platform, _, user_id = identity.partition(":")
    return f"<@{user_id}>" if platform == "slack" and re.fullmatch(r"[UW][A-Z0-9]{2,20}", user_id) else ""


def notice_blocks(notice: Notice) -> list[dict[str, Any]]:
    """A notice (digest, escalation, reminder, failed reply) as blocks; every line escaped."""
    mentions = " ".join(m for m in (_mention(key) for key, _ in notice.mentions) if m)
    blocks: list[dict[str, Any]] = [
        _section(f"*{_esc(notice.title, MAX_TITLE, empty='Unsilo')}*" + (f"\n{mentions}" if mentions else ""))
    ]
    body: list[str] = []
    for line in notice.lines:
        text = _esc(line, MAX_SECTION_TEXT - 40)
        if not text.strip():
            continue
        if body and sum(units(b) + 1 for b in body) + units(text) > MAX_SECTION_TEXT - 40:
            blocks.append(_section("\n".join(body)))
            body = []
        body.append(text)
    if body:
        blocks.append(_section("\n".join(body)))
    links = [link for link in (_link(url, _esc(label, 80, empty="link")) for label, url in notice.links) if link]
    if links:
        blocks.append(_context([_head(" · ".join(links), MAX_CONTEXT_TEXT)]))
    actions = _answer_actions(notice.actions)
    if actions is not None:  # last, and kept when the blocks are cut to Slack's limit
        return [*blocks[: MAX_MESSAGE_BLOCKS - 1], actions]
    return blocks[:MAX_MESSAGE_BLOCKS]


def notice_message(notice: Notice) -> dict[str, Any]:
    """`{"text", "blocks"}` of a notice, for chat.postMessage."""
    mentions = " ".join(m for m in (_mention(key) for key, _ in notice.mentions) if m)
    fallback = _cut(f"{mentions} {_esc(notice.title, MAX_TITLE, empty='Unsilo')}".strip(), MAX_FALLBACK_TEXT)
    return {"text": fallback, "blocks": notice_blocks(notice)}


def result_message(result: Result) -> dict[str, Any]:
    """`{"text", "blocks"}` answering one person (ephemeral): text, card list, card, history, notice."""
    text = _esc(result.text, MAX_SECTION_TEXT)
    blocks: list[dict[str, Any]] = [_section(text)] if text else []
    if result.notice is not None:
        blocks += notice_blocks(result.notice)
    blocks += _card_list(result.listing)
    if result.card is not None:
        blocks += _card_blocks(result.card)
    if result.history:
        blocks.append(_history(result.history))
    answer_actions = _answer_actions(result.actions)
    if answer_actions is not None:  # last, and kept when the blocks are cut to Slack's limit
        blocks = [*blocks[: MAX_MESSAGE_BLOCKS - 1], answer_actions]
    fallback = _cut(text, MAX_FALLBACK_TEXT) or (_fallback(result.card) if result.card else "Done.")
    return {"text": fallback, "blocks": blocks[:MAX_MESSAGE_BLOCKS] or [_section(fallback)]}


def batch_message(batch: Batch) -> dict[str, Any]:
    """`{"text", "blocks"}` of a channel's batch message: a title, then one compact section per conversation
    with its main button (Claim) beside it, "…and N more", and where the full cards are."""
    blocks: list[dict[str, Any]] = [_section(f"*{_esc(batch.title, MAX_TITLE, empty='New conversations')}*")]
    for card in batch.listing.cards:
        section = _compact(card)
        button = main_button(card)
        element = _button(button) if button is not None else None
        if element is not None:
            section["accessory"] = element
        blocks.append(section)
    if batch.listing.more:
        blocks.append(_context([f"{ELLIPSIS}and {batch.listing.more} more"]))
    blocks.append(_context([_esc(batch.note, MAX_CONTEXT_TEXT)]))
    if len(blocks) > MAX_MESSAGE_BLOCKS:
        blocks = [*blocks[: MAX_MESSAGE_BLOCKS - 1], blocks[-1]]
    return {"text": _cut(_esc(batch.title, MAX_TITLE, empty="New conversations"), MAX_FALLBACK_TEXT), "blocks": blocks}


# --- modals and home ---------------------------------------------------------------


def _metadata(data: Mapping[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _modal(*, callback_id: str, title: str, submit: str, metadata: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    if units(callback_id) > MAX_ID or units(metadata) > MAX_METADATA:
        raise ValueError(f"modal {callback_id[:40]!r} exceeds Slack's callback_id/private_metadata limits")
    return {
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": metadata,
        "title": _plain(title, MAX_MODAL_TEXT),
        "submit": _plain(submit, MAX_MODAL_TEXT),
        "close": _plain("Cancel", MAX_MODAL_TEXT),
        "blocks": blocks[:MAX_VIEW_BLOCKS],
    }


def _text_input(
    *, label: str, initial: str = "", optional: bool = False, multiline: bool = True, block: str = "text"
) -> dict[str, Any]:
    action = block.partition(PICKED_SEP)[0]
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": action, "multiline": multiline, "max_length": MAX_INPUT}
    initial = _head(printable(initial), MAX_INPUT)
    if initial:
        element["initial_value"] = initial
    return {"type": "input", "block_id": block, "optional": optional, "label": _plain(label, MAX_LABEL), "element": element}


def _options(values: Sequence[str]) -> list[dict[str, Any]]:
    """Select options; values too long to round-trip intact are left out, not cut."""
    options = []
    for value in dict.fromkeys(values):
        if not value or units(value) > MAX_OPTION_VALUE:
            logger.warning("option %r cannot be offered in a Slack select; left out", value[:40])
            continue
        options.append({"text": _plain(value, MAX_OPTION_TEXT), "value": value})
    return options[:MAX_OPTIONS]


def _select(*, block: str, label: str, options: list[dict[str, Any]], optional: bool, hint: str = "") -> dict[str, Any]:
    element = {"type": "static_select", "action_id": block, "placeholder": _plain("Choose…", 150), "options": options}
    input_block: dict[str, Any] = {
        "type": "input",
        "block_id": block,
        "optional": optional,
        "label": _plain(label, MAX_LABEL),
        "element": element,
    }
    if hint:
        input_block["hint"] = _plain(hint, MAX_LABEL)
    return input_block


FORM_PREFIX = "unsilo_"  # a verb's form: callback_id "unsilo_<verb>"


PICK_ACTION = "unsilo_pick_answer"  # the reply form's select of saved answers (a block action inside the view)
PICKED_SEP = "~"  # a text input's block_id after an answer was picked: "text~12" (read back as "text")


def _picker(block: str, picks: Sequence[tuple[int, str]], picked: int | None) -> dict[str, Any]:
    """The select of saved answers a form starts from: choosing one sends a block action at once
    (`dispatch_action`), which fills the text (`views.update`); its value is the answer's id."""
    options = [{"text": _plain(title or f"Answer #{aid}", MAX_OPTION_TEXT), "value": str(aid)} for aid, title in picks]
    element: dict[str, Any] = {
        "type": "static_select",
        "action_id": PICK_ACTION,
        "placeholder": _plain("Start from a saved answer…", 150),
        "options": options[:MAX_OPTIONS],
    }
    chosen = next((o for o in options if o["value"] == str(picked)), None)
    if chosen is not None:
        element["initial_option"] = chosen
    return {
        "type": "input",
        "block_id": block,
        "optional": True,
        "dispatch_action": True,
        "label": _plain("Saved answers that fit", MAX_LABEL),
        "element": element,
        "hint": _plain("Choosing one puts its text below; edit it as you like (an edited answer is a new reply).", MAX_LABEL),
    }


def block_of(view: Mapping[str, Any], name: str) -> str:
    """The block_id of a form's input `name` as the view shows it ("text~12" once an answer filled it)."""
    for block in view.get("blocks") or ():
        block_id = str(block.get("block_id") or "") if isinstance(block, Mapping) else ""
        if block_id.partition(PICKED_SEP)[0] == name:
            return block_id
    return name


def picks_of(view: Mapping[str, Any]) -> list[tuple[int, str]]:
    """The saved answers an open form's select offers, as (id, title), from the view Slack sent back."""
    for block in view.get("blocks") or ():
        element = block.get("element") if isinstance(block, Mapping) else None
        if isinstance(element, Mapping) and element.get("action_id") == PICK_ACTION:
            found = []
            for option in element.get("options") or ():
                value = verbs.picked_id(str(option.get("value") or ""))
                if value is not None:
                    found.append((value, str((option.get("text") or {}).get("text") or "")))
            return found
    return []


def form_modal(
    button: Button,
    *,
    choices: Mapping[str, Sequence[str]],
    initial: Mapping[str, str] | None = None,
    picked: int | None = None,
) -> dict[str, Any]:
    """The modal asking for a button's inputs (`Button.inputs`, from the verb table) about one conversation:
    a text input or a select per input, each in a block named after the input; first, when the button
    offers saved answers (`Button.picks`), their select. `picked`: the answer just chosen, whose text is
    in `initial`: the text inputs it fills get a new block_id (Slack keeps what was typed in a block it
    already shows, whatever its new initial value)."""
    blocks = []
    verb = verbs.get(button.verb)
    if button.picks and verb is not None and verb.picks:
        blocks.append(_picker(verb.picks, button.picks, picked))
    for wanted in button.inputs:
        if wanted.kind == "choice":
            options = _options(choices.get(wanted.choices) or ())
            if not options:
                raise ValueError(f"{button.verb}'s form needs at least one {wanted.choices} value that fits in a Slack option")
            blocks.append(_select(block=wanted.name, label=wanted.label, options=options, optional=not wanted.required))
        else:
            text = (initial or {}).get(wanted.name, "")
            block = f"{wanted.name}{PICKED_SEP}{picked}" if picked is not None and wanted.name in (initial or {}) else wanted.name
            blocks.append(
                _text_input(
                    label=wanted.label, initial=text, optional=not wanted.required, multiline=wanted.multiline, block=block
                )
            )
    return _modal(
        callback_id=f"{FORM_PREFIX}{button.verb}",
        title=button.title or button.label,
        submit=button.submit or button.label,
        metadata=_metadata({"id": button.conversation_id}),
        blocks=blocks,
    )


def _report_metadata(*, channel: str, message_ts: str, link: str, text: str) -> str:
    """channel/ts/link/text as JSON within 3,000 chars: the text is cut, then the link dropped."""
    if units(_metadata({"channel": channel, "ts": message_ts, "link": link, "text": ""})) > MAX_METADATA:
        logger.warning("report link too long for private_metadata (%d chars); kept only in the form", len(link))
        link = ""
    data = {"channel": channel, "ts": message_ts, "link": link, "text": text}
    encoded = _metadata(data)
    while units(encoded) > MAX_METADATA:
        data["text"] = _head(data["text"], units(data["text"]) - (units(encoded) - MAX_METADATA) - 1)
        encoded = _metadata(data)
    if data["text"] != text:
        logger.info("reported text cut from %d to %d chars to fit private_metadata", len(text), len(data["text"]))
    return encoded


def report_modal(*, departments: Sequence[str], text: str, link: str, channel: str, message_ts: str) -> dict[str, Any]:
    """The "report to Unsilo" modal for a chat message: quote, optional department, link.

    `private_metadata` carries channel, ts, link and the raw text (cut to fit) for the submission.
    """
    quoted = _quote(_esc(text, MAX_SECTION_TEXT, empty="_(no text)_"))
    blocks = [_section(quoted)]
    options = _options(departments)
    if options:
        blocks.append(
            _select(
                block="department",
                label="Department",
                options=options,
                optional=True,
                hint="Leave empty to let the routing rules decide.",
            )
        )
    blocks.append(
        _text_input(label="Link to the original (optional)", initial=link, optional=True, multiline=False, block="link")
    )
    return _modal(
        callback_id="unsilo_report",
        title="Report to Unsilo",
        submit="Report",
        metadata=_report_metadata(channel=channel, message_ts=message_ts, link=link, text=text),
        blocks=blocks,
    )


def _counts(counts: Mapping[str, int]) -> dict[str, Any]:
    lines = [f"{_esc(name, 80, empty='?')}: {count}" for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return _section("\n".join(lines) if lines else "Nothing open. :tada:")


def _listing(result: Result, *, empty: str, outcome: bool = False, seen: bool = False) -> list[dict[str, Any]]:
    if result.cards:
        return _card_list(result.listing, outcome=outcome, seen=seen)  # in the core's order: a queue is urgent first, then oldest
    return [_context([_esc(result.text, MAX_CONTEXT_TEXT) or empty])]


def home_view(*, mine: Result, queue: Result, recent: Result) -> dict[str, Any]:
    """The App Home tab: your conversations, what is open by department, recent outcomes."""
    blocks: list[dict[str, Any]] = [_header("Your conversations")]
    blocks += _listing(mine, empty="Nothing claimed by you.", seen=True)
    blocks += [{"type": "divider"}, _header("Open by department"), _counts(queue.counts)]
    if queue.cards:
        blocks += _listing(queue, empty="")
    blocks += [{"type": "divider"}, _header("Recent outcomes")]
    blocks += _listing(recent, empty="No outcomes yet.", outcome=True)
    return {"type": "home", "blocks": blocks[:MAX_VIEW_BLOCKS]}


# --- submissions -------------------------------------------------------------------


def _element_value(element: Mapping[str, Any]) -> str:
    if element.get("type") in ("static_select", "external_select", "radio_buttons"):
        option = element.get("selected_option")
        element = option if isinstance(option, Mapping) else {}
    value = element.get("value")
    return value if isinstance(value, str) else ""


def values_of(view_state: Mapping[str, Any]) -> dict[str, str]:
    """`{block_id: value}` from a submitted view (or its `state`); empty inputs read as ""."""
    state = view_state.get("state", view_state)
    values = state.get("values") if isinstance(state, Mapping) else None
    result: dict[str, str] = {}
    for block_id, actions in (values if isinstance(values, Mapping) else {}).items():
        if not isinstance(actions, Mapping) or not actions:
            continue
        name = str(block_id).partition(PICKED_SEP)[0]  # "text~12": the text input an answer filled
        element = actions.get(name) or next(iter(actions.values()))
        result[name] = _element_value(element) if isinstance(element, Mapping) else ""
    return result
