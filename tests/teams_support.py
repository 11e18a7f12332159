"""Teams activities built from the real samples in ../shared/reference/teams, sent over HTTP to the
running service; the Bot Connector service (and, when asked, Slack's Web API) stood in for on loopback."""

from __future__ import annotations

import copy
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp

from bot.app import create_app
from bot.bootstrap import Container, build, load_config, settings_from_env
from tests.conftest import migrated_sqlite, reference_dir
from tests.slack_support import SECRET, TOKEN
from tests.standins import serve
from tests.standins.bot_connector import BotConnectorStandIn
from tests.standins.slack_api import SlackStandIn

CHANNEL = "19:d441d38c655c47a085215b2726e76927@thread.tacv2"
TEAM = "19:8j-Mnacwmq2QFDbzykeQH5v55m6cN1X3QJ5viHvGIIQ1@thread.tacv2"
BOT = "28:11111111-2222-3333-4444-555555555555"
TENANT = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"  # the recorded samples' (anonymised) tenant

TEAMS_CONFIG = """
[unsilo]
admins = ["teams:aad-admin", "slack:UADMIN"]

[departments.triage]

[departments.support]
managers = ["teams:aad-manager"]
channels = ["slack:C0SUPPORT"]

[[rules]]
name = "support"
departments = ["support"]
any = ["refund", "broken"]
"""


def sample(name: str) -> dict[str, Any]:
    """A fresh copy of a reference activity."""
    return copy.deepcopy(json.loads((reference_dir() / "teams" / name).read_text()))


