"""The identity server inside the real sandbox, over loopback HTTP: a user of an account approves
an app on the consent page, the code becomes tokens, the ID token verifies against the sandbox's
JWKS with the account's regional REST base, and the access token works on that account's REST
API only, until the app's tokens are revoked."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests

from tests.sandbox.identity.harness import REDIRECT, parse, pkce_pair

REST_ACCEPT = {"Accept": "application/vnd.pagerduty+json;version=2"}


class Browser:
    """A browser's session with the sandbox: follows nothing by itself."""

    def __init__(self, base: str, *, verify: str | bool = True) -> None:
        self.base = base
        self.verify = verify  # per request: requests lets REQUESTS_CA_BUNDLE override a session's
        self.session = requests.Session()

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.base + path, allow_redirects=False, timeout=10, verify=self.verify)

    def post(self, path: str, data: dict[str, Any]) -> requests.Response:
        return self.session.post(self.base + path, data=data, allow_redirects=False, timeout=10, verify=self.verify)

    def approve(self, query: str, user_id: str, decision: str = "approve") -> dict[str, str]:
        """Sign in as ``user_id``, decide; the callback's query parameters."""
        page = self.get(f"/oauth/authorize?{query}")
        assert page.status_code == 200, page.text
        form = parse(page.text).forms[0]
        signed = self.post("/oauth/authorize", {**form["fields"], "user": user_id, "decision": "signin"})
        assert signed.status_code == 303, signed.text
        consent = self.get(signed.headers["Location"])
        assert consent.status_code == 200, consent.text
        fields = parse(consent.text).forms[0]["fields"]
        answer = self.post("/oauth/authorize", {**fields, "decision": decision})
        assert answer.status_code == 302, answer.text
        location = answer.headers["Location"]
        assert location.startswith(REDIRECT + "?")
        return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@pytest.fixture
def base(pagerduty_sandbox: Any) -> str:
    url: str = pagerduty_sandbox.url
    return url


def _control(base: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = requests.post(f"{base}/_sandbox/api{path}", json=body, timeout=10)
    assert answer.status_code in (200, 201), answer.text
    data: dict[str, Any] = answer.json()
    return data


def _app(base: str, account: str = "acme", **options: Any) -> dict[str, Any]:
    body = {"account": account, "name": "Acme Monitoring", "redirect_urls": [REDIRECT], **options}
    app: dict[str, Any] = _control(base, "/oauth/apps", body)["app"]
    return app


def _user(base: str, account: str, role: str) -> str:
    body = {"account": account, "name": f"A {role}", "email": f"{role}@{account}.example", "role": role}
    user_id: str = _control(base, "/oauth/users", body)["user"]["id"]
    return user_id


def _tokens(base: str, app: dict[str, Any], user_id: str, scope: str = "read") -> dict[str, Any]:
    verifier, challenge = pkce_pair()
    query = urlencode(
        {
            "client_id": app["client_id"],
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": scope,
            "state": "s1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    params = Browser(base).approve(query, user_id)
    assert params["state"] == "s1"
    answer = requests.post(
        f"{base}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "client_id": app["client_id"],
            "client_secret": app["client_secret"],
            "code": params["code"],
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


def _claims(base: str, token: str, client_id: str) -> dict[str, Any]:
    discovery = requests.get(f"{base}/global/oauth/anonymous/.well-known/openid-configuration", timeout=10).json()
    assert discovery["jwks_uri"] == f"{base}/global/oauth/anonymous/jwks"
    client = jwt.PyJWKClient(discovery["jwks_uri"])
    key = client.get_signing_key_from_jwt(token).key
    claims: dict[str, Any] = jwt.decode(
        token, key, algorithms=["RS256"], audience=client_id, issuer=discovery["issuer"]
    )
    return claims


def test_a_us_account_connects_and_its_token_reaches_its_rest_api(base: str) -> None:
    app = _app(base)
    tokens = _tokens(base, app, _user(base, "acme", "manager"))
    claims = _claims(base, tokens["id_token"], app["client_id"])
    assert claims["aud"] == [base, app["client_id"]] and claims["subdomain"] == "acme"
    bearer = {"Authorization": f"Bearer {tokens['access_token']}", **REST_ACCEPT}
    services = requests.get(f"{base}/services", headers=bearer, timeout=10)
    assert services.status_code == 200, services.text
    assert services.json()["services"], "acme's seeded services"
    # The US token is not an EU token.
    assert requests.get(f"{base}/eu/services", headers=bearer, timeout=10).status_code == 401


def test_an_eu_account_gets_the_eu_rest_base_in_its_id_token(base: str) -> None:
    _control(base, "/accounts", {"subdomain": "globex", "region": "eu"})
    app = _app(base)
    tokens = _tokens(base, app, _user(base, "globex", "admin"))
    claims = _claims(base, tokens["id_token"], app["client_id"])
    assert claims["aud"] == [f"{base}/eu", app["client_id"]]
    assert claims["subdomain"] == "globex" and claims["region"] == "EuropeanUnion"
    bearer = {"Authorization": f"Bearer {tokens['access_token']}", **REST_ACCEPT}
    assert requests.get(f"{base}/eu/services", headers=bearer, timeout=10).status_code == 200
    assert requests.get(f"{base}/services", headers=bearer, timeout=10).status_code == 401


def test_revoking_the_apps_tokens_ends_rest_access(base: str) -> None:
    app = _app(base)
    tokens = _tokens(base, app, _user(base, "acme", "manager"))
    bearer = {"Authorization": f"Bearer {tokens['access_token']}", **REST_ACCEPT}
    assert requests.get(f"{base}/services", headers=bearer, timeout=10).status_code == 200
    assert _control(base, f"/oauth/apps/{app['client_id']}/revoke", {}) == {"revoked": 1}
    assert requests.get(f"{base}/services", headers=bearer, timeout=10).status_code == 401
    refresh = requests.post(
        f"{base}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": app["client_id"],
            "client_secret": app["client_secret"],
            "refresh_token": tokens["refresh_token"],
        },
        timeout=10,
    )
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"


def test_an_observer_cannot_change_webhook_subscriptions(base: str) -> None:
    app = _app(base)
    tokens = _tokens(base, app, _user(base, "acme", "observer"), scope="write")
    bearer = {"Authorization": f"Bearer {tokens['access_token']}", **REST_ACCEPT}
    body = {
        "webhook_subscription": {
            "type": "webhook_subscription",
            "delivery_method": {"type": "http_delivery_method", "url": "http://127.0.0.1:9/hook"},
            "events": ["incident.triggered"],
            "filter": {"type": "account_reference"},
        }
    }
    answer = requests.post(f"{base}/webhook_subscriptions", json=body, headers=bearer, timeout=10)
    assert answer.status_code == 403, answer.text


def test_the_token_endpoint_answers_a_server_in_rfc6749_json(base: str) -> None:
    # Servers send no Origin: the sandbox's cross-site check lets them reach the token endpoint.
    answer = requests.post(f"{base}/oauth/token", data={"grant_type": "client_credentials"}, timeout=10)
    assert answer.status_code == 401 and answer.json()["error"] == "invalid_client"


def test_a_reset_forgets_the_identity_state(base: str) -> None:
    app = _app(base)
    requests.post(f"{base}/_sandbox/api/reset", json={}, timeout=10)
    listed = requests.get(f"{base}/_sandbox/api/oauth/apps", timeout=10).json()["apps"]
    assert app["client_id"] not in [a["client_id"] for a in listed]
