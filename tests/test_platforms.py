"""A platform is one folder under `adapters/` and one line in `bot/bootstrap.py`'s `PLATFORMS`.

A third platform, defined here and added to that list only, takes cards, people and health
like Slack and Teams; the core names no platform; a platform that does not start never loads
its SDK.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from bot import bootstrap
from bot.app import create_app
from bot.bootstrap import build, load_config
from bot.config import ConfigError
from bot.ingest import make_incoming
from bot.outbox import Job, Sent
from bot.platform import Platform, PlatformSettings, Wiring
from bot.settings import Settings
from tests.conftest import ROOT, service_env

FAKE_CONFIG = """\
[unsilo]
default_department = "support"

[departments.support]
channels = ["fake:C-SUPPORT"]
managers = ["fake:U-MANAGER"]

[people.dana]
name = "Dana"
fake = "U-DANA"
"""


@dataclass(frozen=True)
class FakeSettings:
    token: str = ""

    def missing(self) -> str | None:
        return None if self.token else "FAKE_TOKEN is not set"


class RecordingSender:
    def __init__(self) -> None:
        self.jobs: list[Job] = []

    async def send(self, job: Job) -> Sent:
        self.jobs.append(job)
        return Sent(message_id=f"m{len(self.jobs)}")


@dataclass
class Fake:
    """A platform as small as one can be: it serves one route and records what it is sent."""

    sender: RecordingSender
    mounted_with: dict[str, object]

    def settings_from(self, env: Mapping[str, str]) -> FakeSettings:
        return FakeSettings(token=env.get("FAKE_TOKEN", ""))

    def mount(self, app: web.Application, settings: PlatformSettings, wiring: Wiring, /) -> RecordingSender:
        self.mounted_with.update(settings=settings, departments=wiring.departments)
        return self.sender

    def platform(self) -> Platform:
        return Platform(name="fake", title="Fake", account="user id", settings_from=self.settings_from, mount=self.mount)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Fake:
    """The fake platform, added to the composition root's list (and nowhere else)."""
    added = Fake(sender=RecordingSender(), mounted_with={})
    monkeypatch.setattr(bootstrap, "PLATFORMS", (*bootstrap.PLATFORMS, added.platform()))
    return added


async def test_a_platform_added_to_the_list_takes_cards_people_and_health(fake: Fake, tmp_path: Path, database_url: str) -> None:
    (tmp_path / "unsilo.toml").write_text(FAKE_CONFIG)
    config = load_config(tmp_path / "unsilo.toml")  # `fake:` channels and a `fake` account are valid now
    settings = bootstrap.settings_from_env({"FAKE_TOKEN": "t0ken"}, database_url=database_url)
    container = build(settings, config=config)
    try:
        await container.prepare()
        create_app(container, run_worker=False)  # mounts every platform whose settings are complete
        assert container.health.snapshot()["fake"]["state"] == "ok"
        assert container.senders["fake"] is fake.sender
        assert fake.mounted_with == {"settings": FakeSettings(token="t0ken"), "departments": ("support",)}

        await container.ingest([make_incoming(source="web", external_id="1", text="My order never arrived")])
        await container.worker().run_until_idle()
        (job,) = fake.sender.jobs
        assert (job.platform, job.channel_id, job.kind) == ("fake", "C-SUPPORT", "card")
        assert job.card is not None and "My order never arrived" in job.card.text

        async with container.uow() as uow:  # its accounts are people's, and mentioned like Slack's and Teams'
            dana = await uow.people.by_identity("fake", "U-DANA")
            assert dana is not None and dana.name == "Dana"
            assert await uow.people.mentionable(["fake:U-MANAGER", "dana"]) == (("fake:U-DANA", "Dana"), ("fake:U-MANAGER", ""))
    finally:
        await container.close()


def test_a_platform_without_its_settings_is_disabled_with_its_reason(fake: Fake, tmp_path: Path) -> None:
    (tmp_path / "unsilo.toml").write_text(FAKE_CONFIG)
    container = build(
        Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'u.db'}"), config=load_config(tmp_path / "unsilo.toml")
    )
    create_app(container, run_worker=False)
    assert container.health.snapshot()["fake"]["reason"] == "FAKE_TOKEN is not set"
    assert "fake" not in container.senders


def test_a_platform_left_out_of_the_list_is_unknown_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "unsilo.toml").write_text(FAKE_CONFIG)
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "unsilo.toml")
    problems = str(caught.value)
    assert "'fake:C-SUPPORT' should be 'platform:channel' with platform one of slack, teams, web, log" in problems
    accounts = "slack:<user id>, teams:<AAD object id>, web:<console user id>, cli:<login> or an email"
    assert f"'fake:U-MANAGER': use {accounts}" in problems
    assert "people.dana.fake: unknown key; expected one of cli, department, email, name, slack, teams, web" in problems


def test_the_core_names_no_platform() -> None:
    """Only the composition root (and the migrations, which describe stored data) may name one."""
    names = "|".join(re.escape(name) for name in sorted({"slack", "teams", *(p.name for p in bootstrap.PLATFORMS)}))
    quoted = re.compile(rf"\"({names})\"")
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for folder in ("bot", "handlers", "storage")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != ROOT / "bot" / "bootstrap.py" and "migrations" not in path.relative_to(ROOT).parts
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if quoted.search(line)
    ]
    assert found == []


def test_a_platform_that_does_not_start_never_loads_its_sdk(tmp_path: Path) -> None:
    (tmp_path / "unsilo.example.toml").write_text((ROOT / "unsilo.example.toml").read_text())
    script = (
        "import sys\n"
        "from bot import cli\n"
        "code = cli.main(['demo'])\n"
        "sdks = ('slack_bolt', 'slack_sdk', 'botbuilder', 'botframework', 'msrest')\n"
        "print('loaded:', sorted({m.split('.')[0] for m in sys.modules} & set(sdks)))\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=service_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "loaded: []" in done.stdout
