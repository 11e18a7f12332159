"""A listening tool pushes customer conversations to `POST /hooks/<source>`, signed with the source's secret.

Real HTTP on loopback against the real service and the real store (SQLite and PostgreSQL).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from sqlmodel import select

from adapters.sources.webhooks import MAX_BODY, sign
from bot import commands as c
from bot.app import create_app
from bot.bootstrap import Container
from storage.models import Conversation, Event
from tests.conftest import FakeClock
from tests.standins import serve

SECRET = "whsec-listening-5f0c2a"


@dataclass
class Hooks:
    """The running service, its fake clock, and a client that posts like a listening tool."""

    container: Container
    clock: FakeClock
    url: str
    http: aiohttp.ClientSession

    async def post(
        self,
        item: Any,
        *,
        source: str = "listening",
        secret: str = SECRET,
        age_seconds: int = 0,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """POST one item (or raw `body`), signed `age_seconds` ago by the service's clock."""
        raw = body if body is not None else json.dumps(item).encode()
        timestamp = int(self.clock().timestamp()) - age_seconds
        signed = {"X-Unsilo-Timestamp": str(timestamp), "X-Unsilo-Signature": sign(secret, timestamp, raw)}
        all_headers = {"Content-Type": "application/json", **signed, **(headers or {})}
        async with self.http.post(f"{self.url}/hooks/{source}", data=raw, headers=all_headers) as response:
            return response.status, await response.json()

    async def stored(self) -> list[Conversation]:
        """Every conversation in the store, oldest first."""
        async with self.container.uow() as uow:
            return list((await uow.session.exec(select(Conversation).order_by(Conversation.id))).all())


@pytest.fixture
async def hooks(make_container: Callable[..., Container]) -> AsyncIterator[Hooks]:
    """The service on a free port with one webhook source, `listening`, tagged `social`."""
    clock = FakeClock()
    container = make_container(clock=clock)
    runner, url = await serve(create_app(container, run_worker=False))  # startup prepares the store
    try:
        async with container.uow() as uow:
            source = await uow.sources.ensure("listening", kind="webhook")
            source.secret, source.tags = SECRET, ["social"]
            await uow.sources.ensure("blog", kind="feed", url="https://blog.example.com/feed")
            await uow.commit()
        async with aiohttp.ClientSession() as http:
            yield Hooks(container=container, clock=clock, url=url, http=http)
    finally:
        await runner.cleanup()


def short(external_id: str) -> dict[str, Any]:
    """A post of its own (too short to be compared with others' texts: never another voice, bot/voices.py)."""
    return tweet(external_id, text=f"where is my order {external_id}?")


def tweet(external_id: str | int = "1862000000000000001", **changes: Any) -> dict[str, Any]:
    """A complete, valid item as a social listening tool would push it."""
    item: dict[str, Any] = {
        "id": external_id,
        "text": "<!channel> my parcel never arrived & nobody answers <b>help</b>",
        "author": {"name": "Maya Lopez", "handle": "@maya", "url": "https://x.example/maya"},
        "url": f"https://x.example/maya/status/{external_id}",
        "created_at": "2026-11-16T08:55:00Z",
        "channel": "twitter",
        "reply_url": "https://listening.example/api/reply/1862",
        "title": "Lost parcel",
        "tags": ["vip"],
    }
    item.update(changes)
    return item


async def test_a_valid_item_is_stored_once_with_its_author_link_channel_and_reply_url(hooks: Hooks) -> None:
    status, body = await hooks.post(tweet())

    assert status == 200
    [conversation] = await hooks.stored()
    assert body == {"id": conversation.id, "status": "created"}
    assert conversation.source == "listening"
    assert conversation.external_id == "1862000000000000001"
    assert conversation.text == "<!channel> my parcel never arrived & nobody answers <b>help</b>"  # data, kept as sent
    assert (conversation.author_name, conversation.author_handle, conversation.author_url) == (
        "Maya Lopez",
        "@maya",
        "https://x.example/maya",
    )
    assert conversation.url == "https://x.example/maya/status/1862000000000000001"
    assert conversation.channel == "twitter"
    assert conversation.reply_url == "https://listening.example/api/reply/1862"
    assert conversation.title == "Lost parcel"
    assert conversation.created_at is not None and conversation.created_at.isoformat() == "2026-11-16T08:55:00+00:00"
    assert conversation.status == "open"
    assert {"social", "vip", "delivery"} <= set(conversation.tags)  # source tags + payload tags + routing
    async with hooks.container.uow() as uow:
        assert await uow.conversations.department_names([conversation.id]) == {conversation.id: ["ops", "support"]}
        events = (await uow.session.exec(select(Event).where(Event.conversation_id == conversation.id))).all()
    assert [e.kind for e in events] == ["ingested"]


