from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from pdconnect import EventsApi, Integration, KeyType, Origin, Region, integration_from_key
from pdconnect.errors import InvalidData
from pdconnect.storage import (
    IntegrationStore,
    MemoryIntegrationStore,
    SqlIntegrationStore,
    StoredIntegration,
    clean_reason,
)
from tests.conftest import OTHER_SERVICE_KEY, RULESET_KEY, SERVICE_KEY, unique_table


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IntegrationStore]:
    if request.param == "memory":
        yield MemoryIntegrationStore()
    elif request.param == "sqlite":
        yield SqlIntegrationStore(f"sqlite:///{tmp_path / 'integrations.db'}")
    else:
        engine = request.getfixturevalue("postgres_engine")
        made = SqlIntegrationStore(engine, table_name=unique_table("pdc_integrations"))
        yield made
        made.table.drop(engine)


def installed(
    owner: str, key: str = SERVICE_KEY, *, service_id: str = "PSVC001", name: str = "Checkout"
) -> Integration:
    return Integration(
        owner_id=owner,
        integration_key=key,
        origin=Origin.INSTALL,
        events_api=EventsApi.V2,
        key_type=KeyType.SERVICE,
        account="acme",
        account_name="Acme Corp",
        service_name=name,
        service_id=service_id,
        target_type="service",
    )


def connected(owner: str, key: str = SERVICE_KEY, *, name: str = "Database") -> Integration:
    return Integration(
        owner_id=owner,
        integration_key=key,
        origin=Origin.CONNECT,
        events_api=EventsApi.V1,
        key_type=KeyType.SERVICE,
        account="acme",
        service_name=name,
    )


def test_save_get_list_delete(store: IntegrationStore) -> None:
    saved = store.save(installed("org-1"))
    assert isinstance(saved, StoredIntegration)
    assert saved.id
    assert store.get("org-1", saved.id) == saved
    assert store.list("org-1") == [saved]
    assert saved.integration_key == SERVICE_KEY
    assert (saved.service_id, saved.account_name, saved.target_type) == ("PSVC001", "Acme Corp", "service")
    assert saved.connected_at.tzinfo is not None
    assert store.delete("org-1", saved.id)
    assert store.get("org-1", saved.id) is None
    assert store.list("org-1") == []
    assert not store.delete("org-1", saved.id)


def test_every_field_round_trips(store: IntegrationStore) -> None:
    original = Integration(
        owner_id="org-1",
        integration_key=RULESET_KEY,
        origin=Origin.INSTALL,
        events_api=EventsApi.V2,
        key_type=KeyType.RULESET,
        region=Region.EU,
        account="acme-eu",
        account_name="Acme EU",
        service_name="Global Event Rules",
        service_id="PRULE01",
        target_type="global_rule_set",
    )
    saved = store.save(original)
    loaded = store.get("org-1", saved.id)
    assert loaded is not None
    for field in ("owner_id", "integration_key", "origin", "events_api", "key_type", "region", "account",
                  "account_name", "service_name", "service_id", "target_type"):  # fmt: skip
        assert getattr(loaded, field) == getattr(original, field), field
    assert abs((loaded.connected_at - original.connected_at).total_seconds()) < 1


def test_owners_are_isolated(store: IntegrationStore) -> None:
    mine = store.save(installed("org-1"))
    theirs = store.save(installed("org-2", OTHER_SERVICE_KEY, service_id="POTHER1", name="Theirs"))
    assert store.list("org-1") == [mine]
    assert store.list("org-2") == [theirs]
    # Knowing another owner's id gives nothing.
    assert store.get("org-1", theirs.id) is None
    assert not store.delete("org-1", theirs.id)
    assert not store.mark_failing("org-1", theirs.id, "nope")
    assert store.get("org-2", theirs.id) == theirs


