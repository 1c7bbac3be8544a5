from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect import AlertEvent, ChangeEvent, Image, LegacyEvent, Link, Severity
from pdconnect.errors import EventValidationError
from pdconnect.payloads import (
    DETAILS_DROPPED_NOTE,
    MAX_BODY_BYTES,
    alert_body,
    change_body,
    encode_body,
    legacy_body,
)
from tests.conftest import SERVICE_KEY, VENDOR_KEY
from tests.openapi import assert_valid_request

FULL_TRIGGER = AlertEvent.trigger(
    "DISK at 99% on prod-datapipe03",
    source="prod-datapipe03.example.com",
    severity=Severity.CRITICAL,
    dedup_key="srv01/mysql",
    timestamp=datetime(2015, 7, 17, 8, 42, 58, 315000, tzinfo=UTC),
    component="mysql",
    group="prod-datapipe",
    event_class="disk",
    custom_details={"free space": "1%", "nested": {"a": [1, 2]}},
    links=[Link("https://example.com/", "Link text"), {"href": "https://example.com/2"}],
    images=[Image("https://example.com/graph.png", href="https://example.com/", alt="graph")],
    client="Per-event client",
)


def test_full_trigger_matches_pagerdutys_example_and_schema() -> None:
    body = alert_body(FULL_TRIGGER, routing_key=SERVICE_KEY, client="Acme", client_url="https://acme.example")
    assert body == {
        "routing_key": SERVICE_KEY,
        "event_action": "trigger",
        "dedup_key": "srv01/mysql",
        "payload": {
            "summary": "DISK at 99% on prod-datapipe03",
            "source": "prod-datapipe03.example.com",
            "severity": "critical",
            "timestamp": "2015-07-17T08:42:58.315000+00:00",
            "component": "mysql",
            "group": "prod-datapipe",
            "class": "disk",
            "custom_details": {"free space": "1%", "nested": {"a": [1, 2]}},
        },
        "links": [{"href": "https://example.com/", "text": "Link text"}, {"href": "https://example.com/2"}],
        "images": [{"src": "https://example.com/graph.png", "href": "https://example.com/", "alt": "graph"}],
        "client": "Per-event client",
        "client_url": "https://acme.example",
    }
    assert_valid_request("alert", body)


@pytest.mark.parametrize("event", [AlertEvent.acknowledge("k1"), AlertEvent.resolve("k1")])
def test_acknowledge_and_resolve_are_minimal(event: AlertEvent) -> None:
    body = alert_body(event, routing_key=SERVICE_KEY, client="Acme", client_url="https://acme.example")
    assert body == {"routing_key": SERVICE_KEY, "event_action": event.action, "dedup_key": "k1"}
    assert_valid_request("alert", body)


def test_trigger_without_dedup_key_gets_a_fresh_one() -> None:
    event = AlertEvent.trigger("s", source="h", severity="info")
    first = alert_body(event, routing_key=SERVICE_KEY)["dedup_key"]
    second = alert_body(event, routing_key=SERVICE_KEY)["dedup_key"]
    assert first and second and first != second and len(first) <= 255


def test_change_event() -> None:
    event = ChangeEvent(
        summary="Build Success: Increase snapshot create timeout to 30 seconds",
        source="prod-build-agent",
        timestamp="2015-07-17T08:42:58.315+0000",
        custom_details={"build_state": "passed"},
        links=(Link("https://buildpipeline.example/220", "View in Build Pipeline"),),
    )
    body = change_body(event, routing_key=SERVICE_KEY)
    assert body["payload"]["timestamp"] == "2015-07-17T08:42:58.315000+00:00"
    assert "event_action" not in body and "dedup_key" not in body
    assert_valid_request("change", body)


