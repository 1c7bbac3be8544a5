"""The outbox: events stored in the vendor's SQL database until a worker has delivered them.

Enqueueing validates the event (a bad one is refused at once), prepares the exact request and
inserts it, inside the caller's own transaction when given one: the alert is stored if and
only if the vendor's own change commits (the transactional-outbox pattern). Workers
(:mod:`pdconnect.worker`) claim due events with a lease, deliver them, and record the outcome.

**Order.** Events of one *group* (the same routing key and dedup key) are delivered in the
order they were enqueued (committed): only the oldest unfinished event of a group, its
*head*, can be claimed. A worker marks each newly enqueued event as a head or not
("promotion", done only by workers, so enqueueing needs no locks), and finishing a head
makes the next event of its group the head. Different groups proceed in parallel.

On PostgreSQL (READ COMMITTED) a worker can promote an event while another worker is
finishing its predecessor: the event looks blocked to the first, and the second's advance
ran before the event was visible to it. So the advance runs once more after the outcome is
committed, and :meth:`Outbox.repair_heads` (run by workers at start and then every half
minute) gives a head to any group left without one, whatever the cause.

**Leases.** A claimed event is *leased* to one worker until ``lease_until``; if the worker
dies, the lease runs out and another worker claims it again. Delivery is therefore at least
once; the stable dedup key makes a repeated trigger harmless.

**Backends.** SQLite (WAL mode; one machine, several threads and processes) and PostgreSQL
(many workers on many machines; claims use ``FOR UPDATE SKIP LOCKED``), both through
SQLAlchemy Core.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.schema import CreateIndex

from pdconnect.database import create_all, engine_for, shown_url
from pdconnect.errors import ConfigError, EventValidationError
from pdconnect.events import Event
from pdconnect.integration import EventsApi, Integration
from pdconnect.keys import redact
from pdconnect.sender import EventKind, PreparedEvent, Sender, Target

logger = logging.getLogger("pdconnect")

PENDING = "pending"
LEASED = "leased"
DELIVERED = "delivered"
DEAD = "dead"
REQUEUED = "requeued"
UNFINISHED = (PENDING, LEASED)
#: The longest lease a claim takes: a dead worker's events wait this long for another worker.
MAX_LEASE = 24 * 3600.0
#: The most events one claim, one ``dead`` listing or one ``IN`` list of ids handles at once.
MAX_BATCH = 10_000
#: Rows :meth:`Outbox.purge_delivered` deletes per transaction.
PURGE_BATCH = 5000
_ID_CHUNK = 500  # ids per IN (...): far below SQLite's limit on bound parameters
_MAX_ID = 2**63 - 1  # BIGINT
_TABLE_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}", re.ASCII)
# After promoting this many events at once, PostgreSQL's statistics for the table are stale
# enough to steer the hot statements away from the partial indexes: refresh them.
ANALYZE_AFTER = 1000


def number(value: object, *, name: str, minimum: float, maximum: float, above: bool = False) -> float:
    """``value`` as a float, finite and within ``minimum``..``maximum`` (strictly above ``minimum``
    when ``above``); else :class:`~pdconnect.errors.ConfigError` naming ``name``.

    A bool is refused (``True`` is not one second), and so are NaN and infinity: a lease of NaN
    is stored as NULL and one of infinity never runs out, and either strands the event.
    """
    expected = f"{name} must be a finite number {'above' if above else 'from'} {minimum:g} to {maximum:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{expected}, not a {type(value).__name__}", setting=name)
    try:
        result = float(value)
    except OverflowError:
        raise ConfigError(expected, setting=name) from None
    if not math.isfinite(result) or result < minimum or result > maximum or (above and result == minimum):
        raise ConfigError(expected, setting=name)
    return result


def whole(value: object, *, name: str, minimum: int, maximum: int) -> int:
    """``value`` as an int within ``minimum``..``maximum``; a bool or a float is refused."""
    expected = f"{name} must be a whole number from {minimum} to {maximum}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{expected}, not a {type(value).__name__}", setting=name)
    if not minimum <= value <= maximum:
        raise ConfigError(expected, setting=name)
    return int(value)


def label(value: object, *, name: str) -> str:
    """A worker's name: 1 to 255 printable characters, storable as UTF-8."""
    expected = f"{name} must be 1 to 255 printable characters"
    if not isinstance(value, str):
        raise ConfigError(f"{expected}, not a {type(value).__name__}", setting=name)
    if not 0 < len(value) <= 255 or any(unicodedata.category(c) in ("Cc", "Cs", "Cn") for c in value):
        raise ConfigError(expected, setting=name)
    return value


def _moment(value: float | None, *, name: str = "now") -> float:
    return time.time() if value is None else number(value, name=name, minimum=0.0, maximum=1e12)


def _ids(ids: Iterable[int], *, name: str = "ids") -> list[int]:
    """Event ids, checked: a str or a float there would fail in the database, or match nothing."""
    if isinstance(ids, str | bytes):
        raise ConfigError(f"{name} must be a list of event ids, not a {type(ids).__name__}", setting=name)
    return [whole(i, name=name, minimum=1, maximum=_MAX_ID) for i in ids]


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _ID_CHUNK):
        yield ids[start : start + _ID_CHUNK]


def _group(routing_key: str, dedup_key: str | None) -> str:
    return f"{routing_key}/{dedup_key or ''}"


