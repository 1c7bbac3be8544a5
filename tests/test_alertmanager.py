"""Alertmanager's webhook payload (captured from Alertmanager 0.25) as Events API v2 events."""

from __future__ import annotations

import contextlib
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect import Sender
from pdconnect.alertmanager import (
    AlertGroup,
    details_of,
    parse_alertmanager,
    severity_of,
    summary_of,
    to_event,
)
from pdconnect.errors import PayloadInvalid
from pdconnect.events import Severity
from tests.conftest import SERVICE_KEY
from tests.openapi import assert_valid_request

DATA = Path(__file__).parent / "data" / "alertmanager"


def payload(name: str) -> dict[str, Any]:
    """A payload Alertmanager 0.25 really sent (see tests/data/alertmanager/)."""
    return json.loads((DATA / f"{name}.json").read_text())  # type: ignore[no-any-return]


def group(name: str = "firing", **changes: Any) -> AlertGroup:
    return parse_alertmanager(json.dumps({**payload(name), **changes}).encode())


def test_a_firing_group_is_one_trigger() -> None:
    parsed = group("firing")
    assert parsed.group_key == '{}:{alertname="HighLatency", env="prod"}'
    assert len(parsed.alerts) == len(parsed.firing) == 2 and not parsed.resolved
    first = parsed.alerts[0]
    assert first.starts_at == datetime(2026, 11, 22, 8, 29, 2, 389344, tzinfo=UTC), "nanoseconds cut to micro"
    assert first.ends_at is None, "Alertmanager's zero time means no end yet"
    event = to_event(parsed)
    assert event.action == "trigger"
    assert event.dedup_key == hashlib.sha256(parsed.group_key.encode()).hexdigest() == parsed.dedup_key
    assert event.summary == "[CRITICAL] [FIRING:2] prod HighLatency"
    assert event.severity == "critical"
    assert event.source == "checkout", "the common job label (instances differ)"
    assert event.event_class == "HighLatency" and event.group == "checkout"
    assert event.client == "Alertmanager" and event.client_url == "http://vm:9912"
    assert event.timestamp == first.starts_at
    assert [link.href for link in event.links] == ["http://prometheus.local:9090/graph?g0.expr=latency"] * 2
    details = event.custom_details
    assert (details["firing"], details["resolved"], details["receiver"]) == (2, 0, "pd")
    assert details["commonLabels"]["severity"] == "critical"
    assert details["groupLabels"] == {"alertname": "HighLatency", "env": "prod"}
    alert = details["alerts"][0]
    assert alert["labels"]["instance"] == "checkout-1:9100"
    assert alert["annotations"]["description"] == "checkout p99 latency is 2.4s"
    assert alert["fingerprint"] == "b2f8213f1e2a7ae8" and alert["endsAt"] is None
    body = json.loads(Sender(client="x").prepare(SERVICE_KEY, event).body)
    assert_valid_request("alert", body)


def test_a_mixed_group_still_triggers_with_the_count() -> None:
    parsed = group("mixed")
    assert [a.status for a in parsed.alerts] == ["resolved", "firing"]
    event = to_event(parsed)
    assert event.action == "trigger" and event.summary == "[CRITICAL] [FIRING:1] prod HighLatency"
    assert event.dedup_key == group("firing").dedup_key, "the same incident"
    assert (event.custom_details["firing"], event.custom_details["resolved"]) == (1, 1)
    assert event.custom_details["alerts"][0]["status"] == "firing", "firing alerts come first"
    assert len(event.links) == 1


def test_a_resolved_group_resolves_the_same_incident() -> None:
    parsed = group("resolved")
    assert parsed.resolved
    event = to_event(parsed)
    assert (event.action, event.dedup_key) == ("resolve", group("firing").dedup_key)
    assert summary_of(parsed) == "[CRITICAL] [RESOLVED] prod HighLatency"


@pytest.mark.parametrize(
    ("label", "severity"),
    [
        ("critical", Severity.CRITICAL),
        ("CRITICAL", Severity.CRITICAL),
        ("page", Severity.CRITICAL),
        ("error", Severity.ERROR),
        ("high", Severity.ERROR),
        ("warning", Severity.WARNING),
        ("warn", Severity.WARNING),
        ("info", Severity.INFO),
        ("none", Severity.INFO),
        ("whatever", Severity.ERROR),
        ("", Severity.ERROR),
    ],
)
def test_severity_from_the_common_label(label: str, severity: Severity) -> None:
    labels = {**payload("firing")["commonLabels"], "severity": label}
    assert severity_of(group(commonLabels=labels)) is severity


