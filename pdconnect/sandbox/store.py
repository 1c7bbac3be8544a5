"""Where the sandbox keeps its records: memory, optionally mirrored to a SQLite file.

Every record lives in memory, so the events endpoints stay fast. With a database path, each
change is also written (as JSON, one row per record, through SQLAlchemy) before the request
that made it is answered, and everything is loaded again at start: a demo survives a restart.

One re-entrant lock guards all records; :attr:`SandboxStore.changed` is a condition on it,
notified on every commit, so tests can wait for a state without sleeping.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from pdconnect.sandbox.model import KIND_OF, KINDS

T = TypeVar("T")


class SandboxStore:
    """All sandbox records, by kind and id."""

    def __init__(self, db_path: str | None = None) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.version = 0
        self._records: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        self._dirty: set[tuple[str, str]] = set()
        self._deleted: set[tuple[str, str]] = set()
        self._engine: sa.Engine | None = None
        if db_path is not None:
            self._engine = sa.create_engine(f"sqlite:///{db_path}", hide_parameters=True)  # keys, secrets
            metadata = sa.MetaData()
            self._table = sa.Table(
                "sandbox_records",
                metadata,
                sa.Column("kind", sa.String(32), primary_key=True),
                sa.Column("id", sa.String(64), primary_key=True),
                sa.Column("data", sa.Text, nullable=False),
            )
            metadata.create_all(self._engine)
            self._load()

    @property
    def persistent(self) -> bool:
        """True when records are mirrored to a database file."""
        return self._engine is not None

    def _load(self) -> None:
        assert self._engine is not None
        with self._engine.connect() as conn:
            for kind, record_id, data in conn.execute(sa.select(self._table)):
                cls = KINDS.get(kind)
                if cls is not None:
                    self._records[kind][record_id] = cls(**json.loads(data))

    # -- reading -----------------------------------------------------------------------------

    def get(self, cls: type[T], record_id: str | None) -> T | None:
        """The record of type ``cls`` with ``record_id``, or ``None``."""
        if record_id is None:
            return None
        found: T | None = self._records[KIND_OF[cls]].get(record_id)
        return found

    def all(self, cls: type[T]) -> list[T]:
        """Every record of type ``cls``, in insertion order."""
        return list(self._records[KIND_OF[cls]].values())

    def count(self, cls: type[Any]) -> int:
        return len(self._records[KIND_OF[cls]])

    # -- writing -----------------------------------------------------------------------------

    def put(self, record: Any) -> None:
        """Add or replace a record (call again after changing one, to persist it)."""
        kind = KIND_OF[type(record)]
        self._records[kind][record.id] = record
        self._dirty.add((kind, record.id))
        self._deleted.discard((kind, record.id))

    def delete(self, cls: type[Any], record_id: str) -> None:
        kind = KIND_OF[cls]
        self._records[kind].pop(record_id, None)
        self._dirty.discard((kind, record_id))
        self._deleted.add((kind, record_id))

    def clear(self) -> None:
        """Forget every record (and empty the database file)."""
        for records in self._records.values():
            records.clear()
        self._dirty.clear()
        self._deleted.clear()
        if self._engine is not None:
            with self._engine.begin() as conn:
                conn.execute(sa.delete(self._table))

    def commit(self) -> None:
        """Write changed records to the database (if any) and wake anyone waiting for a change."""
        if self._engine is not None and (self._dirty or self._deleted):
            rows = []
            for kind, record_id in self._dirty:
                record = self._records[kind][record_id]
                rows.append({"kind": kind, "id": record_id, "data": json.dumps(dataclasses.asdict(record))})
            with self._engine.begin() as conn:
                for kind, record_id in self._deleted:
                    conn.execute(
                        sa.delete(self._table).where(self._table.c.kind == kind, self._table.c.id == record_id)
                    )
                if rows:
                    upsert = sqlite_insert(self._table)
                    upsert = upsert.on_conflict_do_update(
                        index_elements=["kind", "id"], set_={"data": upsert.excluded.data}
                    )
                    conn.execute(upsert, rows)
        self._dirty.clear()
        self._deleted.clear()
        self.version += 1
        self.changed.notify_all()

    @contextmanager
    def transaction(self) -> Iterator[SandboxStore]:
        """Hold the lock for a change and commit it at the end."""
        with self.lock:
            try:
                yield self
            finally:
                self.commit()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
