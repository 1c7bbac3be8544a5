"""Which webhooks were already handled: de-duplication on the signed event id, per subscription.

PagerDuty delivers at least once. A receiver :meth:`~DeliveryLog.begin` s each event's
:func:`delivery_key` before handling it. The key is built from what the signature covers, the
event id in the body, and from who verified it, the subscription (never from the unsigned
``X-Webhook-Id`` or ``X-Webhook-Subscription`` headers: a captured body re-sent under a fresh
``X-Webhook-Id`` is the same event, and one subscription's ids never suppress another's):

- ``NEW``: handle it, then :meth:`~DeliveryLog.finish` (or :meth:`~DeliveryLog.abandon` if
  the handler failed, so PagerDuty's retry is handled instead of being taken for a duplicate);
- ``DUPLICATE``: it was handled; answer 2xx and do nothing;
- ``IN_PROGRESS``: another request is handling it right now (PagerDuty retried while the first
  was slow); answer 503 so PagerDuty tries again later, when the outcome is known. An id left
  in progress longer than ``stale_after`` (its process died) is taken over as ``NEW``.

PagerDuty retries for up to 48 hours, so keys are kept for 72 by default (:meth:`purge`).
The SQL table is the one earlier versions keyed on ``X-Webhook-Id``: its rows simply age out,
and no migration is needed.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol, runtime_checkable

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from pdconnect.database import create_all, engine_for, shown_url

KEEP_FOR = 72 * 3600.0
STALE_AFTER = 60.0


def delivery_key(format: str, namespace: Sequence[str | None], event_id: str) -> str:
    """The key one event is de-duplicated on: a digest of its format, namespace and event id.

    ``namespace`` says whose event it is (for V3, the subscription whose secret verified it).
    The parts are JSON-encoded before hashing, so no two different triples share a key
    whatever characters they hold, and the key has a fixed length, whatever the id's. The
    ``e1:`` prefix keeps these keys apart from the ``v3:<X-Webhook-Id>`` keys older versions
    wrote into the same table.
    """
    material = json.dumps([format, list(namespace), event_id], separators=(",", ":"))  # ASCII: escapes lone surrogates
    return "e1:" + hashlib.sha256(material.encode("ascii")).hexdigest()


class Claim(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"
    IN_PROGRESS = "in_progress"


@runtime_checkable
class DeliveryLog(Protocol):
    def begin(self, key: str, *, now: float | None = None) -> Claim: ...

    def finish(self, key: str, *, now: float | None = None) -> None: ...

    def abandon(self, key: str) -> None: ...

    def purge(self, older_than: float = KEEP_FOR, *, now: float | None = None) -> int: ...


class MemoryDeliveryLog:
    """A :class:`DeliveryLog` in this process's memory (one process; tests and demos)."""

    def __init__(self, *, stale_after: float = STALE_AFTER) -> None:
        self.stale_after = stale_after
        self._seen: dict[str, tuple[float, float | None]] = {}  # id -> (began, finished)
        self._lock = threading.Lock()

    def begin(self, key: str, *, now: float | None = None) -> Claim:
        now = time.time() if now is None else now
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None:
                began, finished = seen
                if finished is not None:
                    return Claim.DUPLICATE
                if began > now - self.stale_after:
                    return Claim.IN_PROGRESS
            self._seen[key] = (now, None)
            return Claim.NEW

    def finish(self, key: str, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            began, _ = self._seen.get(key, (now, None))
            self._seen[key] = (began, now)

    def abandon(self, key: str) -> None:
        with self._lock:
            self._seen.pop(key, None)

    def purge(self, older_than: float = KEEP_FOR, *, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - older_than
        with self._lock:
            old = [key for key, (began, _) in self._seen.items() if began < cutoff]
            for key in old:
                del self._seen[key]
        return len(old)


class SqlDeliveryLog:
    """A :class:`DeliveryLog` in a SQL table, shared by every process that receives webhooks."""

    def __init__(
        self,
        engine: sa.Engine | str,
        *,
        table_name: str = "pdconnect_webhook_deliveries",
        stale_after: float = STALE_AFTER,
        create_tables: bool = True,
    ) -> None:
        self.engine = engine_for(engine)
        self.stale_after = stale_after
        self.metadata = sa.MetaData()
        self.table = sa.Table(
            table_name,
            self.metadata,
            # Named for what earlier versions kept in it; now a delivery_key().
            sa.Column("webhook_id", sa.String(255), primary_key=True),
            sa.Column("began_at", sa.Float, nullable=False),
            sa.Column("finished_at", sa.Float),
            sa.Index(f"{table_name}_began", "began_at"),
        )
        if create_tables:
            create_all(self.metadata, self.engine)

    def __repr__(self) -> str:
        return f"SqlDeliveryLog({shown_url(self.engine.url)!r}, table={self.table.name!r})"

    def _insert(self, conn: sa.Connection, key: str, now: float) -> bool:
        values = {"webhook_id": key, "began_at": now}
        dialect = self.engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            insert = sqlite_insert if dialect == "sqlite" else postgres_insert
            statement = insert(self.table).values(**values).on_conflict_do_nothing()
            # RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT.
            return conn.execute(statement.returning(self.table.c.webhook_id)).first() is not None
        try:
            with conn.begin_nested():
                conn.execute(sa.insert(self.table).values(**values))
        except IntegrityError:
            return False
        return True

    def begin(self, key: str, *, now: float | None = None) -> Claim:
        now = time.time() if now is None else now
        table = self.table
        with self.engine.begin() as conn:
            if self._insert(conn, key, now):
                return Claim.NEW
            row = conn.execute(
                sa.select(table.c.began_at, table.c.finished_at).where(table.c.webhook_id == key)
            ).one_or_none()
            if row is None:  # purged or abandoned between the two statements
                return Claim.NEW if self._insert(conn, key, now) else Claim.IN_PROGRESS
            if row.finished_at is not None:
                return Claim.DUPLICATE
            if row.began_at > now - self.stale_after:
                return Claim.IN_PROGRESS
            # Its handler's process died: take it over, unless another request just did.
            taken = conn.execute(
                sa.update(table)
                .where(table.c.webhook_id == key, table.c.began_at == row.began_at, table.c.finished_at.is_(None))
                .values(began_at=now)
            )
            return Claim.NEW if taken.rowcount else Claim.IN_PROGRESS

    def finish(self, key: str, *, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.engine.begin() as conn:
            conn.execute(sa.update(self.table).where(self.table.c.webhook_id == key).values(finished_at=now))

    def abandon(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.delete(self.table).where(self.table.c.webhook_id == key))

    def purge(self, older_than: float = KEEP_FOR, *, now: float | None = None) -> int:
        cutoff = (time.time() if now is None else now) - older_than
        with self.engine.begin() as conn:
            result = conn.execute(sa.delete(self.table).where(self.table.c.began_at < cutoff))
        return int(result.rowcount or 0)

    def drop_tables(self) -> None:
        self.metadata.drop_all(self.engine)
