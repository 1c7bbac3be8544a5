"""An outside attacker's second look at the webhook receiver (issue 9).

The attacker has captured one real delivery (body and headers: from a proxy's log, a
misrouted mirror, a TLS-terminating middlebox) and re-sends it, altered wherever the
signature allows: fewer signatures, another subscription header, another ``X-Webhook-Id``.
Whatever is altered, one signed event is handled at most once.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdconnect.errors import ReceiveError, WebhookError
from pdconnect.webhooks import (
    DeliveryLog,
    MemoryDeliveryLog,
    MemoryWebhookSecretStore,
    WebhookEvent,
    WebhookReceiver,
    sign,
)
from pdconnect.webhooks.deliveries import KEEP_FOR
from tests.webhooks import samples
from tests.webhooks.delivery_logs import delivery_log_fixture
from tests.webhooks.samples import encode

BODY = encode(samples.v3("incident.acknowledged"))
OLD = "whsec-old-secret-before-rotation-1"
NEW = "whsec-new-secret-after-rotation-22"


log = delivery_log_fixture("attack")


def recording(receiver: WebhookReceiver) -> list[WebhookEvent]:
    seen: list[WebhookEvent] = []
    receiver.handler(seen.append)
    return seen


def signature(*secrets: str) -> str:
    return ",".join(sign(secret, BODY) for secret in secrets)


def status_of(receiver: WebhookReceiver, headers: dict[str, str]) -> int:
    try:
        return receiver.receive(BODY, headers).status
    except ReceiveError as exc:
        return exc.status


# Each configuration is one a vendor really runs: PagerDuty rotating a subscription's secret
# (it then signs with both), or a move from a vendor-wide secret to registered ones.
def vendor_wide_rotation() -> WebhookReceiver:
    return WebhookReceiver(secrets=[OLD, NEW])


def registered_rotation() -> WebhookReceiver:
    store = MemoryWebhookSecretStore()
    store.register("PSUB1", OLD, owner_id="alice", integration_id="int-a")
    store.register("PSUB1", NEW, owner_id="alice", integration_id="int-a")
    return WebhookReceiver(secret_store=store)


def migration_same_secret() -> WebhookReceiver:
    """The secret is in PDCONNECT_WEBHOOK_SECRETS and registered for its owner, during a move."""
    store = MemoryWebhookSecretStore()
    store.register("PSUB1", OLD, owner_id="alice", integration_id="int-a")
    return WebhookReceiver(secrets=[OLD], secret_store=store)


def migration_while_rotating() -> WebhookReceiver:
    """The old secret is vendor-wide, the new one registered, and PagerDuty signs with both."""
    store = MemoryWebhookSecretStore()
    store.register("PSUB1", NEW, owner_id="alice", integration_id="int-a")
    return WebhookReceiver(secrets=[OLD], secret_store=store)


CONFIGURATIONS = {
    "vendor-wide-rotation": (vendor_wide_rotation, (OLD, NEW)),
    "registered-rotation": (registered_rotation, (OLD, NEW)),
    "migration-same-secret": (migration_same_secret, (OLD,)),
    "migration-while-rotating": (migration_while_rotating, (OLD, NEW)),
}

# (what the original delivery carried, what the replay carries): signatures and subscription header.
REPLAYS = [
    ("both, then only the old", (OLD, NEW), "PSUB1", (OLD,), "PSUB1"),
    ("both, then only the new", (OLD, NEW), "PSUB1", (NEW,), "PSUB1"),
    ("both, then swapped", (OLD, NEW), "PSUB1", (NEW, OLD), "PSUB1"),
    ("both, then only the old, no subscription", (OLD, NEW), "PSUB1", (OLD,), None),
    ("both, then only the new, no subscription", (OLD, NEW), "PSUB1", (NEW,), None),
    ("both, then only the old, another subscription", (OLD, NEW), "PSUB1", (OLD,), "PSUB9"),
    ("old, then the same without its subscription header", (OLD,), "PSUB1", (OLD,), None),
    ("old, then under another subscription header", (OLD,), "PSUB1", (OLD,), "PSUB2"),
    ("old without subscription, then with it", (OLD,), None, (OLD,), "PSUB1"),
]


@pytest.mark.parametrize("configuration", list(CONFIGURATIONS))
@pytest.mark.parametrize(
    ("first", "first_subscription", "replay", "replay_subscription"), [pytest.param(*r[1:], id=r[0]) for r in REPLAYS]
)
def test_a_captured_delivery_altered_where_the_signature_allows_is_handled_once(
    log: DeliveryLog,
    configuration: str,
    first: tuple[str, ...],
    first_subscription: str | None,
    replay: tuple[str, ...],
    replay_subscription: str | None,
) -> None:
    make, signing = CONFIGURATIONS[configuration]
    first = tuple(s for s in first if s in signing)
    replay = tuple(s for s in replay if s in signing)
    receiver = make()
    receiver.deliveries = log
    seen = recording(receiver)
    original = {"X-PagerDuty-Signature": signature(*first), "X-Webhook-Id": "wh-original"}
    if first_subscription is not None:
        original["X-Webhook-Subscription"] = first_subscription
    if status_of(receiver, original) != 202:
        pytest.skip("this configuration does not accept that original delivery")
    altered = {"X-PagerDuty-Signature": signature(*replay), "X-Webhook-Id": "wh-replayed"}
    if replay_subscription is not None:
        altered["X-Webhook-Subscription"] = replay_subscription
    assert status_of(receiver, altered) in (200, 400, 403)
    assert len(seen) == 1, [(e.owner_id, e.subscription_id) for e in seen]


def test_two_owners_still_get_one_event_id_each() -> None:
    """Claiming every namespace that verifies must not merge two tenants' deliveries."""
    store = MemoryWebhookSecretStore()
    store.register("PSUB1", OLD, owner_id="alice")
    store.register("PSUB2", NEW, owner_id="bob")
    receiver = WebhookReceiver(secret_store=store)
    seen = recording(receiver)
    assert status_of(receiver, {"X-PagerDuty-Signature": signature(OLD), "X-Webhook-Subscription": "PSUB1"}) == 202
    assert status_of(receiver, {"X-PagerDuty-Signature": signature(NEW), "X-Webhook-Subscription": "PSUB2"}) == 202
    assert [e.owner_id for e in seen] == ["alice", "bob"]


