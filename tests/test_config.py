"""`unsilo config check`: every problem, with its line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.bootstrap import load_config
from bot.config import ConfigError
from bot.routing import Router
from tests.conftest import ROOT
from tests.test_cli import run

BROKEN = """\
[unsilo]
outcomes = ["answered"]
require_claim_to_reply = "yes"

[departments.support]
sla_minutes = -5
channels = ["slack:C1", "irc:#help"]

[departments."Bad Name"]

[[rules]]
name = "legal"
departments = ["legal"]
any = ["lawyer"]
priority = "hgih"

[[rules]]
name = "regex"
departments = ["support"]
regex = "(unclosed"
colour = "red"

[[rules]]
name = "empty"
departments = ["support"]
"""


def test_the_example_config_is_valid() -> None:
    config = load_config(ROOT / "unsilo.example.toml")
    assert config.default_department == "triage"
    assert {"support", "legal", "ops", "hr", "product", "triage"} == set(config.department_names())


def test_every_problem_is_listed_with_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "unsilo.toml"
    path.write_text(BROKEN)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    found = {(p.line, p.key) for p in caught.value.problems}
    assert found == {
        (3, "unsilo.require_claim_to_reply"),
        (6, "departments.support.sla_minutes"),
        (7, "departments.support.channels"),
        (9, "departments.Bad Name"),
        (13, "rules[1].departments"),
        (15, "rules[1].priority"),
        (20, "rules[2].regex"),
        (21, "rules[2].colour"),
        (23, "rules[3]"),
    }
    messages = str(caught.value)
    assert f"{path}:15: rules[1].priority: must be one of low, normal, high, urgent (got 'hgih')" in messages
    assert "unknown department 'legal'; declare [departments.legal]" in messages


def test_config_check_command_prints_problems_and_fails(tmp_path: Path) -> None:
    (tmp_path / "unsilo.toml").write_text(BROKEN)
    result = run("config", "check", cwd=tmp_path)
    assert result.returncode == 3
    assert "9 problems in unsilo.toml" in result.stderr
    assert "unsilo.toml:3: unsilo.require_claim_to_reply: must be true or false" in result.stderr
    (tmp_path / "unsilo.toml").write_text("[unsilo\n")
    syntax = run("config", "check", cwd=tmp_path)
    assert syntax.returncode == 3 and "unsilo.toml:1: syntax:" in syntax.stderr
    ok = run("config", "check", "--config", str(ROOT / "unsilo.example.toml"), cwd=tmp_path)
    assert ok.returncode == 0 and ": ok (6 departments, 6 rules, 0 feeds)" in ok.stdout


def test_words_match_whole_words_in_any_case() -> None:
    config = load_config(ROOT / "unsilo.example.toml")
    router = Router(config.rules, default_department="triage")
    assert router.route(text="I will SUE you", source="x", author="y").departments == ("legal",)
    assert router.route(text="there is an issue with pursue", source="x", author="y").departments == ("triage",)
    urgent = router.route(text="URGENT: refund please", source="x", author="y")
    assert urgent.priority == "urgent" and urgent.departments == ("support",)


MISLEADING = """\
[unsilo]
default_department = "triag"

[departments.triage]

[departments.support]

[[feeds]]
name = "reviews"
url = "https://shop.example/reviews.rss"

[[feeds]]
name = "reviews"
url = "https://shop.example/other.rss"

[[feeds]]
name = "forum"
url = "forum.example/feed"
"""


def test_configs_that_would_misbehave_are_refused_with_the_places_to_fix(tmp_path: Path) -> None:
    path = tmp_path / "unsilo.toml"
    path.write_text(MISLEADING)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    found = {(p.line, p.key): p.message for p in caught.value.problems}
    assert set(found) == {(2, "unsilo.default_department"), (13, "feeds[2].name"), (18, "feeds[3].url")}
    assert "no department 'triag' is declared; did you mean 'triage'?" in found[(2, "unsilo.default_department")]
    assert "duplicate feed name 'reviews': feeds[1] (line 9) has it already" in found[(13, "feeds[2].name")]
    assert "'forum.example/feed' is not an http(s) URL" in found[(18, "feeds[3].url")]
