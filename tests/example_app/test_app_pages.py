"""Acme's pages say what happened, keep a form's choices, and ask before deleting."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from example_app import db
from example_app.demo import RunningDemo
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.example_app.test_app import first_integration, monitor_ids, owner_id, paste, signed_in, token


def _flash(page: str) -> str:
    found = re.search(r'<p class="flash [a-z]+" role="status">([^<]*)</p>', page)
    assert found, page
    return found.group(1)


def test_a_monitor_alerting_no_service_says_nothing_was_sent(acme: RunningDemo) -> None:
    client = signed_in(acme, "alice")
    monitor_id = monitor_ids(acme, "alice")[0]
    assert "data-no-services" in client.get(f"/monitors/{monitor_id}").get_data(as_text=True)
    form = {"mode": "fail", "pdconnect_csrf": token(client, "/")}
    page = client.post(f"/monitors/{monitor_id}/simulate", data=form, follow_redirects=True).get_data(as_text=True)
    assert _flash(page) == "Checked Checkout API: down, but it alerts no PagerDuty service, so nothing was sent."


def test_a_monitor_alerting_a_service_says_where(acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox) -> None:
    client = signed_in(acme, "alice")
    paste(client, pagerduty_sandbox.service_key(), "On-call")
    monitor_id = monitor_ids(acme, "alice")[0]
    client.post(
        f"/monitors/{monitor_id}/targets",
        data={"targets": first_integration(acme), "pdconnect_csrf": token(client, "/")},
    )
    assert "data-no-services" not in client.get(f"/monitors/{monitor_id}").get_data(as_text=True)
    steps = [("fail", "down; an incident opened on 1 PagerDuty service(s)."), ("fail", "no change to send to PagerDuty."),
             ("recover", "up again; its incident resolved on 1 PagerDuty service(s).")]  # fmt: skip
    for mode, said in steps:
        form = {"mode": mode, "pdconnect_csrf": token(client, "/")}
        page = client.post(f"/monitors/{monitor_id}/simulate", data=form, follow_redirects=True).get_data(as_text=True)
        assert _flash(page) == f"Checked Checkout API: {said}"


def test_the_new_monitor_form_keeps_its_choices_after_an_error(
    acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox
) -> None:
    client = signed_in(acme, "alice")
    paste(client, pagerduty_sandbox.service_key(), "First")
    paste(client, pagerduty_sandbox.service_key("Database"), "Second")
    first, second = (i.id for i in acme.app.extensions["pdconnect"].store.list(owner_id(acme, "alice")))
    fresh = client.get("/monitors/new").get_data(as_text=True)
    assert fresh.count("checked>") == 2, "a new monitor alerts every service unless unticked"
    form = {"name": "", "kind": "metric", "target": "cpu", "operator": "below", "threshold": "3", "targets": second,
            "pdconnect_csrf": token(client, "/monitors/new")}  # fmt: skip
    response = client.post("/monitors/new", data=form)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert re.search(r'<option value="below"\s+selected>', page)
    assert re.search(r'<option value="metric"\s+selected>', page)
    assert re.search(rf'value="{second}"\s+checked>', page) and not re.search(rf'value="{first}"\s+checked>', page)


def test_deleting_a_monitor_asks_first(acme: RunningDemo) -> None:
    client = signed_in(acme, "alice")
    monitor_id = monitor_ids(acme, "alice")[0]
    page = client.get(f"/monitors/{monitor_id}").get_data(as_text=True)
    assert f'href="/monitors/{monitor_id}/delete"' in page, "the monitor page links to the question"
    question = client.get(f"/monitors/{monitor_id}/delete")
    assert question.status_code == 200 and "Delete Checkout API?" in question.get_data(as_text=True)
    assert len(monitor_ids(acme, "alice")) == 2, "asking deletes nothing"
    answer = client.post(f"/monitors/{monitor_id}/delete", data={"pdconnect_csrf": token(client, "/")})
    assert answer.status_code == 302 and len(monitor_ids(acme, "alice")) == 1
    assert signed_in(acme, "bob").get(f"/monitors/{monitor_ids(acme, 'alice')[0]}/delete").status_code == 404


def test_disconnecting_asks_first_and_names_the_monitors(
    acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox
) -> None:
    client = signed_in(acme, "alice")
    paste(client, pagerduty_sandbox.service_key(), "On-call")
    integration_id = first_integration(acme)
    monitor_id = monitor_ids(acme, "alice")[1]
    client.post(
        f"/monitors/{monitor_id}/targets", data={"targets": integration_id, "pdconnect_csrf": token(client, "/")}
    )
    settings_page = client.get("/settings/pagerduty").get_data(as_text=True)
    assert f'href="/settings/pagerduty/{integration_id}/disconnect"' in settings_page
    question = client.get(f"/settings/pagerduty/{integration_id}/disconnect").get_data(as_text=True)
    assert "Disconnect On-call?" in question and "These monitors stop alerting it: Error rate." in question
    assert f'action="/pagerduty/integrations/{integration_id}/delete"' in question
    assert acme.app.extensions["pdconnect"].store.list(owner_id(acme, "alice")), "asking disconnects nothing"


@pytest.mark.parametrize("hostile", ["", "nope", "%00", "%FF", "1' OR '1'='1", "x" * 5000, "..%2F..", "%ED%A0%80"])
def test_the_disconnect_question_finds_only_the_owners_own(
    acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox, hostile: str
) -> None:
    alice = signed_in(acme, "alice")
    paste(alice, pagerduty_sandbox.service_key(), "Alice's")
    alices = first_integration(acme)
    bob = signed_in(acme, "bob")
    assert bob.get(f"/settings/pagerduty/{alices}/disconnect").status_code == 404
    assert bob.get(f"/settings/pagerduty/{hostile}/disconnect").status_code == 404


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(hostile=st.text(min_size=1, max_size=40))
def test_any_disconnect_id_is_a_page(acme: RunningDemo, hostile: str) -> None:
    client = signed_in(acme, "alice")
    path = "/settings/pagerduty/" + hostile.encode("utf-8", "surrogatepass").decode("latin-1") + "/disconnect"
    assert client.get("/", environ_overrides={"PATH_INFO": path}).status_code in (404, 308)


def test_a_broken_service_asks_to_reconnect(acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox) -> None:
    client = signed_in(acme, "alice")
    paste(client, pagerduty_sandbox.service_key(), "On-call")
    store = acme.app.extensions["pdconnect"].store
    assert "data-reconnect" not in client.get("/settings/pagerduty").get_data(as_text=True)
    assert store.mark_broken(owner_id(acme, "alice"), first_integration(acme), "HTTP 400: Invalid routing key")
    page = client.get("/settings/pagerduty").get_data(as_text=True)
    assert "data-broken" in page and "data-reconnect" in page and "Invalid routing key" in page
    assert "paste it</a> above, then disconnect this one" in page, "a pasted key is replaced by pasting"


def test_an_unknown_monitor_or_service_is_404_even_for_its_question(acme: RunningDemo) -> None:
    client = signed_in(acme, "alice")
    engine: sa.Engine = acme.app.extensions["acme_engine"]
    with engine.connect() as conn:
        biggest = conn.execute(sa.select(sa.func.max(db.monitors.c.id))).scalar_one()
    assert client.get(f"/monitors/{biggest + 1}/delete").status_code == 404


def test_a_key_pagerduty_forgot_shows_reconnect_after_delivery(
    acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox
) -> None:
    client = signed_in(acme, "alice")
    key = pagerduty_sandbox.service_key("Database")
    paste(client, key, "Database on-call")
    monitor_id = monitor_ids(acme, "alice")[0]
    client.post(
        f"/monitors/{monitor_id}/targets",
        data={"targets": first_integration(acme), "pdconnect_csrf": token(client, "/")},
    )
    pagerduty_sandbox.disable_key(key)
    form = {"mode": "fail", "pdconnect_csrf": token(client, "/")}
    client.post(f"/monitors/{monitor_id}/simulate", data=form)
    acme.app.extensions["acme_worker"].run(until_empty=True)
    page = client.get("/settings/pagerduty").get_data(as_text=True)
    assert "data-broken" in page and "data-reconnect-link" in page
    assert key not in page, "the key is shown by its last four characters only"
