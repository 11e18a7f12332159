"""The Bot Connector stand-in answers botbuilder's real clients as the service does.

Everything here goes through botbuilder 4.17.1's own code: the async `ConnectorClient`
(msrest + ``requests`` in a worker thread), `CloudAdapter.continue_conversation` and `TeamsInfo`.
Some tests pin how that client behaves on errors, because the outbox sender depends on it:

* a non-2xx answer raises ``botbuilder.schema.ErrorResponseException`` (an
  ``msrest.exceptions.HttpOperationError``); ``exc.response`` is the ``requests.Response``
  (``.status_code``, case-insensitive ``.headers["Retry-After"]``) and ``exc.error.error.code``
  is the Bot Framework error code;
* msrest's default retry policy (urllib3 ``Retry``: 3 retries, backoff 0.8) silently retries
  PUT/GET/DELETE on 408/5xx, and on 413/429/503 *with* a Retry-After header (sleeping that long,
  in the worker thread); POST (send, reply, create) is never retried. A 5xx that exhausts the
  retries surfaces as ``msrest.exceptions.ClientRequestError`` with no status at all.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from botbuilder.core import MessageFactory, TurnContext
from botbuilder.core.teams import TeamsInfo
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import (
    Activity,
    ActivityTypes,
    ChannelAccount,
    ConversationAccount,
    ConversationParameters,
    ConversationReference,
    ErrorResponseException,
)
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import MicrosoftAppCredentials
from msrest.authentication import BasicTokenAuthentication
from msrest.exceptions import ClientRequestError, HttpOperationError

from tests.standins.bot_connector import BotConnectorStandIn, Call

CHANNEL = "19:d441d38c655c47a085215b2726e76927@thread.tacv2"
TEAM = "19:8j-Mnacwmq2QFDbzykeQH5v55m6cN1X3QJ5viHvGIIQ1@thread.tacv2"
THREAD = f"{CHANNEL};messageid=1771290107407"
CHAT = "a:1xXxFakePersonalChatId"
BOT = "28:11111111-2222-3333-4444-555555555555"
USER = "29:1xXxFakeUserBase64IdStringForTeamsPlatform"


class _Config:
    """What `ConfigurationBotFrameworkAuthentication` reads; an empty APP_ID disables auth."""

    APP_ID = ""
    APP_PASSWORD = ""
    APP_TYPE = "MultiTenant"
    APP_TENANTID = ""


@pytest.fixture
async def connector() -> AsyncIterator[BotConnectorStandIn]:
    async with BotConnectorStandIn() as standin:
        yield standin


def client(standin: BotConnectorStandIn) -> ConnectorClient:
    """An anonymous client, as botbuilder builds one when the app id is empty (no token)."""
    return ConnectorClient(MicrosoftAppCredentials("", ""), base_url=standin.url)


def text(value: str) -> Activity:
    return Activity(type=ActivityTypes.message, text=value)


async def test_send_reply_update_delete_change_what_the_chat_shows(connector: BotConnectorStandIn) -> None:
    assert connector.url.startswith("http://127.0.0.1:") and connector.url.endswith("/")
    conversations = client(connector).conversations

    first = await conversations.send_to_conversation(CHAT, text("hello"))
    reply = await conversations.reply_to_activity(CHAT, first.id, text("a reply"))
    updated = await conversations.update_activity(CHAT, first.id, text("hello, edited"))
    assert updated.id == first.id and reply.id != first.id and int(reply.id) > int(first.id)

    shown = connector.activities(CHAT)
    assert [(a["id"], a["text"]) for a in shown] == [(first.id, "hello, edited"), (reply.id, "a reply")]
    assert shown[1]["replyToId"] == first.id and shown[0]["conversation"]["id"] == CHAT
    assert connector.activity(CHAT, first.id)["text"] == "hello, edited"

    await conversations.delete_activity(CHAT, reply.id)
    assert [a["id"] for a in connector.activities(CHAT)] == [first.id]
    assert connector.activity(CHAT, reply.id) is None
    assert [a["text"] for a in connector.deleted(CHAT)] == ["a reply"]
    assert connector.activities("a:someone-else") == []

    assert [(c.route, c.method, c.status) for c in connector.calls] == [
        ("send", "POST", 201),
        ("reply", "POST", 201),
        ("update", "PUT", 200),
        ("delete", "DELETE", 200),
    ]
    send = connector.calls_to("send")[0]
    assert isinstance(send, Call) and send.ok
    assert send.path == f"/v3/conversations/{CHAT}/activities" and send.conversation_id == CHAT
    assert send.body["type"] == "message" and send.body["text"] == "hello"
    assert send.response == {"id": first.id}
    assert connector.calls_to("update")[0].activity_id == first.id
    # Anonymous credentials send no Authorization header at all.
    assert all(c.authorization is None for c in connector.calls)
    assert send.headers["content-type"].startswith("application/json")


async def test_create_starts_a_channel_thread_and_messageid_ids_round_trip(connector: BotConnectorStandIn) -> None:
    conversations = client(connector).conversations
    created = await conversations.create_conversation(
        ConversationParameters(
            is_group=True,
            channel_data={"channel": {"id": CHANNEL}},
            activity=text("card v1"),
            tenant_id="a1b2c3d4-e5f6-7890-abcd-ef1234567890",
        )
    )
    thread = f"{CHANNEL};messageid={created.activity_id}"
    assert created.id == thread and created.service_url == connector.url

    reply = await conversations.reply_to_activity(thread, created.activity_id, text("in the thread"))
    follow_up = await conversations.send_to_conversation(thread, text("also in the thread"))
    # The sender updates with the channel id; the thread id works as well.
    await conversations.update_activity(CHANNEL, created.activity_id, text("card v2"))
    await conversations.update_activity(thread, reply.id, text("in the thread, edited"))

    (create,) = connector.calls_to("create")
    assert create.body["channelData"]["channel"]["id"] == CHANNEL and create.body["isGroup"] is True
    assert create.body["activity"]["text"] == "card v1"
    assert create.response["activityId"] == created.activity_id and create.status == 201
    (replied,) = connector.calls_to("reply")
    assert replied.conversation_id == thread and replied.activity_id == created.activity_id
    assert "%3Bmessageid%3D" in replied.raw_path and ";messageid=" in replied.path
    assert connector.calls_to("send")[0].conversation_id == thread

    in_thread = connector.activities(thread)
    assert [a["text"] for a in in_thread] == ["card v2", "in the thread, edited", "also in the thread"]
    assert {a["conversation"]["id"] for a in in_thread} == {thread}
    assert in_thread[1]["replyToId"] == created.activity_id
    assert [a["id"] for a in connector.activities(CHANNEL)] == [created.activity_id, reply.id, follow_up.id]

    second = await conversations.create_conversation(
        ConversationParameters(is_group=True, channel_data={"channel": {"id": CHANNEL}}, activity=text("another post"))
    )
    assert second.id != created.id and second.id.startswith(f"{CHANNEL};messageid=")
    assert [a["text"] for a in connector.activities(second.id)] == ["another post"]
    assert len(connector.activities(CHANNEL)) == 4

    chat = await conversations.create_conversation(
        ConversationParameters(is_group=False, bot=ChannelAccount(id=BOT), members=[ChannelAccount(id=USER)], activity=text("hi"))
    )
    again = await conversations.create_conversation(
        ConversationParameters(is_group=False, bot=ChannelAccount(id=BOT), members=[ChannelAccount(id=USER)])
    )
    assert chat.id == again.id and [a["text"] for a in connector.activities(chat.id)] == ["hi"]


async def test_unknown_activity_is_a_404_activity_not_found(connector: BotConnectorStandIn) -> None:
    conversations = client(connector).conversations
    with pytest.raises(ErrorResponseException) as missing:
        await conversations.update_activity(CHANNEL, "1700000000000", text("x"))
    assert missing.value.response.status_code == 404
    assert missing.value.error.error.code == "ActivityNotFound"
    with pytest.raises(ErrorResponseException) as gone:
        await conversations.delete_activity(CHANNEL, "1700000000000")
    assert gone.value.response.status_code == 404
    assert [(c.route, c.status) for c in connector.calls] == [("update", 404), ("delete", 404)]
    assert connector.calls[0].response["error"]["code"] == "ActivityNotFound"
    assert set(connector.calls[0].response) == {"error"} and connector.calls[0].response["error"]["message"]


async def test_injected_429_surfaces_with_status_and_retry_after(connector: BotConnectorStandIn) -> None:
    conversations = client(connector).conversations
    connector.fail_next("send", status=429, retry_after=7)
    with pytest.raises(ErrorResponseException) as throttled:
        await conversations.send_to_conversation(CHAT, text("x"))
    exc = throttled.value
    assert isinstance(exc, HttpOperationError)
    assert exc.response.status_code == 429
    assert exc.response.headers["Retry-After"] == "7" and exc.response.headers["retry-after"] == "7"
    assert exc.error.error.code == "Throttled" and str(exc).startswith("(Throttled)")
    assert connector.activities(CHAT) == []

    sent = await conversations.send_to_conversation(CHAT, text("x"))
    assert sent.id and [c.status for c in connector.calls_to("send")] == [429, 201]
    assert connector.calls_to("send")[0].response["error"]["code"] == "Throttled"

    connector.fail_next("create", status=500, times=2)
    for _ in range(2):  # POST is never retried by msrest: each failure surfaces once
        with pytest.raises(ErrorResponseException) as failed:
            await conversations.create_conversation(
                ConversationParameters(is_group=True, channel_data={"channel": {"id": CHANNEL}}, activity=text("x"))
            )
        assert failed.value.response.status_code == 500 and "Retry-After" not in failed.value.response.headers
    assert len(connector.calls_to("create")) == 2 and connector.activities(CHANNEL) == []

    with pytest.raises(ValueError):
        connector.fail_next("sned")


async def test_default_client_retries_a_put_itself_unless_told_not_to(connector: BotConnectorStandIn) -> None:
    conversations = client(connector).conversations
    posted = await conversations.send_to_conversation(CHANNEL, text("v1"))

    # 429 + Retry-After on PUT: urllib3 sleeps Retry-After (0 here) and retries; the caller never sees it.
    connector.fail_next("update", status=429, retry_after=0)
    await conversations.update_activity(CHANNEL, posted.id, text("v2"))
    assert [c.status for c in connector.calls_to("update")] == [429, 200]

    # 5xx on PUT exhausting the retries (1 + 3 calls): ClientRequestError, no status code anywhere.
    quick = client(connector)
    quick.config.retry_policy.backoff_factor = 0
    connector.fail_next("update", status=502, times=4)
    with pytest.raises(ClientRequestError) as exhausted:
        await quick.conversations.update_activity(CHANNEL, posted.id, text("v3"))
    assert not isinstance(exhausted.value, HttpOperationError) and not hasattr(exhausted.value, "response")
    assert "RetryError" in repr(exhausted.value.inner_exception)
    assert len(connector.calls_to("update")) == 6

    # Retries off and statuses returned: every failure surfaces once, with its status and Retry-After.
    strict = client(connector)
    strict.config.retry_policy.retries = 0
    strict.config.retry_policy.policy.raise_on_status = False
    for status in (429, 502):
        connector.fail_next("update", status=status, retry_after=3)
        with pytest.raises(ErrorResponseException) as failed:
            await strict.conversations.update_activity(CHANNEL, posted.id, text("v4"))
        assert failed.value.response.status_code == status
        assert failed.value.response.headers.get("Retry-After") == ("3" if status == 429 else None)
    assert len(connector.calls_to("update")) == 8
    assert connector.activity(CHANNEL, posted.id)["text"] == "v2"


async def test_roster_routes(connector: BotConnectorStandIn) -> None:
    alice = connector.add_member(USER, "Alice Smith", aad_object_id="00000000-1111-2222-3333-444444444444")
    connector.add_member("29:bob", "Bob", email="bob@example.com", conversation_id=TEAM)
    assert alice["email"] == "alice.smith@contoso.example" == alice["userPrincipalName"]
    assert alice["givenName"] == "Alice" and alice["surname"] == "Smith"
    conversations = client(connector).conversations

    everyone = await conversations.get_conversation_members(THREAD.replace(CHANNEL, TEAM))
    assert [(m.id, m.name, m.aad_object_id) for m in everyone] == [
        (USER, "Alice Smith", alice["aadObjectId"]),
        ("29:bob", "Bob", connector.members(TEAM)[1]["aadObjectId"]),
    ]
    assert [m.id for m in await conversations.get_conversation_members(CHAT)] == [USER]
    by_aad = await conversations.get_conversation_member(CHAT, alice["aadObjectId"])
    assert by_aad.id == USER
    with pytest.raises(ErrorResponseException) as missing:
        await conversations.get_conversation_member(CHAT, "29:bob")
    assert missing.value.response.status_code == 404
    assert missing.value.error.error.code == "MemberNotFoundInConversation"

    page = await conversations.get_teams_conversation_paged_members(TEAM, page_size=1)
    rest = await conversations.get_teams_conversation_paged_members(TEAM, page_size=1, continuation_token=page.continuation_token)
    assert [m.id for m in page.members] == [USER] and [m.id for m in rest.members] == ["29:bob"]
    assert rest.continuation_token is None and page.members[0].email == alice["email"]
    assert [c.route for c in connector.calls] == ["members", "members", "member", "member", "paged_members", "paged_members"]
    assert connector.calls_to("member")[0].member_id == alice["aadObjectId"]


@pytest.fixture
def outbound_connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every address a socket connects to and every host name looked up, while the test runs."""
    seen: list[Any] = []
    real_connect, real_lookup = socket.socket.connect, socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> Any:
        seen.append(address)
        return real_connect(sock, address)

    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(host)
        return real_lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    yield seen