def test_connecting_the_same_service_again_updates_the_record(store: IntegrationStore) -> None:
    first = store.save(installed("org-1", SERVICE_KEY))
    second = store.save(installed("org-1", OTHER_SERVICE_KEY, name="Checkout (renamed)"))
    assert second.id == first.id
    assert store.list("org-1") == [second]
    assert second.integration_key == OTHER_SERVICE_KEY
    assert second.service_name == "Checkout (renamed)"


def test_connect_flow_recognises_the_service_by_account_and_name(store: IntegrationStore) -> None:
    first = store.save(connected("org-1", SERVICE_KEY))
    second = store.save(connected("org-1", OTHER_SERVICE_KEY))
    assert second.id == first.id
    assert len(store.list("org-1")) == 1
    other_service = store.save(connected("org-1", RULESET_KEY, name="Web"))
    assert other_service.id != first.id


def test_pasted_keys_are_recognised_by_the_key(store: IntegrationStore) -> None:
    first = store.save(integration_from_key(SERVICE_KEY, owner_id="org-1", service_name="A"))
    again = store.save(integration_from_key(SERVICE_KEY, owner_id="org-1", service_name="B"))
    other = store.save(integration_from_key(OTHER_SERVICE_KEY, owner_id="org-1", service_name="A"))
    assert again.id == first.id
    assert again.service_name == "B"
    assert other.id != first.id


def test_another_owner_never_renames_or_takes_over(store: IntegrationStore) -> None:
    """Sentry's bug: a later install by another organisation renamed the first one's record."""
    mine = store.save(installed("org-1", SERVICE_KEY, name="Checkout"))
    store.save(installed("org-2", OTHER_SERVICE_KEY, name="Renamed by someone else"))
    assert store.get("org-1", mine.id) == mine
    assert [r.owner_id for r in store.list("org-1")] == ["org-1"]
    assert len(store.list("org-2")) == 1
    assert store.list("org-2")[0].id != mine.id


def test_failing_marks(store: IntegrationStore) -> None:
    saved = store.save(installed("org-1"))
    assert store.mark_failing("org-1", saved.id, "PagerDuty rejected the key (HTTP 400)")
    first = store.get("org-1", saved.id)
    assert first is not None
    assert first.failing
    assert first.failure_reason == "PagerDuty rejected the key (HTTP 400)"
    assert store.mark_failing("org-1", saved.id, "still rejected")
    second = store.get("org-1", saved.id)
    assert second is not None
    assert second.failing_since == first.failing_since, "the first failure time is kept"
    assert second.failure_reason == "still rejected"
    assert store.mark_working("org-1", saved.id)
    healed = store.get("org-1", saved.id)
    assert healed is not None
    assert not healed.failing
    assert healed.failure_reason is None
    assert not store.mark_working("org-1", "nope")


def test_reconnecting_clears_a_failing_mark(store: IntegrationStore) -> None:
    saved = store.save(installed("org-1"))
    store.mark_failing("org-1", saved.id, "rejected")
    again = store.save(installed("org-1", OTHER_SERVICE_KEY))
    assert not again.failing


def test_repr_hides_the_key(store: IntegrationStore) -> None:
    saved = store.save(installed("org-1"))
    assert SERVICE_KEY not in repr(saved)
    assert saved.id in repr(saved)


