"""Acme Monitoring with per-account OAuth (the demo's default), without a browser.

The OAuth consent is clicked through with the sandbox's ``walk.approve`` and the install flow
with the sandbox client; Acme is driven with Flask's test client. What this file attacks is
Acme's own part: "Check access" (one REST call with the account's token) and the settings
page, which must never show another user's account or any token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import requests
import sqlalchemy as sa
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from example_app.demo import RunningDemo, start_acme
from pdconnect.sandbox.identity import walk
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.example_app.test_app import owner_id, signed_in, token


@pytest.fixture
def acme(pagerduty_sandbox: PagerDutySandbox, tmp_path: Path) -> Iterator[RunningDemo]:
    running = start_acme(
        pagerduty_sandbox.server, database_url=f"sqlite:///{tmp_path / 'acme.db'}", scheduler=False, worker=False
    )
    yield running
    running.stop()
    pagerduty_sandbox.set_faults(spec="")


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def manager_of(sandbox: PagerDutySandbox, account: str) -> str:
    return next(u.id for u in sandbox.sandbox.identity.users(account) if u.role == "manager")


def connect(client: FlaskClient, sandbox: PagerDutySandbox, *, account: str = "acme", services: list[str]) -> None:
    """Acme's Connect button: OAuth (consent as the account's manager), then the install flow."""
    start = client.get("/pagerduty/oauth/start?then=install")
    assert start.status_code == 302, start.get_data(as_text=True)
    callback = walk.approve(sandbox.url, start.headers["Location"], user_id=manager_of(sandbox, account))
    finished = client.get(local(callback))
    assert finished.status_code == 303 and finished.headers["Location"] == "/pagerduty/install"
    install = client.get("/pagerduty/install")
    assert install.status_code == 302
    back = sandbox.install(install.headers["Location"], account=account, services=services)
    assert client.get(local(back)).status_code in (302, 303)


def account_id(client: FlaskClient) -> str:
    found = re.search(r'name="account_id" value="([^"]+)"', client.get("/settings/pagerduty").get_data(as_text=True))
    assert found
    return found.group(1)


def check(client: FlaskClient, account: str) -> tuple[int, str]:
    """Press "Check access" for ``account`` (an id, sent as typed); the status and the next page's text."""
    form = {"pdconnect_csrf": token(client, "/settings/pagerduty")}
    response = client.post(f"/settings/pagerduty/accounts/{quote(account, safe='')}/check", data=form)
    if response.status_code == 308:  # Werkzeug merges the slashes of "a/" (%2F is decoded): the POST goes on
        response = client.post(response.headers["Location"], data=form)
    if response.status_code == 303:
        return 303, client.get(response.headers["Location"]).get_data(as_text=True)
    return response.status_code, response.get_data(as_text=True)


def test_the_demo_runs_oauth_with_no_vendor_wide_rest_key(acme: RunningDemo) -> None:
    config = acme.app.config
    assert not config.get("PDCONNECT_REST_API_TOKEN")
    assert config["PDCONNECT_OAUTH_CLIENT_ID"] == acme.oauth_client_id
    assert config["PDCONNECT_TOKEN_KEYS"]
    assert acme.app.extensions["pdconnect"].connections is not None


def test_connecting_shows_the_account_region_and_scopes_and_never_a_token(
    acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox
) -> None:
    alice = signed_in(acme, "alice")
    connect(alice, pagerduty_sandbox, services=["Checkout API"])
    page = alice.get("/settings/pagerduty").get_data(as_text=True)
    assert 'data-account="acme"' in page and "<td data-region>US</td>" in page
    assert "<code>openid</code> <code>write</code>" in page
    credential = acme.app.extensions["pdconnect"].connections.accounts(owner_id(acme, "alice"))[0]
    secret = acme.app.config["PDCONNECT_OAUTH_CLIENT_SECRET"]
    for text in (
        credential.access_token,
        credential.refresh_token,
        secret,
        *str(acme.app.config["PDCONNECT_TOKEN_KEYS"]).split(","),
    ):
        assert text and text not in page
    status, shown = check(alice, credential.account_id)
    assert status == 303 and "acme answers: Acme can see 2 services." in shown


def test_revoked_access_marks_the_account_and_every_page_asks_to_reconnect(
    acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox
) -> None:
    alice = signed_in(acme, "alice")
    connect(alice, pagerduty_sandbox, services=["Checkout API"])
    revoked = requests.post(
        f"{pagerduty_sandbox.url}/_sandbox/api/oauth/apps/{acme.oauth_client_id}/revoke", timeout=10
    )
    assert revoked.status_code == 200
    assert "data-pdconnect-reconnect" not in alice.get("/").get_data(as_text=True)
    status, shown = check(alice, account_id(alice))
    assert status == 303 and "no longer accepts Acme&#39;s access to acme: reconnect it." in shown
    for path in ("/", "/settings/pagerduty", "/incidents", "/monitors/new"):
        assert "data-pdconnect-reconnect" in alice.get(path).get_data(as_text=True), path
    bob = signed_in(acme, "bob")
    assert "data-pdconnect-reconnect" not in bob.get("/").get_data(as_text=True)


def test_pagerduty_down_is_a_message_not_a_500(acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox) -> None:
    alice = signed_in(acme, "alice")
    connect(alice, pagerduty_sandbox, services=["Checkout API"])
    account = account_id(alice)
    pagerduty_sandbox.set_faults(spec="503=1,target=rest")
    status, shown = check(alice, account)
    assert status == 303 and "PagerDuty did not answer for acme" in shown
    assert "data-pdconnect-reconnect" not in shown  # an outage is not a revocation


# -- Check access, under attack ----------------------------------------------------------------