def reference(standin: BotConnectorStandIn, conversation_id: str = THREAD) -> ConversationReference:
    return ConversationReference(
        activity_id=conversation_id.rpartition("=")[2] if ";messageid=" in conversation_id else None,
        bot=ChannelAccount(id=BOT, name="Unsilo"),
        user=ChannelAccount(id=USER, name="Alice"),
        channel_id="msteams",
        service_url=standin.url,
        conversation=ConversationAccount(
            id=conversation_id, conversation_type="channel", is_group=True, tenant_id="a1b2c3d4-e5f6-7890-abcd-ef1234567890"
        ),
    )


async def test_cloud_adapter_continue_conversation_sends_and_updates_without_a_token(
    connector: BotConnectorStandIn, outbound_connections: list[Any]
) -> None:
    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(_Config()))
    sent: list[str] = []

    async def callback(turn_context: TurnContext) -> None:
        response = await turn_context.send_activity("proactive hello")
        sent.append(response.id)
        edited = MessageFactory.text("proactive hello, edited")
        edited.id = response.id
        await turn_context.update_activity(edited)

    await adapter.continue_conversation(reference(connector), callback, bot_app_id="")

    # A proactive send is a *reply* to the continuation event's own made-up id (a uuid1 from
    # get_continuation_activity), not to reference.activity_id; the thread comes from the id.
    reply, update = await connector.wait_for("reply"), await connector.wait_for("update")
    assert [c.route for c in connector.calls] == ["reply", "update"]
    assert reply[0].conversation_id == THREAD and reply[0].activity_id == reply[0].body["replyToId"]
    assert reply[0].activity_id != "1771290107407" and reply[0].activity_id.count("-") == 4
    assert [a["id"] for a in connector.activities(THREAD)] == sent
    assert reply[0].body["text"] == "proactive hello" and reply[0].body["from"]["id"] == BOT
    assert reply[0].body["conversation"]["id"] == THREAD and reply[0].body["serviceUrl"] == connector.url
    assert update[0].activity_id == sent[0] and update[0].conversation_id == THREAD
    assert connector.activity(THREAD, sent[0])["text"] == "proactive hello, edited"
    assert all(c.authorization is None for c in connector.calls)
    port = int(connector.url.rsplit(":", 1)[1].strip("/"))
    assert outbound_connections and all(a in ("127.0.0.1", ("127.0.0.1", port)) for a in outbound_connections)


