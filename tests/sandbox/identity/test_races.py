"""Two requests at the same moment: a code and a refresh token each still work exactly once.

The threads start together on a barrier (no sleeps); the registry's lock must let one win.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from tests.sandbox.identity.harness import Harness, pkce_pair

RACERS = 8


def _race(call: Callable[[], Any]) -> list[Any]:
    barrier = threading.Barrier(RACERS)
    results: list[Any] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        answer = call()
        with lock:
            results.append(answer)

    threads = [threading.Thread(target=run) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_a_code_redeemed_by_many_at_once_works_once_and_the_replays_revoke_it(harness: Harness) -> None:
    app = harness.app_for()
    verifier, challenge = pkce_pair()
    code = harness.code(app, challenge=challenge)
    answers = _race(lambda: harness.exchange(app, code, verifier))
    winners = [a.get_json() for a in answers if a.status_code == 200]
    assert len(winners) == 1
    assert all(a.get_json()["error"] == "invalid_grant" for a in answers if a.status_code != 200)
    assert harness.identity.bearer(winners[0]["access_token"]) is None  # replays revoked it (RFC 6749 10.5)


def test_a_refresh_token_used_by_many_at_once_rotates_once(harness: Harness) -> None:
    app = harness.app_for()
    harness.identity.core.registry.apps[app.client_id].revoke_on_refresh_reuse = False
    tokens = harness.tokens(app)
    answers = _race(lambda: harness.refresh(app, tokens["refresh_token"]))
    winners = [a.get_json() for a in answers if a.status_code == 200]
    assert len(winners) == 1
    assert harness.refresh(app, winners[0]["refresh_token"]).status_code == 200
