"""Connected accounts over their life: one button with the install flow, disconnect, revocation, tenants."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from pdconnect.flask import account_disconnected, current_pagerduty, needs_reauthorization
from pdconnect.rest.errors import NeedsReauthorization
from pdconnect.sandbox.identity.core import DEFAULT_ISSUER
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.flask_oauth.conftest import (
    APP_ID,
    HOOK_URL,
    INSTALL_CALLBACK,
    OAUTH_API,
    Site,
    csrf,
    flashes,
    local,
    make_flask,
    oauth_config,
    problem_page,
    register_oauth_app,
)


@pytest.fixture
def both(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> Site:
    """A site with the install flow and OAuth: one button for both."""
    pagerduty_sandbox._api("PUT", f"{OAUTH_API}/settings", json={"issuer": DEFAULT_ISSUER})  # see conftest's site
    registered = register_oauth_app(pagerduty_sandbox)
    pagerduty_sandbox.register_app(APP_ID, [INSTALL_CALLBACK])
    config = oauth_config(pagerduty_sandbox, registered, PDCONNECT_APP_ID=APP_ID)
    return Site(make_flask(tmp_path, pagerduty_sandbox, config), pagerduty_sandbox, registered)


def _hooks(site: Site, account: str) -> list[str]:
    return [s["id"] for s in site.subscriptions(account) if s["delivery_method"]["url"] == HOOK_URL]


def _one_button(site: Site, browser: Any, user_id: str, *, install_in: str, services: tuple[str, ...]) -> Any:
    """Press the button: OAuth, then straight into the install flow; the install callback's response."""
    page = browser.get("/").get_data(as_text=True)
    assert 'href="/pagerduty/oauth/start?then=install"' in page
    after_oauth = browser.get(site.consent(site.start(browser, "?then=install"), user_id))
    assert after_oauth.status_code == 303 and after_oauth.headers["Location"] == "/pagerduty/install"
    install = browser.get("/pagerduty/install")
    assert install.status_code == 302
    callback = site.sandbox.install(install.headers["Location"], account=install_in, services=list(services))
    return browser.get(local(callback))


def test_one_button_connects_oauth_then_installs_and_lands_back_connected(both: Site) -> None:
    browser = both.browser("owner-1")
    response = _one_button(both, browser, both.user("acme", "Alex"), install_in="acme", services=("Checkout API",))
    assert response.status_code == 302 and response.headers["Location"] == "/"
    with both.app.app_context():
        (integration,) = current_pagerduty().integrations("owner-1")
    assert (integration.account, integration.region.value) == ("acme", "us")
    assert [a.account.subdomain for a in both.connections().accounts("owner-1")] == ["acme"]


def test_an_install_in_another_account_than_the_tokens_is_refused(both: Site) -> None:
    both.sandbox.create_account("globex")
    both.sandbox.create_service("Globex Billing", account="globex")
    browser = both.browser("owner-1")
    response = _one_button(both, browser, both.user("acme", "Alex"), install_in="globex", services=("Globex Billing",))
    page = problem_page(browser, response)
    assert page.status_code == 403
    text = page.get_data(as_text=True)
    assert "not the PagerDuty account you connected" in text and "globex" in text
    with both.app.app_context():
        assert current_pagerduty().integrations("owner-1") == []


def test_an_install_without_any_oauth_connection_is_refused(both: Site) -> None:
    browser = both.browser("owner-1")
    install = browser.get("/pagerduty/install")
    page = problem_page(browser, browser.get(local(both.sandbox.install(install.headers["Location"]))))
    assert page.status_code == 403
    with both.app.app_context():
        assert current_pagerduty().integrations("owner-1") == []


def test_an_eu_account_s_integration_sends_its_events_to_the_eu_host(both: Site) -> None:
    both.sandbox.create_account("globex", region="eu")
    both.sandbox.create_service("Globex Billing", account="globex")
    browser = both.browser("owner-2")
    gina = both.user("globex", "Gina", role="admin")
    response = _one_button(both, browser, gina, install_in="globex", services=("Globex Billing",))
    assert response.status_code == 302
    with both.app.app_context():
        (integration,) = current_pagerduty().integrations("owner-2")
    assert integration.region.value == "eu"
    test = browser.post(f"/pagerduty/integrations/{integration.id}/test", data={"pdconnect_csrf": csrf(browser)})
    assert test.status_code == 302
    assert any("Test alert sent" in message for message in flashes(browser))
    received = both.sandbox.received(routing_key=integration.integration_key)
    # The sandbox refuses an EU key at the US host ("key of another region"), as PagerDuty would.
    assert received and all(r["path"].startswith("/eu/") and r["status"] == 202 for r in received)


