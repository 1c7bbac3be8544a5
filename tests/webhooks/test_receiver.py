"""The receiver: limits, signatures, legacy tokens, de-duplication, handlers and their failures."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.errors import (
    PayloadInvalid,
    PayloadTooLarge,
    ReceiveError,
    SignatureMismatch,
    SignatureMissing,
    Unauthorized,
)
from pdconnect.webhooks import (
    IncidentStateStore,
    MemoryWebhookSecretStore,
    Receipt,
    WebhookEvent,
    WebhookReceiver,
    sign,
)
from tests.webhooks import samples
from tests.webhooks.samples import OTHER_SECRET, SECRET, encode

BODY = encode(samples.v3("incident.acknowledged"))
#: Another event (PagerDuty's next webhook): another signed ``event.id``.
NEXT = encode(samples.v3("incident.acknowledged", event_id="01DEN4HPBQAPCFDGPPQGPNMAUD"))


def signed(
    body: bytes = BODY, secret: str = SECRET, *, webhook_id: str = "wh-1", subscription: str = "PSUB1"
) -> dict[str, str]:
    return {
        "X-PagerDuty-Signature": sign(secret, body),
        "X-Webhook-Id": webhook_id,
        "X-Webhook-Subscription": subscription,
        "Content-Type": "application/json",
    }


def test_a_signed_webhook_is_handled_once() -> None:
    receiver = WebhookReceiver(secrets=[SECRET])
    seen: list[WebhookEvent] = []
    receiver.handler(seen.append)
    receipt = receiver.receive(BODY, signed())
    assert receipt.status == 202 and receipt.body() == {"status": "accepted", "events": ["incident.acknowledged"]}
    assert [e.webhook_id for e in seen] == ["wh-1"] and seen[0].subscription_id == "PSUB1"
    again = receiver.receive(BODY, signed())
    assert (again.status, again.duplicate, again.body()) == (200, True, {"status": "duplicate"})
    assert len(seen) == 1, "a retry is never handled twice"


def test_handlers_by_type() -> None:
    receiver = WebhookReceiver(secrets=[SECRET])
    acks: list[str] = []
    resolves: list[str] = []
    receiver.handler(event_type="incident.acknowledged")(lambda e: acks.append(e.id))
    receiver.handler(event_type="incident.resolved")(lambda e: resolves.append(e.id))
    receiver.receive(BODY, signed())
    assert len(acks) == 1 and resolves == []


def test_a_registered_secret_says_whose_webhook_it_is() -> None:
    store = MemoryWebhookSecretStore()
    store.register("PSUB1", OTHER_SECRET, owner_id="org-9", integration_id="int-9")
    receiver = WebhookReceiver(secret_store=store, secrets=[SECRET])
    seen: list[WebhookEvent] = []
    receiver.handler(seen.append)
    receiver.receive(BODY, signed(secret=OTHER_SECRET))
    assert (seen[0].owner_id, seen[0].integration_id) == ("org-9", "int-9")
    receiver.receive(NEXT, signed(NEXT, secret=SECRET, webhook_id="wh-2"))
    assert (seen[1].owner_id, seen[1].integration_id) == (None, None), "the vendor-wide secret names no owner"


def test_another_subscriptions_secret_does_not_verify() -> None:
    store = MemoryWebhookSecretStore()
    store.register("PSUB1", SECRET, owner_id="org-1")
    store.register("PSUB2", OTHER_SECRET, owner_id="org-2")
    receiver = WebhookReceiver(secret_store=store)
    with pytest.raises(SignatureMismatch):
        receiver.receive(BODY, signed(secret=OTHER_SECRET, subscription="PSUB1"))
    with pytest.raises(SignatureMismatch):
        receiver.receive(BODY, signed(secret=SECRET, subscription="unknown"))


def test_rotation_accepts_old_and_new_secrets() -> None:
    store = MemoryWebhookSecretStore()
    store.register("PSUB1", SECRET)
    store.register("PSUB1", OTHER_SECRET)
    receiver = WebhookReceiver(secret_store=store)
    assert receiver.receive(BODY, signed(secret=SECRET)).status == 202
    assert receiver.receive(NEXT, signed(NEXT, secret=OTHER_SECRET, webhook_id="wh-2")).status == 202


def test_a_failing_handler_leaves_the_webhook_to_be_retried() -> None:
    receiver = WebhookReceiver(secrets=[SECRET])
    calls: list[str] = []

    def flaky(event: WebhookEvent) -> None:
        calls.append(event.id)
        if len(calls) == 1:
            raise RuntimeError("database down")

    receiver.handler(flaky)
    with pytest.raises(RuntimeError):
        receiver.receive(BODY, signed())
    assert receiver.receive(BODY, signed()).status == 202, "PagerDuty's retry is handled afresh"
    assert len(calls) == 2


def test_a_webhook_being_handled_elsewhere_gets_503() -> None:
    receiver = WebhookReceiver(secrets=[SECRET])
    meanwhile: list[Receipt] = []
    # While the first request's handler runs, PagerDuty's retry (or a replay) of the same event arrives.
    receiver.handler(lambda _: meanwhile.append(receiver.receive(BODY, signed(webhook_id="wh-retry"))))
    assert receiver.receive(BODY, signed()).status == 202
    (receipt,) = meanwhile
    assert (receipt.status, receipt.in_progress) == (503, True)


def test_without_a_webhook_id_the_event_id_deduplicates() -> None:
    receiver = WebhookReceiver(secrets=[SECRET])
    headers = signed()
    del headers["X-Webhook-Id"]
    assert receiver.receive(BODY, headers).status == 202
    assert receiver.receive(BODY, headers).status == 200


def test_headers_are_read_whatever_their_case() -> None:
    receiver = WebhookReceiver(secrets=[SECRET])
    headers = {k.lower(): v for k, v in signed().items()}
    assert receiver.receive(BODY, headers).status == 202


def test_incident_states_are_kept(tmp_path: Path) -> None:
    states = IncidentStateStore(f"sqlite:///{tmp_path / 'i.db'}")
    receiver = WebhookReceiver(secrets=[SECRET], incidents=states)
    receiver.receive(BODY, signed())
    found = states.by_dedup_key("monitor/42")
    assert found is not None and found.describe() == "Acknowledged by Alice Responder"
    states.engine.dispose()


def test_legacy_webhooks_need_the_token() -> None:
    legacy = encode({"messages": [samples.v2_message()]})
    closed = WebhookReceiver(secrets=[SECRET])
    with pytest.raises(SignatureMissing):
        closed.receive(legacy, {"User-Agent": "PagerDuty-Webhook/V2.0"}, legacy_token="anything")
    receiver = WebhookReceiver(legacy_token="t0ken-for-legacy")
    with pytest.raises(SignatureMissing):
        receiver.receive(legacy, {})
    with pytest.raises(Unauthorized):
        receiver.receive(legacy, {}, legacy_token="wrong")
    seen: list[WebhookEvent] = []
    receiver.handler(seen.append)
    assert receiver.receive(legacy, {}, legacy_token="t0ken-for-legacy").status == 202
    assert receiver.receive(legacy, {}, legacy_token="t0ken-for-legacy").status == 200
    assert [e.event_type for e in seen] == ["incident.acknowledged"]


def test_a_signed_legacy_body_is_not_a_v3_event() -> None:
    legacy = encode({"messages": [samples.v2_message()]})
    with pytest.raises(PayloadInvalid):
        WebhookReceiver(secrets=[SECRET]).receive(legacy, signed(legacy))


def test_the_size_limit() -> None:
    receiver = WebhookReceiver(secrets=[SECRET], max_body_bytes=1000)
    with pytest.raises(PayloadTooLarge) as raised:
        receiver.check_length(1001)
    assert raised.value.status == 413
    receiver.check_length(None)
    big = encode(samples.v3(data={**samples.incident_data(), "title": "x" * 2000}))
    with pytest.raises(PayloadTooLarge):
        receiver.receive(big, signed(big))


def test_one_string_is_not_a_list_of_secrets() -> None:
    with pytest.raises(TypeError):
        WebhookReceiver(secrets=SECRET)  # type: ignore[arg-type]


def test_nothing_secret_in_the_repr_or_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    receiver = WebhookReceiver(secrets=[SECRET], legacy_token="t0ken-for-legacy")
    with caplog.at_level(logging.DEBUG, logger="pdconnect"):
        receiver.receive(BODY, signed())
    assert SECRET not in repr(receiver) and "t0ken" not in repr(receiver)
    assert "incident.acknowledged" in caplog.text
    assert SECRET not in caplog.text and sign(SECRET, BODY)[3:] not in caplog.text
    record = next(r for r in caplog.records if hasattr(r, "pdconnect_webhook"))
    assert record.pdconnect_webhook["incident_id"] == "PINC001"


BAD_REQUESTS = [
    (BODY, {}, SignatureMissing, 400),
    (BODY, {"X-PagerDuty-Signature": ""}, SignatureMissing, 400),
    (BODY, {"X-PagerDuty-Signature": "v1=nothex"}, SignatureMissing, 400),
    (BODY, {"X-PagerDuty-Signature": sign(OTHER_SECRET, BODY)}, SignatureMismatch, 403),
    (b"", {"X-PagerDuty-Signature": sign(SECRET, b"")}, PayloadInvalid, 400),
    (b"{}", {"X-PagerDuty-Signature": sign(SECRET, b"{}")}, PayloadInvalid, 400),
    (b"not json", {"X-PagerDuty-Signature": sign(SECRET, b"not json")}, PayloadInvalid, 400),
]


@pytest.mark.parametrize(("body", "headers", "error", "status"), BAD_REQUESTS)
def test_bad_requests(body: bytes, headers: dict[str, str], error: type[ReceiveError], status: int) -> None:
    with pytest.raises(error) as raised:
        WebhookReceiver(secrets=[SECRET]).receive(body, headers)
    assert raised.value.status == status


@given(
    body=st.binary(max_size=400), signature=st.none() | st.text(max_size=100), token=st.none() | st.text(max_size=20)
)
def test_any_request_is_handled_or_refused_with_a_4xx(body: bytes, signature: str | None, token: str | None) -> None:
    receiver = WebhookReceiver(secrets=[SECRET], legacy_token="t0ken")
    headers = {} if signature is None else {"X-PagerDuty-Signature": signature}
    status = _answer(lambda: receiver.receive(body, headers, legacy_token=token).status)
    assert status in (200, 202) or 400 <= status < 500


@given(body=st.binary(max_size=400))
def test_any_signed_body_is_handled_or_refused_with_a_4xx(body: bytes) -> None:
    status = _answer(lambda: WebhookReceiver(secrets=[SECRET]).receive(body, signed(body)).status)
    assert status in (202, 400)


def _answer(receive: Callable[[], int]) -> int:
    """The status a request gets: the receipt's, or the typed error's."""
    try:
        return receive()
    except ReceiveError as exc:
        return exc.status


@pytest.mark.parametrize(
    "token", ["\ud800", "t0ken\udfff", "\x00", "t0ken-for-legacy ", "T0KEN-FOR-LEGACY", "é" * 5000]
)
def test_a_wrong_legacy_token_of_any_shape_is_a_401(token: str) -> None:
    """A token a framework hands over undecoded (a lone surrogate) was a UnicodeEncodeError: a 500."""
    receiver = WebhookReceiver(legacy_token="t0ken-for-legacy")
    with pytest.raises(Unauthorized) as raised:
        receiver.receive(encode({"messages": [samples.v2_message()]}), {}, legacy_token=token)
    assert "t0ken" not in str(raised.value)


def test_the_legacy_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("pdconnect.webhooks.receiver.hmac.compare_digest", spy)
    receiver = WebhookReceiver(legacy_token="t0ken-for-legacy")
    with pytest.raises(Unauthorized):
        receiver.receive(encode({"messages": [samples.v2_message()]}), {}, legacy_token="t0ken-for-legacx")
    assert calls == [(b"t0ken-for-legacx", b"t0ken-for-legacy")]
