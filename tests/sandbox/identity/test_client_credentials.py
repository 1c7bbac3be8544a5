"""``grant_type=client_credentials``: Scoped apps only, and only on the account that registered them."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.sandbox.identity.harness import Harness


def _app_token(harness: Harness, app: Any, scope: str | None) -> Any:
    form = {"grant_type": "client_credentials", "client_id": app.client_id, "client_secret": app.client_secret or ""}
    if scope is not None:
        form["scope"] = scope
    return harness.token(form)


def test_a_scoped_app_gets_an_app_token_for_its_own_account(harness: Harness) -> None:
    app = harness.app_for(kind="scoped", scopes=["services.read", "incidents.read"])
    answer = _app_token(harness, app, "as_account-us.acme services.read")
    assert answer.status_code == 200
    data = answer.get_json()
    assert set(data) == {"access_token", "token_type", "scope", "expires_in"}  # no refresh, no ID token
    assert data["expires_in"] == 86400 and data["token_type"] == "bearer"
    grant = harness.identity.bearer(data["access_token"])
    assert grant is not None and grant.user_id is None and grant.role is None and grant.kind == "scoped"
    assert grant.account_id == "acme" and grant.scopes == {"as_account-us.acme", "services.read"}
    harness.clock.advance(86400)
    assert harness.identity.bearer(data["access_token"]) is None


def test_an_eu_account_names_its_region(harness: Harness) -> None:
    app = harness.app_for("globex", kind="scoped")
    assert _app_token(harness, app, "as_account-eu.globex services.read").status_code == 200
    assert _app_token(harness, app, "as_account-us.globex services.read").get_json()["error"] == "invalid_scope"


@pytest.mark.parametrize(
    "scope",
    [
        None,
        "services.read",  # no account named
        "as_account-us.initech services.read",  # another account: UNCONFIRMED error, invalid_scope chosen
        "as_account-eu.acme services.read",  # the right subdomain in the wrong region
        "as_account-us.ACME services.read",
        "as_account-us.acme as_account-us.initech",
        "as_account-us.acme as_account-us.acme",
        "as_account-xx.acme",
        "as_account-us.acme users.write",  # not registered for it
        "as_account-us.acme write",
        "as_account-us.acme  services.read",
        "as_account-us.acme\tservices.read",
    ],
)
def test_bad_app_token_scopes_are_invalid_scope(harness: Harness, scope: str | None) -> None:
    app = harness.app_for(kind="scoped", scopes=["services.read"])
    answer = _app_token(harness, app, scope)
    if scope is not None and "\t" in scope:
        assert answer.get_json()["error"] == "invalid_request"  # control character in the form
        return
    assert answer.status_code == 400 and answer.get_json()["error"] == "invalid_scope"


def test_a_classic_app_gets_no_app_token(harness: Harness) -> None:
    app = harness.app_for()
    assert _app_token(harness, app, "as_account-us.acme read").get_json()["error"] == "unauthorized_client"


def test_a_public_scoped_client_gets_no_app_token(harness: Harness) -> None:
    app = harness.app_for(kind="scoped", confidential=False)
    assert _app_token(harness, app, "as_account-us.acme services.read").get_json()["error"] == "unauthorized_client"


def test_the_app_token_lifetime_is_configurable_and_revocable(harness: Harness) -> None:
    app = harness.app_for(kind="scoped", app_token_seconds=5)
    data = _app_token(harness, app, "as_account-us.acme services.read").get_json()
    assert data["expires_in"] == 5
    harness.client().post(f"/_sandbox/api/oauth/apps/{app.client_id}/revoke")
    assert harness.identity.bearer(data["access_token"]) is None


_SHARED = Harness()
_SHARED_APP = _SHARED.app_for(kind="scoped", scopes=["services.read"])


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80))
def test_no_scope_text_reaches_another_account(scope: str) -> None:
    answer = _app_token(_SHARED, _SHARED_APP, scope)
    if answer.status_code == 200:
        grant = _SHARED.identity.bearer(answer.get_json()["access_token"])
        assert grant is not None and grant.account_id == "acme"
        assert grant.scopes <= {"as_account-us.acme", "services.read", "openid"}
    else:
        assert answer.get_json()["error"] in ("invalid_scope", "invalid_request")
