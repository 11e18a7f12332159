"""The outbox's Teams sender: a card starts a channel thread once and is updated in place afterwards.

Teams cannot be searched for a card a lost send result may have posted, so such a card is posted
again (at least once): the older copy, once someone uses it, is made to point at the live one.

One `ConnectorClient` per service URL is built and reused (building one costs more CPU
than the send itself, see PLATFORM_NOTES). 429/412/502/504 become `RetryLater`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from botbuilder.schema import Activity, ActivityTypes, Attachment, ChannelAccount, ConversationParameters
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import MicrosoftAppCredentials

from adapters.teams import render
from bot.outbox import Job, PermanentFailure, RetryLater, Sent, notice_of

if TYPE_CHECKING:
    from bot.health import PlatformHealth

logger = logging.getLogger(__name__)

RETRY_STATUSES = {412: 2.0, 429: 1.0, 502: 5.0, 504: 5.0}
PERMANENT_STATUSES = {400, 401, 403, 404, 413}  # 413 MessageSizeTooBig: the same message fails again


class TeamsSender:
    """Sends card deliveries to Teams channels (or chats) through the Bot Connector API."""

    def __init__(
        self,
        *,
        app_id: str,
        app_password: str,
        tenant_id: str = "",
        outcomes: Sequence[str],
        departments: Sequence[str] = (),
        health: PlatformHealth | None = None,
    ) -> None:
        self.app_id = app_id
        self.health = health
        self.app_password = app_password
        self.tenant_id = tenant_id
        self.outcomes = tuple(outcomes)
        self.departments = tuple(departments)
        self._clients: dict[str, ConnectorClient] = {}

    def client(self, service_url: str) -> ConnectorClient:
        """The reused connector client for a service URL."""
        if service_url not in self._clients:
            credentials = MicrosoftAppCredentials(self.app_id, self.app_password, channel_auth_tenant=self.tenant_id or None)
            if self.app_id:
                MicrosoftAppCredentials.trust_service_url(service_url)
            client = ConnectorClient(credentials, base_url=service_url)
            # msrest would retry PUTs (card updates) on 429/5xx itself, sleeping in a thread and
            # hiding the status: the outbox owns retries, so every failure must surface once.
            client.config.retry_policy.retries = 0
            client.config.retry_policy.policy.raise_on_status = False
            self._clients[service_url] = client
        return self._clients[service_url]

    async def send(self, job: Job) -> Sent:
        """Post or update the card (or post a notice) where the channel's stored conversation reference points."""
        ref: dict[str, Any] = dict(job.conversation_ref or {})
        service_url = ref.get("serviceUrl") or ref.get("service_url")
        if (
            job.kind not in ("card", "notice", "duplicate", "batch")
            or job.kind == "card"
            and job.card is None
            or job.kind == "batch"
            and job.batch is None
        ):
            raise PermanentFailure(f"the Teams sender cannot send {job.kind!r} deliveries")
        if not service_url:
            raise PermanentFailure(
                f"Teams channel {job.channel_id} has no stored conversation; type `@Unsilo link <department>` in it once"
            )
        connector = self.client(service_url)
        try:
            if job.kind == "notice":
                return await self._notice(connector, job, ref)
            if job.kind == "duplicate":
                return await self._duplicate(connector, job, ref)
            if job.kind == "batch":
                return await self._batch(connector, job, ref)
            return await self._card(connector, job, ref)
        except (RetryLater, PermanentFailure):
            raise
        except Exception as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status in (401, 403) and self.health is not None:
                self.health.degraded(
                    f"Teams refused a send with {status}: check MicrosoftAppId, MicrosoftAppPassword "
                    "and that the app is installed where it posts"
                )
            _raise_for(exc)
            raise

    async def _card(self, connector: ConnectorClient, job: Job, ref: dict[str, Any]) -> Sent:
        """Update the posted copy, or post the card: a new thread in a channel, a message in a chat."""
        assert job.card is not None
        card_json = render.card(job.card, outcomes=self.outcomes, departments=self.departments)
        activity = Activity(
            type=ActivityTypes.message, summary=render.card_summary(job.card), attachments=[Attachment(**_attachment(card_json))]
        )
        if job.message_id:
            activity.id = job.message_id
            await connector.conversations.update_activity(job.channel_id, job.message_id, activity)
            return Sent(message_id=job.message_id)
        if job.attempted_at is not None:
            logger.info(
                "card #%s in %s: a send begun at %s may have posted it, and Teams cannot be searched for it: "
                "posting it again (the older copy points at this one once it is used)",
                job.card.id,
                job.channel_id,
                job.attempted_at.isoformat(),
            )
        if job.thread_id:  # a card held for a batch: a reply in the batch message's thread
            response = await connector.conversations.send_to_conversation(f"{job.channel_id};messageid={job.thread_id}", activity)
            return Sent(message_id=response.id)
        return await self._start(connector, job, ref, activity)

    async def _batch(self, connector: ConnectorClient, job: Job, ref: dict[str, Any]) -> Sent:
        """A channel's batch message: a new thread (its cards follow in it), or a message in a chat."""
        assert job.batch is not None
        activity = Activity(
            type=ActivityTypes.message,
            summary=render.summary(job.batch.title),
            attachments=[Attachment(**_attachment(render.batch_card(job.batch)))],
        )
        return await self._start(connector, job, ref, activity)

    async def _start(self, connector: ConnectorClient, job: Job, ref: dict[str, Any], activity: Activity) -> Sent:
        """Post an activity as a new channel thread, or as a message in a chat."""
        conversation = ref.get("conversation") or {}
        if conversation.get("conversationType") == "channel":
            tenant = conversation.get("tenantId") or self.tenant_id
            params = ConversationParameters(
                is_group=True,
                activity=activity,
                tenant_id=tenant or None,
                channel_data={"channel": {"id": job.channel_id}, **({"tenant": {"id": tenant}} if tenant else {})},
            )
            response = await connector.conversations.create_conversation(params)
            return Sent(message_id=response.activity_id, link=message_link(job.channel_id, response.activity_id or "", tenant))
        response = await connector.conversations.send_to_conversation(conversation.get("id") or job.channel_id, activity)
        return Sent(message_id=response.id)

    async def _duplicate(self, connector: ConnectorClient, job: Job, ref: dict[str, Any]) -> Sent:
        """An older copy of a card (posted twice: Teams cannot be searched for a card whose send result was
        lost) made to point at the live copy, with a deep link to it."""
        conversation_id = int(job.payload.get("conversation_id") or 0)
        message_id, live = str(job.payload.get("message_id") or ""), str(job.payload.get("live_message_id") or "")
        if not (conversation_id and message_id and live):
            raise PermanentFailure(f"duplicate delivery {job.key} does not say which copy points where")
        tenant = (ref.get("conversation") or {}).get("tenantId") or self.tenant_id or None
        card_json = render.duplicate_card(conversation_id, link=render.message_link(job.channel_id, live, tenant_id=tenant))
        activity = Activity(
            type=ActivityTypes.message,
            id=message_id,
            summary=render.duplicate_summary(conversation_id),
            attachments=[Attachment(**_attachment(card_json))],
        )
        await connector.conversations.update_activity(job.channel_id, message_id, activity)
        return Sent(message_id=message_id)

    async def _notice(self, connector: ConnectorClient, job: Job, ref: dict[str, Any]) -> Sent:
        """A notice as a card: in the card's thread, in a 1:1 chat with a person (dm), or a new channel post."""
        notice = notice_of(job.payload)
        activity = Activity(
            type=ActivityTypes.message,
            summary=render.summary(notice.title),
            attachments=[Attachment(**_attachment(render.notice_card(notice)))],
        )
        conversation_id = (ref.get("conversation") or {}).get("id") or job.channel_id
        if job.message_id:
            conversation_id = f"{job.channel_id};messageid={job.message_id}"
        if job.payload.get("dm"):
            # Open (or find) the 1:1 chat with the person, then post in it.
            tenant = (ref.get("conversation") or {}).get("tenantId") or self.tenant_id or None
            created = await connector.conversations.create_conversation(
                ConversationParameters(
                    is_group=False,
                    bot=ChannelAccount(id=(ref.get("bot") or {}).get("id") or self.app_id),
                    members=[ChannelAccount(id=job.channel_id)],
                    tenant_id=tenant,
                    channel_data={"tenant": {"id": tenant}} if tenant else None,
                )
            )
            conversation_id = created.id
        response = await connector.conversations.send_to_conversation(conversation_id, activity)
        return Sent(message_id=response.id)


