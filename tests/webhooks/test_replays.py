"""De-duplication on the signed event id, per subscription (issue 9): replays, forged headers, races.

PagerDuty signs the body, not the headers. A captured body re-sent under a fresh
``X-Webhook-Id`` is the same event and must be handled once; the same event id under two
subscriptions (two owners) is two deliveries, and neither may suppress the other.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from pdconnect.errors import ReceiveError, SignatureMismatch, WebhookError
from pdconnect.webhooks import (
    Claim,
    DeliveryLog,
    MemoryWebhookSecretStore,
    Receipt,
    SqlDeliveryLog,
    WebhookEvent,
    WebhookReceiver,
    sign,
)
from pdconnect.webhooks.deliveries import delivery_key
from tests.conftest import unique_table
from tests.webhooks import samples
from tests.webhooks.delivery_logs import delivery_log_fixture
from tests.webhooks.samples import OTHER_SECRET, SECRET, encode

BODY = encode(samples.v3("incident.acknowledged"))
VENDOR_SECRET = "whsec-vendor-wide-account-subscription-3"


def headers(body: bytes, secret: str, *, webhook_id: str, subscription: str | None = "PSUB1") -> dict[str, str]:
    made = {"X-PagerDuty-Signature": sign(secret, body), "X-Webhook-Id": webhook_id}
    if subscription is not None:
        made["X-Webhook-Subscription"] = subscription
    return made


log = delivery_log_fixture("replay")


def two_tenants() -> MemoryWebhookSecretStore:
    store = MemoryWebhookSecretStore()
    store.register("PSUB1", SECRET, owner_id="alice", integration_id="int-a")
    store.register("PSUB2", OTHER_SECRET, owner_id="mallory", integration_id="int-m")
    return store


def recording(receiver: WebhookReceiver) -> list[WebhookEvent]:
    seen: list[WebhookEvent] = []
    receiver.handler(seen.append)
    return seen


@pytest.mark.parametrize("vendor_wide", [False, True], ids=["registered-secret", "vendor-wide-secret"])
def test_a_replay_under_a_fresh_webhook_id_is_handled_once(log: DeliveryLog, vendor_wide: bool) -> None:
    receiver = WebhookReceiver(secret_store=two_tenants(), secrets=[VENDOR_SECRET], deliveries=log)
    seen = recording(receiver)
    secret = VENDOR_SECRET if vendor_wide else SECRET
    assert receiver.receive(BODY, headers(BODY, secret, webhook_id="wh-original")).status == 202
    for fresh in ("wh-replay-1", "wh-replay-2", "", "   "):
        replay = receiver.receive(BODY, headers(BODY, secret, webhook_id=fresh))
        assert (replay.status, replay.duplicate) == (200, True)
    headerless = headers(BODY, secret, webhook_id="x")
    del headerless["X-Webhook-Id"]
    assert receiver.receive(BODY, headerless).status == 200
    assert len(seen) == 1


def test_a_vendor_wide_replay_under_another_subscription_header_is_handled_once(log: DeliveryLog) -> None:
    """With a vendor-wide secret the subscription header is unsigned: it cannot open a new namespace."""
    receiver = WebhookReceiver(secrets=[VENDOR_SECRET], deliveries=log)
    seen = recording(receiver)
    assert receiver.receive(BODY, headers(BODY, VENDOR_SECRET, webhook_id="a", subscription="PSUB1")).status == 202
    for forged in ("PSUB2", "PSUB1 ", None, "psub1"):
        replay = headers(BODY, VENDOR_SECRET, webhook_id=f"b-{forged}", subscription=forged)
        assert receiver.receive(BODY, replay).status == 200
    assert len(seen) == 1


def test_one_event_id_under_two_subscriptions_is_handled_once_for_each(log: DeliveryLog) -> None:
    receiver = WebhookReceiver(secret_store=two_tenants(), deliveries=log)
    seen = recording(receiver)
    # Mallory knows her own secret, so she can sign a body that reuses Alice's event id, even
    # before Alice's webhook arrives. It lands in Mallory's namespace, as Mallory's event.
    assert receiver.receive(BODY, headers(BODY, OTHER_SECRET, webhook_id="m-1", subscription="PSUB2")).status == 202
    assert receiver.receive(BODY, headers(BODY, SECRET, webhook_id="a-1", subscription="PSUB1")).status == 202
    assert receiver.receive(BODY, headers(BODY, OTHER_SECRET, webhook_id="m-2", subscription="PSUB2")).status == 200
    assert receiver.receive(BODY, headers(BODY, SECRET, webhook_id="a-2", subscription="PSUB1")).status == 200
    assert [(e.owner_id, e.subscription_id, e.integration_id) for e in seen] == [
        ("mallory", "PSUB2", "int-m"),
        ("alice", "PSUB1", "int-a"),
    ]


def test_one_subscription_id_registered_by_two_owners_keeps_them_apart(log: DeliveryLog) -> None:
    """A tenant who registers another's subscription id only ever gets his own events."""
    store = MemoryWebhookSecretStore()
    store.register("PSUB1", SECRET, owner_id="alice")
    store.register("PSUB1", OTHER_SECRET, owner_id="mallory")
    receiver = WebhookReceiver(secret_store=store, deliveries=log)
    seen = recording(receiver)
    assert receiver.receive(BODY, headers(BODY, OTHER_SECRET, webhook_id="m")).status == 202
    assert receiver.receive(BODY, headers(BODY, SECRET, webhook_id="a")).status == 202
    assert [e.owner_id for e in seen] == ["mallory", "alice"]


