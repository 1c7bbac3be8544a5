"""Acme Monitoring without a browser: configuration, tenancy, monitors and what reaches PagerDuty."""

from __future__ import annotations

import itertools
import re
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from example_app import db
from example_app.config import DEMO_SECRET, InsecureConfiguration, load_config
from example_app.demo import RunningDemo
from example_app.monitoring import run_check
from pdconnect.monitors import Action
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox


def deliver(acme: RunningDemo) -> None:
    """Run the outbox's worker until everything queued is delivered (or dead)."""
    acme.app.extensions["acme_worker"].run(until_empty=True)


def token(client: FlaskClient, path: str = "/signin") -> str:
    found = re.search(r'name="pdconnect_csrf" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert found, path
    return found.group(1)


def signed_in(acme: RunningDemo, name: str) -> FlaskClient:
    client = acme.app.test_client()
    response = client.post("/signin", data={"name": name, "pdconnect_csrf": token(client)})
    assert response.status_code == 302
    return client


def paste(client: FlaskClient, key: str, name: str) -> None:
    form = {"integration_key": key, "service_name": name, "pdconnect_csrf": token(client, "/settings/pagerduty")}
    assert client.post("/pagerduty/integrations", data=form).status_code == 302


def owner_id(acme: RunningDemo, name: str) -> str:
    engine: sa.Engine = acme.app.extensions["acme_engine"]
    with engine.connect() as conn:
        return str(conn.execute(sa.select(db.users.c.id).where(db.users.c.name == name)).scalar_one())


def monitor_ids(acme: RunningDemo, owner_name: str) -> list[int]:
    engine: sa.Engine = acme.app.extensions["acme_engine"]
    with engine.connect() as conn:
        return [m.id for m in db.owner_monitors(conn, owner_id(acme, owner_name))]


def first_integration(acme: RunningDemo, owner_name: str = "alice") -> str:
    return str(acme.app.extensions["pdconnect"].store.list(owner_id(acme, owner_name))[0].id)


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "environ",
    [
        {"ACME_ENV": "production"},
        {"ACME_ENV": "production", "ACME_SECRET_KEY": DEMO_SECRET},
        {"ACME_ENV": "production", "ACME_SECRET_KEY": "short"},
        {"ACME_ENV": "prod", "ACME_SECRET_KEY": "changeme"},
    ],
)
def test_production_refuses_an_insecure_secret(environ: dict[str, str]) -> None:
    with pytest.raises(InsecureConfiguration, match="refusing to start"):
        load_config(environ)


def test_production_settings() -> None:
    config = load_config({"ACME_ENV": "production", "ACME_SECRET_KEY": "k" * 40, "PDCONNECT_APP_ID": "PREAL01",
                          "PDCONNECT_STATE_MAX_AGE": "300", "ACME_BASE_URL": "https://monitoring.acme.example/"})  # fmt: skip
    assert config["SESSION_COOKIE_SECURE"] is True
    assert config["PDCONNECT_APP_ID"] == "PREAL01"
    assert config["PDCONNECT_STATE_MAX_AGE"] == "300", "passed on as it is, for pdconnect to read"
    assert config["PDCONNECT_CLIENT_URL"] == "https://monitoring.acme.example"
    assert "PDCONNECT_EVENTS_BASE_URL" not in config, "real PagerDuty hosts unless told otherwise"


def test_a_refused_monitor_url_is_a_failing_check() -> None:
    monitor = db.Monitor(id=1, owner="1", name="m", kind="http", target="http://169.254.169.254/latest/meta-data/",
                         operator="at_or_above", threshold=0, metric_value=0, region="r", interval_seconds=30,
                         confirm_after=1, resolve_after=1, forced=None, state={}, last_checked_at=0, targets=())  # fmt: skip
    result = run_check(monitor)
    assert not result.ok and result.status == "refused"
    assert result.error and "private, loopback or link-local" in result.error


