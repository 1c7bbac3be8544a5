"""Engines for pdconnect's tables: one place that knows how SQLite should be opened.

Every store takes an engine or a URL. From a URL, :func:`create_engine` makes an engine that
suits pdconnect's access pattern: web requests, webhook receivers and outbox workers writing
the same file at once. SQLite gets WAL mode (readers never wait for the writer), a long busy
timeout (a writer waits for another instead of failing with "database is locked") and
``synchronous=NORMAL``; other databases get ``pool_pre_ping``, so a connection the server
dropped (a restart, a fail-over) is replaced instead of failing a request.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

#: Seconds a SQLite connection waits for another writer before "database is locked".
SQLITE_BUSY_TIMEOUT = 60


def create_engine(url: str) -> sa.Engine:
    """An engine for ``url``, tuned as the module describes."""
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if url not in ("sqlite://", "sqlite:///:memory:"):  # WAL needs a file
            cursor.execute("PRAGMA journal_mode=WAL")
        # WAL with NORMAL survives a crash of any process; only an OS crash can lose the last
        # commits, and outbox delivery is at least once anyway.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def engine_for(engine: sa.Engine | str) -> sa.Engine:
    """``engine`` itself, or an engine made by :func:`create_engine` from a URL."""
    return create_engine(engine) if isinstance(engine, str) else engine


def driver_message(exc: BaseException) -> str:
    """The first line of the driver's own message, without SQLAlchemy's SQL echo and link.

    For logs and one-line command errors; drivers do not put passwords in these messages.
    """
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return (lines[0] if lines else type(cause).__name__)[:300]
