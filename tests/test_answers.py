"""The answer library: a sent reply saved with a title, found again, and a pre-approved one reused.

A pre-approved answer (its reply approved by a legal manager on a conversation the sensitive
"legal" rule held) reused unchanged on another conversation that rule holds is sent without a
second approval where the department allows it; one character more and it waits for approval.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from bot import cli, textcommands
from bot import commands as c
from bot.bootstrap import Container, load_config
from bot.domain import Forbidden, IllegalTransition
from bot.ingest import make_incoming
from tests.conftest import TEST_CONFIG

ALICE = c.Actor("slack", "alice", "Alice")  # writes the replies
BOB = c.Actor("slack", "bob", "Bob")  # a colleague: owns nothing, manages nothing
DANA = c.Actor("slack", "dana", "Dana")  # manager (approver) of legal
ANSWER = "We are sorry. Our legal team will call you within two working days about the refund."


@pytest.fixture
async def stores(make_container: Callable[..., Container], tmp_path: Path) -> AsyncIterator[tuple[Container, Container]]:
    """Two services on one store: legal allows reusing approved answers in the first, not in the second."""
    path = tmp_path / "reuse.toml"
    path.write_text(TEST_CONFIG.replace('channels = ["log:legal"]', 'channels = ["log:legal"]\nreuse_approved_answers = true'))
    allowing = make_container(config=load_config(path))
    await allowing.prepare()
    strict = make_container()
    await strict.prepare()
    yield allowing, strict
    await allowing.close()
    await strict.close()


async def _conversation(container: Container, text: str) -> int:
    item = make_incoming(source="listening", external_id=text[:30], text=text, url=f"https://forum.example/t/{abs(hash(text))}")
    return (await container.ingest([item])).new_ids[0]


async def _reply(container: Container, text: str, reply: str) -> tuple[int, str]:
    cid = await _conversation(container, text)
    await container.bus.handle(c.Claim(cid, ALICE))
    done = await container.bus.handle(c.ReplyToCustomer(cid, ALICE, reply))
    assert done is not None
    async with container.uow() as uow:
        latest = await uow.replies.latest(cid)
        assert latest is not None
        return cid, latest.status


async def _history(container: Container, cid: int) -> list[str]:
    shown = await container.bus.handle(c.Show(cid, ALICE))
    assert shown is not None
    return [f"{line.actor} {line.kind} {line.detail}" for line in shown.history]


async def test_a_pre_approved_answer_reused_unchanged_skips_approval_only_where_allowed(
    stores: tuple[Container, Container],
) -> None:
    container, strict = stores
    first, status = await _reply(container, "My lawyer will sue you over the invoice", ANSWER)
    assert status == "pending_approval"
    with pytest.raises(IllegalTransition, match="no reply that reached the customer"):
        await container.bus.handle(c.SaveAnswer(first, ALICE, "Legal callback"))  # not sent yet
    await container.bus.handle(c.ApproveReply(first, DANA))
    await container.bus.handle(c.MarkPosted(first, ALICE))  # a read-only source: posted by hand
    with pytest.raises(Forbidden, match="owner"):
        await container.bus.handle(c.SaveAnswer(first, BOB, "Mine now"))
    saved = await container.bus.handle(textcommands.parse(f'save answer #{first} "Legal callback"', ALICE))  # type: ignore[arg-type]
    assert saved is not None and "pre-approved by Dana for legal" in saved.text and "“Legal callback”" in saved.text

    # Unchanged, on another conversation the legal rule holds: sent without a second approval, and said so.
    again, status = await _reply(container, "A lawsuit is coming about my invoice", ANSWER)
    assert status == "recorded", "no approval asked"
    history = await _history(container, again)
    assert any("reused pre-approved answer #1 (approved by Dana)" in line for line in history), history
    assert not any("asked for approval" in line for line in history)

    # One character more: approval again, and the history says it was asked.
    edited, status = await _reply(container, "My lawyer says you owe me money", ANSWER + "!")
    assert status == "pending_approval"
    history = await _history(container, edited)
    assert any("asked for approval" in line for line in history) and not any("reused" in line for line in history)

    # Where the department does not allow it, unchanged text waits for approval too.
    unallowed, status = await _reply(strict, "I will sue, says my lawyer, over the invoice", ANSWER)
    assert status == "pending_approval"
    assert not any("reused" in line for line in await _history(strict, unallowed))

    listed = await container.bus.handle(c.SearchAnswers(BOB, ("refund", "callback")))
    assert listed is not None
    assert "#1 “Legal callback” — We are sorry." in listed.text
    assert "saved by Alice ✓ pre-approved, used 2 times" in listed.text  # both unchanged replies since; not the edit


async def test_answers_are_ranked_by_their_words_and_an_ordinary_one_is_not_pre_approved(
    stores: tuple[Container, Container],
) -> None:
    container, _ = stores
    cid, _ = await _reply(container, "my parcel never arrived", "A new parcel is on its way; the courier brings it tomorrow.")
    await container.bus.handle(c.MarkPosted(cid, ALICE))
    other, _ = await _reply(container, "the parcel came damaged", "Please send us a photo of the damaged box.")
    await container.bus.handle(c.MarkPosted(other, ALICE))
    command = cli._command(cli._parser().parse_args(["save-answer", str(cid), "--title", "Lost parcel", "--as", "alice"]))
    assert isinstance(command, c.SaveAnswer) and (command.conversation_id, command.title) == (cid, "Lost parcel")
    await container.bus.handle(c.SaveAnswer(cid, ALICE, "Lost parcel resent"))
    await container.bus.handle(c.SaveAnswer(other, ALICE, "Damaged parcel photo"))

    found = await container.bus.handle(textcommands.parse("answers parcel", BOB))  # type: ignore[arg-type]
    assert found is not None and found.text.startswith("2 saved answers for")
    assert "pre-approved" not in found.text
    best = await container.bus.handle(c.SearchAnswers(BOB, ("courier",)))
    assert best is not None and "“Lost parcel resent”" in best.text and "Damaged" not in best.text
    lines = (await container.bus.handle(c.SearchAnswers(BOB, ("damaged", "photo")))).text.splitlines()  # type: ignore[union-attr]
    assert lines[1].startswith("#") and "Damaged parcel photo" in lines[1]
    nothing = await container.bus.handle(c.SearchAnswers(BOB, ("invoice",)))
    assert nothing is not None and nothing.text.startswith("No saved answers")

    # The answers that fit a new conversation best: ranked by its most distinctive words.
    new = await _conversation(container, "the courier lost my parcel again, where is it")
    fit = await container.bus.handle(textcommands.parse(f"answers #{new}", BOB))  # type: ignore[arg-type]
    assert fit is not None and fit.text.splitlines()[1].startswith("#1 “Lost parcel resent”"), fit.text
    unrelated = await _conversation(container, "your invoice total looks odd to me")
    assert (await container.bus.handle(c.SearchAnswers(BOB, (), conversation_id=unrelated))).text.startswith("No saved")  # type: ignore[union-attr]


async def test_erasing_a_customer_erases_their_words_from_answers_saved_from_their_conversation(
    stores: tuple[Container, Container],
) -> None:
    container, _ = stores
    item = make_incoming(source="listening", external_id="q1", text="my kettle leaks", author_name="Quentin Zorro")
    cid = (await container.ingest([item])).new_ids[0]
    await container.bus.handle(c.Claim(cid, ALICE))
    await container.bus.handle(c.ReplyToCustomer(cid, ALICE, "Hi Quentin Zorro, a new kettle ships today."))
    await container.bus.handle(c.MarkPosted(cid, ALICE))
    await container.bus.handle(c.SaveAnswer(cid, ALICE, "Kettle for Quentin Zorro"))
    await container.bus.handle(c.Erase(ALICE, "GDPR request", conversation_id=cid))
    listed = await container.bus.handle(c.SearchAnswers(BOB, ("kettle",)))
    assert listed is not None and "kettle ships today" in listed.text
    assert "Zorro" not in listed.text and "Quentin" not in listed.text and "[erased]" in listed.text
