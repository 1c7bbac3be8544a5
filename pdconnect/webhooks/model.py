"""What a PagerDuty webhook says, as typed values: one :class:`WebhookEvent` per event.

V3 webhooks and the legacy V2 and V1 ``messages`` formats all become the same objects. Legacy
types are mapped to their V3 names (``incident.acknowledge`` becomes
``incident.acknowledged``; ``pagerduty-protocols.md`` section 5.9), and the original is kept in
:attr:`WebhookEvent.legacy_type`. Types pdconnect does not know come through as they are, with
the raw ``data``: PagerDuty adds types without notice, and a receiver must not fail on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any


class WebhookFormat(StrEnum):
    """Which of PagerDuty's webhook formats an event arrived in."""

    V3 = "v3"
    V2 = "v2"
    V1 = "v1"


class IncidentStatus(StrEnum):
    """An incident's status at PagerDuty."""

    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


#: The V3 incident event types of ``pagerduty-protocols.md`` section 5.3 (``data.type`` after each).
INCIDENT_EVENT_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "incident.triggered": "incident",
        "incident.acknowledged": "incident",
        "incident.unacknowledged": "incident",
        "incident.resolved": "incident",
        "incident.reopened": "incident",
        "incident.reassigned": "incident",
        "incident.escalated": "incident",
        "incident.delegated": "incident",
        "incident.priority_updated": "incident",
        "incident.service_updated": "incident",
        "incident.incident_type.changed": "incident",
        "incident.annotated": "incident_note",
        "incident.responder.added": "incident_responder",
        "incident.responder.replied": "incident_responder",
        "incident.status_update_published": "incident_status_update",
        "incident.conference_bridge.updated": "incident_conference_bridge",
        "incident.custom_field_values.updated": "incident_field_values",
        "incident.role.assigned": "incident_role_assignment",
        "incident.task.created": "incident_task",
        "incident.task.updated": "incident_task",
        "incident.task.completed": "incident_task",
        "incident.action_invocation.created": "incident_action_invocation",
        "incident.action_invocation.updated": "incident_action_invocation",
        "incident.action_invocation.terminated": "incident_action_invocation",
        "incident.workflow.started": "incident_workflow_instance",
        "incident.workflow.completed": "incident_workflow_instance",
    }
)

#: Legacy V1/V2 ``type``/``event`` values and their V3 names (section 5.9). V1 knew the first
#: seven, the ones Snowplow's integration lists; V2 added ``incident.annotate``.
LEGACY_EVENT_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "incident.trigger": "incident.triggered",
        "incident.acknowledge": "incident.acknowledged",
        "incident.unacknowledge": "incident.unacknowledged",
        "incident.resolve": "incident.resolved",
        "incident.assign": "incident.reassigned",
        "incident.escalate": "incident.escalated",
        "incident.delegate": "incident.delegated",
        "incident.annotate": "incident.annotated",
    }
)

#: The status an incident has after each status-changing event.
STATUS_AFTER: Mapping[str, IncidentStatus] = MappingProxyType(
    {
        "incident.triggered": IncidentStatus.TRIGGERED,
        "incident.acknowledged": IncidentStatus.ACKNOWLEDGED,
        "incident.unacknowledged": IncidentStatus.TRIGGERED,
        "incident.resolved": IncidentStatus.RESOLVED,
        "incident.reopened": IncidentStatus.TRIGGERED,
    }
)


@dataclass(frozen=True)
class Reference:
    """A PagerDuty object as a webhook names it: a user, service, escalation policy, priority..."""

    id: str | None
    type: str | None = None
    summary: str | None = None
    html_url: str | None = None

    @property
    def name(self) -> str | None:
        """What to show a person: the summary (a user's or service's name), else the id."""
        return self.summary or self.id


@dataclass(frozen=True)
class IncidentInfo:
    """The incident a webhook is about, with what a vendor's UI shows.

    ``incident_key`` is the dedup key the vendor sent (the link back to its own alert).
    For events whose ``data`` is not the incident itself (a note, a responder request), only
    ``id``, ``title`` and ``html_url`` are known.
    """

    id: str
    number: int | None = None
    status: IncidentStatus | None = None
    title: str | None = None
    urgency: str | None = None
    incident_key: str | None = None
    html_url: str | None = None
    created_at: datetime | None = None
    service: Reference | None = None
    assignees: tuple[Reference, ...] = ()
    acknowledgers: tuple[Reference, ...] = ()
    escalation_policy: Reference | None = None
    priority: Reference | None = None
    resolve_reason: str | None = None


@dataclass(frozen=True)
class WebhookEvent:
    """One event from a PagerDuty webhook, whatever the format it came in.

    ``event_type`` is the V3 name (``incident.acknowledged``); ``agent`` who acted (``None``
    for PagerDuty's own automation, such as an acknowledgement timing out); ``data`` the
    event's raw ``data`` (V3) or message (legacy), read-only. ``webhook_id`` is the request's
    ``X-Webhook-Id`` (unsigned: for logs only). When a secret registered for a subscription
    verified the webhook, ``subscription_id``, ``owner_id`` and ``integration_id`` are that
    registration's; with a vendor-wide secret, ``subscription_id`` is the unsigned
    ``X-Webhook-Subscription`` header and the owner is ``None``.
    """

    id: str
    event_type: str
    format: WebhookFormat
    resource_type: str
    occurred_at: datetime | None = None
    agent: Reference | None = None
    client: str | None = None
    incident: IncidentInfo | None = None
    note: str | None = None
    legacy_type: str | None = None
    data: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}), repr=False, compare=False)
    webhook_id: str | None = None
    subscription_id: str | None = None
    owner_id: str | None = None
    integration_id: str | None = None

    @property
    def known(self) -> bool:
        """Whether pdconnect knows this type (unknown ones still arrive, with their ``data``)."""
        return self.event_type in INCIDENT_EVENT_TYPES or self.event_type == "pagey.ping"

    @property
    def is_ping(self) -> bool:
        return self.event_type == "pagey.ping"

    @property
    def status_after(self) -> IncidentStatus | None:
        """The incident's status after this event, for status changes; else ``None``."""
        return STATUS_AFTER.get(self.event_type)

    @property
    def dedup_key(self) -> str | None:
        """The incident's ``incident_key``: the dedup key the vendor's alert was sent with."""
        return self.incident.incident_key if self.incident else None
