"""Races on the OAuth leg: one callback finished twice at once, shared nonces across processes, a JWKS stampede."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from pdconnect import SqlNonceStore
from pdconnect.errors import StateReplayed
from pdconnect.oauth import PagerDutyOAuth
from pdconnect.oauth.jwks import JwksCache
from pdconnect.transport import HttpResponse
from tests.conftest import SECRET, FakeClock
from tests.oauth.conftest import NO_WAIT, make_app
from tests.oauth.fake_identity import FakeIdentity, public_jwk, rsa_key


def _client(store: SqlNonceStore, clock: FakeClock) -> PagerDutyOAuth:
    return PagerDutyOAuth(make_app(), secret=SECRET, nonces=store, retry=NO_WAIT, clock=clock, sleep=lambda s: None)


def test_one_callback_finished_by_two_processes_completes_once(
    tmp_path: Path, identity: FakeIdentity, binding: str, clock: FakeClock
) -> None:
    url = f"sqlite:///{tmp_path / 'nonces.db'}"
    # Two app processes: two clients, two engines, one database.
    first, second = _client(SqlNonceStore(url, clock=clock), clock), _client(SqlNonceStore(url, clock=clock), clock)
    start = first.authorize(owner_id="u", session_binding=binding)
    callback = identity.approve(start.url)
    first.finish(callback, owner_id="u", session_binding=binding)
    with pytest.raises(StateReplayed):
        second.finish(callback, owner_id="u", session_binding=binding)


def test_one_callback_finished_by_eight_threads_at_once_completes_once(
    tmp_path: Path, identity: FakeIdentity, binding: str, clock: FakeClock
) -> None:
    oauth = _client(SqlNonceStore(f"sqlite:///{tmp_path / 'nonces.db'}", clock=clock), clock)
    start = oauth.authorize(owner_id="u", session_binding=binding)
    callback = identity.approve(start.url)
    barrier = threading.Barrier(8)

    def finish() -> str:
        barrier.wait()
        try:
            oauth.finish(callback, owner_id="u", session_binding=binding)
        except StateReplayed:
            return "replayed"
        return "done"

    with ThreadPoolExecutor(8) as pool:
        outcomes = sorted(pool.map(lambda _: finish(), range(8)))
    assert outcomes == ["done"] + ["replayed"] * 7
    assert sum(1 for call in identity.token_calls if call["grant_type"] == "authorization_code") == 1


class CountingRequester:
    """Answers the JWKS document and counts the requests; safe across threads."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def request(self, method: str, url: str, **kwargs: Any) -> HttpResponse:
        with self._lock:
            self.calls += 1
        return HttpResponse(200, json.dumps({"keys": [public_jwk(rsa_key(0), "key-1")]}).encode())


@pytest.mark.parametrize("kid", ["key-1", "unknown"])
def test_sixteen_threads_asking_for_a_key_at_once_make_one_request(kid: str, clock: FakeClock) -> None:
    requester = CountingRequester()
    cache = JwksCache("https://identity.pagerduty.com/jwks", requester, clock=clock)  # type: ignore[arg-type]
    barrier = threading.Barrier(16)

    def ask() -> bool:
        barrier.wait()
        try:
            cache.key(kid)
        except Exception:
            return False
        return True

    with ThreadPoolExecutor(16) as pool:
        found = list(pool.map(lambda _: ask(), range(16)))
    assert found == [kid == "key-1"] * 16
    assert requester.calls == 1
