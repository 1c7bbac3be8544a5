"""Refresh exactly once across threads and processes, on SQLite and PostgreSQL.

A token endpoint on loopback rotates refresh tokens as PagerDuty does: each works once, a
reused one is ``invalid_grant``. M processes of N threads each ask for a fresh token of one
expired credential at the same moment (a barrier). The endpoint holds the first refresh until
every caller has arrived (a condition the callers signal before asking), so all of them find
the token expired while that refresh is under way. Exactly one refresh must reach the
endpoint, every caller must get its new access token, and the stored refresh token must be
the newest.
"""

from __future__ import annotations

import json
import multiprocessing
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from pdconnect.oauth import TokenSet
from pdconnect.oauth.cipher import TokenCipher
from pdconnect.oauth.credentials import MemoryCredentialStore, SqlCredentialStore
from pdconnect.oauth.refresh import TokenRefresher
from tests.conftest import POSTGRES_URL, unique_table
from tests.oauth import refresh_race_worker
from tests.oauth.credentials_helpers import ACCOUNT, KEY, NOW, FakeOAuth

PROCESSES = 3
THREADS = 4
TOTAL = PROCESSES * THREADS
WAIT = 120.0  # only a bound against a hung test; nothing waits for time to pass


class RotatingEndpoint:
    """``/oauth/token`` answering refresh grants; each refresh token works once."""

    def __init__(self, arrivals: Any, arrived: Any, expected: int) -> None:
        self.revoked = False
        self.valid: set[str] = set()
        self.granted: list[str] = []
        self.refused: list[str] = []
        self.newest_refresh: str | None = None
        self._lock = threading.Lock()
        self._arrivals, self._arrived, self._expected = arrivals, arrived, expected
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                status, body = endpoint.answer(form.get("refresh_token", [""])[0])
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def issue(self) -> tuple[str, str]:
        access, refresh = f"pdus+_0{secrets.token_hex(16)}", f"pdus+_1{secrets.token_hex(16)}"
        self.valid.add(refresh)
        self.newest_refresh = refresh
        return access, refresh

    def answer(self, refresh_token: str) -> tuple[int, dict[str, Any]]:
        # Hold the first refresh until every caller has arrived: they all find the token expired.
        with self._arrived:
            assert self._arrived.wait_for(lambda: self._arrivals.value >= self._expected, timeout=WAIT)
        with self._lock:
            if self.revoked or refresh_token not in self.valid:
                self.refused.append(refresh_token)
                return 400, {"error": "invalid_grant", "error_description": "refresh token already used"}
            self.valid.discard(refresh_token)
            access, refresh = self.issue()
            self.granted.append(access)
        return 200, {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "bearer",
            "scope": "openid write",
            "expires_in": 3600,
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, SqlCredentialStore]]:
    """A database URL every process can open, and a store on it in this process."""
    table = unique_table("pdc_race")
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'race.db'}"
    else:
        request.getfixturevalue("postgres_engine")  # skips (or fails in CI) without PostgreSQL
        url = POSTGRES_URL
    store = SqlCredentialStore(url, cipher=TokenCipher([KEY]), table_name=table)
    yield url, store
    store.table.drop(store.engine)
    store.engine.dispose()


def _race(url: str, store: SqlCredentialStore, *, revoked: bool) -> tuple[RotatingEndpoint, list[tuple[str, str]]]:
    """Run the race; the endpoint and every message the callers put (their answers, the hook's calls)."""
    context = multiprocessing.get_context("spawn")
    arrivals, arrived = context.Value("i", 0), context.Condition()
    barrier, results = context.Barrier(TOTAL), context.Queue()
    endpoint = RotatingEndpoint(arrivals, arrived, TOTAL)
    endpoint.revoked = revoked
    try:
        access, refresh = endpoint.issue()
        store.save("owner", ACCOUNT, TokenSet(access, refresh, 1.0, frozenset({"openid", "write"}), None))
        processes = [
            context.Process(
                target=refresh_race_worker.race,
                kwargs={
                    "db_url": url,
                    "table": store.table.name,
                    "key": KEY,
                    "identity_url": endpoint.url,
                    "owner_id": "owner",
                    "account_id": ACCOUNT.account_id,
                    "threads": THREADS,
                    "barrier": barrier,
                    "arrivals": arrivals,
                    "arrived": arrived,
                    "results": results,
                },
            )
            for _ in range(PROCESSES)
        ]
        for process in processes:
            process.start()
        messages: list[tuple[str, str]] = []
        while sum(kind != "hook" for kind, _ in messages) < TOTAL:
            messages.append(results.get(timeout=WAIT))
        for process in processes:
            process.join(timeout=WAIT)
            assert process.exitcode == 0
        while not results.empty():  # hooks of callers that answered last (the processes have flushed)
            messages.append(results.get(timeout=WAIT))
    finally:
        endpoint.close()
    return endpoint, messages


def test_refresh_happens_exactly_once_across_threads_and_processes(database: tuple[str, SqlCredentialStore]) -> None:
    url, store = database
    endpoint, answers = _race(url, store, revoked=False)
    assert [kind for kind, _ in answers] == ["ok"] * TOTAL, answers
    assert len(endpoint.granted) == 1, "more than one refresh reached the token endpoint"
    assert endpoint.refused == []
    assert {token for _, token in answers} == {endpoint.granted[0]}
    stored = store.get("owner", ACCOUNT.account_id)
    assert stored is not None
    assert stored.access_token == endpoint.granted[0]
    assert stored.refresh_token == endpoint.newest_refresh
    assert stored.refresh_token in endpoint.valid


def test_a_revoked_grant_is_refused_once_and_the_hook_fires_once(database: tuple[str, SqlCredentialStore]) -> None:
    url, store = database
    endpoint, messages = _race(url, store, revoked=True)
    hooks = [m for m in messages if m[0] == "hook"]
    errors = [m for m in messages if m[0] == "error"]
    assert hooks == [("hook", ACCOUNT.account_id)], messages
    assert len(errors) == TOTAL and all(text.startswith("NeedsReauthorization") for _, text in errors), errors
    assert len(endpoint.refused) == 1, "the callers after the first should see the mark, not ask again"
    stored = store.get("owner", ACCOUNT.account_id)
    assert stored is not None and stored.needs_reauthorization


def test_memory_store_refreshes_exactly_once_across_threads() -> None:
    """The same race within one process on the memory store (its lock is a thread lock)."""
    threads = 16
    arrivals = [0]
    arrived = threading.Condition()
    oauth = FakeOAuth()
    inner = oauth.refresh

    def gated(refresh_token: str) -> TokenSet:
        with arrived:
            assert arrived.wait_for(lambda: arrivals[0] >= threads, timeout=WAIT)
        return inner(refresh_token)

    oauth.refresh = gated  # type: ignore[method-assign]
    store = MemoryCredentialStore()
    first = oauth.issue()
    store.save("owner", ACCOUNT, TokenSet(first.access_token, first.refresh_token, NOW - 1, first.scopes, None))
    refresher = TokenRefresher(store, oauth, clock=lambda: NOW)
    barrier = threading.Barrier(threads)
    answers: list[str] = []

    def one() -> None:
        barrier.wait()
        with arrived:
            arrivals[0] += 1
            arrived.notify_all()
        answers.append(refresher.fresh_token("owner", ACCOUNT.account_id))

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=WAIT)
    stored = store.get("owner", ACCOUNT.account_id)
    assert stored is not None
    assert oauth.calls == [first.refresh_token]
    assert answers == [stored.access_token] * threads
    assert stored.refresh_token in oauth.valid