def _unfinished(state: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
    """``state IN ('pending', 'leased')``, the values written into the statement.

    The same words as the ``open`` index's ``WHERE``: SQLite uses a partial index only for a
    query whose ``WHERE`` repeats the index's condition, and bound parameters there would hide
    it (from SQLite, and from PostgreSQL's generic plans).
    """
    return state.in_([sa.literal_column(f"'{value}'") for value in UNFINISHED])


@dataclass(frozen=True)
class Enqueued:
    """What :meth:`Outbox.enqueue` stored: the row id and the event's dedup key."""

    id: int
    dedup_key: str | None


@dataclass(frozen=True, repr=False)
class OutboxEvent:
    """A claimed event: the prepared request, and what a worker needs to record its outcome."""

    id: int
    prepared: PreparedEvent
    lease_token: str
    lease_until: float
    attempts: int
    created_at: float
    owner_id: str | None
    integration_id: str | None

    @property
    def routing_key(self) -> str:
        return self.prepared.routing_key

    def __repr__(self) -> str:
        return f"OutboxEvent(id={self.id}, attempts={self.attempts}, {self.prepared!r})"


@dataclass(frozen=True)
class DeadEvent:
    """A dead-lettered event, for people to look at: never the key, only its end."""

    id: int
    routing_key_hint: str
    dedup_key: str | None
    action: str
    attempts: int
    created_at: float
    finished_at: float | None
    reason: str | None
    owner_id: str | None
    integration_id: str | None
    #: A later event of its group was delivered or is queued: requeued, this one would arrive
    #: after it and change what it meant (see :meth:`Outbox.requeue`).
    superseded: bool = False


@dataclass(frozen=True)
class OutboxStats:
    """How the queue stands, read from the database (the same for every process)."""

    pending: int
    leased: int
    delivered: int
    dead: int
    due: int
    oldest_due_age: float
    paused_keys: int

    @property
    def depth(self) -> int:
        """Events not yet finished."""
        return self.pending + self.leased


class Outbox:
    """The outbox tables and every operation on them.

    ``engine`` is an engine or a URL; with a SQLite URL, pdconnect makes the engine with WAL
    mode and a generous busy timeout. ``sender`` prepares (and validates) events at enqueue
    time; by default one with no vendor fields (pass your configured sender so ``client``,
    ``client_url`` and ``vendor`` are added). ``table_prefix`` names the tables.
    """

    def __init__(
        self,
        engine: sa.Engine | str,
        *,
        sender: Sender | None = None,
        table_prefix: str = "pdconnect_outbox",
        create_tables: bool = True,
    ) -> None:
        if not isinstance(table_prefix, str) or not _TABLE_PREFIX.fullmatch(table_prefix):
            raise ConfigError(
                "table_prefix must be 1 to 48 ASCII letters, digits and underscores, not starting with a digit",
                setting="table_prefix",
            )
        self._owns_engine = isinstance(engine, str)
        self.engine = engine_for(engine)
        self.sender = sender if sender is not None else Sender()
        self.enqueued = 0  # events enqueued by this process, for its metrics
        self._listeners: list[Callable[[], None]] = []
        self.metadata = sa.MetaData()
        big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
        self.events = sa.Table(
            table_prefix,
            self.metadata,
            sa.Column("id", big_id, primary_key=True, autoincrement=True),
            sa.Column("group_key", sa.String(300), nullable=False),
            sa.Column("routing_key", sa.String(64), nullable=False),
            sa.Column("dedup_key", sa.String(255)),
            sa.Column("owner_id", sa.String(255)),
            sa.Column("integration_id", sa.String(64)),
            sa.Column("kind", sa.String(8), nullable=False),
            sa.Column("api", sa.String(4), nullable=False),
            sa.Column("action", sa.String(16), nullable=False),
            sa.Column("url", sa.String(500), nullable=False),
            sa.Column("body", sa.LargeBinary, nullable=False),
            sa.Column("state", sa.String(12), nullable=False),
            sa.Column("ready", sa.Boolean),  # NULL: not yet promoted; True: head of its group
            sa.Column("attempts", sa.Integer, nullable=False, default=0),
            sa.Column("created_at", sa.Float, nullable=False),
            sa.Column("next_attempt_at", sa.Float, nullable=False),
            sa.Column("lease_until", sa.Float),
            sa.Column("lease_token", sa.String(32)),
            sa.Column("leased_by", sa.String(255)),
            sa.Column("last_status", sa.Integer),
            sa.Column("last_error", sa.String(500)),
            sa.Column("finished_at", sa.Float),
            sa.Index(f"{table_prefix}_group", "group_key", "id"),
        )
        # Partial indexes, so each statement reads only the few rows it is about, whatever the
        # size of the table: the heads in id order (a claim walks them oldest first and stops
        # after ``limit``), the events not yet promoted, each group's unfinished events (a
        # promotion, an advance and the repair look there, never at the group's delivered
        # history), the dead letters, and the finished events by age (for the purge). No index
        # leads with ``state``: PostgreSQL, before it has statistics for a new table, would pick
        # one for the claim and read every unfinished row.
        events = self.events
        for name, columns, where in (
            ("claim", (events.c.id,), events.c.ready == sa.true()),
            ("new", (events.c.id,), events.c.ready.is_(None)),
            # ``state`` too, so the index covers the checks: SQLite, which weighs the (group_key,
            # id) index the same otherwise, would pick whichever of the two was created last.
            ("open", (events.c.group_key, events.c.id, events.c.state), _unfinished(events.c.state)),
            ("dead", (events.c.id,), events.c.state == DEAD),
            ("heads", (events.c.group_key,), events.c.ready == sa.true()),
            ("finished", (events.c.finished_at,), events.c.finished_at.is_not(None)),
        ):
            sa.Index(f"{table_prefix}_{name}", *columns, postgresql_where=where, sqlite_where=where)
        self.pauses = sa.Table(
            f"{table_prefix}_pauses",
            self.metadata,
            sa.Column("routing_key", sa.String(64), primary_key=True),
            sa.Column("paused_until", sa.Float, nullable=False),
        )
        self.postgres = self.engine.dialect.name == "postgresql"
        self._build_statements()
        if create_tables:
            self.create_tables()

    def __repr__(self) -> str:
        return f"Outbox({shown_url(self.engine.url)!r}, table={self.events.name!r})"

    def create_tables(self) -> None:
        """Create the tables, and any index an older pdconnect did not make, where missing."""
        create_all(self.metadata, self.engine)
        with self.engine.connect() as conn:
            present = {index["name"] for index in sa.inspect(conn).get_indexes(self.events.name)}
        missing = sorted((i for i in self.events.indexes if i.name not in present), key=lambda i: str(i.name))
        for index in missing:
            try:
                with self.engine.begin() as conn:
                    conn.execute(CreateIndex(index, if_not_exists=True))
            except sa.exc.DBAPIError:
                # Another process added it meanwhile (workers starting together after an
                # upgrade): PostgreSQL's IF NOT EXISTS does not see an index not yet committed,
                # and the second CREATE then fails on the catalog's unique name.
                with self.engine.connect() as conn:
                    if index.name not in {i["name"] for i in sa.inspect(conn).get_indexes(self.events.name)}:
                        raise
                continue
            logger.info("pdconnect: outbox table %s got its index %s", self.events.name, index.name)

    def refresh_statistics(self) -> None:
        """PostgreSQL: ``ANALYZE`` the events table (SQLite needs nothing).

        The outbox is a queue: after a burst, the share of rows that are new, heads or finished
        changes faster than autovacuum's schedule, and a planner with old figures reads every
        row instead of the partial indexes. Workers call this when they start and after
        promoting a large batch; it takes no lock that blocks enqueues or claims.
        """
        if self.postgres:
            with self.engine.begin() as conn:
                conn.execute(sa.text(f"ANALYZE {self.engine.dialect.identifier_preparer.quote(self.events.name)}"))

    def close(self) -> None:
        """Close the database connections, if the outbox made its engine from a URL."""
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def drop_tables(self) -> None:
        self.metadata.drop_all(self.engine, checkfirst=True)

    # -- enqueueing --------------------------------------------------------------------------

    def enqueue(
        self,
        target: Target,
        event: Event,
        *,
        connection: sa.Connection | None = None,
    ) -> Enqueued:
        """Validate ``event`` for ``target`` and store it for delivery.

        With ``connection``, the row is inserted in that connection's transaction (commit
        or roll back with your own change); otherwise in a transaction of its own. Raises
        :class:`~pdconnect.errors.EventValidationError` for an event PagerDuty would refuse.
        """
        return self.enqueue_many([(target, event)], connection=connection)[0]

    def enqueue_many(
        self,
        items: Iterable[tuple[Target, Event]],
        *,
        connection: sa.Connection | None = None,
    ) -> list[Enqueued]:
        """Enqueue several events in one statement (in the given order); all or none."""
        now = time.time()
        rows: list[dict[str, Any]] = []
        keys: list[str | None] = []
        for target, event in items:
            prepared = self.sender.prepare(target, event)
            if prepared.dedup_key is not None and ("\x00" in prepared.dedup_key or len(prepared.dedup_key) > 255):
                # PostgreSQL's text columns take no NUL (SQLite would store it): refused on both.
                raise EventValidationError(["dedup_key: at most 255 characters, without NUL"])
            keys.append(prepared.dedup_key)
            integration = target if isinstance(target, Integration) else None
            if integration is not None:
                _check_column(integration.owner_id, name="owner_id", size=255)
                _check_column(getattr(integration, "id", None) or None, name="integration_id", size=64)
            rows.append(
                {
                    "group_key": _group(prepared.routing_key, prepared.dedup_key),
                    "routing_key": prepared.routing_key,
                    "dedup_key": prepared.dedup_key,
                    "owner_id": integration.owner_id if integration else None,
                    "integration_id": getattr(integration, "id", None) or None,
                    "kind": prepared.kind.value,
                    "api": prepared.api.value,
                    "action": prepared.action,
                    "url": prepared.url,
                    "body": prepared.body,
                    "state": PENDING,
                    "ready": None,
                    "attempts": 0,
                    "created_at": now,
                    "next_attempt_at": now,
                }
            )
        if not rows:
            return []
        if connection is not None:
            try:
                ids = self._insert(connection, rows)
            except sa.exc.StatementError as exc:
                # The caller's own connection does not hide parameters as pdconnect's engines
                # do, and the row holds the routing key: hide them in this error and its cause.
                _hide_statement_secrets(exc)
                raise
        else:
            with self.engine.begin() as conn:
                ids = self._insert(conn, rows)
        self.enqueued += len(rows)
        for listener in self._listeners:
            listener()
        return [Enqueued(id=i, dedup_key=key) for i, key in zip(ids, keys, strict=True)]

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after each enqueue in this process (a worker here wakes up at once)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[], None]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _insert(self, conn: sa.Connection, rows: list[dict[str, Any]]) -> list[int]:
        if len(rows) == 1:
            result = conn.execute(sa.insert(self.events).values(**rows[0]).returning(self.events.c.id))
            return [int(result.scalar_one())]
        # Insert in order and read the ids back in order (both backends keep insertion order).
        result = conn.execute(sa.insert(self.events).returning(self.events.c.id, sort_by_parameter_order=True), rows)
        return [int(row[0]) for row in result]

    # -- the worker's side -------------------------------------------------------------------

    def _build_statements(self) -> None:
        """The worker's hot statements, built once; values arrive as bound parameters."""
        events = self.events
        # An older unfinished event of the same group: a seek in the ``open`` index, which holds
        # no delivered rows, so its cost does not grow with the history a group keeps.
        earlier = events.alias("earlier")
        older_unfinished = sa.select(earlier.c.id).where(
            earlier.c.group_key == events.c.group_key,
            earlier.c.id < events.c.id,
            _unfinished(earlier.c.state),
        )
        # A head of the group, whatever its id: on PostgreSQL an event with a lower id can commit
        # after a later one was promoted and claimed, and must wait behind it, not become a
        # second head (heads are few: one seek in the ``heads`` index).
        head = events.alias("head")
        group_head = sa.select(head.c.id).where(head.c.group_key == events.c.group_key, head.c.ready == sa.true())
        blocked = sa.or_(older_unfinished.exists(), group_head.exists())
        self._promote = (
            # Rows not yet promoted are always unfinished: finishing needs a claim, a claim a head.
            sa.update(events).where(events.c.ready.is_(None)).values(ready=~blocked)
        )
        if self.postgres:
            # OFFSET 0 keeps PostgreSQL from turning NOT EXISTS into an anti join, which, with
            # statistics from before a burst, reads every unfinished row once per blocked event
            # (the queue's depth squared); kept a subplan, it is one index seek per event.
            blocked = sa.or_(older_unfinished.offset(0).exists(), group_head.offset(0).exists())
        self._repair = (
            sa.update(events)
            .where(_unfinished(events.c.state), events.c.ready == sa.false(), ~blocked)
            .values(ready=True)
        )
        now = sa.bindparam("b_now", type_=sa.Float)
        paused = sa.select(self.pauses.c.routing_key).where(self.pauses.c.paused_until > now)
        due = sa.or_(
            sa.and_(events.c.state == PENDING, events.c.next_attempt_at <= now),
            sa.and_(events.c.state == LEASED, events.c.lease_until < now),
        )
        candidates = (
            sa.select(events.c.id)
            .where(events.c.ready == sa.true(), due, events.c.routing_key.not_in(paused))
            .order_by(events.c.id)
            .limit(sa.bindparam("b_limit", type_=sa.Integer))
        )
        if self.postgres:
            candidates = candidates.with_for_update(skip_locked=True)
        self._claim = (
            sa.update(events)
            .where(events.c.id.in_(candidates.scalar_subquery()))
            .values(
                state=LEASED,
                lease_until=sa.bindparam("b_until", type_=sa.Float),
                lease_token=sa.bindparam("b_token", type_=sa.String),
                leased_by=sa.bindparam("b_worker", type_=sa.String),
            )
            .returning(
                events.c.id,
                events.c.kind,
                events.c.api,
                events.c.url,
                events.c.body,
                events.c.routing_key,
                events.c.action,
                events.c.dedup_key,
                events.c.attempts,
                events.c.created_at,
                events.c.owner_id,
                events.c.integration_id,
                events.c.group_key,
            )
        )
        self._leases = sa.select(events.c.id, events.c.lease_token).where(
            events.c.id.in_(sa.bindparam("b_ids", expanding=True)), events.c.state == LEASED
        )
        self._outcome = (
            sa.update(events)
            .where(
                events.c.id == sa.bindparam("b_id"),
                events.c.lease_token == sa.bindparam("b_lease"),
                events.c.state == LEASED,
            )
            .values(
                state=sa.bindparam("b_state"),
                # A finished event stops being a head (False, not NULL: NULL means "not yet promoted"),
                # so claims, which walk the heads in id order, never wade through finished rows.
                ready=sa.bindparam("b_ready", type_=sa.Boolean),
                next_attempt_at=sa.bindparam("b_next"),
                finished_at=sa.bindparam("b_finished"),
                attempts=events.c.attempts + sa.bindparam("b_tried", type_=sa.Integer),
                last_status=sa.bindparam("b_status"),
                last_error=sa.bindparam("b_error"),
                lease_until=None,
                lease_token=None,
            )
        )
        # The group's next head is its oldest unfinished event: one seek in the ``open`` index,
        # however many finished rows the group keeps. Not only the events after the one that
        # just finished: on PostgreSQL an event with a lower id may have committed late and
        # waited behind it (see ``blocked`` above).
        later = events.alias("later")
        next_head = (
            sa.select(sa.func.min(later.c.id))
            .where(
                later.c.group_key == sa.bindparam("b_group", type_=sa.String),
                _unfinished(later.c.state),
            )
            .scalar_subquery()
        )
        self._advance = sa.update(events).where(events.c.id == next_head).values(ready=True)

    def promote(self, conn: sa.Connection) -> int:
        """Mark newly enqueued events as heads of their groups, or not; returns how many were decided."""
        return int(conn.execute(self._promote).rowcount or 0)

    def claim(self, worker: str, limit: int, *, lease: float, now: float | None = None) -> list[OutboxEvent]:
        """Lease up to ``limit`` due heads to ``worker`` for ``lease`` seconds, oldest first.

        ``limit`` is 0 to :data:`MAX_BATCH`, ``lease`` more than 0 and at most
        :data:`MAX_LEASE` seconds; anything else raises :class:`~pdconnect.errors.ConfigError`.
        """
        worker = label(worker, name="worker")
        limit = whole(limit, name="limit", minimum=0, maximum=MAX_BATCH)
        lease = number(lease, name="lease", minimum=0.0, maximum=MAX_LEASE, above=True)
        now = _moment(now)
        if limit == 0:
            return []
        token = uuid.uuid4().hex
        with self.engine.begin() as conn:
            promoted = self.promote(conn)
            rows = conn.execute(
                self._claim,
                {"b_now": now, "b_limit": limit, "b_until": now + lease, "b_token": token, "b_worker": worker[:255]},
            ).all()
        if promoted >= ANALYZE_AFTER:
            self.refresh_statistics()
        claimed: list[OutboxEvent] = []
        unreadable: list[Outcome] = []
        for row in rows:
            # One row at a time: a row this pdconnect cannot read (written by a newer version,
            # or edited by hand) is dead-lettered with the reason; the rest of the claim goes on.
            try:
                prepared = self._prepared(row)
            except _Unreadable as exc:
                logger.error("pdconnect: outbox event %d is unreadable (%s); dead-lettered", row.id, exc)
                unreadable.append(
                    Outcome(
                        event_id=int(row.id),
                        lease_token=token,
                        group_key=str(row.group_key),
                        routing_key="",
                        state=DEAD,
                        attempted=False,
                        error=f"unreadable row: {exc}",
                    )
                )
                continue
            claimed.append(
                OutboxEvent(
                    id=row.id,
                    prepared=prepared,
                    lease_token=token,
                    lease_until=now + lease,
                    attempts=row.attempts,
                    created_at=row.created_at,
                    owner_id=row.owner_id,
                    integration_id=row.integration_id,
                )
            )
        if unreadable:
            self.record(unreadable, now=now)
        claimed.sort(key=lambda e: e.id)
        return claimed

    def _prepared(self, row: sa.Row[Any]) -> PreparedEvent:
        """The request stored in a claimed row; raises :class:`_Unreadable` saying what is wrong."""
        try:
            kind = EventKind(row.kind)
        except ValueError:
            raise _Unreadable(f"kind {str(row.kind)[:20]!r}") from None
        try:
            api = EventsApi(row.api)
        except ValueError:
            raise _Unreadable(f"api {str(row.api)[:20]!r}") from None
        if not isinstance(row.routing_key, str) or not isinstance(row.url, str) or row.body is None:
            raise _Unreadable("missing routing key, url or body")
        return PreparedEvent(
            kind=kind,
            api=api,
            url=row.url,
            body=bytes(row.body),
            routing_key=row.routing_key,
            action=row.action,
            dedup_key=row.dedup_key,
        )

    def record(self, outcomes: Sequence[Outcome], *, now: float | None = None) -> int:
        """Record what happened to claimed events, in one transaction; returns how many counted.

        An outcome whose lease was taken over by another worker (the lease ran out) is
        ignored: that worker's outcome counts instead. An outcome with an unknown state or a
        time that is not a finite number raises :class:`~pdconnect.errors.ConfigError`, and
        none of the batch is recorded.
        """
        if not outcomes:
            return 0
        now = _moment(now)
        for outcome in outcomes:
            _check_outcome(outcome)
        with self.engine.begin() as conn:
            current = dict(conn.execute(self._leases, {"b_ids": [o.event_id for o in outcomes]}).all())
            valid = [o for o in outcomes if current.get(o.event_id) == o.lease_token]
            if not valid:
                return 0
            conn.execute(
                self._outcome,
                [
                    {
                        "b_id": o.event_id,
                        "b_lease": o.lease_token,
                        "b_state": o.state,
                        "b_ready": o.state == PENDING,
                        "b_next": (o.next_attempt_at or now) if o.state == PENDING else now,
                        "b_finished": None if o.state == PENDING else now,
                        "b_tried": 1 if o.attempted else 0,
                        "b_status": o.status,
                        "b_error": _storable(o.error),
                    }
                    for o in valid
                ],
            )
            finished = [{"b_group": o.group_key} for o in valid if o.state in (DELIVERED, DEAD)]
            if finished:
                conn.execute(self._advance, finished)
            for outcome in valid:
                if outcome.pause_key_until is not None:
                    self._pause(conn, outcome.routing_key, outcome.pause_key_until)
        if finished and self.postgres:
            # Again, now that the outcomes are visible: a successor another worker promoted
            # while they were not is found now (see the module's docstring). SQLite runs one
            # writer at a time, each seeing every earlier commit, so it cannot happen there.
            with self.engine.begin() as conn:
                conn.execute(self._advance, finished)
        return len(valid)

    def repair_heads(self) -> int:
        """Make the oldest unfinished event of every group its head, where it is not; returns how many.

        Nothing should need it; it bounds what a lost advance (a race not foreseen, a crash,
        a hand edit of the table) can cost to one repair interval instead of a stuck group.
        """
        with self.engine.begin() as conn:
            repaired = int(conn.execute(self._repair).rowcount or 0)
        if repaired:
            logger.warning("pdconnect: outbox gave %d group(s) back their head", repaired)
        return repaired

    def _pause(self, conn: sa.Connection, routing_key: str, until: float) -> None:
        """Pause every event of ``routing_key`` until ``until`` (keeping a later pause)."""
        insert = postgres_insert if self.postgres else sqlite_insert
        statement = insert(self.pauses).values(routing_key=routing_key, paused_until=until)
        later = (sa.func.greatest if self.postgres else sa.func.max)(
            self.pauses.c.paused_until, statement.excluded.paused_until
        )
        conn.execute(statement.on_conflict_do_update(index_elements=["routing_key"], set_={"paused_until": later}))

    def release(self, events: Iterable[OutboxEvent]) -> int:
        """Give claimed events back without an attempt (a worker shutting down)."""
        table = self.events
        released = 0
        with self.engine.begin() as conn:
            for event in events:
                result = conn.execute(
                    sa.update(table)
                    .where(table.c.id == event.id, table.c.lease_token == event.lease_token, table.c.state == LEASED)
                    .values(state=PENDING, lease_until=None, lease_token=None)
                )
                released += int(result.rowcount or 0)
        return released

    def purge_delivered(self, older_than: float, *, now: float | None = None) -> int:
        """Delete delivered events finished more than ``older_than`` (0 or more) seconds ago.

        A few thousand rows per transaction: on SQLite a delete holds the only write lock,
        and a web request enqueueing an alert would wait for the whole backlog.
        """
        cutoff = _moment(now) - number(older_than, name="older_than", minimum=0.0, maximum=1e10)
        table = self.events
        batch = (
            sa.select(table.c.id)
            .where(table.c.finished_at < cutoff, table.c.state.in_((DELIVERED, REQUEUED)))
            .limit(PURGE_BATCH)
            .scalar_subquery()
        )
        purged = 0
        while True:
            with self.engine.begin() as conn:
                deleted = int(conn.execute(sa.delete(table).where(table.c.id.in_(batch))).rowcount or 0)
            purged += deleted
            if deleted < PURGE_BATCH:
                return purged

    def purge_dead(self, older_than: float, *, now: float | None = None) -> int:
        """Delete dead (and requeued) events finished more than ``older_than`` seconds ago.

        Dead letters are kept for people to look at and requeue, not forever: each holds its
        routing key. A few thousand rows per transaction, as :meth:`purge_delivered`.
        """
        cutoff = _moment(now) - number(older_than, name="older_than", minimum=0.0, maximum=1e10)
        table = self.events
        return self._delete_in_batches(table.c.finished_at < cutoff, table.c.state.in_((DEAD, REQUEUED)))

    def forget(self, routing_key: str, *, owner_id: str | None = None) -> int:
        """Delete every event of ``routing_key`` (of ``owner_id`` only, when given), whatever its
        state, and the key's pause once no event of it is left; returns how many events.

        For an integration that was removed: its queued events will never be wanted, and its
        delivered and dead ones would keep its key in the database. Pass ``owner_id`` when two
        owners may have connected the same key, so the other's events stay.
        """
        if not isinstance(routing_key, str) or not routing_key:
            raise ConfigError("routing_key must be a non-empty string", setting="routing_key")
        if owner_id is not None and not isinstance(owner_id, str):
            raise ConfigError("owner_id must be a string", setting="owner_id")
        table = self.events
        conditions = [table.c.routing_key == routing_key]
        if owner_id is not None:
            conditions.append(table.c.owner_id == owner_id)
        deleted = self._delete_in_batches(*conditions)
        with self.engine.begin() as conn:
            left = sa.select(table.c.id).where(table.c.routing_key == routing_key).exists()
            conn.execute(sa.delete(self.pauses).where(self.pauses.c.routing_key == routing_key, ~left))
        return deleted

    def _delete_in_batches(self, *conditions: sa.ColumnElement[bool]) -> int:
        table = self.events
        batch = sa.select(table.c.id).where(*conditions).limit(PURGE_BATCH).scalar_subquery()
        purged = 0
        while True:
            with self.engine.begin() as conn:
                deleted = int(conn.execute(sa.delete(table).where(table.c.id.in_(batch))).rowcount or 0)
            purged += deleted
            if deleted < PURGE_BATCH:
                return purged

    # -- looking and mending -----------------------------------------------------------------

    def stats(self, *, now: float | None = None) -> OutboxStats:
        now = _moment(now)
        table = self.events
        with self.engine.connect() as conn:
            counts: dict[str, int] = {
                str(state): int(count)
                for state, count in conn.execute(sa.select(table.c.state, sa.func.count()).group_by(table.c.state))
            }
            due = conn.execute(
                sa.select(sa.func.count(), sa.func.min(table.c.created_at)).where(
                    table.c.state == PENDING, table.c.next_attempt_at <= now
                )
            ).one()
            paused = conn.execute(
                sa.select(sa.func.count()).select_from(self.pauses).where(self.pauses.c.paused_until > now)
            ).scalar_one()
        return OutboxStats(
            pending=int(counts.get(PENDING, 0)),
            leased=int(counts.get(LEASED, 0)),
            delivered=int(counts.get(DELIVERED, 0)),
            dead=int(counts.get(DEAD, 0)),
            due=int(due[0]),
            oldest_due_age=max(0.0, now - due[1]) if due[1] is not None else 0.0,
            paused_keys=int(paused),
        )

    def leased_by(self, worker: str) -> list[int]:
        """Ids of the events a worker holds (named as in ``pdconnect worker``'s first line)."""
        worker = label(worker, name="worker")
        table = self.events
        with self.engine.connect() as conn:
            query = sa.select(table.c.id).where(table.c.state == LEASED, table.c.leased_by == worker)
            return [int(i) for i in conn.execute(query.order_by(table.c.id)).scalars()]

    def states(self, ids: Iterable[int]) -> dict[int, str]:
        """The state of each given event (``pending``, ``leased``, ``delivered``, ``dead``, ``requeued``).

        Delivered events are purged after a while; an id missing from the answer was
        delivered long enough ago to be purged.
        """
        wanted = _ids(ids)
        table = self.events
        found: dict[int, str] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(wanted):
                rows = conn.execute(sa.select(table.c.id, table.c.state).where(table.c.id.in_(chunk))).all()
                found.update((int(row.id), str(row.state)) for row in rows)
        return found

    def dead(self, *, limit: int = 100) -> list[DeadEvent]:
        """Dead-lettered events, newest first (at most ``limit``, 1 to :data:`MAX_BATCH`), with the
        reason and whether they are superseded."""
        limit = whole(limit, name="limit", minimum=1, maximum=MAX_BATCH)
        table = self.events
        query = sa.select(table).where(table.c.state == DEAD).order_by(table.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
            superseded = self._superseded(conn, rows)
        return [
            DeadEvent(
                id=row.id,
                routing_key_hint=redact(row.routing_key),
                dedup_key=row.dedup_key,
                action=row.action,
                attempts=row.attempts,
                created_at=row.created_at,
                finished_at=row.finished_at,
                reason=row.last_error,
                owner_id=row.owner_id,
                integration_id=row.integration_id,
                superseded=row.id in superseded,
            )
            for row in rows
        ]

    def _superseded(self, conn: sa.Connection, rows: Sequence[sa.Row[Any]]) -> set[int]:
        """The ids of ``rows`` whose group has a later event that was delivered or is still queued.

        One look per group, at its newest such event, instead of one walk of the later events
        per row: a key PagerDuty stopped accepting leaves thousands of dead events in a group,
        and a walk per row cost their number squared.
        """
        events = self.events
        newest = sa.select(sa.func.max(events.c.id)).where(
            events.c.group_key == sa.bindparam("b_group", type_=sa.String),
            events.c.state.in_((*UNFINISHED, DELIVERED)),
        )
        kept = {group: conn.execute(newest, {"b_group": group}).scalar() for group in {row.group_key for row in rows}}
        return {int(row.id) for row in rows if (kept[row.group_key] or 0) > row.id}

    def superseded_dead(self, ids: Iterable[int] | None = None) -> list[int]:
        """The ids of the dead events (of ``ids``, or all) that :meth:`requeue` leaves dead by default."""
        table = self.events
        query = sa.select(table.c.id, table.c.group_key).where(table.c.state == DEAD)
        with self.engine.connect() as conn:
            return sorted(self._superseded(conn, self._each_chunk(conn, query, ids)))

    def requeue(self, ids: Iterable[int] | None = None, *, superseded: bool = False) -> int:
        """Put dead events back in the queue (all of them when ``ids`` is None); returns how many.

        Each goes to the *end* of its group as a new event, so it never overtakes events
        enqueued after it died; the dead row is kept, marked ``requeued``. A *superseded* dead
        event, one with a later event of its group delivered or still queued, is left dead
        unless ``superseded`` is true: sent now, it would arrive after that event and change
        its meaning (a trigger after its resolve opens an incident nothing will resolve; a
        resolve after a later trigger closes an incident that is still real). Delivered events
        are purged after a while, so this check sees only the deliveries still kept.
        """
        if not isinstance(superseded, bool):
            raise ConfigError("superseded must be True or False", setting="superseded")
        table = self.events
        query = sa.select(table).where(table.c.state == DEAD)
        now = time.time()
        with self.engine.begin() as conn:
            rows = sorted(self._each_chunk(conn, query, ids), key=lambda row: int(row.id))
            # Take the rows first, each only while still dead: two operators requeueing at once
            # read the same dead rows, and without this both would copy them (a trigger queued
            # again after its resolve). The flip takes the write lock (SQLite) or the rows' locks
            # (PostgreSQL), so what follows sees every requeue committed before it.
            flipped: set[int] = set()
            for chunk in _chunks([int(r.id) for r in rows]):
                result = conn.execute(
                    sa.update(table)
                    .where(table.c.id.in_(chunk), table.c.state == DEAD)
                    .values(state=REQUEUED, ready=False, finished_at=now)
                    .returning(table.c.id)
                )
                flipped.update(int(i) for i in result.scalars())
            rows = [row for row in rows if row.id in flipped]
            if not superseded:
                left = self._superseded(conn, rows)
                for row in rows:
                    if row.id in left:  # back as it was: it stays dead
                        conn.execute(
                            sa.update(table)
                            .where(table.c.id == row.id)
                            .values(state=DEAD, ready=row.ready, finished_at=row.finished_at)
                        )
                rows = [row for row in rows if row.id not in left]
            if not rows:
                return 0
            copies = []
            for row in rows:
                data = dict(row._mapping)
                for name in (
                    "id",
                    "lease_until",
                    "lease_token",
                    "leased_by",
                    "last_status",
                    "last_error",
                    "finished_at",
                ):
                    data.pop(name)
                data.update(state=PENDING, ready=None, attempts=0, created_at=now, next_attempt_at=now)
                copies.append(data)
            self._insert(conn, copies)
        return len(rows)

    def _each_chunk(self, conn: sa.Connection, query: sa.Select[Any], ids: Iterable[int] | None) -> list[sa.Row[Any]]:
        """The rows of ``query``: all, or those of ``ids``, asked a few hundred at a time."""
        if ids is None:
            return list(conn.execute(query))
        return [row for chunk in _chunks(_ids(ids)) for row in conn.execute(query.where(self.events.c.id.in_(chunk)))]

    def delivered_in_order(self, group_key: str) -> list[str]:
        """The actions of a group's delivered events, in delivery order (for tests and audits)."""
        table = self.events
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(table.c.action)
                .where(table.c.group_key == group_key, table.c.state == DELIVERED)
                .order_by(table.c.id)
            ).all()
        return [r.action for r in rows]