async def test_a_minimal_item_needs_only_id_text_and_author_name(hooks: Hooks) -> None:
    status, body = await hooks.post({"id": 42, "text": "  Is the shop open on Sunday?  ", "author": {"name": "Sam"}})

    assert status == 200 and body["status"] == "created"
    [conversation] = await hooks.stored()
    assert (conversation.external_id, conversation.text, conversation.author_name) == ("42", "Is the shop open on Sunday?", "Sam")
    assert (conversation.url, conversation.channel, conversation.reply_url) == ("", "", "")  # no reply_url: left empty
    assert conversation.tags == ["social"]


async def test_html_text_is_read_as_html_only_when_the_payload_says_so(hooks: Hooks) -> None:
    status, _ = await hooks.post(tweet("forum-7", text="<p>Refund <b>please</b></p><script>x()</script>", format="html"))

    assert status == 200
    [conversation] = await hooks.stored()
    assert conversation.text == "Refund please"


async def test_the_same_delivery_retried_answers_with_the_same_conversation(hooks: Hooks) -> None:
    first_status, first = await hooks.post(tweet())
    hooks.clock.advance(seconds=30)  # the tool retries half a minute later, freshly signed
    again_status, again = await hooks.post(tweet(text="edited text the tool sent on retry"))

    assert (first_status, again_status) == (200, 200)
    assert first["status"] == "created"
    assert again == {"id": first["id"], "status": "duplicate"}
    [conversation] = await hooks.stored()
    assert conversation.id == first["id"]
    assert conversation.text.startswith("<!channel> my parcel")  # the first delivery stands


async def test_an_integer_id_and_its_string_form_are_the_same_item(hooks: Hooks) -> None:
    _, first = await hooks.post(tweet(1862))
    _, again = await hooks.post(tweet("1862"))

    assert again == {"id": first["id"], "status": "duplicate"}
    assert len(await hooks.stored()) == 1


async def test_a_forged_signature_is_refused_and_nothing_is_stored(hooks: Hooks, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="adapters.sources.webhooks")

    status, body = await hooks.post(tweet(), secret="guessed-secret")

    assert status == 401
    assert body == {"error": "invalid signature"}
    assert await hooks.stored() == []
    [line] = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert "'listening'" in line and "signature does not match" in line
    assert SECRET not in caplog.text and "parcel" not in caplog.text  # neither the secret nor the body


async def test_a_body_changed_after_signing_is_refused(hooks: Hooks) -> None:
    signed_body = json.dumps(tweet()).encode()
    timestamp = int(hooks.clock().timestamp())
    tampered = signed_body.replace(b"Maya Lopez", b"Mallory")
    headers = {"X-Unsilo-Timestamp": str(timestamp), "X-Unsilo-Signature": sign(SECRET, timestamp, signed_body)}
    async with hooks.http.post(f"{hooks.url}/hooks/listening", data=tampered, headers=headers) as response:
        assert response.status == 401
    assert await hooks.stored() == []


async def test_an_unsigned_delivery_is_refused(hooks: Hooks) -> None:
    async with hooks.http.post(f"{hooks.url}/hooks/listening", json=tweet()) as response:
        status, body = response.status, await response.json()

    assert status == 401
    assert "X-Unsilo-Signature" in body["error"]
    assert await hooks.stored() == []


async def test_a_delivery_signed_six_minutes_ago_is_refused_as_stale(hooks: Hooks, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="adapters.sources.webhooks")

    status, body = await hooks.post(tweet(), age_seconds=6 * 60)
    future_status, _ = await hooks.post(tweet(), age_seconds=-6 * 60)  # a sender clock running ahead
    four_minutes_status, _ = await hooks.post(tweet(), age_seconds=4 * 60)

    assert (status, future_status) == (401, 401)
    assert "stale" in body["error"]
    assert "timestamp off by 360s" in caplog.text
    assert four_minutes_status == 200  # inside the window
    assert len(await hooks.stored()) == 1


