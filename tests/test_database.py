"""Engines made from URLs: SQLite tuned for several writers, other databases pinged."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from pdconnect.database import SQLITE_BUSY_TIMEOUT, create_engine, engine_for
from pdconnect.nonces import SqlNonceStore
from pdconnect.outbox import Outbox
from pdconnect.storage import SqlIntegrationStore
from pdconnect.webhooks import IncidentStateStore, SqlDeliveryLog, SqlWebhookSecretStore


def _pragma(engine: sa.Engine, name: str) -> object:
    with engine.connect() as conn:
        return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_a_sqlite_file_gets_wal_a_long_busy_timeout_and_normal_sync(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'p.db'}")
    assert _pragma(engine, "journal_mode") == "wal"
    assert _pragma(engine, "busy_timeout") == SQLITE_BUSY_TIMEOUT * 1000
    assert _pragma(engine, "synchronous") == 1  # NORMAL


def test_sqlite_in_memory_still_works() -> None:
    with create_engine("sqlite://").connect() as conn:
        assert conn.execute(sa.text("select 1")).scalar() == 1


def test_other_databases_are_pinged_and_an_engine_passes_through(tmp_path: Path) -> None:
    assert create_engine("postgresql+psycopg://u@127.0.0.1:1/x").pool._pre_ping  # type: ignore[attr-defined]
    given = sa.create_engine(f"sqlite:///{tmp_path / 'given.db'}")
    view = engine_for(given)
    assert view.url == given.url and view.pool is given.pool, "a vendor's own engine: its pool, its database"
    assert view.hide_parameters and not given.hide_parameters, "... seen through a view that hides parameters"


def test_every_store_made_from_a_url_uses_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'stores.db'}"
    stores = [SqlIntegrationStore(url), SqlNonceStore(url), SqlWebhookSecretStore(url), SqlDeliveryLog(url),
              IncidentStateStore(url), Outbox(url)]  # fmt: skip
    for store in stores:
        assert _pragma(store.engine, "busy_timeout") == SQLITE_BUSY_TIMEOUT * 1000, type(store).__name__
