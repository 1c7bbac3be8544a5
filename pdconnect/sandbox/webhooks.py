"""Outgoing webhooks: PagerDuty's V3 events (signed) and the legacy V2 ``messages`` format.

What is sent follows ``pagerduty-protocols.md`` section 5: one event per V3 request, with
``X-PagerDuty-Signature: v1=<hex HMAC-SHA256 of the body>``, ``X-Webhook-Id`` (the same on
every retry), ``X-Webhook-Subscription`` and ``User-Agent: PagerDuty-Webhook/V3.0``.

Delivery behaves like PagerDuty's, scaled down in time: 2xx delivers; 429, 5xx, timeouts and
connection failures are retried on a schedule; any other 4xx drops the webhook at once.
Webhooks for the same subscription and incident go out strictly in order: while one is being
retried, the later ones wait behind it. After three webhooks in a row are dropped, the
subscription is disabled for a while (24 hours at PagerDuty, scaled down here).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from pdconnect.sandbox.model import Delivery, EscalationPolicy, Incident, Service, Subscription, User, now_iso
from pdconnect.sandbox.store import SandboxStore
from pdconnect.sandbox.subscriptions import rotation_headers
from pdconnect.urls import is_loopback_host
from pdconnect.webhooks.model import INCIDENT_EVENT_TYPES
from pdconnect.webhooks.signatures import sign

logger = logging.getLogger("pdconnect.sandbox")

#: The V3 incident event types the sandbox emits.
V3_EVENT_TYPES = (
    "incident.triggered",
    "incident.acknowledged",
    "incident.unacknowledged",
    "incident.resolved",
    "incident.reassigned",
    "incident.escalated",
    "incident.delegated",
    "incident.annotated",
    "incident.priority_updated",
)
#: V3 type -> legacy V2 ``event`` (``pagerduty-protocols.md`` section 5.9).
V2_EVENT_TYPES = {
    "incident.triggered": "incident.trigger",
    "incident.acknowledged": "incident.acknowledge",
    "incident.unacknowledged": "incident.unacknowledge",
    "incident.resolved": "incident.resolve",
    "incident.reassigned": "incident.assign",
    "incident.escalated": "incident.escalate",
    "incident.delegated": "incident.delegate",
    "incident.annotated": "incident.annotate",
}
#: What a subscription may ask for: every type PagerDuty documents (the sandbox emits the above).
SUBSCRIBABLE_EVENT_TYPES = frozenset(INCIDENT_EVENT_TYPES) | {
    "service.created",
    "service.updated",
    "service.deleted",
    "service.custom_field_values.updated",
}
USER_AGENT_V3 = "PagerDuty-Webhook/V3.0"
USER_AGENT_V2 = "PagerDuty-Webhook/V2.0"
#: The ordering queue of a subscription's pings (deliveries are otherwise ordered per incident).
PING_QUEUE = "pagey.ping"


@dataclass(frozen=True)
class RetrySchedule:
    """Waits between attempts (seconds), and how long a subscription stays disabled.

    PagerDuty retries "periodically for up to 48 hours" and disables a subscription for 24
    hours after three dropped webhooks; the defaults here keep the same shape in seconds.
    """

    delays: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 4.0)
    timeout: float = 5.0
    disable_after_drops: int = 3
    disabled_for: float = 30.0

    def __post_init__(self) -> None:
        # A NaN or negative wait would make the dispatcher spin or never wake; refuse it here.
        for name, value in [*(("delays", d) for d in self.delays), ("timeout", self.timeout),
                            ("disabled_for", self.disabled_for)]:  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 86_400:
                raise ValueError(f"{name} must be seconds from 0 to 86400, got {value!r}")
        if self.timeout <= 0:
            raise ValueError("timeout must be more than 0 seconds")
        drops = self.disable_after_drops
        if isinstance(drops, bool) or not isinstance(drops, int) or drops < 1:
            raise ValueError(f"disable_after_drops must be a whole number of at least 1, got {drops!r}")

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1


class WebhookBuilder:
    """Builds V3 and V2 bodies for incident changes, with links into the sandbox's pages."""

    def __init__(self, store: SandboxStore, base_url: Callable[[], str]) -> None:
        self.store = store
        self.base_url = base_url

    def _ref(self, kind: str, record_id: str, summary: str, path: str) -> dict[str, Any]:
        base = self.base_url()
        return {
            "html_url": f"{base}/{path}/{record_id}",
            "id": record_id,
            "self": f"{base}/api/v2/{path}/{record_id}",
            "summary": summary,
            "type": f"{kind}_reference",
        }

    def user_ref(self, user_id: str) -> dict[str, Any]:
        user = self.store.get(User, user_id)
        return self._ref("user", user_id, user.name if user else user_id, "users")

    def service_ref(self, service_id: str) -> dict[str, Any]:
        service = self.store.get(Service, service_id)
        return self._ref("service", service_id, service.name if service else service_id, "services")

    def incident_data(self, incident: Incident) -> dict[str, Any]:
        """``event.data`` for incident events (``data.type = "incident"``)."""
        base = self.base_url()
        policy = self.store.get(EscalationPolicy, incident.escalation_policy)
        priority = None
        if incident.priority:
            priority = self._ref("priority", incident.priority, incident.priority, "priorities")
        return {
            "id": incident.id,
            "type": "incident",
            "self": f"{base}/api/v2/incidents/{incident.id}",
            "html_url": f"{base}/incidents/{incident.id}",
            "number": incident.number,
            "status": incident.status,
            "incident_key": incident.incident_key,
            "created_at": incident.created_at,
            "title": incident.title,
            "service": self.service_ref(incident.service),
            "assignees": [self.user_ref(user) for user in incident.assignees],
            "escalation_policy": self._ref(
                "escalation_policy", incident.escalation_policy, policy.name if policy else "", "escalation_policies"
            ),
            "teams": [],
            "priority": priority,
            "urgency": incident.urgency,
            "conference_bridge": None,
            "resolve_reason": None,
        }

    def v3_body(
        self,
        event_type: str,
        incident: Incident,
        *,
        agent: dict[str, Any] | None,
        client: str | None,
        note: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if event_type == "incident.annotated" and note is not None:
            data = {
                "incident": self._ref("incident", incident.id, incident.title, "incidents"),
                "id": note["id"],
                "content": note["content"],
                "trimmed": False,
                "type": "incident_note",
            }
        else:
            data = self.incident_data(incident)
        return {
            "event": {
                "id": str(uuid.uuid4()),
                "event_type": event_type,
                "resource_type": "incident",
                "occurred_at": now_iso(),
                "agent": agent,
                "client": {"name": client} if client else None,
                "data": data,
            }
        }

    def v2_body(
        self,
        event_type: str,
        incident: Incident,
        subscription: Subscription,
        *,
        agent: dict[str, Any] | None = None,
        note: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        base = self.base_url()
        alerts = list(incident.alerts)
        kind = V2_EVENT_TYPES[event_type].partition(".")[2]
        log_entry: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "type": f"{kind}_log_entry",
            "created_at": now_iso(),
            "agent": agent,
            "channel": {"type": "note", "summary": note["content"]} if note else {"type": "web_trigger"},
        }
        return {
            "messages": [
                {
                    "id": str(uuid.uuid4()),
                    "event": V2_EVENT_TYPES[event_type],
                    "created_on": now_iso(),
                    "incident": {
                        "id": incident.id,
                        "incident_number": incident.number,
                        "title": incident.title,
                        "status": incident.status,
                        "incident_key": incident.incident_key,
                        "created_at": incident.created_at,
                        "html_url": f"{base}/incidents/{incident.id}",
                        "service": self.service_ref(incident.service),
                        "assignments": [
                            {"at": incident.updated_at, "assignee": self.user_ref(u)} for u in incident.assignees
                        ],
                        "acknowledgements": [
                            {"at": incident.updated_at, "acknowledger": self.user_ref(u)}
                            for u in incident.acknowledgers
                        ],
                        "last_status_change_at": incident.updated_at,
                        "last_status_change_by": agent,
                        "urgency": incident.urgency,
                        "priority": incident.priority and {"summary": incident.priority, "type": "priority"},
                        "alerts": [{"alert_key": incident.incident_key, "id": alert_id} for alert_id in alerts],
                    },
                    "webhook": {
                        "endpoint_url": subscription.url,
                        "id": subscription.id,
                        "name": subscription.description or "sandbox webhook",
                        "type": "webhook_reference",
                    },
                    "log_entries": [log_entry],
                }
            ]
        }


class WebhookDispatcher:
    """Sends queued deliveries in a background thread, in order per subscription and incident."""

    def __init__(
        self,
        store: SandboxStore,
        *,
        schedule: RetrySchedule | None = None,
        clock: Callable[[], float] = time.monotonic,
        workers: int = 4,
        allow_remote: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.allow_remote = allow_remote
        self.schedule = schedule if schedule is not None else RetrySchedule()
        self.clock = clock
        self.session = requests.Session()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox-webhook")
        self._in_flight: set[tuple[str, str]] = set()
        self._stop = False
        self._wake = threading.Condition(store.lock)
        # Pending deliveries, oldest first, per (subscription, incident): the ordering unit.
        self._queues: dict[tuple[str, str], deque[str]] = {}
        self._seq = 0
        self.reload()
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)

    def reload(self) -> None:
        """Rebuild the queues from the store (after loading a database, or a reset)."""
        with self.store.lock:
            self._queues.clear()
            deliveries = sorted(self.store.all(Delivery), key=lambda d: d.seq)
            self._seq = deliveries[-1].seq if deliveries else 0
            for delivery in deliveries:
                if delivery.state == "pending":
                    self._queues.setdefault((delivery.subscription, delivery.incident), deque()).append(delivery.id)
            self._wake.notify_all()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.session.close()

    def enqueue(
        self, subscription: Subscription, incident: Incident | None, event_type: str, body: dict[str, Any]
    ) -> Delivery:
        """Queue one webhook (call with the store's lock held, inside a transaction).

        ``incident`` is ``None`` for a ping; pings are ordered among themselves. The
        subscription's custom headers go first, so the ones PagerDuty sets always win (they
        are refused as custom headers anyway). While its secret is rotated, a V3 webhook
        carries two ``v1=`` signatures: the new secret's and the old one's.
        """
        data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        webhook_id = str(uuid.uuid4())
        headers = {h["name"]: h["value"] for h in subscription.custom_headers}
        if subscription.version == "v3":
            headers |= {
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": USER_AGENT_V3,
                "X-PagerDuty-Signature": rotation_headers(subscription, sign, data),
                "X-Webhook-Id": webhook_id,
                "X-Webhook-Subscription": subscription.id,
            }
        else:
            headers |= {"Content-Type": "application/json", "User-Agent": USER_AGENT_V2}
        self._seq += 1
        order = incident.id if incident is not None else PING_QUEUE
        delivery = Delivery(
            id=webhook_id,
            subscription=subscription.id,
            incident=order,
            event_type=event_type,
            body=data.decode("utf-8"),
            headers=headers,
            created_at=now_iso(),
            seq=self._seq,
            next_attempt_at=self.clock(),
        )
        self.store.put(delivery)
        self._queues.setdefault((subscription.id, order), deque()).append(delivery.id)
        self._wake.notify_all()
        return delivery

    def _due(self) -> tuple[list[Delivery], float | None]:
        """The queue heads that may be attempted now, and when the next one will be due."""
        now = self.clock()
        due, next_at = [], None
        for key, queue in list(self._queues.items()):
            if not queue:
                del self._queues[key]
                continue
            if key in self._in_flight:
                continue
            head = self.store.get(Delivery, queue[0])
            if head is None or head.state != "pending":
                queue.popleft()
                continue
            if head.next_attempt_at <= now:
                due.append(head)
            else:
                next_at = head.next_attempt_at if next_at is None else min(next_at, head.next_attempt_at)
        return due, next_at

    def _run(self) -> None:
        with self._wake:
            while not self._stop:
                due, next_at = self._due()
                for delivery in due:
                    self._in_flight.add((delivery.subscription, delivery.incident))
                    self._pool.submit(self._attempt, delivery.id)
                if not due:
                    timeout = None if next_at is None else max(0.0, next_at - self.clock())
                    self._wake.wait(timeout)

    def _attempt(self, delivery_id: str) -> None:
        with self.store.lock:
            delivery = self.store.get(Delivery, delivery_id)
            subscription = self.store.get(Subscription, delivery.subscription) if delivery else None
        if delivery is None:
            return
        key = (delivery.subscription, delivery.incident)
        status: int | None = None
        error: str | None = None
        if subscription is None or not self._enabled(subscription):
            error = "subscription disabled"
        elif not self.allow_remote() and not is_loopback_host(urlsplit(subscription.url).hostname):
            # Checked again here: a database file may hold subscriptions made while remote
            # webhooks were allowed, and the sandbox must not go on sending off this machine.
            error = "remote delivery refused"
        else:
            try:
                response = self.session.post(
                    subscription.url,
                    data=delivery.body.encode("utf-8"),
                    headers=delivery.headers,
                    timeout=self.schedule.timeout,
                    allow_redirects=False,
                )
                status = response.status_code
            except requests.RequestException as exc:
                error = type(exc).__name__
        with self.store.transaction():
            self._in_flight.discard(key)
            if self.store.get(Delivery, delivery.id) is not delivery:
                return  # the sandbox was reset while this attempt was under way
            self._record(delivery, subscription, status, error)
            queue = self._queues.get(key)
            if delivery.state != "pending" and queue and queue[0] == delivery.id:
                queue.popleft()
            self._wake.notify_all()

    def _enabled(self, subscription: Subscription) -> bool:
        if not subscription.active:
            return False
        return subscription.disabled_until is None or subscription.disabled_until <= self.clock()

    def _record(
        self, delivery: Delivery, subscription: Subscription | None, status: int | None, error: str | None
    ) -> None:
        delivery.attempts.append({"at": now_iso(), "status": status, "error": error})
        if status is not None and 200 <= status < 300:
            delivery.state = "delivered"
            if subscription is not None:
                subscription.consecutive_drops = 0
                self.store.put(subscription)
        else:
            temporary = status is None or status == 429 or status >= 500
            attempts = len(delivery.attempts)
            final = error in ("subscription disabled", "remote delivery refused")
            if temporary and attempts < self.schedule.max_attempts and not final:
                delivery.next_attempt_at = self.clock() + self.schedule.delays[attempts - 1]
            else:
                self._drop(delivery, subscription)
        self.store.put(delivery)

    def _drop(self, delivery: Delivery, subscription: Subscription | None) -> None:
        delivery.state = "dropped"
        if subscription is None:
            return
        subscription.consecutive_drops += 1
        if subscription.consecutive_drops >= self.schedule.disable_after_drops:
            # PagerDuty: disabled for a while, and its queue dropped.
            subscription.disabled_until = self.clock() + self.schedule.disabled_for
            subscription.consecutive_drops = 0
            for queued in self.store.all(Delivery):
                if queued.subscription == subscription.id and queued.state == "pending" and queued is not delivery:
                    queued.state = "dropped"
                    queued.attempts.append({"at": now_iso(), "status": None, "error": "subscription disabled"})
                    self.store.put(queued)
        self.store.put(subscription)


def matching_subscriptions(
    subscriptions: Sequence[Subscription],
    incident: Incident,
    event_type: str,
    account: str,
    *,
    team: str | None = None,
) -> list[Subscription]:
    """The subscriptions of ``account`` that want ``event_type`` for ``incident`` (on a service of ``team``)."""
    chosen = []
    for subscription in subscriptions:
        if not subscription.active or event_type not in subscription.events:
            continue
        if subscription.account not in ("", account):
            continue  # another account's: nothing of this one is ever sent to it
        if subscription.filter_type == "team_reference" and (team is None or subscription.filter_id != team):
            continue
        if subscription.version == "v2" and event_type not in V2_EVENT_TYPES:
            continue
        if subscription.filter_type == "service_reference" and subscription.filter_id != incident.service:
            continue
        if subscription.filter_type == "account_reference" and subscription.filter_id not in (None, account):
            continue
        chosen.append(subscription)
    return chosen