def test_an_abandoned_delivery_releases_every_namespace_it_claimed() -> None:
    """A handler that fails leaves nothing claimed, so PagerDuty's retry (either signature) is handled."""
    receiver = vendor_wide_rotation()
    calls: list[WebhookEvent] = []

    def flaky(event: WebhookEvent) -> None:
        calls.append(event)
        if len(calls) == 1:
            raise RuntimeError("the vendor's database hiccupped")

    receiver.handler(flaky)
    with pytest.raises(RuntimeError):
        receiver.receive(BODY, {"X-PagerDuty-Signature": signature(OLD, NEW)})
    assert status_of(receiver, {"X-PagerDuty-Signature": signature(NEW)}) == 202
    assert status_of(receiver, {"X-PagerDuty-Signature": signature(OLD)}) == 200
    assert len(calls) == 2


subscriptions = st.none() | st.sampled_from(["PSUB1", "PSUB2", "psub1", " PSUB1"])


@settings(max_examples=80, deadline=None)
@given(
    configuration=st.sampled_from(list(CONFIGURATIONS)),
    replays=st.lists(
        st.tuples(st.lists(st.sampled_from([OLD, NEW, "whsec-nobody-knows-this"]), max_size=3), subscriptions),
        max_size=6,
    ),
)
def test_whatever_the_attacker_keeps_of_a_captured_delivery_it_is_handled_at_most_once(
    configuration: str, replays: list[tuple[list[str], str | None]]
) -> None:
    """The attacker holds one real delivery (PagerDuty always names its subscription) and re-sends
    any subset of its signatures, under any subscription header."""
    make, signing = CONFIGURATIONS[configuration]
    receiver = make()
    seen = recording(receiver)
    assert status_of(receiver, {"X-PagerDuty-Signature": signature(*signing), "X-Webhook-Subscription": "PSUB1"}) == 202
    for secrets, subscription in replays:
        kept = [s for s in secrets if s in signing or s not in (OLD, NEW)]  # cannot sign with what it lacks
        headers = {"X-PagerDuty-Signature": signature(*kept)}
        if subscription is not None:
            headers["X-Webhook-Subscription"] = subscription
        assert status_of(receiver, headers) in (200, 202, 400, 403)
    assert len(seen) <= 1, [(e.owner_id, e.subscription_id) for e in seen]


@pytest.mark.parametrize(
    ("header_secrets", "configured", "expected"),
    [
        ((OLD,), [OLD, NEW], [0]),
        ((NEW,), [OLD, NEW], [1]),
        ((OLD, NEW), [OLD, NEW], [0, 1]),
        ((NEW, OLD), [NEW, "x", OLD], [0, 2]),
        ((OLD,), [OLD, OLD], [0, 1]),
    ],
)
def test_matching_secrets_names_every_secret_that_signed(
    header_secrets: tuple[str, ...], configured: list[str], expected: list[int]
) -> None:
    from pdconnect.webhooks.signatures import matching_secrets

    assert matching_secrets(BODY, signature(*header_secrets), configured) == expected