async def test_missing_fields_are_each_listed(hooks: Hooks) -> None:
    status, body = await hooks.post({"author": {"handle": "@maya"}, "text": "   "})

    assert status == 400
    assert body == {
        "error": "invalid payload",
        "fields": {"id": "is required", "text": "must not be empty", "author.name": "is required"},
    }
    status, body = await hooks.post({})
    assert body["fields"] == {"id": "is required", "text": "is required", "author": "is required"}
    assert await hooks.stored() == []


async def test_wrong_types_are_each_listed(hooks: Hooks) -> None:
    status, body = await hooks.post(
        {
            "id": True,
            "text": ["hello"],
            "author": {"name": 7, "handle": None, "url": "javascript:alert(1)"},
            "url": 12,
            "created_at": "last Tuesday",
            "channel": {"name": "twitter"},
            "reply_url": "ftp://listening.example/reply",
            "title": False,
            "tags": ["ok", 3],
            "format": "markdown",
        }
    )

    assert status == 400
    assert body == {
        "error": "invalid payload",
        "fields": {
            "id": "must be a string or an integer",
            "text": "must be a string",
            "author.name": "must be a string",
            "author.url": "must be an http or https URL",
            "url": "must be a string",
            "created_at": "must be an ISO 8601 date-time",
            "channel": "must be a string",
            "reply_url": "must be an http or https URL",
            "title": "must be a string",
            "tags": "must be a list of strings",
            "format": 'must be "text" or "html"',
        },
    }
    status, body = await hooks.post({"id": "1", "text": "hi", "author": "Maya"})
    assert (status, body["fields"]) == (400, {"author": "must be an object with a name"})
    assert await hooks.stored() == []


async def test_invalid_json_is_refused(hooks: Hooks) -> None:
    status, body = await hooks.post(None, body=b'{"id": "1", "text": "hi",')
    array_status, array_body = await hooks.post([tweet()])
    latin1_status, _ = await hooks.post(None, body='{"id": "1", "text": "caf\xe9"}'.encode("latin-1"))

    assert status == 400 and body["error"].startswith("invalid JSON")
    assert (array_status, array_body) == (400, {"error": "the body must be a JSON object"})
    assert latin1_status == 400
    assert await hooks.stored() == []


async def test_a_one_megabyte_body_is_refused_as_too_large(hooks: Hooks) -> None:
    huge = json.dumps(tweet(text="x" * 1024 * 1024)).encode()

    status, body = await hooks.post(None, body=huge)

    assert status == 413
    assert body == {"error": f"body too large: at most {MAX_BODY} bytes"}
    assert await hooks.stored() == []


async def test_a_streamed_body_without_content_length_is_cut_off_at_the_limit(hooks: Hooks) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(16):  # 1 MB in 64 KB chunks, sent chunked
            yield b" " * 65536

    timestamp = int(hooks.clock().timestamp())
    headers = {"X-Unsilo-Timestamp": str(timestamp), "X-Unsilo-Signature": sign(SECRET, timestamp, b"")}
    async with hooks.http.post(f"{hooks.url}/hooks/listening", data=chunks(), headers=headers) as response:
        status = response.status

    assert status == 413
    assert await hooks.stored() == []


async def test_a_body_of_exactly_the_limit_is_accepted(hooks: Hooks) -> None:
    item = tweet()
    padding = MAX_BODY - len(json.dumps(item).encode())
    body = json.dumps(item).encode()[:-1] + b" " * padding + b"}"

    status, _ = await hooks.post(None, body=body)

    assert len(body) == MAX_BODY and status == 200


async def test_an_unknown_source_is_not_found(hooks: Hooks) -> None:
    unknown_status, unknown = await hooks.post(tweet(), source="nobody")
    feed_status, feed = await hooks.post(tweet(), source="blog")  # a feed, not a webhook

    assert (unknown_status, feed_status) == (404, 404)
    assert unknown == feed == {"error": "unknown source"}
    assert await hooks.stored() == []