async def test_teams_info_through_cloud_adapter() -> None:
    # get_team_details / get_team_channels block the calling loop (sync TeamsConnectorClient),
    # so the stand-in must answer from its own thread.
    async with BotConnectorStandIn(threaded=True) as connector:
        await _teams_info_through_cloud_adapter(connector)


async def _teams_info_through_cloud_adapter(connector: BotConnectorStandIn) -> None:
    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(_Config()))
    connector.add_team(TEAM, "Support", channels={CHANNEL: "Refunds"})
    connector.add_member(USER, "Alice Smith")
    seen: dict[str, Any] = {}

    async def callback(turn_context: TurnContext) -> None:
        seen["team"] = await TeamsInfo.get_team_details(turn_context, TEAM)
        seen["channels"] = await TeamsInfo.get_team_channels(turn_context, TEAM)
        # A continuation activity has no channel_data, which get_member cannot handle (TypeError).
        turn_context.activity.channel_data = {"team": {"id": TEAM}}
        seen["member"] = await TeamsInfo.get_member(turn_context, USER)
        # With an empty bot_app_id TeamsInfo takes its legacy (BotFrameworkAdapter) path,
        # which CloudAdapter cannot run; any non-empty id works while auth is disabled.
        with pytest.raises(TypeError, match="service_url is required"):
            await TeamsInfo.send_message_to_teams_channel(turn_context, text("new thread"), CHANNEL)
        seen["thread"] = await TeamsInfo.send_message_to_teams_channel(turn_context, text("new thread"), CHANNEL, bot_app_id=BOT)

    await adapter.continue_conversation(reference(connector, CHAT), callback, bot_app_id="")

    assert (seen["team"].name, seen["team"].aad_group_id, seen["team"].member_count) == (
        "Support",
        connector.calls_to("team")[0].response["aadGroupId"],
        1,
    )
    assert [(c.id, c.name) for c in seen["channels"]] == [(TEAM, None), (CHANNEL, "Refunds")]
    assert seen["member"].email == "alice.smith@contoso.example" and seen["member"].id == USER
    ref, activity_id = seen["thread"]
    assert ref.conversation.id == f"{CHANNEL};messageid={activity_id}"
    assert [a["text"] for a in connector.activities(ref.conversation.id)] == ["new thread"]
    assert [c.route for c in connector.calls] == ["team", "team_channels", "member", "create"]


