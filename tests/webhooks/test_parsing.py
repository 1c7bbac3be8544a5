"""V3, V2 and V1 webhook bodies become the same typed events; bad bodies give typed errors."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.errors import PayloadInvalid
from pdconnect.webhooks import (
    INCIDENT_EVENT_TYPES,
    IncidentStatus,
    WebhookFormat,
    parse_legacy,
    parse_v3,
    parse_webhook,
)
from tests.webhooks import samples
from tests.webhooks.samples import encode


def test_a_v3_incident_event() -> None:
    event = parse_v3(encode(samples.v3("incident.acknowledged")))
    assert event.format is WebhookFormat.V3
    assert event.event_type == "incident.acknowledged" and event.known
    assert event.resource_type == "incident"
    assert event.occurred_at == samples.RECENT.replace(microsecond=samples.RECENT.microsecond // 1000 * 1000)
    assert event.agent is not None and event.agent.name == "Alice Responder"
    assert event.client == "PagerDuty"
    assert event.status_after is IncidentStatus.ACKNOWLEDGED
    incident = event.incident
    assert incident is not None
    assert (incident.id, incident.number, incident.status) == ("PINC001", 7, IncidentStatus.ACKNOWLEDGED)
    assert incident.title == "Checkout is down: HTTP 503"
    assert incident.urgency == "high"
    assert incident.incident_key == event.dedup_key == "monitor/42"
    assert incident.service is not None and (incident.service.id, incident.service.name) == ("PSVC001", "Checkout")
    assert [a.name for a in incident.assignees] == ["Alice Responder"]
    assert incident.priority is not None and incident.priority.name == "P1"
    assert incident.escalation_policy is not None and incident.escalation_policy.id == "PESC001"
    assert event.data["number"] == 7


@pytest.mark.parametrize("event_type", sorted(t for t, kind in INCIDENT_EVENT_TYPES.items() if kind == "incident"))
def test_every_incident_event_type(event_type: str) -> None:
    event = parse_v3(encode(samples.v3(event_type)))
    assert event.event_type == event_type and event.known
    assert event.incident is not None and event.incident.id == "PINC001"


def test_a_note_names_its_incident() -> None:
    event = parse_v3(encode(samples.note_event()))
    assert event.event_type == "incident.annotated"
    assert event.note == "Rolling back the deploy."
    assert event.incident is not None and event.incident.id == "PINC001"
    assert event.incident.title == "Checkout is down: HTTP 503"
    assert event.status_after is None


def test_automation_has_no_agent() -> None:
    body = samples.v3("incident.unacknowledged")
    body["event"]["agent"] = None
    event = parse_v3(encode(body))
    assert event.agent is None and event.status_after is IncidentStatus.TRIGGERED


def test_a_ping() -> None:
    event = parse_webhook(encode(samples.ping()))[0]
    assert event.is_ping and event.known and event.incident is None and event.resource_type == "pagey"


def test_unknown_types_come_through() -> None:
    body = samples.v3("incident.something_new", data={"type": "mystery", "answer": 42})
    event = parse_v3(encode(body))
    assert event.event_type == "incident.something_new" and not event.known
    assert event.incident is None and event.data == {"type": "mystery", "answer": 42}


def test_odd_fields_read_as_none() -> None:
    data = samples.incident_data()
    data.update(number="seven", status="on fire", created_at="yesterday", assignees="everyone", service=5)
    body = samples.v3(data=data)
    body["event"]["occurred_at"] = 12
    body["event"]["client"] = "PagerDuty"
    event = parse_v3(encode(body))
    assert event.incident is not None
    assert (event.incident.number, event.incident.status, event.incident.created_at) == (None, None, None)
    assert event.incident.assignees == () and event.incident.service is None
    assert event.occurred_at is None and event.client is None


def test_naive_times_are_taken_as_utc() -> None:
    body = samples.v3(occurred_at="2026-11-22T10:05:00")
    assert parse_v3(encode(body)).occurred_at == datetime(2026, 11, 22, 10, 5, tzinfo=UTC)


def test_the_seven_v1_types_and_annotate_map_to_v3_names() -> None:
    legacy = {
        "incident.trigger": "incident.triggered",
        "incident.acknowledge": "incident.acknowledged",
        "incident.unacknowledge": "incident.unacknowledged",
        "incident.resolve": "incident.resolved",
        "incident.assign": "incident.reassigned",
        "incident.escalate": "incident.escalated",
        "incident.delegate": "incident.delegated",
    }
    for kind, v3_name in legacy.items():
        (event,) = parse_legacy(encode({"messages": [samples.v1_message(kind)]}))
        assert (event.event_type, event.legacy_type, event.format) == (v3_name, kind, WebhookFormat.V1)
        (event,) = parse_legacy(encode({"messages": [samples.v2_message(kind)]}))
        assert (event.event_type, event.legacy_type, event.format) == (v3_name, kind, WebhookFormat.V2)
    (event,) = parse_legacy(encode({"messages": [samples.v2_message("incident.annotate")]}))
    assert event.event_type == "incident.annotated"


def test_a_v2_message() -> None:
    (event,) = parse_webhook(encode({"messages": [samples.v2_message()]}))
    assert event.id == "msg-v2-0001"
    assert event.agent is not None and event.agent.name == "Bob Oncall"
    incident = event.incident
    assert incident is not None
    assert (incident.number, incident.status, incident.incident_key) == (7, IncidentStatus.ACKNOWLEDGED, "monitor/42")
    assert [a.name for a in incident.acknowledgers] == ["Bob Oncall"]
    assert [a.name for a in incident.assignees] == ["Alice Responder"]
    assert incident.service is not None and incident.service.name == "Checkout"


def test_a_v2_message_without_log_entries_falls_back_to_the_last_change() -> None:
    message = samples.v2_message("incident.resolve")
    message["log_entries"] = []
    (event,) = parse_legacy(encode({"messages": [message]}))
    assert event.agent is not None and event.agent.name == "Bob Oncall"


def test_a_v1_message() -> None:
    (event,) = parse_webhook(encode({"messages": [samples.v1_message()]}))
    assert event.format is WebhookFormat.V1 and event.event_type == "incident.resolved"
    assert event.agent is not None and event.agent.name == "Carol Lead"
    incident = event.incident
    assert incident is not None
    assert incident.title == "Checkout is down: HTTP 503" and incident.status is IncidentStatus.RESOLVED
    assert [a.name for a in incident.assignees] == ["Alice Responder"]
    assert incident.created_at == datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def test_several_messages_and_none() -> None:
    body = {"messages": [samples.v2_message(message_id="a"), samples.v1_message(message_id="b")]}
    assert [e.id for e in parse_legacy(encode(body))] == ["a", "b"]
    assert parse_legacy(b'{"messages": []}') == []


BAD_BODIES: list[tuple[bytes, str | None]] = [
    (b"", None),
    (b"   \n", None),
    (b"\xff\xfe", None),
    (b"{", None),
    (b"null", None),
    (b"[]", None),
    (b'"event"', None),
    (b"{}", None),
    (b'{"event": null}', "event"),
    (b'{"event": []}', "event"),
    (b'{"event": {}}', "event.id"),
    (b'{"event": {"id": "", "event_type": "incident.triggered"}}', "event.id"),
    (b'{"event": {"id": 5, "event_type": "incident.triggered"}}', "event.id"),
    (b'{"event": {"id": "1"}}', "event.event_type"),
    (b'{"event": {"id": "1", "event_type": ["incident.triggered"]}}', "event.event_type"),
    (b'{"messages": {}}', "messages"),
    (b'{"messages": [5]}', "messages[0]"),
    (b'{"messages": [{"event": "incident.trigger"}]}', "messages[0].id"),
    (b'{"messages": [{"id": "m"}]}', "messages[0].event"),
    (b'{"messages": [{"id": "m", "type": 7}]}', "messages[0].type"),
    (b"[" * 100_000 + b"]" * 100_000, None),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES)
def test_bad_bodies(body: bytes, field: str | None) -> None:
    with pytest.raises(PayloadInvalid) as raised:
        parse_webhook(body)
    if field is not None:
        assert raised.value.field == field


def test_the_format_specific_parsers_refuse_the_other_shape() -> None:
    with pytest.raises(PayloadInvalid):
        parse_v3(encode({"messages": []}))
    with pytest.raises(PayloadInvalid):
        parse_legacy(encode(samples.v3()))
    with pytest.raises(PayloadInvalid):
        parse_v3(b"[1]")
    with pytest.raises(PayloadInvalid):
        parse_legacy(b"[1]")


#: Text a JSON encoder can write as UTF-8 (lone surrogates are refused: see test_hostile_json.py).
unicode_text = st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | unicode_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)


def _with(base: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    target = base
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return base


@given(
    path=st.sampled_from(
        [
            ["event", "data"],
            ["event", "agent"],
            ["event", "occurred_at"],
            ["event", "client"],
            ["event", "resource_type"],
            ["event", "data", "number"],
            ["event", "data", "service"],
            ["event", "data", "assignees"],
            ["event", "data", "status"],
            ["event", "data", "type"],
            ["event", "data", "incident"],
            ["event", "data", "resolve_reason"],
            ["event", "data", "id"],
        ]
    ),
    value=json_values,
)
def test_any_value_in_any_v3_field_is_read_or_refused(path: list[str], value: Any) -> None:
    body = _with(samples.v3(), path, value)
    event = parse_v3(encode(body))
    assert event.event_type == "incident.acknowledged"


@given(
    message=st.dictionaries(
        st.sampled_from(["id", "event", "type", "incident", "data", "created_on", "log_entries"]), json_values
    )
)
def test_any_legacy_message_is_read_or_refused(message: dict[str, Any]) -> None:
    try:
        events = parse_legacy(json.dumps({"messages": [message]}).encode())
    except PayloadInvalid:
        return
    assert len(events) == 1


@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_anything_at_all_gives_events_or_a_typed_error(body: bytes) -> None:
    with contextlib.suppress(PayloadInvalid):
        parse_webhook(body)
