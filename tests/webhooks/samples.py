"""Webhook bodies in PagerDuty's documented shapes (``pagerduty-protocols.md`` section 5).

Written from the field lists in the protocol reference, with made-up ids; each builder
returns a fresh dict so a test can change it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

#: When the sample events occurred: a few minutes ago, as a delivery PagerDuty makes now (the
#: receiver refuses signed events older than its delivery log remembers, as replays).
RECENT = datetime.now(UTC) - timedelta(minutes=5)
OCCURRED_AT = RECENT.isoformat(timespec="milliseconds").replace("+00:00", "Z")

SECRET = "whsec-the-subscriptions-secret-0001"
OTHER_SECRET = "whsec-another-subscription-secret-2"


def user(user_id: str = "PUSER01", name: str = "Alice Responder") -> dict[str, Any]:
    return {
        "html_url": f"https://acme.pagerduty.com/users/{user_id}",
        "id": user_id,
        "self": f"https://api.pagerduty.com/users/{user_id}",
        "summary": name,
        "type": "user_reference",
    }


def service(service_id: str = "PSVC001", name: str = "Checkout") -> dict[str, Any]:
    return {
        "html_url": f"https://acme.pagerduty.com/services/{service_id}",
        "id": service_id,
        "self": f"https://api.pagerduty.com/services/{service_id}",
        "summary": name,
        "type": "service_reference",
    }


def incident_data(status: str = "acknowledged", *, key: str = "monitor/42", number: int = 7) -> dict[str, Any]:
    return {
        "id": "PINC001",
        "type": "incident",
        "self": "https://api.pagerduty.com/incidents/PINC001",
        "html_url": "https://acme.pagerduty.com/incidents/PINC001",
        "number": number,
        "status": status,
        "incident_key": key,
        "created_at": "2026-11-22T10:00:00Z",
        "title": "Checkout is down: HTTP 503",
        "service": service(),
        "assignees": [user()],
        "escalation_policy": {"id": "PESC001", "type": "escalation_policy_reference", "summary": "Default"},
        "teams": [],
        "priority": {"id": "PPRI001", "type": "priority_reference", "summary": "P1"},
        "urgency": "high",
        "conference_bridge": None,
        "resolve_reason": None,
    }


def v3(
    event_type: str = "incident.acknowledged",
    *,
    data: dict[str, Any] | None = None,
    agent: dict[str, Any] | None = None,
    occurred_at: str = OCCURRED_AT,
    event_id: str = "01DEN4HPBQAPCFDGPPQGPNMAUC",
) -> dict[str, Any]:
    status = {
        "incident.triggered": "triggered",
        "incident.resolved": "resolved",
        "incident.unacknowledged": "triggered",
        "incident.reopened": "triggered",
    }.get(event_type, "acknowledged")
    return {
        "event": {
            "id": event_id,
            "event_type": event_type,
            "resource_type": "incident",
            "occurred_at": occurred_at,
            "agent": agent if agent is not None else user(),
            "client": {"name": "PagerDuty"},
            "data": data if data is not None else incident_data(status),
        }
    }


def note_event() -> dict[str, Any]:
    return v3(
        "incident.annotated",
        data={
            "incident": {
                "html_url": "https://acme.pagerduty.com/incidents/PINC001",
                "id": "PINC001",
                "self": "https://api.pagerduty.com/incidents/PINC001",
                "summary": "Checkout is down: HTTP 503",
                "type": "incident_reference",
            },
            "id": "PNOTE01",
            "content": "Rolling back the deploy.",
            "trimmed": False,
            "type": "incident_note",
        },
    )


def ping() -> dict[str, Any]:
    return {
        "event": {
            "id": "01PING000000000000000000",
            "event_type": "pagey.ping",
            "resource_type": "pagey",
            "occurred_at": OCCURRED_AT,
            "agent": None,
            "client": None,
            "data": {"message": "Hello from your friend Pagey!", "type": "ping"},
        }
    }


def v2_message(event: str = "incident.acknowledge", *, message_id: str = "msg-v2-0001") -> dict[str, Any]:
    return {
        "id": message_id,
        "event": event,
        "created_on": "2026-11-22T10:05:00Z",
        "incident": {
            "id": "PINC001",
            "incident_number": 7,
            "title": "Checkout is down: HTTP 503",
            "status": {"incident.resolve": "resolved", "incident.trigger": "triggered"}.get(event, "acknowledged"),
            "incident_key": "monitor/42",
            "created_at": "2026-11-22T10:00:00Z",
            "html_url": "https://acme.pagerduty.com/incidents/PINC001",
            "service": {"id": "PSVC001", "name": "Checkout", "summary": "Checkout", "type": "service_reference"},
            "assignments": [{"at": "2026-11-22T10:00:00Z", "assignee": user()}],
            "acknowledgements": [{"at": "2026-11-22T10:05:00Z", "acknowledger": user("PUSER02", "Bob Oncall")}],
            "last_status_change_at": "2026-11-22T10:05:00Z",
            "last_status_change_by": user("PUSER02", "Bob Oncall"),
            "urgency": "high",
            "alerts": [{"alert_key": "monitor/42"}],
        },
        "webhook": {"endpoint_url": "https://acme.example/hook", "name": "Acme", "type": "webhook_reference"},
        "log_entries": [
            {
                "id": "PLOG001",
                "type": "acknowledge_log_entry",
                "agent": user("PUSER02", "Bob Oncall"),
                "channel": {"type": "web_trigger"},
            }
        ],
    }


def v1_message(kind: str = "incident.resolve", *, message_id: str = "msg-v1-0001") -> dict[str, Any]:
    return {
        "id": message_id,
        "type": kind,
        "created_on": "2026-11-22T10:09:00Z",
        "data": {
            "incident": {
                "id": "PINC001",
                "incident_number": 7,
                "created_on": "2026-11-22T10:00:00Z",
                "status": "resolved" if kind == "incident.resolve" else "acknowledged",
                "html_url": "https://acme.pagerduty.com/incidents/PINC001",
                "incident_key": "monitor/42",
                "service": {
                    "id": "PSVC001",
                    "name": "Checkout",
                    "html_url": "https://acme.pagerduty.com/services/PSVC001",
                },
                "assigned_to": [{"at": "2026-11-22T10:00:00Z", "object": {"id": "PUSER01", "name": "Alice Responder"}}],
                "trigger_summary_data": {"subject": "Checkout is down: HTTP 503"},
                "last_status_change_on": "2026-11-22T10:09:00Z",
                "last_status_change_by": {"id": "PUSER03", "name": "Carol Lead", "email": "carol@acme.example"},
                "urgency": "high",
            }
        },
    }


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode("utf-8")