async def test_a_webhook_source_without_a_secret_accepts_nothing(hooks: Hooks) -> None:
    async with hooks.container.uow() as uow:
        await uow.sources.ensure("half-configured", kind="webhook")
        await uow.commit()

    status, body = await hooks.post(tweet(), source="half-configured", secret="")

    assert (status, body) == (401, {"error": "invalid signature"})
    assert await hooks.stored() == []


async def test_a_rotated_secret_replaces_the_old_one_after_its_grace_period_and_a_removed_source_is_gone(
    hooks: Hooks,
) -> None:
    admin = c.Actor("cli", "carol", name="carol")
    rotated = await hooks.container.bus.handle(c.RotateSecret(admin, "listening", grace_seconds=2 * 3600))
    new = rotated.text.split("(shown once, keep it safe): ")[1].split("\n")[0]
    assert new != SECRET and "the old one is accepted until 2026-11-16 11:00 UTC" in rotated.text

    assert (await hooks.post(short("r-1"), secret=SECRET))[0] == 200  # the tool not updated yet: still accepted
    assert (await hooks.post(short("r-2"), secret=new))[0] == 200
    hooks.clock.advance(hours=2, seconds=1)
    assert await hooks.post(short("r-3"), secret=SECRET) == (401, {"error": "invalid signature"})
    assert (await hooks.post(short("r-4"), secret=new))[0] == 200
    assert [conversation.external_id for conversation in await hooks.stored()] == ["r-1", "r-2", "r-4"]

    removed = await hooks.container.bus.handle(c.RemoveSource(admin, "listening"))
    assert removed.text.startswith("webhook listening removed: /hooks/listening refuses deliveries;")
    assert await hooks.post(short("r-5"), secret=new) == (410, {"error": "this source was removed"})
    assert len(await hooks.stored()) == 3  # the conversations it brought stay


async def test_a_batch_of_valid_and_invalid_posts_leaves_exactly_the_valid_items_once_each(hooks: Hooks) -> None:
    deliveries = [
        ({"item": short("a")}, 200),
        ({"item": tweet("b", text="<@U0ADMIN> <https://evil.example|click> *urgent*")}, 200),
        ({"item": short("c"), "secret": "wrong"}, 401),
        ({"item": tweet("d", author={})}, 400),
        ({"item": short("a")}, 200),  # retried
        ({"item": short("e"), "age_seconds": 3600}, 401),
        ({"item": tweet("f", reply_url="mailto:maya@example.com")}, 400),
        ({"item": None, "body": b"not json"}, 400),
        ({"item": short("g"), "source": "blog"}, 404),
        ({"item": short("b")}, 200),  # retried
        ({"item": tweet("h", channel="forum", tags=None, reply_url=None)}, 200),
    ]

    statuses = []
    for kwargs, _ in deliveries:
        status, _ = await hooks.post(**kwargs)
        statuses.append(status)

    assert statuses == [expected for _, expected in deliveries]
    stored = await hooks.stored()
    assert [c.external_id for c in stored] == ["a", "b", "h"]
    assert stored[1].text == "<@U0ADMIN> <https://evil.example|click> *urgent*"
    assert (stored[2].channel, stored[2].reply_url) == ("forum", "")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
def test_sign_matches_the_openssl_command_of_the_readme() -> None:
    body = b'{"id": "1", "text": "caf\xc3\xa9", "author": {"name": "Maya"}}'
    timestamp = 1794819600

    printf = subprocess.run(
        ["openssl", "dgst", "-sha256", "-hmac", SECRET], input=f"{timestamp}.".encode() + body, capture_output=True, check=True
    ).stdout.decode()

    assert sign(SECRET, timestamp, body) == "sha256=" + printf.split()[-1]
    assert sign(SECRET, str(timestamp), body) == sign(SECRET, timestamp, body)


@pytest.mark.parametrize(
    "reply_url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/replies",
        "http://[::1]:8080/r",
        "http://[::ffff:127.0.0.2]/r",
        "http://localhost/r",
        "http://127.0.0.2:9000/r",
    ],
)
async def test_a_reply_url_pointing_inside_is_refused_and_nothing_is_stored(hooks: Hooks, reply_url: str) -> None:
    """SSRF: an item's reply_url would make the service POST the employee's reply to an internal address."""
    status, body = await hooks.post(tweet(reply_url=reply_url))
    assert status == 400 and "internal" in body["fields"]["reply_url"] and set(body["fields"]) == {"reply_url"}
    assert await hooks.stored() == []


