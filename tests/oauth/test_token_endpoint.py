"""The token endpoint answering garbage, errors, or less than was asked: typed errors, never a crash."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pdconnect.oauth import MissingScopes, OAuthRefused, PagerDutyOAuth, TokenEndpointError
from pdconnect.oauth.tokens import MAX_EXPIRES_IN
from tests.oauth.fake_identity import FakeIdentity

GOOD: dict[str, Any] = {
    "access_token": "pdus+_0XBPWQQ_abc",
    "refresh_token": "pdus+_1XBPWQQ_def",
    "token_type": "bearer",
    "scope": "openid write",
    "expires_in": 864000,
}


def _answer(status: int, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return lambda form: (status, headers or {"Content-Type": "application/json"}, body)


def _refresh(oauth: PagerDutyOAuth) -> Any:
    return oauth.refresh("pdus+_1old")


HOSTILE_BODIES: list[Any] = [
    pytest.param(b"<html>oops</html>", id="html"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\xff\xfe{}", id="not-utf8"),
    pytest.param(b"[]", id="array"),
    pytest.param(b"null", id="null"),
    pytest.param(b'"a string"', id="string"),
    pytest.param(b"[" * 100_000, id="deeply-nested"),
    pytest.param(json.dumps(GOOD).encode() + b" " * (70 * 1024), id="huge"),
    pytest.param(b'{"access_token": "a", "access_token": "b"}', id="duplicate-member"),
    *(
        pytest.param(json.dumps({k: v for k, v in GOOD.items() if k != name}).encode(), id=f"no-{name}")
        for name in ("access_token", "token_type", "expires_in")
    ),
    pytest.param(json.dumps(GOOD | {"token_type": "mac"}).encode(), id="token-type-mac"),
    pytest.param(json.dumps(GOOD | {"access_token": ""}).encode(), id="access-token-empty"),
    pytest.param(json.dumps(GOOD | {"access_token": 5}).encode(), id="access-token-number"),
    pytest.param(json.dumps(GOOD | {"access_token": "a b"}).encode(), id="access-token-space"),
    pytest.param(json.dumps(GOOD | {"access_token": "a\r\nSet-Cookie: x"}).encode(), id="access-token-crlf"),
    pytest.param(json.dumps(GOOD | {"access_token": "é"}).encode(), id="access-token-non-ascii"),
    pytest.param(json.dumps(GOOD | {"access_token": "a" * 9000}).encode(), id="access-token-huge"),
    pytest.param(json.dumps(GOOD | {"refresh_token": ["x"]}).encode(), id="refresh-token-list"),
    pytest.param(json.dumps(GOOD | {"id_token": "not a jwt"}).encode(), id="id-token-not-jwt"),
    pytest.param(json.dumps(GOOD | {"scope": ["openid"]}).encode(), id="scope-list"),
    pytest.param(json.dumps(GOOD | {"scope": "openid\twrite"}).encode(), id="scope-tab"),
    pytest.param(json.dumps(GOOD | {"scope": 'openid "write"'}).encode(), id="scope-quote"),
    pytest.param(json.dumps(GOOD).replace("864000", "NaN").encode(), id="expires-in-NaN"),
    pytest.param(json.dumps(GOOD).replace("864000", "Infinity").encode(), id="expires-in-Infinity"),
    pytest.param(json.dumps(GOOD).replace("864000", "1e400").encode(), id="expires-in-1e400"),
    pytest.param(json.dumps(GOOD | {"expires_in": -1}).encode(), id="expires-in-negative"),
    pytest.param(json.dumps(GOOD | {"expires_in": 0}).encode(), id="expires-in-zero"),
    pytest.param(json.dumps(GOOD | {"expires_in": MAX_EXPIRES_IN + 1}).encode(), id="expires-in-huge"),
    pytest.param(json.dumps(GOOD | {"expires_in": 10**400}).encode(), id="expires-in-enormous-int"),
    pytest.param(json.dumps(GOOD | {"expires_in": True}).encode(), id="expires-in-bool"),
    pytest.param(json.dumps(GOOD | {"expires_in": "soon"}).encode(), id="expires-in-words"),
    pytest.param(json.dumps(GOOD | {"expires_in": None}).encode(), id="expires-in-null"),
]


@pytest.mark.parametrize("body", HOSTILE_BODIES)
def test_a_garbage_success_answer_is_a_token_endpoint_error(
    oauth: PagerDutyOAuth, identity: FakeIdentity, body: bytes
) -> None:
    identity.token_override = _answer(200, body)
    with pytest.raises(TokenEndpointError) as caught:
        _refresh(oauth)
    assert not caught.value.retryable


def test_expires_in_as_a_digit_string_is_read(oauth: PagerDutyOAuth, identity: FakeIdentity) -> None:
    identity.token_override = _answer(200, json.dumps(GOOD | {"expires_in": "3600"}).encode())
    assert _refresh(oauth).expires_at == oauth._clock() + 3600


def test_a_missing_scope_means_what_was_asked(oauth: PagerDutyOAuth, identity: FakeIdentity) -> None:
    identity.token_override = _answer(200, json.dumps({k: v for k, v in GOOD.items() if k != "scope"}).encode())
    assert _refresh(oauth).scopes == frozenset({"openid", "write"})


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, {"error": "invalid_grant", "error_description": "bad"}, "invalid_grant"),
        (401, {"error": "invalid_client"}, "invalid_client"),
        (403, {"error": "unauthorized_client"}, "unauthorized_client"),
    ],
)
def test_an_oauth_error_is_refused_with_its_code(
    oauth: PagerDutyOAuth, identity: FakeIdentity, status: int, body: dict[str, str], error: str
) -> None:
    identity.token_override = _answer(status, json.dumps(body).encode())
    with pytest.raises(OAuthRefused) as caught:
        _refresh(oauth)
    assert (caught.value.error, caught.value.status) == (error, status)
    assert len(identity.token_calls) == 1  # a refusal is never retried


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, b"<html>bad request</html>"),
        (400, b'{"error": 5}'),
        (400, b'{"error": "a\\"b"}'),
        (400, b'{"error": ""}'),
        (302, b""),
        (404, b"not found"),
        (200, b""),
    ],
)
def test_an_unreadable_refusal_is_a_token_endpoint_error(
    oauth: PagerDutyOAuth, identity: FakeIdentity, status: int, body: bytes
) -> None:
    identity.token_override = _answer(status, body)
    with pytest.raises(TokenEndpointError):
        _refresh(oauth)


def test_a_long_description_is_cut_to_a_line(oauth: PagerDutyOAuth, identity: FakeIdentity) -> None:
    description = "line one\nline two " + "x" * 1000
    identity.token_override = _answer(
        400, json.dumps({"error": "invalid_grant", "error_description": description}).encode()
    )
    with pytest.raises(OAuthRefused) as caught:
        _refresh(oauth)
    assert caught.value.description is not None
    assert "\n" not in str(caught.value)
    assert len(caught.value.description) <= 300


# Only answers that say the refresh was not processed: after a 500 its token may be spent (test_attack_round3).
@pytest.mark.parametrize("status", [429, 503])
def test_temporary_answers_are_retried_then_succeed(
    oauth: PagerDutyOAuth, identity: FakeIdentity, sleeps: list[float], status: int
) -> None:
    answers = [(status, {"Retry-After": "7"}, b"busy"), (200, {}, json.dumps(GOOD).encode())]
    identity.token_override = lambda form: answers.pop(0)
    assert _refresh(oauth).access_token == GOOD["access_token"]
    assert sleeps == [7.0]  # Retry-After lengthens the (zero) backoff


@pytest.mark.parametrize("status", [429, 503])
def test_temporary_answers_to_the_end_are_a_retryable_error(
    oauth: PagerDutyOAuth, identity: FakeIdentity, status: int
) -> None:
    identity.token_override = _answer(status, b"busy")
    with pytest.raises(TokenEndpointError) as caught:
        _refresh(oauth)
    assert (caught.value.status, caught.value.retryable) == (status, True)
    assert len(identity.token_calls) == oauth._requester.retry.max_attempts


def test_a_refused_connection_is_retried(oauth: PagerDutyOAuth, identity: FakeIdentity) -> None:
    import requests

    refused = requests.ConnectionError(ConnectionRefusedError(111, "refused"))
    answers: list[Any] = [refused, (200, {}, json.dumps(GOOD).encode())]

    def answer(form: dict[str, str]) -> Any:
        item = answers.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    identity.token_override = answer
    assert _refresh(oauth).access_token == GOOD["access_token"]


def test_a_wait_past_the_deadline_gives_up_at_once(identity: FakeIdentity, clock: Any) -> None:
    from pdconnect import MemoryNonceStore
    from pdconnect.retry import RetryPolicy
    from tests.conftest import SECRET
    from tests.oauth.conftest import make_app

    sleeps: list[float] = []
    oauth = PagerDutyOAuth(
        make_app(),
        secret=SECRET,
        nonces=MemoryNonceStore(),
        retry=RetryPolicy(max_attempts=5, deadline=10.0, rate_limit_delay=0.0),
        sleep=sleeps.append,
    )
    identity.token_override = _answer(429, b"slow down", {"Retry-After": "3600"})
    with pytest.raises(TokenEndpointError, match="429"):
        _refresh(oauth)
    assert sleeps == []
    assert len(identity.token_calls) == 1


@pytest.mark.parametrize(
    ("granted", "missing"),
    [
        ("openid", {"write"}),
        ("openid read", {"write"}),
        ("", {"openid", "write"}),
        ("read write", {"openid"}),
    ],
)
def test_narrower_grants_name_what_is_missing(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, granted: str, missing: set[str]
) -> None:
    start = oauth.authorize(owner_id="u", session_binding=binding)
    with pytest.raises(MissingScopes) as caught:
        oauth.finish(identity.approve(start.url, scopes=granted), owner_id="u", session_binding=binding)
    assert caught.value.missing == frozenset(missing)
    for scope in missing:
        assert scope in str(caught.value)


def test_write_covers_read_for_a_classic_app(identity: FakeIdentity, binding: str, clock: Any) -> None:
    from pdconnect import MemoryNonceStore
    from tests.conftest import SECRET
    from tests.oauth.conftest import make_app

    oauth = PagerDutyOAuth(make_app(scopes=("read",)), secret=SECRET, nonces=MemoryNonceStore(clock=clock), clock=clock)
    start = oauth.authorize(owner_id="u", session_binding=binding)
    done = oauth.finish(identity.approve(start.url, scopes="openid write"), owner_id="u", session_binding=binding)
    assert done.tokens.scopes == frozenset({"openid", "write"})


def test_scoped_apps_get_no_implied_scopes(identity: FakeIdentity, binding: str, clock: Any) -> None:
    from pdconnect import MemoryNonceStore
    from tests.conftest import SECRET
    from tests.oauth.conftest import make_app

    app = make_app(kind="scoped", scopes=("services.read", "webhook_subscriptions.write"))
    oauth = PagerDutyOAuth(app, secret=SECRET, nonces=MemoryNonceStore(clock=clock), clock=clock)
    start = oauth.authorize(owner_id="u", session_binding=binding)
    with pytest.raises(MissingScopes) as caught:
        oauth.finish(
            identity.approve(start.url, scopes="openid services.write webhook_subscriptions.write"),
            owner_id="u",
            session_binding=binding,
        )
    assert caught.value.missing == frozenset({"services.read"})


@pytest.mark.parametrize("token", ["", None, 5, "a" * 9000], ids=["empty", "none", "number", "huge"])
def test_refresh_refuses_a_bad_refresh_token_before_any_request(
    oauth: PagerDutyOAuth, identity: FakeIdentity, token: object
) -> None:
    with pytest.raises(ValueError, match="refresh_token"):
        oauth.refresh(token)  # type: ignore[arg-type]
    assert identity.token_calls == []
