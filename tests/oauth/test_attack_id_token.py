"""Forged and broken ID tokens: each test fails if the client believes one."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from pdconnect.oauth import IdTokenInvalid, JwksUnavailable, MissingScopes, PagerDutyOAuth
from tests.conftest import FakeClock
from tests.oauth.fake_identity import CLIENT_ID, FakeIdentity, rsa_key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(signature)}"


def _rs256(claims: dict[str, Any]) -> str:
    """Signed as PagerDuty would, but without PyJWT's checks of the claims: a hostile issuer's token."""
    return jwt.api_jws.PyJWS().encode(
        json.dumps(claims).encode(), rsa_key(0), algorithm="RS256", headers={"kid": "key-1"}
    )


def _hs256_with_public_key(claims: dict[str, Any]) -> str:
    # The classic confusion: HMAC keyed with the RSA public key, which anybody can fetch.
    pem = (
        rsa_key(0)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": "key-1"}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


FORGERIES: list[Any] = [
    pytest.param(
        lambda c: jwt.encode(c, rsa_key(1), algorithm="RS256", headers={"kid": "key-1"}), "signature", id="wrong-key"
    ),
    pytest.param(lambda c: _unsigned({"alg": "none", "kid": "key-1"}, c), "RS256", id="alg-none"),
    pytest.param(lambda c: _unsigned({"alg": "None", "kid": "key-1"}, c), "RS256", id="alg-None"),
    pytest.param(lambda c: _unsigned({"kid": "key-1"}, c), "RS256", id="no-alg"),
    pytest.param(_hs256_with_public_key, "RS256", id="hs256-with-public-key"),
    pytest.param(lambda c: jwt.encode(c, rsa_key(0), algorithm="RS512", headers={"kid": "key-1"}), "RS256", id="rs512"),
    pytest.param(lambda c: jwt.encode(c, rsa_key(0), algorithm="PS256", headers={"kid": "key-1"}), "RS256", id="ps256"),
    pytest.param(
        lambda c: jwt.encode(c, rsa_key(0), algorithm="RS256", headers={"kid": "key-1"})[:-4] + "AAAA",
        "signature",
        id="altered-signature",
    ),
    pytest.param(
        lambda c: (
            lambda t: (
                t.split(".")[0] + "." + _b64(json.dumps(c | {"subdomain": "evil"}).encode()) + "." + t.split(".")[2]
            )
        )(jwt.encode(c, rsa_key(0), algorithm="RS256", headers={"kid": "key-1"})),
        "signature",
        id="altered-claims",
    ),
    pytest.param(lambda c: _unsigned({"alg": "RS256", "kid": 7}, c, b"sig"), "key id|JWT", id="kid-not-string"),
    pytest.param(lambda c: "not.a.jwt", "JWT", id="garbage"),
]


@pytest.mark.parametrize(("forge", "reason"), FORGERIES)
def test_a_forged_id_token_is_refused(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, forge: Callable[[dict[str, Any]], str], reason: str
) -> None:
    identity.id_token_override = forge
    start = oauth.authorize(owner_id="u", session_binding=binding)
    with pytest.raises(IdTokenInvalid, match=reason):
        oauth.finish(identity.approve(start.url), owner_id="u", session_binding=binding)


BAD_CLAIMS: list[Any] = [
    pytest.param({"iss": "https://evil.example/global/oauth/anonymous"}, "issuer", id="wrong-issuer"),
    pytest.param(
        {"iss": "https://identity.pagerduty.com/global/oauth/anonymous/"}, "issuer", id="issuer-trailing-slash"
    ),
    pytest.param(
        {"iss": ["https://identity.pagerduty.com/global/oauth/anonymous"]}, "issuer|decoded", id="issuer-list"
    ),
    pytest.param({"aud": ["https://api.pagerduty.com", "another-client"]}, "audience", id="wrong-audience"),
    pytest.param({"aud": "https://api.pagerduty.com"}, "audience", id="audience-without-client-id"),
    pytest.param({"aud": [CLIENT_ID]}, "REST base", id="audience-without-rest-base"),
    pytest.param({"aud": ["https://api.evil.example", CLIENT_ID]}, "REST base", id="audience-unknown-rest-base"),
    pytest.param(
        {"aud": ["https://api.pagerduty.com.evil.example", CLIENT_ID]}, "REST base", id="audience-suffixed-host"
    ),
    pytest.param({"aud": ["https://api.pagerduty.com@evil.example", CLIENT_ID]}, "REST base", id="audience-userinfo"),
    pytest.param({"aud": ["http://api.pagerduty.com", CLIENT_ID]}, "REST base", id="audience-http"),
    pytest.param({"aud": ["https://api.pagerduty.com/v2", CLIENT_ID]}, "REST base", id="audience-with-path"),
    pytest.param(
        {"aud": ["https://api.pagerduty.com", "https://api.eu.pagerduty.com", CLIENT_ID]},
        "more than one",
        id="two-regions",
    ),
    pytest.param({"aud": [5, CLIENT_ID]}, "audience", id="audience-not-strings"),
    pytest.param({"exp": 1_800_000_000 - 61}, "expired", id="expired"),
    pytest.param({"iat": 1_800_000_000 + 3600}, "future", id="issued-in-the-future"),
    pytest.param({"exp": "tomorrow"}, "exp|decoded", id="exp-not-a-number"),
    pytest.param({"iat": True}, "iat|decoded", id="iat-boolean"),
    pytest.param({"exp": 10**400}, "exp|decoded", id="exp-beyond-a-float"),
    pytest.param({"iat": -(10**400)}, "iat|decoded", id="iat-beyond-a-float"),
    pytest.param({"exp": 1e308 * 10}, "exp|decoded", id="exp-infinity"),
    pytest.param({"subdomain": "evil.example"}, "subdomain", id="subdomain-with-dot"),
    pytest.param({"subdomain": "ACME"}, "subdomain", id="subdomain-uppercase"),
    pytest.param({"subdomain": ""}, "subdomain", id="subdomain-empty"),
    pytest.param({"account_id": 12345}, "account_id", id="account-id-number"),
    pytest.param({"account_id": "P1 2"}, "account_id", id="account-id-space"),
    pytest.param({"user_id": "P" * 300}, "user_id", id="user-id-huge"),
    pytest.param({"delegation_id": ["x"]}, "delegation_id", id="delegation-id-list"),
    *(
        pytest.param({claim: None}, claim, id=f"missing-{claim}")
        for claim in ("iss", "aud", "exp", "iat", "subdomain", "account_id", "user_id", "delegation_id")
    ),
]


@pytest.mark.parametrize(("changes", "reason"), BAD_CLAIMS)
def test_an_id_token_with_bad_claims_is_refused(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, changes: dict[str, Any], reason: str
) -> None:
    identity.id_token_override = lambda claims: _rs256(identity.claims(**changes))
    start = oauth.authorize(owner_id="u", session_binding=binding)
    with pytest.raises(IdTokenInvalid, match=reason):
        oauth.finish(identity.approve(start.url), owner_id="u", session_binding=binding)


def test_expiry_has_a_minute_of_leeway(oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str) -> None:
    identity.id_token_override = lambda claims: jwt.encode(
        identity.claims(exp=1_800_000_000 - 30, iat=1_800_000_000 + 30),
        rsa_key(0),
        algorithm="RS256",
        headers={"kid": "key-1"},
    )
    start = oauth.authorize(owner_id="u", session_binding=binding)
    assert oauth.finish(identity.approve(start.url), owner_id="u", session_binding=binding).account.subdomain == "acme"


def test_the_second_documented_issuer_is_accepted(oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str) -> None:
    identity.id_token_override = lambda claims: jwt.encode(
        identity.claims(iss="https://app.pagerduty.com/global/oauth/anonymous"),
        rsa_key(0),
        algorithm="RS256",
        headers={"kid": "key-1"},
    )
    start = oauth.authorize(owner_id="u", session_binding=binding)
    assert oauth.finish(identity.approve(start.url), owner_id="u", session_binding=binding).account.region == "us"


def test_an_answer_without_id_token_is_missing_openid(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str
) -> None:
    start = oauth.authorize(owner_id="u", session_binding=binding)
    callback = identity.approve(start.url, scopes="write")
    with pytest.raises(MissingScopes) as caught:
        oauth.finish(callback, owner_id="u", session_binding=binding)
    assert caught.value.missing == frozenset({"openid"})


def test_a_jwks_that_cannot_be_fetched_is_its_own_error(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, clock: FakeClock
) -> None:
    identity.jwks_override = lambda: (503, {}, b"down")
    start = oauth.authorize(owner_id="u", session_binding=binding)
    with pytest.raises(JwksUnavailable):
        oauth.finish(identity.approve(start.url), owner_id="u", session_binding=binding)


def test_openid_granted_without_an_id_token_is_refused(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str
) -> None:
    start = oauth.authorize(owner_id="u", session_binding=binding)
    callback = identity.approve(start.url)
    real = identity._answer

    def without_id_token(scopes: str, *, with_id_token: bool) -> dict[str, Any]:
        return real(scopes, with_id_token=False)

    identity._answer = without_id_token  # type: ignore[method-assign]
    with pytest.raises(IdTokenInvalid, match="no ID token"):
        oauth.finish(callback, owner_id="u", session_binding=binding)
