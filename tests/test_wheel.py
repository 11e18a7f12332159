"""`unsilo` works from its wheel, not only from the checkout (issue 14.9).

The wheel is built from a copy of the sources (so the checkout gets no build/ folder),
installed with pip into a fresh virtual environment that has no pip and no Unsilo of its
own, and run from an empty folder: nothing can be found in the checkout. The dependencies
come from this environment's site-packages through a `.pth` file, written after the
install so pip never sees this environment's (editable) Unsilo.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from tests.conftest import ROOT

APP_ID = "8e6e1f7a-3b2c-4d5e-8f90-a1b2c3d4e5f6"
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "bot", "adapters", "handlers", "storage", "manifest")


def _wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp / "dist").glob("unsilo-*.whl")
    return wheel


def _venv_with(wheel: Path, tmp: Path) -> Path:
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    (packages,) = venv.glob("lib/python*/site-packages")
    (packages / "_unsilo_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return venv


def test_the_wheel_alone_runs_version_manifest_and_demo(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        assert any(".dist-info/" in name and name.endswith("/LICENSE") for name in zf.namelist()), zf.namelist()
    venv = _venv_with(wheel, tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DATABASE_URL", "UNSILO_CONFIG", "MicrosoftAppId")}
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"

    def unsilo(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv / "bin" / "unsilo"), *args], cwd=work, env=env, capture_output=True, text=True, timeout=120
        )

    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import bot, manifest; print(bot.__file__, manifest.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert where.returncode == 0, where.stderr
    assert all(Path(p).is_relative_to(venv) for p in where.stdout.split()), where.stdout  # not the checkout

    version = unsilo("--version")
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert (version.returncode, version.stdout) == (0, f"unsilo {declared}\n"), version.stderr

    package = unsilo("manifest", "teams", "--app-id", APP_ID, "--out", str(work / "teams.zip"))
    assert package.returncode == 0, package.stderr
    with zipfile.ZipFile(work / "teams.zip") as zf:
        assert sorted(zf.namelist()) == ["color.png", "manifest.json", "outline.png"]
        assert APP_ID in zf.read("manifest.json").decode()

    demo = unsilo("demo")
    assert demo.returncode == 0, demo.stderr
    assert "Ingested 12 new conversations from the sample feed" in demo.stdout
    assert (tmp_path / "demo.db").exists() and not (work / "unsilo.db").exists()
