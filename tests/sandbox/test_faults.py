"""Fault injection: the plan, its parsing, and what clients see."""

from __future__ import annotations

import contextlib
from collections import Counter

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from pdconnect import RetryPolicy, Sender
from pdconnect.errors import DeliveryFailed
from pdconnect.sandbox.faults import FaultPlan, Faults, FaultSpecError, RateLimiter
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.conftest import FakeClock


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", FaultPlan()),
        ("429=0.1", FaultPlan(rate_429=0.1)),
        ("429-retry-after=0.05, retry-after=2", FaultPlan(rate_429_retry_after=0.05, retry_after=2)),
        ("5xx=0.2", FaultPlan(rate_500=0.05, rate_502=0.05, rate_503=0.05, rate_504=0.05)),
        ("503-retry-after=0.1", FaultPlan(rate_503_retry_after=0.1)),
        (
            "503=0.1,latency=50ms,drop=0.01,down=30s,seed=7",
            FaultPlan(rate_503=0.1, latency_ms=50, rate_drop=0.01, down_for=30, seed=7),
        ),
    ],
)
def test_parse(spec: str, expected: FaultPlan) -> None:
    assert FaultPlan.parse(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("429", "expected name=value"),
        ("teapot=0.1", "unknown fault"),
        ("429=lots", "not a number"),
        ("429=1.5", "between 0 and 1"),
        ("429=0.6,503=0.6", "more than 1"),
        ("latency=-5", "must not be negative"),
    ],
)
def test_parse_refuses(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message):
        FaultPlan.parse(spec)


@given(st.text(max_size=60))
def test_parse_only_raises_its_own_error(spec: str) -> None:
    with contextlib.suppress(FaultSpecError):
        FaultPlan.parse(spec)


def test_decisions_follow_the_shares() -> None:
    faults = Faults(FaultPlan(rate_429=0.1, rate_503=0.1, rate_drop=0.05, seed=42))
    counts = Counter()
    for _ in range(4000):
        decision = faults.decide()
        counts["drop" if decision.drop else decision.status] += 1
    assert 320 < counts[429] < 480
    assert 320 < counts[503] < 480
    assert 130 < counts["drop"] < 270
    assert counts[None] == 4000 - counts[429] - counts[503] - counts["drop"]


def test_same_seed_same_faults() -> None:
    plan = FaultPlan(rate_429=0.3, seed=5)
    first, second = Faults(plan), Faults(plan)
    decisions = [first.decide().status for _ in range(50)]
    assert 429 in decisions
    assert [second.decide().status for _ in range(50)] == decisions


def test_down_for_a_period_then_up(clock: FakeClock) -> None:
    faults = Faults(FaultPlan(down_for=30), clock=clock)
    assert faults.decide().drop
    clock.advance(29)
    assert faults.decide().drop
    clock.advance(2)
    assert not faults.decide().drop


def test_latency_is_part_of_every_decision() -> None:
    assert Faults(FaultPlan(latency_ms=50)).decide().delay == pytest.approx(0.05)


def test_rate_limiter_sliding_window(clock: FakeClock) -> None:
    limiter = RateLimiter(2, clock=clock)
    assert [limiter.allow("k"), limiter.allow("k"), limiter.allow("k")] == [True, True, False]
    clock.advance(60.1)
    assert limiter.allow("k")
    assert RateLimiter(None).allow("k")


def _event(sandbox: PagerDutySandbox) -> dict[str, object]:
    return {"routing_key": sandbox.service_key(), "event_action": "resolve", "dedup_key": "k"}


