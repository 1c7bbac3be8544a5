from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect import EventsApi, RetryPolicy
from pdconnect.retry import MAX_RETRY_AFTER, Verdict, classify_status, is_rate_limited, parse_retry_after

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
        ("\t12", 12.0),
        ("1.5", 1.5),  # not RFC 9110, but the sandbox sends fractions
        ("0.05", 0.05),
        ("999999999", MAX_RETRY_AFTER),
        ("9" * 5000, None),  # over the length any real header has
        ("9" * 190, MAX_RETRY_AFTER),  # inf once read, capped
        ("-5", None),
        ("-0", None),
        ("+5", None),
        ("1e3", None),
        ("1.", None),
        (".5", None),
        ("5 s", None),
        ("NaN", None),
        ("nan", None),
        ("inf", None),
        ("-inf", None),
        ("Infinity", None),
        ("soon", None),
        ("٣", None),  # an Arabic-Indic digit: isdigit() says yes, PagerDuty never sends it
        ("１２", None),  # fullwidth digits
        ("12\n", None),
        ("12\x00", None),
        ("\x1b[31m12", None),
        ("\ud800", None),
        ("12\ud800", None),
        ("Sun, 22 Nov 2026 12:00:30 GMT", 30.0),
        ("Sun, 22 Nov 2026 11:00:00 GMT", 0.0),
        ("Sun, 22 Nov 2026 12:00:30", 30.0),
        ("Sun, 22 Nov 2026 12:00:30 +0100", 0.0),  # an hour earlier in UTC: already past
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER),
        ("Fri, 31 Dec 9999 23:59:59 -1200", MAX_RETRY_AFTER),  # past datetime's range in UTC
        ("Mon, 01 Jan 0001 00:00:00 +1200", 0.0),
        ("Mon, 99 Foo 2026 12:00:30 GMT", None),
        ("Sun, 22 Nov 2026 25:61:61 GMT", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize("header", [12, 12.0, b"12", float("nan"), ["12"], {"12": 1}, object()])
def test_parse_retry_after_takes_only_strings(header: object) -> None:
    assert parse_retry_after(header, now=NOW) is None


@given(st.text(max_size=60))
def test_parse_retry_after_never_raises(header: str) -> None:
    result = parse_retry_after(header, now=NOW)
    assert result is None or 0 <= result <= MAX_RETRY_AFTER


@given(st.integers(min_value=0, max_value=10**30))
def test_whole_seconds_are_read_as_given_up_to_the_cap(seconds: int) -> None:
    assert parse_retry_after(str(seconds), now=NOW) == min(float(seconds), MAX_RETRY_AFTER)


@given(st.integers(min_value=1, max_value=10**9))
def test_negative_seconds_are_unreadable(seconds: int) -> None:
    assert parse_retry_after(f"-{seconds}", now=NOW) is None


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9000, 1, 1), timezones=st.just(UTC)))
def test_http_dates_count_from_now(when: datetime) -> None:
    header = format_datetime(when.replace(microsecond=0), usegmt=True)
    expected = min(max((when.replace(microsecond=0) - NOW).total_seconds(), 0.0), MAX_RETRY_AFTER)
    assert parse_retry_after(header, now=NOW) == expected


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    rng = random.Random(7)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (80, 4.0)]:
        waits = [policy.backoff(retry, rng) for _ in range(300)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.8, "full jitter reaches near the ceiling"
        assert min(waits) < ceiling * 0.2, "and near zero"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": -1},
        {"max_attempts": 2.5},
        {"max_attempts": True},
        {"max_attempts": "3"},
        {"base_delay": -1},
        {"max_delay": -1},
        {"deadline": 0},
        {"deadline": -0.0},
        {"rate_limit_delay": -1},
        *(
            {name: bad}
            for name in ("base_delay", "max_delay", "deadline", "rate_limit_delay")
            for bad in (
                float("nan"),
                float("inf"),
                float("-inf"),
                "1",
                None,
                True,
            )
        ),
    ],
)
def test_bad_policies(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@given(
    retry_number=st.integers(min_value=1, max_value=10_000),
    retry_after=st.none() | st.floats(min_value=0, max_value=MAX_RETRY_AFTER),
    rate_limited=st.booleans(),
    seed=st.integers(),
)
def test_retry_after_only_lengthens_the_rate_limit_delay_or_the_backoff(
    retry_number: int, retry_after: float | None, rate_limited: bool, seed: int
) -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0, rate_limit_delay=30.0)
    wait = policy.wait(retry_number, random.Random(seed), retry_after=retry_after, rate_limited=rate_limited)
    if rate_limited:
        if retry_after is not None and retry_after >= 30.0:
            assert wait == retry_after
        else:
            assert 30.0 <= wait <= 36.0, "a rate limit waits PagerDuty's 30 s, never the short backoff"
    elif retry_after is not None:
        assert wait == max(retry_after, policy.backoff(retry_number, random.Random(seed)))
    else:
        assert 0.0 <= wait <= 4.0


@pytest.mark.parametrize(
    ("status", "api", "limited"),
    [
        (429, EventsApi.V2, True),
        (429, EventsApi.V1, True),
        (403, EventsApi.V1, True),
        (403, EventsApi.V2, False),
        (503, EventsApi.V2, False),
        (400, EventsApi.V2, False),
        (None, EventsApi.V2, False),
    ],
)
def test_is_rate_limited(status: int | None, api: EventsApi, limited: bool) -> None:
    assert is_rate_limited(status, api) is limited


def test_no_retries() -> None:
    assert RetryPolicy.no_retries().max_attempts == 1
