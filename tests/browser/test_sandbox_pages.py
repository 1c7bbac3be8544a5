"""Both handshake pages and a responder's acknowledge, clicked through in headless Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from pdconnect import EventsApi, Handshake, Sender
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