# -- disconnecting -------------------------------------------------------------------------------


def test_disconnect_deletes_the_subscription_then_forgets_the_tokens(site: Site) -> None:
    browser = site.browser("owner-1")
    site.connect(browser, site.user("acme", "Alex"))
    (account,) = site.connections().accounts("owner-1")
    (hook,) = _hooks(site, "acme")
    seen: list[dict[str, Any]] = []

    def receiver(sender: Flask, **kwargs: Any) -> None:
        seen.append(kwargs)

    with account_disconnected.connected_to(receiver, site.app):
        response = browser.post(
            "/pagerduty/oauth/disconnect", data={"account_id": account.account_id, "pdconnect_csrf": csrf(browser)}
        )
    assert response.status_code == 302
    assert _hooks(site, "acme") == []
    assert site.connections().accounts("owner-1") == []
    assert site.connections().secrets.secrets_for(hook) == []
    assert seen[0]["result"].removed == (hook,) and seen[0]["result"].complete


def test_disconnect_needs_the_form_token(site: Site) -> None:
    browser = site.browser("owner-1")
    site.connect(browser, site.user("acme", "Alex"))
    (account,) = site.connections().accounts("owner-1")
    page = browser.post("/pagerduty/oauth/disconnect", data={"account_id": account.account_id})
    assert page.status_code == 400
    assert site.connections().accounts("owner-1") != [] and _hooks(site, "acme") != []


def test_disconnect_after_revocation_forgets_locally_and_says_what_is_left(site: Site) -> None:
    browser = site.browser("owner-1")
    site.connect(browser, site.user("acme", "Alex"))
    (account,) = site.connections().accounts("owner-1")
    site.sandbox._api("POST", f"{OAUTH_API}/apps/{site.client_id}/revoke")
    response = browser.post(
        "/pagerduty/oauth/disconnect", data={"account_id": account.account_id, "pdconnect_csrf": csrf(browser)}
    )
    assert response.status_code == 302
    assert site.connections().accounts("owner-1") == []
    assert any("could not be deleted in PagerDuty" in message for message in flashes(browser))
    assert len(_hooks(site, "acme")) == 1  # still there: no token could delete it


def test_another_owner_cannot_disconnect_my_account(site: Site) -> None:
    mine = site.browser("owner-1")
    site.connect(mine, site.user("acme", "Alex"))
    (account,) = site.connections().accounts("owner-1")
    theirs = site.browser("owner-2")
    response = theirs.post(
        "/pagerduty/oauth/disconnect", data={"account_id": account.account_id, "pdconnect_csrf": csrf(theirs)}
    )
    assert response.status_code == 302
    assert site.connections().accounts("owner-1") != [] and _hooks(site, "acme") != []


# -- revocation and reconnect --------------------------------------------------------------------


def test_revoke_all_signals_needs_reauthorization_once_shows_the_banner_and_reconnect_clears_it(site: Site) -> None:
    alex = site.user("acme", "Alex")
    browser = site.browser("owner-1")
    site.connect(browser, alex)
    (account,) = site.connections().accounts("owner-1")
    assert "data-pdconnect-reconnect" not in browser.get("/").get_data(as_text=True)
    site.sandbox._api("POST", f"{OAUTH_API}/apps/{site.client_id}/revoke")
    seen: list[dict[str, Any]] = []

    def receiver(sender: Flask, **kwargs: Any) -> None:
        seen.append(kwargs)

    with needs_reauthorization.connected_to(receiver, site.app), site.app.app_context():
        for _ in range(3):
            with (
                site.connections().rest_client("owner-1", account.account_id) as client,
                pytest.raises(NeedsReauthorization),
            ):
                client.list_services()
    assert [kw["owner_id"] for kw in seen] == ["owner-1"]
    page = browser.get("/").get_data(as_text=True)
    assert "data-pdconnect-reconnect" in page and 'href="/pagerduty/oauth/start"' in page
    assert site.connect(browser, alex).status_code == 303
    assert "data-pdconnect-reconnect" not in browser.get("/").get_data(as_text=True)
    with site.app.app_context(), site.connections().rest_client("owner-1", account.account_id) as client:
        assert client.list_services()


