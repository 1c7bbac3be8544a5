"""A delivery-log fixture over every backend, shared by the webhook replay suites."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pdconnect.webhooks import DeliveryLog, MemoryDeliveryLog, SqlDeliveryLog
from tests.conftest import unique_table


def delivery_log_fixture(name: str) -> Callable[..., Any]:
    """A ``log`` fixture: a :class:`DeliveryLog` in memory, on SQLite and on PostgreSQL.

    ``name`` names the SQLite file and the PostgreSQL table's prefix, so suites never share one.
    """

    @pytest.fixture(params=["memory", "sqlite", "postgresql"])
    def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DeliveryLog]:
        if request.param == "memory":
            yield MemoryDeliveryLog()
        elif request.param == "sqlite":
            made = SqlDeliveryLog(f"sqlite:///{tmp_path / f'{name}.db'}")
            yield made
            made.engine.dispose()
        else:
            made = SqlDeliveryLog(request.getfixturevalue("postgres_engine"), table_name=unique_table(f"pdc_{name}"))
            yield made
            made.drop_tables()

    return log
