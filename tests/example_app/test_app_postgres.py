"""Acme's own tables on PostgreSQL: token rotations that race, and hostile text, in a schema of their own."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from example_app import alertmanager, db


@pytest.fixture
def acme_postgres(postgres_engine: sa.Engine) -> Iterator[sa.Engine]:
    schema = f"acme_{uuid.uuid4().hex[:10]}"  # runs sharing the database never meet
    with postgres_engine.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    engine = postgres_engine.execution_options(schema_translate_map={None: schema})
    db.metadata.create_all(engine)
    yield engine
    with postgres_engine.begin() as conn:
        conn.execute(sa.schema.DropSchema(schema, cascade=True))


@pytest.mark.parametrize("owner", [str(n) for n in range(1, 11)])  # rounds: the first insert is the race
def test_racing_rotations_leave_one_working_token(acme_postgres: sa.Engine, owner: str) -> None:
    start = threading.Barrier(8)
    tokens: list[str] = []
    errors: list[BaseException] = []

    def rotate() -> None:
        start.wait()
        try:
            tokens.append(alertmanager.issue_token(acme_postgres, owner))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=rotate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(tokens) == 8
    assert sum(alertmanager.owner_of(acme_postgres, f"Bearer {t}") == owner for t in tokens) == 1
    with acme_postgres.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(db.alertmanager_tokens)).scalar_one() == 1


@pytest.mark.parametrize(
    "authorization",
    ["Bearer 42.\x00" + "A" * 42, "Bearer 4\x002." + "A" * 43, "Bearer 42." + "\ud800" * 43, "Bearer " + "9" * 64],
)
def test_hostile_tokens_never_reach_postgres_as_errors(acme_postgres: sa.Engine, authorization: str) -> None:
    alertmanager.issue_token(acme_postgres, "42")
    assert alertmanager.owner_of(acme_postgres, authorization) is None
