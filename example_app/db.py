"""Acme Monitoring's own tables (SQLAlchemy Core): users, monitors and the alerts it raised.

Row ids are never reused (``sqlite_autoincrement``; PostgreSQL's sequences never reuse one):
an id names one user or one monitor for ever, and an alert outlives its monitor. Without it
SQLite hands a deleted highest id to the next row, and a new user's monitor would take the
id of another user's deleted one. Every query of alerts is by owner as well as by id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

users = sa.Table(
    "acme_users",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(80), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False, default=time.time),
    sqlite_autoincrement=True,
)

monitors = sa.Table(
    "acme_monitors",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False, index=True),
    sa.Column("name", sa.String(120), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # http | metric
    sa.Column("target", sa.String(500), nullable=False),  # URL, or the metric's name
    sa.Column("operator", sa.String(16), nullable=False, default="at_or_above"),
    sa.Column("threshold", sa.Float, nullable=False, default=0.0),
    sa.Column("metric_value", sa.Float, nullable=False, default=0.0),
    sa.Column("region", sa.String(40), nullable=False),
    sa.Column("interval_seconds", sa.Integer, nullable=False, default=30),
    sa.Column("confirm_after", sa.Integer, nullable=False, default=1),
    sa.Column("resolve_after", sa.Integer, nullable=False, default=1),
    sa.Column("forced", sa.String(8)),  # "fail" or "ok": the demo's simulate control
    sa.Column("state", sa.Text, nullable=False, default="{}"),
    sa.Column("last_checked_at", sa.Float, nullable=False, default=0.0),
    sqlite_autoincrement=True,
)

monitor_targets = sa.Table(
    "acme_monitor_targets",
    metadata,
    sa.Column("monitor_id", sa.Integer, sa.ForeignKey("acme_monitors.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("integration_id", sa.String(32), primary_key=True),
)

alerts = sa.Table(
    "acme_alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False, index=True),
    sa.Column("monitor_id", sa.Integer, nullable=False),
    sa.Column("integration_id", sa.String(32), nullable=False),
    sa.Column("service_name", sa.String(255)),
    sa.Column("dedup_key", sa.String(255), nullable=False),
    sa.Column("summary", sa.String(1024), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # triggered | resolved | failed
    sa.Column("pagerduty_status", sa.String(255), nullable=False),
    sa.Column("trigger_outbox_id", sa.Integer),  # the events in pdconnect's outbox, to show delivery
    sa.Column("resolve_outbox_id", sa.Integer),
    sa.Column("opened_at", sa.Float, nullable=False),
    sa.Column("resolved_at", sa.Float),
    sa.Column("last_error", sa.String(500)),
    sqlite_autoincrement=True,
)

alertmanager_tokens = sa.Table(
    "acme_alertmanager_tokens",
    metadata,
    sa.Column("owner", sa.String(64), primary_key=True),
    sa.Column("token_sha256", sa.String(64), nullable=False),  # the token itself is shown once, never stored
    sa.Column("created_at", sa.Float, nullable=False),
)


def user_id_for(engine: sa.Engine, name: str, *, on_create: Callable[[sa.Connection, str], None]) -> int:
    """The id of the user called ``name``; a new one is made, and ``on_create`` run in its transaction.

    Two first sign-ins with one name (a double click) can both find no user: the later insert
    breaks the UNIQUE name, its transaction (and its ``on_create``) is rolled back, and it
    signs in as the user the earlier one made.
    """
    for _attempt in range(3):
        try:
            with engine.begin() as conn:
                found = conn.execute(sa.select(users.c.id).where(users.c.name == name)).scalar_one_or_none()
                if found is not None:
                    return int(found)
                key = conn.execute(sa.insert(users).values(name=name, created_at=time.time())).inserted_primary_key
                assert key is not None
                user_id = int(key[0])
                on_create(conn, str(user_id))
                return user_id
        except sa.exc.IntegrityError:
            continue
    raise RuntimeError("could not sign in: the user kept changing")


@dataclass(frozen=True)
class Monitor:
    """A monitor row, with its state decoded."""

    id: int
    owner: str
    name: str
    kind: str
    target: str
    operator: str
    threshold: float
    metric_value: float
    region: str
    interval_seconds: int
    confirm_after: int
    resolve_after: int
    forced: str | None
    state: dict[str, Any]
    last_checked_at: float
    targets: tuple[str, ...]


def monitor_from(row: Any, targets: tuple[str, ...]) -> Monitor:
    data = dict(row._mapping)
    data["state"] = json.loads(data["state"] or "{}")
    return Monitor(**data, targets=targets)


def targets_of(conn: sa.Connection, monitor_id: int) -> tuple[str, ...]:
    query = sa.select(monitor_targets.c.integration_id).where(monitor_targets.c.monitor_id == monitor_id)
    return tuple(conn.execute(query).scalars())


def load_monitor(conn: sa.Connection, owner: str | None, monitor_id: int) -> Monitor | None:
    """A monitor by id; with ``owner``, only if that user owns it."""
    query = sa.select(monitors).where(monitors.c.id == monitor_id)
    if owner is not None:
        query = query.where(monitors.c.owner == owner)
    row = conn.execute(query).one_or_none()
    return None if row is None else monitor_from(row, targets_of(conn, monitor_id))


def owner_alerts(owner: str, *, monitor_id: int | None = None) -> sa.Select[Any]:
    """The query for ``owner``'s alerts (of one monitor, with ``monitor_id``), newest first."""
    query = sa.select(alerts).where(alerts.c.owner == owner)
    if monitor_id is not None:
        query = query.where(alerts.c.monitor_id == monitor_id)
    return query.order_by(alerts.c.id.desc())


def owner_monitors(conn: sa.Connection, owner: str) -> list[Monitor]:
    rows = conn.execute(sa.select(monitors).where(monitors.c.owner == owner).order_by(monitors.c.id)).all()
    return [monitor_from(row, targets_of(conn, row.id)) for row in rows]
