"""Conformance of the sandbox's events endpoints with PagerDuty's documentation and schemas."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.openapi import response_validator

V2 = "/v2/enqueue"
CHANGE = "/v2/change/enqueue"
V1 = "/generic/2010-04-15/create_event.json"


def post(sandbox: PagerDutySandbox, path: str, body: Any) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(sandbox.url + path, data=data, headers={"Content-Type": "application/json"}, timeout=10)


def trigger(key: str, dedup: str | None = "k1", **payload: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "routing_key": key,
        "event_action": "trigger",
        "payload": {"summary": "CPU high", "source": "web-1", "severity": "critical", **payload},
    }
    if dedup is not None:
        event["dedup_key"] = dedup
    return event


def action(key: str, name: str, dedup: str = "k1") -> dict[str, Any]:
    return {"routing_key": key, "event_action": name, "dedup_key": dedup}


def legacy(key: str, event_type: str, incident_key: str | None = "i1", **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {"service_key": key, "event_type": event_type, **fields}
    if incident_key is not None:
        event["incident_key"] = incident_key
    if event_type == "trigger":
        event.setdefault("description", "Disk full on db-1")
    return event


# -- answers and their bodies ----------------------------------------------------------------


def test_v2_202_body_matches_the_schema(pagerduty_sandbox: PagerDutySandbox) -> None:
    response = post(pagerduty_sandbox, V2, trigger(pagerduty_sandbox.service_key()))
    assert response.status_code == 202
    assert response.json() == {"status": "success", "message": "Event processed", "dedup_key": "k1"}
    response_validator("alert", "202").validate(response.json())


def test_v2_trigger_without_dedup_key_gets_one(pagerduty_sandbox: PagerDutySandbox) -> None:
    first = post(pagerduty_sandbox, V2, trigger(pagerduty_sandbox.service_key(), dedup=None)).json()["dedup_key"]
    second = post(pagerduty_sandbox, V2, trigger(pagerduty_sandbox.service_key(), dedup=None)).json()["dedup_key"]
    assert first != second
    assert len(pagerduty_sandbox.incidents()) == 2, "a trigger without a dedup key always opens a new alert"


def test_v1_200_body(pagerduty_sandbox: PagerDutySandbox) -> None:
    response = post(
        pagerduty_sandbox, V1, legacy(pagerduty_sandbox.service_key(), "trigger", vendor="2fc7c9f3c8030e74aae6")
    )
    assert response.status_code == 200
    assert response.json() == {"status": "success", "message": "Event processed", "incident_key": "i1"}
    response_validator("legacy", "200").validate(response.json())


def test_change_event_202(pagerduty_sandbox: PagerDutySandbox) -> None:
    body = {"routing_key": pagerduty_sandbox.service_key(), "payload": {"summary": "Deployed v42", "source": "ci"}}
    response = post(pagerduty_sandbox, CHANGE, body)
    assert response.status_code == 202
    assert response.json()["status"] == "success"
    assert not pagerduty_sandbox.incidents(), "change events never open incidents"


@pytest.mark.parametrize(
    ("path", "body", "status_text", "errors"),
    [
        (V2, b"not json", "Unrecognized object", ["JSON parse error"]),
        (V2, b"[1, 2]", "Unrecognized object", ["JSON parse error"]),
        (V1, b"{", "unrecognized object", ["JSON parse error"]),
        (V2, {}, "invalid event", ["'routing_key' cannot be blank", "'event_action' is missing or blank"]),
        (
            V2,
            {
                "routing_key": "short",
                "event_action": "trigger",
                "payload": {"summary": "s", "source": "h", "severity": "info"},
            },
            "invalid event",
            ["Length of 'routing_key' is incorrect (should be 32 characters)"],
        ),
        (
            V2,
            {"routing_key": "e+23rschqsESqk9Q6_-g" + "x" * 12, "event_action": "resolve", "dedup_key": "k"},
            "invalid event",
            ["'routing_key' cannot contain non-alphanumeric characters."],
        ),
        (
            V2,
            {"routing_key": "a" * 32, "event_action": "escalate"},
            "invalid event",
            ["'event_action' is invalid (must be one of: trigger acknowledge resolve)"],
        ),
        (
            V2,
            {"routing_key": "a" * 32, "event_action": "resolve"},
            "invalid event",
            ["'dedup_key' is missing or blank"],
        ),
        (
            V2,
            {"routing_key": "a" * 32, "event_action": "resolve", "dedup_key": "k" * 256},
            "invalid event",
            ["'dedup_key' is too long (maximum is 255 characters)"],
        ),
        (V2, {"routing_key": "a" * 32, "event_action": "trigger"}, "invalid event", ["'payload' is missing or blank"]),
        (
            V2,
            {"routing_key": "a" * 32, "event_action": "trigger", "payload": {"severity": "high"}},
            "invalid event",
            [
                "'payload.summary' is missing or blank",
                "'payload.source' is missing or blank",
                "'payload.severity' is invalid (must be one of: critical error warning info)",
            ],
        ),
        (
            V1,
            {"service_key": "a" * 32, "event_type": "nope"},
            "invalid event",
            ["event_type is invalid (must be one of: trigger acknowledge resolve)"],
        ),
        (
            V1,
            {"service_key": "a" * 32, "event_type": "trigger"},
            "invalid event",
            ["'description' is missing or blank"],
        ),
        (
            V1,
            {"service_key": "a" * 32, "event_type": "resolve"},
            "invalid event",
            ["'incident_key' is missing or blank"],
        ),
        (CHANGE, {"routing_key": "a" * 32}, "invalid event", ["'payload' is missing or blank"]),
        (
            V2,
            {"routing_key": "a" * 32, "event_action": "resolve", "dedup_key": "k"},
            "invalid event",
            ["Invalid routing key"],
        ),
        (
            V1,
            {"service_key": "a" * 32, "event_type": "resolve", "incident_key": "k"},
            "invalid event",
            ["Invalid service key"],
        ),
    ],
)
def test_400_bodies(
    pagerduty_sandbox: PagerDutySandbox, path: str, body: Any, status_text: str, errors: list[str]
) -> None:
    response = post(pagerduty_sandbox, path, body)
    assert response.status_code == 400
    data = response.json()
    assert data["status"] == status_text
    assert data["message"] in ("Event object is invalid", "Event object format is unrecognized")
    assert data["errors"] == errors


def test_ruleset_keys_take_alerts_but_not_change_events(pagerduty_sandbox: PagerDutySandbox) -> None:
    key = pagerduty_sandbox.ruleset_key()
    assert post(pagerduty_sandbox, V2, trigger(key)).status_code == 202
    assert pagerduty_sandbox.incident_for("k1")["service"] == pagerduty_sandbox.service("Checkout API")["id"]
    response = post(pagerduty_sandbox, CHANGE, {"routing_key": key, "payload": {"summary": "deploy"}})
    assert response.status_code == 400


def test_body_over_512_kb_is_refused(pagerduty_sandbox: PagerDutySandbox) -> None:
    event = trigger(pagerduty_sandbox.service_key(), custom_details={"log": "x" * (512 * 1024)})
    response = post(pagerduty_sandbox, V2, event)
    assert response.status_code == 400
    assert "too large" in response.json()["errors"][0]


def test_only_post(pagerduty_sandbox: PagerDutySandbox) -> None:
    assert requests.get(pagerduty_sandbox.url + V2, timeout=10).status_code == 405


# -- dedup semantics -------------------------------------------------------------------------


def test_trigger_opens_then_appends(pagerduty_sandbox: PagerDutySandbox) -> None:
    key = pagerduty_sandbox.service_key()
    post(pagerduty_sandbox, V2, trigger(key))
    post(pagerduty_sandbox, V2, trigger(key, summary="CPU still high"))
    incidents = pagerduty_sandbox.incidents_for("k1")
    assert len(incidents) == 1
    incident = incidents[0]
    assert incident["status"] == "triggered"
    assert incident["urgency"] == "high"
    assert [e["type"] for e in incident["timeline"]] == ["trigger_log_entry", "trigger_log_entry"]
    assert incident["timeline"][0]["channel"]["raw"]["payload"]["summary"] == "CPU high"


def test_acknowledge_then_resolve(pagerduty_sandbox: PagerDutySandbox) -> None:
    key = pagerduty_sandbox.service_key()
    post(pagerduty_sandbox, V2, trigger(key))
    post(pagerduty_sandbox, V2, action(key, "acknowledge"))
    assert pagerduty_sandbox.incident_for("k1")["status"] == "acknowledged"
    post(pagerduty_sandbox, V2, action(key, "resolve"))
    incident = pagerduty_sandbox.incident_for("k1")
    assert incident["status"] == "resolved"
    assert incident["alerts"][0]["status"] == "resolved"


@pytest.mark.parametrize("name", ["acknowledge", "resolve"])
def test_ack_or_resolve_without_an_open_alert_is_dropped_with_202(
    pagerduty_sandbox: PagerDutySandbox, name: str
) -> None:
    response = post(pagerduty_sandbox, V2, action(pagerduty_sandbox.service_key(), name, "never-triggered"))
    assert response.status_code == 202
    assert not pagerduty_sandbox.incidents()
    assert pagerduty_sandbox.received()[-1]["outcome"].startswith("dropped")


def test_trigger_after_resolve_opens_a_new_incident(pagerduty_sandbox: PagerDutySandbox) -> None:
    key = pagerduty_sandbox.service_key()
    post(pagerduty_sandbox, V2, trigger(key))
    post(pagerduty_sandbox, V2, action(key, "resolve"))
    post(pagerduty_sandbox, V2, action(key, "resolve"))  # dropped: nothing open
    post(pagerduty_sandbox, V2, trigger(key))
    first, second = pagerduty_sandbox.incidents_for("k1")
    assert (first["status"], second["status"]) == ("resolved", "triggered")
    assert second["number"] == first["number"] + 1


def test_events_through_another_key_do_not_touch_it(pagerduty_sandbox: PagerDutySandbox) -> None:
    key = pagerduty_sandbox.service_key("Checkout API")
    other = pagerduty_sandbox.service_key("Database")
    post(pagerduty_sandbox, V2, trigger(key))
    assert post(pagerduty_sandbox, V2, action(other, "resolve")).status_code == 202
    assert pagerduty_sandbox.incident_for("k1")["status"] == "triggered"
    post(pagerduty_sandbox, V2, trigger(other))
    assert len(pagerduty_sandbox.incidents_for("k1")) == 2


def test_legacy_api_has_the_same_semantics(pagerduty_sandbox: PagerDutySandbox) -> None:
    key = pagerduty_sandbox.service_key()
    post(pagerduty_sandbox, V1, legacy(key, "trigger", client="Acme", client_url="https://acme.example/m/1"))
    post(pagerduty_sandbox, V1, legacy(key, "acknowledge"))
    assert pagerduty_sandbox.incident_for("i1")["status"] == "acknowledged"
    post(pagerduty_sandbox, V1, legacy(key, "resolve"))
    incident = pagerduty_sandbox.incident_for("i1")
    assert incident["status"] == "resolved"
    assert incident["alerts"][0]["client_url"] == "https://acme.example/m/1"


def test_low_severity_is_low_urgency(pagerduty_sandbox: PagerDutySandbox) -> None:
    post(pagerduty_sandbox, V2, trigger(pagerduty_sandbox.service_key(), severity="warning"))
    assert pagerduty_sandbox.incident_for("k1")["urgency"] == "low"


# -- rate limiting ---------------------------------------------------------------------------


def test_rate_limit_per_key_answers_429_on_v2_and_403_on_v1(pagerduty_sandbox: PagerDutySandbox) -> None:
    pagerduty_sandbox.set_settings(rate_limit=3)
    key = pagerduty_sandbox.service_key()
    other = pagerduty_sandbox.service_key("Database")
    statuses = [post(pagerduty_sandbox, V2, trigger(key, dedup=f"k{i}")).status_code for i in range(5)]
    assert statuses == [202, 202, 202, 429, 429]
    assert post(pagerduty_sandbox, V2, trigger(other)).status_code == 202, "the limit is per key"
    assert post(pagerduty_sandbox, V1, legacy(key, "trigger")).status_code == 403
    assert len(pagerduty_sandbox.incidents()) == 4, "rate-limited events are not ingested"


def test_rate_limit_off(pagerduty_sandbox: PagerDutySandbox) -> None:
    pagerduty_sandbox.set_settings(rate_limit=None)
    key = pagerduty_sandbox.service_key()
    assert all(post(pagerduty_sandbox, V2, trigger(key, dedup=f"k{i}")).status_code == 202 for i in range(130))


def test_default_limit_is_120_a_minute(pagerduty_sandbox: PagerDutySandbox) -> None:
    key = pagerduty_sandbox.service_key()
    statuses = [post(pagerduty_sandbox, V2, action(key, "resolve", f"k{i}")).status_code for i in range(121)]
    assert statuses.count(202) == 120
    assert statuses[-1] == 429


# -- the log of received events --------------------------------------------------------------


def test_everything_received_is_recorded_in_order(pagerduty_sandbox: PagerDutySandbox) -> None:
    key = pagerduty_sandbox.service_key()
    post(pagerduty_sandbox, V2, trigger(key))
    post(pagerduty_sandbox, V2, b"junk")
    post(pagerduty_sandbox, V2, action(key, "resolve"))
    received = pagerduty_sandbox.received()
    assert [r["status"] for r in received] == [202, 400, 202]
    assert [r["action"] for r in received] == ["trigger", None, "resolve"]
    assert received[1]["request"] == "junk"
    assert [r["seq"] for r in received] == sorted(r["seq"] for r in received)
    assert pagerduty_sandbox.received(since=received[1]["seq"]) == received[2:]
    assert pagerduty_sandbox.received(routing_key="b" * 32) == []


_values = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40), st.lists(st.integers(), max_size=3))


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.dictionaries(
        st.sampled_from(["routing_key", "event_action", "dedup_key", "payload", "links", "images", "client"]),
        _values,
        max_size=6,
    )
)
def test_any_body_gets_a_documented_answer(pagerduty_sandbox: PagerDutySandbox, body: dict[str, Any]) -> None:
    response = post(pagerduty_sandbox, V2, body)
    assert response.status_code in (202, 400)
    data = response.json()
    assert set(data) >= {"status", "message"}


def test_the_wsgi_path_answers_like_the_fast_path(pagerduty_sandbox: PagerDutySandbox) -> None:
    """The server answers events itself; the WSGI application (used for other servers) must agree."""
    from werkzeug.test import Client

    from pdconnect.sandbox.app import SandboxApp

    client = Client(SandboxApp(pagerduty_sandbox.sandbox))
    key = pagerduty_sandbox.service_key()
    answer = client.post(V2, data=json.dumps(trigger(key)), content_type="application/json")
    assert (answer.status_code, answer.json) == (
        202,
        {"status": "success", "message": "Event processed", "dedup_key": "k1"},
    )
    answer = client.post(V1, data=b"{", content_type="application/json")
    assert answer.status_code == 400
    assert answer.json["status"] == "unrecognized object"
    answer = client.post(CHANGE, data=json.dumps({"routing_key": key, "payload": {"summary": "d"}}))
    assert answer.status_code == 202


def test_chunked_bodies_are_read(pagerduty_sandbox: PagerDutySandbox) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        yield json.dumps(trigger(pagerduty_sandbox.service_key())).encode()

    response = requests.post(pagerduty_sandbox.url + V2, data=chunks(), timeout=10)
    assert response.status_code == 202