def test_development_defaults() -> None:
    config = load_config({})
    assert config["SECRET_KEY"] == DEMO_SECRET
    assert config["SESSION_COOKIE_SECURE"] is False


# -- users and tenancy -----------------------------------------------------------------------


def test_sign_in_seeds_two_monitors(acme: RunningDemo) -> None:
    client = signed_in(acme, "alice")
    page = client.get("/").get_data(as_text=True)
    assert "Checkout API" in page
    assert "Error rate" in page
    assert len(monitor_ids(acme, "alice")) == 2


def test_sign_in_needs_a_name_and_a_token(acme: RunningDemo) -> None:
    client = acme.app.test_client()
    assert client.post("/signin", data={"name": "", "pdconnect_csrf": token(client)}).status_code == 400
    assert client.post("/signin", data={"name": "alice"}).status_code == 400
    assert client.get("/").status_code == 302


def test_users_cannot_reach_each_others_monitors(acme: RunningDemo) -> None:
    alice = signed_in(acme, "alice")
    bob = signed_in(acme, "bob")
    alices = monitor_ids(acme, "alice")[0]
    assert alice.get(f"/monitors/{alices}").status_code == 200
    assert bob.get(f"/monitors/{alices}").status_code == 404
    form = {"mode": "fail", "pdconnect_csrf": token(bob, "/")}
    assert bob.post(f"/monitors/{alices}/simulate", data=form).status_code == 404
    assert bob.post(f"/monitors/{alices}/delete", data=form).status_code == 404
    assert len(monitor_ids(acme, "alice")) == 2


def test_users_cannot_use_each_others_services(acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox) -> None:
    alice = signed_in(acme, "alice")
    paste(alice, pagerduty_sandbox.service_key(), "Alice's")
    alice_integration = first_integration(acme)
    bob = signed_in(acme, "bob")
    bob_monitor = monitor_ids(acme, "bob")[0]
    form = {"targets": alice_integration, "pdconnect_csrf": token(bob, "/")}
    bob.post(f"/monitors/{bob_monitor}/targets", data=form)
    engine: sa.Engine = acme.app.extensions["acme_engine"]
    with engine.connect() as conn:
        assert db.targets_of(conn, bob_monitor) == ()


# -- monitors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": ""}, "Give the monitor a name"),
        ({"kind": "ping"}, "Choose an HTTP check or a metric"),
        ({"target": "ftp://x"}, "needs a URL starting with http"),
        ({"name": "Web\x00"}, "cannot hold control characters"),
        ({"kind": "metric", "target": "cpu\u0085load"}, "cannot hold control characters"),
        ({"region": "eu\x1b[31m"}, "cannot hold control characters"),
        ({"target": "http://169.254.169.254/latest/meta-data/"}, "Acme cannot check this URL"),
        ({"target": "http://[::ffff:10.0.0.1]/"}, "Acme cannot check this URL"),
        ({"target": "http://0xa9fea9fe/"}, "Acme cannot check this URL"),
        ({"target": "http://user:pw@example.com/"}, "Acme cannot check this URL"),
        ({"threshold": "lots"}, "must be numbers"),
        ({"threshold": "nan"}, "must be numbers"),
        ({"kind": "metric", "target": "cpu", "metric_value": "1e999"}, "must be numbers"),
        ({"interval_seconds": "1"}, "The interval is 5 s to a day"),
        ({"operator": "sideways"}, "at or above, above, at or below, or below"),
    ],
)
def test_monitor_form_refuses_bad_input(acme: RunningDemo, changes: dict[str, str], message: str) -> None:
    client = signed_in(acme, "alice")
    form = {"name": "Web", "kind": "http", "target": "http://127.0.0.1:9/x", "threshold": "0",
            "interval_seconds": "30", "operator": "at_or_above", "pdconnect_csrf": token(client, "/monitors/new")}  # fmt: skip
    form.update(changes)
    response = client.post("/monitors/new", data=form)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("operator", "value", "threshold", "ok"),
    [
        ("at_or_above", 5.0, 5.0, False),
        ("at_or_above", 4.9, 5.0, True),
        ("at_or_below", 1.0, 1.0, False),
        ("at_or_below", 1.1, 1.0, True),
    ],
)
def test_metric_checks(operator: str, value: float, threshold: float, ok: bool) -> None:
    monitor = db.Monitor(id=1, owner="1", name="m", kind="metric", target="errors", operator=operator,
                         threshold=threshold, metric_value=value, region="r", interval_seconds=30, confirm_after=1,
                         resolve_after=1, forced=None, state={}, last_checked_at=0, targets=())  # fmt: skip
    result = run_check(monitor)
    assert result.ok is ok
    assert result.value == value


