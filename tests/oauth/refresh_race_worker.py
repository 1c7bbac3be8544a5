"""One process of the refresh race: N threads asking for a fresh token at the same moment.

Started by ``test_refresh_race.py`` with the ``spawn`` method, so it imports nothing of the
test process: a store of its own on the shared database, a real
:class:`~pdconnect.oauth.PagerDutyOAuth` pointed at the test's rotating token endpoint.
"""

from __future__ import annotations

import threading
from typing import Any

from pdconnect import MemoryNonceStore
from pdconnect.oauth import OAuthApp, PagerDutyOAuth
from pdconnect.oauth.cipher import TokenCipher
from pdconnect.oauth.credentials import SqlCredentialStore
from pdconnect.oauth.refresh import TokenRefresher
from pdconnect.retry import RetryPolicy

CLIENT_ID = "race-client"
CLIENT_SECRET = "race-client-secret"


def make_oauth(identity_url: str) -> PagerDutyOAuth:
    app = OAuthApp(
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        redirect_uri="http://127.0.0.1/callback",
        kind="classic",
        scopes=("write",),
        identity_url=identity_url,
    )
    return PagerDutyOAuth(
        app,
        secret="a-vendor-secret-of-decent-length",
        nonces=MemoryNonceStore(),
        retry=RetryPolicy.no_retries(),
    )


def race(
    *,
    db_url: str,
    table: str,
    key: str,
    identity_url: str,
    owner_id: str,
    account_id: str,
    threads: int,
    barrier: Any,
    arrivals: Any,
    arrived: Any,
    results: Any,
) -> None:
    """Run ``threads`` callers of ``fresh_token``; each puts its token (or its error) on ``results``."""
    store = SqlCredentialStore(db_url, cipher=TokenCipher([key]), table_name=table, create_tables=False)
    refresher = TokenRefresher(
        store, make_oauth(identity_url), on_needs_reauthorization=lambda c: results.put(("hook", c.account_id))
    )

    def one() -> None:
        try:
            barrier.wait()
            with arrived:
                arrivals.value += 1
                arrived.notify_all()
            results.put(("ok", refresher.fresh_token(owner_id, account_id)))
        except Exception as exc:
            results.put(("error", f"{type(exc).__name__}: {exc}"))

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    store.engine.dispose()
