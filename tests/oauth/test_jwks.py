"""PagerDuty's signing keys: rotation, rate-limited refetching, and a JWKS endpoint that misbehaves."""

from __future__ import annotations

import json
import secrets
import socket
import threading
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from pdconnect.oauth import IdTokenInvalid, JwksUnavailable, PagerDutyOAuth
from pdconnect.oauth.http import Requester
from pdconnect.oauth.jwks import JwksCache, parse_jwks
from pdconnect.retry import RetryPolicy
from pdconnect.transport import RequestsTransport
from tests.conftest import FakeClock
from tests.oauth.fake_identity import FakeIdentity, public_jwk, rsa_key


def _connect(oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str) -> Any:
    start = oauth.authorize(owner_id="u", session_binding=binding)
    return oauth.finish(identity.approve(start.url), owner_id="u", session_binding=binding)


def test_keys_are_cached_for_their_ttl(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, clock: FakeClock
) -> None:
    for _ in range(3):
        _connect(oauth, identity, binding)
    assert identity.jwks_calls == 1
    clock.advance(oauth.keys.ttl)
    _connect(oauth, identity, binding)
    assert identity.jwks_calls == 2


def test_a_rotated_key_is_fetched_once(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, clock: FakeClock
) -> None:
    _connect(oauth, identity, binding)
    clock.advance(oauth.keys.min_refetch_interval)
    identity.key_index, identity.kid = 1, "key-2"
    assert _connect(oauth, identity, binding).account.subdomain == "acme"
    assert identity.jwks_calls == 2


def test_random_key_ids_do_not_make_a_request_each(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, clock: FakeClock
) -> None:
    _connect(oauth, identity, binding)
    identity.id_token_override = lambda claims: jwt.encode(
        claims, rsa_key(0), algorithm="RS256", headers={"kid": secrets.token_hex(8)}
    )
    for _ in range(20):
        with pytest.raises(IdTokenInvalid, match="key PagerDuty does not publish"):
            _connect(oauth, identity, binding)
        clock.advance(1)
    assert identity.jwks_calls == 1  # the first fetch; every unknown kid came within the interval
    clock.advance(oauth.keys.min_refetch_interval)
    with pytest.raises(IdTokenInvalid):
        _connect(oauth, identity, binding)
    assert identity.jwks_calls == 2


def test_known_keys_stay_in_use_while_the_endpoint_is_down(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, clock: FakeClock
) -> None:
    _connect(oauth, identity, binding)
    identity.jwks_override = lambda: (500, {}, b"down")
    clock.advance(oauth.keys.ttl + 1)
    assert _connect(oauth, identity, binding).account.subdomain == "acme"


def test_a_token_without_kid_is_accepted_only_from_a_one_key_document(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, clock: FakeClock
) -> None:
    identity.id_token_override = lambda claims: jwt.encode(claims, rsa_key(0), algorithm="RS256")
    assert _connect(oauth, identity, binding).account.subdomain == "acme"
    two_keys = {"keys": [public_jwk(rsa_key(0), "key-1"), public_jwk(rsa_key(1), "key-2")]}
    identity.jwks_override = lambda: (200, {}, json.dumps(two_keys).encode())
    clock.advance(oauth.keys.ttl)
    with pytest.raises(IdTokenInvalid):
        _connect(oauth, identity, binding)


def _doc(*entries: Any) -> bytes:
    return json.dumps({"keys": list(entries)}).encode()


def _good(**changes: Any) -> dict[str, Any]:
    return public_jwk(rsa_key(0), "key-1") | changes


HOSTILE_JWKS: list[Any] = [
    pytest.param(200, b"<html>", id="html"),
    pytest.param(200, b"", id="empty"),
    pytest.param(200, b"[]", id="array"),
    pytest.param(200, b'{"keys": {}}', id="keys-object"),
    pytest.param(200, b'{"keys": []}', id="no-keys"),
    pytest.param(200, _doc("x", 5, None), id="keys-not-objects"),
    pytest.param(200, _doc(*[_good(kid=f"k{i}") for i in range(40)]), id="too-many-keys"),
    pytest.param(200, _doc(_good(), _good()), id="duplicate-kid"),
    pytest.param(200, _doc(_good(kty="EC")), id="not-rsa"),
    pytest.param(200, _doc(_good(use="enc")), id="encryption-key"),
    pytest.param(200, _doc(_good(alg="HS256")), id="hs256-key"),
    pytest.param(200, _doc(_good(n="!!!")), id="bad-modulus"),
    pytest.param(200, _doc(_good(n=5)), id="modulus-number"),
    pytest.param(200, _doc(_good(e="A" * 50)), id="huge-exponent"),
    pytest.param(
        200,
        _doc(
            public_jwk(
                __import__("cryptography.hazmat.primitives.asymmetric.rsa", fromlist=["x"]).generate_private_key(
                    public_exponent=65537, key_size=1024
                ),
                "key-1",
            )
        ),
        id="1024-bit-key",
    ),
    pytest.param(200, _doc(_good(kid="k" * 300)), id="huge-kid"),
    pytest.param(200, _doc(_good(kid=7)), id="kid-number"),
    pytest.param(200, b'{"keys": [' + b'{"kty": "RSA"},' * 6000 + b"{}]}", id="huge"),
    pytest.param(200, b'{"keys": NaN}', id="nan"),
    pytest.param(404, b"", id="not-found"),
    pytest.param(302, b"", id="redirect"),
    pytest.param(503, b"", id="unavailable"),
]


@pytest.mark.parametrize(("status", "body"), HOSTILE_JWKS)
def test_a_hostile_jwks_is_unavailable_keys_not_a_crash(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, status: int, body: bytes
) -> None:
    identity.jwks_override = lambda: (status, {"Location": "https://evil.example/jwks"}, body)
    with pytest.raises(JwksUnavailable):
        _connect(oauth, identity, binding)


def test_a_private_key_in_the_document_is_used_as_public_only() -> None:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key(0))) | {"kid": "key-1"}
    keys = parse_jwks({"keys": [jwk]})
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    assert isinstance(keys["key-1"], RSAPublicKey)


# -- a slow JWKS endpoint, over real loopback HTTP ----------------------------------------------


@pytest.fixture
def dribbling_server() -> Iterator[str]:
    """A server that answers headers and then a byte at a time, each only when the last was read.

    No sleeps: it waits for nothing but the client, which must give up on its total deadline.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(5)
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
            while not stop.wait(0.05):  # a trickle: one byte per twentieth of a second
                try:
                    conn.sendall(b" ")
                except OSError:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/jwks"
    stop.set()
    listener.close()
    thread.join(timeout=5)


def test_a_dribbling_jwks_endpoint_is_cut_off_at_the_deadline(dribbling_server: str) -> None:
    requester = Requester(
        RequestsTransport(),
        retry=RetryPolicy(max_attempts=1),
        timeout=(0.5, 0.5),
        sleep=lambda s: None,
    )
    cache = JwksCache(dribbling_server, requester)
    with pytest.raises(JwksUnavailable):
        cache.key("key-1")
