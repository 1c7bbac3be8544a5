"""A server's ``Retry-After`` can lengthen a wait, never shorten it (issue 9, attack finding 4).

A 429 with ``Retry-After: 0``, or with an HTTP date that a client clock running ahead of
PagerDuty's reads as past, was retried at once: the inline sender made five requests in a few
milliseconds and the outbox worker fifteen in three seconds, where PagerDuty asks for tens of
seconds. These tests send hostile ``Retry-After`` values over real loopback HTTP, to the
sender, the outbox worker and the sandbox, and check every wait against the policy's floor.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from pdconnect import AlertEvent, RetryPolicy, Sender
from pdconnect.errors import RateLimited
from pdconnect.outbox import Outbox
from pdconnect.retry import MAX_RETRY_AFTER, RATE_LIMIT_DELAY, parse_retry_after
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.transport import HttpClientTransport, Transport
from pdconnect.worker import Worker
from tests.conftest import SERVICE_KEY, FakeClock
from tests.servers import serving

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)
PAST = format_datetime(NOW - timedelta(minutes=5), usegmt=True)
EPOCH = "Thu, 01 Jan 1970 00:00:00 GMT"
FAR_FUTURE = "Fri, 31 Dec 9999 23:59:59 GMT"
IN_A_MINUTE = format_datetime(NOW + timedelta(seconds=60), usegmt=True)

#: Each header (or pair of headers), and the wait a 429 carrying it must get from the default
#: policy: "floor" is the rate-limit delay with its jitter (30 to 36 s), a number is exact.
HOSTILE_RETRY_AFTER: list[tuple[tuple[str, ...], float | str]] = [
    (("0",), "floor"),
    (("0.0",), "floor"),
    (("-1",), "floor"),
    (("-0",), "floor"),
    ((PAST,), "floor"),  # the client's clock runs ahead of PagerDuty's
    ((EPOCH,), "floor"),
    (("1e309",), "floor"),
    (("nan",), "floor"),
    (("inf",), "floor"),
    (("29.999",), "floor"),  # shorter than the floor: the floor wins
    (("1",), "floor"),
    ((" ",), "floor"),
    (("\t",), "floor"),
    (("soon",), "floor"),
    (("0", "0"), "floor"),  # two headers: requests joins them, http.client keeps the last
    (("0", "1"), "floor"),
    (("30",), 30.0),
    (("45",), 45.0),
    (("9" * 30,), MAX_RETRY_AFTER),  # huge: a day, never more
    ((FAR_FUTURE,), MAX_RETRY_AFTER),
]


def _expected(wait: float, expected: float | str, *, floor: float = RATE_LIMIT_DELAY) -> None:
    if expected == "floor":
        assert floor <= wait <= floor * 1.2
    else:
        assert wait == expected


# -- the policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(("headers", "expected"), HOSTILE_RETRY_AFTER)
def test_a_rate_limit_never_waits_less_than_the_floor(headers: tuple[str, ...], expected: float | str) -> None:
    # Two headers arrive joined by requests ("0, 1"), or as the last one by http.client.
    for header in (", ".join(headers), headers[-1]):
        retry_after = parse_retry_after(header, now=NOW)
        _expected(RetryPolicy().wait(1, random.Random(1), retry_after=retry_after, rate_limited=True), expected)


@pytest.mark.parametrize("retry_after", [0.0, -1.0, -0.0, float("nan"), float("-inf"), 1e-300])
def test_a_short_or_unreadable_retry_after_is_the_floor(retry_after: float) -> None:
    wait = RetryPolicy(rate_limit_delay=10.0).wait(1, random.Random(2), retry_after=retry_after, rate_limited=True)
    assert 10.0 <= wait <= 12.0


@pytest.mark.parametrize(("retry_after", "expected"), [(float("inf"), MAX_RETRY_AFTER), (1e300, MAX_RETRY_AFTER)])
def test_an_endless_retry_after_is_a_day(retry_after: float, expected: float) -> None:
    assert RetryPolicy().wait(1, random.Random(3), retry_after=retry_after, rate_limited=True) == expected
    assert RetryPolicy().wait(1, random.Random(3), retry_after=retry_after, rate_limited=False) == expected


@pytest.mark.parametrize("retry_after", [0.0, -5.0, float("nan"), 0.01])
def test_a_short_retry_after_on_a_503_never_cuts_the_backoff(retry_after: float) -> None:
    policy = RetryPolicy(base_delay=8.0, max_delay=8.0)
    backoffs = [policy.backoff(1, random.Random(seed)) for seed in range(20)]
    waits = [policy.wait(1, random.Random(seed), retry_after=retry_after, rate_limited=False) for seed in range(20)]
    assert all(wait >= backoff for wait, backoff in zip(waits, backoffs, strict=True))


_POLICIES = st.builds(
    RetryPolicy,
    base_delay=st.floats(min_value=0, max_value=100),
    max_delay=st.floats(min_value=0, max_value=1000),
    rate_limit_delay=st.floats(min_value=0, max_value=200_000),
)
_RETRY_AFTER = st.none() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40).map(parse_retry_after)


@given(
    policy=_POLICIES,
    retry_number=st.integers(min_value=1, max_value=10_000),
    retry_after=_RETRY_AFTER,
    seed=st.integers(),
)
def test_a_rate_limit_waits_between_the_floor_and_the_cap(
    policy: RetryPolicy, retry_number: int, retry_after: float | None, seed: int
) -> None:
    wait = policy.wait(retry_number, random.Random(seed), retry_after=retry_after, rate_limited=True)
    assert policy.rate_limit_delay <= wait <= max(MAX_RETRY_AFTER, policy.rate_limit_delay * 1.2)
    if retry_after is not None and retry_after >= 0:
        assert wait >= min(retry_after, MAX_RETRY_AFTER), "Retry-After may lengthen the wait"


@given(
    policy=_POLICIES,
    retry_number=st.integers(min_value=1, max_value=10_000),
    retry_after=_RETRY_AFTER,
    seed=st.integers(),
)
def test_any_other_retry_waits_at_least_its_backoff_and_at_most_a_day(
    policy: RetryPolicy, retry_number: int, retry_after: float | None, seed: int
) -> None:
    backoff = policy.backoff(retry_number, random.Random(seed))
    wait = policy.wait(retry_number, random.Random(seed), retry_after=retry_after, rate_limited=False)
    assert backoff <= wait <= max(MAX_RETRY_AFTER, policy.max_delay)
    if retry_after is not None and retry_after >= 0:
        assert wait >= min(retry_after, MAX_RETRY_AFTER)


# -- over loopback HTTP ----------------------------------------------------------------------


class RateLimitingEndpoint:
    """Answers ``limited`` POSTs with 429 and the given ``Retry-After`` headers, then 202."""

    def __init__(self, headers: Sequence[str], *, limited: int | None = None) -> None:
        self.requests = 0
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with endpoint.lock:
                    endpoint.requests += 1
                    count = endpoint.requests
                if limited is None or count <= limited:
                    self.send_response(429)
                    for value in headers:
                        self.send_header("Retry-After", value)
                    body = b""
                else:
                    self.send_response(202)
                    body = b'{"status": "success", "message": "Event processed", "dedup_key": "k"}'
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@contextmanager
def rate_limiting(headers: Sequence[str], *, limited: int | None = None) -> Iterator[RateLimitingEndpoint]:
    endpoint = RateLimitingEndpoint(headers, limited=limited)
    with serving(endpoint.server):
        yield endpoint


class Sleeper:
    """Records each wait and moves the fake clock on by it, instead of sleeping."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)


