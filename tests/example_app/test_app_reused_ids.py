"""One user's alerts never reach another user through a monitor id that was used before.

SQLite reused a deleted highest id: Alice's deleted monitor 2 became Bob's monitor 2, and
her alert (kept when its monitor goes) showed on his monitor page, was resolved by his
recovery and was listed under his monitor's name on her incidents page. The tables now
never reuse an id, and every query of alerts is by owner as well. Each test runs on a new
database and on one made by an older Acme (ids reused), where the owner filters alone keep
the users apart.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from example_app import db
from example_app.demo import RunningDemo, start_acme
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.example_app.test_app import owner_id, paste, signed_in, token

_names = itertools.count()


def _legacy_schema(url: str) -> None:
    """Acme's tables as an older Acme made them: SQLite's plain rowids, which it reuses."""
    legacy = sa.MetaData()
    for table in db.metadata.sorted_tables:
        copy = table.to_metadata(legacy)
        copy.dialect_options["sqlite"]["autoincrement"] = False
    engine = sa.create_engine(url)
    legacy.create_all(engine)
    engine.dispose()


@pytest.fixture(params=["new database", "older database"])
def acme_db(
    request: pytest.FixtureRequest, pagerduty_sandbox: PagerDutySandbox, tmp_path: Path
) -> Iterator[RunningDemo]:
    url = f"sqlite:///{tmp_path / 'acme.db'}"
    if request.param == "older database":
        _legacy_schema(url)
    running = start_acme(pagerduty_sandbox.server, database_url=url, scheduler=False, worker=False, oauth=False)
    running.app.config["ACME_TEST_LEGACY"] = request.param == "older database"
    yield running
    running.stop()


def _engine(acme: RunningDemo) -> sa.Engine:
    engine: sa.Engine = acme.app.extensions["acme_engine"]
    return engine


def _monitors(acme: RunningDemo, owner: str) -> list[int]:
    with _engine(acme).connect() as conn:
        return [m.id for m in db.owner_monitors(conn, owner)]


def _alerts(acme: RunningDemo, owner: str) -> list[tuple[int, str]]:
    with _engine(acme).connect() as conn:
        query = sa.select(db.alerts.c.id, db.alerts.c.status).where(db.alerts.c.owner == owner).order_by(db.alerts.c.id)
        return [(row.id, row.status) for row in conn.execute(query).all()]


def _post(client: FlaskClient, path: str, **form: str | list[str]) -> int:
    return client.post(path, data={**form, "pdconnect_csrf": token(client, "/")}).status_code


def _integration(acme: RunningDemo, owner: str) -> str:
    return str(acme.app.extensions["pdconnect"].store.list(owner)[0].id)


def _pages(client: FlaskClient, monitor_ids: list[int]) -> str:
    paths = ["/", "/incidents", "/settings/pagerduty", *(f"/monitors/{i}" for i in monitor_ids)]
    return "\n".join(client.get(path).get_data(as_text=True) for path in paths)


def test_a_deleted_monitor_s_alert_never_reaches_the_next_user(
    acme_db: RunningDemo, pagerduty_sandbox: PagerDutySandbox
) -> None:
    acme = acme_db
    alice = signed_in(acme, "alice")
    paste(alice, pagerduty_sandbox.service_key("Checkout API"), "Alice Payments On-call")
    alice_id = owner_id(acme, "alice")
    doomed = _monitors(acme, alice_id)[-1]
    assert _post(alice, f"/monitors/{doomed}/targets", targets=[_integration(acme, alice_id)]) == 302
    assert _post(alice, f"/monitors/{doomed}/simulate", mode="fail") == 302
    assert _post(alice, f"/monitors/{doomed}/delete") == 302
    [(alert, status)] = _alerts(acme, alice_id)
    assert status == "triggered", "its incident stays open in PagerDuty and in Acme's list"

    bob = signed_in(acme, "bob")
    bob_id = owner_id(acme, "bob")
    bobs = _monitors(acme, bob_id)
    if not acme.app.config["ACME_TEST_LEGACY"]:
        assert doomed not in bobs, "a deleted monitor's id is never handed out again"
    else:
        assert doomed in bobs, "the older schema reuses it: the owner filters must hold alone"
    assert "Alice Payments On-call" not in _pages(bob, bobs)
    for monitor in bobs:
        assert _post(bob, f"/monitors/{monitor}/simulate", mode="fail") == 302
        assert _post(bob, f"/monitors/{monitor}/simulate", mode="recover") == 302
    assert _alerts(acme, alice_id) == [(alert, "triggered")], "Bob's recovery resolved Alice's alert"
    assert _alerts(acme, bob_id) == [], "Bob's monitors alert no service"

    incidents = alice.get("/incidents").get_data(as_text=True)
    assert "(deleted)" in incidents
    assert "Checkout API" not in incidents.split("<table", 1)[-1], "Bob's monitor named on Alice's incident"
    assert f'href="/monitors/{doomed}"' not in incidents


# -- any sequence of creating, failing, recovering and deleting by two users -----------------

_USERS = ("alice", "bob")
# The pick counts from the newest monitor: deleting the highest id is what SQLite reused.
_step = st.tuples(st.sampled_from(_USERS), st.sampled_from(["create", "fail", "recover", "delete"]), st.integers(0, 2))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(_step, min_size=1, max_size=14))
@example(steps=[("alice", "fail", 0), ("alice", "delete", 0), ("bob", "fail", 0), ("bob", "recover", 0)])
def test_no_page_of_one_user_shows_the_other_s_alerts(
    acme_db: RunningDemo, pagerduty_sandbox: PagerDutySandbox, steps: list[tuple[str, str, int]]
) -> None:
    acme = acme_db
    run = next(_names)
    keys = {"alice": pagerduty_sandbox.service_key("Checkout API"), "bob": pagerduty_sandbox.service_key("Database")}
    clients: dict[str, FlaskClient] = {}
    owners: dict[str, str] = {}

    def join(user: str) -> None:
        """Sign ``user`` up at their first step: their seeded monitors take the newest ids."""
        name = f"{user}-{run}"
        clients[user] = signed_in(acme, name)
        paste(clients[user], keys[user], f"{user.title()} Service {run}")
        owners[user] = owner = owner_id(acme, name)
        for seeded in _monitors(acme, owner):
            assert _post(clients[user], f"/monitors/{seeded}/targets", targets=[_integration(acme, owner)]) == 302

    made = dict.fromkeys(_USERS, 0)
    for user, action, pick in steps:
        others_before = {u: _alerts(acme, owners[u]) for u in owners if u != user}
        if user not in clients:
            join(user)
        client, owner = clients[user], owners[user]
        mine = _monitors(acme, owner)
        if action == "create":
            made[user] += 1
            form: dict[str, str | list[str]] = {"name": f"{user.title()} Monitor {run}.{made[user]}", "kind": "metric", "target": "m",
                    "threshold": "5", "metric_value": "0", "targets": [_integration(acme, owner)]}  # fmt: skip
            assert _post(client, "/monitors/new", **form) == 302
        elif mine:
            monitor = mine[-1 - pick % len(mine)]
            path = f"/monitors/{monitor}/delete" if action == "delete" else f"/monitors/{monitor}/simulate"
            assert _post(client, path, mode=action) == 302
        for other, before in others_before.items():
            assert _alerts(acme, owners[other]) == before
        for viewer in owners:
            other = "bob" if viewer == "alice" else "alice"
            text = _pages(clients[viewer], _monitors(acme, owners[viewer]))
            assert f"{other.title()} Service {run}" not in text
            assert not re.search(rf"{other.title()} Monitor {run}\.\d", text)
        with _engine(acme).connect() as conn:
            for alert in conn.execute(sa.select(db.alerts)).all():
                owner_of_monitor = conn.execute(
                    sa.select(db.monitors.c.owner).where(db.monitors.c.id == alert.monitor_id)
                ).scalar_one_or_none()
                if not acme.app.config["ACME_TEST_LEGACY"]:
                    assert owner_of_monitor in (None, alert.owner), "an alert's monitor id names another user's monitor"
