"""Both handshake pages, a responder's acknowledge and a service's keys, clicked through in headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect

from pdconnect import EventsApi, Handshake, Sender
from pdconnect.errors import EventRejected
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.browser.vendor_app import VendorApp, serve_vendor

APP_ID = "PBROWSR"


@pytest.fixture
def vendor(pagerduty_sandbox: PagerDutySandbox) -> Iterator[VendorApp]:
    handshake = Handshake(
        secret="browser-test-secret-0123456789",
        vendor_key="2fc7c9f3c8030e74aae6",
        app_id=APP_ID,
        connect_base_url=pagerduty_sandbox.url,
        install_base_url=pagerduty_sandbox.url,
    )
    with serve_vendor(handshake) as app:
        pagerduty_sandbox.register_app(APP_ID, [app.base_url + "/cb"], name="Acme Monitoring")
        yield app


def test_connect_page(page: Page, vendor: VendorApp, shots: Path) -> None:
    page.goto(vendor.base_url + "/start-connect")
    expect(page.get_by_role("heading", name="Log in to PagerDuty")).to_be_visible()
    page.screenshot(path=shots / "1-login.png")
    page.get_by_label("Account subdomain").fill("acme")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="PagerDuty Connect")).to_be_visible()
    page.get_by_label("Existing service").select_option(label="Database")
    page.screenshot(path=shots / "2-pick-service.png")
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("#result")).to_have_text("Connected: Database")
    page.screenshot(path=shots / "3-connected.png")
    assert vendor.connected[0].events_api is EventsApi.V1


def test_connect_cancel(page: Page, vendor: VendorApp) -> None:
    page.goto(vendor.base_url + "/start-connect")
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#result")).to_have_text("Cancelled")


def test_install_page_with_two_services(page: Page, vendor: VendorApp, shots: Path) -> None:
    page.goto(vendor.base_url + "/start-install")
    page.get_by_label("Account subdomain").fill("acme")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Install an integration")).to_be_visible()
    page.get_by_label("Checkout API").check()
    page.get_by_label("Database").check()
    page.screenshot(path=shots / "1-pick-services.png")
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("#result")).to_have_text("Connected: Checkout API, Database")
    assert [i.events_api for i in vendor.connected] == [EventsApi.V2, EventsApi.V2]


def test_acknowledge_an_incident(page: Page, pagerduty_sandbox: PagerDutySandbox, shots: Path) -> None:
    with Sender(
        events_base_url=pagerduty_sandbox.url, client="Acme Monitoring", client_url="https://acme.example/m/3"
    ) as sender:
        sender.trigger(
            pagerduty_sandbox.service_key(),
            "Checkout latency high",
            source="checkout",
            severity="critical",
            dedup_key="m3",
        )
    incident = pagerduty_sandbox.incident_for("m3")
    page.goto(f"{pagerduty_sandbox.url}/incidents")
    page.get_by_role("link", name="Checkout latency high").click()
    expect(page.locator("[data-client-link]")).to_have_attribute("href", "https://acme.example/m/3")
    expect(page.locator("[data-status]").first).to_have_text("triggered")
    page.screenshot(path=shots / "1-triggered.png")
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("[data-status]").first).to_have_text("acknowledged")
    page.screenshot(path=shots / "2-acknowledged.png")
    assert pagerduty_sandbox.incident_for("m3")["status"] == "acknowledged"
    assert pagerduty_sandbox.incident_for("m3")["id"] == incident["id"]


def test_the_connect_page_says_it_is_retired(page: Page, vendor: VendorApp) -> None:
    page.goto(vendor.base_url + "/start-connect")
    expect(page.locator("[data-connect-retired]")).to_contain_text("PagerDuty retired Connect in 2021")
    page.get_by_label("Account subdomain").fill("acme")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("[data-connect-retired]")).to_be_visible()
    page.get_by_role("link", name="Switch account").click()
    expect(page.get_by_role("heading", name="Log in to PagerDuty")).to_be_visible()  # the same handshake


def test_disable_and_delete_a_key_on_the_service_page(
    page: Page, pagerduty_sandbox: PagerDutySandbox, shots: Path
) -> None:
    key = pagerduty_sandbox.service_key()
    page.goto(f"{pagerduty_sandbox.url}/")
    page.get_by_role("link", name="Checkout API").click()
    row = page.locator(f'[data-key-row="{key}"]')
    row.get_by_role("button", name="Disable").click()
    expect(page.locator(f'[data-key-row="{key}"] [data-key-state]')).to_have_text("disabled")
    page.screenshot(path=shots / "1-disabled.png")
    with Sender(events_base_url=pagerduty_sandbox.url) as sender, pytest.raises(EventRejected):
        sender.trigger(key, "Down", source="web-1", severity="critical")
    page.locator(f'[data-key-row="{key}"]').get_by_role("button", name="Delete").click()
    expect(page.locator(f'[data-key-row="{key}"]')).to_have_count(0)


def test_a_javascript_client_url_is_not_clickable(page: Page, pagerduty_sandbox: PagerDutySandbox) -> None:
    event = {"routing_key": pagerduty_sandbox.service_key(), "event_action": "trigger", "dedup_key": "js",
             "client": "Evil", "client_url": "javascript:document.title='pwned'",
             "payload": {"summary": "Click me", "source": "x", "severity": "info"}}  # fmt: skip
    assert requests.post(pagerduty_sandbox.url + "/v2/enqueue", json=event, timeout=10).status_code == 202
    page.goto(f"{pagerduty_sandbox.url}/incidents")
    page.get_by_role("link", name="Click me").click()
    expect(page.locator("[data-client-link]")).to_contain_text("javascript:")
    page.locator("[data-client-link]").click()
    assert page.title() != "pwned"
    assert page.locator("a[href^='javascript']").count() == 0
