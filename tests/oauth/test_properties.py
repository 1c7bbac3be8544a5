"""Hypothesis properties of every parser on the OAuth leg: the callback query, token answers, scopes, JWKS, states."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect import MemoryNonceStore
from pdconnect.errors import CallbackError, PdConnectError, StateError
from pdconnect.oauth import IdTokenInvalid, OAuthError, PagerDutyOAuth, TokenSet
from pdconnect.oauth.authorize import read_callback, read_state
from pdconnect.oauth.jwks import parse_jwks
from pdconnect.oauth.pkce import challenge, is_verifier, new_verifier
from pdconnect.oauth.scopes import format_scopes, parse_scopes
from pdconnect.oauth.state import OAuthStates
from pdconnect.oauth.tokens import read_json_object, read_token_answer
from pdconnect.state import new_session_binding
from tests.conftest import SECRET, FakeClock
from tests.oauth.conftest import make_app

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
scope_tokens = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters='"\\'), min_size=1, max_size=30
)


@given(st.lists(scope_tokens, max_size=20))
def test_scope_strings_round_trip(scopes: list[str]) -> None:
    assert parse_scopes(format_scopes(scopes)) == frozenset(scopes)


@given(st.text(max_size=300) | st.binary(max_size=20) | st.integers() | st.none())
def test_any_scope_value_is_a_set_or_a_value_error(value: object) -> None:
    try:
        parsed = parse_scopes(value)
    except ValueError:
        return
    assert all(s and " " not in s for s in parsed)


@given(st.binary(max_size=600))
def test_any_token_answer_body_is_tokens_or_an_oauth_error(body: bytes) -> None:
    for status in (200, 400, 401, 500):
        try:
            tokens = read_token_answer(status, body, now=0.0, requested=frozenset({"openid"}))
        except OAuthError:
            continue
        assert isinstance(tokens, TokenSet)


token_answers = st.fixed_dictionaries(
    {},
    optional={
        "access_token": st.text(max_size=20) | json_values,
        "refresh_token": st.text(max_size=20) | json_values,
        "id_token": st.text(max_size=20) | json_values,
        "token_type": st.sampled_from(["bearer", "Bearer", "mac", ""]) | json_values,
        "scope": st.text(max_size=30) | json_values,
        "expires_in": st.integers() | st.floats() | st.text(max_size=12) | json_values,
        "error": st.text(max_size=20) | json_values,
        "error_description": st.text(max_size=40) | json_values,
    },
)


@given(token_answers, st.sampled_from([200, 400, 401, 403]))
def test_any_token_answer_object_is_tokens_or_an_oauth_error(answer: dict[str, Any], status: int) -> None:
    body = json.dumps(answer, allow_nan=True).encode()
    try:
        tokens = read_token_answer(status, body, now=1000.0, requested=frozenset({"openid"}))
    except OAuthError as exc:
        message = str(exc)
    else:
        message = ""
    assert "\n" not in message
    if message:
        return
    assert status == 200
    assert 1000.0 < tokens.expires_at < float("inf")
    assert tokens.access_token.isascii() and " " not in tokens.access_token


@given(json_values)
def test_any_json_document_is_keys_or_a_value_error(document: Any) -> None:
    if not isinstance(document, dict):
        with pytest.raises(OAuthError):
            read_json_object(json.dumps(document).encode(), limit=65536, what="x")
        return
    try:
        keys = parse_jwks(document)
    except ValueError:
        return
    assert keys


query_values = st.text(max_size=30) | st.lists(st.text(max_size=10), max_size=3)


@given(st.dictionaries(st.sampled_from(["code", "state", "error", "error_description", "x"]), query_values, max_size=5))
def test_any_callback_mapping_is_a_callback_or_a_typed_error(query: dict[str, Any]) -> None:
    try:
        params, state = read_state(query)
        callback = read_callback(params, state)
    except (CallbackError, OAuthError):
        return
    assert callback.code and callback.code.isascii()


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=400) | st.binary(max_size=100))
def test_any_callback_query_string_is_refused_with_a_typed_error(query: str | bytes) -> None:
    oauth = PagerDutyOAuth(make_app(), secret=SECRET, nonces=MemoryNonceStore())
    with pytest.raises(PdConnectError):
        oauth.finish(query, owner_id="u", session_binding=new_session_binding())  # type: ignore[arg-type]


@given(
    owner=st.text(min_size=1, max_size=50).filter(lambda s: s.strip() and s.isprintable()),
    return_to=st.none() | st.from_regex(r"/[A-Za-z0-9?=&_.-][A-Za-z0-9/?=&_.-]{0,60}", fullmatch=True),
)
def test_states_round_trip_once(owner: str, return_to: str | None) -> None:
    clock = FakeClock()
    states = OAuthStates(SECRET, nonces=MemoryNonceStore(clock=clock), clock=clock)
    binding = new_session_binding()
    verifier = new_verifier()
    token = states.seal(owner_id=owner, session_binding=binding, verifier=verifier, return_to=return_to)
    assert verifier not in token
    opened = states.open(token, owner_id=owner, session_binding=binding)
    assert (opened.owner_id, opened.verifier, opened.return_to) == (owner, verifier, return_to)
    with pytest.raises(StateError):
        states.open(token, owner_id=owner, session_binding=binding)


@given(st.text(max_size=200) | st.integers() | st.none())
def test_any_state_value_that_was_not_sealed_here_is_a_state_error(token: object) -> None:
    states = OAuthStates(SECRET, nonces=MemoryNonceStore())
    with pytest.raises(StateError):
        states.open(token, owner_id="u", session_binding=new_session_binding())


@given(st.text(max_size=300))
def test_any_id_token_string_that_is_not_signed_is_refused(token: str) -> None:
    from pdconnect.oauth.id_token import verify_id_token
    from pdconnect.oauth.jwks import JwksCache

    class NoKeys(JwksCache):
        def key(self, kid: str | None) -> Any:
            raise IdTokenInvalid("no keys in this test")

    keys = NoKeys("https://identity.pagerduty.com/jwks", None)  # type: ignore[arg-type]
    with pytest.raises(IdTokenInvalid):
        verify_id_token(token, app=make_app(), keys=keys, now=0.0)


@given(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~", min_size=43, max_size=128)
)
def test_challenges_are_43_url_safe_characters(verifier: str) -> None:
    assert is_verifier(verifier)
    value = challenge(verifier)
    assert len(value) == 43 and "=" not in value and "+" not in value and "/" not in value


def _signed_claims_cache() -> Any:
    from pdconnect.oauth.jwks import JwksCache
    from pdconnect.transport import HttpResponse
    from tests.oauth.fake_identity import public_jwk, rsa_key

    class Keys:
        def request(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
            return HttpResponse(200, json.dumps({"keys": [public_jwk(rsa_key(0), "key-1")]}).encode())

    return JwksCache("https://identity.pagerduty.com/jwks", Keys(), clock=lambda: 1_800_000_000.0)  # type: ignore[arg-type]


_CACHE = _signed_claims_cache()


def _maybe(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(good, good, good, json_values, st.just(None))


claims_strategy = st.fixed_dictionaries(
    {
        "iss": _maybe(
            st.sampled_from(["https://identity.pagerduty.com/global/oauth/anonymous", "https://evil.example"])
        ),
        "aud": _maybe(
            st.lists(
                st.sampled_from(
                    [
                        "https://api.pagerduty.com",
                        "https://api.eu.pagerduty.com",
                        "pdconnect-test-client",
                        "https://x.example",
                    ]
                ),
                max_size=4,
            )
        ),
        "exp": _maybe(st.integers(1_800_000_000 - 120, 1_800_000_000 + 7200) | st.floats()),
        "iat": _maybe(st.integers(1_800_000_000 - 7200, 1_800_000_000 + 120)),
        "subdomain": _maybe(st.from_regex(r"[a-z0-9-]{1,10}", fullmatch=True)),
        "account_id": _maybe(st.from_regex(r"P[A-Z0-9]{6}", fullmatch=True)),
        "user_id": _maybe(st.from_regex(r"P[A-Z0-9]{6}", fullmatch=True)),
        "delegation_id": _maybe(st.from_regex(r"[A-Za-z0-9-]{1,36}", fullmatch=True)),
    }
)


@settings(max_examples=150)
@given(claims_strategy)
def test_any_signed_claims_give_a_whole_identity_or_a_refusal(claims: dict[str, Any]) -> None:
    import jwt as pyjwt

    from pdconnect.oauth.id_token import verify_id_token
    from tests.oauth.fake_identity import rsa_key

    present = {k: v for k, v in claims.items() if v is not None}
    token = pyjwt.api_jws.PyJWS().encode(
        json.dumps(present, allow_nan=True).encode(), rsa_key(0), algorithm="RS256", headers={"kid": "key-1"}
    )
    try:
        account = verify_id_token(token, app=make_app(), keys=_CACHE, now=1_800_000_000.0)
    except IdTokenInvalid:
        return
    assert account.subdomain == present["subdomain"]
    assert "pdconnect-test-client" in present["aud"]
    assert account.rest_base_url in present["aud"]
    assert (
        account.region
        == {"https://api.pagerduty.com": "us", "https://api.eu.pagerduty.com": "eu"}[account.rest_base_url]
    )
    assert present["exp"] > 1_800_000_000 - 60 and present["iat"] <= 1_800_000_000 + 60