def _trigger() -> AlertEvent:
    return AlertEvent.trigger("CPU high on web-1", source="web-1", severity="critical", dedup_key="web-1/cpu")


@pytest.mark.parametrize(
    "transport", [pytest.param(None, id="requests"), pytest.param(HttpClientTransport, id="http.client")]
)
@pytest.mark.parametrize(
    "headers",
    [headers for headers, expected in HOSTILE_RETRY_AFTER if expected == "floor"]
    + [(format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True),)],
)
def test_the_sender_never_retries_a_rate_limit_sooner_than_the_floor(
    headers: tuple[str, ...], transport: type[Transport] | None
) -> None:
    clock = FakeClock()
    sleeper = Sleeper(clock)
    with rate_limiting(headers, limited=1) as endpoint:
        sender = Sender(
            events_base_url=endpoint.url,
            transport=transport() if transport is not None else None,
            sleep=sleeper,
            clock=clock,
            rng=random.Random(4),
        )
        result = sender.send(SERVICE_KEY, _trigger())
        sender.close()
    assert (result.status, result.attempts, endpoint.requests) == (202, 2, 2)
    assert len(sleeper.waits) == 1
    assert RATE_LIMIT_DELAY <= sleeper.waits[0] <= RATE_LIMIT_DELAY * 1.2


