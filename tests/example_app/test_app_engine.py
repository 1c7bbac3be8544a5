"""Acme's own database errors name no value: its engine is pdconnect's, which hides parameters."""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from example_app import db
from example_app.demo import RunningDemo


def _duplicate_user(acme: RunningDemo, name: str) -> sa.exc.DBAPIError:
    engine: sa.Engine = acme.app.extensions["acme_engine"]
    table = db.metadata.tables["acme_users"]
    row = {column.name: name for column in table.columns if column.name == "name"}
    with engine.begin() as conn:
        conn.execute(sa.insert(table).values(**row))
    with pytest.raises(sa.exc.IntegrityError) as caught, engine.begin() as conn:
        conn.execute(sa.insert(table).values(**row))
    return caught.value


@pytest.mark.parametrize("name", ["pd-secret-bob", "pd-secret-\u00e9\u00e8", "pd-secret-" + "x" * 200])
def test_a_refused_write_names_no_value(acme: RunningDemo, name: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    error = _duplicate_user(acme, name)
    assert name not in str(error)
    assert all(name not in record.getMessage() for record in caplog.records)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suffix=st.text(alphabet=st.characters(min_codepoint=48, max_codepoint=122), min_size=4, max_size=40))
def test_no_refused_write_names_its_value(acme: RunningDemo, suffix: str) -> None:
    name = f"pd-secret-{suffix}"
    engine: sa.Engine = acme.app.extensions["acme_engine"]
    with engine.begin() as conn:
        conn.execute(sa.delete(db.metadata.tables["acme_users"]).where(db.metadata.tables["acme_users"].c.name == name))
    assert name not in str(_duplicate_user(acme, name))
