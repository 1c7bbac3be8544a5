"""Take the example app guide's screenshots again, from the real demo in headless Chromium.

    .venv/bin/python docs/_static/example-app/capture.py            # into this folder
    .venv/bin/python docs/_static/example-app/capture.py --out DIR  # somewhere else

Starts the PagerDuty sandbox and Acme Monitoring on loopback, in a temporary folder removed
afterwards, walks the steps of ``docs/example-app.md`` in Chromium (Debian's package, through
Playwright with ``executable_path``: ``$PDCONNECT_CHROMIUM`` or ``chromium`` on the ``PATH``),
and saves one PNG per step. Nothing but loopback is contacted. The outbox's worker is driven
here (``run(until_empty=True)``), so a page is shot once its events are delivered.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import requests
from playwright.sync_api import Page, ViewportSize, expect, sync_playwright

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # the repository: example_app is not installed

from example_app.demo import RunningDemo, start_acme  # noqa: E402
from pdconnect.sandbox import Sandbox, SandboxClient, SandboxServer  # noqa: E402

VIEWPORT: ViewportSize = {"width": 1100, "height": 760}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def chromium() -> str:
    found = os.environ.get("PDCONNECT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise SystemExit("capture.py: Chromium is not installed (Debian: apt-get install chromium)")
    return found


class Walk:
    """The guide's steps, one screenshot each, against one sandbox and one Acme."""

    def __init__(self, page: Page, acme: RunningDemo, server: SandboxServer, out: Path) -> None:
        self.page, self.acme, self.server, self.out = page, acme, server, out
        self.sandbox = SandboxClient(server.url)

    def shot(self, name: str) -> None:
        self.page.screenshot(path=self.out / f"{name}.png", full_page=True)
        print(f"  {name}.png", flush=True)

    def wait(self, predicate: Callable[[], bool], what: str) -> None:
        # The sandbox wakes its waiters on every change: no polling.
        if not self.server.sandbox.wait_for(predicate, 15.0):
            raise SystemExit(f"capture.py: timed out waiting for {what}")

    def deliver(self) -> None:
        self.acme.app.extensions["acme_worker"].run(until_empty=True)

    def sign_in(self, page: Page, name: str) -> None:
        page.goto(self.acme.url)
        page.get_by_label("Your name").fill(name)
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("[data-user]")).to_have_text(name)

    def run(self) -> None:
        page, acme = self.page, self.acme
        self.sign_in(page, "alice")
        self.shot("01-dashboard")

        # One button: PagerDuty's sign-in and consent (OAuth), then the install flow's picker.
        page.get_by_role("link", name="PagerDuty", exact=True).click()
        page.get_by_role("link", name="Connect PagerDuty").click()
        page.get_by_label("Sign in as").select_option(label="Kim Manager (manager) · kim@acme.example")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Authorize an app")).to_be_visible()
        self.shot("02-oauth-consent")
        page.get_by_role("button", name="Approve").click()
        page.get_by_label("Account subdomain").fill("acme")
        page.get_by_role("button", name="Log in").click()
        page.get_by_label("Checkout API").check()
        page.get_by_label("Database").check()
        self.shot("03-install-pick-services")
        page.get_by_role("button", name="Connect").click()
        expect(page.locator(".flash")).to_have_text("Connected to PagerDuty: Checkout API, Database.")

        _, payments_key = self.sandbox.create_service("Payments")
        page.get_by_label("Integration key").fill(payments_key)
        page.get_by_label("Name it").fill("Payments")
        page.get_by_role("button", name="Add key").click()
        page.locator('tr[data-integration="Payments"]').get_by_role("button", name="Test").click()
        expect(page.locator(".flash")).to_have_text("Test alert sent to Payments and resolved.")
        self.shot("04-settings-connected")

        page.get_by_role("link", name="New monitor").click()
        page.get_by_label("Name", exact=True).fill("Storefront")
        page.get_by_label("URL to check, or the metric's name").fill(acme.url + "/demo/checkout")
        page.get_by_role("button", name="Create monitor").click()
        monitor_url = page.url
        page.get_by_role("button", name="Simulate failure").click()
        expect(page.locator("h1 [data-status]")).to_have_text("down")
        self.deliver()
        page.reload()
        self.shot("05-monitor-down")

        checkout_id = self.sandbox.service("Checkout API")["id"]
        incident = next(
            i for i in self.server.sandbox.incidents() if i.title.startswith("Storefront") and i.service == checkout_id
        )
        page.goto(f"{self.server.url}/incidents/{incident.id}")
        self.shot("06-sandbox-incident")
        page.get_by_role("button", name="Acknowledge").click()
        expect(page.locator("[data-status]").first).to_have_text("acknowledged")
        self.wait(self._delivered("incident.acknowledged"), "the acknowledgement's webhook")
        page.goto(monitor_url)
        expect(page.locator("[data-pagerduty-status]", has_text="acknowledged by")).to_have_count(1)
        self.shot("06b-acknowledged-in-acme")

        page.get_by_role("button", name="Simulate recovery").click()
        expect(page.locator("h1 [data-status]")).to_have_text("up")
        self.deliver()
        self.wait(self._delivered("incident.resolved"), "the resolve's webhook")
        page.reload()
        self.shot("07-monitor-recovered")

        self.callback_from_another_session()

        # PagerDuty forgets the pasted key: the next alert marks it broken, and Acme says so.
        self.sandbox.delete_key(payments_key)
        page.goto(monitor_url)
        page.get_by_role("button", name="Simulate failure").click()
        self.deliver()
        page.goto(acme.url + "/settings/pagerduty")
        expect(page.locator("[data-broken]")).to_have_count(1)
        self.shot("09-settings-reconnect")

        # The customer revokes Acme's access in PagerDuty; the next REST call finds out.
        assert self.acme.oauth_client_id is not None
        revoke = f"{self.server.url}/_sandbox/api/oauth/apps/{self.acme.oauth_client_id}/revoke"
        requests.post(revoke, timeout=10).raise_for_status()  # the control API's "Revoke All Tokens"
        page.get_by_role("button", name="Check access").click()
        expect(page.locator("[data-pdconnect-reconnect]")).to_be_visible()
        self.shot("10-settings-revoked")

    def _delivered(self, event_type: str) -> Callable[[], bool]:
        def settled() -> bool:
            deliveries = self.server.sandbox.deliveries()
            done = any(d.event_type == event_type and d.state == "delivered" for d in deliveries)
            return done and all(d.state != "pending" for d in deliveries)

        return settled

    def callback_from_another_session(self) -> None:
        """A callback URL opened in another browser session: pdconnect's page, in Acme's layout."""
        browser = self.page.context.browser
        assert browser is not None
        first = browser.new_context(viewport=VIEWPORT).new_page()  # not yet signed in to PagerDuty
        self.sign_in(first, "alice")
        first.goto(self.acme.url + "/pagerduty/install")
        expect(first.get_by_role("heading", name="Log in to PagerDuty")).to_be_visible()
        callback = self.sandbox.install(first.url)  # the sandbox's pages walked over HTTP: the link, not followed
        first.context.close()
        other = browser.new_context(viewport=VIEWPORT).new_page()
        self.sign_in(other, "bob")
        other.goto(callback)
        expect(other.locator("[data-pdconnect-error]")).to_be_visible()
        other.screenshot(path=self.out / "08-other-session.png", full_page=True)
        print("  08-other-session.png", flush=True)
        other.context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Take the example app guide's screenshots again.")
    parser.add_argument("--out", type=Path, default=HERE, help="where to save the PNGs (default: this folder)")
    args = parser.parse_args()
    if not args.out.is_dir():
        raise SystemExit(f"capture.py: {args.out} is not a folder")
    with contextlib.ExitStack() as cleanup:
        data = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="acme-capture-")))
        server = SandboxServer(Sandbox(db_path=str(data / "sandbox.db"))).start()
        cleanup.callback(server.stop)
        acme = start_acme(server, database_url=f"sqlite:///{data / 'acme.db'}", scheduler=False, worker=False)
        cleanup.callback(acme.stop)
        playwright = cleanup.enter_context(sync_playwright())
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        cleanup.callback(browser.close)
        page = browser.new_context(viewport=VIEWPORT).new_page()
        page.set_default_timeout(15_000)
        print(f"Saving to {args.out}:", flush=True)
        Walk(page, acme, server, args.out).run()


if __name__ == "__main__":
    main()
