"""``GET/POST /oauth/authorize``: error pages where a redirect would be unsafe, redirects otherwise,
sign-in, consent, scopes, state, and CSRF on the approval form."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.sandbox.identity.harness import REDIRECT, Harness, location_params, parse, pkce_pair


def _params(harness: Harness, **changes: Any) -> dict[str, Any]:
    app = harness.app_for(scopes=["read", "write"])
    params: dict[str, Any] = {
        "client_id": app.client_id,
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "scope": "write",
        "state": "xyz",
    }
    for name, value in changes.items():
        if value is None:
            params.pop(name, None)
        else:
            params[name] = value
    return params


@pytest.mark.parametrize(
    "changes",
    [
        {"client_id": None},
        {"client_id": "no-such-client"},
        {"client_id": "' onmouseover=alert(1)"},
        {"redirect_uri": None},
        {"redirect_uri": "https://evil.example/steal"},
        {"redirect_uri": REDIRECT + "/"},  # exact match, not a prefix
        {"redirect_uri": REDIRECT + "?x=1"},
        {"redirect_uri": REDIRECT.upper()},
        {"redirect_uri": REDIRECT.replace("https", "http")},
        {"redirect_uri": REDIRECT + "#frag"},
        {"redirect_uri": "https://vendor.example@evil.example/pagerduty/oauth/callback"},
    ],
)
def test_unknown_client_or_unregistered_redirect_is_an_error_page(harness: Harness, changes: dict[str, Any]) -> None:
    answer = harness.client().get("/oauth/authorize?" + urlencode(_params(harness, **changes)))
    assert answer.status_code == 400
    assert "Location" not in answer.headers
    assert answer.mimetype == "text/html"
    assert "data-error" in answer.get_data(as_text=True)


@pytest.mark.parametrize("name", ["client_id", "redirect_uri"])
def test_a_repeated_client_id_or_redirect_uri_is_an_error_page(harness: Harness, name: str) -> None:
    params = _params(harness)
    query = urlencode(params) + "&" + urlencode({name: params[name]})
    answer = harness.client().get("/oauth/authorize?" + query)
    assert answer.status_code == 400 and "Location" not in answer.headers


@pytest.mark.parametrize(
    "query",
    ["client_id=%ff", "client_id=a%00", "client_id", "client_id=a&&x=1", "client_id=\u00e9"],
)
def test_a_malformed_query_string_is_an_error_page(harness: Harness, query: str) -> None:
    answer = harness.client().get("/oauth/authorize?" + query)
    assert answer.status_code == 400 and "Location" not in answer.headers


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"response_type": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": "code token"}, "unsupported_response_type"),
        ({"code_challenge_method": "plain", "code_challenge": "a" * 43}, "invalid_request"),
        ({"code_challenge_method": "s256", "code_challenge": "a" * 43}, "invalid_request"),
        ({"code_challenge": "a" * 43}, "invalid_request"),  # method omitted would mean plain
        ({"code_challenge_method": "S256"}, "invalid_request"),
        ({"code_challenge_method": "S256", "code_challenge": "a" * 42}, "invalid_request"),
        ({"code_challenge_method": "S256", "code_challenge": "a" * 42 + "="}, "invalid_request"),
        ({"nonce": "n" * 256}, "invalid_request"),
    ],
)
def test_bad_requests_of_a_known_client_redirect_with_the_error(
    harness: Harness, changes: dict[str, Any], error: str
) -> None:
    answer = harness.client().get("/oauth/authorize?" + urlencode(_params(harness, **changes)))
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith(REDIRECT + "?")
    params = location_params(answer)
    assert params["error"] == error and params["error_description"] and params["state"] == "xyz"
    assert "code" not in params


def test_a_repeated_other_parameter_redirects_with_invalid_request(harness: Harness) -> None:
    query = urlencode(_params(harness)) + "&scope=read"
    params = location_params(harness.client().get("/oauth/authorize?" + query))
    assert params["error"] == "invalid_request" and "scope" in params["error_description"]


def test_an_oversized_state_is_not_echoed(harness: Harness) -> None:
    answer = harness.client().get("/oauth/authorize?" + urlencode(_params(harness, state="s" * 2000)))
    params = location_params(answer)
    assert params["error"] == "invalid_request" and "state" not in params


@pytest.mark.parametrize(("kind", "confidential"), [("scoped", True), ("scoped", False), ("classic", False)])
def test_pkce_is_required_unless_the_client_is_confidential_classic(
    harness: Harness, kind: str, confidential: bool
) -> None:
    app = harness.app_for(kind=kind, confidential=confidential)
    answer = harness.client().get("/oauth/authorize?" + harness.authorize_query(app, scope=None))
    assert location_params(answer)["error"] == "invalid_request"
    _, challenge = pkce_pair()
    answer = harness.client().get("/oauth/authorize?" + harness.authorize_query(app, challenge=challenge, scope=None))
    assert answer.status_code == 200


def test_a_confidential_classic_client_may_leave_out_pkce_and_state(harness: Harness) -> None:
    app = harness.app_for()
    code = harness.code(app, state=None)
    assert harness.exchange(app, code).status_code == 200


def test_signing_in_shows_the_consent_page_and_approval_redirects_with_a_code(harness: Harness) -> None:
    app = harness.app_for()
    client = harness.client()
    first = client.get("/oauth/authorize?" + harness.authorize_query(app))
    page = parse(first.get_data(as_text=True))
    assert harness.alex.id in page.forms[0]["options"] and harness.gina.id in page.forms[0]["options"]
    consent = harness.sign_in(client, harness.authorize_query(app), harness.alex.id)
    text = consent.get_data(as_text=True)
    assert 'data-scope="write"' in text and 'data-scope="openid"' in text and "Acme Monitoring" in text
    answer = harness.decide(client, consent, "approve")
    params = location_params(answer)
    assert set(params) == {"code", "state"} and params["state"] == "st4te"
    assert answer.headers["Cache-Control"] == "no-store"


def test_deny_redirects_with_access_denied_and_the_state(harness: Harness) -> None:
    app = harness.app_for()
    client = harness.client()
    consent = harness.sign_in(client, harness.authorize_query(app), harness.alex.id)
    params = location_params(harness.decide(client, consent, "deny"))
    assert params["error"] == "access_denied" and params["error_description"] and params["state"] == "st4te"
    assert "code" not in params


def test_cancel_on_the_sign_in_page_is_access_denied(harness: Harness) -> None:
    app = harness.app_for()
    client = harness.client()
    form = parse(client.get("/oauth/authorize?" + harness.authorize_query(app)).get_data(as_text=True)).forms[0]
    params = location_params(client.post("/oauth/authorize", data={**form["fields"], "decision": "cancel"}))
    assert params["error"] == "access_denied" and params["state"] == "st4te"


def test_the_redirect_keeps_the_registered_urls_own_query(harness: Harness) -> None:
    app = harness.app_for(redirect_urls=[REDIRECT + "?tenant=7"])
    client = harness.client()
    query = urlencode({"client_id": app.client_id, "redirect_uri": REDIRECT + "?tenant=7", "response_type": "code"})
    consent = harness.sign_in(client, query, harness.alex.id)
    answer = harness.decide(client, consent)
    assert location_params(answer)["tenant"] == "7" and location_params(answer)["code"]


@pytest.mark.parametrize("scope", ["read write", "write", "read", "openid write", ""])
def test_valid_scopes_are_granted_with_openid(harness: Harness, scope: str) -> None:
    app = harness.app_for()
    tokens = harness.tokens(app, scope=scope or None)
    assert set(tokens["scope"].split(" ")) == set(scope.split()) | {"openid"}


@pytest.mark.parametrize(
    "scope",
    ["admin", "Write", "write admin", "write  read", " write", "write\tread", "services.read", "as_account-us.acme"],
)
def test_any_invalid_scope_grants_only_openid(harness: Harness, scope: str) -> None:
    app = harness.app_for()
    client = harness.client()
    consent = harness.sign_in(client, harness.authorize_query(app, scope=scope), harness.alex.id)
    assert 'data-scope="write"' not in consent.get_data(as_text=True)
    assert "data-scopes-dropped" in consent.get_data(as_text=True) or scope.strip() == "write"
    tokens = harness.tokens(app, scope=scope)
    assert tokens["scope"] == "openid"


def test_a_scoped_app_is_private_to_its_account(harness: Harness) -> None:
    app = harness.app_for(kind="scoped", scopes=["services.read"])
    client = harness.client()
    _, challenge = pkce_pair()
    query = harness.authorize_query(app, challenge=challenge, scope="services.read")
    consent = harness.sign_in(client, query, harness.gina.id)  # a globex user
    text = consent.get_data(as_text=True)
    assert "data-refusal" in text and 'value="approve"' not in text
    form = parse(text).forms[0]
    answer = client.post("/oauth/authorize", data={**form["fields"], "decision": "approve"})
    assert answer.status_code == 403 and "Location" not in answer.headers


# -- CSRF on the approval ----------------------------------------------------------------------


def _consent_form(harness: Harness, client: Any, user_id: str | None = None, **query: Any) -> dict[str, str]:
    app = harness.app_for()
    consent = harness.sign_in(client, harness.authorize_query(app, **query), user_id or harness.alex.id)
    fields: dict[str, str] = parse(consent.get_data(as_text=True)).forms[0]["fields"]
    return fields


@pytest.mark.parametrize(
    "tamper",
    [
        lambda f: {k: v for k, v in f.items() if k != "csrf_token"},
        lambda f: {**f, "csrf_token": ""},
        lambda f: {**f, "csrf_token": "forged"},
        lambda f: {**f, "csrf_token": f["csrf_token"][:-2] + "xx"},
        lambda f: {**f, "scope": "read write"},  # the token was for another request
        lambda f: {**f, "state": "another"},
        lambda f: {**f, "code_challenge": "b" * 43, "code_challenge_method": "S256"},
    ],
)
def test_approving_without_the_pages_own_csrf_token_is_refused(harness: Harness, tamper: Any) -> None:
    client = harness.client()
    fields = _consent_form(harness, client)
    answer = client.post("/oauth/authorize", data={**tamper(fields), "decision": "approve"})
    assert answer.status_code == 403 and "Location" not in answer.headers
    assert not harness.identity.core.registry.codes


def test_a_csrf_token_from_another_sign_in_is_refused(harness: Harness) -> None:
    victim, attacker = harness.client(), harness.client()
    victim_fields = _consent_form(harness, victim)
    attacker_fields = _consent_form(harness, attacker, harness.alex.id)  # same user, another sign-in
    forged = {**victim_fields, "csrf_token": attacker_fields["csrf_token"]}
    answer = victim.post("/oauth/authorize", data={**forged, "decision": "approve"})
    assert answer.status_code == 403


def test_approving_while_signed_out_is_refused(harness: Harness) -> None:
    fields = _consent_form(harness, harness.client())
    answer = harness.client().post("/oauth/authorize", data={**fields, "decision": "approve"})
    assert answer.status_code == 401 and "Location" not in answer.headers


def test_an_expired_consent_form_is_refused(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    client = harness.client()
    fields = _consent_form(harness, client)
    import itsdangerous.timed

    real = itsdangerous.timed.TimestampSigner.get_timestamp
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", lambda self: real(self) + 3601)
    answer = client.post("/oauth/authorize", data={**fields, "decision": "approve"})
    assert answer.status_code in (401, 403)


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}],
)
def test_a_cross_site_post_is_refused_even_with_a_valid_token(harness: Harness, headers: dict[str, str]) -> None:
    client = harness.client()
    fields = _consent_form(harness, client)
    answer = client.post("/oauth/authorize", data={**fields, "decision": "approve"}, headers=headers)
    assert answer.status_code == 403 and "Location" not in answer.headers


def test_a_forged_sign_in_cookie_reads_as_signed_out(harness: Harness) -> None:
    app = harness.app_for()
    client = harness.client()
    client.set_cookie("pdsandbox_oauth", json.dumps({"u": harness.alex.id, "n": "x"}), path="/oauth/")
    answer = client.get("/oauth/authorize?" + harness.authorize_query(app))
    assert 'name="user"' in answer.get_data(as_text=True)  # the sign-in page again


def test_sign_in_as_someone_else(harness: Harness) -> None:
    client = harness.client()
    fields = _consent_form(harness, client)
    out = client.post("/oauth/authorize", data={**fields, "decision": "signout"})
    assert out.status_code == 303
    again = client.get(out.headers["Location"])
    assert 'name="user"' in again.get_data(as_text=True)


@pytest.mark.parametrize("user", ["", "PNOSUCH", "<script>"])
def test_signing_in_as_an_unknown_user_is_an_error_page(harness: Harness, user: str) -> None:
    app = harness.app_for()
    client = harness.client()
    form = parse(client.get("/oauth/authorize?" + harness.authorize_query(app)).get_data(as_text=True)).forms[0]
    answer = client.post("/oauth/authorize", data={**form["fields"], "user": user, "decision": "signin"})
    assert answer.status_code == 400 and "Set-Cookie" not in answer.headers


@pytest.mark.parametrize("decision", [None, "", "APPROVE", "grant"])
def test_an_unknown_decision_is_an_error_page(harness: Harness, decision: str | None) -> None:
    client = harness.client()
    fields = _consent_form(harness, client)
    data = {**fields} if decision is None else {**fields, "decision": decision}
    answer = client.post("/oauth/authorize", data=data)
    assert answer.status_code == 400 and "Location" not in answer.headers


def test_post_bodies_that_are_not_forms_are_error_pages(harness: Harness) -> None:
    for body, content_type in [(b"{}", "application/json"), (b"a=\xff", "application/x-www-form-urlencoded")]:
        answer = harness.client().post("/oauth/authorize", data=body, headers={"Content-Type": content_type})
        assert answer.status_code == 400 and answer.mimetype == "text/html"


_SHARED = Harness()
_SHARED_APP = _SHARED.app_for()

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "client_id",
                "redirect_uri",
                "response_type",
                "scope",
                "state",
                "code_challenge",
                "code_challenge_method",
                "nonce",
                "other",
            ]
        ),
        texts,
    ),
    st.booleans(),
)
def test_any_authorize_query_is_a_page_or_a_redirect_to_the_registered_url(params: dict[str, str], ours: bool) -> None:
    if ours:
        params = {**params, "client_id": _SHARED_APP.client_id, "redirect_uri": REDIRECT}
    answer = _SHARED.client().get("/oauth/authorize?" + urlencode(params))
    assert answer.status_code in (200, 302, 400)
    if answer.status_code == 302:
        assert answer.headers["Location"].startswith(REDIRECT + "?")
        assert "code" not in location_params(answer)
