"""Acme Monitoring end to end in headless Chromium, with the sandbox as PagerDuty.

Screenshots of every step go to test-output/screenshots/<test name>/.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from example_app.demo import RunningDemo, start_acme
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.conftest import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=time.time())


@pytest.fixture
def acme(pagerduty_sandbox: PagerDutySandbox, tmp_path: Path, clock: FakeClock) -> Iterator[RunningDemo]:
    """Acme in single-account mode: legacy Connect, the install flow and pasted keys (test_oauth_walk.py: OAuth)."""
    running = start_acme(
        pagerduty_sandbox.server,
        database_url=f"sqlite:///{tmp_path / 'acme.db'}",
        scheduler=False,
        clock=clock,
        oauth=False,
    )
    yield running
    running.stop()


def wait_until_recorded(acme: RunningDemo, timeout: float = 10.0) -> None:
    """Wait until the outbox has nothing pending or leased, woken by each of the worker's records.

    PagerDuty (the sandbox) has an event before the worker records its 202; a page showing
    the outbox's delivery state must wait for the record, not for the sandbox.
    """
    outbox = acme.app.extensions["pdconnect"].outbox
    recorded = threading.Condition()
    original = outbox.record

    def record(*args: Any, **kwargs: Any) -> int:
        count = original(*args, **kwargs)
        with recorded:
            recorded.notify_all()
        return int(count)

    outbox.record = record
    try:
        with recorded:
            assert recorded.wait_for(lambda: outbox.stats().depth == 0, timeout), "the outbox did not drain"
    finally:
        outbox.record = original


def sign_in(page: Page, acme: RunningDemo, name: str = "alice") -> None:
    page.goto(acme.url)
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("[data-user]")).to_have_text(name)


def flash(page: Page) -> str:
    return page.locator(".flash").first.inner_text()


def test_the_whole_demo(page: Page, acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox, shots: Path) -> None:
    sandbox = pagerduty_sandbox.url
    sign_in(page, acme)
    page.screenshot(path=shots / "01-dashboard.png", full_page=True)

    # Legacy Connect: log in to the sandbox's PagerDuty and pick a service.
    page.get_by_role("link", name="PagerDuty", exact=True).click()
    page.locator("a.pdconnect-button--dark").click()
    expect(page.get_by_role("heading", name="Log in to PagerDuty")).to_be_visible()
    page.get_by_label("Account subdomain").fill("acme")
    page.get_by_role("button", name="Log in").click()
    page.get_by_label("Existing service").select_option(label="Database")
    page.screenshot(path=shots / "02-connect-pick-service.png", full_page=True)
    page.get_by_role("button", name="Connect").click()
    expect(page.locator(".flash")).to_have_text("Connected to PagerDuty: Database.")

    # Start again and cancel on PagerDuty's side.
    page.locator("a.pdconnect-button--dark").click()
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator(".flash")).to_have_text("PagerDuty setup was cancelled.")

    # The install flow, choosing two services.
    page.locator("a.pdconnect-button--light").click()
    page.get_by_label("Checkout API").check()
    page.get_by_label("Database").check()
    page.screenshot(path=shots / "03-install-pick-services.png", full_page=True)
    page.get_by_role("button", name="Connect").click()
    expect(page.locator(".flash")).to_have_text("Connected to PagerDuty: Checkout API, Database.")

    # A pasted key for a service made in PagerDuty by hand.
    _, payments_key = pagerduty_sandbox.create_service("Payments")
    page.get_by_label("Integration key").fill(f"  {payments_key}  ")
    page.get_by_label("Name it").fill("Payments")
    page.get_by_role("button", name="Add key").click()
    expect(page.locator(".flash")).to_have_text(f"Connected Payments ending in {payments_key[-4:]}.")
    expect(page.locator("tr[data-integration]")).to_have_count(4)

    # Test one service: a trigger, then a resolve.
    page.locator('tr[data-integration="Payments"]').get_by_role("button", name="Test").click()
    expect(page.locator(".flash")).to_have_text("Test alert sent to Payments and resolved.")
    page.screenshot(path=shots / "04-settings-connected.png", full_page=True)
    test_incident = pagerduty_sandbox.incidents()[-1]
    assert test_incident["status"] == "resolved"

    checkout_id = pagerduty_sandbox.service("Checkout API")["id"]
    subscribed_services = {s["filter"]["id"] for s in pagerduty_sandbox.state()["webhook_subscriptions"]}
    assert subscribed_services == {checkout_id, pagerduty_sandbox.service("Database")["id"]}

    def webhooks_settled(event_type: str, count: int) -> bool:
        """No webhook still on its way, and ``count`` of ``event_type`` delivered (read in process)."""
        deliveries = pagerduty_sandbox.sandbox.deliveries()
        done = [d for d in deliveries if d.event_type == event_type and d.state == "delivered"]
        return len(done) >= count and all(d.state != "pending" for d in deliveries)

    # A monitor that fails.
    page.get_by_role("link", name="New monitor").click()
    page.get_by_label("Name", exact=True).fill("Storefront")
    page.get_by_label("URL to check, or the metric's name").fill(acme.url + "/demo/checkout")
    page.get_by_role("button", name="Create monitor").click()
    expect(page.locator(".flash")).to_have_text("Monitor Storefront created.")
    page.get_by_role("button", name="Simulate failure").click()
    expect(page.locator("h1 [data-status]")).to_have_text("down")
    expect(page.locator("[data-alert]")).to_have_count(4)

    def storefront(status: str) -> bool:
        found = [i for i in pagerduty_sandbox.sandbox.incidents() if i.title.startswith("Storefront")]
        return len(found) == 4 and all(i.status == status for i in found)

    # The outbox's worker, beside the app, delivers the four triggers.
    pagerduty_sandbox.wait_for(lambda: storefront("triggered"), what="four incidents in PagerDuty")
    wait_until_recorded(acme)
    page.reload()
    expect(page.locator("[data-pagerduty-status]")).to_have_text(["triggered"] * 4)
    page.screenshot(path=shots / "05-monitor-down.png", full_page=True)

    # The incident in the sandbox, with the monitor's details; a responder acknowledges the one
    # on Checkout API (connected through the install flow, so Acme subscribed to its webhooks).
    page.goto(sandbox + "/incidents")
    expect(page.get_by_role("link", name="Storefront is down: simulated failure (eu-west-1)")).to_have_count(4)
    checkout = next(
        i
        for i in pagerduty_sandbox.sandbox.incidents()
        if i.title.startswith("Storefront") and i.service == checkout_id
    )
    page.goto(f"{sandbox}/incidents/{checkout.id}")
    expect(page.locator("[data-status]").first).to_have_text("triggered")
    expect(page.locator("[data-client-link]")).to_have_attribute("href", f"{acme.url}/monitors/3")
    page.screenshot(path=shots / "06-sandbox-incident.png", full_page=True)
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("[data-status]").first).to_have_text("acknowledged")
    incidents = [i for i in pagerduty_sandbox.incidents() if i["title"].startswith("Storefront")]
    assert len(incidents) == 4
    details = incidents[0]["alerts"][0]["details"]
    assert details["monitor"] == "Storefront"
    assert details["target"] == acme.url + "/demo/checkout"
    assert details["region"] == "eu-west-1"
    assert details["error"] == "Simulated outage (demo control)"

    # PagerDuty's webhooks tell Acme who acknowledged it. (Database has two incidents: Acme
    # connected it twice, with two keys, and the subscription covers the whole service.)
    pagerduty_sandbox.wait_for(
        lambda: webhooks_settled("incident.acknowledged", 1), what="the acknowledgement's webhook"
    )
    page.goto(f"{acme.url}/monitors/3")
    expect(page.locator("[data-pagerduty-status]", has_text="acknowledged by")).to_have_count(1)
    page.screenshot(path=shots / "06b-acknowledged-in-acme.png", full_page=True)

    # Recovery resolves every one of them.
    page.goto(f"{acme.url}/monitors/3")
    page.get_by_role("button", name="Simulate recovery").click()
    expect(page.locator("h1 [data-status]")).to_have_text("up")
    pagerduty_sandbox.wait_for(lambda: storefront("resolved"), what="the incidents resolved")
    wait_until_recorded(acme)
    subscribed = [i for i in pagerduty_sandbox.sandbox.incidents() if i.service in subscribed_services]
    pagerduty_sandbox.wait_for(
        lambda: webhooks_settled("incident.resolved", len(subscribed)), what="the resolves' webhooks"
    )
    page.reload()
    expect(page.locator("[data-pagerduty-status]")).to_have_text(["resolved"] * 4)
    page.screenshot(path=shots / "07-monitor-recovered.png", full_page=True)
    page.goto(acme.url + "/incidents")
    expect(page.locator("tr[data-alert]")).to_have_count(4)
    page.screenshot(path=shots / "08-incidents.png", full_page=True)
    page.goto(sandbox + "/incidents")
    page.screenshot(path=shots / "09-sandbox-incidents.png", full_page=True)


def _install_until_callback(page: Page, acme: RunningDemo, sandbox: PagerDutySandbox) -> str:
    """Start the install flow in the browser and return the callback URL, not yet opened.

    The browser goes to PagerDuty's (the sandbox's) page; the pages are then walked over HTTP,
    as if the user had copied the final link instead of following it.
    """
    page.goto(acme.url + "/pagerduty/install")
    expect(page.get_by_role("heading", name="Log in to PagerDuty")).to_be_visible()
    return sandbox.install(page.url)


def test_a_replayed_callback(page: Page, acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox, shots: Path) -> None:
    sign_in(page, acme)
    callback = _install_until_callback(page, acme, pagerduty_sandbox)
    page.goto(callback)
    expect(page.locator(".flash")).to_have_text("Connected to PagerDuty: Checkout API.")
    page.goto(callback)
    expect(page.locator("[data-pdconnect-error]")).to_have_text("This link was already used")
    page.screenshot(path=shots / "replayed.png", full_page=True)


def test_a_callback_from_another_browser_session(
    browser: Browser, page: Page, acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox, shots: Path
) -> None:
    sign_in(page, acme)
    callback = _install_until_callback(page, acme, pagerduty_sandbox)
    other = browser.new_context().new_page()
    sign_in(other, acme)
    other.goto(callback)
    expect(other.locator("[data-pdconnect-error]")).to_have_text("This link belongs to another browser session")
    other.screenshot(path=shots / "other-session.png", full_page=True)
    expect(other.get_by_role("link", name="Start again")).to_be_visible()
    other.context.close()


def test_an_expired_handshake(
    page: Page, acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox, clock: FakeClock, shots: Path
) -> None:
    sign_in(page, acme)
    callback = _install_until_callback(page, acme, pagerduty_sandbox)
    clock.advance(11 * 60)
    page.goto(callback)
    expect(page.locator("[data-pdconnect-error]")).to_have_text("The link expired")
    page.screenshot(path=shots / "expired.png", full_page=True)


def test_users_do_not_see_each_others_services(
    browser: Browser, page: Page, acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox
) -> None:
    sign_in(page, acme)
    page.goto(acme.url + "/settings/pagerduty")
    page.get_by_label("Integration key").fill(pagerduty_sandbox.service_key())
    page.get_by_role("button", name="Add key").click()
    expect(page.locator("tr[data-integration]")).to_have_count(1)
    bob = browser.new_context().new_page()
    sign_in(bob, acme, "bob")
    bob.goto(acme.url + "/settings/pagerduty")
    expect(bob.get_by_text("None yet.")).to_be_visible()
    bob.context.close()


def test_long_names_without_spaces_keep_the_layout(page: Page, acme: RunningDemo, shots: Path) -> None:
    """A 120-character monitor name and a 400-character URL wrap: the page never scrolls sideways."""
    sign_in(page, acme, "n" * 80)
    page.goto(acme.url + "/monitors/new")
    page.get_by_label("Name", exact=True).fill("W" * 120)
    page.get_by_label("URL to check, or the metric's name").fill("http://127.0.0.1:9/" + "segment" * 55)
    page.get_by_role("button", name="Create monitor").click()
    expect(page.locator(".flash")).to_contain_text("created")
    for path in (page.url, acme.url + "/"):
        page.goto(path)
        page.screenshot(
            path=shots / f"long-names-{'monitor' if 'monitors' in path else 'dashboard'}.png", full_page=True
        )
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path


def test_deleting_a_monitor_asks_first_without_javascript(browser: Browser, acme: RunningDemo, shots: Path) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    sign_in(page, acme)
    page.get_by_role("link", name="Error rate").click()
    page.get_by_role("link", name="Delete monitor…").click()
    expect(page.get_by_role("heading", name="Delete Error rate?")).to_be_visible()
    page.screenshot(path=shots / "confirm-delete.png", full_page=True)
    page.get_by_role("link", name="Keep it").click()
    page.get_by_role("link", name="Delete monitor…").click()
    page.get_by_role("button", name="Delete the monitor").click()
    expect(page.locator(".flash")).to_have_text("Monitor Error rate deleted.")
    expect(page.locator("tr[data-monitor]")).to_have_count(1)
    context.close()