# -- a replay after the delivery log forgot the event ------------------------------------------

HOUR = 3600.0


def at(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_a_replay_after_the_log_forgot_the_event_is_refused(log: DeliveryLog) -> None:
    """The delivery log keeps events 72 hours; a body replayed later must not be handled again."""
    start = time.time()
    body = encode(samples.v3(occurred_at=at(start - 60)))
    receiver = WebhookReceiver(secrets=[OLD], deliveries=log)
    seen = recording(receiver)
    headers = {"X-PagerDuty-Signature": sign(OLD, body), "X-Webhook-Subscription": "PSUB1"}
    assert receiver.receive(body, headers, now=start).status == 202
    later = start + KEEP_FOR + HOUR
    assert log.purge(now=later) == 1  # what the receiver does every hour
    with pytest.raises(WebhookError) as refused:
        receiver.receive(body, {**headers, "X-Webhook-Id": "fresh"}, now=later)
    assert refused.value.status == 400 and "72 hours" in str(refused.value)
    assert OLD not in str(refused.value) and sign(OLD, body)[3:] not in str(refused.value)
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("age", "accepted"),
    [
        (0.0, True),
        (-HOUR, True),  # a clock a little behind PagerDuty's
        (48 * HOUR, True),  # PagerDuty's last retry
        (KEEP_FOR - 1, True),
        (KEEP_FOR + 1, False),
        (365 * 24 * HOUR, False),
        (60 * 365 * 24 * HOUR, False),
    ],
)
def test_only_events_the_log_still_remembers_are_handled(age: float, accepted: bool) -> None:
    now = time.time()
    body = encode(samples.v3(occurred_at=at(now - age)))
    receiver = WebhookReceiver(secrets=[OLD])
    seen = recording(receiver)
    headers = {"X-PagerDuty-Signature": sign(OLD, body)}
    if accepted:
        assert receiver.receive(body, headers, now=now).status == 202
    else:
        with pytest.raises(WebhookError):
            receiver.receive(body, headers, now=now)
    assert len(seen) == int(accepted)