async def test_per_conversation_rate_limit_with_a_hand_moved_clock() -> None:
    now = [100.0]
    async with BotConnectorStandIn(rate_limit_per_conversation=1.0, rate_clock=lambda: now[0]) as connector:
        conversations = client(connector).conversations
        await conversations.send_to_conversation(CHAT, text("1"))
        with pytest.raises(ErrorResponseException) as throttled:
            await conversations.send_to_conversation(CHAT, text("2"))
        assert throttled.value.response.status_code == 429
        assert throttled.value.response.headers["Retry-After"] == "1"
        await conversations.send_to_conversation("a:other-chat", text("elsewhere"))
        await conversations.get_conversation_members(CHAT)  # reads are not limited
        await conversations.get_conversation_members(CHAT)
        now[0] += 1.0
        await conversations.send_to_conversation(CHAT, text("3"))
        assert [a["text"] for a in connector.activities(CHAT)] == ["1", "3"]
        assert [c.status for c in connector.calls_to("send")] == [201, 429, 201, 201]


async def test_require_auth_refuses_anonymous_calls_and_records_the_header() -> None:
    async with BotConnectorStandIn(require_auth=True, expected_token="tok-1") as connector:
        with pytest.raises(ErrorResponseException) as denied:
            await client(connector).conversations.send_to_conversation(CHAT, text("x"))
        assert denied.value.response.status_code == 401
        wrong = ConnectorClient(BasicTokenAuthentication({"access_token": "tok-2"}), base_url=connector.url)
        with pytest.raises(ErrorResponseException):
            await wrong.conversations.send_to_conversation(CHAT, text("x"))
        right = ConnectorClient(BasicTokenAuthentication({"access_token": "tok-1"}), base_url=connector.url)
        await right.conversations.send_to_conversation(CHAT, text("x"))
        assert [(c.authorization, c.status) for c in connector.calls] == [
            (None, 401),
            ("Bearer tok-2", 401),
            ("Bearer tok-1", 201),
        ]
        assert connector.calls[0].response == {"message": "Authorization has been denied for this request."}
        assert len(connector.activities(CHAT)) == 1