def test_legacy_trigger_carries_vendor_client_and_contexts() -> None:
    event = LegacyEvent.trigger(
        "Server www15 running low on memory",
        incident_key="srv01/HTTP",
        details={"server_name": "www15", "memory_usage": "98%"},
        links=[Link("https://acme.pagerduty.com", "View")],
        images=[Image("https://example.com/mem.png")],
    )
    body = legacy_body(
        event, service_key=SERVICE_KEY, vendor=VENDOR_KEY, client="Acme", client_url="https://acme.example"
    )
    assert body == {
        "service_key": SERVICE_KEY,
        "event_type": "trigger",
        "vendor": VENDOR_KEY,
        "incident_key": "srv01/HTTP",
        "description": "Server www15 running low on memory",
        "details": {"server_name": "www15", "memory_usage": "98%"},
        "contexts": [
            {"type": "link", "href": "https://acme.pagerduty.com", "text": "View"},
            {"type": "image", "src": "https://example.com/mem.png"},
        ],
        "client": "Acme",
        "client_url": "https://acme.example",
    }
    # ``vendor`` is the Connect guide's field; PagerDuty's v1 schema does not list it.
    assert_valid_request("legacy", body, extra_fields=frozenset({"vendor"}))


def test_legacy_event_overrides_the_vendor_fields() -> None:
    event = LegacyEvent.trigger("d", client="Mine", client_url="https://mine.example", vendor="ad2938f1f094d65d86fa")
    body = legacy_body(
        event, service_key=SERVICE_KEY, vendor=VENDOR_KEY, client="Acme", client_url="https://acme.example"
    )
    assert (body["vendor"], body["client"], body["client_url"]) == (
        "ad2938f1f094d65d86fa",
        "Mine",
        "https://mine.example",
    )


@pytest.mark.parametrize("event", [LegacyEvent.acknowledge("k"), LegacyEvent.resolve("k")])
def test_legacy_acknowledge_and_resolve(event: LegacyEvent) -> None:
    body = legacy_body(event, service_key=SERVICE_KEY, vendor=VENDOR_KEY, client="Acme")
    assert body == {
        "service_key": SERVICE_KEY,
        "event_type": event.event_type,
        "vendor": VENDOR_KEY,
        "incident_key": "k",
    }
    assert_valid_request("legacy", body, extra_fields=frozenset({"vendor"}))


def test_alert_converted_for_a_legacy_integration_keeps_its_context() -> None:
    legacy = LegacyEvent.from_alert(FULL_TRIGGER)
    assert legacy.description == FULL_TRIGGER.summary
    assert legacy.incident_key == "srv01/mysql"
    assert legacy.details == {
        "free space": "1%",
        "nested": {"a": [1, 2]},
        "source": "prod-datapipe03.example.com",
        "severity": "critical",
        "timestamp": "2015-07-17T08:42:58.315000+00:00",
        "component": "mysql",
        "group": "prod-datapipe",
        "class": "disk",
    }
    body = legacy_body(legacy, service_key=SERVICE_KEY)
    assert_valid_request("legacy", body)
    assert LegacyEvent.from_alert(AlertEvent.resolve("k")).details is None


def test_custom_details_win_over_converted_fields() -> None:
    event = AlertEvent.trigger("s", source="h", severity="info", custom_details={"source": "mine"})
    assert LegacyEvent.from_alert(event).details == {"source": "mine", "severity": "info"}


def _trigger(**changes: Any) -> AlertEvent:
    fields: dict[str, Any] = {"summary": "s", "source": "h", "severity": "error"}
    fields.update(changes)
    return AlertEvent(action="trigger", **fields)