def message_link(channel_id: str, message_id: str, tenant: str | None) -> str:
    """The deep link that opens a channel message in Teams (`/l/message/<channel>/<message>`); "" without ids."""
    if not channel_id or not message_id:
        return ""
    query = {"parentMessageId": message_id, **({"tenantId": tenant} if tenant else {})}
    return (
        f"https://teams.microsoft.com/l/message/{quote(channel_id, safe=':@.')}/{quote(message_id, safe='')}?{urlencode(query)}"
    )


def _attachment(card_json: dict[str, Any]) -> dict[str, Any]:
    wrapped = render.attachment(card_json)
    return {"content_type": wrapped["contentType"], "content": wrapped["content"]}


def _raise_for(exc: Exception) -> None:
    """Map a connector error to the outbox's vocabulary (or leave it to be retried)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status is None:
        return
    if status in RETRY_STATUSES:
        headers = getattr(response, "headers", {}) or {}
        try:
            seconds = float(headers.get("Retry-After", RETRY_STATUSES[status]))
        except (TypeError, ValueError):
            seconds = RETRY_STATUSES[status]
        raise RetryLater(seconds, f"Teams answered {status}", status=status) from exc
    if status in PERMANENT_STATUSES:
        raise PermanentFailure(f"Teams answered {status}: {exc}") from exc
