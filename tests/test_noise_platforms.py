"""A channel's noise budget on the real platforms' stand-ins: the batch message is one channel post, its
cards follow in its thread, a Claim from it leaves the list in place and updates the full card, and a
crash right after posting it never posts it twice."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.slack.sender import SlackSender
from bot import codec
from bot.ingest import make_incoming
from bot.outbox import DeliveryWorker, Job, Sent
from tests.conftest import FakeClock
from tests.slack_support import running_slack
from tests.teams_support import CHANNEL, running_teams


async def test_on_slack_the_batch_is_one_channel_message_with_the_cards_in_its_thread(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 16, 9, 0, 30, tzinfo=UTC))
    async with running_slack(tmp_path, clock=clock) as slack:
        await slack.container.prepare()
        status, answer, _ = await slack.command("mode batched 15m", user="UMANAGER", channel="C0SUPPORT")
        assert (status, answer) == (200, "This channel now gets new conversations batched every 15m (until `mode reset`)")
        status, answer, _ = await slack.command("mode digest-only", user="UALICE", channel="C0SUPPORT")
        assert "only managers of support or admins" in answer
        ids = []
        for key, text in (("a", "my refund never came"), ("b", "the app is broken")):
            ids.append((await slack.container.ingest([make_incoming(source="forum", external_id=key, text=text)])).new_ids[0])
        await slack.deliver()
        assert slack.slack.messages("C0SUPPORT") == []
        clock.advance(minutes=15)
        await slack.deliver()
        batch, *cards = slack.slack.messages("C0SUPPORT")
        assert "thread_ts" not in batch and batch["text"] == "2 new conversations, 09:00-09:15 UTC"
        assert [card.get("thread_ts") for card in cards] == [batch["ts"], batch["ts"]]  # the full cards, in its thread
        claim = next(b["accessory"] for b in batch["blocks"] if b.get("accessory"))
        assert codec.decode(claim["value"]) == ("claim", ids[0])
        status, _, _ = await slack.click(claim["action_id"], claim["value"], user="UMANAGER", message_ts=batch["ts"])
        assert status == 200
        for _ in range(100):  # the click's work runs after the ack
            async with slack.container.uow() as uow:
                if (await uow.conversations.get(ids[0])).status == "claimed":  # type: ignore[union-attr]
                    break
            await asyncio.sleep(0.02)
        await slack.deliver()
        shown = slack.slack.message("C0SUPPORT", cards[0]["ts"])
        assert shown is not None and "Claimed by" in json.dumps(shown["blocks"])  # the full card, updated in place
        assert len(slack.slack.messages("C0SUPPORT")) == 3  # and nothing new posted
        kept = slack.slack.message("C0SUPPORT", batch["ts"])
        assert kept is not None and kept["text"] == batch["text"]  # the batch message stays the list it was


async def test_on_teams_the_batch_starts_a_thread_its_cards_reply_in_it_and_a_claim_keeps_the_list(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 16, 9, 0, 30, tzinfo=UTC))
    async with running_teams(tmp_path, clock=clock) as teams:
        status, _ = await teams.mention("link support", user="aad-admin")
        assert status in (200, 201)
        status, _ = await teams.mention("mode batched 15m", user="aad-manager")
        assert status in (200, 201)
        ids = []
        for key, text in (("a", "my refund never came"), ("b", "the app is broken")):
            ids.append((await teams.container.ingest([make_incoming(source="forum", external_id=key, text=text)])).new_ids[0])
        await teams.deliver()
        assert teams.connector.calls_to("create") == []  # the window is open: nothing posted yet
        clock.advance(minutes=15)
        await teams.deliver()
        (created,) = teams.connector.calls_to("create")  # one new channel post: the batch
        batch_card = created.body["activity"]["attachments"][0]["content"]
        batch_id = created.response["activityId"] if created.response else ""
        shown = teams.connector.activities(f"{CHANNEL};messageid={batch_id}")
        assert len(shown) == 3  # the batch, and both full cards as replies in its thread
        assert [a["conversation"]["id"] for a in shown[1:]] == [f"{CHANNEL};messageid={batch_id}"] * 2
        first = next(b["actions"][0] for b in batch_card["body"] if b["type"] == "ActionSet")  # the first line's Claim
        status, body = await teams.click({"actions": [first]}, "claim", batch_id, user="aad-manager", name="Maria")
        assert status == 200 and body["type"] == "application/vnd.microsoft.activity.message"  # the list stays
        async with teams.container.uow() as uow:
            assert (await uow.conversations.get(ids[0])).status == "claimed"  # type: ignore[union-attr]
            posting = await uow.postings.in_channel(ids[0], "teams", CHANNEL)
        await teams.deliver()
        assert posting is not None and posting.message_id in {a["id"] for a in shown[1:]}
        card = teams.connector.activity(CHANNEL, posting.message_id)
        assert card is not None and card["summary"].startswith(f"#{ids[0]} · claimed")  # updated in its thread
        assert len(teams.connector.activities(CHANNEL)) == 3 + 2  # the batch, its cards; the link and mode answers


class Crash(BaseException):
    """The process dies right after a send, before the outbox records it."""


async def test_a_crash_right_after_posting_the_batch_message_on_slack_never_posts_it_twice(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 11, 16, 9, 0, 30, tzinfo=UTC))
    async with running_slack(tmp_path, clock=clock) as slack:
        await slack.container.prepare()
        await slack.command("mode batched 15m", user="UMANAGER", channel="C0SUPPORT")
        for key, text in (("a", "my refund never came"), ("b", "the app is broken")):
            await slack.container.ingest([make_incoming(source="forum", external_id=key, text=text)])
        clock.advance(minutes=15)
        real = SlackSender(slack.container.senders["slack"].client)  # type: ignore[attr-defined]

        class DiesAfterPosting:
            async def send(self, job: Job) -> Sent:
                await real.send(job)
                raise Crash()

        with pytest.raises(Crash):
            await DeliveryWorker(slack.container.uow, {"slack": DiesAfterPosting()}).run_once()
        assert [m.get("metadata", {}).get("event_type") for m in slack.slack.messages("C0SUPPORT")] == ["unsilo_batch"]
        clock.advance(minutes=2)  # the dead worker's lease runs out
        await DeliveryWorker(slack.container.uow, {"slack": real}).run_until_idle()
        batch, *cards = slack.slack.messages("C0SUPPORT")
        assert batch["metadata"]["event_type"] == "unsilo_batch" and len(cards) == 2, "the list was posted again"
        assert [card.get("thread_ts") for card in cards] == [batch["ts"]] * 2
