"""The ID token: RS256, verifiable with the JWKS through PyJWT, with every claim PagerDuty documents;
key rotation; the issuer setting; the discovery document."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from pdconnect.sandbox.identity.core import DEFAULT_ISSUER, SAMPLE_ISSUER, account_id_claim
from tests.sandbox.identity.harness import BASE, Harness


def _jwks(harness: Harness) -> dict[str, Any]:
    answer = harness.client().get("/global/oauth/anonymous/jwks")
    assert answer.status_code == 200
    data: dict[str, Any] = answer.get_json()
    return data


def _verify(harness: Harness, token: str, client_id: str, *, issuer: str = DEFAULT_ISSUER) -> dict[str, Any]:
    kid = jwt.get_unverified_header(token)["kid"]
    keys = {k["kid"]: k for k in _jwks(harness)["keys"]}
    key = jwt.PyJWK(keys[kid]).key
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=client_id,
        issuer=issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub"]},
    )
    return claims


def test_the_id_token_verifies_and_carries_every_claim(harness: Harness) -> None:
    app = harness.app_for(access_token_seconds=600)
    tokens = harness.tokens(app)
    header = jwt.get_unverified_header(tokens["id_token"])
    assert header["alg"] == "RS256" and header["kid"] == _jwks(harness)["keys"][0]["kid"]
    claims = _verify(harness, tokens["id_token"], app.client_id)
    assert claims["aud"] == [BASE, app.client_id]
    assert claims["sub"] == claims["user_id"] == harness.alex.id
    assert claims["subdomain"] == "acme" and claims["account_id"] == account_id_claim("acme")
    assert claims["region"] == "UnitedStates" and claims["delegation_id"].startswith("P")
    assert claims["iat"] == int(harness.clock.now) and claims["exp"] == int(harness.clock.now) + 600


def test_an_eu_accounts_token_names_the_eu_rest_base(harness: Harness) -> None:
    app = harness.app_for()
    tokens = harness.tokens(app, user_id=harness.gina.id)
    claims = _verify(harness, tokens["id_token"], app.client_id)
    assert claims["aud"] == [BASE + "/eu", app.client_id]
    assert claims["subdomain"] == "globex" and claims["region"] == "EuropeanUnion"


def test_the_delegation_id_is_stable_across_refreshes_and_new_per_authorization(harness: Harness) -> None:
    app = harness.app_for()
    first = harness.tokens(app)
    refreshed = harness.refresh(app, first["refresh_token"]).get_json()
    again = harness.tokens(app)
    one = _verify(harness, first["id_token"], app.client_id)["delegation_id"]
    assert _verify(harness, refreshed["id_token"], app.client_id)["delegation_id"] == one
    assert _verify(harness, again["id_token"], app.client_id)["delegation_id"] != one


def test_the_nonce_is_echoed_when_sent(harness: Harness) -> None:
    app = harness.app_for()
    client = harness.client()
    consent = harness.sign_in(client, harness.authorize_query(app) + "&nonce=n-0S6_WzA2Mj", harness.alex.id)
    from tests.sandbox.identity.harness import location_params

    code = location_params(harness.decide(client, consent))["code"]
    claims = _verify(harness, harness.exchange(app, code).get_json()["id_token"], app.client_id)
    assert claims["nonce"] == "n-0S6_WzA2Mj"


def test_rotation_signs_with_the_new_key_and_keeps_the_old_one_published(harness: Harness) -> None:
    app = harness.app_for()
    before = harness.tokens(app)
    old_kid = jwt.get_unverified_header(before["id_token"])["kid"]
    rotated = harness.client().post("/_sandbox/api/oauth/keys/rotate").get_json()
    assert rotated["current"] != old_kid and rotated["kids"] == [rotated["current"], old_kid]
    after = harness.tokens(app)
    assert jwt.get_unverified_header(after["id_token"])["kid"] == rotated["current"]
    _verify(harness, before["id_token"], app.client_id)
    _verify(harness, after["id_token"], app.client_id)
    retired = harness.client().delete(f"/_sandbox/api/oauth/keys/{old_kid}")
    assert retired.status_code == 200 and old_kid not in [k["kid"] for k in _jwks(harness)["keys"]]
    assert harness.client().delete(f"/_sandbox/api/oauth/keys/{rotated['current']}").status_code == 404


def test_the_jwks_keeps_at_most_three_keys(harness: Harness) -> None:
    for _ in range(4):
        harness.client().post("/_sandbox/api/oauth/keys/rotate")
    keys = _jwks(harness)["keys"]
    assert len(keys) == 3 and all(k["kty"] == "RSA" and k["alg"] == "RS256" and k["use"] == "sig" for k in keys)
    assert all("d" not in k and "p" not in k for k in keys)  # public halves only


def test_the_key_is_2048_bit_rsa(harness: Harness) -> None:
    key = jwt.PyJWK(_jwks(harness)["keys"][0]).key
    assert key.key_size == 2048


@pytest.mark.parametrize("issuer", [SAMPLE_ISSUER, DEFAULT_ISSUER, "https://issuer.example/x"])
def test_the_issuer_can_be_set(harness: Harness, issuer: str) -> None:
    answer = harness.client().put("/_sandbox/api/oauth/settings", json={"issuer": issuer})
    assert answer.status_code == 200 and answer.get_json() == {"issuer": issuer}
    app = harness.app_for()
    claims = _verify(harness, harness.tokens(app)["id_token"], app.client_id, issuer=issuer)
    assert claims["iss"] == issuer
    discovery = harness.client().get("/global/oauth/anonymous/.well-known/openid-configuration").get_json()
    assert discovery["issuer"] == issuer


@pytest.mark.parametrize("issuer", ["", "javascript:alert(1)", "/relative", 42, None, "https://a b"])
def test_a_bad_issuer_is_refused(harness: Harness, issuer: Any) -> None:
    answer = harness.client().put("/_sandbox/api/oauth/settings", json={"issuer": issuer})
    assert answer.status_code == 400 and "message" in answer.get_json()["error"]


def test_the_discovery_document(harness: Harness) -> None:
    doc = harness.client().get("/global/oauth/anonymous/.well-known/openid-configuration").get_json()
    assert doc["authorization_endpoint"] == f"{BASE}/oauth/authorize"
    assert doc["token_endpoint"] == f"{BASE}/oauth/token"
    assert doc["jwks_uri"] == f"{BASE}/global/oauth/anonymous/jwks"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert doc["code_challenge_methods_supported"] == ["S256"]


def test_the_id_token_fails_for_a_forger(harness: Harness) -> None:
    """Sanity for the library's tests: a token re-signed with another key does not verify."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    app = harness.app_for()
    claims = jwt.decode(harness.tokens(app)["id_token"], options={"verify_signature": False})
    kid = _jwks(harness)["keys"][0]["kid"]
    forged = jwt.encode(claims, rsa.generate_private_key(65537, 2048), algorithm="RS256", headers={"kid": kid})
    with pytest.raises(jwt.InvalidSignatureError):
        _verify(harness, forged, app.client_id)


@pytest.mark.parametrize("issuer", [SAMPLE_ISSUER, "https://issuer.example/x"])
def test_a_reset_restores_the_default_issuer(harness: Harness, issuer: str) -> None:
    # A test that set another issuer once left it for every later test of a shared sandbox.
    harness.client().put("/_sandbox/api/oauth/settings", json={"issuer": issuer})
    harness.identity.reset()
    assert harness.client().get("/_sandbox/api/oauth/settings").get_json() == {"issuer": DEFAULT_ISSUER}