@pytest.fixture
def two_users(acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox) -> tuple[FlaskClient, FlaskClient, str]:
    """Alice, connected to acme; Bob, connected to nothing; Alice's account id."""
    alice = signed_in(acme, "alice")
    connect(alice, pagerduty_sandbox, services=["Checkout API"])
    return alice, signed_in(acme, "bob"), account_id(alice)


def test_another_users_account_is_not_found_and_untouched(
    two_users: tuple[FlaskClient, FlaskClient, str], acme: RunningDemo
) -> None:
    alice, bob, alices = two_users
    assert check(bob, alices)[0] == 404
    assert "data-account=" not in bob.get("/settings/pagerduty").get_data(as_text=True)
    form = {"pdconnect_csrf": token(bob, "/settings/pagerduty"), "account_id": alices}
    bob.post("/pagerduty/oauth/disconnect", data=form)
    assert 'data-account="acme"' in alice.get("/settings/pagerduty").get_data(as_text=True)


HOSTILE_IDS = [
    "PUNKNOWN",
    "P" * 255,
    "P" * 256,
    "P" * 5000,
    " ",
    "\x00",
    "../../settings",
    "PQIVTHL\n",
    "é",
    "\u202eLTHVIQP",
    "' OR 1=1 --",
    "%00",
    "<script>",
]


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_hostile_account_ids_are_404_never_500(two_users: tuple[FlaskClient, FlaskClient, str], hostile: str) -> None:
    alice, _, _ = two_users
    assert check(alice, hostile)[0] == 404


def test_check_needs_the_form_token_and_a_signed_in_user(two_users: tuple[FlaskClient, FlaskClient, str]) -> None:
    alice, _, alices = two_users
    path = f"/settings/pagerduty/accounts/{alices}/check"
    assert alice.post(path).status_code == 400
    assert alice.post(path, data={"pdconnect_csrf": "forged"}).status_code == 400
    assert alice.get(path).status_code == 405
    anonymous = alice.application.test_client()
    response = anonymous.post(path, data={"pdconnect_csrf": token(anonymous)})
    assert response.status_code == 302 and response.headers["Location"].startswith("/signin")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(min_size=1, max_size=300))
@example("0/")
@example("/")
def test_any_account_id_but_ones_own_is_a_404(two_users: tuple[FlaskClient, FlaskClient, str], typed: str) -> None:
    alice, _, alices = two_users
    status, _ = check(alice, typed)
    # Only her own account is found (typed with a trailing slash, say, once Werkzeug merged the slashes).
    if status == 303:
        assert typed.replace("/", "") == alices
    else:
        assert status == 404


def test_the_credential_rows_hold_no_token_in_clear(acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox) -> None:
    alice = signed_in(acme, "alice")
    connect(alice, pagerduty_sandbox, services=["Checkout API"])
    credential = acme.app.extensions["pdconnect"].connections.accounts(owner_id(acme, "alice"))[0]
    engine: sa.Engine = acme.app.extensions["acme_engine"]
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT * FROM pdconnect_oauth_credentials")).all()
    raw = " ".join(str(value) for row in rows for value in row)
    assert rows and credential.access_token not in raw and str(credential.refresh_token) not in raw


def test_disconnecting_deletes_the_subscription_with_the_accounts_token(
    acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox
) -> None:
    alice = signed_in(acme, "alice")
    connect(alice, pagerduty_sandbox, services=["Checkout API"])
    assert len(pagerduty_sandbox.state()["webhook_subscriptions"]) == 1
    form = {"pdconnect_csrf": token(alice, "/settings/pagerduty"), "account_id": account_id(alice)}
    response = alice.post("/pagerduty/oauth/disconnect", data=form)
    page = alice.get(response.headers["Location"]).get_data(as_text=True)
    assert "Disconnected the PagerDuty account acme." in page and "data-account=" not in page
    assert pagerduty_sandbox.state()["webhook_subscriptions"] == []


def test_disconnecting_a_revoked_account_says_what_is_left_at_pagerduty(
    acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox
) -> None:
    alice = signed_in(acme, "alice")
    connect(alice, pagerduty_sandbox, services=["Checkout API"])
    requests.post(
        f"{pagerduty_sandbox.url}/_sandbox/api/oauth/apps/{acme.oauth_client_id}/revoke", timeout=10
    ).raise_for_status()
    form = {"pdconnect_csrf": token(alice, "/settings/pagerduty"), "account_id": account_id(alice)}
    response = alice.post("/pagerduty/oauth/disconnect", data=form)
    assert response.status_code in (302, 303)
    page = alice.get(response.headers["Location"]).get_data(as_text=True)
    assert "could not be deleted in PagerDuty" in page and "data-account=" not in page
    assert "data-pdconnect-reconnect" not in page  # nothing left to reconnect
    assert len(pagerduty_sandbox.state()["webhook_subscriptions"]) == 1


def test_check_access_under_a_removed_token_key_is_a_message_not_a_500(
    acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox, tmp_path: Path
) -> None:
    alice = signed_in(acme, "alice")
    connect(alice, pagerduty_sandbox, services=["Checkout API"])
    account = account_id(alice)
    # The same database, started again with a new PDCONNECT_TOKEN_KEYS (the old key dropped).
    rekeyed = start_acme(
        pagerduty_sandbox.server, database_url=f"sqlite:///{tmp_path / 'acme.db'}", scheduler=False, worker=False
    )
    try:
        again = signed_in(rekeyed, "alice")
        status, shown = check(again, account)
        assert status == 303 and "Acme cannot read its stored access to this PagerDuty account" in shown
    finally:
        rekeyed.stop()
