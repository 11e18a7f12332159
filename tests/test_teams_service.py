"""Teams over HTTP when things go wrong or start: refused tokens say why, an answer Teams does
not take leaves the command standing, an installation says hello, /healthz tells Teams' state.

Activities come from the recorded samples in ../shared/reference/teams; the Bot Connector service
and the Bot Framework's token issuer are stood in for on loopback."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bot.ingest import make_incoming
from tests.teams_support import CHANNEL, TeamsHarness, running_teams, sample
from tests.test_teams import APP_ID, card_text, link_support, sent_cards


@pytest.fixture
async def teams(tmp_path: Path):
    async with running_teams(tmp_path) as harness:
        yield harness


@pytest.fixture
def issuer(monkeypatch: pytest.MonkeyPatch):
    from botframework.connector.auth import ChannelValidation

    from tests.teams_support import BotFrameworkIssuer

    with BotFrameworkIssuer() as stand_in:
        monkeypatch.setattr(ChannelValidation, "open_id_metadata_endpoint", stand_in.metadata_url)
        yield stand_in


async def ingest(h: TeamsHarness, external_id: str = "1") -> int:
    report = await h.container.ingest(
        [
            make_incoming(
                source="reviews",
                external_id=external_id,
                text="my kettle arrived broken, refund please",
                url=f"https://reviews.example.com/r/{external_id}",
                author_name="Priya",
            )
        ]
    )
    return report.new_ids[0]


# --- item 9: a 401 says why ------------------------------------------------------------------


async def test_every_refused_request_is_logged_with_its_reason_and_never_its_token(
    tmp_path: Path, issuer, caplog: pytest.LogCaptureFixture
) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    async with running_teams(tmp_path, app_id=APP_ID) as secured:
        cid = await ingest(secured)
        url = secured.connector.url
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cases = {
            "no Authorization header": None,
            "signature does not verify": issuer.token(app_id=APP_ID, service_url=url, key=stranger),
            "for another bot (audience 'another-bot'": issuer.token(app_id="another-bot", service_url=url),
            "issued for another service URL": issuer.token(app_id=APP_ID, service_url="https://evil.example/"),
            "not a Bearer token from the Bot Framework's issuer": issuer.token(
                app_id=APP_ID, service_url=url, issuer="https://evil.example"
            ),
            "has expired": issuer.token(app_id=APP_ID, service_url=url, expires_in=-3600),
            "not a readable JWT": "not-a-real-token",
        }
        for reason, token in cases.items():
            for send in ("invoke", "message"):
                caplog.clear()
                with caplog.at_level(logging.WARNING, logger="adapters.teams.service"):
                    if send == "invoke":
                        status, _ = await secured.invoke("claim", cid, name="Alice", token=token)
                    else:
                        activity = sample("message.channel.mention.json")
                        status, _ = await secured.send(activity, headers={"Authorization": f"Bearer {token}"} if token else None)
                assert status == 401, (reason, send)
                logged = [r.getMessage() for r in caplog.records if "refused with 401" in r.getMessage()]
                assert len(logged) == 1 and reason in logged[0], (reason, send, logged)
                assert token is None or token not in caplog.text
        async with secured.container.uow() as uow:
            assert (await uow.conversations.get(cid)).status == "open"  # type: ignore[union-attr]


async def test_a_token_with_alg_none_or_an_unknown_key_is_a_401_not_a_500(tmp_path: Path, issuer) -> None:
    import jwt

    async with running_teams(tmp_path, app_id=APP_ID) as secured:
        cid = await ingest(secured)
        unsigned = jwt.encode(
            {"iss": "https://api.botframework.com", "aud": APP_ID, "serviceurl": secured.connector.url}, None, algorithm="none"
        )
        good = issuer.token(app_id=APP_ID, service_url=secured.connector.url)
        unknown_kid = jwt.encode(
            jwt.decode(good, options={"verify_signature": False}),
            issuer.key,
            algorithm="RS256",
            headers={"kid": "nobody-knows-this-key"},
        )
        for token in (unsigned, unknown_kid):
            status, _ = await secured.invoke("claim", cid, name="Alice", token=token)
            assert status == 401


# --- item 9: the token is checked before the body is read --------------------------------------------


def _bad_tokens(issuer, service_url: str) -> dict[str, str | None]:
    """Tokens the Bot Framework never sends, by what is wrong with them."""
    import jwt

    claims = {"iss": "https://api.botframework.com", "aud": APP_ID, "serviceurl": service_url}
    good = issuer.token(app_id=APP_ID, service_url=service_url)
    return {
        "no token": None,
        "malformed": "not-a-real-token",
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "HS256": jwt.encode(claims, "a shared secret of thirty-two bytes", algorithm="HS256"),
        "unknown kid": jwt.encode(
            jwt.decode(good, options={"verify_signature": False}),
            issuer.key,
            algorithm="RS256",
            headers={"kid": "nobody-knows-this-key"},
        ),
    }


async def _post(h: TeamsHarness, body: bytes, token: str | None) -> int:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    async with h.http.post(f"{h.url}/api/messages", data=body, headers=headers) as response:
        await response.read()
        return response.status


async def test_an_unauthenticated_request_is_refused_401_whatever_its_body_and_without_reading_it(tmp_path: Path, issuer) -> None:
    """A caller without the Bot Framework's token learns nothing about how its body would be read (it got
    400 for deep JSON or an array, 413 for 2 MB), and a large activity costs no more to refuse than a small one
    (a 0.9 MB activity of 12,000 entities was parsed twice and deserialized by msrest first: ~130 ms of CPU)."""
    import time

    async with running_teams(tmp_path, app_id=APP_ID) as secured:
        url = secured.connector.url
        many_entities = sample("message.channel.mention.json") | {"serviceUrl": url}
        many_entities["entities"] = [{"type": "clientInfo", "locale": "en-US", "country": "US"}] * 12_000
        bodies = {
            "deep JSON": b"[" * 100_000 + b"]" * 100_000,
            "a JSON array": b"[1, 2, 3]",
            "not JSON": b"{not json",
            "2 MB": b'{"type": "message", "text": "' + b"x" * (2 * 1024 * 1024) + b'"}',
            "0.9 MB activity": json.dumps(many_entities).encode(),
            "small activity": json.dumps(sample("message.channel.mention.json") | {"serviceUrl": url}).encode(),
        }
        for token_name, token in _bad_tokens(issuer, url).items():
            for body_name, body in bodies.items():
                assert await _post(secured, body, token) == 401, (token_name, body_name)

        async def seconds_to_refuse(body: bytes) -> float:
            started = time.perf_counter()
            for _ in range(5):
                assert await _post(secured, body, None) == 401
            return (time.perf_counter() - started) / 5

        small, large = await seconds_to_refuse(bodies["small activity"]), await seconds_to_refuse(bodies["0.9 MB activity"])
        assert large < small + 0.03, f"refusing 0.9 MB took {large * 1000:.1f} ms, a small body {small * 1000:.1f} ms"
        assert secured.connector.calls == []


async def test_an_authenticated_request_still_has_its_body_bounded_and_checked(tmp_path: Path, issuer) -> None:
    async with running_teams(tmp_path, app_id=APP_ID) as secured:
        token = issuer.token(app_id=APP_ID, service_url=secured.connector.url)
        assert await _post(secured, b'{"type": "message", "text": "' + b"x" * (2 * 1024 * 1024) + b'"}', token) == 413
        assert await _post(secured, b"[" * 100_000 + b"]" * 100_000, token) == 400
        assert await _post(secured, b"[1, 2, 3]", token) == 400
        assert (
            await _post(secured, json.dumps({"type": "message", "serviceUrl": secured.connector.url}).encode(), token) == 400
        )  # no from, recipient, conversation
        cid = await ingest(secured)
        status, _ = await secured.send(
            sample("message.channel.mention.json") | {"text": f"<at>Chat SDK Demo</at> claim {cid}"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert status in (200, 201)  # a message goes through the SDK (its answer needs login.microsoftonline.com)
        async with secured.container.uow() as uow:
            assert (await uow.conversations.get(cid)).status == "claimed"  # type: ignore[union-attr]


# --- item 17: the answer cannot be posted, the command stands ------------------------------


@pytest.mark.parametrize("failure", ["500", "429", "reset"])
async def test_when_the_answer_cannot_be_posted_the_request_still_succeeds_and_the_command_stands(
    teams: TeamsHarness, failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    cid = await ingest(teams)
    if failure == "reset":
        teams.connector.drop_next("reply", times=5)
    else:
        teams.connector.fail_next("reply", status=int(failure), times=5, retry_after=0)
    with caplog.at_level(logging.WARNING, logger="adapters.teams.bot"):
        status, _ = await teams.mention(f"claim {cid}", user="aad-alice", name="Alice")
    assert status in (200, 201)
    async with teams.container.uow() as uow:
        assert (await uow.conversations.get(cid)).status == "claimed"  # type: ignore[union-attr]
    assert "could not be posted" in caplog.text and "what the command did stands" in caplog.text
    assert all(not call.ok for call in teams.connector.calls_to("reply"))


async def test_when_the_bot_connector_is_unreachable_the_request_still_succeeds(teams: TeamsHarness) -> None:
    import socket

    cid = await ingest(teams)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{free.getsockname()[1]}/"
    activity = sample("message.channel.mention.json")
    activity["text"] = f"<at>Chat SDK Demo</at> claim {cid}"
    async with teams.http.post(f"{teams.url}/api/messages", json={**activity, "serviceUrl": closed}) as response:
        assert response.status in (200, 201)
    async with teams.container.uow() as uow:
        assert (await uow.conversations.get(cid)).status == "claimed"  # type: ignore[union-attr]


# --- item 15: a command's answer is not a copy that goes stale ---------------------------------


async def test_a_commands_answer_links_to_the_current_card_instead_of_a_copy(teams: TeamsHarness) -> None:
    await link_support(teams)
    cid = await ingest(teams)
    await teams.mention("report https://forum.example/t/9 the courier was rude, refund", user="aad-alice", name="Alice")
    reported = sent_cards(teams)[-1]
    assert "Thanks! That post is now #" in card_text(reported)
    assert [a["type"] for a in reported["actions"]] == ["Action.Execute"] and reported["actions"][0]["verb"] == "show"
    await teams.mention(f"claim {cid}", user="aad-alice", name="Alice")
    answer = sent_cards(teams)[-1]
    assert f"You claimed #{cid}" in card_text(answer) and "Unclaimed" not in card_text(answer)
    await teams.invoke("release", cid, user="aad-alice", name="Alice")
    status, shown = await teams.invoke("show", cid, user="aad-alice", name="Alice")  # the answer's Show button
    assert status == 200 and "Unclaimed" in card_text(shown["value"]) and "History" in card_text(shown["value"])


async def test_every_answer_has_a_notification_preview(teams: TeamsHarness) -> None:
    await link_support(teams)
    cid = await ingest(teams)
    await teams.mention(f"claim {cid}", user="aad-alice", name="Alice")
    assert teams.connector.calls_to("reply")[-1].body["summary"] == f"You claimed #{cid}"
    await teams.deliver()
    summaries = [call.body["activity"]["summary"] for call in teams.connector.calls_to("create")]
    assert summaries == [f"#{cid} · claimed · my kettle arrived broken, refund please"]


# --- item 16: installing the app says how to set it up --------------------------------------


async def test_adding_the_bot_to_a_team_posts_one_welcome_with_the_link_command(teams: TeamsHarness) -> None:
    installed = sample("installationUpdate.add.channel.json")
    added = sample("conversationUpdate.bot_added_to_team.json")
    for activity in (installed, added):  # Teams sends both, in this order
        status, _ = await teams.send(activity)
        assert status in (200, 201)
    (welcome,) = sent_cards(teams)
    text = card_text(welcome)
    assert "I'm Unsilo" in text and "@Unsilo link <department>" in text and "triage, support" in text
    (posted,) = [c for c in teams.connector.calls if c.route in ("send", "reply")]
    assert posted.conversation_id == CHANNEL  # the channel the app was added in


async def test_someone_elses_joining_a_team_is_not_greeted(teams: TeamsHarness) -> None:
    joined = sample("conversationUpdate.bot_added_to_team.json")
    joined["membersAdded"] = [{"id": "29:1newcomer", "aadObjectId": "aad-newcomer"}]
    status, _ = await teams.send(joined)
    assert status in (200, 201) and teams.connector.calls == []  # and no member look-up either


# --- health ------------------------------------------------------------------------------


async def test_healthz_reports_teams(teams: TeamsHarness) -> None:
    assert teams.container.health.get("teams").state == "ok"
    await link_support(teams)
    await ingest(teams)
    teams.connector.fail_next("create", status=401)
    await teams.deliver()
    state = teams.container.health.get("teams")
    assert state.state == "degraded" and "MicrosoftAppPassword" in (state.reason or "")
    assert json.dumps(state.reason)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"[1, 2, 3]", 400),
        (b'"a string"', 400),
        (b"{}", 400),
        (b"[" * 100_000 + b"]" * 100_000, 400),  # deep JSON: RecursionError in the parser
        (b'{"type": "message", "text": "' + b"x" * (1024 * 1024 + 10) + b'"}', 413),
    ],
)
async def test_a_body_that_is_not_an_activity_gets_a_4xx_with_the_reason_never_a_500(
    teams: TeamsHarness, body: bytes, status: int
) -> None:
    async with teams.http.post(f"{teams.url}/api/messages", data=body, headers={"Content-Type": "application/json"}) as response:
        answer = await response.text()
    assert response.status == status, answer
    assert "error" in answer or status == 413
