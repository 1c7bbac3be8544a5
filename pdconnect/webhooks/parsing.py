"""Turning a webhook's body into :class:`~pdconnect.webhooks.model.WebhookEvent` values.

Strict about the envelope, lenient inside it. A body that is not JSON, or lacks what
identifies an event (V3 ``event.id`` and ``event.event_type``; a legacy message's ``id`` and
type), raises :class:`~pdconnect.errors.PayloadInvalid` naming the field. Any other field
that is missing or of an unexpected type reads as ``None``: PagerDuty adds and changes fields
over time, and one odd field must not cost the vendor the whole event.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from pdconnect.errors import PayloadInvalid
from pdconnect.timestamps import parse_timestamp
from pdconnect.webhooks.model import (
    LEGACY_EVENT_TYPES,
    IncidentInfo,
    IncidentStatus,
    Reference,
    WebhookEvent,
    WebhookFormat,
)

#: Deeper than this is not PagerDuty's (its bodies nest a handful of levels) nor Alertmanager's.
MAX_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")


def load_json(body: bytes) -> Any:
    """The body as JSON, or :class:`~pdconnect.errors.PayloadInvalid`.

    Strict JSON only: no ``NaN`` or ``Infinity`` literals, no lone surrogates (``"\\ud800"``,
    which no UTF-8 encoder, database driver or HTTP client accepts later), and at most
    :data:`MAX_DEPTH` levels of nesting. Every string a parser hands on can thus be stored
    and sent again.
    """
    if not body or not body.strip():
        raise PayloadInvalid("the body is empty")
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_no_constants)
    except UnicodeDecodeError as exc:
        raise PayloadInvalid("the body is not UTF-8") from exc
    except RecursionError as exc:
        raise PayloadInvalid("the body is nested too deeply") from exc
    except ValueError as exc:
        raise PayloadInvalid("the body is not JSON") from exc
    _check_values(data)
    return data


def _no_constants(name: str) -> Any:
    raise PayloadInvalid(f"the body holds {name}, which JSON does not allow")


def _check_values(data: Any) -> None:
    """Refuse lone surrogates, infinite numbers and deep nesting, without recursing (the depth is the attacker's)."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise PayloadInvalid("the body holds a lone surrogate (\\ud800-\\udfff), which is not Unicode")
        elif isinstance(value, float):
            if not math.isfinite(value):  # 1e400 reads as infinity without being a literal
                raise PayloadInvalid("the body holds a number too large for a float")
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                raise PayloadInvalid(f"the body is nested more than {MAX_DEPTH} levels deep")
            items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)


def parse_webhook(body: bytes) -> list[WebhookEvent]:
    """Every event in a webhook body, V3 (one event) or legacy (a ``messages`` list)."""
    data = load_json(body)
    if isinstance(data, dict) and "event" in data:
        return [v3_event(data)]
    if isinstance(data, dict) and "messages" in data:
        return legacy_events(data)
    raise PayloadInvalid("expected a V3 event ({'event': ...}) or legacy messages ({'messages': [...]})")


def parse_v3(body: bytes) -> WebhookEvent:
    """The event of a V3 webhook body."""
    data = load_json(body)
    if not isinstance(data, dict):
        raise PayloadInvalid("a V3 webhook body is a JSON object", field="event")
    return v3_event(data)


def parse_legacy(body: bytes) -> list[WebhookEvent]:
    """The events of a legacy V2 or V1 webhook body."""
    data = load_json(body)
    if not isinstance(data, dict):
        raise PayloadInvalid("a legacy webhook body is a JSON object", field="messages")
    return legacy_events(data)


# -- V3 ----------------------------------------------------------------------------------------


def v3_event(envelope: Mapping[str, Any]) -> WebhookEvent:
    event = envelope.get("event")
    if not isinstance(event, dict):
        raise PayloadInvalid("'event' must be an object", field="event")
    event_id = _required_str(event, "id", "event.id")
    event_type = _required_str(event, "event_type", "event.event_type")
    raw_data = event.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    client = event.get("client")
    return WebhookEvent(
        id=event_id,
        event_type=event_type,
        format=WebhookFormat.V3,
        resource_type=_str(event.get("resource_type")) or event_type.partition(".")[0],
        occurred_at=_time(event.get("occurred_at")),
        agent=_ref(event.get("agent")),
        client=_str(client.get("name")) if isinstance(client, dict) else None,
        incident=_v3_incident(data),
        note=_str(data.get("content")) if data.get("type") == "incident_note" else None,
        data=MappingProxyType(dict(data)),
    )


def _v3_incident(data: Mapping[str, Any]) -> IncidentInfo | None:
    if data.get("type") == "incident":
        incident_id = _str(data.get("id"))
        if incident_id is None:
            return None
        return IncidentInfo(
            id=incident_id,
            number=_int(data.get("number")),
            status=_status(data.get("status")),
            title=_str(data.get("title")),
            urgency=_str(data.get("urgency")),
            incident_key=_str(data.get("incident_key")),
            html_url=_str(data.get("html_url")),
            created_at=_time(data.get("created_at")),
            service=_ref(data.get("service")),
            assignees=_refs(data.get("assignees")),
            escalation_policy=_ref(data.get("escalation_policy")),
            priority=_ref(data.get("priority")),
            resolve_reason=_reason(data.get("resolve_reason")),
        )
    # A note, a responder request, a task...: ``data.incident`` is a reference.
    reference = _ref(data.get("incident"))
    if reference is None or reference.id is None:
        return None
    return IncidentInfo(id=reference.id, title=reference.summary, html_url=reference.html_url)


