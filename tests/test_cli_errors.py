"""The `unsilo` command says what actually failed, in one line (issue 14.9), and gives its
help and version when asked (14.10): real processes, a real SQLite file."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI, PG_URL
from tests.test_cli import UNSILO, run


def test_bare_unsilo_help_and_version(tmp_path: Path) -> None:
    bare = run(cwd=tmp_path)
    assert bare.returncode == 2 and bare.stderr.startswith("usage: unsilo") and "queue" in bare.stderr
    helped = run("help", cwd=tmp_path)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: unsilo") and "manifest" in helped.stdout
    one = run("help", "queue", cwd=tmp_path)
    assert one.returncode == 0 and one.stdout.startswith("usage: unsilo queue") and "--mine" in one.stdout
    assert run("help", "nope", cwd=tmp_path).returncode == 2
    version = run("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("unsilo ") and version.stdout.split()[1][0].isdigit()


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    """`unsilo queue | head -0` (`show 7 | head`): the reader is gone before the answer is written."""
    read, write = os.pipe()
    os.close(read)  # writing to it fails at once, whatever the timing
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "UNSILO_CONFIG")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    try:
        shown = subprocess.run([*UNSILO, "queue"], cwd=tmp_path, env=env, stdout=write, stderr=subprocess.PIPE, timeout=120)
        helped = subprocess.run([*UNSILO, "--help"], cwd=tmp_path, env=env, stdout=write, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write)
    assert shown.returncode == 141
    assert b"Traceback" not in shown.stderr and b"BrokenPipe" not in shown.stderr and b"store" not in shown.stderr
    assert helped.returncode in (0, 141) and helped.stderr == b""  # argparse itself ignores a failed write of its help


def _postgres_or_skip() -> None:
    from sqlalchemy.engine import make_url

    url = make_url(PG_URL)
    try:
        socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=5).close()
    except OSError as exc:
        if IN_CI:
            pytest.fail(f"CI=true but PostgreSQL at {PG_URL} is unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable: {exc}")


def test_store_problems_are_named_with_the_password_masked(tmp_path: Path) -> None:
    _postgres_or_skip()
    mysql = run("--database-url", "mysql://app:hunter2@db.example/unsilo", "queue", cwd=tmp_path)
    assert mysql.returncode == 3
    assert mysql.stderr.splitlines()[-1] == (
        "cannot use the store at mysql://app:***@db.example/unsilo: unsupported store URL scheme 'mysql': "
        "use sqlite+aiosqlite:///path/to/unsilo.db or postgresql+asyncpg://user:password@host/database"
    )
    missing = f"{PG_URL.rsplit('/', 1)[0]}/unsilo_no_such_database"
    nodb = run("--database-url", missing, "queue", cwd=tmp_path)
    assert nodb.returncode == 3 and "Traceback" not in nodb.stderr
    assert nodb.stderr.splitlines()[-1].endswith(
        'database "unsilo_no_such_database" does not exist (create it first: createdb, or CREATE DATABASE name)'
    )
    noschema = run("--database-url", f"{PG_URL}?search_path=unsilo_no_such_schema", "queue", cwd=tmp_path)
    assert noschema.returncode == 3 and "Traceback" not in noschema.stderr
    assert "no schema has been selected to create in (create the schema named by ?search_path= first" in noschema.stderr


def test_a_missing_file_a_bad_setting_and_a_busy_port_are_named(tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "folder" / "x.csv"
    exported = run("export", "--out", str(out), cwd=tmp_path)
    assert exported.returncode == 1
    assert exported.stderr.splitlines()[-1] == f"cannot use {out}: No such file or directory"
    bad = run("queue", cwd=tmp_path, env={"UNSILO_DB_POOL_SIZE": "ten"})
    assert (bad.returncode, bad.stderr) == (3, "cannot read the settings: UNSILO_DB_POOL_SIZE='ten' is not a whole number\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        served = run("run", "--host", "127.0.0.1", "--port", str(port), cwd=tmp_path)
    assert served.returncode == 3
    assert served.stderr.splitlines()[-1] == f"port {port} on 127.0.0.1 is in use: stop the other process or set PORT/--port"
    assert "listening" not in served.stdout  # it never was
