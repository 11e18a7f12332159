"""End-to-end tests in a real headless browser: Debian's chromium, driven by Playwright.

Playwright (PyPI `playwright`, a dev extra) brings its driver; no browser is downloaded:
it launches `/usr/bin/chromium` (Debian's package `chromium`, which `.ci/run` installs).
A test module opts in with

    pytest_plugins = ("tests.browser",)

and asks for the fixtures:
- `browser`: the launched headless chromium (one per test);
- `page`: a fresh page in its own context (no cookies shared);
- `page_log`: what the page's scripts did: `.errors` (uncaught exceptions) and `.dialogs`
  (alert, confirm, prompt, as "type: message"; each dismissed);
- `screenshot`: `await screenshot(page, "name")` writes `name.png` under this run's temporary
  screenshots folder and returns its path; the paths are printed at the end of the run.

Without chromium or Playwright the tests skip, saying what to install; under CI=true they fail.
"""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import IN_CI

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

CHROMIUM = Path(os.environ.get("UNSILO_TEST_CHROMIUM", "/usr/bin/chromium"))
TIMEOUT_MS = 5_000  # for any one browser action: the pages are local
_SHOTS: list[Path] = []


@dataclass
class PageLog:
    """What a page's scripts did: uncaught exceptions, and dialogs opened ("type: message")."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


_LOGS: weakref.WeakKeyDictionary[Any, PageLog] = weakref.WeakKeyDictionary()

Screenshot = Callable[["Page", str], Awaitable[Path]]


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def require_browser() -> None:
    """Skip (fail under CI=true) unless Playwright and chromium are both there."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        _missing("Playwright is not installed: pip install -e '.[dev]' (its driver is enough, no browser download)")
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        _missing(f"no chromium at {CHROMIUM}: apt-get install -y chromium (Debian's package; .ci/run installs it)")


@asynccontextmanager
async def launched_chromium() -> AsyncIterator[Browser]:
    """Debian's chromium, headless, launched by Playwright's bundled driver (skipped without them)."""
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, timeout=15_000)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's chromium for one test (a module wanting one for all its tests enters `launched_chromium`)."""
    async with launched_chromium() as launched:
        yield launched


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh page in its own context; its uncaught errors and dialogs are recorded (`page_log`)."""
    context = await browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    opened = await context.new_page()
    recorded(opened)
    try:
        yield opened
    finally:
        await context.close()


def recorded(page: Page) -> PageLog:
    """Record what the scripts of `page` do from now on (`page_log` hands it to a test); dialogs are dismissed."""
    record = _LOGS[page] = PageLog()
    page.on("pageerror", lambda error: record.errors.append(str(error)))

    async def on_dialog(dialog: Any) -> None:
        record.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    return record


@pytest.fixture
def page_log(page: Page) -> PageLog:
    """What the scripts of `page` did so far (it fills as they run)."""
    return _LOGS[page]


@pytest.fixture(scope="session")
def screenshots_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This run's folder of screenshots."""
    return tmp_path_factory.mktemp("screenshots", numbered=True)


@pytest.fixture
def screenshot(screenshots_dir: Path, request: pytest.FixtureRequest) -> Screenshot:
    """`await screenshot(page, "name")`: the whole page as `<test>-<name>.png`; returns the path (printed at the end)."""

    async def take(page: Page, name: str) -> Path:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{request.node.name}-{name}").strip("-")
        path = screenshots_dir / f"{stem}.png"
        await page.screenshot(path=str(path), full_page=True)
        _SHOTS.append(path)
        print(f"screenshot: {path}")
        return path

    return take


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """List the screenshots the run wrote (they are what each page looked like)."""
    if _SHOTS:
        terminalreporter.section("screenshots")
        for path in _SHOTS:
            terminalreporter.write_line(str(path))
