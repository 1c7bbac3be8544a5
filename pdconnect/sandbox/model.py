"""The sandbox's records: accounts, services, keys, incidents, webhooks and what was received.

Plain dataclasses, kept in memory by :class:`~pdconnect.sandbox.store.SandboxStore` and
written to SQLite as JSON when the sandbox has a database file. Ids look like PagerDuty's
(``P`` and six characters for most objects; longer ``Q…`` ids for incidents).
"""

from __future__ import annotations

import random
import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

_ID_ALPHABET = string.ascii_uppercase + string.digits
# Object ids only need to be unique, not secret; a fast generator keeps the events path quick.
_ids = random.Random()  # noqa: S311


def now_iso() -> str:
    """The current UTC time as PagerDuty writes it (ISO 8601 with ``Z``)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id(prefix: str = "P", length: int = 6) -> str:
    """A PagerDuty-style object id such as ``PXYZ123``."""
    return prefix + "".join(_ids.choices(_ID_ALPHABET, k=length))


def new_service_key() -> str:
    """A service integration key: 32 lowercase hex characters."""
    return secrets.token_hex(16)


def new_ruleset_key() -> str:
    """A ruleset routing key: ``R`` and 31 uppercase letters or digits."""
    return "R" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(31))


def new_api_key() -> str:
    """A REST API key: 20 characters of letters, digits, ``+``, ``-`` and ``_`` like PagerDuty's.

    UNCONFIRMED: PagerDuty documents no format for API keys; its examples are 20 characters.
    """
    return "".join(secrets.choice(string.ascii_letters + string.digits + "+-_") for _ in range(20))


#: The regions an account can live in (``pagerduty-oauth.md`` section 5).
REGIONS = ("us", "eu")


@dataclass
class Account:
    """A PagerDuty account, known by its subdomain, in the ``us`` or the ``eu`` region."""

    id: str  # the subdomain
    name: str
    created_at: str = field(default_factory=now_iso)
    region: str = "us"


@dataclass
class ApiKey:
    """A REST API key of one account (``Authorization: Token token=<key>``); ``read_only`` keys only GET."""

    id: str  # the key itself
    account: str
    read_only: bool = False
    description: str = ""
    created_at: str = field(default_factory=now_iso)

    def __repr__(self) -> str:
        return f"ApiKey(id='…{self.id[-4:]}', account={self.account!r}, read_only={self.read_only})"


@dataclass
class Team:
    """A team of an account; services belong to at most one (enough for ``team_reference`` filters)."""

    id: str
    account: str
    name: str


@dataclass
class User:
    """A responder in an account, with the role it has when it signs in to an OAuth app."""

    id: str
    account: str
    name: str
    email: str
    role: str = "responder"  # observer | responder | manager | admin | owner


@dataclass
class EscalationPolicy:
    """Who is paged, level by level (one user per level is enough here)."""

    id: str
    account: str
    name: str
    levels: list[str]  # user ids, level 1 first


@dataclass
class Service:
    """A PagerDuty service; incidents open on it."""

    id: str
    account: str
    name: str
    escalation_policy: str
    description: str = ""
    created_at: str = field(default_factory=now_iso)
    team: str | None = None


@dataclass
class Ruleset:
    """A global event ruleset: its ``R…`` key routes alerts to a service."""

    id: str
    account: str
    name: str
    key: str
    target_service: str
    type: str = "global_rule_set"


@dataclass
class IntegrationKey:
    """An integration on a service (or a ruleset's key): what events are sent with.

    ``kind`` is ``events_api_v2`` (made in the pages or pasted), ``connect`` (made by legacy
    Connect, for ``vendor``) or ``app`` (made by an app's install flow, for ``app_id``). A
    ``disabled`` key is refused by the events endpoints as if PagerDuty did not know it.
    """

    id: str  # the key itself
    account: str
    service: str | None
    ruleset: str | None
    kind: str
    name: str
    vendor: str | None = None
    app_id: str | None = None
    created_at: str = field(default_factory=now_iso)
    disabled: bool = False

    def __repr__(self) -> str:
        # The key is a secret outside the sandbox's own pages: only its last four characters.
        return (
            f"IntegrationKey(id='…{self.id[-4:]}', account={self.account!r}, service={self.service!r}, "
            f"kind={self.kind!r}, disabled={self.disabled})"
        )


@dataclass
class App:
    """A registered app with Events Integration: its id and allowed redirect URLs."""

    id: str
    name: str
    redirect_urls: list[str]


@dataclass
class Alert:
    """One alert: what a ``(routing key, dedup key)`` pair opened."""

    id: str
    incident: str
    routing_key: str
    dedup_key: str
    status: str  # triggered | resolved
    summary: str
    severity: str
    source: str | None
    created_at: str
    details: dict[str, Any] = field(default_factory=dict)
    client: str | None = None
    client_url: str | None = None
    resolved_at: str | None = None


@dataclass
class Incident:
    """An incident, with everything that happened to it in ``timeline``."""

    id: str
    number: int
    account: str
    service: str
    title: str
    status: str  # triggered | acknowledged | resolved
    urgency: str  # high | low
    incident_key: str
    escalation_policy: str
    escalation_level: int
    assignees: list[str]
    created_at: str
    updated_at: str
    alerts: list[str] = field(default_factory=list)
    priority: str | None = None
    acknowledgers: list[str] = field(default_factory=list)
    resolved_at: str | None = None
    timeline: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ChangeEvent:
    """A change event received for a service."""

    id: str
    service: str
    routing_key: str
    summary: str
    received_at: str
    raw: dict[str, Any]


@dataclass
class Subscription:
    """A webhook subscription of one account: V3 (signed) or the legacy V2 ``messages`` format.

    While a secret is being rotated, ``previous_secret`` still signs deliveries beside
    ``secret`` (two ``v1=`` signatures), until the rotation is finished.
    """

    id: str
    url: str
    secret: str = field(repr=False)
    events: list[str]
    filter_type: str  # account_reference | service_reference | team_reference
    filter_id: str | None
    version: str = "v3"
    description: str = ""
    active: bool = True
    consecutive_drops: int = 0
    disabled_until: float | None = None
    created_at: str = field(default_factory=now_iso)
    account: str = ""  # the owner; "" only in a database file older than tenancy
    custom_headers: list[dict[str, str]] = field(default_factory=list, repr=False)  # values may be credentials
    previous_secret: str | None = field(default=None, repr=False)


@dataclass
class Delivery:
    """One webhook to deliver, with each attempt made."""

    id: str  # X-Webhook-Id, the same on every retry
    subscription: str
    incident: str
    event_type: str
    body: str
    headers: dict[str, str]
    created_at: str
    seq: int
    state: str = "pending"  # pending | delivered | dropped
    attempts: list[dict[str, Any]] = field(default_factory=list)
    next_attempt_at: float = 0.0


@dataclass
class Received:
    """One request to an events endpoint, exactly as it came and as it was answered."""

    id: str  # the sequence number, zero-padded, so ids sort in arrival order
    seq: int
    at: str
    path: str
    api: str  # v2 | change | v1
    status: int
    routing_key: str | None
    dedup_key: str | None
    action: str | None
    outcome: str
    request: Any
    response: Any


KINDS: dict[str, type] = {
    "account": Account,
    "api_key": ApiKey,
    "team": Team,
    "user": User,
    "escalation_policy": EscalationPolicy,
    "service": Service,
    "ruleset": Ruleset,
    "integration": IntegrationKey,
    "app": App,
    "alert": Alert,
    "incident": Incident,
    "change_event": ChangeEvent,
    "subscription": Subscription,
    "delivery": Delivery,
    "received": Received,
}
KIND_OF: dict[type, str] = {cls: kind for kind, cls in KINDS.items()}
