"""One handshake state, two callbacks at once (issue 9): exactly one connects, on SQLite and PostgreSQL.

Two "processes" are two Flask apps over one database, as two gunicorn workers would be; the
browser's session cookie is copied to both, as a double-click or a replayed URL would send it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask, session
from flask.testing import FlaskClient

from pdconnect.flask import PagerDutyConnect, connected
from pdconnect.nonces import SqlNonceStore
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.storage import SqlIntegrationStore
from tests.conftest import unique_table
from tests.test_flask import _path

APP_ID = "PRACE01"
CALLBACK = "http://localhost/pagerduty/callback"


def _app(tmp_path: Path, name: str, **extension: Any) -> Flask:
    app = Flask(name, instance_path=str(tmp_path / name))
    app.config.update(
        SECRET_KEY="race-test-secret-0123456789abcdef",
        PDCONNECT_APP_ID=APP_ID,
        PDCONNECT_INSTALL_BASE_URL=extension.pop("sandbox_url"),
        PDCONNECT_STORAGE_URL=extension.pop("storage_url", None),
    )
    PagerDutyConnect(app, owner_loader=lambda: session.get("user"), **extension)

    @app.route("/login/<user>")
    def login(user: str) -> str:
        session["user"] = user
        return "ok"

    return app


@pytest.fixture(params=["sqlite", "postgresql"])
def two_workers(
    request: pytest.FixtureRequest, tmp_path: Path, pagerduty_sandbox: PagerDutySandbox
) -> Iterator[tuple[Flask, Flask]]:
    pagerduty_sandbox.register_app(APP_ID, [CALLBACK])
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.db'}"
        yield (
            _app(tmp_path, "worker_a", sandbox_url=pagerduty_sandbox.url, storage_url=url),
            _app(tmp_path, "worker_b", sandbox_url=pagerduty_sandbox.url, storage_url=url),
        )
        return
    engine: sa.Engine = request.getfixturevalue("postgres_engine")
    integrations, nonces = unique_table("pdc_race_int"), unique_table("pdc_race_nonce")
    made = [
        _app(
            tmp_path,
            name,
            sandbox_url=pagerduty_sandbox.url,
            storage_url=f"sqlite:///{tmp_path / 'webhooks.db'}",
            store=SqlIntegrationStore(engine, table_name=integrations),
            nonce_store=SqlNonceStore(engine, table_name=nonces),
        )
        for name in ("worker_a", "worker_b")
    ]
    yield made[0], made[1]
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {integrations}, {nonces}"))


def _browser(app: Flask, cookie: str) -> FlaskClient:
    client = app.test_client()
    client.set_cookie("session", cookie)
    return client


def _started(app: Flask, sandbox: PagerDutySandbox) -> tuple[str, str]:
    """Sign alice in and start an install: the callback URL and the session cookie it needs."""
    client = app.test_client()
    client.get("/login/alice")
    callback = _path(sandbox.install(client.get("/pagerduty/install").headers["Location"]))
    cookie = client.get_cookie("session")  # now with the session binding
    assert cookie is not None
    return callback, cookie.value


def _both_at_once(clients: list[FlaskClient], url: str) -> list[int]:
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = []
    lock = threading.Lock()

    def follow(client: FlaskClient) -> None:
        barrier.wait()
        status = client.get(url).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=follow, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(statuses)


def test_two_racing_callbacks_of_one_state_connect_once(
    two_workers: tuple[Flask, Flask], pagerduty_sandbox: PagerDutySandbox
) -> None:
    worker_a, worker_b = two_workers
    announced: list[int] = []

    def count(sender: Any, integrations: list[Any], **_: Any) -> None:
        announced.append(len(integrations))

    connected.connect(count)
    try:
        for _round in range(3):
            callback, cookie = _started(worker_a, pagerduty_sandbox)
            clients = [_browser(worker_a, cookie), _browser(worker_b, cookie)]
            # 302: connected; 303: refused, its page shown at a URL without the keys
            assert _both_at_once(clients, callback) == [302, 303]
    finally:
        connected.disconnect(count)
    assert announced == [1, 1, 1]


def test_a_state_used_by_one_worker_is_refused_by_the_other(
    two_workers: tuple[Flask, Flask], pagerduty_sandbox: PagerDutySandbox
) -> None:
    worker_a, worker_b = two_workers
    callback, cookie = _started(worker_a, pagerduty_sandbox)
    assert _browser(worker_b, cookie).get(callback).status_code == 302
    replay = _browser(worker_a, cookie).get(callback, follow_redirects=True)
    assert replay.status_code == 400
    assert "This link was already used" in replay.get_data(as_text=True)