def test_injected_statuses(pagerduty_sandbox: PagerDutySandbox) -> None:
    event = _event(pagerduty_sandbox)
    pagerduty_sandbox.set_faults("503=1")
    response = requests.post(pagerduty_sandbox.url + "/v2/enqueue", json=event, timeout=10)
    assert response.status_code == 503
    assert pagerduty_sandbox.received()[-1]["outcome"] == "fault: injected 503"
    pagerduty_sandbox.set_faults("429-retry-after=1,retry-after=2")
    response = requests.post(pagerduty_sandbox.url + "/v2/enqueue", json=event, timeout=10)
    assert (response.status_code, response.headers["Retry-After"]) == (429, "2")
    pagerduty_sandbox.set_faults("503-retry-after=1,retry-after=3")
    response = requests.post(pagerduty_sandbox.url + "/v2/enqueue", json=event, timeout=10)
    assert (response.status_code, response.headers["Retry-After"]) == (503, "3")
    pagerduty_sandbox.set_faults("429=1")
    response = requests.post(pagerduty_sandbox.url + "/v2/enqueue", json=event, timeout=10)
    assert response.status_code == 429
    assert "Retry-After" not in response.headers
    legacy = {"service_key": event["routing_key"], "event_type": "resolve", "incident_key": "k"}
    response = requests.post(pagerduty_sandbox.url + "/generic/2010-04-15/create_event.json", json=legacy, timeout=10)
    assert response.status_code == 403, "the legacy API rate-limits with 403"


def test_dropped_connections_and_down(pagerduty_sandbox: PagerDutySandbox) -> None:
    event = _event(pagerduty_sandbox)
    pagerduty_sandbox.set_faults("drop=1")
    with pytest.raises(requests.ConnectionError):
        requests.post(pagerduty_sandbox.url + "/v2/enqueue", json=event, timeout=10)
    pagerduty_sandbox.set_faults("down=3600")
    with pytest.raises(requests.ConnectionError):
        requests.post(pagerduty_sandbox.url + "/v2/enqueue", json=event, timeout=10)
    assert requests.get(pagerduty_sandbox.url + "/_sandbox/api/state", timeout=10).ok, (
        "pages and the control API stay up"
    )
    pagerduty_sandbox.set_faults("")
    assert requests.post(pagerduty_sandbox.url + "/v2/enqueue", json=event, timeout=10).status_code == 202


def test_faults_reset_between_tests(pagerduty_sandbox: PagerDutySandbox) -> None:
    assert pagerduty_sandbox.state()["faults"] == FaultPlan().to_dict()


def test_the_sender_rides_out_faults(pagerduty_sandbox: PagerDutySandbox) -> None:
    waits: list[float] = []
    pagerduty_sandbox.set_faults("429-retry-after=0.3,503=0.3,drop=0.2,retry-after=1,seed=3")
    sender = Sender(
        events_base_url=pagerduty_sandbox.url,
        retry=RetryPolicy(max_attempts=30, base_delay=0.0, deadline=600, rate_limit_delay=0.5),
        sleep=waits.append,
    )
    key = pagerduty_sandbox.service_key()
    pagerduty_sandbox.set_settings(rate_limit=None)
    for i in range(20):
        sender.trigger(key, f"alert {i}", source="h", severity="info", dedup_key=f"k{i}")
    assert 1.0 in waits, "Retry-After was honoured"
    created = [r for r in pagerduty_sandbox.received() if r["status"] == 202]
    assert [r["dedup_key"] for r in created] == [f"k{i}" for i in range(20)]


def test_faults_api_refuses_bad_plans(pagerduty_sandbox: PagerDutySandbox) -> None:
    with pytest.raises(AssertionError, match="unknown fault"):
        pagerduty_sandbox.set_faults("teapot=1")
    with pytest.raises(AssertionError, match="unknown fault settings"):
        pagerduty_sandbox.set_faults(teapot=1)


def test_a_sender_gives_up_when_the_sandbox_stays_down(pagerduty_sandbox: PagerDutySandbox) -> None:
    pagerduty_sandbox.set_faults("down=3600")
    sender = Sender(events_base_url=pagerduty_sandbox.url, retry=RetryPolicy(max_attempts=3), sleep=lambda s: None)
    with pytest.raises(DeliveryFailed, match="connection failed"):
        sender.resolve(pagerduty_sandbox.service_key(), "k")