@dataclass
class TeamsHarness:
    """The running service with Teams (and optionally Slack) enabled, and its stand-ins."""

    container: Container
    connector: BotConnectorStandIn
    slack: SlackStandIn | None
    url: str
    http: aiohttp.ClientSession

    def _user(self, activity: dict[str, Any], user: str, name: str | None = None) -> None:
        activity["from"] = {"id": f"29:{user}", "name": name or user, "aadObjectId": user}

    async def send(self, activity: dict[str, Any], *, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """POST an activity to /api/messages; (status, parsed body or None)."""
        activity["serviceUrl"] = self.connector.url
        async with self.http.post(f"{self.url}/api/messages", json=activity, headers=headers or {}) as response:
            text = await response.text()
            is_json = response.content_type == "application/json" and text
            return response.status, (json.loads(text) if is_json else text or None)

    async def mention(
        self, text: str, *, user: str = "aad-alice", channel: str = CHANNEL, name: str | None = None
    ) -> tuple[int, Any]:
        """A new channel post that @mentions the bot (from the recorded channel mention)."""
        activity = sample("message.channel.mention.json")
        activity_id = str(uuid.uuid4().int)[:13]
        activity.update(id=activity_id, text=f"<at>Unsilo</at> {text}")
        activity["conversation"]["id"] = f"{channel};messageid={activity_id}"
        activity["channelData"].update(teamsChannelId=channel, channel={"id": channel})
        activity["recipient"] = {"id": BOT, "name": "Unsilo"}
        activity["entities"][0].update(text="<at>Unsilo</at>", mentioned={"id": BOT, "name": "Unsilo"})
        activity["attachments"] = []
        self._user(activity, user, name)
        return await self.send(activity)

    async def thread_reply(
        self, root_id: str, text: str, *, user: str = "aad-bob", channel: str = CHANNEL, activity_id: str | None = None
    ) -> tuple[int, Any]:
        """A reply in a channel thread without a mention (from the recorded channel reply)."""
        activity = sample("message.channel.reply.raw.json")
        activity.update(id=activity_id or str(uuid.uuid4().int)[:13], text=text)
        activity["conversation"]["id"] = f"{channel};messageid={root_id}"
        activity["channelData"].update(teamsChannelId=channel, channel={"id": channel})
        activity["entities"] = [e for e in activity.get("entities", []) if e.get("type") != "mention"]
        activity.pop("attachments", None)
        self._user(activity, user)
        return await self.send(activity)

    async def thread_mention(
        self,
        root_id: str,
        text: str,
        *,
        user: str = "aad-bob",
        name: str | None = None,
        channel: str = CHANNEL,
        mentions: tuple[tuple[str, str], ...] = (("Unsilo", BOT),),
        tenant: str = TENANT,
    ) -> tuple[int, Any]:
        """A reply in a channel thread that @mentions people, by (name, id) (from the recorded thread reply
        with a mention); `text` carries their `<at>name</at>` markup."""
        activity = sample("message.channel_reply.mention.json")
        activity.update(id=str(uuid.uuid4().int)[:13], text=text)
        activity["conversation"].update(id=f"{channel};messageid={root_id}", tenantId=tenant)
        activity["channelData"].update(teamsChannelId=channel, channel={"id": channel}, tenant={"id": tenant})
        activity["recipient"] = {"id": BOT, "name": "Unsilo"}
        others = [e for e in activity["entities"] if e.get("type") != "mention"]
        activity["entities"] = [
            {"mentioned": {"id": who, "name": shown}, "text": f"<at>{shown}</at>", "type": "mention"} for shown, who in mentions
        ] + others
        activity["attachments"] = []
        self._user(activity, user, name)
        return await self.send(activity)

    async def invoke(
        self,
        verb: str,
        conversation_id: int,
        *,
        user: str = "aad-alice",
        name: str | None = None,
        token: str | None = None,
        **inputs: str,
    ) -> tuple[int, Any]:
        """An Action.Execute click (adaptiveCard/action invoke, from the recorded invoke), signed with `token` if given."""
        activity = sample("invoke.adaptiveCard_action.personal.json")
        activity["id"] = f"f:{uuid.uuid4()}"
        activity["value"]["action"] = {
            "type": "Action.Execute",
            "verb": verb,
            "data": {"cmd": verb, "id": conversation_id, **inputs},
        }
        self._user(activity, user, name)
        return await self.send(activity, headers={"Authorization": f"Bearer {token}"} if token else None)

    async def click(
        self,
        card: dict[str, Any],
        verb: str,
        message_id: str,
        *,
        user: str = "aad-alice",
        name: str | None = None,
        channel: str = CHANNEL,
        **inputs: str,
    ) -> tuple[int, Any]:
        """A click on the `verb` button of `card` as posted in a channel as message `message_id` (the button's own
        Action.Execute data, with `inputs` typed into its form).

        The recorded invoke, placed in the channel the way Teams places a click on a channel card: no channel
        invoke was recorded, so `conversation`, `channelData` and `replyToId` (the clicked card's message id)
        are those of the recorded channel card action, `message.action_submit_value.channel.json`.
        """

        def executes(actions: list[dict[str, Any]]) -> list[dict[str, Any]]:
            found = []
            for action in actions:
                found += (
                    [action] if action["type"] == "Action.Execute" else executes((action.get("card") or {}).get("actions") or [])
                )
            return found

        (action,) = [a for a in executes(card["actions"]) if a["verb"] == verb]
        channel_action = sample("message.action_submit_value.channel.json")
        activity = sample("invoke.adaptiveCard_action.personal.json")
        activity.update(
            id=f"f:{uuid.uuid4()}",
            replyToId=message_id,
            recipient=channel_action["recipient"],
            conversation={**channel_action["conversation"], "id": f"{channel};messageid={message_id}"},
            channelData={**channel_action["channelData"], "channel": {"id": channel}},
        )
        activity["value"]["action"] = {
            "type": "Action.Execute",
            "title": action["title"],
            "verb": verb,
            "data": {**action["data"], **inputs},
        }
        self._user(activity, user, name)
        return await self.send(activity)

    async def send_to_unsilo(
        self,
        *,
        department: str = "",
        link: str = "",
        user: str = "aad-carlos",
        name: str = "Carlos",
        message_id: str = "1611060744833",
        author: str = "Olo Brockhouse",
        html: str | None = None,
        activity_id: str = "f:19ccc884-c792-35ef-2f40-d0ff43dcca71",
    ) -> tuple[int, Any]:
        """The "Send to Unsilo" message action submitted on a channel message (`composeExtension/submitAction`).

        No such invoke was recorded. Its shape is Microsoft's documented one for a message action invoked on a
        channel message (MicrosoftDocs/msteams-docs, msteams-platform/messaging-extensions/how-to/action-commands/
        create-task-module.md, "Payload activity properties when a task module is invoked from a channel (reply to
        thread)", kept as written there: conversation, channelData, value with requestId, messagePayload and
        context), named `submitAction` and carrying the dialog's fields in `value.data` as
        respond-to-task-module-submit.md shows; that example leaves out what every activity carries (channelId,
        serviceUrl, recipient, entities, timestamps, locale), taken here from the recorded invoke.
        """
        activity = sample("invoke.adaptiveCard_action.personal.json")
        activity.pop("replyToId")
        activity.update(
            {
                "id": activity_id,
                "name": "composeExtension/submitAction",
                "conversation": {
                    "isGroup": True,
                    "conversationType": "channel",
                    "id": f"19:6decf54d86d945e4b3924b63a9161a78@thread.skype;messageid={message_id}",
                    "name": "parsable",
                    "tenantId": "0d9b645f-597b-41f0-a2a3-ef103fbd91bb",
                },
                "channelData": {
                    "channel": {"id": "19:6decf54d86d945e4b3924b63a9161a78@thread.skype"},
                    "team": {"id": "19:acca514e83cb497e960e0b014d405336@thread.skype"},
                    "tenant": {"id": "0d9b645f-597b-41f0-a2a3-ef103fbd91bb"},
                    "source": {"name": "compose"},
                },
                "value": {
                    "commandId": "sendToUnsilo",
                    "commandContext": "message",
                    "requestId": "7f7d22efe5414818becebcec649a7912",
                    "messagePayload": {
                        "linkToMessage": f"https://teams.microsoft.com/l/message/19:6decf54d86d945e4b3924b63a9161a78@thread.skype/{message_id}",
                        "id": message_id,
                        "replyToId": None,
                        "createdDateTime": "2021-01-19T12:52:24.833Z",
                        "lastModifiedDateTime": None,
                        "deleted": False,
                        "summary": None,
                        "importance": "normal",
                        "locale": "en-us",
                        "body": {
                            "contentType": "html",
                            "content": html
                            if html is not None
                            else '<div><div><at id="0">Testing outgoing Webhook-Nikitha</at> - Hi</div>\n</div>',
                        },
                        "from": {
                            "device": None,
                            "conversation": None,
                            "application": None,
                            "user": {
                                "userIdentityType": "aadUser",
                                "id": "b130c271-d2eb-45f9-83ab-9eb3fe3788bc",
                                "displayName": author,
                            },
                        },
                        "reactions": [],
                        "mentions": [
                            {
                                "id": 0,
                                "mentionText": "Testing outgoing Webhook-Nikitha",
                                "mentioned": {
                                    "device": None,
                                    "conversation": None,
                                    "user": None,
                                    "application": {
                                        "applicationIdentityType": "webhook",
                                        "id": "b8c1c68c-e290-4bdd-81c3-266f310751dc",
                                        "displayName": "Testing outgoing Webhook-Nikitha",
                                    },
                                },
                            }
                        ],
                        "attachments": [],
                    },
                    "context": {"theme": "default"},
                    "data": {k: v for k, v in (("department", department), ("link", link)) if v},
                },
            }
        )
        self._user(activity, user, name)
        return await self.send(activity)

    async def deliver(self) -> int:
        """Run the outbox until nothing is due."""
        return await self.container.worker().run_until_idle()


@asynccontextmanager
async def running_teams(
    tmp_path: Path,
    *,
    app_id: str = "",
    with_slack: bool = False,
    database_url: str | None = None,
    config: str = TEAMS_CONFIG,
    env: dict[str, str] | None = None,
    clock: Any = None,
    **connector: Any,
) -> AsyncIterator[TeamsHarness]:
    """The whole service on a free loopback port with Teams enabled (no auth unless `app_id`)."""
    reference_dir()  # every test on this harness replays the real samples: skip here when they are absent
    config_path = tmp_path / "teams.toml"
    config_path.write_text(config)
    async with AsyncExitStack() as stack:
        bot_connector = await stack.enter_async_context(BotConnectorStandIn(**connector))
        slack = await stack.enter_async_context(SlackStandIn()) if with_slack else None
        chosen = settings_from_env(
            {
                "MicrosoftAppId": app_id,
                "MicrosoftAppPassword": "test-password" if app_id else "",
                "UNSILO_TEAMS_LOCAL": "" if app_id else "1",
                **({"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": slack.url} if slack else {}),
                **(env or {}),
            },
            database_url=database_url or await migrated_sqlite(tmp_path / "teams.db"),
        )
        container = build(chosen, config=load_config(config_path), **({"clock": clock} if clock else {}))
        runner, url = await serve(create_app(container, run_worker=False))
        stack.push_async_callback(runner.cleanup)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        yield TeamsHarness(container=container, connector=bot_connector, slack=slack, url=url, http=http)


class BotFrameworkIssuer:
    """The Bot Framework's token issuer, stood in for on loopback: OpenID metadata and signing keys
    served over HTTP, and tokens signed the way the Bot Connector signs the requests it sends a bot.

    botframework-connector fetches the keys with blocking `requests`, so this serves from its
    own thread. Point the SDK at it with `ChannelValidation.open_id_metadata_endpoint = issuer.metadata_url`.
    """

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = f"test-{uuid.uuid4().hex[:8]}"
        self._server: ThreadingHTTPServer | None = None
        self.metadata_url = ""
        self.keys_asked = threading.Event()  # set when the signing keys are fetched
        self.keys_gate = threading.Event()  # clear it to hold the keys' answer back (a slow network)
        self.keys_gate.set()
        self.keys_served = threading.Event()

    def __enter__(self) -> BotFrameworkIssuer:
        from jwt.algorithms import RSAAlgorithm

        jwk = {**json.loads(RSAAlgorithm.to_jwk(self.key.public_key())), "kid": self.kid, "endorsements": ["msteams"]}
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path == "/keys":
                    issuer.keys_asked.set()
                    issuer.keys_gate.wait(10)
                base = f"http://127.0.0.1:{self.server.server_address[1]}"
                body = {
                    "/openid": {
                        "issuer": "https://api.botframework.com",
                        "jwks_uri": f"{base}/keys",
                        "id_token_signing_alg_values_supported": ["RS256"],
                    },
                    "/keys": {"keys": [jwk]},
                }.get(self.path)
                data = json.dumps(body).encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                if self.path == "/keys":
                    issuer.keys_served.set()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        issuer.metadata_url = f"http://127.0.0.1:{self._server.server_address[1]}/openid"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def token(
        self,
        *,
        app_id: str,
        service_url: str,
        key: Any = None,
        issuer: str = "https://api.botframework.com",
        expires_in: int = 3600,
    ) -> str:
        """A bearer token as the Bot Connector sends it to the bot `app_id` for `service_url`."""
        import jwt

        now = int(time.time())
        claims = {
            "iss": issuer,
            "aud": app_id,
            "serviceurl": service_url,
            "nbf": now - 60,
            "iat": now - 60,
            "exp": now + expires_in,
        }
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": self.kid})
