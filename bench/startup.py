"""How long does an `unsilo` command take to start, against the 0.4 s goal (issue 14.10)?

Runs each command as a whole process, N times after one warm-up, from a temp folder with its
own small SQLite store (the demo's twelve conversations, made first): `unsilo --help` (the
parser alone) and `unsilo queue` (settings, config, store, bus, one query). Prints each
command's median wall and CPU time (user + sys of the child, from the OS) with min-max, and
the ratio of the median wall to the goal. Also lists the heavy packages each one loaded. The
machine's load is printed too: on a shared machine, quote CPU time and medians.

    .venv/bin/python -m bench.startup [--runs 11] [--unsilo .venv/bin/unsilo]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL = 0.4  # seconds, wall
COMMANDS = (("--help",), ("queue",))
HEAVY = ("slack_bolt", "slack_sdk", "botbuilder", "aiohttp", "sqlalchemy", "sqlmodel", "alembic", "feedparser", "apscheduler")

_LOADED = """
import runpy, sys
sys.argv = ["unsilo", *sys.argv[1:]]
try:
    runpy.run_module("bot.cli", run_name="__main__")
except SystemExit:
    pass
print(" ".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def _once(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one run; the child's CPU from the OS's accounting of finished children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.decode(errors='replace')[-500:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(runs: int, unsilo: str) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        cwd = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k not in ("UNSILO_CONFIG",)}
        env["DATABASE_URL"] = f"sqlite+aiosqlite:///{cwd / 'unsilo.db'}"
        subprocess.run(
            [unsilo, "demo"], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=300
        )
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"{os.cpu_count()} CPUs, load average {load}; {runs} runs each after 1 warm-up")
        for args in COMMANDS:
            command = [unsilo, *args]
            _once(command, cwd, env)  # warm-up: the file cache, the store's pages
            walls, cpus = zip(*(_once(command, cwd, env) for _ in range(runs)), strict=True)
            wall, cpu = statistics.median(walls), statistics.median(cpus)
            loaded = subprocess.run(
                [sys.executable, "-c", _LOADED.format(heavy=HEAVY), *args], cwd=cwd, env=env, capture_output=True, text=True
            ).stderr.splitlines()
            print(
                f"unsilo {' '.join(args):<8} wall {wall:5.2f} s ({min(walls):.2f}-{max(walls):.2f})  "
                f"cpu {cpu:5.2f} s ({min(cpus):.2f}-{max(cpus):.2f})  wall/goal {wall / GOAL:4.2f}  cpu/goal {cpu / GOAL:4.2f}"
            )
            print(f"  loads: {(loaded[-1] if loaded else '') or 'none of ' + ', '.join(HEAVY)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--unsilo", default=shutil.which("unsilo", path=str(Path(sys.executable).parent)) or "unsilo")
    options = parser.parse_args()
    main(options.runs, options.unsilo)
