"""Issue 9, the integrations store: no plain key in the natural key, and typed refusals of bad values."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from pdconnect import integration_from_key
from pdconnect.errors import InvalidData, PdConnectError
from pdconnect.storage import KEY_DIGEST_PREFIX, SqlIntegrationStore, key_digest, natural_key
from tests.conftest import OTHER_SERVICE_KEY, RULESET_KEY, SERVICE_KEY, unique_table

NATURAL_KEY_WIDTH = 600


class ReversingCipher:
    """A stand-in for Fernet or a KMS: the stored text is not the key."""

    def encrypt(self, plaintext: str) -> str:
        return "enc:" + plaintext[::-1]

    def decrypt(self, ciphertext: str) -> str:
        return ciphertext.removeprefix("enc:")[::-1]


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> sa.Engine:
    if request.param == "sqlite":
        return sa.create_engine(f"sqlite:///{tmp_path / 'integrations.db'}")
    postgres: sa.Engine = request.getfixturevalue("postgres_engine")
    return postgres


@pytest.fixture
def table_name(engine: sa.Engine) -> Iterator[str]:
    name = unique_table("pdc_hard")
    yield name
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP TABLE IF EXISTS "{name}"'))


def _every_cell(store: SqlIntegrationStore) -> list[str]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(store.table)).all()
    assert rows, "the scan must look at something"
    return [str(value) for row in rows for value in row]


def _assert_key_absent(store: SqlIntegrationStore, key: str) -> None:
    for cell in _every_cell(store):
        assert key not in cell, "the plain integration key is stored in the table"
        assert key[::-1] not in cell or cell.startswith("enc:"), cell  # only the cipher's own column


def _legacy_row(store: SqlIntegrationStore, owner: str, key: str, record_id: str) -> None:
    """A row as pdconnect wrote it before issue 9: ``natural_key`` is ``key:<the plain key>``."""
    row = store._row(integration_from_key(key, owner_id=owner, service_name="Legacy"))
    row["natural_key"] = f"key:{key}"
    with store.engine.begin() as conn:
        conn.execute(sa.insert(store.table).values(id=record_id, **row))


# -- defect 1: the key in plain text in natural_key ------------------------------------------


@pytest.mark.parametrize("key", [SERVICE_KEY, RULESET_KEY])
def test_a_pasted_key_is_nowhere_in_the_table_with_a_cipher(engine: sa.Engine, table_name: str, key: str) -> None:
    store = SqlIntegrationStore(engine, table_name=table_name, cipher=ReversingCipher())
    saved = store.save(integration_from_key(key, owner_id="org-1"))
    _assert_key_absent(store, key)
    assert store.get("org-1", saved.id).integration_key == key  # type: ignore[union-attr]
    again = store.save(integration_from_key(key, owner_id="org-1", service_name="Renamed"))
    assert again.id == saved.id, "pasting the same key again still updates the one record"


def test_an_old_row_is_upgraded_when_the_store_starts(engine: sa.Engine, table_name: str) -> None:
    old = SqlIntegrationStore(engine, table_name=table_name, cipher=ReversingCipher())
    _legacy_row(old, "org-1", SERVICE_KEY, "legacy00000001")
    _legacy_row(old, "org-2", OTHER_SERVICE_KEY, "legacy00000002")
    started = SqlIntegrationStore(engine, table_name=table_name, cipher=ReversingCipher())
    _assert_key_absent(started, SERVICE_KEY)
    _assert_key_absent(started, OTHER_SERVICE_KEY)
    assert started.upgrade_natural_keys() == 0, "running it again changes nothing"
    again = started.save(integration_from_key(SERVICE_KEY, owner_id="org-1"))
    assert again.id == "legacy00000001", "the upgraded record is still found by its key"
    assert [r.id for r in started.list("org-1")] == ["legacy00000001"]


def test_an_old_row_is_found_and_rewritten_by_save_alone(engine: sa.Engine, table_name: str) -> None:
    """A process that never ran the upgrade (``create_tables=False``) still finds and fixes the row."""
    SqlIntegrationStore(engine, table_name=table_name)
    store = SqlIntegrationStore(engine, table_name=table_name, create_tables=False, cipher=ReversingCipher())
    _legacy_row(store, "org-1", SERVICE_KEY, "legacy00000001")
    saved = store.save(integration_from_key(SERVICE_KEY, owner_id="org-1", service_name="Again"))
    assert saved.id == "legacy00000001"
    assert [r.id for r in store.list("org-1")] == ["legacy00000001"]
    _assert_key_absent(store, SERVICE_KEY)


def test_a_legacy_twin_of_a_new_row_keeps_its_record_but_loses_the_key(engine: sa.Engine, table_name: str) -> None:
    """An old and a new process both saved one key: nothing is lost, the key is gone, saves find the new one."""
    store = SqlIntegrationStore(engine, table_name=table_name, cipher=ReversingCipher())
    new = store.save(integration_from_key(SERVICE_KEY, owner_id="org-1"))
    _legacy_row(store, "org-1", SERVICE_KEY, "legacy00000001")
    assert store.save(integration_from_key(SERVICE_KEY, owner_id="org-1")).id == new.id
    assert store.upgrade_natural_keys() == 1
    _assert_key_absent(store, SERVICE_KEY)
    assert {r.id for r in store.list("org-1")} == {new.id, "legacy00000001"}
    assert store.save(integration_from_key(SERVICE_KEY, owner_id="org-1")).id == new.id


HOSTILE_KEYS = [
    SERVICE_KEY,
    RULESET_KEY,
    "",
    "key:" + SERVICE_KEY,
    "x" * 10_000,
    "\ud800" * 40,
    "\x00" * 32,
    "é" * 300,
    "%" + "_" * 31,
]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_key_digest_fits_and_hides_any_string(key: str) -> None:
    digest = key_digest(key)
    assert digest.startswith(KEY_DIGEST_PREFIX)
    assert len(digest) == len(KEY_DIGEST_PREFIX) + 64 <= NATURAL_KEY_WIDTH
    assert digest.isascii()
    if len(key) >= 8:
        assert key not in digest


@given(st.from_regex(r"[A-Za-z0-9]{32}", fullmatch=True), st.from_regex(r"[A-Za-z0-9]{32}", fullmatch=True))
def test_natural_key_of_a_pasted_key_is_a_fixed_width_digest_that_tells_keys_apart(first: str, second: str) -> None:
    one = natural_key(integration_from_key(first, owner_id="org-1"))
    assert one == key_digest(first) == natural_key(integration_from_key(first, owner_id="org-2", service_name="X"))
    assert first not in one and len(one) <= NATURAL_KEY_WIDTH
    assert (one == natural_key(integration_from_key(second, owner_id="org-1"))) == (first == second)


@given(st.text())
def test_key_digest_never_raises_and_always_fits(text: str) -> None:
    assert len(key_digest(text)) <= NATURAL_KEY_WIDTH


# -- defect 2: any IntegrityError became a RuntimeError (a 500 in Flask) ---------------------


def _table_with_a_required_extra_column(engine: sa.Engine, table_name: str) -> SqlIntegrationStore:
    """A table someone extended with a NOT NULL column pdconnect never fills: every insert is refused."""
    store = SqlIntegrationStore(engine, table_name=table_name, create_tables=False)
    extra = store.table.to_metadata(sa.MetaData())
    extra.append_column(sa.Column("tenant_region", sa.String(8), nullable=False))
    extra.create(engine)
    store.create_tables()
    return store


def test_a_not_null_refusal_is_invalid_data_naming_no_key(engine: sa.Engine, table_name: str) -> None:
    store = _table_with_a_required_extra_column(engine, table_name)
    with pytest.raises(InvalidData) as info:
        store.save(integration_from_key(SERVICE_KEY, owner_id="org-1"))
    assert SERVICE_KEY not in str(info.value)
    assert store.list("org-1") == []


LONG_VALUES: list[tuple[str, dict[str, Any]]] = [
    ("owner_id", {"owner_id": "o" * 256}),
    ("service_name", {"service_name": "n" * 256}),
    ("account", {"account": "a" * 256}),
]


@pytest.mark.parametrize(("field", "change"), LONG_VALUES, ids=[f for f, _ in LONG_VALUES])
def test_a_value_longer_than_its_column_is_invalid_data_on_every_database(
    engine: sa.Engine, table_name: str, field: str, change: dict[str, Any]
) -> None:
    from dataclasses import replace

    store = SqlIntegrationStore(engine, table_name=table_name, cipher=ReversingCipher())
    integration = replace(integration_from_key(SERVICE_KEY, owner_id="org-1"), **change)
    with pytest.raises(InvalidData) as info:
        store.save(integration)
    assert info.value.field == field
    assert isinstance(info.value, PdConnectError)
    assert SERVICE_KEY not in str(info.value)
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(store.table)).scalar() == 0


@given(st.integers(min_value=0, max_value=400))
def test_owner_ids_up_to_the_width_save_and_longer_ones_are_refused(length: int) -> None:
    store = _memory_sql_store()
    integration = integration_from_key(SERVICE_KEY, owner_id="o" * length)
    if length <= 255:
        assert store.save(integration).owner_id == "o" * length
    else:
        with pytest.raises(InvalidData):
            store.save(integration)


_SHARED: list[SqlIntegrationStore] = []


def _memory_sql_store() -> SqlIntegrationStore:
    if not _SHARED:
        _SHARED.append(SqlIntegrationStore("sqlite://"))
    return _SHARED[0]
