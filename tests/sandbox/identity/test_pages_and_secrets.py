"""The consent and sign-in pages escape what app authors and users wrote, and no secret
(client secret, token, code, signing key) shows up in a repr, an error, a page or a log line."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.sandbox.identity.errors import ControlError
from tests.sandbox.identity.harness import Harness, location_params, parse, pkce_pair

HOSTILE_NAMES = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "' onmouseover='alert(1)",
    "</title><script>alert(1)</script>",
    "<svg/onload=alert(1)>",
    "&lt;script&gt;",
    "{{7*7}}",
]


def _unsafe(html: str) -> list[Any]:
    """Script elements, event-handler attributes and javascript: links a parser finds on a page."""
    page = parse(html)
    found: list[Any] = [tag for tag, _ in page.tags if tag in ("script", "img", "svg", "iframe")]
    for tag, attributes in page.tags:
        for name, value in attributes.items():
            if name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                found.append((tag, name))
    return found


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_an_app_name_is_text_on_the_sign_in_and_consent_pages(harness: Harness, name: str) -> None:
    app = harness.app_for(name=name)
    client = harness.client()
    signin = client.get("/oauth/authorize?" + harness.authorize_query(app)).get_data(as_text=True)
    consent = harness.sign_in(client, harness.authorize_query(app), harness.alex.id).get_data(as_text=True)
    for html in (signin, consent):
        assert _unsafe(html) == []
        assert name in "".join(parse(html).text)  # shown, as text


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_user_name_is_text_too(harness: Harness, name: str) -> None:
    user = harness.identity.add_user("acme", name=name, email="x@acme.example", role="admin")
    app = harness.app_for()
    client = harness.client()
    signin = client.get("/oauth/authorize?" + harness.authorize_query(app)).get_data(as_text=True)
    consent = harness.sign_in(client, harness.authorize_query(app), user.id).get_data(as_text=True)
    assert _unsafe(signin) == [] and _unsafe(consent) == []


@pytest.mark.parametrize("state", ['"><script>alert(1)</script>', "' autofocus onfocus='alert(1)"])
def test_a_hostile_state_is_carried_as_a_value_and_echoed_exactly(harness: Harness, state: str) -> None:
    app = harness.app_for()
    client = harness.client()
    consent = harness.sign_in(client, harness.authorize_query(app, state=state), harness.alex.id)
    assert _unsafe(consent.get_data(as_text=True)) == []
    assert location_params(harness.decide(client, consent))["state"] == state


@pytest.mark.parametrize("scope", ["<script>alert(1)</script>", 'write "><b>x'])
def test_a_hostile_scope_is_escaped_on_the_consent_page(harness: Harness, scope: str) -> None:
    app = harness.app_for()
    consent = harness.sign_in(harness.client(), harness.authorize_query(app, scope=scope), harness.alex.id)
    assert _unsafe(consent.get_data(as_text=True)) == []


_SHARED = Harness()


@given(st.text(st.characters(exclude_categories=("Cs", "Cc", "Cf", "Zl", "Zp", "Co", "Cn")), min_size=1, max_size=60))
def test_no_app_name_makes_markup(name: str) -> None:
    try:
        app = _SHARED.app_for(name=name)
    except ControlError:
        return  # a name registration refuses (blank, invisible characters) never reaches a page
    client = _SHARED.client()
    html = client.get("/oauth/authorize?" + _SHARED.authorize_query(app)).get_data(as_text=True)
    assert _unsafe(html) == []
    assert name.strip() in "".join(parse(html).text)


# -- secrets ------------------------------------------------------------------------------------


def test_secrets_never_leave_in_reprs_errors_or_logs(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app = harness.app_for()
    secret = app.client_secret or ""
    verifier, challenge = pkce_pair()
    code = harness.code(app, challenge=challenge)
    tokens = harness.exchange(app, code, verifier).get_json()
    secrets = [secret, code, verifier, tokens["access_token"], tokens["refresh_token"]]
    registry = harness.identity.core.registry
    reprs = [repr(app), repr(harness.identity), repr(harness.identity.core.keys._keys)]
    reprs += [repr(t) for t in registry.tokens.values()] + [repr(c) for c in registry.codes.values()]
    errors = [
        harness.exchange(app, code, verifier).get_data(as_text=True),  # replay
        harness.refresh(app, tokens["access_token"]).get_data(as_text=True),
        harness.token(
            {
                "grant_type": "refresh_token",
                "client_id": app.client_id,
                "client_secret": secret + "x",
                "refresh_token": tokens["refresh_token"],
            }
        ).get_data(as_text=True),
        harness.client().get(f"/_sandbox/api/oauth/apps/{app.client_id}").get_data(as_text=True),
        harness.client().get("/_sandbox/api/oauth/apps").get_data(as_text=True),
        harness.client().get("/global/oauth/anonymous/jwks").get_data(as_text=True),
    ]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for value in secrets:
        assert value, "a secret is empty"
        for text in [*reprs, *errors, logged]:
            assert value not in text


def test_the_private_key_is_never_published(harness: Harness) -> None:
    keys = harness.client().get("/global/oauth/anonymous/jwks").get_json()["keys"]
    assert all(set(k) == {"kty", "use", "alg", "kid", "n", "e"} for k in keys)