def test_http_check_against_a_closed_port() -> None:
    monitor = db.Monitor(id=1, owner="1", name="m", kind="http", target="http://127.0.0.1:9/nothing",
                         operator="at_or_above", threshold=0, metric_value=0, region="r", interval_seconds=30,
                         confirm_after=1, resolve_after=1, forced=None, state={}, last_checked_at=0, targets=())  # fmt: skip
    result = run_check(
        monitor, networks=load_config({"ACME_MONITOR_ALLOWED_NETWORKS": "127.0.0.0/8"})["ACME_MONITOR_ALLOWED_NETWORKS"]
    )
    assert not result.ok
    assert result.error == "ConnectionRefusedError"


def _simulate(client: FlaskClient, monitor_id: int, mode: str, **extra: Any) -> None:
    form = {"mode": mode, "pdconnect_csrf": token(client, "/"), **extra}
    assert client.post(f"/monitors/{monitor_id}/simulate", data=form).status_code == 302


def test_fail_trigger_recover_resolve_with_details(acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox) -> None:
    client = signed_in(acme, "alice")
    paste(client, pagerduty_sandbox.service_key(), "On-call")
    monitor_id = monitor_ids(acme, "alice")[0]
    integration_id = first_integration(acme)
    client.post(
        f"/monitors/{monitor_id}/targets", data={"targets": integration_id, "pdconnect_csrf": token(client, "/")}
    )
    _simulate(client, monitor_id, "fail")
    assert "trigger queued" in client.get("/incidents").get_data(as_text=True)
    deliver(acme)
    incident = pagerduty_sandbox.incident_for(f"monitor/acme-{monitor_id}")
    assert incident["status"] == "triggered"
    assert incident["title"] == "Checkout API is down: simulated failure (eu-west-1)"
    alert = incident["alerts"][0]
    assert alert["client"] == "Acme Monitoring"
    assert alert["client_url"] == f"{acme.url}/monitors/{monitor_id}"
    details = alert["details"]
    assert details["monitor"] == "Checkout API"
    assert details["target"] == f"{acme.url}/demo/checkout"
    assert details["status"] == "simulated failure"
    assert details["error"] == "Simulated outage (demo control)"
    assert details["region"] == "eu-west-1"
    assert "failing_for_seconds" in details
    _simulate(client, monitor_id, "fail")  # still failing: nothing new sent
    deliver(acme)
    assert len(pagerduty_sandbox.incidents_for(f"monitor/acme-{monitor_id}")) == 1
    _simulate(client, monitor_id, "recover")
    deliver(acme)
    assert pagerduty_sandbox.incident_for(f"monitor/acme-{monitor_id}")["status"] == "resolved"
    page = client.get("/incidents").get_data(as_text=True)
    assert "resolved" in page


