"""Acme's services table in Chromium: short columns stay on one line beside a long notice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from example_app.demo import RunningDemo, start_acme
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.example_app.test_app import owner_id


@pytest.fixture
def acme(pagerduty_sandbox: PagerDutySandbox, tmp_path: Path) -> Iterator[RunningDemo]:
    running = start_acme(
        pagerduty_sandbox.server, database_url=f"sqlite:///{tmp_path / 'acme.db'}", scheduler=False, worker=False
    )
    yield running
    running.stop()


def _lines(page: Page, selector: str) -> list[int]:
    """How many lines the text of each element matching ``selector`` is laid out on."""
    script = """els => els.map(e => {
        const range = document.createRange();
        range.selectNodeContents(e);
        return new Set([...range.getClientRects()].map(r => Math.round(r.top))).size;
    })"""
    counted: list[int] = page.eval_on_selector_all(selector, script)
    return counted


def test_how_and_key_stay_on_one_line_beside_a_reconnect_notice(
    page: Page, acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox, shots: Path
) -> None:
    page.set_viewport_size({"width": 1100, "height": 760})
    page.goto(acme.url)
    page.get_by_label("Your name").fill("alice")
    page.get_by_role("button", name="Sign in").click()
    page.goto(acme.url + "/settings/pagerduty")
    for name in ("Checkout API", "Database"):
        page.get_by_label("Integration key").fill(pagerduty_sandbox.service_key(name))
        page.get_by_label("Name it").fill(name)
        page.get_by_role("button", name="Add key").click()
    store = acme.app.extensions["pdconnect"].store
    owner = owner_id(acme, "alice")
    reason = "PagerDuty no longer knows this integration key; reconnect the integration " + "(HTTP 400) " * 8
    assert store.mark_broken(owner, store.list(owner)[0].id, reason)
    page.reload()
    expect(page.locator("[data-broken]")).to_have_count(1)
    page.screenshot(path=shots / "settings.png", full_page=True)
    assert _lines(page, "tr[data-integration] td:nth-child(4) code") == [1, 1]
    assert _lines(page, "tr[data-integration] td:nth-child(3)") == [1, 1]
