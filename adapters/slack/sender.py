"""The outbox's Slack sender: posts a card once, updates it afterwards, honours 429 Retry-After."""

from __future__ import annotations

import logging
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.render import batch_message, card_message, notice_message
from bot.outbox import Job, PermanentFailure, RetryLater, Sent, notice_of

logger = logging.getLogger(__name__)

CARD_EVENT = "unsilo_card"  # message metadata event type of every card Unsilo posts
BATCH_EVENT = "unsilo_batch"  # and of every batch message (`bot.noise`), with its delivery key
HISTORY_SLACK_SECONDS = 5.0  # history is searched from this long before the unrecorded attempt
HISTORY_PAGES = 5  # at most 1,000 messages are looked through

# Errors that no retry can fix: the card would never arrive, so say so at once.
PERMANENT = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "invalid_auth",
        "account_inactive",
        "token_revoked",
        "no_permission",
        "missing_scope",
        "invalid_blocks",
        "msg_too_long",
    }
)


class SlackSender:
    """Sends cards (`chat.postMessage`, then `chat.update`) and notices (into the card's thread,
    a channel, or a person's DM when the channel is a user id)."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def send(self, job: Job) -> Sent:
        """Post the card (first time) or update the posted copy, or post a notice; map Slack's errors."""
        try:
            if job.kind == "notice":
                return await self._notice(job)
            if job.kind == "batch" and job.batch is not None:
                earlier = await self._already_posted(job) if job.attempted_at else None
                if earlier:  # a crash after the post: the list is there, its cards follow in its thread
                    return Sent(message_id=earlier)
                response = await self.client.chat_postMessage(
                    channel=job.channel_id,
                    unfurl_links=False,
                    unfurl_media=False,
                    metadata={"event_type": BATCH_EVENT, "event_payload": {"delivery": job.key}},
                    **batch_message(job.batch),
                )
                return Sent(message_id=response["ts"])
            if job.kind != "card" or job.card is None:
                raise PermanentFailure(f"the Slack sender cannot send {job.kind!r} deliveries")
            message = card_message(job.card)
            posted = job.message_id or (await self._already_posted(job) if job.attempted_at else None)
            if posted:
                await self.client.chat_update(channel=job.channel_id, ts=posted, **message)
                return Sent(message_id=posted)
            metadata = {"event_type": CARD_EVENT, "event_payload": {"conversation_id": job.card.id, "delivery": job.key}}
            response = await self.client.chat_postMessage(
                channel=job.channel_id,
                thread_ts=job.thread_id or None,  # a card held for a batch goes in the batch message's thread
                unfurl_links=False,
                unfurl_media=False,
                metadata=metadata,
                **message,
            )
            return Sent(message_id=response["ts"], link=await self._permalink(job.channel_id, response["ts"]))
        except SlackApiError as exc:
            mapped = _mapped(exc)
            if mapped is None:
                raise
            raise mapped from exc

    async def _permalink(self, channel: str, ts: str) -> str:
        """The card's permalink (what a message on another platform links to); "" when Slack does not say:
        the card is posted, so nothing here may fail its delivery (a retry would post it twice)."""
        try:
            found = await self.client.chat_getPermalink(channel=channel, message_ts=ts)
        except Exception as exc:  # noqa: BLE001 - a link is a nicety; the card is posted
            logger.info("no permalink for the card %s in %s: %r", ts, channel, exc)
            return ""
        link = found.get("permalink") if found.data else ""
        return link if isinstance(link, str) and link.startswith("https://") else ""

    async def _already_posted(self, job: Job) -> str | None:
        """The card an earlier, unrecorded attempt may have posted (a crash between the post and its
        record): found by the conversation id every card carries in its message `metadata`, in the
        channel's history since that attempt. None when there is none (or history can't be read)."""
        assert job.attempted_at is not None
        what = f"card #{job.card.id}" if job.card is not None else f"batch {job.key}"
        oldest = f"{job.attempted_at.timestamp() - HISTORY_SLACK_SECONDS:.6f}"
        cursor = None
        try:
            for _ in range(HISTORY_PAGES):
                page = await self.client.conversations_history(
                    channel=job.channel_id, oldest=oldest, limit=200, include_all_metadata=True, cursor=cursor
                )
                for message in page.get("messages") or []:
                    if _posted_by(job, message.get("metadata") or {}):
                        logger.info(
                            "%s was already posted in %s (%s): not posting it again",
                            what,
                            job.channel_id,
                            message.get("ts"),
                        )
                        return str(message["ts"])
                cursor = (page.get("response_metadata") or {}).get("next_cursor")
                if not page.get("has_more") or not cursor:
                    break
        except SlackApiError as exc:  # e.g. missing channels:history: post, at least once
            logger.warning(
                "cannot look for an earlier post of %s in %s (%s); posting it",
                what,
                job.channel_id,
                exc.response.get("error"),
            )
        return None

    async def _notice(self, job: Job) -> Sent:
        """A notice: under the card (thread) when there is one, else at the top of the channel or DM."""
        response = await self.client.chat_postMessage(
            channel=job.channel_id,
            thread_ts=job.message_id or None,
            unfurl_links=False,
            unfurl_media=False,
            **notice_message(notice_of(job.payload)),
        )
        return Sent(message_id=response["ts"])


def _posted_by(job: Job, meta: dict[str, Any]) -> bool:
    """Whether a message's metadata says it is this job's card (by conversation) or batch message (by key)."""
    payload = meta.get("event_payload") or {}
    if job.card is not None:
        return meta.get("event_type") == CARD_EVENT and payload.get("conversation_id") == job.card.id
    return meta.get("event_type") == BATCH_EVENT and payload.get("delivery") == job.key


def _mapped(exc: SlackApiError) -> Exception | None:
    """A Slack error as the outbox understands it: wait, give up, or None (retry it as it is)."""
    if exc.response.status_code == 429:
        return RetryLater(float(exc.response.headers.get("Retry-After", 1)), "Slack rate limit", status=429)
    error = exc.response.get("error", "")
    if error in PERMANENT:
        return PermanentFailure(f"Slack said {error}")
    return None
