"""The outbox's Slack sender: posts a card once, updates it afterwards, honours 429 Retry-After."""

from __future__ import annotations

import logging

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.render import card_message
from bot.outbox import Job, PermanentFailure, RetryLater, Sent

logger = logging.getLogger(__name__)

# Errors that no retry can fix: the card would never arrive, so say so at once.
PERMANENT = frozenset({
    "channel_not_found", "not_in_channel", "is_archived", "invalid_auth", "account_inactive",
    "token_revoked", "no_permission", "missing_scope", "invalid_blocks", "msg_too_long",
})


class SlackSender:
    """Sends card deliveries with `chat.postMessage` / `chat.update`."""

    def __init__(self, client: AsyncWebClient) -> None:
        self.client = client

    async def send(self, job: Job) -> Sent:
        """Post the card (first time) or update the posted copy; map Slack's errors for the outbox."""
        if job.kind != "card" or job.card is None:
            raise PermanentFailure(f"the Slack sender cannot send {job.kind!r} deliveries")
        message = card_message(job.card)
        try:
            if job.message_id:
                await self.client.chat_update(channel=job.channel_id, ts=job.message_id, **message)
                return Sent(message_id=job.message_id)
            response = await self.client.chat_postMessage(channel=job.channel_id, unfurl_links=False,
                                                           unfurl_media=False, **message)
            return Sent(message_id=response["ts"])
        except SlackApiError as exc:
            if exc.response.status_code == 429:
                raise RetryLater(float(exc.response.headers.get("Retry-After", 1)), "Slack rate limit") from exc
            error = exc.response.get("error", "")
            if error in PERMANENT:
                raise PermanentFailure(f"Slack said {error}") from exc
            raise