def test_confirmation_and_recovery_counts(acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox) -> None:
    """Fail once (nothing), fail again (trigger), recover once (nothing), recover again (resolve)."""
    client = signed_in(acme, "alice")
    paste(client, pagerduty_sandbox.service_key(), "On-call")
    monitor_id = monitor_ids(acme, "alice")[0]
    engine: sa.Engine = acme.app.extensions["acme_engine"]
    with engine.begin() as conn:
        conn.execute(
            sa.update(db.monitors).where(db.monitors.c.id == monitor_id).values(confirm_after=2, resolve_after=2)
        )
    client.post(
        f"/monitors/{monitor_id}/targets",
        data={"targets": first_integration(acme), "pdconnect_csrf": token(client, "/")},
    )
    key = f"monitor/acme-{monitor_id}"
    steps = [("fail", []), ("fail", ["triggered"]), ("recover", ["triggered"]), ("recover", ["resolved"])]
    for mode, expected in steps:
        _simulate(client, monitor_id, mode)
        deliver(acme)
        assert [i["status"] for i in pagerduty_sandbox.incidents_for(key)] == expected, mode
    page = client.get(f"/monitors/{monitor_id}").get_data(as_text=True)
    assert "pages after 2 failure(s)" in page and "resolves after 2 success(es)" in page


def test_metric_monitor_through_its_value(acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox) -> None:
    client = signed_in(acme, "alice")
    paste(client, pagerduty_sandbox.service_key(), "On-call")
    monitor_id = monitor_ids(acme, "alice")[1]  # Error rate, at or above 5
    integration_id = first_integration(acme)
    client.post(
        f"/monitors/{monitor_id}/targets", data={"targets": integration_id, "pdconnect_csrf": token(client, "/")}
    )
    _simulate(client, monitor_id, "real", metric_value="7.5")
    deliver(acme)
    incident = pagerduty_sandbox.incident_for(f"monitor/acme-{monitor_id}")
    assert "checkout.errors_per_minute = 7.5 (at or above 5)" in incident["title"]
    _simulate(client, monitor_id, "real", metric_value="1")
    deliver(acme)
    assert pagerduty_sandbox.incident_for(f"monitor/acme-{monitor_id}")["status"] == "resolved"


def test_a_rejected_key_is_recorded_and_marked_failing(acme: RunningDemo) -> None:
    client = signed_in(acme, "alice")
    paste(client, "f" * 32, "Unknown to PagerDuty")
    monitor_id = monitor_ids(acme, "alice")[0]
    integration_id = first_integration(acme)
    client.post(
        f"/monitors/{monitor_id}/targets", data={"targets": integration_id, "pdconnect_csrf": token(client, "/")}
    )
    _simulate(client, monitor_id, "fail")
    deliver(acme)
    page = client.get("/incidents").get_data(as_text=True)
    assert "trigger refused by PagerDuty" in page
    assert acme.app.extensions["pdconnect"].store.get(owner_id(acme, "alice"), integration_id).failing


def test_the_schedule_checks_due_monitors(acme: RunningDemo) -> None:
    signed_in(acme, "alice")
    monitoring = acme.app.extensions["acme_monitoring"]
    assert monitoring.run_due(now=10**10) == 2
    assert monitoring.run_due(now=0) == 0
    engine: sa.Engine = acme.app.extensions["acme_engine"]
    with engine.connect() as conn:
        states = [m.state["status"] for m in db.owner_monitors(conn, owner_id(acme, "alice"))]
    assert states == ["up", "up"], "the seeded HTTP check reaches the app's own healthy endpoint"


def test_check_of_a_deleted_monitor_is_nothing(acme: RunningDemo) -> None:
    assert acme.app.extensions["acme_monitoring"].check(999) is Action.NONE


def test_unknown_pages_are_friendly(acme: RunningDemo) -> None:
    client = signed_in(acme, "alice")
    response = client.get("/nope")
    assert response.status_code == 404
    assert "There is nothing here." in response.get_data(as_text=True)


