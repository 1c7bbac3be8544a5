"""``grant_type=authorization_code``: client authentication, PKCE, replay, expiry, ``redirect_uri``."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.sandbox.identity.model import CODE_SECONDS
from tests.sandbox.identity.harness import REDIRECT, Harness, pkce_pair


def _error(answer: Any) -> str:
    data = answer.get_json()
    assert set(data) == {"error", "error_description"}, data
    assert answer.headers["Cache-Control"] == "no-store"
    return str(data["error"])


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()).decode()


def test_the_answer_has_pagerdutys_shape(harness: Harness) -> None:
    tokens = harness.tokens(harness.app_for())
    assert set(tokens) == {"access_token", "refresh_token", "id_token", "token_type", "scope", "expires_in"}
    assert tokens["access_token"].startswith("pdus+_0") and tokens["refresh_token"].startswith("pdus+_1")
    assert tokens["token_type"] == "bearer" and tokens["scope"] == "openid write"
    assert tokens["expires_in"] == 30 * 86400


# -- PKCE --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "verifier",
    [
        None,  # missing
        "x" * 43,  # well formed, not the one
        "short",
        "a" * 129,
        "CHALLENGE",  # the challenge itself instead of the verifier
    ],
)
def test_pkce_verifier_missing_or_wrong_is_invalid_grant(harness: Harness, verifier: str | None) -> None:
    app = harness.app_for()
    real, challenge = pkce_pair()
    code = harness.code(app, challenge=challenge)
    sent = challenge if verifier == "CHALLENGE" else verifier
    answer = harness.exchange(app, code, sent)
    assert answer.status_code == 400 and _error(answer) == "invalid_grant"
    # The attempt spent the code: the right verifier cannot follow.
    assert _error(harness.exchange(app, code, real)) == "invalid_grant"


def test_a_verifier_without_a_challenge_is_refused(harness: Harness) -> None:
    app = harness.app_for()
    code = harness.code(app)
    verifier, _ = pkce_pair()
    assert _error(harness.exchange(app, code, verifier)) == "invalid_grant"


def test_a_public_client_needs_no_secret_but_pkce(harness: Harness) -> None:
    app = harness.app_for(confidential=False)
    assert app.client_secret is None
    verifier, challenge = pkce_pair()
    code = harness.code(app, challenge=challenge)
    answer = harness.exchange(app, code, verifier)
    assert answer.status_code == 200


def test_a_public_client_that_sends_a_secret_is_refused(harness: Harness) -> None:
    app = harness.app_for(confidential=False)
    verifier, challenge = pkce_pair()
    code = harness.code(app, challenge=challenge)
    answer = harness.exchange(app, code, verifier, client_secret="guess")
    assert answer.status_code == 401 and _error(answer) == "invalid_client"


# -- replay, expiry, redirect_uri, another app's code ------------------------------------------


def test_a_replayed_code_is_refused_and_revokes_the_first_tokens(harness: Harness) -> None:
    app = harness.app_for()
    verifier, challenge = pkce_pair()
    code = harness.code(app, challenge=challenge)
    first = harness.exchange(app, code, verifier).get_json()
    assert harness.identity.bearer(first["access_token"]) is not None
    replay = harness.exchange(app, code, verifier)
    assert replay.status_code == 400 and _error(replay) == "invalid_grant"
    assert harness.identity.bearer(first["access_token"]) is None
    assert _error(harness.refresh(app, first["refresh_token"])) == "invalid_grant"


@pytest.mark.parametrize("late", [CODE_SECONDS, CODE_SECONDS + 0.001, 3600])
def test_an_expired_code_is_invalid_grant(harness: Harness, late: float) -> None:
    app = harness.app_for()
    verifier, challenge = pkce_pair()
    code = harness.code(app, challenge=challenge)
    harness.clock.advance(late)
    assert _error(harness.exchange(app, code, verifier)) == "invalid_grant"


def test_a_code_just_inside_its_lifetime_works(harness: Harness) -> None:
    app = harness.app_for()
    verifier, challenge = pkce_pair()
    code = harness.code(app, challenge=challenge)
    harness.clock.advance(CODE_SECONDS - 0.001)
    assert harness.exchange(app, code, verifier).status_code == 200


def test_the_code_lifetime_is_configurable(harness: Harness) -> None:
    app = harness.app_for(code_seconds=2)
    verifier, challenge = pkce_pair()
    code = harness.code(app, challenge=challenge)
    harness.clock.advance(2)
    assert _error(harness.exchange(app, code, verifier)) == "invalid_grant"


@pytest.mark.parametrize(
    "redirect_uri",
    [None, "", REDIRECT + "/", REDIRECT + "?x=1", "https://evil.example/cb", REDIRECT.upper(), "OTHER_REGISTERED"],
)
def test_a_redirect_uri_unlike_the_authorize_ones_is_invalid_grant(harness: Harness, redirect_uri: str | None) -> None:
    other = "https://vendor.example/other"
    app = harness.app_for(redirect_urls=[REDIRECT, other])
    verifier, challenge = pkce_pair()
    code = harness.code(app, challenge=challenge)
    form = {
        "grant_type": "authorization_code",
        "client_id": app.client_id,
        "client_secret": app.client_secret or "",
        "code": code,
        "code_verifier": verifier,
    }
    if redirect_uri is not None:
        form["redirect_uri"] = other if redirect_uri == "OTHER_REGISTERED" else redirect_uri
    assert _error(harness.token(form)) == "invalid_grant"


def test_another_apps_code_is_refused_and_stays_usable_by_its_own_app(harness: Harness) -> None:
    victim, attacker = harness.app_for(), harness.app_for(name="Evil Corp")
    verifier, challenge = pkce_pair()
    code = harness.code(victim, challenge=challenge)
    assert _error(harness.exchange(attacker, code, verifier)) == "invalid_grant"
    assert harness.exchange(victim, code, verifier).status_code == 200


# -- client authentication ---------------------------------------------------------------------


def _code_form(harness: Harness) -> tuple[Any, dict[str, str]]:
    app = harness.app_for()
    verifier, challenge = pkce_pair()
    code = harness.code(app, challenge=challenge)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": verifier}
    return app, form


@pytest.mark.parametrize(
    ("credentials", "error", "status"),
    [
        (lambda app: {"client_id": app.client_id}, "invalid_client", 401),  # confidential without its secret
        (lambda app: {"client_id": app.client_id, "client_secret": "wrong"}, "invalid_client", 401),
        (lambda app: {"client_id": app.client_id, "client_secret": app.client_secret[:-1]}, "invalid_client", 401),
        (lambda app: {"client_id": app.client_id, "client_secret": app.client_secret + "x"}, "invalid_client", 401),
        (lambda app: {"client_id": app.client_id, "client_secret": "é" * 10}, "invalid_client", 401),
        (lambda app: {"client_secret": app.client_secret}, "invalid_client", 401),
        (lambda app: {"client_id": "nobody", "client_secret": app.client_secret}, "invalid_client", 401),
        (lambda app: {"client_id": app.client_id.upper(), "client_secret": app.client_secret}, "invalid_client", 401),
    ],
)
def test_bad_client_credentials_in_the_form(harness: Harness, credentials: Any, error: str, status: int) -> None:
    app, form = _code_form(harness)
    answer = harness.token(form | credentials(app))
    assert answer.status_code == status and _error(answer) == error
    assert answer.headers["WWW-Authenticate"].startswith("Basic")


def test_http_basic_client_authentication_works(harness: Harness) -> None:
    app, form = _code_form(harness)
    answer = harness.token(form, headers={"Authorization": _basic(app.client_id, app.client_secret or "")})
    assert answer.status_code == 200


@pytest.mark.parametrize(
    ("header", "extra", "error"),
    [
        (lambda app: _basic(app.client_id, "wrong"), {}, "invalid_client"),
        (lambda app: "Basic !!!notbase64", {}, "invalid_client"),
        (lambda app: "Basic " + base64.b64encode(b"no-colon").decode(), {}, "invalid_client"),
        (lambda app: "Basic " + base64.b64encode(b"\xff\xfe:x").decode(), {}, "invalid_client"),
        (lambda app: "Bearer " + "x" * 20, {}, "invalid_client"),
        (lambda app: "Basic", {}, "invalid_client"),
        (lambda app: _basic(app.client_id, app.client_secret), {"client_id": "another"}, "invalid_client"),
        # Two methods at once (RFC 6749 2.3).
        (lambda app: _basic(app.client_id, app.client_secret), {"client_secret": "x"}, "invalid_request"),
    ],
)
def test_bad_http_basic_credentials(harness: Harness, header: Any, extra: dict[str, str], error: str) -> None:
    app, form = _code_form(harness)
    answer = harness.token(form | extra, headers={"Authorization": header(app)})
    assert _error(answer) == error
    assert answer.status_code == (401 if error == "invalid_client" else 400)


@pytest.mark.parametrize(
    ("grant_type", "error"),
    [
        (None, "invalid_request"),
        ("password", "unsupported_grant_type"),
        ("implicit", "unsupported_grant_type"),
        ("AUTHORIZATION_CODE", "unsupported_grant_type"),
        ("urn:ietf:params:oauth:grant-type:jwt-bearer", "unsupported_grant_type"),
    ],
)
def test_grant_types(harness: Harness, grant_type: str | None, error: str) -> None:
    app = harness.app_for()
    form = {"client_id": app.client_id, "client_secret": app.client_secret or ""}
    if grant_type is not None:
        form["grant_type"] = grant_type
    assert _error(harness.token(form)) == error


def test_a_missing_code_is_invalid_request(harness: Harness) -> None:
    app = harness.app_for()
    form = {"grant_type": "authorization_code", "client_id": app.client_id, "client_secret": app.client_secret or ""}
    assert _error(harness.token(form)) == "invalid_request"


def test_the_scope_parameter_pagerdutys_client_sends_is_ignored(harness: Harness) -> None:
    app, form = _code_form(harness)
    answer = harness.token(
        form | {"client_id": app.client_id, "client_secret": app.client_secret or "", "scope": "read write admin"}
    )
    assert answer.status_code == 200 and answer.get_json()["scope"] == "openid write"


_SHARED = Harness()
_SHARED_APP = _SHARED.app_for()


@given(st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=80))
def test_no_guessed_code_is_ever_accepted(code: str) -> None:
    form = {
        "grant_type": "authorization_code",
        "client_id": _SHARED_APP.client_id,
        "client_secret": _SHARED_APP.client_secret or "",
        "code": code,
        "redirect_uri": REDIRECT,
    }
    answer = _SHARED.token(form)
    assert answer.status_code == 400 and answer.get_json()["error"] in ("invalid_grant", "invalid_request")
