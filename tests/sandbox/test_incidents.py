"""Responder actions in the sandbox, through its control API and its pages."""

from __future__ import annotations

import re

import pytest
import requests

from pdconnect import Sender
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox


@pytest.fixture
def incident(pagerduty_sandbox: PagerDutySandbox) -> dict[str, str]:
    with Sender(
        events_base_url=pagerduty_sandbox.url, client="Acme Monitoring", client_url="https://acme.example/m/7"
    ) as sender:
        sender.trigger(
            pagerduty_sandbox.service_key(), "Checkout is down", source="checkout", severity="critical", dedup_key="m7"
        )
    return pagerduty_sandbox.incident_for("m7")


def _users(sandbox: PagerDutySandbox) -> dict[str, str]:
    return {u["name"]: u["id"] for u in sandbox.state()["users"] if u["account"] == "acme"}


def test_a_trigger_is_assigned_to_level_one(pagerduty_sandbox: PagerDutySandbox, incident: dict[str, str]) -> None:
    assert incident["assignees"] == [_users(pagerduty_sandbox)["Alex Responder"]]
    assert incident["escalation_level"] == 1


def test_acknowledge_unacknowledge_resolve(pagerduty_sandbox: PagerDutySandbox, incident: dict[str, str]) -> None:
    assert pagerduty_sandbox.act(incident["id"], "acknowledge")["status"] == "acknowledged"
    assert pagerduty_sandbox.act(incident["id"], "unacknowledge")["status"] == "triggered"
    resolved = pagerduty_sandbox.act(incident["id"], "resolve")
    assert resolved["status"] == "resolved"
    assert resolved["alerts"][0]["status"] == "resolved"
    # Resolved in PagerDuty: a later trigger with the same key opens a new incident.
    with Sender(events_base_url=pagerduty_sandbox.url) as sender:
        sender.trigger(pagerduty_sandbox.service_key(), "Again", source="checkout", severity="critical", dedup_key="m7")
    assert len(pagerduty_sandbox.incidents_for("m7")) == 2


def test_reassign_escalate_delegate_priority_note(
    pagerduty_sandbox: PagerDutySandbox, incident: dict[str, str]
) -> None:
    users = _users(pagerduty_sandbox)
    assert pagerduty_sandbox.act(incident["id"], "reassign", assignee=users["Kim Manager"])["assignees"] == [
        users["Kim Manager"]
    ]
    escalated = pagerduty_sandbox.act(incident["id"], "escalate")
    assert escalated["escalation_level"] == 2
    assert escalated["assignees"] == [users["Sam Oncall"]]
    management = next(
        p["id"]
        for p in pagerduty_sandbox.state()["escalation_policies"]
        if p["name"] == "Management" and p["account"] == "acme"
    )
    delegated = pagerduty_sandbox.act(incident["id"], "delegate", escalation_policy=management)
    assert (delegated["escalation_policy"], delegated["assignees"]) == (management, [users["Kim Manager"]])
    assert pagerduty_sandbox.act(incident["id"], "priority", priority="P1")["priority"] == "P1"
    noted = pagerduty_sandbox.act(incident["id"], "annotate", note="Rolling back the deploy")
    assert noted["timeline"][-1]["summary"].endswith("Rolling back the deploy")
    kinds = [entry["type"] for entry in noted["timeline"]]
    assert kinds == [
        "trigger_log_entry",
        "assign_log_entry",
        "escalate_log_entry",
        "delegate_log_entry",
        "priority_change_log_entry",
        "annotate_log_entry",
    ]


@pytest.mark.parametrize(
    ("action", "options", "message"),
    [
        ("unacknowledge", {}, "Only an acknowledged incident"),
        ("reassign", {"assignee": "PNOBODY"}, "Choose a responder"),
        ("delegate", {"escalation_policy": "PNOPE"}, "Choose an escalation policy"),
        ("priority", {"priority": "P9"}, "P1 to P5"),
        ("annotate", {"note": "  "}, "needs some text"),
        ("dance", {}, "Unknown action"),
    ],
)
def test_bad_actions_are_refused(
    pagerduty_sandbox: PagerDutySandbox, incident: dict[str, str], action: str, options: dict[str, str], message: str
) -> None:
    with pytest.raises(AssertionError, match=message):
        pagerduty_sandbox.act(incident["id"], action, **options)


def test_a_resolved_incident_cannot_be_acknowledged(
    pagerduty_sandbox: PagerDutySandbox, incident: dict[str, str]
) -> None:
    pagerduty_sandbox.act(incident["id"], "resolve")
    with pytest.raises(AssertionError, match="409"):
        pagerduty_sandbox.act(incident["id"], "acknowledge")


def test_unknown_incident(pagerduty_sandbox: PagerDutySandbox) -> None:
    with pytest.raises(AssertionError, match="404"):
        pagerduty_sandbox.act("QNOPE", "acknowledge")


def test_incident_page_shows_the_timeline_and_view_in_client(
    pagerduty_sandbox: PagerDutySandbox, incident: dict[str, str]
) -> None:
    page = requests.get(f"{pagerduty_sandbox.url}/incidents/{incident['id']}", timeout=10).text
    assert 'href="https://acme.example/m/7"' in page
    assert "View in Acme Monitoring" in page
    assert "&#34;summary&#34;: &#34;Checkout is down&#34;" in page, "the raw JSON of the event is shown, escaped"
    for label in ("Acknowledge", "Resolve", "Escalate", "Reassign", "Delegate", "Set priority", "Add note"):
        assert f">{label}</button>" in page


def test_page_buttons_act(pagerduty_sandbox: PagerDutySandbox, incident: dict[str, str]) -> None:
    url = f"{pagerduty_sandbox.url}/incidents/{incident['id']}/actions"
    response = requests.post(url, data={"action": "acknowledge"}, allow_redirects=False, timeout=10)
    assert response.status_code == 303
    page = requests.get(pagerduty_sandbox.url + response.headers["Location"], timeout=10).text
    assert re.search(r'data-status="acknowledged"', page)
    assert "Done: acknowledge." in page


def test_pages_render(pagerduty_sandbox: PagerDutySandbox, incident: dict[str, str]) -> None:
    service = pagerduty_sandbox.service("Checkout API")
    for path in ("/", "/incidents", "/webhooks", "/apps", "/received", f"/services/{service['id']}"):
        response = requests.get(pagerduty_sandbox.url + path, timeout=10)
        assert response.status_code == 200, path
        assert response.headers["Content-Type"].startswith("text/html")
    assert requests.get(pagerduty_sandbox.url + "/services/PNOPE", timeout=10).status_code == 404
    assert requests.get(pagerduty_sandbox.url + "/nowhere", timeout=10).status_code == 404


def test_services_can_be_made_in_the_pages(pagerduty_sandbox: PagerDutySandbox) -> None:
    response = requests.post(
        pagerduty_sandbox.url + "/services", data={"account": "acme", "name": "Payments"}, timeout=10
    )
    assert response.status_code == 200
    assert pagerduty_sandbox.service_key("Payments")
