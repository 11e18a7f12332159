"""A batched channel's message as each platform shows it: one compact line per new conversation with its
Claim button, customer text inert, valid Block Kit (slack_sdk's models and our limits) and a valid
Adaptive Card 1.5 (the official schema); the terminal's lines say what to type."""

from __future__ import annotations

import pytest

from adapters.slack.render import batch_message
from adapters.teams import render as teams
from bot import codec, terminal
from bot.domain import Status
from bot.views import Batch, Listing, main_button
from tests.cards import make_card
from tests.conftest import reference_dir
from tests.test_slack_render import NASTY, check_message, check_no_live_markup
from tests.test_teams_render import check_card, of_type, runs_text


def _batch(count: int = 3, *, author: str = "Ann Customer", text: str = "My parcel never arrived") -> Batch:
    cards = [make_card(id=40 + i, author=author, title="", text=text, status=Status.OPEN.value) for i in range(count)]
    cards.append(make_card(id=99, status=Status.CLAIMED.value, owner="Carol"))  # claimed meanwhile: no Claim
    return Batch(f"{count + 1} new conversations, 09:00-09:15 UTC", Listing.of(cards))


def test_the_slack_batch_message_lists_each_conversation_with_its_claim_button() -> None:
    message = batch_message(_batch())
    check_message(message)
    check_no_live_markup(message)
    sections = [b for b in message["blocks"] if b["type"] == "section"]
    assert sections[0]["text"]["text"] == "*4 new conversations, 09:00-09:15 UTC*"
    buttons = [s["accessory"] for s in sections[1:] if "accessory" in s]
    assert [codec.decode(b["value"]) for b in buttons] == [("claim", 40), ("claim", 41), ("claim", 42)]
    assert "#99" in sections[4]["text"]["text"] and "accessory" not in sections[4]
    assert message["blocks"][-1]["elements"][0]["text"] == "Full cards are in this message's thread."


def test_a_long_batch_stays_within_slacks_fifty_blocks_and_counts_the_rest() -> None:
    message = batch_message(_batch(50))
    check_message(message)
    assert "and 31 more" in str(message["blocks"])


@pytest.mark.parametrize("nasty", NASTY)
def test_customer_text_in_a_batch_is_inert_on_slack(nasty: str) -> None:
    message = batch_message(_batch(2, author=nasty, text=nasty))
    check_message(message)
    check_no_live_markup(message)


def test_the_teams_batch_card_is_a_valid_adaptive_card_whose_claims_leave_it_in_place() -> None:
    if not (reference_dir() / "schemas").is_dir():
        pytest.skip(f"the official schemas are not in {reference_dir()}")
    card_json = teams.batch_card(_batch())
    check_card(card_json)
    executes = of_type(card_json, "Action.Execute")
    assert [codec.decode(e["data"]) for e in executes] == [("claim", 40), ("claim", 41), ("claim", 42)]
    assert all(teams.from_batch(e["data"]) and not teams.from_posted_copy(e["data"]) for e in executes)
    assert "4 new conversations, 09:00-09:15 UTC" in runs_text(card_json) and "#99" in runs_text(card_json)


@pytest.mark.parametrize("nasty", NASTY)
def test_customer_text_in_a_batch_is_inert_on_teams(nasty: str) -> None:
    if not (reference_dir() / "schemas").is_dir():
        pytest.skip(f"the official schemas are not in {reference_dir()}")
    check_card(teams.batch_card(_batch(2, author=nasty, text=nasty)))


def test_the_terminal_batch_says_what_to_type_and_drops_control_characters() -> None:
    lines = terminal.batch_lines(_batch(1, author="Eve\x1b[31m", text="red\x1b]8;;https://evil\x07"))
    assert lines[0] == "2 new conversations, 09:00-09:15 UTC"
    assert lines[1].endswith("[Claim: claim #40]") and "\x1b" not in "".join(lines)
    assert "#99" in lines[2] and "claim #99" not in lines[2]
    assert main_button(make_card(status=Status.RESOLVED.value)) is None