@pytest.mark.parametrize(
    ("subscription", "secret"),
    [
        ("PSUB1", OTHER_SECRET),  # Mallory's signature, sent as Alice's subscription
        ("PSUB2", SECRET),  # Alice's signature, sent as Mallory's
        ("PSUB3", SECRET),  # a subscription nobody registered
        (None, SECRET),  # no subscription header at all
    ],
)
def test_forged_subscription_headers_verify_nothing(subscription: str | None, secret: str) -> None:
    receiver = WebhookReceiver(secret_store=two_tenants())
    seen = recording(receiver)
    with pytest.raises(SignatureMismatch):
        receiver.receive(BODY, headers(BODY, secret, webhook_id="w", subscription=subscription))
    assert seen == []


@pytest.mark.parametrize(
    "subscription",
    ["PSUB1\x00", "PSUB1\r\nX-Injected: 1", "PSUB\u00e91", "PSUB1\ud800", "P" * 256, "PSUB\t1"],
)
def test_a_malformed_subscription_header_is_a_400(subscription: str) -> None:
    receiver = WebhookReceiver(secret_store=two_tenants())
    with pytest.raises(WebhookError) as raised:
        receiver.receive(BODY, headers(BODY, SECRET, webhook_id="w", subscription=subscription))
    assert raised.value.status == 400 and SECRET not in str(raised.value)


def test_legacy_messages_deduplicate_on_the_message_id_per_extension(log: DeliveryLog) -> None:
    receiver = WebhookReceiver(legacy_token="legacy-token", deliveries=log)
    seen = recording(receiver)
    message = samples.v2_message(message_id="msg-1")
    body = encode({"messages": [message]})
    assert receiver.receive(body, {"X-Webhook-Id": "a"}, legacy_token="legacy-token").status == 202
    assert receiver.receive(body, {"X-Webhook-Id": "b"}, legacy_token="legacy-token").status == 200
    other_extension = encode({"messages": [{**message, "webhook": {"id": "PEXT2", "type": "webhook_reference"}}]})
    assert receiver.receive(other_extension, {}, legacy_token="legacy-token").status == 202
    assert len(seen) == 2


