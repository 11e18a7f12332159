"""The `unsilo` command as a person or a script uses it: real processes, a real SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

UNSILO = [sys.executable, "-m", "bot.cli"]


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "UNSILO_CONFIG")}
    full_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
    return subprocess.run([*UNSILO, *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "unsilo.example.toml").write_text((ROOT / "unsilo.example.toml").read_text())
    return tmp_path


def test_the_readme_demo_story_works_on_a_fresh_store(workdir: Path) -> None:
    demo = run("demo", cwd=workdir)
    assert demo.returncode == 0, demo.stderr
    assert "Ingested 12 new conversations from the sample feed (0 already known)" in demo.stdout
    assert "legal (2 waiting)" in demo.stdout and "#3" in demo.stdout
    assert (
        "`unsilo run`, then open the one-time link it prints (console: http://127.0.0.1:3978/console/login?token=…)"
        in demo.stdout
    )
    assert (workdir / "unsilo.db").exists()

    again = run("demo", cwd=workdir)
    assert "Ingested 0 new conversations from the sample feed (12 already known)" in again.stdout

    assert run("claim", "3", "--as", "alice", cwd=workdir).returncode == 0
    lost = run("claim", "3", "--as", "bob", cwd=workdir)
    assert lost.returncode == 1 and lost.stderr.strip() == "#3 is already claimed by alice"
    assert run("note", "3", "Courier lost it", "--as", "bob", cwd=workdir).returncode == 0
    assert run("reply", "3", "A replacement ships today", "--as", "alice", cwd=workdir).returncode == 0
    assert run("resolve", "3", "--outcome", "answered", "--as", "alice", cwd=workdir).returncode == 0

    shown = run("show", "3", cwd=workdir)
    assert shown.returncode == 0
    history = shown.stdout.split("history:")[1]
    for expected in (
        "unsilo ingested",
        "alice claimed",
        "bob noted: Courier lost it",
        "alice replied: A replacement ships today",
        "alice resolved: answered",
    ):
        assert expected in history

    legal = run("queue", "--department", "legal", cwd=workdir)
    assert legal.returncode == 0 and legal.stdout.startswith("2 conversations in legal's queue")
    found = run("search", "courier", "lost", cwd=workdir)
    assert "1 match" in found.stdout and "#3" in found.stdout


def test_refusals_are_one_line_with_a_nonzero_exit(workdir: Path) -> None:
    run("demo", cwd=workdir)
    cases = [
        (("claim", "999", "--as", "a"), 1, "#999 doesn't exist"),
        (("resolve", "1", "--outcome", "answered", "--as", "a"), 1, "#1 has no owner; claim it first"),
        (("claim", "1", "--as", "a"), 0, ""),
        (("resolve", "1", "--outcome", "nope", "--as", "a"), 1, "unknown outcome 'nope'"),
        (("dismiss", "1", "dup", "--as", "a"), 1, "only a manager of support can dismiss #1"),
        (("queue", "--department", "nope"), 1, "no department 'nope'"),
        (("claim", "abc"), 2, "is not a conversation id"),
    ]
    for args, code, message in cases:
        result = run(*args, cwd=workdir)
        assert result.returncode == code, (args, result.stderr)
        if message:
            assert message in result.stderr
            if code == 1:
                assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_database_url_flag_and_environment_pick_the_store(workdir: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.db"
    assert run("--database-url", f"sqlite:///{other}", "demo", cwd=workdir).returncode == 0
    assert other.exists() and not (workdir / "unsilo.db").exists()
    via_env = run("queue", cwd=workdir, env={"DATABASE_URL": f"sqlite+aiosqlite:///{other}"})
    assert via_env.stdout.startswith("12 conversations")


def test_an_unreachable_store_is_reported_in_one_line(workdir: Path) -> None:
    result = run("--database-url", "postgresql+asyncpg://nobody:secret@127.0.0.1:9/none", "queue", cwd=workdir)
    assert result.returncode == 3
    assert (
        result.stderr.strip()
        == "cannot connect to the store at postgresql+asyncpg://nobody:***@127.0.0.1:9/none: connection refused"
    )


def test_db_upgrade_is_idempotent(workdir: Path) -> None:
    assert run("db", "upgrade", cwd=workdir).returncode == 0
    second = run("db", "upgrade", cwd=workdir)
    assert second.returncode == 0 and "newest schema" in second.stdout


def test_ingest_a_feed_file_and_refuse_a_non_feed(workdir: Path, reference: Path) -> None:
    feed = reference / "feeds/rss-parser/guardian.rss"
    first = run("ingest", str(feed), "--source", "guardian", cwd=workdir)
    assert first.returncode == 0 and first.stdout.strip() == "guardian: 55 new, 0 already known"
    assert run("ingest", str(feed), "--source", "guardian", cwd=workdir).stdout.strip() == "guardian: 0 new, 55 already known"
    bad = run("ingest", str(reference / "feeds/rss-parser/unrecognized.rss"), "--source", "moved", cwd=workdir)
    assert bad.returncode == 1 and "source 'moved': cannot read the feed" in bad.stderr


def test_sources_are_listed_added_and_polled_from_the_command_line(workdir: Path) -> None:
    listed = run("sources", cwd=workdir)
    assert listed.returncode == 0 and "no sources yet" in listed.stdout

    added = run("sources", "add-webhook", "listening", "--reply-url", "https://tool.example/replies", cwd=workdir)
    assert added.returncode == 0, added.stderr
    secret = added.stdout.split("signing secret (shown once, keep it safe): ")[1].strip()
    assert len(secret) >= 40
    again = run("sources", "add-webhook", "listening", cwd=workdir)
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = run("sources", "add-feed", "Bad Name", "https://x.example/f.rss", cwd=workdir)
    assert bad.returncode == 1 and "a source name is lower-case" in bad.stderr
    # Internal addresses are refused (SSRF), the cloud metadata service among them, unless allowed.
    for internal in (
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:9/reviews.xml",
        "http://[::1]/f.rss",
        "http://localhost/f.rss",
        "file:///etc/passwd",
    ):
        refused = run("sources", "add-feed", "internal", internal, cwd=workdir)
        assert refused.returncode == 1 and "refused" in refused.stderr, (internal, refused.stderr)
    loopback = {"UNSILO_ALLOW_PRIVATE_URLS": "127.0.0.1"}
    # A feed that can't be reached: the poll records the error on the source, the command still succeeds.
    assert (
        run(
            "sources", "add-feed", "reviews", "http://127.0.0.1:9/reviews.xml", "--every", "60", cwd=workdir, env=loopback
        ).returncode
        == 0
    )
    polled = run("sources", "poll", cwd=workdir, env=loopback)
    assert polled.returncode == 0, polled.stderr
    assert "reviews: failed (cannot connect to http://127.0.0.1:9/reviews.xml" in polled.stdout

    listed = run("sources", cwd=workdir).stdout
    assert "listening (webhook) /hooks/listening" in listed and "replies go to https://tool.example/replies" in listed
    assert "reviews (feed) http://127.0.0.1:9/reviews.xml" in listed
    assert "failures 1 · last error: cannot connect" in listed
    assert secret not in listed, "the secret is shown once, when it is made"

    rotated = run("sources", "rotate-secret", "listening", "--grace", "2h", cwd=workdir)
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.split("new signing secret for listening (shown once, keep it safe): ")[1].split()[0]
    assert len(new) >= 40 and new != secret and "the old one is accepted until" in rotated.stdout
    removed = run("sources", "remove", "reviews", cwd=workdir)
    assert (removed.returncode, removed.stdout.splitlines()[0]) == (0, "feed reviews removed: no longer polled"), removed.stderr
    listed = run("sources", cwd=workdir).stdout
    assert "reviews" not in listed and "the secret before the last rotation works until" in listed
    assert new not in listed and secret not in listed


def test_show_makes_stored_control_characters_inert_in_the_terminal(workdir: Path) -> None:
    """ESC sequences and bidi overrides in a stored URL, handle or text never reach the terminal raw."""
    feed = workdir / "evil.json"
    feed.write_text(
        json.dumps(
            {
                "version": "https://jsonfeed.org/version/1.1",
                "title": "t",
                "items": [
                    {
                        "id": "evil-1",
                        "url": "https://x.example/\u001b]8;;https://evil.example\u0007click\u001b]8;;\u0007",
                        "content_text": "refund please \u001b[2J\u001b[31mSYSTEM COMPROMISED\u202e",
                        "title": "\u001b[1mhi",
                        "authors": [{"name": "Eve\u001b[8m", "url": "https://x.example/eve"}],
                    }
                ],
            }
        )
    )
    assert run("ingest", str(feed), "--source", "evil", cwd=workdir).returncode == 0
    shown = run("show", "1", cwd=workdir)
    assert shown.returncode == 0, shown.stderr
    assert "\u001b" not in shown.stdout and "\u0007" not in shown.stdout and "\u202e" not in shown.stdout
    assert "SYSTEM COMPROMISED" in shown.stdout  # the text is shown, inert