def test_alertmanager_from_the_settings_page(acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox) -> None:
    """The token on the settings page lets the user's Alertmanager page their services."""
    client = signed_in(acme, "alice")
    paste(client, pagerduty_sandbox.service_key(), "On-call")
    page = client.get("/settings/pagerduty").get_data(as_text=True)
    assert "webhook_configs" in page and "/pagerduty/alertmanager" in page
    form = {"pdconnect_csrf": token(client, "/settings/pagerduty")}
    page = client.post("/settings/alertmanager-token", data=form).get_data(as_text=True)
    found = re.search(r"<code class=\"secret\" data-alertmanager-token>([^<]+)</code>", page)
    assert found
    payload = (Path(__file__).parent.parent / "data" / "alertmanager" / "firing.json").read_bytes()
    response = client.post(
        "/pagerduty/alertmanager", data=payload, headers={"Authorization": f"Bearer {found.group(1)}"}
    )
    assert response.status_code == 202 and response.json is not None and response.json["enqueued"] == 1
    deliver(acme)
    titles = [i["title"] for i in pagerduty_sandbox.incidents()]
    assert "[CRITICAL] [FIRING:2] prod HighLatency" in titles


_fuzz_users = itertools.count()
_FIELDS = ["name", "kind", "target", "threshold", "metric_value", "interval_seconds", "confirm_after", "resolve_after",
           "operator", "region", "targets"]  # fmt: skip
_AWKWARD = ["nan", "inf", "-inf", "1e999", "NaN", "0", "-1", "5", "30", "http://127.0.0.1:9/x", "metric", "http",
            "real", "fail", "recover", "at_or_above", "below"]  # fmt: skip
_form_values = st.one_of(st.text(max_size=12), st.sampled_from(_AWKWARD))
_monitor_form = st.dictionaries(st.sampled_from(_FIELDS), _form_values)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(form=_monitor_form, simulate=st.dictionaries(st.sampled_from(["mode", "metric_value"]), _form_values))
def test_any_monitor_form_is_a_page_never_a_server_error(
    acme: RunningDemo, form: dict[str, str], simulate: dict[str, str]
) -> None:
    user = f"fuzz-{next(_fuzz_users)}"  # each example starts with the two seeded monitors
    client = signed_in(acme, user)
    response = client.post("/monitors/new", data={**form, "pdconnect_csrf": token(client, "/monitors/new")})
    assert response.status_code in (302, 400), response.status_code
    for monitor_id in monitor_ids(acme, user):
        csrf = token(client, f"/monitors/{monitor_id}")
        response = client.post(f"/monitors/{monitor_id}/simulate", data={**simulate, "pdconnect_csrf": csrf})
        assert response.status_code in (302, 400), response.status_code
        assert client.get(f"/monitors/{monitor_id}").status_code == 200
    assert client.get("/").status_code == 200


def test_checks_of_one_monitor_at_once_raise_one_alert(acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox) -> None:
    """The schedule and a "simulate" click can check one monitor at the same moment."""
    client = signed_in(acme, "alice")
    paste(client, pagerduty_sandbox.service_key(), "On-call")
    monitor_id = monitor_ids(acme, "alice")[0]
    client.post(
        f"/monitors/{monitor_id}/targets",
        data={"targets": first_integration(acme), "pdconnect_csrf": token(client, "/")},
    )
    engine: sa.Engine = acme.app.extensions["acme_engine"]
    with engine.begin() as conn:
        conn.execute(sa.update(db.monitors).where(db.monitors.c.id == monitor_id).values(forced="fail"))
    monitoring = acme.app.extensions["acme_monitoring"]
    start = threading.Barrier(8)

    def check() -> None:
        start.wait()
        monitoring.check(monitor_id)

    threads = [threading.Thread(target=check) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    with engine.connect() as conn:
        alerts = conn.execute(sa.select(db.alerts).where(db.alerts.c.monitor_id == monitor_id)).all()
    assert len(alerts) == 1, "one incident, however many checks ran at once"
