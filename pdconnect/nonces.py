"""Nonce stores: remember which handshake states were used, so each works only once.

A store only needs to remember a nonce until the state carrying it would be refused as
expired anyway; after that the row can go.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from pdconnect.database import create_all, engine_for
from pdconnect.errors import InvalidData

#: The longest nonce a store records (the SQL column's width); pdconnect's own are 22 characters.
MAX_NONCE_LENGTH = 64


def _check(nonce: object, expires_at: object) -> float:
    """Refuse what no state carries: a NaN expiry would never be purged, a long nonce not fit."""
    if not isinstance(nonce, str) or not nonce or len(nonce) > MAX_NONCE_LENGTH or not nonce.isascii():
        raise InvalidData(f"a nonce must be 1 to {MAX_NONCE_LENGTH} ASCII characters", field="nonce")
    if isinstance(expires_at, int | float) and not isinstance(expires_at, bool):
        try:
            if math.isfinite(expires_at):
                return float(expires_at)
        except OverflowError:  # an int too large for a float
            pass
    raise InvalidData("expires_at must be a finite Unix time", field="expires_at")


@runtime_checkable
class NonceStore(Protocol):
    """Where used handshake nonces are recorded."""

    def consume(self, nonce: str, *, expires_at: float) -> bool:
        """Record ``nonce`` as used until ``expires_at`` (Unix time).

        Return ``True`` the first time a nonce is seen and ``False`` on every later call: the
        check and the record must be one atomic step, even across processes for a shared store.
        pdconnect's stores raise :class:`~pdconnect.errors.InvalidData` for a nonce that is
        not 1 to 64 ASCII characters or an ``expires_at`` that is not a finite number.
        """
        ...


class MemoryNonceStore:
    """A nonce store in this process's memory: for tests and single-process apps."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._used: dict[str, float] = {}
        self._lock = threading.Lock()
        self._now = clock

    def consume(self, nonce: str, *, expires_at: float) -> bool:
        expires_at = _check(nonce, expires_at)
        now = self._now()
        with self._lock:
            self._purge(now)
            if nonce in self._used:
                return False
            self._used[nonce] = expires_at
            return True

    def _purge(self, now: float) -> None:
        expired = [n for n, until in self._used.items() if until < now]
        for n in expired:
            del self._used[n]

    def __len__(self) -> int:
        return len(self._used)


class SqlNonceStore:
    """A nonce store in a SQL table, shared by every process of a vendor's app.

    ``engine`` is a SQLAlchemy engine or URL. The table (``pdconnect_used_nonces`` by
    default) is created when missing unless ``create_table`` is false. Uniqueness of the
    primary key makes :meth:`consume` atomic across processes.
    """

    _PURGE_EVERY = 64

    def __init__(
        self,
        engine: sa.Engine | str,
        *,
        table_name: str = "pdconnect_used_nonces",
        create_table: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine_for(engine)
        metadata = sa.MetaData()
        self.table = sa.Table(
            table_name,
            metadata,
            sa.Column("nonce", sa.String(64), primary_key=True),
            sa.Column("expires_at", sa.Float, nullable=False, index=True),
        )
        if create_table:
            create_all(metadata, self.engine)
        self._now = clock
        self._calls = 0
        self._lock = threading.Lock()

    def consume(self, nonce: str, *, expires_at: float) -> bool:
        expires_at = _check(nonce, expires_at)
        with self._lock:
            self._calls += 1
            purge = self._calls % self._PURGE_EVERY == 0
        try:
            with self.engine.begin() as conn:
                if purge:
                    conn.execute(sa.delete(self.table).where(self.table.c.expires_at < self._now()))
                conn.execute(sa.insert(self.table).values(nonce=nonce, expires_at=expires_at))
        except IntegrityError:
            return False
        return True