_OUTCOME_STATES = (PENDING, DELIVERED, DEAD)


class _Unreadable(Exception):
    """A claimed row this pdconnect cannot turn back into a request."""


def _check_column(value: str | None, *, name: str, size: int) -> None:
    """Refuse what the ``name`` column cannot store on every backend: PostgreSQL takes no NUL and
    no more than ``size`` characters, where SQLite would store it and PostgreSQL fail the insert."""
    if value is None:
        return
    if not isinstance(value, str) or len(value) > size or "\x00" in value or _SURROGATE.search(value):
        raise ConfigError(f"{name} must be text of at most {size} characters, without NUL", setting=name)


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _hide_statement_secrets(exc: sa.exc.StatementError) -> None:
    """Make ``exc`` show no parameters and only the first line of the driver's message."""
    exc.hide_parameters = True
    exc.params = None
    original = getattr(exc, "orig", None)
    if original is None:
        return
    try:
        text = str(original)
    except Exception:
        return
    first, newline, _detail = text.strip().partition("\n")
    if newline:
        original.args = (first,)
        exc.args = (f"({type(original).__module__}.{type(original).__name__}) {first}",)


_UNSTORABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def _storable(text: str | None) -> str | None:
    """An error text as the column takes it: one line, no lone surrogates, 500 characters.

    PagerDuty's message arrives as JSON, where ``"\\ud800"`` is valid; SQLite's driver cannot
    encode it, and the worker, failing to record, would die on every such answer.
    """
    return _UNSTORABLE.sub("\ufffd", text)[:500] if text else None


