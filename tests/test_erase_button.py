"""An admin erases a customer's data with the button under the dry run, on Slack and on Teams: a non-admin's
click is refused and changes nothing, the admin's erases, a second click finds nothing left to erase."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import jsonschema

from bot import commands as c
from bot.ingest import make_incoming
from bot.textcommands import parse
from tests.conftest import reference_dir
from tests.slack_support import running_slack
from tests.slack_support import sample as slack_sample
from tests.teams_support import running_teams, sample
from tests.test_erasure import TOM, TOM_TEXT, scan_store
from tests.test_slack_render import check_message
from tests.test_teams import APP_ID, card_text, issuer  # noqa: F401 (a fixture)

ERASE = 'erase --author "Tom W." --reason "GDPR request #5"'


async def _ingest_tom(container: Any) -> list[int]:
    report = await container.ingest(
        [
            make_incoming(source="forum", external_id="77", text=TOM_TEXT, url="https://forum.example/t/77", **TOM),
            make_incoming(source="forum", external_id="78", text="Quixotic lid cracked too", **TOM),
            make_incoming(source="forum", external_id="90", text="my kettle is broken too", author_name="Tommy"),
        ]
    )
    return list(report.new_ids)


async def test_the_erase_button_on_slack_asks_first_refuses_a_non_admin_and_erases_once(tmp_path: Path) -> None:
    async with running_slack(tmp_path) as slack:
        await _ingest_tom(slack.container)
        traced = await scan_store(slack.container)
        assert traced.keys() >= {"conversation"}

        url = slack.slack.response_url()
        status, answer, _ = await slack.command(ERASE, user="UADMIN", response_url=url)
        assert status == 200 and "Would erase the customer data of 2 conversations" in answer, answer
        (message,) = [r for r in slack.slack.responses if r["url"] == url]
        check_message({"text": message["text"], "blocks": message["blocks"]})  # slack_sdk's Block Kit models
        button = message["blocks"][-1]["elements"][0]
        assert button["text"]["text"] == "Erase 2 conversations" and button["style"] == "danger"
        dialog = button["confirm"]
        assert dialog["title"]["text"] == "Erase customer data?"
        assert "2 conversations" in dialog["text"]["text"] and "GDPR request #5" in dialog["text"]["text"]
        assert (dialog["confirm"]["text"], dialog["deny"]["text"]) == ("Erase", "Cancel")
        assert "--confirm" in answer, "the typed line stays, for a platform without buttons"

        async def click(user: str) -> str:
            """A click on the button in the answer (its `response_url` the stand-in's); what the person sees then:
            the answer replaced (what was done), or a new ephemeral message (a refusal)."""
            told, replaced = len(slack.slack.calls_to("chat.postEphemeral")), len(slack.slack.answers(click_url))
            payload = slack_sample("block_actions.button.json")
            payload["user"].update(id=user, username=user.lower(), name=user.lower())
            payload["channel"]["id"] = payload["container"]["channel_id"] = "C0SUPPORT"
            payload["actions"][0].update(action_id=button["action_id"], value=button["value"])
            payload["response_url"] = click_url
            status, _, _ = await slack.interactive(payload)
            assert status == 200
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if len(slack.slack.answers(click_url)) > replaced:
                    (response,) = [r for r in slack.slack.responses if r["url"] == click_url][replaced:]
                    assert response["replace_original"] is True and "actions" not in json.dumps(response["blocks"])
                    return str(response["text"])
                if len(slack.slack.calls_to("chat.postEphemeral")) > told:
                    (call,) = slack.slack.calls_to("chat.postEphemeral")[told:]
                    assert call.args["user"] == user
                    return "ephemeral: " + str(call.args["text"])
                await asyncio.sleep(0.01)
            raise AssertionError("the click was never answered")

        click_url = slack.slack.response_url("actions")
        assert "ephemeral: " in (refused := await click("UALICE")) and "only admins can erase" in refused
        assert await scan_store(slack.container) == traced, "a refused click changes nothing"

        assert "Erased the customer data of 2 conversations" in await click("UADMIN")
        await slack.deliver()
        assert await scan_store(slack.container) == {}
        assert "Nothing to erase" in await click("UADMIN"), "a second click (a stale copy) is a no-op"

        # A selector and reason too long for a button value: no button (Slack would refuse the message), the typed line stays.
        reason = "ö" * 500  # each 6 characters on the wire (JSON escapes it)
        result = await slack.container.bus.handle(
            parse(f'erase --author "Tommy" --reason "{reason}"', c.Actor("slack", "UADMIN"))
        )
        assert "Would erase the customer data of 1 conversation" in result.text and "type: /unsilo erase" in result.text
        assert result.actions == ()


def _invoke(execute: dict[str, Any], *, user: str) -> dict[str, Any]:
    activity = sample("invoke.adaptiveCard_action.personal.json")
    activity["id"] = f"f:{uuid.uuid4()}"
    activity["value"]["action"] = {"type": "Action.Execute", "verb": execute["verb"], "data": execute["data"]}
    activity["from"] = {"id": f"29:{user}", "name": user, "aadObjectId": user}
    return activity


async def test_the_erase_button_on_teams_asks_first_refuses_a_non_admin_and_erases_once(
    tmp_path: Path,
    issuer: Any,  # noqa: F811
) -> None:
    schema = jsonschema.Draft6Validator(
        json.loads((reference_dir() / "schemas/adaptive-cards/adaptive-card-1.5.0.schema.json").read_text())
    )
    async with running_teams(tmp_path) as h:  # the dry run's answer, posted by the real app
        await _ingest_tom(h.container)
        status, _ = await h.mention(ERASE, user="aad-admin")
        assert status in (200, 201)
        card = h.connector.calls[-1].body["attachments"][0]["content"]
        assert "Would erase the customer data of 2 conversations" in card_text(card)
        assert list(schema.iter_errors({k: v for k, v in card.items() if k != "msteams"})) == []
        (ask,) = [a for a in card["actions"] if a["title"] == "Erase 2 conversations"]
        assert ask["type"] == "Action.ShowCard" and "GDPR request #5" in card_text(ask["card"])
        (execute,) = ask["card"]["actions"]
        assert (execute["type"], execute["title"], execute["style"]) == ("Action.Execute", "Erase", "destructive")

    (tmp_path / "secured").mkdir()
    async with running_teams(tmp_path / "secured", app_id=APP_ID) as secured:  # the clicks, signed by the Bot Framework
        traced_ids = await _ingest_tom(secured.container)
        token = issuer.token(app_id=APP_ID, service_url=secured.connector.url)
        traced = await scan_store(secured.container)

        async def click(user: str) -> str:
            status, body = await secured.send(_invoke(execute, user=user), headers={"Authorization": f"Bearer {token}"})
            assert status == 200
            value = body["value"]
            return value if isinstance(value, str) else card_text(value)

        unsigned, _ = await secured.send(_invoke(execute, user="aad-admin"))
        assert unsigned == 401
        assert "only admins can erase" in await click("aad-alice")
        assert await scan_store(secured.container) == traced, "a refused click changes nothing"
        assert "Erased the customer data of 2 conversations" in await click("aad-admin")
        await secured.deliver()
        assert await scan_store(secured.container) == {}
        assert "Nothing to erase" in await click("aad-admin"), "a second click is a no-op"
        assert traced_ids  # Tommy's (not his) stays
        async with secured.container.uow() as uow:
            tommy = await uow.conversations.get(traced_ids[2])
        assert tommy is not None and tommy.erased_at is None
