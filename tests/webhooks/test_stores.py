"""The delivery log and the secret store, in memory, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from pdconnect.webhooks import (
    Claim,
    DeliveryLog,
    MemoryDeliveryLog,
    MemoryWebhookSecretStore,
    SqlDeliveryLog,
    SqlWebhookSecretStore,
    WebhookSecretStore,
)
from tests.conftest import unique_table

BACKENDS = ["memory", "sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DeliveryLog]:
    if request.param == "memory":
        yield MemoryDeliveryLog(stale_after=60)
    elif request.param == "sqlite":
        made = SqlDeliveryLog(f"sqlite:///{tmp_path / 'w.db'}", stale_after=60)
        yield made
        made.engine.dispose()
    else:
        made = SqlDeliveryLog(request.getfixturevalue("postgres_engine"), table_name=unique_table("pdc_wh"))
        yield made
        made.drop_tables()


def test_first_time_then_duplicate(log: DeliveryLog) -> None:
    assert log.begin("w1", now=100) is Claim.NEW
    assert log.begin("w1", now=101) is Claim.IN_PROGRESS, "a retry while the first is being handled"
    log.finish("w1", now=102)
    assert log.begin("w1", now=103) is Claim.DUPLICATE
    assert log.begin("w2", now=103) is Claim.NEW


def test_an_abandoned_webhook_is_handled_again(log: DeliveryLog) -> None:
    assert log.begin("w1", now=100) is Claim.NEW
    log.abandon("w1")
    assert log.begin("w1", now=101) is Claim.NEW


def test_a_stale_claim_is_taken_over(log: DeliveryLog) -> None:
    assert log.begin("w1", now=100) is Claim.NEW
    assert log.begin("w1", now=159) is Claim.IN_PROGRESS
    assert log.begin("w1", now=161) is Claim.NEW, "its handler's process died"
    assert log.begin("w1", now=162) is Claim.IN_PROGRESS


def test_purge_forgets_old_ids(log: DeliveryLog) -> None:
    log.begin("old", now=100)
    log.finish("old", now=100)
    log.begin("new", now=10_000)
    assert log.purge(older_than=1_000, now=10_050) == 1
    assert log.begin("old", now=10_030) is Claim.NEW
    assert log.begin("new", now=10_030) is Claim.IN_PROGRESS


def test_sql_logs_are_shared_between_instances(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'shared.db'}")
    first, second = SqlDeliveryLog(engine), SqlDeliveryLog(engine)
    assert first.begin("w", now=1) is Claim.NEW
    first.finish("w", now=2)
    assert second.begin("w", now=3) is Claim.DUPLICATE
    assert "w.db" not in repr(first) and "shared.db" in repr(first)
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def secrets(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WebhookSecretStore]:
    if request.param == "memory":
        yield MemoryWebhookSecretStore()
    elif request.param == "sqlite":
        made = SqlWebhookSecretStore(f"sqlite:///{tmp_path / 's.db'}")
        yield made
        made.engine.dispose()
    else:
        made = SqlWebhookSecretStore(request.getfixturevalue("postgres_engine"), table_name=unique_table("pdc_whs"))
        yield made
        made.drop_tables()


def test_secrets_per_subscription_newest_first(secrets: WebhookSecretStore) -> None:
    old = secrets.register("PSUB1", "old-secret", owner_id="org-1", integration_id="i1")
    new = secrets.register("PSUB1", "new-secret", owner_id="org-1", integration_id="i1")
    secrets.register("PSUB2", "other", owner_id="org-2", integration_id="i2")
    assert [s.secret for s in secrets.secrets_for("PSUB1")] == ["new-secret", "old-secret"]
    assert [s.id for s in secrets.for_integration("org-1", "i1")] == [new.id, old.id]
    assert secrets.for_integration("org-2", "i1") == []
    assert secrets.remove("PSUB1", old.id) == 1
    assert [s.secret for s in secrets.secrets_for("PSUB1")] == ["new-secret"]
    assert secrets.remove("PSUB1") == 1 and secrets.secrets_for("PSUB1") == []


@pytest.mark.parametrize(
    ("subscription_id", "secret"),
    [("", "s"), ("   ", "s"), ("x" * 256, "s"), ("PSUB", ""), ("PSUB", "s" * 1025), (5, "s"), ("PSUB", None)],
)
def test_bad_registrations(secrets: WebhookSecretStore, subscription_id: object, secret: object) -> None:
    with pytest.raises(ValueError):
        secrets.register(subscription_id, secret)  # type: ignore[arg-type]


def test_secrets_stay_out_of_reprs(secrets: WebhookSecretStore) -> None:
    record = secrets.register("PSUB1", "very-secret-value")
    assert "very-secret-value" not in repr(record)
    assert "very-secret-value" not in repr(secrets)


class Rot13:
    def encrypt(self, plaintext: str) -> str:
        return plaintext[::-1] + "!"

    def decrypt(self, ciphertext: str) -> str:
        return ciphertext[:-1][::-1]


def test_secrets_can_be_encrypted_at_rest(tmp_path: Path) -> None:
    store = SqlWebhookSecretStore(f"sqlite:///{tmp_path / 'c.db'}", cipher=Rot13())
    store.register("PSUB1", "plain-secret")
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(store.table.c.secret)).scalar_one()
    assert stored == "terces-nialp!"
    assert store.secrets_for("PSUB1")[0].secret == "plain-secret"
    store.engine.dispose()