# -- tenants ---------------------------------------------------------------------------------------


def test_two_owners_with_two_accounts_one_eu_see_nothing_of_each_other(site: Site) -> None:
    site.sandbox.create_account("globex", region="eu")
    us, eu = site.browser("owner-1"), site.browser("owner-2")
    site.connect(us, site.user("acme", "Alex"))
    site.connect(eu, site.user("globex", "Gina", role="admin"))
    us_page, eu_page = us.get("/").get_data(as_text=True), eu.get("/").get_data(as_text=True)
    assert "acme us" in us_page and "globex" not in us_page
    assert "globex eu" in eu_page and "acme" not in eu_page
    (acme_hook,), (globex_hook,) = _hooks(site, "acme"), _hooks(site, "globex")
    secrets = site.connections().secrets
    assert [s.owner_id for s in secrets.secrets_for(acme_hook)] == ["owner-1"]
    assert [s.owner_id for s in secrets.secrets_for(globex_hook)] == ["owner-2"]
    (globex,) = site.connections().accounts("owner-2")
    assert globex.account.rest_base_url == site.sandbox.url + "/eu"
    # owner-1 cannot reach owner-2's account, by id or by disconnecting it.
    assert site.connections().credentials.get("owner-1", globex.account_id) is None
    us.post("/pagerduty/oauth/disconnect", data={"account_id": globex.account_id, "pdconnect_csrf": csrf(us)})
    assert _hooks(site, "globex") == [globex_hook]


def test_a_credential_under_a_removed_key_does_not_break_the_owner_s_pages(
    site: Site, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    site.connect(site.browser("owner-1"), site.user("acme", "Alex"))
    # The key that encrypted it was dropped from PDCONNECT_TOKEN_KEYS before the rows were rotated.
    rekeyed = make_flask(tmp_path, site.sandbox, oauth_config(site.sandbox, site.registered))
    browser = rekeyed.test_client()
    browser.get("/login/owner-1")
    page = browser.get("/")
    assert page.status_code == 200
    assert any("cannot be decrypted" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


def test_reconnecting_or_disconnecting_under_a_removed_key_is_never_a_500(site: Site, tmp_path: Path) -> None:
    alex = site.user("acme", "Alex")
    site.connect(site.browser("owner-1"), alex)
    with site.app.app_context():
        (account,) = site.connections().accounts("owner-1")
    rekeyed = Site(
        make_flask(tmp_path, site.sandbox, oauth_config(site.sandbox, site.registered)), site.sandbox, site.registered
    )
    browser = rekeyed.browser("owner-1")
    gone = browser.post(
        "/pagerduty/oauth/disconnect", data={"account_id": account.account_id, "pdconnect_csrf": csrf(browser)}
    )
    assert gone.status_code < 500
    again = rekeyed.connect(browser, alex)
    assert again.status_code < 500
    if again.status_code == 303 and again.headers["Location"] == "/pagerduty/problem":
        assert browser.get("/pagerduty/problem").status_code < 500


def test_reconnecting_replaces_a_credential_under_a_removed_key(site: Site, tmp_path: Path) -> None:
    alex = site.user("acme", "Alex")
    site.connect(site.browser("owner-1"), alex)
    (hook,) = _hooks(site, "acme")
    config = oauth_config(site.sandbox, site.registered)
    rekeyed = Site(make_flask(tmp_path, site.sandbox, config), site.sandbox, site.registered)
    browser = rekeyed.browser("owner-1")
    again = rekeyed.connect(browser, alex)
    assert again.status_code == 303 and again.headers["Location"] == "/"
    assert [c.account.subdomain for c in rekeyed.connections().accounts("owner-1")] == ["acme"]
    assert _hooks(site, "acme") == [hook]  # the subscription, whose secret is known, is kept
