"""`unsilo run`: a real process serving /healthz, with platforms disabled (not crashed) without credentials."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import ROOT, service_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_run_serves_health_and_reports_disabled_platforms(tmp_path: Path) -> None:
    port = free_port()
    env = service_env(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'svc.db'}")
    (tmp_path / "unsilo.example.toml").write_text((ROOT / "unsilo.example.toml").read_text())
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "run", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        status, body = 0, {}
        while time.monotonic() < deadline:
            try:
                status, body = get_json(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                time.sleep(0.2)
        assert status == 200, "service did not come up"
        assert body["status"] == "ok"
        assert body["store"] == {"backend": "sqlite", "reachable": True}
        assert body["platforms"]["slack"]["enabled"] is False
        assert "SLACK_BOT_TOKEN" in body["platforms"]["slack"]["reason"]
        assert body["platforms"]["teams"]["enabled"] is False
        assert (tmp_path / "svc.db").exists()  # migrated on start
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    disabled = [line for line in stderr.splitlines() if "disabled:" in line]
    assert len(disabled) == 2 and any("slack disabled" in line for line in disabled)
    assert "Traceback" not in stderr
