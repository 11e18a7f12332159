"""The outbox's Slack sender: posts a card once, updates it afterwards, honours 429 Retry-After."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.render import card_message, notice_message
from bot.outbox import Job, PermanentFailure, RetryLater, Sent, notice_of

logger = logging.getLogger(__name__)

# Errors that no retry can fix: the card would never arrive, so say so at once.
PERMANENT = frozenset({
    "channel_not_found", "not_in_channel", "is_archived", "invalid_auth", "account_inactive",
    "token_revoked", "no_permission", "missing_scope", "invalid_blocks", "msg_too_long",
})


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
            if job.kind != "card" or job.card is None:
                raise PermanentFailure(f"the Slack sender cannot send {job.kind!r} deliveries")
            message = card_message(job.card)
            if job.message_id:
                await self.client.chat_update(channel=job.channel_id, ts=job.message_id, **message)
                return Sent(message_id=job.message_id)
            response = await self.client.chat_postMessage(channel=job.channel_id, unfurl_links=False,
                                                           unfurl_media=False, **message)
            return Sent(message_id=response["ts"])
        except SlackApiError as exc:
            mapped = _mapped(exc)
            if mapped is None:
                raise
            raise mapped from exc

    async def _notice(self, job: Job) -> Sent:
        """A notice: under the card (thread) when there is one, else at the top of the channel or DM."""
        thread = {"thread_ts": job.message_id} if job.message_id else {}
        response = await self.client.chat_postMessage(channel=job.channel_id, unfurl_links=False, unfurl_media=False,
                                                       **thread, **notice_message(notice_of(job.payload)))
        return Sent(message_id=response["ts"])


def _mapped(exc: SlackApiError) -> Exception | None:
    """A Slack error as the outbox understands it: wait, give up, or None (retry it as it is)."""
    if exc.response.status_code == 429:
        return RetryLater(float(exc.response.headers.get("Retry-After", 1)), "Slack rate limit")
    error = exc.response.get("error", "")
    if error in PERMANENT:
        return PermanentFailure(f"Slack said {error}")
    return None