async def test_slow_mode_wait_for_unknown_routes_and_a_regional_base_path() -> None:
    async with BotConnectorStandIn(delay=0.2, base_path="amer/a1b2c3d4/") as connector:
        assert connector.url.endswith("/amer/a1b2c3d4/")
        started = asyncio.get_running_loop().time()
        task = asyncio.create_task(client(connector).conversations.send_to_conversation(CHAT, text("slow")))
        while not connector.calls:
            await asyncio.sleep(0.01)
        assert connector.calls[0].status is None and connector.calls[0].path.startswith("/amer/a1b2c3d4/v3/")
        (done,) = await connector.wait_for("send")
        assert done.status == 201 and asyncio.get_running_loop().time() - started >= 0.2
        await task
        with pytest.raises(TimeoutError):
            await connector.wait_for("update", timeout=0.05)

        connector.delay = 0
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{connector.url}v3/conversations/{CHAT}/activities") as response:
                assert response.status == 404 and (await response.json())["error"]["code"] == "NotFound"
            async with http.post(
                f"{connector.url}v3/conversations/{CHAT}/activities",
                data=b"{not json",
                headers={"Content-Type": "application/json"},
            ) as response:
                assert response.status == 400
        assert [c.route for c in connector.calls[1:]] == ["unknown", "send"]
        assert connector.calls[-1].body == "{not json"

        connector.route("send", lambda call: (201, {"id": "custom-1"}))
        assert (await client(connector).conversations.send_to_conversation(CHAT, text("x"))).id == "custom-1"