@pytest.mark.parametrize("occurred_at", [None, "", "yesterday", 5, "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_an_event_without_a_readable_time_is_judged_by_its_id_alone(occurred_at: object) -> None:
    """PagerDuty always sends occurred_at; what has none cannot be dated, so only its id counts."""
    event = samples.v3()
    event["event"]["occurred_at"] = occurred_at
    body = encode(event)
    receiver = WebhookReceiver(secrets=[OLD])
    seen = recording(receiver)
    status = status_of_body(receiver, body)
    if occurred_at == "0001-01-01T00:00:00Z":
        assert status == 400
    else:
        assert status == 202 and status_of_body(receiver, body) == 200
    assert len(seen) == int(status == 202)


def status_of_body(receiver: WebhookReceiver, body: bytes) -> int:
    try:
        return receiver.receive(body, {"X-PagerDuty-Signature": sign(OLD, body)}).status
    except ReceiveError as exc:
        return exc.status


@pytest.mark.parametrize("max_event_age", [float("nan"), float("inf"), -1.0, 0.0, KEEP_FOR + 1, "72h", True])
def test_the_event_age_limit_is_checked_where_it_is_read(max_event_age: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        WebhookReceiver(secrets=[OLD], max_event_age=max_event_age)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(age=st.floats(min_value=-10 * HOUR, max_value=10 * KEEP_FOR), replay_after=st.floats(0, 10 * KEEP_FOR))
def test_whenever_a_body_is_replayed_it_is_handled_at_most_once(age: float, replay_after: float) -> None:
    start = 1_900_000_000.0
    body = encode(samples.v3(occurred_at=at(start - age)))
    log = MemoryDeliveryLog()
    receiver = WebhookReceiver(secrets=[OLD], deliveries=log)
    seen = recording(receiver)
    headers = {"X-PagerDuty-Signature": sign(OLD, body)}
    for moment in (start, start + replay_after):
        log.purge(now=moment)
        try:
            status = receiver.receive(body, headers, now=moment).status
        except WebhookError as exc:
            status = exc.status
        assert status in (200, 202, 400)
    assert len(seen) <= 1


# -- wrong types at the framework-free boundary -------------------------------------------------

SIGNED = sign(OLD, BODY)


@pytest.mark.parametrize(
    "headers",
    [
        {"X-PagerDuty-Signature": SIGNED.encode()},  # raw ASGI headers are bytes
        {"X-PagerDuty-Signature": 5},
        {"X-PagerDuty-Signature": [SIGNED]},
        {"X-PagerDuty-Signature": SIGNED, "X-Webhook-Subscription": b"PSUB1"},
        {"X-PagerDuty-Signature": SIGNED, "X-Webhook-Subscription": ["PSUB1"]},
        {"X-PagerDuty-Signature": SIGNED, "X-Webhook-Id": b"wh-1"},
        {1: "x", None: "y", b"X-PagerDuty-Signature": SIGNED},
        {"x-pagerduty-signature": SIGNED.encode()},
    ],
    ids=repr,
)
def test_header_values_of_the_wrong_type_are_a_typed_4xx(headers: dict[Any, Any]) -> None:
    store = MemoryWebhookSecretStore()
    store.register("PSUB1", NEW, owner_id="alice")
    receiver = WebhookReceiver(secrets=[OLD], secret_store=store, legacy_token="legacy-token-123")
    message = ""
    try:
        status = receiver.receive(BODY, headers).status
    except ReceiveError as exc:
        status, message = exc.status, str(exc)
    assert status in (202, 400, 401, 403)
    assert OLD not in message and SIGNED not in message


@pytest.mark.parametrize("token", [b"legacy-token-123", 5, ["legacy-token-123"], "legacy-token-123\ud800", ""])
def test_a_legacy_token_of_the_wrong_type_is_a_401(token: object) -> None:
    receiver = WebhookReceiver(legacy_token="legacy-token-123")
    body = encode({"messages": [samples.v2_message()]})
    with pytest.raises(ReceiveError) as refused:
        receiver.receive(body, {}, legacy_token=token)  # type: ignore[arg-type]
    assert refused.value.status == 401 and "legacy-token-123" not in str(refused.value)


@pytest.mark.parametrize("body", [BODY.decode(), None, 5, [BODY]])
def test_a_body_that_is_not_bytes_is_a_type_error_that_says_so(body: object) -> None:
    with pytest.raises(TypeError, match="raw bytes"):
        WebhookReceiver(secrets=[OLD]).receive(body, {"X-PagerDuty-Signature": SIGNED})  # type: ignore[arg-type]


@pytest.mark.parametrize("body", [bytearray(BODY), memoryview(BODY)])
def test_bytes_like_bodies_are_read(body: bytes) -> None:
    assert WebhookReceiver(secrets=[OLD]).receive(body, {"X-PagerDuty-Signature": SIGNED}).status == 202


@pytest.mark.parametrize(
    "settings_",
    [
        {"secrets": [5]},
        {"secrets": [b"whsec"]},
        {"secrets": ["whsec\ud800"]},
        {"secrets": ["x" * 100_000]},
        {"secrets": "whsec"},
        {"legacy_token": 5},
        {"legacy_token": b"token"},
        {"legacy_token": "token\ud800"},
        {"max_body_bytes": float("nan")},
        {"max_body_bytes": -1},
        {"max_body_bytes": 0},
        {"max_body_bytes": "512"},
        {"max_body_bytes": None},
        {"max_body_bytes": True},
    ],
    ids=repr,
)
def test_bad_settings_are_refused_when_the_receiver_is_made(settings_: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError)) as refused:
        WebhookReceiver(**settings_)
    assert "whsec" not in str(refused.value) and "token" not in str(refused.value).replace("legacy_token", "")


header_values = st.one_of(
    st.text(max_size=80), st.binary(max_size=80), st.integers(), st.none(), st.lists(st.text(max_size=5), max_size=2)
)
header_names = st.sampled_from(
    ["X-PagerDuty-Signature", "x-pagerduty-signature", "X-Webhook-Subscription", "X-Webhook-Id", "Other"]
)


@settings(max_examples=150, deadline=None)
@given(
    headers=st.dictionaries(header_names | st.integers() | st.binary(max_size=5), header_values, max_size=5),
    signed=st.booleans(),
)
def test_any_headers_give_a_receipt_or_a_typed_4xx(headers: dict[Any, Any], signed: bool) -> None:
    if signed:
        headers["X-PagerDuty-Signature"] = SIGNED
    receiver = WebhookReceiver(secrets=[OLD], legacy_token="legacy-token-123")
    try:
        status = receiver.receive(BODY, headers).status
    except ReceiveError as exc:
        status = exc.status
    assert status in (200, 202, 400, 401, 403)
