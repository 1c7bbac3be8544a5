"""The Flask extension's per-account OAuth, end to end against the sandbox over loopback.

Each test clicks through the real pages: pdconnect's start route, the sandbox's sign-in and
consent pages, pdconnect's callback; what PagerDuty holds is read back with each account's own
API key, so a subscription made in the wrong account, or with the wrong token, shows.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Flask

from pdconnect.flask import account_connected, cancelled
from pdconnect.oauth.credentials import Credential
from tests.flask_oauth.conftest import HOOK_URL, Site, flashes


def test_a_full_connect_stores_the_credential_encrypted_and_subscribes_in_that_account(site: Site) -> None:
    alex = site.user("acme", "Alex")
    site.sandbox.create_account("globex")
    seen: list[dict[str, Any]] = []

    def receiver(sender: Flask, **kwargs: Any) -> None:
        seen.append(kwargs)

    browser = site.browser("owner-1")
    with account_connected.connected_to(receiver, site.app):
        response = site.connect(browser, alex)
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert [kw["owner_id"] for kw in seen] == ["owner-1"] and seen[0]["subscribed"] is True
    assert "Connected to the PagerDuty account acme." in flashes(browser)
    credential: Credential = site.connections().accounts("owner-1")[0]
    assert credential.account.subdomain == "acme" and credential.account.user_id == alex
    # Encrypted at rest: the row holds neither token.
    engine = site.connections().credentials.engine
    with engine.connect() as conn:
        raw = " ".join(str(v) for row in conn.execute(sa.text("SELECT * FROM pdconnect_oauth_credentials")) for v in row)
    assert credential.access_token not in raw and str(credential.refresh_token) not in raw
    # The subscription is in acme, made with acme's token, and nowhere else.
    acme = [s for s in site.subscriptions("acme") if s["delivery_method"]["url"] == HOOK_URL]
    assert len(acme) == 1 and acme[0]["filter"]["type"] == "account_reference"
    assert [s for s in site.subscriptions("globex") if s["delivery_method"]["url"] == HOOK_URL] == []
    with site.app.app_context():
        registered = site.connections().secrets.secrets_for(acme[0]["id"])
    assert [r.owner_id for r in registered] == ["owner-1"]


def test_reconnecting_reuses_the_subscription(site: Site) -> None:
    alex = site.user("acme", "Alex")
    browser = site.browser("owner-1")
    site.connect(browser, alex)
    first = [s["id"] for s in site.subscriptions("acme") if s["delivery_method"]["url"] == HOOK_URL]
    assert site.connect(browser, alex).status_code == 303
    again = [s["id"] for s in site.subscriptions("acme") if s["delivery_method"]["url"] == HOOK_URL]
    assert again == first
    assert len(site.connections().accounts("owner-1")) == 1


def test_deny_is_the_cancelled_signal_and_a_friendly_message(site: Site) -> None:
    alex = site.user("acme", "Alex")
    seen: list[dict[str, Any]] = []

    def receiver(sender: Flask, **kwargs: Any) -> None:
        seen.append(kwargs)

    browser = site.browser("owner-1")
    with cancelled.connected_to(receiver, site.app):
        response = browser.get(site.consent(site.start(browser), alex, decision="deny"))
    assert response.status_code == 302
    assert seen == [{"owner_id": "owner-1", "flow": "oauth"}]
    assert any("cancelled" in message for message in flashes(browser))
    assert site.connections().accounts("owner-1") == []
    assert site.subscriptions("acme") == []