@pytest.mark.parametrize("header", ["0", EPOCH, "-1", "nan"])
def test_a_retry_after_of_now_is_no_burst_for_the_inline_sender(header: str) -> None:
    # The attacker's p15: five requests in 7 ms, then RateLimited "retry at <now>, in 0.0s".
    clock = FakeClock()
    sleeper = Sleeper(clock)
    with rate_limiting([header]) as endpoint:
        sender = Sender(events_base_url=endpoint.url, sleep=sleeper, clock=clock, rng=random.Random(5))
        before = datetime.now(UTC)
        with pytest.raises(RateLimited) as info:
            sender.send(SERVICE_KEY, _trigger())
        sender.close()
    policy = sender.retry
    assert endpoint.requests <= 1 + policy.deadline // policy.rate_limit_delay
    assert all(wait >= RATE_LIMIT_DELAY for wait in sleeper.waits)
    assert info.value.retry_after >= RATE_LIMIT_DELAY
    assert info.value.retry_at >= before + timedelta(seconds=RATE_LIMIT_DELAY)


def test_a_web_requests_sender_fails_fast_on_retry_after_zero() -> None:
    inline = RetryPolicy(max_attempts=3, deadline=20.0)  # the Flask extension's Test button
    clock = FakeClock()
    sleeper = Sleeper(clock)
    with rate_limiting(["0"]) as endpoint:
        sender = Sender(events_base_url=endpoint.url, retry=inline, sleep=sleeper, clock=clock)
        with pytest.raises(RateLimited, match="deadline") as info:
            sender.send(SERVICE_KEY, _trigger())
    assert (endpoint.requests, sleeper.waits) == (1, [])
    assert info.value.retry_after >= RATE_LIMIT_DELAY


@pytest.mark.parametrize("header", ["0", EPOCH, "-1", "garbage"])
def test_the_worker_pauses_the_key_for_at_least_the_floor(tmp_path: Path, header: str) -> None:
    # The attacker's p16: fifteen requests in three seconds.
    with rate_limiting([header]) as endpoint:
        sender = Sender(events_base_url=endpoint.url, retry=RetryPolicy.no_retries())
        outbox = Outbox(f"sqlite:///{tmp_path / 'o.db'}", sender=sender)
        outbox.enqueue(SERVICE_KEY, _trigger())
        worker = Worker(outbox, sender=sender, rate_limit_per_key=None)
        before = datetime.now(UTC).timestamp()
        assert worker.run_once() == 1
        assert worker.run_once() == 0, "the event is not due again yet"
        sender.close()
    assert endpoint.requests == 1
    with outbox.engine.connect() as conn:
        row = conn.execute(sa.select(outbox.events)).one()
        pause = conn.execute(sa.select(outbox.pauses.c.paused_until)).scalar_one()
    assert row.state == "pending" and row.last_status == 429
    assert row.next_attempt_at >= before + RATE_LIMIT_DELAY
    assert pause >= before + RATE_LIMIT_DELAY


def test_the_sandboxs_retry_after_zero_is_waited_as_the_floor(pagerduty_sandbox: PagerDutySandbox) -> None:
    clock = FakeClock()
    sleeper = Sleeper(clock)
    pagerduty_sandbox.set_faults(rate_429_retry_after=1.0, retry_after=0)
    key = pagerduty_sandbox.service_key()
    sender = Sender(
        events_base_url=pagerduty_sandbox.url,
        retry=RetryPolicy(max_attempts=3, deadline=600),
        sleep=sleeper,
        clock=clock,
    )
    with pytest.raises(RateLimited, match="3 attempts"):
        sender.send(key, _trigger())
    assert [r["status"] for r in pagerduty_sandbox.received(routing_key=key)] == [429, 429, 429]
    assert len(sleeper.waits) == 2
    assert all(RATE_LIMIT_DELAY <= wait <= RATE_LIMIT_DELAY * 1.2 for wait in sleeper.waits)