def _check_outcome(outcome: Outcome) -> None:
    """Refuse an outcome :meth:`Outbox.record` could not store as meant (before writing any)."""
    if not isinstance(outcome, Outcome):
        raise ConfigError(f"outcomes must be Outcome objects, not a {type(outcome).__name__}", setting="outcomes")
    whole(outcome.event_id, name="event_id", minimum=1, maximum=_MAX_ID)
    if not isinstance(outcome.lease_token, str):
        raise ConfigError("an outcome's lease_token must be text", setting="lease_token")
    if outcome.state not in _OUTCOME_STATES:
        raise ConfigError("an outcome's state must be pending, delivered or dead", setting="state")
    if outcome.status is not None:
        whole(outcome.status, name="status", minimum=100, maximum=999)  # what HTTP clients pass on
    if outcome.error is not None and not isinstance(outcome.error, str):
        raise ConfigError("an outcome's error must be text", setting="error")
    for name in ("next_attempt_at", "pause_key_until"):
        value = getattr(outcome, name)
        if value is not None:
            number(value, name=name, minimum=0.0, maximum=1e12)


@dataclass(frozen=True)
class Outcome:
    """What a worker learned about one claimed event.

    ``state`` is ``pending`` (try again at ``next_attempt_at``), ``delivered`` or ``dead``.
    ``attempted`` is false when no request was made (the worker gave the event back, for
    instance to respect a rate limit). ``pause_key_until`` pauses every event of the routing
    key (after a 429).
    """

    event_id: int
    lease_token: str = field(repr=False)
    group_key: str = field(repr=False)  # starts with the routing key
    routing_key: str = field(repr=False)
    state: str
    attempted: bool = True
    status: int | None = None
    error: str | None = None
    next_attempt_at: float | None = None
    pause_key_until: float | None = None


def outcome_for(event: OutboxEvent, state: str, **fields: Any) -> Outcome:
    prepared = event.prepared
    return Outcome(
        event_id=event.id,
        lease_token=event.lease_token,
        group_key=_group(prepared.routing_key, prepared.dedup_key),
        routing_key=prepared.routing_key,
        state=state,
        **fields,
    )


def body_json(event: OutboxEvent) -> dict[str, Any]:
    """The stored request body, decoded (for inspection; it contains the routing key)."""
    data: dict[str, Any] = json.loads(event.prepared.body)
    return data
