from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect import (
    AlertEvent,
    ChangeEvent,
    EventsApi,
    LegacyEvent,
    Region,
    RetryPolicy,
    Sender,
    integration_from_key,
)
from pdconnect.errors import (
    ConfigError,
    DeliveryFailed,
    EventRejected,
    EventValidationError,
    InvalidRoutingKey,
    RateLimited,
)
from pdconnect.sender import ALERT_PATH, CHANGE_PATH, LEGACY_PATH
from pdconnect.transport import HttpResponse, TransportError
from tests.conftest import RULESET_KEY, SERVICE_KEY, VENDOR_KEY, FakeClock
from tests.endpoint import recording_endpoint
from tests.openapi import assert_valid_request

US = "https://events.pagerduty.com"
EU = "https://events.eu.pagerduty.com"
ACCEPTED = {"status": "success", "message": "Event processed", "dedup_key": "k"}
INVALID = {"status": "invalid event", "message": "Event object is invalid", "errors": ["severity is invalid"]}


class Sleeper:
    """Records waits instead of sleeping, and moves the fake clock by them."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)


@pytest.fixture
def sleeper(clock: FakeClock) -> Sleeper:
    return Sleeper(clock)


@pytest.fixture
def sender(sleeper: Sleeper, clock: FakeClock) -> Iterator[Sender]:
    with Sender(
        client="Acme Monitoring",
        client_url="https://acme.example",
        vendor_key=VENDOR_KEY,
        retry=RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=8.0, deadline=60.0),
        sleep=sleeper,
        clock=clock,
        rng=random.Random(1),
    ) as made:
        yield made


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def _trigger(**kwargs: Any) -> AlertEvent:
    return AlertEvent.trigger("CPU high on web-1", source="web-1", severity="critical", **kwargs)


def _sent(call: Any) -> dict[str, Any]:
    return json.loads(call.request.body)  # type: ignore[no-any-return]


# -- the status table ------------------------------------------------------------------------

STATUS_TABLE = [
    # status, api, outcome, attempts
    (202, EventsApi.V2, "delivered", 1),
    (200, EventsApi.V1, "delivered", 1),
    (400, EventsApi.V2, "rejected", 1),
    (400, EventsApi.V1, "rejected", 1),
    (401, EventsApi.V2, "rejected", 1),
    (403, EventsApi.V2, "rejected", 1),
    (403, EventsApi.V1, "limited", 2),
    (404, EventsApi.V2, "rejected", 1),
    (408, EventsApi.V2, "failed", 3),
    (413, EventsApi.V2, "rejected", 1),
    (429, EventsApi.V2, "limited", 2),
    (429, EventsApi.V1, "limited", 2),
    (500, EventsApi.V2, "failed", 3),
    (502, EventsApi.V2, "failed", 3),
    (503, EventsApi.V1, "failed", 3),
    (504, EventsApi.V2, "failed", 3),
]


@pytest.mark.parametrize(("status", "api", "outcome", "attempts"), STATUS_TABLE)
def test_every_status_code(
    sender: Sender,
    mocked: responses.RequestsMock,
    sleeper: Sleeper,
    status: int,
    api: EventsApi,
    outcome: str,
    attempts: int,
) -> None:
    integration = integration_from_key(SERVICE_KEY, owner_id="o", events_api=api)
    url = US + (ALERT_PATH if api is EventsApi.V2 else LEGACY_PATH)
    body = ACCEPTED if status < 300 else INVALID if status == 400 else {}
    mocked.add(responses.POST, url, json=body, status=status)
    if outcome == "delivered":
        result = sender.send(integration, _trigger())
        assert (result.status, result.attempts) == (status, attempts)
    elif outcome == "rejected":
        with pytest.raises(EventRejected) as rejected:
            sender.send(integration, _trigger())
        assert (rejected.value.status, rejected.value.attempts) == (status, attempts)
    elif outcome == "limited":
        # 30-36 s per rate-limit wait: one fits the 60 s deadline, a second does not.
        with pytest.raises(RateLimited) as limited:
            sender.send(integration, _trigger())
        assert (limited.value.status, limited.value.attempts) == (status, attempts)
    else:
        with pytest.raises(DeliveryFailed) as failed:
            sender.send(integration, _trigger())
        assert not isinstance(failed.value, RateLimited)
        assert (failed.value.status, failed.value.attempts) == (status, attempts)
    assert len(mocked.calls) == attempts
    assert len(sleeper.waits) == attempts - 1


def test_retries_then_delivers_with_the_same_body(sender: Sender, mocked: responses.RequestsMock) -> None:
    mocked.add(responses.POST, US + ALERT_PATH, status=429, headers={"Retry-After": "1"})
    mocked.add(responses.POST, US + ALERT_PATH, json={"status": "error"}, status=503)
    mocked.add(responses.POST, US + ALERT_PATH, json=ACCEPTED, status=202)
    result = sender.send(SERVICE_KEY, _trigger())
    assert result.attempts == 3
    bodies = [call.request.body for call in mocked.calls]
    assert bodies[0] == bodies[1] == bodies[2], "the generated dedup key is stable across retries"
    assert result.dedup_key == _sent(mocked.calls[0])["dedup_key"]


def test_rejection_carries_pagerdutys_message_and_errors(sender: Sender, mocked: responses.RequestsMock) -> None:
    mocked.add(responses.POST, US + ALERT_PATH, json=INVALID, status=400)
    with pytest.raises(EventRejected) as info:
        sender.send(SERVICE_KEY, _trigger())
    assert info.value.pagerduty_message == "Event object is invalid"
    assert info.value.errors == ("severity is invalid",)
    assert "Event object is invalid: severity is invalid" in str(info.value)


def test_a_server_echoing_the_key_does_not_leak_it(sender: Sender, mocked: responses.RequestsMock) -> None:
    echo = {
        "status": "invalid event",
        "message": f"bad key {SERVICE_KEY}",
        "errors": [f"routing_key {SERVICE_KEY} unknown"],
    }
    mocked.add(responses.POST, US + ALERT_PATH, json=echo, status=400)
    with pytest.raises(EventRejected) as info:
        sender.send(SERVICE_KEY, _trigger())
    assert SERVICE_KEY not in str(info.value)
    assert "****d1a6" in str(info.value)


def test_redirects_are_not_followed(sender: Sender, mocked: responses.RequestsMock) -> None:
    mocked.add(responses.POST, US + ALERT_PATH, status=302, headers={"Location": "https://elsewhere.example/x"})
    mocked.add(responses.POST, "https://elsewhere.example/x", status=202, json=ACCEPTED)
    with pytest.raises(EventRejected) as info:
        sender.send(SERVICE_KEY, _trigger())
    assert info.value.status == 302
    assert [call.request.url for call in mocked.calls] == [US + ALERT_PATH]


# -- waiting ---------------------------------------------------------------------------------


def test_retry_after_is_honoured(mocked: responses.RequestsMock, sleeper: Sleeper, clock: FakeClock) -> None:
    mocked.add(responses.POST, US + ALERT_PATH, status=429, headers={"Retry-After": "7"})
    mocked.add(responses.POST, US + ALERT_PATH, status=503, headers={"Retry-After": "2"})
    mocked.add(responses.POST, US + ALERT_PATH, json=ACCEPTED, status=202)
    policy = RetryPolicy(max_attempts=3, base_delay=1.0, deadline=60.0, rate_limit_delay=5.0)
    Sender(retry=policy, sleep=sleeper, clock=clock, rng=random.Random(1)).send(SERVICE_KEY, _trigger())
    assert sleeper.waits == [7.0, 2.0], "both longer than the rate-limit floor and the backoff"


def test_retry_after_longer_than_the_per_wait_cap_is_still_honoured(
    sender: Sender, mocked: responses.RequestsMock, sleeper: Sleeper
) -> None:
    mocked.add(responses.POST, US + ALERT_PATH, status=429, headers={"Retry-After": "30"})
    mocked.add(responses.POST, US + ALERT_PATH, json=ACCEPTED, status=202)
    sender.send(SERVICE_KEY, _trigger())
    assert sleeper.waits == [30.0]


def test_retry_after_past_the_deadline_gives_up_at_once(
    sender: Sender, mocked: responses.RequestsMock, sleeper: Sleeper
) -> None:
    mocked.add(responses.POST, US + ALERT_PATH, status=429, headers={"Retry-After": "3600"})
    before = datetime.now(UTC)
    with pytest.raises(RateLimited, match="deadline") as info:
        sender.send(SERVICE_KEY, _trigger())
    after = datetime.now(UTC)
    assert info.value.retry_after == 3600.0
    assert before + timedelta(seconds=3600) <= info.value.retry_at <= after + timedelta(seconds=3600)
    assert info.value.retry_at.tzinfo is not None
    assert info.value.attempts == 1
    assert sleeper.waits == []


def test_a_503_retry_after_past_the_deadline_is_not_a_rate_limit(
    sender: Sender, mocked: responses.RequestsMock, sleeper: Sleeper
) -> None:
    mocked.add(responses.POST, US + ALERT_PATH, status=503, headers={"Retry-After": "3600"})
    with pytest.raises(DeliveryFailed, match="deadline") as info:
        sender.send(SERVICE_KEY, _trigger())
    assert not isinstance(info.value, RateLimited)
    assert info.value.retry_after == 3600.0


# -- rate limits -----------------------------------------------------------------------------

#: What the Flask extension's inline sender uses: a web request cannot wait minutes.
INLINE = RetryPolicy(max_attempts=3, deadline=20.0)


def test_a_bare_429_is_not_retried_within_two_seconds(
    mocked: responses.RequestsMock, sleeper: Sleeper, clock: FakeClock
) -> None:
    # Issue 9: the inline sender retried a 429 twice after ~0.5 s and ~1 s, and gave up.
    mocked.add(responses.POST, US + ALERT_PATH, status=429)
    sender = Sender(retry=INLINE, sleep=sleeper, clock=clock, rng=random.Random(5))
    with pytest.raises(RateLimited) as info:
        sender.send(SERVICE_KEY, _trigger())
    assert len(mocked.calls) == 1, "PagerDuty asks for tens of seconds; the send fails fast instead"
    assert sleeper.waits == []
    assert 30.0 <= info.value.retry_after <= 36.0
    assert info.value.retry_at > datetime.now(UTC) + timedelta(seconds=29)
    assert SERVICE_KEY not in str(info.value)


def test_a_bare_429_is_waited_out_when_the_deadline_allows(
    mocked: responses.RequestsMock, sleeper: Sleeper, clock: FakeClock
) -> None:
    mocked.add(responses.POST, US + ALERT_PATH, status=429)
    mocked.add(responses.POST, US + ALERT_PATH, json=ACCEPTED, status=202)
    sender = Sender(sleep=sleeper, clock=clock, rng=random.Random(5))  # default: 120 s deadline
    assert sender.send(SERVICE_KEY, _trigger()).attempts == 2
    assert len(sleeper.waits) == 1
    assert 30.0 <= sleeper.waits[0] <= 36.0


def test_rate_limited_until_the_attempts_run_out(
    mocked: responses.RequestsMock, sleeper: Sleeper, clock: FakeClock
) -> None:
    mocked.add(responses.POST, US + ALERT_PATH, status=429, headers={"Retry-After": "2"})
    sender = Sender(retry=RetryPolicy(max_attempts=3, deadline=60, rate_limit_delay=1), sleep=sleeper, clock=clock)
    with pytest.raises(RateLimited, match="3 attempts") as info:
        sender.send(SERVICE_KEY, _trigger())
    assert info.value.attempts == 3
    assert info.value.retry_after == 2.0
    assert sleeper.waits == [2.0, 2.0]


def test_the_legacy_apis_403_is_its_rate_limit(
    mocked: responses.RequestsMock, sleeper: Sleeper, clock: FakeClock
) -> None:
    mocked.add(responses.POST, US + LEGACY_PATH, status=403)
    sender = Sender(retry=INLINE, sleep=sleeper, clock=clock)
    with pytest.raises(RateLimited):
        sender.send(integration_from_key(SERVICE_KEY, owner_id="o", events_api=EventsApi.V1), _trigger())


@pytest.mark.parametrize(
    ("header", "waited"),
    [
        ("45", 45.0),
        ("30", 30.0),
        # Issue 9: shorter than the 30 s floor, zero or in the past was retried at once.
        ("5", "default"),
        ("0", "default"),
        ("0.25", "default"),
        ("Sun, 22 Nov 1990 12:00:30 GMT", "default"),
        ("-5", "default"),
        ("NaN", "default"),
        ("inf", "default"),
        ("soon", "default"),
        ("", "default"),
        ("5\x00", "default"),
        ("\u0663", "default"),
        ("\udcff", "default"),
        ("99999999999999999999", "limited"),  # capped at a day: past the deadline
    ],
)
def test_hostile_retry_after_on_a_429(
    mocked: responses.RequestsMock, sleeper: Sleeper, clock: FakeClock, header: str, waited: float | str
) -> None:
    # responses refuses headers that are not latin-1, as would any real server; send bytes then.
    value = header.encode("utf-8", "surrogateescape").decode("latin-1")
    mocked.add(responses.POST, US + ALERT_PATH, status=429, headers={"Retry-After": value})
    mocked.add(responses.POST, US + ALERT_PATH, json=ACCEPTED, status=202)
    sender = Sender(retry=RetryPolicy(deadline=100), sleep=sleeper, clock=clock, rng=random.Random(2))
    if waited == "limited":
        with pytest.raises(RateLimited) as info:
            sender.send(SERVICE_KEY, _trigger())
        assert info.value.retry_after == 86_400.0
        return
    sender.send(SERVICE_KEY, _trigger())
    if waited == "default":
        assert len(sleeper.waits) == 1 and 30.0 <= sleeper.waits[0] <= 36.0
    else:
        assert sleeper.waits == [waited]


@given(header=st.text(max_size=40), deadline=st.floats(min_value=0.001, max_value=1e6))
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_a_429_ends_in_a_wait_or_a_rate_limited_error(header: str, deadline: float) -> None:
    clock = FakeClock()
    sleeper = Sleeper(clock)
    transport = _Scripted([HttpResponse(429, b"", {"retry-after": header}), HttpResponse(202, b"{}", {})])
    policy = RetryPolicy(max_attempts=2, deadline=deadline)
    sender = Sender(transport=transport, retry=policy, sleep=sleeper, clock=clock)
    failure: RateLimited | None = None
    try:
        sender.send(SERVICE_KEY, _trigger())
    except RateLimited as exc:
        failure = exc
    if failure is not None:
        assert deadline < failure.retry_after <= 86_400.0
        assert failure.retry_at.tzinfo is not None
        assert sleeper.waits == []
    else:
        assert len(sleeper.waits) == 1
        assert 0.0 <= sleeper.waits[0] <= deadline


class _Scripted:
    """A transport that answers from a list, in order."""

    def __init__(self, answers: list[HttpResponse]) -> None:
        self.answers = list(answers)
        self.calls = 0

    def post(self, url: str, body: bytes, headers: Any, timeout: Any) -> HttpResponse:
        self.calls += 1
        return self.answers.pop(0)

    def close(self) -> None:
        pass


# -- keys PagerDuty does not know ------------------------------------------------------------


def _invalid(*errors: object, message: object = "Event object is invalid") -> dict[str, Any]:
    return {"status": "invalid event", "message": message, "errors": list(errors)}


@pytest.mark.parametrize(
    ("api", "path", "status", "body", "unknown_key"),
    [
        (EventsApi.V2, ALERT_PATH, 400, _invalid("Invalid routing key"), True),
        (EventsApi.V2, ALERT_PATH, 400, _invalid("invalid routing key."), True),
        (EventsApi.V2, ALERT_PATH, 400, _invalid("  Invalid \t routing  KEY  "), True),
        (EventsApi.V2, ALERT_PATH, 400, _invalid("severity is invalid", "Invalid routing key"), True),
        (EventsApi.V2, ALERT_PATH, 400, _invalid(message="Invalid routing key"), True),  # errors empty
        (EventsApi.V1, LEGACY_PATH, 400, _invalid("Invalid service key"), True),
        (EventsApi.V1, LEGACY_PATH, 400, _invalid("Invalid routing key"), True),
        (EventsApi.V2, ALERT_PATH, 400, _invalid("Invalid service key"), False),  # not v2's words
        (
            EventsApi.V2,
            ALERT_PATH,
            400,
            _invalid("Length of 'routing_key' is incorrect (should be 32 characters)"),
            False,
        ),
        (EventsApi.V2, ALERT_PATH, 400, _invalid("Invalid routing key format"), False),
        (EventsApi.V2, ALERT_PATH, 400, _invalid("not an Invalid routing key"), False),
        (EventsApi.V2, ALERT_PATH, 400, _invalid("severity is invalid", message="Invalid routing key"), False),
        (EventsApi.V2, ALERT_PATH, 400, _invalid(7, None, ["Invalid routing key"]), False),
        (EventsApi.V2, ALERT_PATH, 400, {"errors": "Invalid routing key"}, False),  # not a list
        (EventsApi.V2, ALERT_PATH, 400, {}, False),
        (EventsApi.V2, ALERT_PATH, 404, _invalid("Invalid routing key"), False),
        (EventsApi.V2, ALERT_PATH, 422, _invalid("Invalid routing key"), False),
        (EventsApi.V2, ALERT_PATH, 401, _invalid("Invalid routing key"), False),
    ],
)
def test_an_unknown_key_is_told_apart_from_a_bad_event(
    sender: Sender,
    mocked: responses.RequestsMock,
    api: EventsApi,
    path: str,
    status: int,
    body: dict[str, Any],
    unknown_key: bool,
) -> None:
    mocked.add(responses.POST, US + path, json=body, status=status)
    integration = integration_from_key(SERVICE_KEY, owner_id="o", events_api=api)
    with pytest.raises(EventRejected) as info:
        sender.send(integration, _trigger())
    assert isinstance(info.value, InvalidRoutingKey) is unknown_key
    assert len(mocked.calls) == 1, "never retried"


def test_an_unknown_key_on_a_change_event(sender: Sender, mocked: responses.RequestsMock) -> None:
    mocked.add(responses.POST, US + CHANGE_PATH, json=_invalid("Invalid routing key"), status=400)
    with pytest.raises(InvalidRoutingKey) as info:
        sender.change(SERVICE_KEY, "Deployed v2")
    assert "reconnect" in info.value.reason


def test_an_unknown_key_reason_never_holds_the_key(sender: Sender, mocked: responses.RequestsMock) -> None:
    mocked.add(
        responses.POST, US + ALERT_PATH, json=_invalid("Invalid routing key", message=f"key {SERVICE_KEY}"), status=400
    )
    with pytest.raises(InvalidRoutingKey) as info:
        sender.send(SERVICE_KEY, _trigger())
    assert SERVICE_KEY not in info.value.reason
    assert SERVICE_KEY not in str(info.value)
    assert SERVICE_KEY not in repr(info.value)


@given(
    errors=st.lists(
        st.one_of(st.text(max_size=30), st.integers(), st.none(), st.just("Invalid routing key")), max_size=5
    ),
    message=st.one_of(st.none(), st.text(max_size=30), st.just("Invalid routing key")),
    status=st.sampled_from([400, 401, 404, 409, 413, 422]),
)
@settings(max_examples=80)
def test_only_pagerdutys_words_on_a_400_mean_an_unknown_key(errors: list[object], message: object, status: int) -> None:
    transport = _Scripted([HttpResponse(status, json.dumps({"message": message, "errors": errors}).encode(), {})])
    sender = Sender(transport=transport, retry=RetryPolicy.no_retries())
    texts = [e for e in errors if isinstance(e, str)] if errors else [message] if isinstance(message, str) else []
    expected = status == 400 and any(" ".join(t.split()).rstrip(".").lower() == "invalid routing key" for t in texts)
    with pytest.raises(EventRejected) as info:
        sender.send(SERVICE_KEY, _trigger())
    assert isinstance(info.value, InvalidRoutingKey) is expected


def test_backoff_waits_are_jittered_and_capped(mocked: responses.RequestsMock, clock: FakeClock) -> None:
    sleeper = Sleeper(clock)
    policy = RetryPolicy(max_attempts=6, base_delay=1.0, max_delay=4.0, deadline=1000)
    sender = Sender(retry=policy, sleep=sleeper, clock=clock, rng=random.Random(3))
    mocked.add(responses.POST, US + ALERT_PATH, status=500)
    with pytest.raises(DeliveryFailed):
        sender.send(SERVICE_KEY, _trigger())
    assert len(sleeper.waits) == 5
    for retry, wait in enumerate(sleeper.waits, start=1):
        assert 0 <= wait <= min(4.0, 2 ** (retry - 1))
    assert len(set(sleeper.waits)) == 5, "waits are random, not fixed"


def test_overall_deadline_counts_time_spent_in_requests(mocked: responses.RequestsMock, clock: FakeClock) -> None:
    sleeper = Sleeper(clock)

    def slow_failure(request: Any) -> tuple[int, dict[str, str], str]:
        clock.advance(25)  # each request takes 25 s of the 60 s budget
        return 503, {}, ""

    mocked.add_callback(responses.POST, US + ALERT_PATH, callback=slow_failure)
    sender = Sender(retry=RetryPolicy(max_attempts=10, base_delay=1, deadline=60), sleep=sleeper, clock=clock)
    with pytest.raises(DeliveryFailed, match="deadline"):
        sender.send(SERVICE_KEY, _trigger())
    assert len(mocked.calls) == 3


@pytest.mark.parametrize(
    "failure", [requests.ConnectionError("reset"), requests.Timeout("slow"), requests.exceptions.ChunkedEncodingError()]
)
def test_network_errors_are_retried(sender: Sender, mocked: responses.RequestsMock, failure: Exception) -> None:
    mocked.add(responses.POST, US + ALERT_PATH, body=failure)
    mocked.add(responses.POST, US + ALERT_PATH, json=ACCEPTED, status=202)
    assert sender.send(SERVICE_KEY, _trigger()).attempts == 2


def test_network_errors_until_the_end(sender: Sender, mocked: responses.RequestsMock) -> None:
    mocked.add(responses.POST, US + ALERT_PATH, body=requests.ConnectionError("refused"))
    with pytest.raises(DeliveryFailed, match="connection failed") as info:
        sender.send(SERVICE_KEY, _trigger())
    assert info.value.status is None
    assert info.value.attempts == 3


def test_a_bad_url_is_not_retried(sleeper: Sleeper, clock: FakeClock) -> None:
    class BrokenTransport:
        calls = 0

        def post(self, url: str, body: bytes, headers: Any, timeout: Any) -> HttpResponse:
            self.calls += 1
            raise TransportError("bad URL (InvalidURL)", retryable=False)

        def close(self) -> None:
            pass

    transport = BrokenTransport()
    sender = Sender(transport=transport, sleep=sleeper, clock=clock)
    with pytest.raises(DeliveryFailed, match="bad URL"):
        sender.send(SERVICE_KEY, _trigger())
    assert transport.calls == 1


# -- what is sent, and where -----------------------------------------------------------------


def test_v2_trigger_request(sender: Sender, mocked: responses.RequestsMock) -> None:
    mocked.add(responses.POST, US + ALERT_PATH, json=ACCEPTED, status=202)
    result = sender.trigger(SERVICE_KEY, "CPU high", source="web-1", severity="critical", dedup_key="web-1/cpu")
    assert result.dedup_key == "web-1/cpu"
    assert result.message == "Event processed"
    request = mocked.calls[0].request
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("pdconnect/")
    body = _sent(mocked.calls[0])
    assert body["client"] == "Acme Monitoring"
    assert body["client_url"] == "https://acme.example"
    assert "vendor" not in body, "Events API v2 has no vendor field"
    assert_valid_request("alert", body)


def test_acknowledge_and_resolve_requests(sender: Sender, mocked: responses.RequestsMock) -> None:
    mocked.add(responses.POST, US + ALERT_PATH, json=ACCEPTED, status=202)
    sender.acknowledge(SERVICE_KEY, "web-1/cpu")
    sender.resolve(SERVICE_KEY, "web-1/cpu")
    bodies = [_sent(call) for call in mocked.calls]
    assert bodies == [
        {"routing_key": SERVICE_KEY, "event_action": "acknowledge", "dedup_key": "web-1/cpu"},
        {"routing_key": SERVICE_KEY, "event_action": "resolve", "dedup_key": "web-1/cpu"},
    ]


def test_legacy_integration_speaks_the_integration_api(sender: Sender, mocked: responses.RequestsMock) -> None:
    legacy = integration_from_key(SERVICE_KEY, owner_id="o", events_api=EventsApi.V1)
    mocked.add(
        responses.POST,
        US + LEGACY_PATH,
        json={"status": "success", "message": "Event processed", "incident_key": "x"},
        status=200,
    )
    result = sender.trigger(legacy, "Disk full", source="db-1", severity="error", dedup_key="db-1/disk")
    assert result.dedup_key == "db-1/disk"
    body = _sent(mocked.calls[0])
    assert body["vendor"] == VENDOR_KEY
    assert body["service_key"] == SERVICE_KEY
    assert body["description"] == "Disk full"
    assert body["details"] == {"source": "db-1", "severity": "error"}
    assert body["client"] == "Acme Monitoring"
    sender.resolve(legacy, "db-1/disk")
    assert _sent(mocked.calls[1]) == {
        "service_key": SERVICE_KEY,
        "event_type": "resolve",
        "vendor": VENDOR_KEY,
        "incident_key": "db-1/disk",
    }


def test_explicit_legacy_event_goes_to_the_legacy_api(sender: Sender, mocked: responses.RequestsMock) -> None:
    mocked.add(responses.POST, US + LEGACY_PATH, json={"status": "success"}, status=200)
    sender.send(SERVICE_KEY, LegacyEvent.trigger("d", incident_key="i"))
    assert mocked.calls[0].request.url == US + LEGACY_PATH


def test_change_event_request(sender: Sender, mocked: responses.RequestsMock) -> None:
    mocked.add(
        responses.POST, US + CHANGE_PATH, json={"status": "success", "message": "Change event processed"}, status=202
    )
    result = sender.change(SERVICE_KEY, "Deployed v1.2.3", source="ci", links=[{"href": "https://ci.example/1"}])
    assert result.dedup_key is None
    body = _sent(mocked.calls[0])
    assert "client" not in body
    assert_valid_request("change", body)


def test_change_event_to_a_ruleset_is_refused_before_sending(sender: Sender, mocked: responses.RequestsMock) -> None:
    with pytest.raises(EventValidationError, match="ruleset keys"):
        sender.send(RULESET_KEY, ChangeEvent(summary="deploy"))
    assert not mocked.calls


def test_invalid_events_never_reach_the_network(sender: Sender, mocked: responses.RequestsMock) -> None:
    with pytest.raises(EventValidationError):
        sender.trigger(SERVICE_KEY, "", source="", severity="loud")
    with pytest.raises(EventValidationError, match="routing_key"):
        sender.resolve("not-a-key", "k")
    assert not mocked.calls


def test_eu_integrations_go_to_the_eu_host(sender: Sender, mocked: responses.RequestsMock) -> None:
    mocked.add(responses.POST, EU + ALERT_PATH, json=ACCEPTED, status=202)
    sender.send(integration_from_key(SERVICE_KEY, owner_id="o", region=Region.EU), _trigger())
    assert mocked.calls[0].request.url == EU + ALERT_PATH


def test_one_base_url_for_everything(mocked: responses.RequestsMock) -> None:
    sender = Sender(events_base_url="http://127.0.0.1:8181/")
    mocked.add(responses.POST, "http://127.0.0.1:8181" + ALERT_PATH, json=ACCEPTED, status=202)
    sender.send(integration_from_key(SERVICE_KEY, owner_id="o", region=Region.EU), _trigger())
    assert len(mocked.calls) == 1


def test_per_region_base_urls(mocked: responses.RequestsMock) -> None:
    sender = Sender(events_base_urls={Region.US: "http://127.0.0.1:1", Region.EU: "http://127.0.0.1:2"})
    mocked.add(responses.POST, "http://127.0.0.1:2" + ALERT_PATH, json=ACCEPTED, status=202)
    sender.send(integration_from_key(SERVICE_KEY, owner_id="o", region=Region.EU), _trigger())
    assert len(mocked.calls) == 1


def test_a_passed_in_session_is_used(mocked: responses.RequestsMock) -> None:
    session = requests.Session()
    session.headers["X-Vendor-Proxy"] = "yes"
    mocked.add(responses.POST, US + ALERT_PATH, json=ACCEPTED, status=202)
    with Sender(session=session) as sender:
        sender.send(SERVICE_KEY, _trigger())
    assert mocked.calls[0].request.headers["X-Vendor-Proxy"] == "yes"


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"client_url": "not a url"}, EventValidationError),
        ({"client": ""}, EventValidationError),
        ({"events_base_url": "events.pagerduty.com"}, ValueError),
        ({"events_base_url": "http://a", "events_base_urls": {}}, ValueError),
        ({"session": requests.Session(), "transport": object()}, ValueError),
        ({"retry": {"max_attempts": 3}}, ConfigError),
        *(
            ({"timeout": bad}, ConfigError)
            for bad in [
                (float("nan"), 10.0),
                (3.0, float("inf")),
                (0, 10),
                (-1.0, 10.0),
                (3.0, 601.0),
                (True, 10.0),
                ("3", "10"),
                (3.0,),
                (3.0, 10.0, 1.0),
                [3.0, 10.0],
                None,
                5,
            ]
        ),
        *(
            ({"user_agent": bad}, ConfigError)
            for bad in ["", "acme\r\nX-Injected: 1", "acme\n", "acme\x00", "acmé", "\ud800", "a" * 513, None, 7]
        ),
    ],
)
def test_bad_sender_configuration_fails_at_construction(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Sender(**kwargs)


def test_sending_something_else_is_a_type_error(sender: Sender) -> None:
    with pytest.raises(TypeError):
        sender.send(SERVICE_KEY, {"event_action": "trigger"})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sender.send(42, _trigger())  # type: ignore[arg-type]


def test_prepared_event_repr_hides_the_key(sender: Sender) -> None:
    prepared = sender.prepare(SERVICE_KEY, _trigger())
    assert SERVICE_KEY not in repr(prepared)
    assert prepared.kind.value == "alert" and prepared.action == "trigger"


# -- secrets in logs -------------------------------------------------------------------------


def test_no_key_in_any_log_record(
    sender: Sender, mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    legacy = integration_from_key(SERVICE_KEY, owner_id="o", events_api=EventsApi.V1)
    mocked.add(responses.POST, US + ALERT_PATH, status=429, headers={"Retry-After": "1"})
    mocked.add(responses.POST, US + ALERT_PATH, json=ACCEPTED, status=202)
    mocked.add(responses.POST, US + ALERT_PATH, json={**INVALID, "message": SERVICE_KEY}, status=400)
    mocked.add(responses.POST, US + LEGACY_PATH, body=requests.ConnectionError(f"refused {SERVICE_KEY}"))
    with caplog.at_level(logging.DEBUG):
        sender.send(SERVICE_KEY, _trigger())
        with pytest.raises(EventRejected):
            sender.send(SERVICE_KEY, _trigger())
        with pytest.raises(DeliveryFailed):
            sender.send(legacy, _trigger(custom_details={"x": "y" * 600_000}))
    assert caplog.records
    for record in caplog.records:
        assert SERVICE_KEY not in record.getMessage()
        assert SERVICE_KEY not in json.dumps(getattr(record, "pdconnect_event", {}))
    assert any(getattr(r, "pdconnect_event", {}).get("outcome") == "delivered" for r in caplog.records)


# -- threads ---------------------------------------------------------------------------------


def test_one_sender_shared_by_many_threads() -> None:
    with recording_endpoint() as endpoint, Sender(events_base_url=endpoint.url, client="Acme") as sender:

        def send(i: int) -> str | None:
            return sender.trigger(
                SERVICE_KEY, f"alert {i}", source=f"host-{i}", severity="info", dedup_key=f"k-{i}"
            ).dedup_key

        with ThreadPoolExecutor(max_workers=8) as pool:
            keys = list(pool.map(send, range(200)))
    assert keys == [f"k-{i}" for i in range(200)]
    received = sorted(body["dedup_key"] for body in endpoint.bodies)
    assert received == sorted(keys)
    for body in endpoint.bodies:
        i = int(body["dedup_key"].split("-")[1])
        assert body["payload"]["summary"] == f"alert {i}"
        assert body["payload"]["source"] == f"host-{i}"
        assert body["client"] == "Acme"