# -- legacy V2 and V1 --------------------------------------------------------------------------


def legacy_events(envelope: Mapping[str, Any]) -> list[WebhookEvent]:
    messages = envelope.get("messages")
    if not isinstance(messages, list):
        raise PayloadInvalid("'messages' must be a list", field="messages")
    return [_legacy_event(message, f"messages[{index}]") for index, message in enumerate(messages)]


def _legacy_event(message: Any, path: str) -> WebhookEvent:
    if not isinstance(message, dict):
        raise PayloadInvalid("each message must be an object", field=path)
    message_id = _required_str(message, "id", f"{path}.id")
    v1 = "type" in message and "event" not in message
    kind = _required_str(message, "type" if v1 else "event", f"{path}.{'type' if v1 else 'event'}")
    if v1:
        inner = message.get("data")
        raw_incident = inner.get("incident") if isinstance(inner, dict) else None
    else:
        raw_incident = message.get("incident")
    incident = _legacy_incident(raw_incident if isinstance(raw_incident, dict) else {}, v1=v1)
    return WebhookEvent(
        id=message_id,
        event_type=LEGACY_EVENT_TYPES.get(kind, kind),
        format=WebhookFormat.V1 if v1 else WebhookFormat.V2,
        resource_type=kind.partition(".")[0],
        occurred_at=_time(message.get("created_on")),
        agent=_legacy_agent(message, raw_incident if isinstance(raw_incident, dict) else {}, kind),
        incident=incident,
        note=_legacy_note(message) if kind == "incident.annotate" else None,
        legacy_type=kind,
        data=MappingProxyType(dict(message)),
    )


def _legacy_incident(raw: Mapping[str, Any], *, v1: bool) -> IncidentInfo | None:
    incident_id = _str(raw.get("id"))
    if incident_id is None:
        return None
    if v1:
        summary = raw.get("trigger_summary_data")
        title = _str(summary.get("subject")) if isinstance(summary, dict) else None
        assignees = _refs_in(raw.get("assigned_to"), "object")
        acknowledgers: tuple[Reference, ...] = ()
    else:
        title = _str(raw.get("title")) or _str(raw.get("summary"))
        assignees = _refs_in(raw.get("assignments"), "assignee")
        acknowledgers = _refs_in(raw.get("acknowledgements"), "acknowledger")
    return IncidentInfo(
        id=incident_id,
        number=_int(raw.get("incident_number")),
        status=_status(raw.get("status")),
        title=title,
        urgency=_str(raw.get("urgency")),
        incident_key=_str(raw.get("incident_key")),
        html_url=_str(raw.get("html_url")),
        created_at=_time(raw.get("created_on" if v1 else "created_at")),
        service=_ref(raw.get("service")),
        assignees=assignees,
        acknowledgers=acknowledgers,
        escalation_policy=_ref(raw.get("escalation_policy")),
        priority=_ref(raw.get("priority")),
        resolve_reason=_reason(raw.get("resolve_reason")),
    )


def _legacy_agent(message: Mapping[str, Any], incident: Mapping[str, Any], kind: str) -> Reference | None:
    """Who acted: the first log entry's agent (V2), else who last changed the status."""
    for entry in _list(message.get("log_entries"))[:1]:
        if isinstance(entry, dict) and (agent := _ref(entry.get("agent"))) is not None:
            return agent
    if kind == "incident.acknowledge":
        acknowledgements = [e for e in _list(incident.get("acknowledgements")) if isinstance(e, dict)]
        if acknowledgements and (agent := _ref(acknowledgements[-1].get("acknowledger"))) is not None:
            return agent
    return _ref(incident.get("last_status_change_by"))


def _legacy_note(message: Mapping[str, Any]) -> str | None:
    for entry in _list(message.get("log_entries"))[:1]:
        if isinstance(entry, dict):
            channel = entry.get("channel")
            if isinstance(channel, dict):
                return _str(channel.get("summary")) or _str(channel.get("content"))
    return None


# -- lenient readers ---------------------------------------------------------------------------


def _required_str(data: Mapping[str, Any], key: str, path: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise PayloadInvalid(f"'{path}' must be a non-empty string", field=path)
    return value


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    """A whole number that fits the 32-bit columns it is stored in (incident numbers do, by far)."""
    if isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31:
        return value
    return None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _time(value: Any) -> datetime | None:
    return parse_timestamp(value)


def _status(value: Any) -> IncidentStatus | None:
    try:
        return IncidentStatus(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _reason(value: Any) -> str | None:
    if isinstance(value, dict):
        return _str(value.get("type")) or _str(value.get("summary"))
    return _str(value)


def _ref(value: Any) -> Reference | None:
    if not isinstance(value, dict):
        return None
    summary = _str(value.get("summary")) or _str(value.get("name")) or _str(value.get("email"))
    ref = Reference(
        id=_str(value.get("id")),
        type=_str(value.get("type")),
        summary=summary,
        html_url=_str(value.get("html_url")),
    )
    return ref if ref.id or ref.summary else None


def _refs_in(entries: Any, key: str) -> tuple[Reference, ...]:
    """The references under ``key`` in a list of entries (``[{"at": ..., "assignee": {...}}]``)."""
    return tuple(
        ref for entry in _list(entries) if isinstance(entry, dict) and (ref := _ref(entry.get(key))) is not None
    )


def _refs(value: Any) -> tuple[Reference, ...]:
    return tuple(ref for item in _list(value) if (ref := _ref(item)) is not None)