class Gate:
    """A delivery log that lets two requests reach ``begin`` together, to race the claim."""

    def __init__(self, inner: DeliveryLog) -> None:
        self.inner = inner
        self.barrier = threading.Barrier(2, timeout=30)

    def begin(self, key: str, *, now: float | None = None) -> Claim:
        self.barrier.wait()
        return self.inner.begin(key, now=now)

    def finish(self, key: str, *, now: float | None = None) -> None:
        self.inner.finish(key, now=now)

    def abandon(self, key: str) -> None:
        self.inner.abandon(key)

    def purge(self, older_than: float = 0, *, now: float | None = None) -> int:
        return 0


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_concurrent_deliveries_of_one_body_are_handled_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        log = SqlDeliveryLog(f"sqlite:///{tmp_path / 'race.db'}")
    else:
        log = SqlDeliveryLog(request.getfixturevalue("postgres_engine"), table_name=unique_table("pdc_race"))
    receiver = WebhookReceiver(secret_store=two_tenants(), deliveries=Gate(log))
    seen = recording(receiver)
    receipts: list[Receipt] = []
    errors: list[BaseException] = []

    def deliver(webhook_id: str) -> None:
        try:
            receipts.append(receiver.receive(BODY, headers(BODY, SECRET, webhook_id=webhook_id)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(f"wh-{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        assert len(seen) == 1, "exactly one of the two requests handled the event"
        assert sorted(r.status for r in receipts) in ([200, 202], [202, 503])
        with log.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(log.table)).scalar_one() == 1
    finally:
        if backend == "postgresql":
            log.drop_tables()
        else:
            log.engine.dispose()


def test_an_existing_delivery_table_keeps_working(tmp_path: Path) -> None:
    """The table earlier versions wrote (keyed on ``v3:<X-Webhook-Id>``) is used as it is."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE pdconnect_webhook_deliveries (webhook_id VARCHAR(255) PRIMARY KEY,"
                " began_at FLOAT NOT NULL, finished_at FLOAT)"
            )
        )
        conn.execute(
            sa.text("CREATE INDEX pdconnect_webhook_deliveries_began ON pdconnect_webhook_deliveries (began_at)")
        )
        conn.execute(sa.text("INSERT INTO pdconnect_webhook_deliveries VALUES ('v3:wh-1', 1.0, 2.0)"))
    first, again = SqlDeliveryLog(engine), SqlDeliveryLog(engine)  # idempotent: nothing to create twice
    receiver = WebhookReceiver(secrets=[SECRET], deliveries=first)
    seen = recording(receiver)
    assert receiver.receive(BODY, headers(BODY, SECRET, webhook_id="wh-1")).status == 202
    assert (
        WebhookReceiver(secrets=[SECRET], deliveries=again).receive(BODY, headers(BODY, SECRET, webhook_id="x")).status
        == 200
    )
    assert len(seen) == 1
    with engine.connect() as conn:
        keys = sorted(conn.execute(sa.text("SELECT webhook_id FROM pdconnect_webhook_deliveries")).scalars())
    assert keys[1] == "v3:wh-1" and keys[0].startswith("e1:") and len(keys[0]) == 67
    engine.dispose()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("v3", ("subscription", "a:b", None), "c"), ("v3", ("subscription", "a", None), "b:c")),
        (("v3", ("subscription", "PSUB1", "alice"), "e"), ("v3", ("subscription", "PSUB1", "mallory"), "e")),
        (("v3", ("subscription", "PSUB1", None), "e"), ("v3", ("subscription", "PSUB1", ""), "e")),
        (("v3", ("subscription", "PSUB1", None), "e"), ("v3", ("secret", "PSUB1"), "e")),
        (("v2", ("legacy", None), "e"), ("v1", ("legacy", None), "e")),
        (("v3", ("subscription", '"', None), "e"), ("v3", ("subscription", '\\"', None), "e")),
    ],
)
def test_delivery_keys_of_different_events_differ(
    first: tuple[str, tuple[str | None, ...], str], second: tuple[str, tuple[str | None, ...], str]
) -> None:
    assert delivery_key(*first) != delivery_key(*second)


parts = st.text(max_size=300)  # any code points, lone surrogates included


@given(
    a=st.tuples(parts, st.lists(st.none() | parts, max_size=3), parts),
    b=st.tuples(parts, st.lists(st.none() | parts, max_size=3), parts),
)
def test_delivery_keys_are_fixed_length_and_tell_triples_apart(
    a: tuple[str, list[str | None], str], b: tuple[str, list[str | None], str]
) -> None:
    key_a, key_b = delivery_key(a[0], a[1], a[2]), delivery_key(b[0], b[1], b[2])
    assert len(key_a) == 67 and key_a.isascii()
    assert (key_a == key_b) == (a == b)


header_values = st.none() | st.text(max_size=60)


@settings(max_examples=60)
@given(
    first=st.tuples(header_values, header_values), replays=st.lists(st.tuples(header_values, header_values), max_size=4)
)
def test_whatever_the_unsigned_headers_say_a_body_is_handled_at_most_once(
    first: tuple[str | None, str | None], replays: list[tuple[str | None, str | None]]
) -> None:
    receiver = WebhookReceiver(secret_store=two_tenants(), secrets=[VENDOR_SECRET])
    seen = recording(receiver)
    for webhook_id, subscription in [first, *replays]:
        request = {"X-PagerDuty-Signature": sign(VENDOR_SECRET, BODY)}
        if webhook_id is not None:
            request["X-Webhook-Id"] = webhook_id
        if subscription is not None:
            request["X-Webhook-Subscription"] = subscription
        try:
            status = receiver.receive(BODY, request).status
        except ReceiveError as exc:
            status = exc.status
        assert status in (200, 202, 400)
    assert len(seen) <= 1
    assert all(e.owner_id is None for e in seen), "a vendor-wide secret never names an owner"
