"""A command that talks to no platform imports no platform SDK (issue 14.10).

A regression guard, not a timing test (`bench/startup.py` times it): the modules a command
loaded are read from `sys.modules` in the process that ran it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

PLATFORM_SDKS = ("slack_bolt", "slack_sdk", "botbuilder", "botframework")
# What `unsilo queue` on an up-to-date store needs none of: the web stack, the migration tool, the feed parser.
NOT_FOR_A_QUERY = (*PLATFORM_SDKS, "aiohttp", "alembic", "feedparser", "apscheduler")
NOT_FOR_THE_HELP = (*NOT_FOR_A_QUERY, "sqlalchemy", "sqlmodel", "asyncpg", "aiosqlite")

_RUN = """
import contextlib, io, json, sys
from bot.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
print(json.dumps({"code": code, "out": out.getvalue(), "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def _run(*args: str, cwd: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k not in ("UNSILO_CONFIG",)}
    env.update(PYTHONPATH=str(ROOT), DATABASE_URL=f"sqlite+aiosqlite:///{cwd / 'unsilo.db'}")
    done = subprocess.run([sys.executable, "-c", _RUN, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


def test_the_help_and_the_queue_load_no_platform_sdk(tmp_path: Path) -> None:
    shown = _run("--help", cwd=tmp_path)
    assert shown["code"] == 0 and "queue" in str(shown["out"])
    assert not set(NOT_FOR_THE_HELP) & set(shown["modules"])  # type: ignore[call-overload]

    first = _run("queue", cwd=tmp_path)  # creates the store: migrating it needs Alembic
    assert first["code"] == 0 and str(first["out"]).startswith("0 conversations")
    assert not set(PLATFORM_SDKS) & set(first["modules"])  # type: ignore[call-overload]

    again = _run("queue", cwd=tmp_path)
    assert again["code"] == 0 and str(again["out"]).startswith("0 conversations")
    assert not set(NOT_FOR_A_QUERY) & set(again["modules"])  # type: ignore[call-overload]
