"""A loopback stand-in for Slack's Socket Mode, for tests.

Slack's side of the protocol (api.slack.com/apis/socket-mode; shapes as in
slackapi/python-slack-sdk `tests/slack_sdk/socket_mode/mock_socket_mode_server.py`):

* `apps.connections.open` (Web API, app-level `xapp-` token) answers `{"ok": true, "url": "wss://…"}`;
  this stand-in adds that method to a `SlackStandIn` and hands out a `ws://127.0.0.1:…` URL.
  A token other than `valid_app_token` is refused with `invalid_auth`, as Slack does.
* On connect the server sends `{"type": "hello", "num_connections": 1, "debug_info": {...},
  "connection_info": {"app_id": ...}}`.
* Requests arrive as envelopes `{"envelope_id", "type": "events_api" | "slash_commands" |
  "interactive", "payload", "accepts_response_payload", "retry_attempt", "retry_reason"}`; the app
  acknowledges each with `{"envelope_id": ..., "payload": {...}?}` on the socket.
* `disconnect` sends `{"type": "disconnect", "reason": "refresh_requested", ...}`: the client must
  open a new connection (a new `apps.connections.open`) and keep working.
* `drop()` closes the socket without a word, as a network failure would.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.standins import serve
from tests.standins.slack_api import Call, SlackStandIn, _ApiError


@dataclass
class Envelope:
    """One request sent over the socket and the app's acknowledgement (None until acked)."""

    envelope_id: str
    type: str
    payload: dict[str, Any]
    ack: dict[str, Any] | None = None
    acked: asyncio.Event = field(default_factory=asyncio.Event)


class SocketModeStandIn:
    """Slack's Socket Mode server on loopback, attached to a `SlackStandIn`'s Web API."""

    def __init__(self, web_api: SlackStandIn, *, valid_app_token: str = "xapp-1-A00STANDAPP-1-valid") -> None:
        self.web_api = web_api
        self.valid_app_token = valid_app_token
        self.refuse_connections = False  # True: apps.connections.open answers HTTP 503 (an outage)
        self.connections = 0  # sockets opened so far
        self.hello_sent = asyncio.Event()
        self.envelopes: dict[str, Envelope] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self._runner: web.AppRunner | None = None
        self._url = ""
        web_api.route("apps.connections.open", self._open)

    async def __aenter__(self) -> SocketModeStandIn:
        app = web.Application()
        app.router.add_get("/link", self._socket)
        self._runner, self._url = await serve(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _open(self, call: Call) -> dict[str, Any]:
        if self.refuse_connections:
            raise _ApiError("service_unavailable", status=503)
        if call.token != self.valid_app_token:
            raise _ApiError("invalid_auth")
        ticket = uuid.uuid4().hex
        return {"ok": True, "url": f"{self._url.replace('http://', 'ws://')}/link?ticket={ticket}&app_id=A00STANDAPP"}

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections += 1
        self._sockets.append(ws)
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": 1,
                "debug_info": {"host": "applink-standin", "build_number": 1, "approximate_connection_time": 18060},
                "connection_info": {"app_id": "A00STANDAPP"},
            }
        )
        self.hello_sent.set()
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                data = json.loads(message.data)
                envelope = self.envelopes.get(data.get("envelope_id", ""))
                if envelope is not None:
                    envelope.ack = data
                    envelope.acked.set()
        finally:
            if ws in self._sockets:
                self._sockets.remove(ws)
        return ws

    @property
    def connected(self) -> bool:
        """Whether a client socket is open."""
        return any(not ws.closed for ws in self._sockets)

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """Wait until a client holds an open socket."""
        async with asyncio.timeout(timeout):
            while not self.connected:
                await asyncio.sleep(0.02)

    async def send(self, kind: str, payload: dict[str, Any], *, timeout: float = 5.0) -> Envelope:
        """Send one envelope (`events_api`, `slash_commands`, `interactive`) and wait for its ack."""
        await self.wait_connected()
        envelope = Envelope(envelope_id=str(uuid.uuid4()), type=kind, payload=payload)
        self.envelopes[envelope.envelope_id] = envelope
        frame = {
            "envelope_id": envelope.envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": 0,
            "retry_reason": "",
        }
        socket = next(ws for ws in self._sockets if not ws.closed)
        await socket.send_json(frame)
        await asyncio.wait_for(envelope.acked.wait(), timeout)
        return envelope

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the client to reconnect, as Slack does every few hours."""
        for ws in list(self._sockets):
            await ws.send_json({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-standin"}})

    async def drop(self) -> None:
        """Close every socket abruptly (no `disconnect` message first)."""
        for ws in list(self._sockets):
            await ws.close(code=1006)
