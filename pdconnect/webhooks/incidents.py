"""The latest state of each incident, as webhooks report it: what a vendor's UI shows.

Every webhook event about an incident is folded into one row per (owner, incident): its
status, who last changed it and when, its number, title, urgency, assignees and link. A
vendor's page looks it up by the dedup key it sent (``incident_key``) and shows "Acknowledged
by Alice, 12:03". Events are applied in the order they *happened* (``occurred_at``), not the
order they arrived: a retried, older webhook never overwrites a newer state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from pdconnect.database import create_all, engine_for, shown_url
from pdconnect.timestamps import as_utc
from pdconnect.webhooks.model import IncidentStatus, WebhookEvent

logger = logging.getLogger("pdconnect")

#: Reads and conditional writes before giving up on one event (each lost race means another
#: event of the same incident was applied in between).
_TRIES = 5
_ID_LENGTH = 64
_OWNER_LENGTH = 255


@dataclass(frozen=True)
class IncidentState:
    """One incident as last reported.

    ``changed_by`` names whoever made the last status change, and ``changed_by_type`` what it
    is (``user_reference`` for a person; ``service_reference`` when an event from the vendor's
    own integration did it; ``None`` for PagerDuty itself, such as an acknowledgement that
    timed out).
    """

    incident_id: str
    owner_id: str | None
    incident_key: str | None
    status: IncidentStatus | None
    changed_at: datetime | None
    changed_by: str | None
    last_event_type: str
    changed_by_type: str | None = None
    number: int | None = None
    title: str | None = None
    urgency: str | None = None
    html_url: str | None = None
    service_id: str | None = None
    service_name: str | None = None
    assignees: tuple[str, ...] = ()

    @property
    def acknowledged(self) -> bool:
        return self.status is IncidentStatus.ACKNOWLEDGED

    @property
    def resolved(self) -> bool:
        return self.status is IncidentStatus.RESOLVED

    @property
    def changed_by_person(self) -> str | None:
        """``changed_by`` when a person made the change (not an integration or PagerDuty)."""
        if self.changed_by and self.changed_by_type in (None, "user", "user_reference"):
            return self.changed_by
        return None

    def describe(self) -> str:
        """A short line for a UI: "Acknowledged by Alice"; "Resolved" when no person did it."""
        status = (self.status.value if self.status else "updated").capitalize()
        person = self.changed_by_person
        return f"{status} by {person}" if person else status


class IncidentStateStore:
    """Incident states in a SQL table (SQLite or PostgreSQL through SQLAlchemy)."""

    def __init__(
        self,
        engine: sa.Engine | str,
        *,
        table_name: str = "pdconnect_incident_states",
        create_tables: bool = True,
    ) -> None:
        self.engine = engine_for(engine)
        self.metadata = sa.MetaData()
        self.table = sa.Table(
            table_name,
            self.metadata,
            sa.Column("owner_id", sa.String(255), primary_key=True),  # "" when not known
            sa.Column("incident_id", sa.String(64), primary_key=True),
            sa.Column("incident_key", sa.String(255)),
            sa.Column("status", sa.String(16)),
            sa.Column("changed_at", sa.DateTime(timezone=True)),
            sa.Column("changed_by", sa.String(255)),
            sa.Column("changed_by_type", sa.String(64)),
            sa.Column("last_event_type", sa.String(100), nullable=False),
            sa.Column("occurred_at", sa.DateTime(timezone=True)),  # of the newest event applied
            sa.Column("number", sa.Integer),
            sa.Column("title", sa.String(1024)),
            sa.Column("urgency", sa.String(16)),
            sa.Column("html_url", sa.String(1024)),
            sa.Column("service_id", sa.String(64)),
            sa.Column("service_name", sa.String(255)),
            sa.Column("assignees", sa.Text),  # a JSON list of names
            sa.Index(f"{table_name}_key", "owner_id", "incident_key"),
        )
        if create_tables:
            create_all(self.metadata, self.engine)

    def __repr__(self) -> str:
        url = shown_url(self.engine.url)
        return f"IncidentStateStore({url!r}, table={self.table.name!r})"

    def apply(self, event: WebhookEvent) -> IncidentState | None:
        """Fold ``event`` in; returns the new state, or ``None`` when it was older or not about an incident."""
        incident = event.incident
        if incident is None:
            return None
        owner = event.owner_id or ""
        incident_id = _text(incident.id, None)
        if incident_id is None or len(incident_id) > _ID_LENGTH or len(owner) > _OWNER_LENGTH or "\x00" in owner:
            # Not PagerDuty's (its ids are a few characters); cutting it could merge two incidents.
            logger.warning(
                "pdconnect: event %r names an incident id pdconnect cannot store; not folded in", event.id[:64]
            )
            return None
        table = self.table
        key = sa.and_(table.c.owner_id == owner, table.c.incident_id == incident_id)
        # Optimistic: read, merge, then write only if the row is still the one read (another
        # process may have applied a newer event meanwhile); otherwise read again.
        for _ in range(_TRIES):
            try:
                with self.engine.begin() as conn:
                    row = conn.execute(sa.select(table).where(key)).one_or_none()
                    current = dict(row._mapping) if row is not None else None
                    if current is not None and _older(event.occurred_at, as_utc(current["occurred_at"])):
                        return None
                    values = _merge(current, event)
                    if current is None:
                        conn.execute(sa.insert(table).values(owner_id=owner, incident_id=incident_id, **values))
                    else:
                        unchanged = sa.and_(
                            key,
                            table.c.occurred_at.is_not_distinct_from(current["occurred_at"]),
                            table.c.last_event_type == current["last_event_type"],
                        )
                        if not conn.execute(sa.update(table).where(unchanged).values(**values)).rowcount:
                            continue  # changed since it was read: merge again from what is there now
                    return _state({**values, "owner_id": owner, "incident_id": incident_id})
            except IntegrityError:
                continue  # another request inserted it first: the next pass updates
        logger.warning(
            "pdconnect: incident %s changed on every try; event %r not folded in", incident_id, event.id[:64]
        )
        return None

    def get(self, incident_id: str, *, owner_id: str | None = None) -> IncidentState | None:
        if not _storable(incident_id, _ID_LENGTH) or not _storable(owner_id or "", _OWNER_LENGTH):
            return None  # nothing of that shape is ever stored (and PostgreSQL refuses NUL)
        table = self.table
        query = sa.select(table).where(table.c.owner_id == (owner_id or ""), table.c.incident_id == incident_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        return _state(row._mapping) if row is not None else None

    def by_dedup_key(
        self, dedup_key: str, *, owner_id: str | None = None, service_id: str | None = None
    ) -> IncidentState | None:
        """The newest incident opened for ``dedup_key`` (a key is reused after each resolve).

        ``service_id`` narrows it to one PagerDuty service, for an alert sent to several.
        """
        found = self.by_dedup_keys([dedup_key], owner_id=owner_id, service_id=service_id)
        return found.get(dedup_key)

    def by_dedup_keys(
        self, dedup_keys: list[str], *, owner_id: str | None = None, service_id: str | None = None
    ) -> dict[str, IncidentState]:
        """The newest incident for each of ``dedup_keys`` that has one (for a list page)."""
        dedup_keys = [key for key in dedup_keys if _storable(key, 255)]
        if not dedup_keys or not _storable(owner_id or "", _OWNER_LENGTH):
            return {}
        table = self.table
        query = (
            sa.select(table)
            .where(table.c.owner_id == (owner_id or ""), table.c.incident_key.in_(dedup_keys))
            .order_by(table.c.number.asc().nulls_first(), table.c.occurred_at.asc().nulls_first())
        )
        if service_id is not None:
            query = query.where(table.c.service_id == service_id)
        found: dict[str, IncidentState] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(query):
                state = _state(row._mapping)
                if state.incident_key is not None:
                    found[state.incident_key] = state  # later (newer) rows win
        return found

    def drop_tables(self) -> None:
        self.metadata.drop_all(self.engine)


def _text(value: str | None, limit: int | None) -> str | None:
    """Text to show, as a column holds it: no NUL (PostgreSQL refuses it), at most ``limit`` characters."""
    cleaned = (value or "").replace("\x00", "")[:limit]
    return cleaned or None


def _storable(value: object, limit: int) -> bool:
    """Whether ``value`` could be a stored id or key: text without NUL, at most ``limit`` long."""
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: no driver can send it
        return False
    return True


def _key(value: str | None, limit: int) -> str | None:
    """A value looked up or linked to (a dedup key, a service id, a URL): whole, or not at all."""
    cleaned = _text(value, None)
    return cleaned if cleaned is not None and len(cleaned) <= limit else None


def _older(occurred: datetime | None, applied: datetime | None) -> bool:
    return occurred is not None and applied is not None and occurred < applied


def _merge(current: dict[str, Any] | None, event: WebhookEvent) -> dict[str, Any]:
    """The row's new values: fields the event carries replace the old, the rest stay."""
    incident = event.incident
    assert incident is not None
    old = current or {}
    status = incident.status or event.status_after
    status_changed = event.status_after is not None or (status is not None and status.value != old.get("status"))
    service = incident.service
    values: dict[str, Any] = {
        "incident_key": _key(incident.incident_key, 255) or old.get("incident_key"),
        "status": status.value if status else old.get("status"),
        "last_event_type": _text(event.event_type, 100) or "-",
        "occurred_at": event.occurred_at or as_utc(old.get("occurred_at")),
        "number": incident.number if incident.number is not None else old.get("number"),
        "title": _text(incident.title, 1024) or old.get("title"),
        "urgency": _key(incident.urgency, 16) or old.get("urgency"),
        "html_url": _key(incident.html_url, 1024) or old.get("html_url"),
        "service_id": _key(service.id if service else None, 64) or old.get("service_id"),
        "service_name": _text(service.name if service else None, 255) or old.get("service_name"),
        "assignees": json.dumps([_text(a.name, 255) for a in incident.assignees])
        if incident.assignees
        else old.get("assignees"),
        "changed_at": as_utc(old.get("changed_at")),
        "changed_by": old.get("changed_by"),
        "changed_by_type": old.get("changed_by_type"),
    }
    if status_changed:
        values["changed_at"] = event.occurred_at or datetime.now(UTC)
        values["changed_by"] = _text(event.agent.name if event.agent else None, 255)
        values["changed_by_type"] = _text(event.agent.type if event.agent else None, 64)
    return values


def _state(data: Mapping[Any, Any]) -> IncidentState:
    try:
        assignees = tuple(str(name) for name in json.loads(data["assignees"] or "[]") if name)
    except ValueError:
        assignees = ()
    return IncidentState(
        incident_id=data["incident_id"],
        owner_id=data["owner_id"] or None,
        incident_key=data["incident_key"],
        status=IncidentStatus(data["status"]) if data["status"] else None,
        changed_at=as_utc(data["changed_at"]),
        changed_by=data["changed_by"],
        changed_by_type=data["changed_by_type"],
        last_event_type=data["last_event_type"],
        number=data["number"],
        title=data["title"],
        urgency=data["urgency"],
        html_url=data["html_url"],
        service_id=data["service_id"],
        service_name=data["service_name"],
        assignees=assignees,
    )