def test_concurrent_saves_of_one_target_make_one_record(store: IntegrationStore) -> None:
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def save(i: int) -> None:
        barrier.wait()
        try:
            store.save(replace(installed("org-1"), service_name=f"name {i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.list("org-1")) == 1


def test_stores_satisfy_the_protocol(store: IntegrationStore) -> None:
    assert isinstance(store, IntegrationStore)


class ReversingCipher:
    """Stands in for a real cipher: what is stored must not be the key."""

    def encrypt(self, plaintext: str) -> str:
        return "enc:" + plaintext[::-1]

    def decrypt(self, ciphertext: str) -> str:
        return ciphertext.removeprefix("enc:")[::-1]


def test_keys_can_be_encrypted_at_rest(tmp_path: Path) -> None:
    store = SqlIntegrationStore(f"sqlite:///{tmp_path / 'enc.db'}", cipher=ReversingCipher())
    saved = store.save(installed("org-1"))
    with store.engine.connect() as conn:
        raw = conn.execute(sa.select(store.table.c.integration_key, store.table.c.key_hint)).one()
    assert raw.integration_key != SERVICE_KEY
    assert raw.key_hint == SERVICE_KEY[-4:]
    assert store.get("org-1", saved.id).integration_key == SERVICE_KEY  # type: ignore[union-attr]


def test_tables_can_be_created_separately(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'later.db'}"
    store = SqlIntegrationStore(url, create_tables=False)
    assert not sa.inspect(store.engine).has_table("pdconnect_integrations")
    store.create_tables()
    assert sa.inspect(store.engine).has_table("pdconnect_integrations")
    assert "later.db" in repr(store)


# -- broken integrations (issue 9) -----------------------------------------------------------

REFUSED = "PagerDuty refused the integration key (HTTP 400: Invalid routing key); reconnect the integration"


def test_broken_marks(store: IntegrationStore) -> None:
    saved = store.save(installed("org-1"))
    other = store.save(installed("org-1", OTHER_SERVICE_KEY, service_id="PSVC002", name="Other"))
    assert store.broken("org-1") == []
    assert store.mark_broken("org-1", saved.id, REFUSED)
    first = store.get("org-1", saved.id)
    assert first is not None and first.broken
    assert first.broken_reason == REFUSED
    assert first.broken_since is not None and first.broken_since.tzinfo is not None
    assert not store.mark_broken("org-1", saved.id, "again"), "only the first mark is news"
    second = store.get("org-1", saved.id)
    assert second is not None
    assert (second.broken_since, second.broken_reason) == (first.broken_since, REFUSED)
    assert [r.id for r in store.broken("org-1")] == [saved.id]
    assert not store.get("org-1", other.id).broken  # type: ignore[union-attr]
    assert "broken since" in repr(second)
    assert store.mark_working("org-1", saved.id)
    assert store.broken("org-1") == []


def test_reconnecting_clears_a_broken_mark(store: IntegrationStore) -> None:
    saved = store.save(installed("org-1"))
    store.mark_broken("org-1", saved.id, REFUSED)
    again = store.save(installed("org-1", OTHER_SERVICE_KEY))
    assert again.id == saved.id
    assert not again.broken and again.broken_reason is None
    assert store.broken("org-1") == []


def test_re_pasting_the_same_key_clears_a_broken_mark(store: IntegrationStore) -> None:
    saved = store.save(integration_from_key(SERVICE_KEY, owner_id="org-1"))
    store.mark_broken("org-1", saved.id, REFUSED)
    assert not store.save(integration_from_key(SERVICE_KEY, owner_id="org-1")).broken


def test_a_refusal_of_a_replaced_key_changes_nothing(store: IntegrationStore) -> None:
    # A worker sent with the old key while the owner reconnected with a new one.
    saved = store.save(installed("org-1", SERVICE_KEY))
    store.save(installed("org-1", OTHER_SERVICE_KEY))
    assert not store.mark_broken("org-1", saved.id, REFUSED, integration_key=SERVICE_KEY)
    assert store.broken("org-1") == []
    assert store.mark_broken("org-1", saved.id, REFUSED, integration_key=OTHER_SERVICE_KEY)


@pytest.mark.parametrize("who", ["org-2", "", "org-1 ", "ORG-1", "%", "*", "org-1' OR '1'='1", "\x00", "\ud800"])
def test_another_owner_cannot_mark_or_list_broken(store: IntegrationStore, who: str) -> None:
    saved = store.save(installed("org-1"))
    assert not store.mark_broken(who, saved.id, "hostile")
    assert store.broken(who) == []
    assert not store.get("org-1", saved.id).broken  # type: ignore[union-attr]
    store.mark_broken("org-1", saved.id, REFUSED)
    assert store.broken(who) == []
    assert not store.mark_working(who, saved.id)
    assert store.get("org-1", saved.id).broken  # type: ignore[union-attr]


@pytest.mark.parametrize("bad_id", ["", "nope", "%", "0" * 10_000, "\ud800", "' OR 1=1 --"])
def test_unknown_ids_are_not_marked(store: IntegrationStore, bad_id: str) -> None:
    store.save(installed("org-1"))
    assert not store.mark_broken("org-1", bad_id, REFUSED)
    assert store.broken("org-1") == []


@pytest.mark.parametrize(
    ("reason", "shown"),
    [
        ("Invalid routing key", "Invalid routing key"),
        ("two\nlines\r\nhere", "two lines here"),
        ("\x1b[31mred\x1b[0m", "[31mred [0m"),
        ("nul\x00byte", "nul byte"),
        ("lone \ud800 surrogate", "lone surrogate"),
        ("bidi \u202e override", "bidi override"),
        ("", "no reason given"),
        ("   \n\t ", "no reason given"),
        ("ab " * 5000, ("ab " * 167)[:500].rstrip()),
        ("x" * 10_000, "****xxxx"),  # one long token: masked
        (f"key {SERVICE_KEY} refused", "key ****d1a6 refused"),
        ("token " + "A" * 40, "token ****AAAA"),
    ],
)
def test_reasons_are_cleaned(store: IntegrationStore, reason: str, shown: str) -> None:
    saved = store.save(installed("org-1"))
    assert store.mark_broken("org-1", saved.id, reason)
    assert store.get("org-1", saved.id).broken_reason == shown  # type: ignore[union-attr]
    store.mark_failing("org-1", saved.id, reason)
    assert store.get("org-1", saved.id).failure_reason == shown  # type: ignore[union-attr]


@pytest.mark.parametrize("reason", [None, 7, float("nan"), b"Invalid routing key", ["x"]])
def test_a_reason_must_be_text(store: IntegrationStore, reason: object) -> None:
    saved = store.save(installed("org-1"))
    with pytest.raises(InvalidData):
        store.mark_broken("org-1", saved.id, reason)  # type: ignore[arg-type]
    assert not store.get("org-1", saved.id).broken  # type: ignore[union-attr]


@given(st.text(max_size=700))
def test_clean_reason_is_one_printable_line_without_keys(reason: str) -> None:
    cleaned = clean_reason(reason, integration_key=SERVICE_KEY)
    assert 0 < len(cleaned) <= 500
    assert cleaned == cleaned.strip()
    assert all(ch.isprintable() or ch == " " for ch in cleaned)
    assert SERVICE_KEY not in cleaned
    assert not any(len(run) >= 32 for run in re.findall(r"[A-Za-z0-9]+", cleaned))
    cleaned.encode("utf-8")  # no lone surrogates


def test_racing_workers_mark_broken_once(store: IntegrationStore) -> None:
    saved = store.save(installed("org-1"))
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def mark() -> None:
        barrier.wait()
        results.append(store.mark_broken("org-1", saved.id, REFUSED, integration_key=SERVICE_KEY))

    threads = [threading.Thread(target=mark) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 7 + [True], "exactly one worker tells the owner"


def test_broken_with_an_encrypted_key(tmp_path: Path) -> None:
    store = SqlIntegrationStore(f"sqlite:///{tmp_path / 'enc.db'}", cipher=ReversingCipher())
    saved = store.save(installed("org-1"))
    assert not store.mark_broken("org-1", saved.id, REFUSED, integration_key=OTHER_SERVICE_KEY)
    assert store.mark_broken("org-1", saved.id, f"echoed {SERVICE_KEY}", integration_key=SERVICE_KEY)
    assert store.broken("org-1")[0].broken_reason == "echoed ****d1a6"


def _old_table(store: SqlIntegrationStore) -> sa.Table:
    """The integrations table as pdconnect made it before the broken columns."""
    old = sa.MetaData()
    columns = [sa.Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable) for c in store.table.columns]
    return sa.Table(store.table.name, old, *[c for c in columns if not c.name.startswith("broken_")])


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_existing_table_gets_the_new_columns(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> None:
    if backend == "sqlite":
        engine: sa.Engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
        name = "pdconnect_integrations"
    else:
        engine = request.getfixturevalue("postgres_engine")
        name = unique_table("pdc_old")
    template = SqlIntegrationStore(engine, table_name=name, create_tables=False)
    old = _old_table(template)
    old.create(engine)
    try:
        row = template._row(installed("org-1"))
        for column in ("broken_since", "broken_reason"):
            row.pop(column)
        with engine.begin() as conn:
            conn.execute(sa.insert(old).values(id="legacy01", **row))
        store = SqlIntegrationStore(engine, table_name=name)  # creates what is missing
        SqlIntegrationStore(engine, table_name=name)  # and again: idempotent
        columns = {c["name"] for c in sa.inspect(engine).get_columns(name)}
        assert {"broken_since", "broken_reason"} <= columns
        legacy = store.get("org-1", "legacy01")
        assert legacy is not None and not legacy.broken
        assert store.mark_broken("org-1", "legacy01", REFUSED)
        assert [r.id for r in store.broken("org-1")] == ["legacy01"]
    finally:
        old.drop(engine)


def test_concurrent_upgrades_of_one_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    engine = sa.create_engine(url)
    template = SqlIntegrationStore(engine, create_tables=False)
    _old_table(template).create(engine)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def upgrade() -> None:
        barrier.wait()
        try:
            SqlIntegrationStore(url)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {"broken_since", "broken_reason"} <= {c["name"] for c in sa.inspect(engine).get_columns(template.table.name)}


@pytest.mark.parametrize("hostile", ["\ud800", "a\x00b", 5, None, b"org-1"])
def test_hostile_ids_find_nothing(store: IntegrationStore, hostile: object) -> None:
    # These made SQLite and PostgreSQL drivers raise (a 500 in a view) instead of "not found".
    saved = store.save(installed("org-1"))
    assert store.get(hostile, saved.id) is None  # type: ignore[arg-type]
    assert store.get("org-1", hostile) is None  # type: ignore[arg-type]
    assert store.list(hostile) == []  # type: ignore[arg-type]
    assert not store.delete("org-1", hostile)  # type: ignore[arg-type]
    assert not store.mark_failing(hostile, saved.id, "x")  # type: ignore[arg-type]
    assert not store.mark_working("org-1", hostile)  # type: ignore[arg-type]
    assert store.get("org-1", saved.id) == saved


@pytest.fixture(scope="module")
def shared_sqlite_store(tmp_path_factory: pytest.TempPathFactory) -> SqlIntegrationStore:
    return SqlIntegrationStore(f"sqlite:///{tmp_path_factory.mktemp('prop') / 'integrations.db'}")


@given(owner=st.text(max_size=40), integration_id=st.text(max_size=40), reason=st.text(max_size=80))
def test_no_other_owner_or_id_can_break_a_record(
    shared_sqlite_store: SqlIntegrationStore, owner: str, integration_id: str, reason: str
) -> None:
    store = shared_sqlite_store
    mine = store.save(installed("org-prop"))
    store.mark_working("org-prop", mine.id)
    if owner != "org-prop":
        assert not store.mark_broken(owner, mine.id, reason)
        assert store.broken(owner) == [] or all(r.owner_id == owner for r in store.broken(owner))
    if integration_id != mine.id:
        assert not store.mark_broken("org-prop", integration_id, reason)
    assert not store.get("org-prop", mine.id).broken  # type: ignore[union-attr]
