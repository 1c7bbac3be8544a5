"""The Flask extension's per-account OAuth, end to end against the sandbox over loopback.

Each test clicks through the real pages: pdconnect's start route, the sandbox's sign-in and
consent pages, pdconnect's callback; what PagerDuty holds is read back with each account's own
API key, so a subscription made in the wrong account, or with the wrong token, shows.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import sqlalchemy as sa
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect.flask import account_connected, cancelled
from pdconnect.oauth.credentials import Credential
from tests.flask_oauth.conftest import HOOK_URL, Site, csrf, flashes, problem_page


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
        raw = " ".join(
            str(v) for row in conn.execute(sa.text("SELECT * FROM pdconnect_oauth_credentials")) for v in row
        )
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


# -- the state and the code, under attack ------------------------------------------------------


def test_a_callback_in_another_browser_session_is_refused_and_keeps_nothing(site: Site) -> None:
    alex = site.user("acme", "Alex")
    mine, theirs = site.browser("owner-1"), site.browser("owner-1")
    callback = site.consent(site.start(mine), alex)
    page = problem_page(theirs, theirs.get(callback))
    assert page.status_code == 400
    assert "another browser session" in page.get_data(as_text=True)
    assert site.connections().accounts("owner-1") == []


def test_a_callback_for_another_owner_is_refused(site: Site) -> None:
    alex = site.user("acme", "Alex")
    browser = site.browser("owner-1")
    callback = site.consent(site.start(browser), alex)
    browser.get("/login/owner-2")  # same browser session, another user signed in
    page = problem_page(browser, browser.get(callback))
    assert page.status_code == 400
    assert site.connections().accounts("owner-1") == [] and site.connections().accounts("owner-2") == []


def test_a_replayed_callback_is_refused(site: Site) -> None:
    alex = site.user("acme", "Alex")
    browser = site.browser("owner-1")
    callback = site.consent(site.start(browser), alex)
    assert browser.get(callback).status_code == 303
    before = site.connections().accounts("owner-1")[0]
    page = problem_page(browser, browser.get(callback))
    assert page.status_code == 400
    assert "already used" in page.get_data(as_text=True)
    assert site.connections().accounts("owner-1")[0].version == before.version


def test_a_code_replayed_under_a_fresh_state_is_refused_by_pagerduty(site: Site) -> None:
    alex = site.user("acme", "Alex")
    browser = site.browser("owner-1")
    first = site.consent(site.start(browser), alex)
    assert browser.get(first).status_code == 303
    code = parse_qs(urlsplit(first).query)["code"][0]
    fresh_state = parse_qs(urlsplit(site.start(browser)).query)["state"][0]
    page = problem_page(
        browser, browser.get(f"/pagerduty/oauth/callback?{urlencode({'code': code, 'state': fresh_state})}")
    )
    assert page.status_code == 400
    assert "PagerDuty refused the authorization" in page.get_data(as_text=True)


@pytest.mark.parametrize(
    "query",
    [
        "",
        "state=",
        "code=abc",
        "code=abc&state=garbage",
        "code=abc&state=" + "A" * 5000,
        "error=server_error&state=x",
        "code=%ff%fe&state=x",
        "code=a&code=b&state=x",
        "state=%00",
    ],
)
def test_hostile_callbacks_are_4xx_pages_never_500(site: Site, query: str) -> None:
    browser = site.browser("owner-1")
    site.start(browser)
    response = browser.get(f"/pagerduty/oauth/callback?{query}")
    if response.status_code == 303:
        response = browser.get(response.headers["Location"])
    assert 400 <= response.status_code < 500, response.get_data(as_text=True)


def test_the_oauth_routes_need_a_signed_in_owner(site: Site) -> None:
    anonymous = site.app.test_client()
    assert anonymous.get("/pagerduty/oauth/start").status_code == 401
    assert anonymous.get("/pagerduty/oauth/callback?code=a&state=b").status_code == 401
    assert anonymous.post("/pagerduty/oauth/disconnect", data={"account_id": "x"}).status_code == 401


def test_the_identity_host_down_is_a_503(site: Site) -> None:
    alex = site.user("acme", "Alex")
    browser = site.browser("owner-1")
    callback = site.consent(site.start(browser), alex)
    site.sandbox.set_faults(spec="503=1,target=identity")
    page = problem_page(browser, browser.get(callback))
    assert page.status_code == 503


def test_a_subscription_deleted_at_pagerduty_is_made_again_on_reconnect(site: Site) -> None:
    alex = site.user("acme", "Alex")
    browser = site.browser("owner-1")
    site.connect(browser, alex)
    (first,) = [s["id"] for s in site.subscriptions("acme") if s["delivery_method"]["url"] == HOOK_URL]
    assert site.sandbox.rest("DELETE", f"/webhook_subscriptions/{first}", account="acme").status_code == 204
    site.connect(browser, alex)
    (second,) = [s["id"] for s in site.subscriptions("acme") if s["delivery_method"]["url"] == HOOK_URL]
    secrets = site.connections().secrets
    assert second != first and secrets.secrets_for(first) == [] and len(secrets.secrets_for(second)) == 1


def test_a_subscription_whose_secret_was_lost_is_replaced_not_doubled(site: Site) -> None:
    alex = site.user("acme", "Alex")
    browser = site.browser("owner-1")
    site.connect(browser, alex)
    (first,) = [s["id"] for s in site.subscriptions("acme") if s["delivery_method"]["url"] == HOOK_URL]
    site.connections().secrets.remove(first)  # nothing could verify its webhooks any more
    site.connect(browser, alex)
    (second,) = [s["id"] for s in site.subscriptions("acme") if s["delivery_method"]["url"] == HOOK_URL]
    assert second != first and len(site.connections().secrets.secrets_for(second)) == 1


def test_an_observer_connects_but_is_told_incident_updates_need_a_manager(site: Site) -> None:
    olga = site.user("acme", "Olga", role="observer")
    browser = site.browser("owner-1")
    seen: list[dict[str, Any]] = []

    def receiver(sender: Flask, **kwargs: Any) -> None:
        seen.append(kwargs)

    with account_connected.connected_to(receiver, site.app):
        assert site.connect(browser, olga).status_code == 303
    assert seen[0]["subscribed"] is False
    assert any("needs a Manager, Admin or Owner role" in m for m in flashes(browser))
    assert [c.account.subdomain for c in site.connections().accounts("owner-1")] == ["acme"]
    assert site.subscriptions("acme") == []


_QUERY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.dictionaries(st.sampled_from(["code", "state", "error", "error_description", "then", "x"]), _QUERY_TEXT),
    st.binary(max_size=40),
)
def test_any_callback_query_is_an_answer_below_500(site: Site, params: dict[str, str], raw: bytes) -> None:
    browser = site.browser("owner-1")
    for query in (urlencode(params), raw.decode("latin-1")):
        for path in ("/pagerduty/oauth/callback", "/pagerduty/oauth/start"):
            response = browser.get(f"{path}?{query}")
            if response.status_code == 303 and response.headers["Location"] == "/pagerduty/problem":
                response = browser.get("/pagerduty/problem")
            assert response.status_code < 500, (path, query)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(_QUERY_TEXT, st.none()), st.booleans())
def test_any_disconnect_form_is_an_answer_below_500(site: Site, account_id: str | None, as_json: bool) -> None:
    browser = site.browser("owner-1")
    token = csrf(browser)
    body: dict[str, Any] = {} if account_id is None else {"account_id": account_id}
    if as_json:
        response = browser.post("/pagerduty/oauth/disconnect", json=body, headers={"X-PDConnect-CSRF": token})
    else:
        response = browser.post("/pagerduty/oauth/disconnect", data={**body, "pdconnect_csrf": token})
    assert response.status_code < 500


@pytest.mark.parametrize("account_id", ["", "   ", "P\x00X", "P\nX", "A" * 256, "\ud800", 5, ["PACME"], None])
def test_a_disconnect_naming_no_possible_account_is_a_400(site: Site, account_id: Any) -> None:
    browser = site.browser("owner-1")
    response = browser.post(
        "/pagerduty/oauth/disconnect",
        json={"account_id": account_id} if not isinstance(account_id, str) or account_id == "\ud800" else None,
        data=None if not isinstance(account_id, str) or account_id == "\ud800" else {"account_id": account_id},
        headers={"X-PDConnect-CSRF": csrf(browser)},
    )
    assert response.status_code == 400


def test_two_tabs_can_connect_at_once(site: Site) -> None:
    alex = site.user("acme", "Alex")
    site.sandbox.create_account("globex", region="eu")
    gina = site.user("globex", "Gina", role="admin")
    browser = site.browser("owner-1")
    first, second = site.start(browser), site.start(browser)
    assert browser.get(site.consent(second, gina)).status_code == 303
    assert browser.get(site.consent(first, alex)).status_code == 303
    assert sorted(c.account.subdomain for c in site.connections().accounts("owner-1")) == ["acme", "globex"]


def test_a_callback_without_an_echoed_state_is_checked_against_the_session_s(site: Site) -> None:
    alex = site.user("acme", "Alex")
    browser = site.browser("owner-1")
    callback = site.consent(site.start(browser), alex)
    path, _, query = callback.partition("?")
    without_state = urlencode([(k, v) for k, values in parse_qs(query).items() for v in values if k != "state"])
    assert browser.get(f"{path}?{without_state}").status_code == 303
    assert len(site.connections().accounts("owner-1")) == 1
    # Now the session holds no state: the same again is refused, not taken on trust.
    page = problem_page(browser, browser.get(f"{path}?{without_state}"))
    assert page.status_code == 400