def test_the_default_severity_is_configurable() -> None:
    labels = {k: v for k, v in payload("firing")["commonLabels"].items() if k != "severity"}
    parsed = group(commonLabels=labels)
    assert to_event(parsed, default_severity=Severity.WARNING).severity == "warning"
    assert summary_of(parsed) == "[FIRING:2] prod HighLatency"


def test_summaries() -> None:
    labels = {"alertname": "DiskFull", "env": "UNSET"}
    assert summary_of(group(commonLabels=labels)) == "[FIRING:2] DiskFull"
    named = group(commonLabels={"env": "prod"}, commonAnnotations={"alertname": "From annotations"})
    assert summary_of(named) == "[FIRING:2] prod From annotations"
    bare = group(commonLabels={}, commonAnnotations={}, groupLabels={"team": "db", "cluster": "eu"})
    assert summary_of(bare) == "[FIRING:2] cluster=eu team=db"
    assert len(summary_of(group(commonLabels={"alertname": "x" * 2000}))) == 1024


def test_without_an_external_url() -> None:
    event = to_event(group(externalURL="not a url"))
    assert event.client_url is None


def test_an_oversized_group_keeps_what_fits_and_counts_the_rest() -> None:
    alert = payload("firing")["alerts"][0]
    alerts = [{**alert, "annotations": {"description": "x" * 2000}, "fingerprint": f"{i:016x}"} for i in range(400)]
    parsed = group(alerts=alerts)
    event = to_event(parsed)
    details = event.custom_details
    assert details["omitted_alerts"] > 0
    assert len(details["alerts"]) + details["omitted_alerts"] == 400
    prepared = Sender().prepare(SERVICE_KEY, event)
    assert len(prepared.body) < 512 * 1024
    assert json.loads(prepared.body)["payload"]["custom_details"]["omitted_alerts"] == details["omitted_alerts"]


def test_truncated_alerts_are_reported() -> None:
    assert details_of(group(truncatedAlerts=7))["truncatedAlerts"] == 7


BAD = [
    (b"", None),
    (b"[]", None),
    (b"{}", "version"),
    ({"version": "3"}, "version"),
    ({"version": 4}, "version"),
    ({"groupKey": ""}, "groupKey"),
    ({"groupKey": 5}, "groupKey"),
    ({"status": "burning"}, "status"),
    ({"alerts": []}, "alerts"),
    ({"alerts": "many"}, "alerts"),
    ({"alerts": [5]}, "alerts[0]"),
    ({"alerts": [{"status": "firing", "labels": {"a": 1}}]}, "alerts[0].labels"),
    ({"alerts": [{"status": "pending"}]}, "alerts[0].status"),
    ({"alerts": [{"status": "firing", "startsAt": "yesterday"}]}, "alerts[0].startsAt"),
    ({"alerts": [{"status": "firing", "endsAt": 17}]}, "alerts[0].endsAt"),
    ({"commonLabels": ["severity"]}, "commonLabels"),
    ({"groupLabels": {"a": None}}, "groupLabels"),
    ({"truncatedAlerts": -1}, "truncatedAlerts"),
    ({"truncatedAlerts": "2"}, "truncatedAlerts"),
]


@pytest.mark.parametrize(("change", "field"), BAD)
def test_bad_payloads(change: bytes | dict[str, Any], field: str | None) -> None:
    body = change if isinstance(change, bytes) else json.dumps({**payload("firing"), **change}).encode()
    with pytest.raises(PayloadInvalid) as raised:
        parse_alertmanager(body)
    assert raised.value.field == field


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=15,
)
FIELDS = ["version", "groupKey", "status", "receiver", "alerts", "groupLabels", "commonLabels",
          "commonAnnotations", "externalURL", "truncatedAlerts"]  # fmt: skip


@given(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=5))
def test_any_change_to_a_real_payload_reads_or_is_refused(changes: dict[str, Any]) -> None:
    try:
        parsed = parse_alertmanager(json.dumps({**payload("firing"), **changes}).encode())
    except PayloadInvalid:
        return
    event = to_event(parsed)
    Sender().prepare(SERVICE_KEY, event)  # always a valid event


@given(st.binary(max_size=300))
def test_any_bytes_read_or_are_refused(body: bytes) -> None:
    with contextlib.suppress(PayloadInvalid):
        parse_alertmanager(body)
