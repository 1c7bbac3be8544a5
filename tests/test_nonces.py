from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect import MemoryNonceStore, NonceStore, SqlNonceStore
from pdconnect.errors import InvalidData
from tests.conftest import FakeClock, unique_table


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[NonceStore]:
    if request.param == "memory":
        yield MemoryNonceStore(clock=clock)
    elif request.param == "sqlite":
        yield SqlNonceStore(f"sqlite:///{tmp_path / 'nonces.db'}", clock=clock)
    else:
        engine = request.getfixturevalue("postgres_engine")
        made = SqlNonceStore(engine, table_name=unique_table("pdc_nonces"), clock=clock)
        yield made
        made.table.drop(engine)


def test_a_nonce_is_consumed_once(store: NonceStore, clock: FakeClock) -> None:
    assert store.consume("n1", expires_at=clock.now + 600)
    assert not store.consume("n1", expires_at=clock.now + 600)
    assert store.consume("n2", expires_at=clock.now + 600)


def test_stores_satisfy_the_protocol(store: NonceStore) -> None:
    assert isinstance(store, NonceStore)


def test_concurrent_consumers_see_exactly_one_success(store: NonceStore, clock: FakeClock) -> None:
    results: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def consume() -> None:
        barrier.wait()
        ok = store.consume("shared", expires_at=clock.now + 600)
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=consume) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True]


def test_memory_store_forgets_expired_nonces(clock: FakeClock) -> None:
    store = MemoryNonceStore(clock=clock)
    store.consume("old", expires_at=clock.now + 10)
    clock.advance(11)
    store.consume("new", expires_at=clock.now + 10)
    assert len(store) == 1


def test_sql_store_shared_by_two_instances_and_purges(tmp_path: Path, clock: FakeClock) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first = SqlNonceStore(url, clock=clock)
    second = SqlNonceStore(url, clock=clock)
    assert first.consume("n", expires_at=clock.now + 5)
    assert not second.consume("n", expires_at=clock.now + 5)
    clock.advance(10)
    for i in range(SqlNonceStore._PURGE_EVERY):
        second.consume(f"fresh-{i}", expires_at=clock.now + 5)
    with second.engine.connect() as conn:
        remaining = conn.execute(sa.select(second.table.c.nonce)).scalars().all()
    assert "n" not in remaining


def test_sql_store_accepts_an_engine_and_a_table_name(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'e.db'}")
    store = SqlNonceStore(engine, table_name="my_nonces")
    assert store.consume("x", expires_at=2e9)
    assert sa.inspect(engine).has_table("my_nonces")


# -- hostile values (issue 9): refused before they are recorded --------------------------------


@pytest.mark.parametrize(
    ("nonce", "expires_at", "field"),
    [
        ("", 2e9, "nonce"),
        ("x" * 65, 2e9, "nonce"),
        ("\ud800", 2e9, "nonce"),
        ("é", 2e9, "nonce"),
        (5, 2e9, "nonce"),
        (None, 2e9, "nonce"),
        (b"abc", 2e9, "nonce"),
        ("n", float("nan"), "expires_at"),
        ("n", float("inf"), "expires_at"),
        ("n", -float("inf"), "expires_at"),
        ("n", "2000000000", "expires_at"),
        ("n", True, "expires_at"),
        ("n", 10**400, "expires_at"),
        ("n", None, "expires_at"),
    ],
)
def test_a_hostile_entry_is_refused_and_not_recorded(
    store: NonceStore, clock: FakeClock, nonce: object, expires_at: object, field: str
) -> None:
    with pytest.raises(InvalidData) as caught:
        store.consume(nonce, expires_at=expires_at)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert store.consume("n", expires_at=clock.now + 600), "nothing was recorded"


def test_a_nan_expiry_can_no_longer_pin_a_nonce_in_memory_forever(clock: FakeClock) -> None:
    store = MemoryNonceStore(clock=clock)
    with pytest.raises(InvalidData):
        store.consume("pinned", expires_at=float("nan"))
    assert len(store) == 0


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    nonce=st.one_of(st.text(max_size=80), st.integers(), st.none(), st.binary(max_size=8)),
    expires_at=st.one_of(st.floats(), st.integers(-(2**70), 2**70), st.text(max_size=5), st.none()),
)
def test_any_entry_is_recorded_once_or_refused(
    store: NonceStore, clock: FakeClock, nonce: object, expires_at: object
) -> None:
    try:
        first = store.consume(nonce, expires_at=expires_at)  # type: ignore[arg-type]
    except InvalidData:
        return
    again = store.consume(nonce, expires_at=expires_at)  # type: ignore[arg-type]
    # An entry already past its expiry may be purged at once: no state that old is still accepted.
    assert again is False or float(expires_at) < clock.now  # type: ignore[arg-type]
    assert first in (True, False)  # True unless an earlier example recorded the same nonce
