"""Engines for pdconnect's tables: one place that knows how a database should be opened.

Every store takes an engine or a URL. From a URL, :func:`create_engine` makes an engine that
suits pdconnect's access pattern: web requests, webhook receivers and outbox workers writing
the same file at once. SQLite gets WAL mode (readers never wait for the writer), a long busy
timeout (a writer waits for another instead of failing with "database is locked") and
``synchronous=NORMAL``; other databases get ``pool_pre_ping``, so a connection the server
dropped (a restart, a fail-over) is replaced instead of failing a request.

Every engine a store uses hides statement parameters (``hide_parameters=True``): the stores
write integration keys, webhook secrets and routing keys, and SQLAlchemy would otherwise put
them in the text of every database error (``[parameters: ...]``) and in its statement log.
It also keeps only the first line of the driver's message: PostgreSQL's ``DETAIL:`` line
quotes the row ("Key (natural_key)=(key:...) already exists", "Failing row contains (...)"),
and its statement log leaves out the DEBUG lines, which print every row read.
A vendor's own engine is not changed; the stores use a view of it that does all three.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url

from pdconnect.errors import PdConnectError
from pdconnect.urls import is_secret_query_key

#: Seconds a SQLite connection waits for another writer before "database is locked".
SQLITE_BUSY_TIMEOUT = 60

#: The extra that installs each database's driver, for the message when it is missing.
DRIVER_EXTRAS = {"postgresql": "postgres"}


class DatabaseURLError(PdConnectError, ValueError):
    """A database URL that cannot be used: unreadable, or its driver is not installed.

    The message never contains the URL (it may hold a password).
    """


class DatabaseDriverMissing(DatabaseURLError):
    """The URL names a database whose driver is not installed; the message says what to install."""


def parse_url(url: str | URL) -> URL:
    """``url`` as a SQLAlchemy :class:`~sqlalchemy.engine.URL`; raises :class:`DatabaseURLError`."""
    if isinstance(url, URL):
        return url
    try:
        return make_url(url)
    except (sa.exc.ArgumentError, ValueError, TypeError):
        # SQLAlchemy's own messages are safe today, but a port's int() error quotes the text
        # and the URL may carry a password: say what is wrong without quoting it.
        raise DatabaseURLError("not a database URL (expected e.g. postgresql+psycopg://user@host/db)") from None


def shown_url(url: str | URL) -> str:
    """``url`` for messages, logs and reprs: the password replaced by ``***``, and so is every
    query parameter that may hold one (libpq and psycopg take ``?password=``)."""
    try:
        parsed = parse_url(url)
    except DatabaseURLError:
        return "(unreadable URL)"
    secret = [name for name in parsed.query if is_secret_query_key(name)]
    if secret:
        parsed = parsed.update_query_dict(dict.fromkeys(secret, "***"))
    return parsed.render_as_string(hide_password=True)


def create_engine(url: str | URL) -> sa.Engine:
    """An engine for ``url``, tuned as the module describes.

    Raises :class:`DatabaseURLError` for an unreadable URL or a missing driver (naming the
    extra to install, e.g. ``pip install 'pdconnect[postgres]'``).
    """
    parsed = parse_url(url)
    try:
        if parsed.get_backend_name() != "sqlite":
            engine = sa.create_engine(parsed, pool_pre_ping=True, hide_parameters=True)
        else:
            engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT}, hide_parameters=True)
    except ImportError as exc:
        backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
        extra = DRIVER_EXTRAS.get(backend)
        hint = f": pip install 'pdconnect[{extra}]'" if extra else ""
        if backend == "postgresql" and driver != "psycopg":
            hint += " and write the URL as postgresql+psycopg://..."
        raise DatabaseDriverMissing(
            f"the {driver} driver for {backend} is not installed (no module {exc.name or '?'}){hint}"
        ) from None
    except sa.exc.NoSuchModuleError:
        raise DatabaseURLError(f"no SQLAlchemy dialect {parsed.drivername!r} is installed") from None
    except (sa.exc.ArgumentError, ValueError, TypeError) as exc:
        raise DatabaseURLError(f"the database URL's options cannot be used: {type(exc).__name__}") from None
    _hide_secrets(engine)
    if parsed.get_backend_name() != "sqlite":
        return engine
    in_memory = parsed.database in (None, "", ":memory:")

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if not in_memory:  # WAL needs a file
            cursor.execute("PRAGMA journal_mode=WAL")
        # WAL with NORMAL survives a crash of any process; only an OS crash can lose the last
        # commits, and outbox delivery is at least once anyway.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def engine_for(engine: sa.Engine | str) -> sa.Engine:
    """An engine made by :func:`create_engine` from a URL, or a view of ``engine`` that hides parameters.

    The view shares ``engine``'s pool, dialect and events; ``engine`` itself is not changed.
    """
    if isinstance(engine, str):
        return create_engine(engine)
    if isinstance(engine.logger, _StatementsOnly):
        return engine
    view = engine.execution_options()
    _hide_secrets(view)
    return view


def _hide_secrets(engine: sa.Engine) -> None:
    engine.hide_parameters = True
    engine.logger = _StatementsOnly(engine.logger)  # type: ignore[assignment]
    sa.event.listen(engine, "handle_error", _redact_driver_detail)


class _StatementsOnly(logging.LoggerAdapter):  # type: ignore[type-arg]
    """An engine's log without its DEBUG lines: SQLAlchemy logs every result row at DEBUG.

    Statements stay at INFO (their parameters hidden), for a vendor debugging with ``echo``.
    """

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


def _redact_driver_detail(context: sa.engine.ExceptionContext) -> None:
    """Cut the driver's message to its first line, in the driver's exception and SQLAlchemy's.

    The exceptions are changed in place, so that the chain SQLAlchemy raises (its error
    ``from`` the driver's) carries the short text everywhere: ``str()``, logs, tracebacks.
    The driver's structured details stay readable (psycopg's ``exc.diag``).
    """
    original = context.original_exception
    try:
        text = str(original)
    except Exception:  # a driver's message that cannot even be shown: leave it alone
        return
    first, newline, _detail = text.strip().partition("\n")
    if not newline:
        return
    original.args = (first,)
    wrapped = context.sqlalchemy_exception
    if isinstance(wrapped, sa.exc.DBAPIError):
        wrapped.args = (f"({type(original).__module__}.{type(original).__name__}) {first}",)


def driver_message(exc: BaseException) -> str:
    """The first line of the driver's own message, without SQLAlchemy's SQL echo and link.

    For logs and one-line command errors; drivers do not put passwords in these messages.
    """
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return (lines[0] if lines else type(cause).__name__)[:300]


#: The PostgreSQL advisory lock :func:`create_all` holds while it creates tables: an arbitrary
#: number, the same in every pdconnect process ("pdcn" in ASCII).
DDL_LOCK = 0x7064636E


def create_all(metadata: sa.MetaData, engine: sa.Engine) -> None:
    """Create ``metadata``'s missing tables and indexes; safe from several processes at once.

    On PostgreSQL two processes starting together on a fresh database both see no table, and
    the second ``CREATE TABLE`` fails on the catalog's unique names (or "already exists"): the
    check and the creation run under a transaction-scoped advisory lock, so one process creates
    and the others then find the tables. SQLite runs one writer at a time anyway.
    """
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": DDL_LOCK})
        metadata.create_all(conn, checkfirst=True)
