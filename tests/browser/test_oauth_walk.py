"""Acme Monitoring with per-account OAuth, walked in headless Chromium against the sandbox.

One "Connect PagerDuty" button: the sandbox's sign-in and consent pages (OAuth), then the
install flow's service picker. A failing monitor opens an incident; a responder acknowledges
it in the sandbox and Acme shows who did, from the webhook of the subscription Acme made in
that account with the account's own token. The customer revokes Acme's tokens ("Revoke All
Tokens"): the next REST call Acme makes refreshes, is refused, and every page asks to
reconnect; reconnecting restores access and updates. A second Acme user connects an EU
account; neither user sees anything of the other's.

No sleeps: every wait is on a page condition (Playwright's ``expect``) or on the sandbox's
own record of its webhook deliveries, as in ``test_example_app.py``. Screenshots of every
step go to test-output/screenshots/<test name>/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect

from example_app.demo import RunningDemo, start_acme
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.browser.test_example_app import sign_in, wait_until_recorded

EU_ACCOUNT = "globex"


@pytest.fixture
def acme(pagerduty_sandbox: PagerDutySandbox, tmp_path: Path) -> Iterator[RunningDemo]:
    """The demo as it runs by default: OAuth and the install flow, no vendor-wide REST key."""
    running = start_acme(pagerduty_sandbox.server, database_url=f"sqlite:///{tmp_path / 'acme.db'}", scheduler=False)
    assert "PDCONNECT_REST_API_TOKEN" not in running.app.config or not running.app.config["PDCONNECT_REST_API_TOKEN"]
    yield running
    running.stop()


def connect_account(page: Page, *, account: str, user: str, services: list[str], shots: Path | None = None) -> None:
    """From Acme's PagerDuty page: the OAuth sign-in and consent, then the install flow's picker."""
    page.locator('a[href*="/pagerduty/oauth/start"]').first.click()
    sign_in_page = page.get_by_role("heading", name="Sign in to PagerDuty")
    consent = page.get_by_role("heading", name="Authorize an app")
    expect(sign_in_page.or_(consent)).to_be_visible()
    if sign_in_page.is_visible():
        page.get_by_label("Sign in as").select_option(
            label=f"{user} (manager) · {user.split()[0].lower()}@{account}.example"
        )
        page.get_by_role("button", name="Sign in").click()
    expect(consent).to_be_visible()
    expect(page.locator("[data-account]")).to_have_text(account)
    if shots is not None:
        page.screenshot(path=shots / "consent.png", full_page=True)
    page.get_by_role("button", name="Approve").click()
    # The install flow's own pages (PagerDuty's): log in to the account, pick services.
    log_in = page.get_by_role("heading", name="Log in to PagerDuty")
    picker = page.get_by_label(services[0])
    expect(log_in.or_(picker)).to_be_visible()
    if log_in.is_visible():
        page.get_by_label("Account subdomain").fill(account)
        page.get_by_role("button", name="Log in").click()
    for service in services:
        page.get_by_label(service).check()
    if shots is not None:
        page.screenshot(path=shots / "install-pick.png", full_page=True)
    page.get_by_role("button", name="Connect").click()
    expect(page.locator(".flash")).to_have_text(f"Connected to PagerDuty: {', '.join(services)}.")


def test_the_oauth_walk(
    browser: Browser, page: Page, acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox, shots: Path
) -> None:
    sign_in(page, acme)
    page.goto(acme.url + "/settings/pagerduty")
    connect_account(page, account="acme", user="Kim Manager", services=["Checkout API"], shots=shots)
    row = page.locator('tr[data-account="acme"]')
    expect(row.locator("[data-region]")).to_have_text("US")
    expect(row.locator("[data-scopes]")).to_have_text("openid write")
    expect(row.locator("[data-connected]")).to_be_visible()
    page.screenshot(path=shots / "settings-connected.png", full_page=True)

    # A monitor fails: its incident opens in acme's Checkout API.
    fail_new_monitor(page, acme, "Storefront")
    incident = wait_for_incident(pagerduty_sandbox, "Storefront", status="triggered")
    wait_until_recorded(acme)
    checkout = pagerduty_sandbox.service("Checkout API")
    assert incident.service == checkout["id"]

    # A responder acknowledges it in the sandbox; the account's webhook tells Acme who did.
    acknowledge_in_sandbox(page, pagerduty_sandbox, incident.id)
    pagerduty_sandbox.wait_for(lambda: webhooks_settled(pagerduty_sandbox, "incident.acknowledged", 1))
    monitor_url = page_of(page, acme, "Storefront")
    expect(page.locator("[data-pagerduty-status]")).to_have_text(["acknowledged by Alex Responder"])
    page.screenshot(path=shots / "acknowledged-in-acme.png", full_page=True)

    # The customer revokes every token of Acme's app in PagerDuty. Nothing shows it yet; the
    # next REST call Acme makes (Check access) is refused, its refresh too: reconnect.
    revoked = requests.post(
        f"{pagerduty_sandbox.url}/_sandbox/api/oauth/apps/{acme.oauth_client_id}/revoke", timeout=10
    )
    assert revoked.status_code == 200 and revoked.json()["revoked"] == 1
    page.goto(acme.url + "/settings/pagerduty")
    expect(page.locator("[data-pdconnect-reconnect]")).to_have_count(0)
    page.get_by_role("button", name="Check access").click()
    expect(page.locator(".flash")).to_have_text("PagerDuty no longer accepts Acme's access to acme: reconnect it.")
    expect(page.locator("[data-pdconnect-reconnect]")).to_be_visible()
    expect(page.locator('tr[data-account="acme"] [data-needs-reconnect]')).to_be_visible()
    page.screenshot(path=shots / "settings-reconnect.png", full_page=True)
    page.goto(acme.url + "/")
    expect(page.locator("[data-pdconnect-reconnect]")).to_be_visible()

    # Reconnecting (the banner's link: OAuth, then the install flow) restores access...
    page.locator("[data-pdconnect-reconnect]").get_by_role("link", name="Reconnect PagerDuty").click()
    expect(page.get_by_role("heading", name="Authorize an app")).to_be_visible()  # still signed in there
    page.get_by_role("button", name="Approve").click()
    page.get_by_label("Checkout API").check()
    page.get_by_role("button", name="Connect").click()
    expect(page.locator(".flash")).to_have_text("Connected to PagerDuty: Checkout API.")
    expect(page.locator("[data-pdconnect-reconnect]")).to_have_count(0)
    expect(page.locator('tr[data-account="acme"] [data-connected]')).to_be_visible()
    page.get_by_role("button", name="Check access").click()
    expect(page.locator(".flash")).to_have_text("acme answers: Acme can see 2 services.")
    assert [s["filter"]["type"] for s in pagerduty_sandbox.state()["webhook_subscriptions"]] == ["account_reference"]

    # ...and updates: the monitor recovers and fails again, and the new incident's
    # acknowledgement reaches Acme.
    page.goto(monitor_url)
    page.get_by_role("button", name="Simulate recovery").click()
    expect(page.locator("h1 [data-status]")).to_have_text("up")
    page.get_by_role("button", name="Simulate failure").click()
    expect(page.locator("h1 [data-status]")).to_have_text("down")
    again = wait_for_incident(pagerduty_sandbox, "Storefront", status="triggered", newer_than=incident.id)
    wait_until_recorded(acme)
    acknowledge_in_sandbox(page, pagerduty_sandbox, again.id)
    pagerduty_sandbox.wait_for(lambda: webhooks_settled(pagerduty_sandbox, "incident.acknowledged", 2))
    page.goto(monitor_url)
    expect(page.locator("[data-pagerduty-status]").first).to_have_text("acknowledged by Alex Responder")
    page.screenshot(path=shots / "acknowledged-after-reconnect.png", full_page=True)

    # Bob, another Acme user, connects an EU account. Each sees only their own.
    pagerduty_sandbox.create_account(EU_ACCOUNT, region="eu")
    pagerduty_sandbox.create_service("Globex API", account=EU_ACCOUNT)
    bob = browser.new_context().new_page()
    bob.set_default_timeout(15_000)
    sign_in(bob, acme, "bob")
    bob.goto(acme.url + "/settings/pagerduty")
    connect_account(bob, account=EU_ACCOUNT, user="Kim Manager", services=["Globex API"])
    eu_row = bob.locator(f'tr[data-account="{EU_ACCOUNT}"]')
    expect(eu_row.locator("[data-region]")).to_have_text("EU")
    expect(bob.locator("tr[data-account]")).to_have_count(1)
    expect(bob.locator("tr[data-integration]")).to_have_count(1)
    bob.screenshot(path=shots / "bob-settings-eu.png", full_page=True)
    fail_new_monitor(bob, acme, "Globex shop")
    globex = wait_for_incident(pagerduty_sandbox, "Globex shop", status="triggered")
    wait_until_recorded(acme)
    assert globex.service == pagerduty_sandbox.service("Globex API", account=EU_ACCOUNT)["id"]
    # The EU account's events went to the EU events host (the sandbox's /eu), by its region.
    assert [r.path for r in pagerduty_sandbox.sandbox.received() if "Globex shop" in str(r.request)] == [
        "/eu/v2/enqueue"
    ]

    page.goto(acme.url + "/settings/pagerduty")
    expect(page.locator("tr[data-account]")).to_have_count(1)
    expect(page.locator('tr[data-account="acme"]')).to_be_visible()
    expect(page.locator("tr[data-integration]")).to_have_count(1)  # installing Checkout API again kept its key
    alices_keys = page.locator("tr[data-integration] code").all_inner_texts()
    bob.goto(acme.url + "/settings/pagerduty")
    expect(bob.locator('tr[data-integration="Globex API"]')).to_have_count(1)
    bobs_keys = bob.locator("tr[data-integration] code").all_inner_texts()
    # Every new Acme user starts with a monitor named "Checkout API": the words are each one's own.
    for mine, theirs in ((page, [EU_ACCOUNT, "Globex", *bobs_keys]), (bob, ["Storefront", "acme ", *alices_keys])):
        for path in ("/", "/settings/pagerduty", "/incidents"):
            mine.goto(acme.url + path)
            text = mine.locator("main").inner_text()
            assert all(word not in text for word in theirs), (path, theirs)
    # Nor can Bob act on Alice's account by its id, with his own session and form token.
    page.goto(acme.url + "/settings/pagerduty")
    alices_check = page.locator('tr[data-account="acme"] form').first.get_attribute("action")
    alices_id = page.locator('tr[data-account="acme"] input[name="account_id"]').get_attribute("value")
    assert alices_check and alices_id
    bob.goto(acme.url + "/settings/pagerduty")
    token = bob.locator('tr[data-account] input[name="pdconnect_csrf"]').first.get_attribute("value")
    assert token
    assert bob.request.post(acme.url + alices_check, form={"pdconnect_csrf": token}).status == 404
    bob.request.post(acme.url + "/pagerduty/oauth/disconnect", form={"pdconnect_csrf": token, "account_id": alices_id})
    page.reload()
    expect(page.locator('tr[data-account="acme"] [data-connected]')).to_be_visible()
    bob.reload()
    expect(bob.locator("tr[data-account]")).to_have_count(1)
    expect(bob.locator(f'tr[data-account="{EU_ACCOUNT}"]')).to_be_visible()
    bob.context.close()


def fail_new_monitor(page: Page, acme: RunningDemo, name: str) -> None:
    """Create an HTTP monitor of Acme's demo endpoint and make it fail (the outbox's worker sends the trigger)."""
    page.goto(acme.url + "/monitors/new")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("URL to check, or the metric's name").fill(acme.url + "/demo/checkout")
    page.get_by_role("button", name="Create monitor").click()
    expect(page.locator(".flash")).to_have_text(f"Monitor {name} created.")
    page.get_by_role("button", name="Simulate failure").click()
    expect(page.locator("h1 [data-status]")).to_have_text("down")


def page_of(page: Page, acme: RunningDemo, monitor: str) -> str:
    page.goto(acme.url + "/")
    page.get_by_role("link", name=monitor, exact=True).click()
    return page.url


def wait_for_incident(sandbox: PagerDutySandbox, title: str, *, status: str, newer_than: str | None = None) -> Any:
    """The sandbox's newest incident whose title starts with ``title``, once it has ``status``."""
    found: list[Any] = []

    def opened() -> bool:
        incidents = [i for i in sandbox.sandbox.incidents() if i.title.startswith(title) and i.id != newer_than]
        found[:] = [i for i in incidents if i.status == status]
        return bool(found)

    sandbox.wait_for(opened, what=f"an incident {title!r} {status}")
    return found[-1]


def acknowledge_in_sandbox(page: Page, sandbox: PagerDutySandbox, incident_id: str) -> None:
    page.goto(f"{sandbox.url}/incidents/{incident_id}")
    page.get_by_role("button", name="Acknowledge").click()
    expect(page.locator("[data-status]").first).to_have_text("acknowledged")


def webhooks_settled(sandbox: PagerDutySandbox, event_type: str, count: int) -> bool:
    """No webhook still on its way, and ``count`` of ``event_type`` delivered (read in process)."""
    deliveries = sandbox.sandbox.deliveries()
    done = [d for d in deliveries if d.event_type == event_type and d.state == "delivered"]
    return len(done) >= count and all(d.state != "pending" for d in deliveries)