BAD_ALERTS = [
    pytest.param(_trigger(summary=None), "summary is required for trigger", id="no summary"),
    pytest.param(_trigger(summary=""), "summary must be a non-empty string", id="empty summary"),
    pytest.param(_trigger(source=None), "source is required", id="no source"),
    pytest.param(_trigger(source=5), "source must be a non-empty string", id="numeric source"),
    pytest.param(_trigger(severity=None), "severity is required", id="no severity"),
    pytest.param(
        _trigger(severity="high"), "severity must be one of critical, error, warning, info", id="bad severity"
    ),
    pytest.param(_trigger(severity="CRITICAL"), "severity must be one of", id="upper-case severity"),
    pytest.param(
        _trigger(dedup_key="k" * 256), "dedup_key is 256 characters long; PagerDuty allows at most 255", id="long dedup"
    ),
    pytest.param(_trigger(dedup_key=""), "dedup_key must be a non-empty string", id="empty dedup"),
    pytest.param(_trigger(timestamp=datetime(2020, 1, 1)), "timestamp must carry a timezone", id="naive datetime"),
    pytest.param(_trigger(timestamp="2020-01-01T00:00:00"), "timestamp must carry a timezone", id="naive string"),
    pytest.param(_trigger(timestamp="yesterday"), "ISO 8601", id="bad timestamp"),
    pytest.param(_trigger(timestamp=1700000000), "datetime or an ISO 8601", id="epoch timestamp"),
    pytest.param(
        _trigger(images=(Image("http://example.com/a.png"),)),
        r"images\[0\].src must be an absolute https",
        id="http image",
    ),
    pytest.param(
        _trigger(images=(Image("/a.png"),)), r"images\[0\].src must be an absolute https", id="relative image"
    ),
    pytest.param(_trigger(images=(Image(None),)), r"images\[0\].src is required", id="no image src"),  # type: ignore[arg-type]
    pytest.param(_trigger(links=(Link("javascript:x"),)), r"links\[0\].href must be an absolute http", id="js link"),
    pytest.param(_trigger(links=(Link(None),)), r"links\[0\].href is required", id="no link href"),  # type: ignore[arg-type]
    pytest.param(_trigger(client_url="acme.example"), "client_url must be an absolute http", id="bad client_url"),
    pytest.param(_trigger(custom_details=["a"]), "custom_details must be a mapping", id="details list"),
    pytest.param(AlertEvent(action="escalate", dedup_key="k"), "action must be one of", id="bad action"),
    pytest.param(AlertEvent(action="resolve"), "dedup_key is required for resolve", id="resolve without key"),
    pytest.param(AlertEvent(action="acknowledge", dedup_key="k" * 300), "at most 255", id="long ack key"),
]


@pytest.mark.parametrize(("event", "message"), BAD_ALERTS)
def test_bad_alert_events_are_refused_naming_the_field(event: AlertEvent, message: str) -> None:
    with pytest.raises(EventValidationError, match=message):
        alert_body(event, routing_key=SERVICE_KEY)


def test_every_problem_is_reported_at_once() -> None:
    event = AlertEvent(action="trigger", summary=None, source=None, severity="bad", dedup_key="k" * 300)
    with pytest.raises(EventValidationError) as info:
        alert_body(event, routing_key="short")
    problems = info.value.problems
    assert len(problems) == 5
    assert "short" not in str(info.value)


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (LegacyEvent(event_type="trigger"), "description is required"),
        (LegacyEvent(event_type="resolve"), "incident_key is required for resolve"),
        (LegacyEvent(event_type="trigger", description="d", details="x"), "details must be a mapping"),  # type: ignore[arg-type]
        (LegacyEvent(event_type="bogus"), "event_type must be one of"),
    ],
)
def test_bad_legacy_events(event: LegacyEvent, message: str) -> None:
    with pytest.raises(EventValidationError, match=message):
        legacy_body(event, service_key=SERVICE_KEY)


def test_change_event_needs_a_summary() -> None:
    with pytest.raises(EventValidationError, match="summary is required for change"):
        change_body(ChangeEvent(summary=None), routing_key=SERVICE_KEY)  # type: ignore[arg-type]


def test_bad_link_mapping_is_refused_at_construction() -> None:
    with pytest.raises(EventValidationError, match=r"links\[0\] must be a Link or a mapping with keys: href, text"):
        AlertEvent.trigger("s", source="h", severity="info", links=[{"url": "https://x"}])
    with pytest.raises(EventValidationError, match=r"images\[1\]"):
        ChangeEvent(summary="s", images=(Image("https://x/a.png"), "https://x/b.png"))  # type: ignore[arg-type]


def test_long_summary_is_cut_with_an_ellipsis_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pdconnect"):
        body = alert_body(_trigger(summary="é" * 2000), routing_key=SERVICE_KEY)
    summary = body["payload"]["summary"]
    assert len(summary) == 1024
    assert summary.endswith("…")
    assert "2000 characters, cut to PagerDuty's limit of 1024" in caplog.text


