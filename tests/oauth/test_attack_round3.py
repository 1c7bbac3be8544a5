"""Round-3 attack findings: a single-use grant is never sent twice, and an ID token's ``nbf`` is checked."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Mapping
from typing import Any

import jwt
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from pdconnect import MemoryNonceStore
from pdconnect.oauth import IdTokenInvalid, PagerDutyOAuth, TokenEndpointError
from pdconnect.oauth.credentials import Credential, MemoryCredentialStore
from pdconnect.oauth.id_token import LEEWAY, verify_id_token
from pdconnect.oauth.refresh import TokenRefresher
from pdconnect.retry import RetryPolicy
from pdconnect.transport import HttpResponse, RequestsTransport, TransportError, TransportTimeout
from tests.conftest import SECRET
from tests.oauth.conftest import make_app
from tests.oauth.credentials_helpers import ACCOUNT, NOW, token_set
from tests.oauth.fake_identity import CLIENT_ID, ISSUER, rsa_key

NO_WAIT = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0, deadline=60.0, rate_limit_delay=0.0)
GOOD = {
    "access_token": "pdus+_0NEWACCESS",
    "refresh_token": "pdus+_1NEWREFRESH",
    "token_type": "bearer",
    "scope": "openid write",
    "expires_in": 3600,
}

Step = Callable[[bytes], HttpResponse]


def _ok(body: bytes) -> HttpResponse:
    return HttpResponse(status=200, body=json.dumps(GOOD).encode(), headers={})


def _status(status: int, headers: Mapping[str, str] | None = None) -> Step:
    return lambda body: HttpResponse(status=status, body=b"busy", headers=dict(headers or {}))


def _read_timeout_after_delivery(body: bytes) -> HttpResponse:
    # PagerDuty got it and spent the refresh token; its answer never came back.
    raise TransportTimeout("timed out (ReadTimeout)") from requests.ReadTimeout("read timed out")


def _reset_after_sending(body: bytes) -> HttpResponse:
    raise TransportError("connection failed (ConnectionError)") from requests.ConnectionError(
        ConnectionResetError("reset by peer")
    )


def _bare_failure(body: bytes) -> HttpResponse:
    raise TransportError("read timed out")  # p_refresh_retry.py's: no cause says it never left


def _refused(body: bytes) -> HttpResponse:
    raise TransportError("connection failed (ConnectionRefusedError)") from ConnectionRefusedError(111, "refused")


def _connect_timeout(body: bytes) -> HttpResponse:
    raise TransportTimeout("timed out (ConnectTimeout)") from requests.exceptions.ConnectTimeout("connect")


class ScriptedTransport:
    """Answers each POST with the next step of a script, recording every attempt."""

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self.attempts: list[bytes] = []

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: tuple[float, float]) -> HttpResponse:
        self.attempts.append(body)
        return self.steps.pop(0)(body)

    def get(self, url: str, headers: Mapping[str, str], timeout: tuple[float, float]) -> HttpResponse:
        raise AssertionError("no key fetch expected")


def _client(transport: Any, *, kind: str = "classic", sleeps: list[float] | None = None) -> PagerDutyOAuth:
    app = make_app(kind=kind, scopes=("write",) if kind == "classic" else ("services.read",))
    return PagerDutyOAuth(
        app,
        secret=SECRET,
        nonces=MemoryNonceStore(),
        transport=transport,
        retry=NO_WAIT,
        sleep=(sleeps if sleeps is not None else []).append,
    )


LOST_ANSWERS: list[Any] = [
    pytest.param(_read_timeout_after_delivery, None, id="read-timeout"),
    pytest.param(_reset_after_sending, None, id="reset-after-sending"),
    pytest.param(_bare_failure, None, id="transport-error-without-cause"),
    pytest.param(_status(500), 500, id="500"),
    pytest.param(_status(502), 502, id="502"),
    pytest.param(_status(504), 504, id="504"),
    pytest.param(_status(408), 408, id="408"),
]


@pytest.mark.parametrize(("lost", "status"), LOST_ANSWERS)
def test_a_refresh_that_may_have_arrived_is_not_sent_again_and_marks_nothing(lost: Step, status: int | None) -> None:
    transport = ScriptedTransport([lost, _ok])
    store = MemoryCredentialStore()
    saved = store.save("owner-1", ACCOUNT, token_set())
    hooked: list[Credential] = []
    refresher = TokenRefresher(store, _client(transport), on_needs_reauthorization=hooked.append, clock=lambda: NOW)
    with pytest.raises(TokenEndpointError) as caught:
        refresher.fresh_token("owner-1", saved.account_id, force=True)
    assert len(transport.attempts) == 1
    assert (caught.value.retryable, caught.value.status) == (True, status)
    current = store.get("owner-1", saved.account_id)
    assert current is not None and not current.needs_reauthorization
    assert current.refresh_token == saved.refresh_token
    assert hooked == []
    assert saved.refresh_token is not None and saved.refresh_token not in str(caught.value)


@pytest.mark.parametrize(("lost", "status"), LOST_ANSWERS)
def test_a_code_exchange_that_may_have_arrived_is_not_sent_again(lost: Step, status: int | None) -> None:
    transport = ScriptedTransport([lost, _ok])
    oauth = _client(transport)
    start = oauth.authorize(owner_id="u", session_binding="b" * 32)
    state = start.url.split("state=")[1].split("&")[0]
    with pytest.raises(TokenEndpointError) as caught:
        oauth.finish(f"code=abc123&state={state}", owner_id="u", session_binding="b" * 32)
    assert len(transport.attempts) == 1
    assert caught.value.retryable


@pytest.mark.parametrize(
    "not_sent",
    [pytest.param(_refused, id="connection-refused"), pytest.param(_connect_timeout, id="connect-timeout")],
)
def test_a_refresh_that_never_left_is_retried(not_sent: Step) -> None:
    transport = ScriptedTransport([not_sent, not_sent, _ok])
    assert _client(transport).refresh("pdus+_1old").access_token == GOOD["access_token"]
    assert len(transport.attempts) == 3


@pytest.mark.parametrize("status", [429, 503])
def test_a_refresh_answered_not_processed_is_retried_after_the_floor(status: int) -> None:
    sleeps: list[float] = []
    transport = ScriptedTransport([_status(status, {"retry-after": "7"}), _ok])
    assert _client(transport, sleeps=sleeps).refresh("pdus+_1old").access_token == GOOD["access_token"]
    assert len(transport.attempts) == 2
    assert sleeps == [7.0]


def test_a_429_waits_at_least_the_rate_limit_delay() -> None:
    sleeps: list[float] = []
    transport = ScriptedTransport([_status(429), _ok])
    policy = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0, deadline=60.0, rate_limit_delay=5.0)
    oauth = PagerDutyOAuth(
        make_app(), secret=SECRET, nonces=MemoryNonceStore(), transport=transport, retry=policy, sleep=sleeps.append
    )
    oauth.refresh("pdus+_1old")
    assert len(sleeps) == 1 and sleeps[0] >= 5.0


@pytest.mark.parametrize("lost", [_read_timeout_after_delivery, _status(500)])
def test_client_credentials_keep_retrying(lost: Step) -> None:
    transport = ScriptedTransport([lost, _ok])
    tokens = _client(transport, kind="scoped").client_credentials(region="us", subdomain="acme", scopes=[])
    assert tokens.access_token == GOOD["access_token"]
    assert len(transport.attempts) == 2


def test_a_real_refused_connection_over_loopback_is_retried() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: connecting is refused

    class Counting(RequestsTransport):
        attempts = 0

        def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: tuple[float, float]) -> Any:
            Counting.attempts += 1
            return super().post(url, body, headers, timeout)

    app = make_app(identity_url=f"http://127.0.0.1:{port}")
    oauth = PagerDutyOAuth(
        app, secret=SECRET, nonces=MemoryNonceStore(), transport=Counting(), retry=NO_WAIT, sleep=lambda s: None
    )
    with pytest.raises(TokenEndpointError) as caught:
        oauth.refresh("pdus+_1old")
    assert Counting.attempts == NO_WAIT.max_attempts
    assert caught.value.retryable


# -- nbf ----------------------------------------------------------------------------------------


class _Keys:
    def key(self, kid: str | None) -> Any:
        return rsa_key(0).public_key()


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(NOW)
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": ["https://api.pagerduty.com", CLIENT_ID],
        "iat": now,
        "exp": now + 3600,
        "subdomain": "acme",
        "account_id": "PACME01",
        "user_id": "PUSER01",
        "delegation_id": "PDELEG1",
    }
    claims.update(changes)
    return claims


def _signed(raw_claims: str) -> str:
    # Raw JSON, so NaN and ints beyond a float's range reach the verifier as a hostile issuer sends them.
    return jwt.api_jws.PyJWS().encode(raw_claims.encode(), rsa_key(0), algorithm="RS256", headers={"kid": "key-1"})


def _verify(raw_claims: str) -> Any:
    return verify_id_token(_signed(raw_claims), app=make_app(), keys=_keys(), now=NOW)


def _keys() -> Any:
    return _Keys()


@pytest.mark.parametrize(
    "nbf",
    [
        pytest.param(None, id="absent"),
        pytest.param(int(NOW), id="now"),
        pytest.param(int(NOW) - 86_400, id="a-day-ago"),
        pytest.param(int(NOW) + 30, id="30s-ahead-within-leeway"),
        pytest.param(NOW + LEEWAY, id="at-the-leeway"),
    ],
)
def test_an_nbf_that_has_passed_or_is_within_the_leeway_is_accepted(nbf: float | None) -> None:
    claims = _claims() if nbf is None else _claims(nbf=nbf)
    assert _verify(json.dumps(claims)).subdomain == "acme"


@pytest.mark.parametrize(
    ("nbf_json", "reason"),
    [
        pytest.param(str(int(NOW) + 86_400), "not valid yet", id="a-day-ahead"),
        pytest.param(str(NOW + LEEWAY + 1), "not valid yet", id="just-past-the-leeway"),
        pytest.param("1e308", "not valid yet", id="huge-float"),
        pytest.param("1" + "0" * 400, "'nbf' claim is not a time", id="int-beyond-float"),
        pytest.param("NaN", "'nbf' claim is not a time", id="NaN"),
        pytest.param("Infinity", "'nbf' claim is not a time", id="Infinity"),
        pytest.param('"NaN"', "'nbf' claim is missing or not a number", id="NaN-string"),
        pytest.param('"1800000000"', "'nbf' claim is missing or not a number", id="digit-string"),
        pytest.param("true", "'nbf' claim is missing or not a number", id="bool"),
        pytest.param("null", "'nbf' claim is missing or not a number", id="null"),
        pytest.param("[1]", "'nbf' claim is missing or not a number", id="list"),
    ],
)
def test_an_nbf_ahead_or_malformed_is_refused(nbf_json: str, reason: str) -> None:
    raw = json.dumps(_claims(nbf="__NBF__")).replace('"__NBF__"', nbf_json)
    with pytest.raises(IdTokenInvalid, match=reason):
        _verify(raw)


@settings(max_examples=60, deadline=None)
@given(offset=st.floats(min_value=-1e7, max_value=1e7, allow_nan=False))
def test_nbf_is_accepted_exactly_when_within_the_leeway(offset: float) -> None:
    raw = json.dumps(_claims(nbf=NOW + offset))
    if offset <= LEEWAY:
        assert _verify(raw).account_id == "PACME01"
    else:
        with pytest.raises(IdTokenInvalid, match="not valid yet"):
            _verify(raw)