async def test_a_name_resolving_inside_is_refused_at_connect_time() -> None:
    """A host *name* that resolves to an internal address (here: this machine's own name, as DNS
    rebinding would make any name) passes the URL check but never gets a connection."""
    import socket

    from aiohttp import web

    from adapters.net.guard import AddressGuard, UnsafeURL

    name = socket.gethostname()
    addresses = {info[4][0] for info in socket.getaddrinfo(name, None)}
    if not addresses or any(not a.startswith(("127.", "10.", "172.", "192.168.", "::1", "fe80")) for a in addresses):
        pytest.skip(f"{name} does not resolve to an internal address here ({addresses})")

    async def receive(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/replies", receive)
    runner, url = await serve(app)
    port = url.rsplit(":", 1)[1]
    guard = AddressGuard(["127.0.0.1"]) if name == "localhost" else AddressGuard()
    try:
        guard.check_url(f"http://{name}:{port}/replies")  # a name: nothing to see before resolving
        async with aiohttp.ClientSession(connector=guard.connector()) as http:
            with pytest.raises(UnsafeURL, match="internal address"):
                await http.post(f"http://{name}:{port}/replies", json={})
        async with aiohttp.ClientSession(connector=AddressGuard(["127.0.0.0/8"]).connector()) as http:
            async with http.post(f"http://{name}:{port}/replies", json={}) as response:  # allowed by range
                assert response.status == 200
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"id": "\u0000\u200b"}, "id"),
        ({"text": "\u200b\u200d\u2060 \ufeff"}, "text"),  # only invisible characters: accepted before
        ({"author": {"name": "\u200b\u202e"}}, "author.name"),
        ({"created_at": "0001-01-01T00:00:00+01:00"}, "created_at"),  # before year 1 once in UTC: OverflowError
        ({"created_at": "9999-12-31T23:59:59-01:00"}, "created_at"),  # after 9999 once in UTC
    ],
)
async def test_hostile_fields_get_a_400_naming_them_and_nothing_is_stored(
    hooks: Hooks, changes: dict[str, Any], field: str
) -> None:
    status, body = await hooks.post(tweet(**changes))
    assert status == 400 and field in body["fields"], body
    assert await hooks.stored() == []


async def test_deep_json_and_hostile_characters_in_short_fields(hooks: Hooks) -> None:
    status, body = await hooks.post(None, body=b"[" * 100_000 + b"]" * 100_000)
    assert status == 400 and "nested too deeply" in body["error"]
    status, body = await hooks.post(
        tweet(
            external_id="tw-\u0000\ud800-1",
            author={"name": "Maya", "handle": "@m\u0000aya"},
            channel="twit\u0000ter",
            url="https://x.example/\u0000a",
        )
    )
    assert status == 200, body  # cleaned, like the text: NUL and lone surrogates never reach PostgreSQL
    [conversation] = await hooks.stored()
    assert (conversation.external_id, conversation.author_handle, conversation.channel) == ("tw--1", "@maya", "twitter")


async def test_a_repost_of_an_open_conversation_is_answered_as_another_voice_of_it(
    make_container: Callable[..., Container],
) -> None:
    clock = FakeClock()
    container = make_container(clock=clock)
    runner, url = await serve(create_app(container, run_worker=False))
    try:
        async with container.uow() as uow:
            source = await uow.sources.ensure("listening", kind="webhook")
            source.secret = SECRET
            await uow.commit()
        async with aiohttp.ClientSession() as http:
            hooks = Hooks(container=container, clock=clock, url=url, http=http)
            status, first = await hooks.post(tweet("t-1"))
            assert (status, first["status"]) == (200, "created")
            # The same post, shared with tracking parameters: another voice of it, not a second card.
            repost = tweet("t-2", url="https://x.example/maya/status/t-1?utm_source=share&fbclid=abc")
            assert await hooks.post(repost) == (200, {"id": first["id"], "status": "voice"})
            assert await hooks.post(repost) == (200, {"id": first["id"], "status": "duplicate"})  # retried
            assert [cv.voice_count for cv in await hooks.stored()] == [1]
    finally:
        await runner.cleanup()