def test_summary_of_exactly_1024_is_untouched(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pdconnect"):
        body = alert_body(_trigger(summary="x" * 1024), routing_key=SERVICE_KEY)
    assert body["payload"]["summary"] == "x" * 1024
    assert not caplog.records


def test_long_legacy_description_is_cut() -> None:
    body = legacy_body(LegacyEvent.trigger("d" * 5000), service_key=SERVICE_KEY)
    assert len(body["description"]) == 1024


def test_oversized_body_drops_custom_details_with_a_note(caplog: pytest.LogCaptureFixture) -> None:
    body = alert_body(_trigger(custom_details={"log": "x" * 600_000}), routing_key=SERVICE_KEY)
    with caplog.at_level(logging.WARNING, logger="pdconnect"):
        data = encode_body(body)
    assert len(data) <= MAX_BODY_BYTES
    sent = json.loads(data)
    assert sent["payload"]["custom_details"] == DETAILS_DROPPED_NOTE
    assert sent["payload"]["summary"] == "s"
    assert "custom_details dropped" in caplog.text
    assert body["payload"]["custom_details"] == {"log": "x" * 600_000}, "the caller's body is not changed"
    assert_valid_request("alert", sent)


def test_oversized_legacy_body_drops_details() -> None:
    body = legacy_body(LegacyEvent.trigger("d", details={"log": "x" * 600_000}), service_key=SERVICE_KEY)
    assert json.loads(encode_body(body))["details"] == DETAILS_DROPPED_NOTE


def test_body_exactly_at_the_limit_is_kept() -> None:
    body = alert_body(_trigger(custom_details={"log": ""}), routing_key=SERVICE_KEY)
    padding = MAX_BODY_BYTES - len(encode_body(body))
    body["payload"]["custom_details"]["log"] = "x" * padding
    assert len(encode_body(body)) == MAX_BODY_BYTES
    assert json.loads(encode_body(body))["payload"]["custom_details"]["log"] == "x" * padding


def test_oversized_without_details_is_refused() -> None:
    body = alert_body(
        _trigger(links=tuple(Link(f"https://x.example/{'p' * 1000}/{i}") for i in range(600))), routing_key=SERVICE_KEY
    )
    with pytest.raises(EventValidationError, match="over PagerDuty's limit"):
        encode_body(body)


@pytest.mark.parametrize(
    "details",
    [{"x": object()}, {"x": float("nan")}, {"x": "\ud800"}, {"x": {"y": 1j}}],
)
def test_unserialisable_details_are_refused(details: dict[Any, Any]) -> None:
    body = alert_body(_trigger(custom_details=details), routing_key=SERVICE_KEY)
    with pytest.raises(EventValidationError, match="not JSON-serialisable"):
        encode_body(body)


def test_timestamps_in_other_zones_are_sent_in_utc() -> None:
    tz = timezone(timedelta(hours=5, minutes=30))
    body = alert_body(_trigger(timestamp=datetime(2026, 1, 1, 12, tzinfo=tz)), routing_key=SERVICE_KEY)
    assert body["payload"]["timestamp"] == "2026-01-01T06:30:00+00:00"


@given(
    summary=st.text(max_size=1500),
    source=st.text(max_size=30),
    severity=st.sampled_from(["critical", "error", "warning", "info", "fatal", ""]),
    dedup_key=st.one_of(st.none(), st.text(max_size=300)),
    details=st.dictionaries(
        st.text(max_size=10), st.one_of(st.text(max_size=20), st.integers(), st.none()), max_size=5
    ),
)
def test_any_trigger_is_either_refused_or_valid_against_pagerdutys_schema(
    summary: str, source: str, severity: str, dedup_key: str | None, details: dict[str, Any]
) -> None:
    event = AlertEvent.trigger(summary, source=source, severity=severity, dedup_key=dedup_key, custom_details=details)
    try:
        data = encode_body(alert_body(event, routing_key=SERVICE_KEY))
    except EventValidationError:
        return
    sent = json.loads(data)
    assert_valid_request("alert", sent)
    assert len(sent["payload"]["summary"]) <= 1024
    assert len(sent["dedup_key"]) <= 255
