"""No token, code, client secret or token key in any log record (at DEBUG), page, repr or error message."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import pytest

from pdconnect.flask import current_pagerduty
from pdconnect.rest.errors import NeedsReauthorization
from tests.flask_oauth.conftest import OAUTH_API, Site, csrf, problem_page


def test_no_secret_anywhere_through_connect_refresh_revoke_and_disconnect(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    browser = site.browser("owner-1")
    pages: list[str] = []
    callback = site.consent(site.start(browser), site.user("acme", "Alex"))
    code = parse_qs(urlsplit(callback).query)["code"][0]
    pages.append(browser.get(callback).get_data(as_text=True))
    pages.append(browser.get("/").get_data(as_text=True))
    (credential,) = site.connections().accounts("owner-1")
    site.sandbox._api("POST", f"{OAUTH_API}/tokens/expire", json={"token": credential.access_token})
    with site.app.app_context(), site.connections().rest_client("owner-1", credential.account_id) as client:
        client.list_services()  # a 401, a refresh, the call again
    (refreshed,) = site.connections().accounts("owner-1")
    site.sandbox._api("POST", f"{OAUTH_API}/apps/{site.client_id}/revoke")
    errors: list[str] = []
    with site.app.app_context(), site.connections().rest_client("owner-1", credential.account_id) as client:
        with pytest.raises(NeedsReauthorization) as caught:
            client.list_services()
        errors.append(str(caught.value))
        errors.append(repr(current_pagerduty()))
        errors.append(repr(current_pagerduty().connections))
        errors.append(repr(current_pagerduty().oauth))
    pages.append(browser.get("/").get_data(as_text=True))
    # The code again, under a fresh state: PagerDuty refuses it; the page must not show it.
    state = parse_qs(urlsplit(site.start(browser)).query)["state"][0]
    replay = browser.get(f"/pagerduty/oauth/callback?code={code}&state={state}")
    pages.append(problem_page(browser, replay).get_data(as_text=True))
    pages.append(
        browser.post(
            "/pagerduty/oauth/disconnect",
            data={"account_id": credential.account_id, "pdconnect_csrf": csrf(browser)},
            follow_redirects=True,
        ).get_data(as_text=True)
    )
    secrets = {
        "access token": credential.access_token,
        "refresh token": str(credential.refresh_token),
        "refreshed access token": refreshed.access_token,
        "refreshed refresh token": str(refreshed.refresh_token),
        "code": code,
        "client secret": str(site.registered["client_secret"]),
        "token key": str(site.app.config["PDCONNECT_TOKEN_KEYS"][0]),
    }
    logged = [record.getMessage() for record in caplog.records] + [str(record.__dict__) for record in caplog.records]
    shown = {"logs": "\n".join(logged), "pages": "\n".join(pages), "errors and reprs": "\n".join(errors)}
    for where, text in shown.items():
        for name, secret in secrets.items():
            assert secret not in text, f"the {name} is in the {where}"
    assert len(caplog.records) > 5  # DEBUG was on and something was logged
