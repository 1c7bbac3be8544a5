"""Headless Chromium (Debian's package) driven by Playwright, for the browser tests.

``python3 dev.py test`` installs Chromium when it is missing; Playwright never downloads a
browser of its own here (``executable_path`` points at the system one).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"


def chromium_path() -> str:
    found = os.environ.get("PDCONNECT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Chromium is not installed: run 'python3 dev.py test', which installs Debian's chromium package")
    return found


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    made = context.new_page()
    made.set_default_timeout(15_000)
    yield made
    context.close()


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Path:
    """Where this test saves its screenshots (under test-output/, not committed)."""
    directory = OUTPUT / request.node.name
    directory.mkdir(parents=True, exist_ok=True)
    return directory
