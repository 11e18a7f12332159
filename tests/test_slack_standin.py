"""The Slack Web API stand-in answers slack_sdk's AsyncWebClient like Slack would."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from tests.standins.slack_api import Call, SlackStandIn, sign

BLOCKS = [{"type": "section", "text": {"type": "mrkdwn", "text": "*New* conversation"}}]


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn() as standin:
        yield standin


def client_for(standin: SlackStandIn, token: str | None = "xoxb-test") -> AsyncWebClient:
    return AsyncWebClient(token=token, base_url=standin.url)


async def test_auth_test_answers_who_the_bot_is(slack: SlackStandIn) -> None:
    assert slack.url.startswith("http://127.0.0.1:") and slack.url.endswith("/")

    res = await client_for(slack).auth_test()

    assert res.status_code == 200
    assert res["ok"] is True
    assert res["user_id"] == slack.bot_user_id
    assert res["bot_id"] == slack.bot_id
    assert res["team_id"] == slack.team_id
    assert {"url", "team", "user"} <= set(res.data)
    [call] = slack.calls_to("auth.test")
    assert isinstance(call, Call)
    assert call.headers["authorization"] == "Bearer xoxb-test"
    assert call.token == "xoxb-test" and call.status == 200 and call.ok


async def test_post_then_update_shows_the_latest_version(slack: SlackStandIn) -> None:
    client = client_for(slack)

    first = await client.chat_postMessage(channel="C1", text="hello", blocks=BLOCKS)
    second = await client.chat_postMessage(channel="C1", text="reply", thread_ts=first["ts"])
    ts = first["ts"]
    assert first["channel"] == "C1" and first["message"]["text"] == "hello"
    assert second["ts"] != ts and float(second["ts"]) > float(ts)
    seconds, micros = ts.split(".")
    assert len(seconds) == 10 and len(micros) == 6

    new_blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "Claimed by *alice*"}}]
    updated = await client.chat_update(channel="C1", ts=ts, text="claimed", blocks=new_blocks)
    assert (updated["channel"], updated["ts"], updated["text"]) == ("C1", ts, "claimed")

    shown = slack.messages("C1")
    assert [m["text"] for m in shown] == ["claimed", "reply"]
    assert shown[0]["blocks"] == new_blocks and "edited" in shown[0]
    assert shown[1]["thread_ts"] == ts
    assert slack.message("C1", ts)["user"] == slack.bot_user_id
    assert slack.messages("C2") == []

    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel="C1", ts="1.000001", text="nope")
    assert err.value.response["error"] == "message_not_found"

    link = await client.chat_getPermalink(channel="C1", message_ts=second["ts"])
    assert link["permalink"].endswith(f"/archives/C1/p{second['ts'].replace('.', '')}?thread_ts={ts}&cid=C1")


async def test_form_encoded_and_get_requests_are_understood(slack: SlackStandIn) -> None:
    client = client_for(slack)

    res = await client.api_call("chat.postMessage", data={"channel": "C9", "text": "form", "blocks": json.dumps(BLOCKS)})
    assert res["ok"]
    assert slack.messages("C9")[0]["blocks"] == BLOCKS
    assert slack.calls_to("chat.postMessage")[0].headers["content-type"].startswith("application/x-www-form-urlencoded")

    slack.add_user("U1", "alice", real_name="Alice Liddell", email="alice@example.com")
    user = await client.users_info(user="U1")
    assert user["user"]["real_name"] == "Alice Liddell"
    assert user["user"]["profile"]["email"] == "alice@example.com"
    assert "display_name" in user["user"]["profile"]
    assert slack.calls_to("users.info")[0].http_method == "GET"

    channel = await client.conversations_info(channel="C9")
    assert channel["channel"]["id"] == "C9" and channel["channel"]["is_member"] is True


async def test_ephemeral_and_views(slack: SlackStandIn) -> None:
    client = client_for(slack)

    eph = await client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert eph["message_ts"] and slack.ephemeral[0]["user"] == "U1"
    assert slack.messages("C1") == []

    modal = {"type": "modal", "title": {"type": "plain_text", "text": "Claim"}, "blocks": BLOCKS}
    opened = await client.views_open(trigger_id="123.456.abc", view=modal)
    view_id = opened["view"]["id"]
    updated = await client.views_update(view_id=view_id, hash=opened["view"]["hash"], view={**modal, "blocks": []})
    assert updated["view"]["id"] == view_id and slack.views[view_id]["blocks"] == []
    with pytest.raises(SlackApiError) as err:
        await client.views_update(view_id=view_id, hash=opened["view"]["hash"], view=modal)
    assert err.value.response["error"] == "hash_conflict"
    with pytest.raises(SlackApiError) as err:
        await client.views_open(trigger_id="", view=modal)
    assert err.value.response["error"] == "invalid_arguments"

    home = await client.views_publish(user_id="U1", view={"type": "home", "blocks": BLOCKS})
    assert home["view"]["type"] == "home" and slack.home_views["U1"] == home["view"]["id"]


async def test_burst_to_one_channel_is_rate_limited_with_retry_after() -> None:
    async with SlackStandIn(rate_limit_per_channel=1.0) as slack:
        client = client_for(slack)

        results = await asyncio.gather(
            *(client.chat_postMessage(channel="C1", text=f"m{i}") for i in range(3)),
            client.chat_postMessage(channel="C2", text="other channel"),
            return_exceptions=True,
        )

        ok = [r for r in results if not isinstance(r, BaseException)]
        limited = [r for r in results if isinstance(r, SlackApiError)]
        assert len(ok) == 2 and len(limited) == 2  # one per channel got through
        for e in limited:
            assert e.response.status_code == 429
            assert e.response["error"] == "ratelimited"
            assert int(e.response.headers["Retry-After"]) >= 1  # headers are case-insensitive
        # The default AsyncWebClient does not retry a 429: exactly 3 calls reached C1.
        assert len([c for c in slack.calls_to("chat.postMessage") if c.args["channel"] == "C1"]) == 3
        assert [c.status for c in slack.calls_to("chat.postMessage")].count(429) == 2
        assert len(slack.messages("C1")) == 1 and len(slack.messages("C2")) == 1


async def test_opt_in_retry_handler_waits_for_retry_after(slack: SlackStandIn) -> None:
    slack.fail_next("chat.postMessage", status=429, retry_after=1)
    client = AsyncWebClient(
        token="xoxb-test", base_url=slack.url, retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)]
    )

    started = time.monotonic()
    res = await client.chat_postMessage(channel="C1", text="eventually")

    assert res["ok"] and time.monotonic() - started >= 1.0
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [429, 200]
    assert [m["text"] for m in slack.messages("C1")] == ["eventually"]


async def test_slow_mode_delays_every_answer() -> None:
    async with SlackStandIn(delay=0.3) as slack:
        client = client_for(slack)

        started = time.monotonic()
        sending = asyncio.create_task(client.chat_postMessage(channel="C1", text="slow"))
        await asyncio.sleep(0.1)
        # The request has arrived, but the "API work" has not finished yet.
        [call] = slack.calls_to("chat.postMessage")
        assert call.status is None and slack.messages("C1") == []

        res = await sending
        assert res["ok"] and time.monotonic() - started >= 0.3
        assert [m["text"] for m in slack.messages("C1")] == ["slow"]
        await slack.wait_for("chat.postMessage")


@pytest.mark.parametrize("token", ["xoxp-user-token", "bogus", None])
async def test_invalid_or_missing_token_is_invalid_auth(slack: SlackStandIn, token: str | None) -> None:
    with pytest.raises(SlackApiError) as err:
        await client_for(slack, token).chat_postMessage(channel="C1", text="hi")

    assert err.value.response.status_code == 200
    assert err.value.response["error"] == "invalid_auth"
    assert slack.calls_to("chat.postMessage")[0].token == token
    assert slack.messages("C1") == []


async def test_unknown_method_and_injected_failures(slack: SlackStandIn) -> None:
    client = client_for(slack)

    with pytest.raises(SlackApiError) as err:
        await client.api_call("chat.frobnicate", json={"channel": "C1"})
    assert err.value.response["error"] == "unknown_method"

    slack.fail_next("chat.postMessage", status=500)
    slack.fail_next("chat.postMessage", error="channel_not_found", times=2)
    for expected in [(500, "internal_error"), (200, "channel_not_found"), (200, "channel_not_found")]:
        with pytest.raises(SlackApiError) as err:
            await client.chat_postMessage(channel="C1", text="x")
        assert (err.value.response.status_code, err.value.response["error"]) == expected
    assert (await client.chat_postMessage(channel="C1", text="x"))["ok"]
    assert len(slack.messages("C1")) == 1

    with pytest.raises(ValueError):
        slack.fail_next("chat.nope", error="x")


async def test_strict_mode_rejects_unknown_ids() -> None:
    async with SlackStandIn(strict=True) as slack:
        client = client_for(slack)
        slack.add_channel("C1", "support")

        assert (await client.chat_postMessage(channel="C1", text="ok"))["ok"]
        for call, error in [
            (client.chat_postMessage(channel="C404", text="x"), "channel_not_found"),
            (client.users_info(user="U404"), "user_not_found"),
            (client.conversations_info(channel="C404"), "channel_not_found"),
        ]:
            with pytest.raises(SlackApiError) as err:
                await call
            assert err.value.response["error"] == error


async def test_custom_route(slack: SlackStandIn) -> None:
    slack.route("reactions.add", lambda call: {"ok": True, "echo": call.args["name"]})

    res = await client_for(slack).reactions_add(channel="C1", timestamp="1.000001", name="eyes")

    assert res["echo"] == "eyes"


def test_sign_matches_slack_signature_verifier() -> None:
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    body = b"token=xyz&team_id=T1&command=%2Funsilo&text=claim+42"
    verifier = SignatureVerifier(secret)

    headers = sign(secret, body)
    assert verifier.is_valid_request(body, headers)
    assert headers["X-Slack-Signature"].startswith("v0=") and len(headers["X-Slack-Signature"]) == 67

    fixed = sign(secret, body, timestamp=1531420618)
    assert fixed["X-Slack-Request-Timestamp"] == "1531420618"
    assert fixed["X-Slack-Signature"] == verifier.generate_signature(timestamp="1531420618", body=body)
    assert not verifier.is_valid_request(body, fixed)  # outside the 5-minute window
    assert not verifier.is_valid_request(body + b"x", headers)
    assert not SignatureVerifier("another-secret").is_valid_request(body, headers)
