from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect import EventsApi, RetryPolicy
from pdconnect.retry import MAX_RETRY_AFTER, Verdict, classify_status, parse_retry_after

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "api", "verdict"),
    [
        (200, EventsApi.V1, Verdict.DELIVERED),
        (202, EventsApi.V2, Verdict.DELIVERED),
        (204, EventsApi.V2, Verdict.DELIVERED),
        (301, EventsApi.V2, Verdict.REJECTED),
        (307, EventsApi.V2, Verdict.REJECTED),
        (400, EventsApi.V2, Verdict.REJECTED),
        (400, EventsApi.V1, Verdict.REJECTED),
        (401, EventsApi.V2, Verdict.REJECTED),
        (403, EventsApi.V2, Verdict.REJECTED),
        (403, EventsApi.V1, Verdict.RETRY),
        (404, EventsApi.V2, Verdict.REJECTED),
        (408, EventsApi.V2, Verdict.RETRY),
        (413, EventsApi.V2, Verdict.REJECTED),
        (422, EventsApi.V2, Verdict.REJECTED),
        (429, EventsApi.V2, Verdict.RETRY),
        (429, EventsApi.V1, Verdict.RETRY),
        (500, EventsApi.V2, Verdict.RETRY),
        (502, EventsApi.V1, Verdict.RETRY),
        (503, EventsApi.V2, Verdict.RETRY),
        (504, EventsApi.V2, Verdict.RETRY),
        (599, EventsApi.V2, Verdict.RETRY),
    ],
)
def test_classify_status(status: int, api: EventsApi, verdict: Verdict) -> None:
    assert classify_status(status, api) is verdict


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("0", 0.0),
        ("7", 7.0),
        (" 12 ", 12.0),
        ("999999999", MAX_RETRY_AFTER),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("٣", None),
        ("Sun, 22 Nov 2026 12:00:30 GMT", 30.0),
        ("Sun, 22 Nov 2026 11:00:00 GMT", 0.0),
        ("Sun, 22 Nov 2026 12:00:30", 30.0),
        ("Mon, 99 Foo 2026 12:00:30 GMT", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@given(st.text(max_size=60))
def test_parse_retry_after_never_raises(header: str) -> None:
    result = parse_retry_after(header, now=NOW)
    assert result is None or 0 <= result <= MAX_RETRY_AFTER


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    rng = random.Random(7)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (80, 4.0)]:
        waits = [policy.backoff(retry, rng) for _ in range(300)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.8, "full jitter reaches near the ceiling"
        assert min(waits) < ceiling * 0.2, "and near zero"


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"base_delay": -1}, {"max_delay": -1}, {"deadline": 0}])
def test_bad_policies(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_no_retries() -> None:
    assert RetryPolicy.no_retries().max_attempts == 1
