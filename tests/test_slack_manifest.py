"""The Slack app manifests validate against Slack's official schema and agree with each other.

The schema is slackapi/manifest-schema's v1 file, bundled (unedited) in
`../shared/reference/schemas/slack-manifest/`. `manifest.schema.json` there only routes to
remote URLs, so we validate against `manifest.schema.1.0.0.json` directly.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from jsonschema.validators import validator_for

from tests.conftest import ROOT, reference_dir

MANIFESTS = ROOT / "manifest"
HTTP = MANIFESTS / "slack.yaml"
SOCKET = MANIFESTS / "slack-socket.yaml"

# Least privilege: every bot scope we may ask for, and why. Adding one means adding it here.
ALLOWED_BOT_SCOPES = {
    "chat:write": "post and update cards",
    "commands": "/unsilo and the message shortcut",
    "channels:history": "message.channels (thread replies in public channels)",
    "groups:history": "message.groups (thread replies in private channels)",
    "users:read": "users.info; required alongside users:read.email",
    "users:read.email": "link people across Slack and Teams by email",
    "im:write": "DM reminders to owners",
}
# Scopes we decided against, so they never creep back in.
REFUSED_BOT_SCOPES = {"chat:write.public", "channels:read", "groups:read", "im:history", "channels:join"}
# What each subscribed bot event needs (None: delivered without a scope).
EVENT_SCOPE = {
    "app_home_opened": None,
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "app_uninstalled": None,
    "tokens_revoked": None,
}


def _schema_path() -> Path:
    return reference_dir() / "schemas" / "slack-manifest"


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads((_schema_path() / "manifest.schema.1.0.0.json").read_text())
    cls = validator_for(schema)  # the class named by the schema's own $schema
    assert cls is jsonschema.Draft7Validator, schema.get("$schema")
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def _errors(validator: jsonschema.protocols.Validator, instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(instance)]


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


@pytest.fixture(scope="module")
def http() -> dict[str, Any]:
    return _load(HTTP)


@pytest.fixture(scope="module")
def socket() -> dict[str, Any]:
    return _load(SOCKET)


def _walk(node: Any, key: str) -> list[Any]:
    """Every value stored under `key`, anywhere in the document."""
    found: list[Any] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                found.append(v)
            found.extend(_walk(v, key))
    elif isinstance(node, list):
        for item in node:
            found.extend(_walk(item, key))
    return found


# --- the schema check is real -------------------------------------------------------------


def test_bundled_examples_prove_the_validator_works(validator: jsonschema.protocols.Validator) -> None:
    examples = _schema_path() / "examples"
    valid = json.loads((examples / "manifest.v1.valid.json").read_text())
    invalid = json.loads((examples / "manifest.v1.invalid.json").read_text())
    assert _errors(validator, valid) == []
    errors = _errors(validator, invalid)
    assert len(errors) == 1, errors
    assert "bad_param" in errors[0]


@pytest.mark.parametrize("path", [HTTP, SOCKET], ids=lambda p: p.name)
def test_manifest_validates(validator: jsonschema.protocols.Validator, path: Path) -> None:
    assert _errors(validator, _load(path)) == []


def test_a_bogus_top_level_key_is_refused(validator: jsonschema.protocols.Validator, http: dict[str, Any]) -> None:
    broken = copy.deepcopy(http)
    broken["bogus"] = True
    errors = _errors(validator, broken)
    assert len(errors) == 1 and "bogus" in errors[0], errors


def test_a_too_long_slash_command_description_is_refused(validator: jsonschema.protocols.Validator, http: dict[str, Any]) -> None:
    broken = copy.deepcopy(http)
    broken["features"]["slash_commands"][0]["description"] = "x" * 2001
    errors = _errors(validator, broken)
    assert len(errors) == 1 and errors[0].startswith("features/slash_commands/0/description"), errors


def test_background_color_is_a_hex_colour(http: dict[str, Any], socket: dict[str, Any]) -> None:
    # The schema spells this constraint `regex` (not `pattern`), which JSON Schema ignores.
    for manifest in (http, socket):
        assert re.fullmatch(r"#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?", manifest["display_information"]["background_color"])


# --- what a user would notice -------------------------------------------------------------


@pytest.mark.parametrize("path", [HTTP, SOCKET], ids=lambda p: p.name)
def test_command_shortcut_and_bot(path: Path) -> None:
    m = _load(path)
    assert m["_metadata"] == {"major_version": 1, "minor_version": 1}
    assert m["display_information"]["name"] == "Unsilo"
    assert m["features"]["bot_user"] == {"display_name": "Unsilo", "always_online": True}
    assert m["features"]["app_home"]["home_tab_enabled"] is True
    [command] = m["features"]["slash_commands"]
    assert command["command"] == "/unsilo"
    assert command["should_escape"] is False
    assert command["usage_hint"].startswith("help | queue | claim #42 | reply #42 text")
    [shortcut] = m["features"]["shortcuts"]
    assert shortcut == {**shortcut, "name": "Send to Unsilo", "type": "message", "callback_id": "unsilo_report"}
    settings = m["settings"]
    assert settings["interactivity"]["is_enabled"] is True
    assert settings["org_deploy_enabled"] is False
    assert settings["token_rotation_enabled"] is False


def test_http_variant_points_every_url_at_slack_events(http: dict[str, Any]) -> None:
    urls = [
        http["features"]["slash_commands"][0]["url"],
        http["settings"]["event_subscriptions"]["request_url"],
        http["settings"]["interactivity"]["request_url"],
    ]
    assert all(u.startswith("https://") and u.endswith("/slack/events") for u in urls), urls
    assert len(set(urls)) == 1, urls  # one host to replace, one route in the app
    assert http["settings"]["socket_mode_enabled"] is False


def test_socket_variant_has_no_request_urls(socket: dict[str, Any]) -> None:
    assert socket["settings"]["socket_mode_enabled"] is True
    assert _walk(socket, "request_url") == []
    assert _walk(socket, "url") == []
    assert "https://" not in json.dumps(socket)


def test_variants_differ_only_in_transport(http: dict[str, Any], socket: dict[str, Any]) -> None:
    assert http["oauth_config"] == socket["oauth_config"]
    assert http["settings"]["event_subscriptions"]["bot_events"] == socket["settings"]["event_subscriptions"]["bot_events"]
    # Strip the transport from the HTTP variant and the two must be the same document.
    stripped = copy.deepcopy(http)
    del stripped["features"]["slash_commands"][0]["url"]
    del stripped["settings"]["event_subscriptions"]["request_url"]
    del stripped["settings"]["interactivity"]["request_url"]
    stripped["settings"]["socket_mode_enabled"] = True
    assert stripped == socket


# --- least privilege ----------------------------------------------------------------------


def test_scopes_are_least_privilege(http: dict[str, Any]) -> None:
    scopes = http["oauth_config"]["scopes"]
    assert set(scopes) == {"bot"}, "no user scopes: Unsilo acts only as its bot"
    bot = scopes["bot"]
    assert len(bot) == len(set(bot)), bot
    assert set(bot) <= set(ALLOWED_BOT_SCOPES), set(bot) - set(ALLOWED_BOT_SCOPES)
    assert not set(bot) & REFUSED_BOT_SCOPES


def test_every_event_has_its_scope_and_no_event_is_unexplained(http: dict[str, Any]) -> None:
    events = http["settings"]["event_subscriptions"]["bot_events"]
    assert set(events) == set(EVENT_SCOPE), events
    bot = set(http["oauth_config"]["scopes"]["bot"])
    for event in events:
        needed = EVENT_SCOPE[event]
        assert needed is None or needed in bot, (event, needed)
    assert "users:read" in bot or "users:read.email" not in bot  # Slack grants .email only with users:read


@pytest.mark.parametrize("path", [HTTP, SOCKET], ids=lambda p: p.name)
def test_every_scope_line_says_why(path: Path) -> None:
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "bot:")
    scope_lines = []
    for line in lines[start + 1 :]:
        if not line.strip().startswith(("-", "#")):
            break
        if line.strip().startswith("-"):
            scope_lines.append(line)
    assert len(scope_lines) == len(_load(path)["oauth_config"]["scopes"]["bot"])
    assert all(re.search(r"\S\s+#\s*\S", line) for line in scope_lines), scope_lines
