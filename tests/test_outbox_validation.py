"""Every number the outbox and its workers take is checked where it is read.

A lease of NaN is stored as NULL and one of infinity never runs out: either way a dead
worker's events could never be claimed again. Each bad value gets a ConfigError naming the
parameter, before anything is written.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from pdconnect import AlertEvent, RetryPolicy, Sender
from pdconnect.errors import ConfigError
from pdconnect.outbox import DEAD, DELIVERED, LEASED, MAX_LEASE, PENDING, Outbox, outcome_for
from pdconnect.transport import HttpResponse
from pdconnect.worker import KeyRateLimiter, Worker
from tests.conftest import SERVICE_KEY

#: Values no numeric parameter takes: wrong types, bools, NaN, infinities, overflowing ints.
NOT_NUMBERS: list[Any] = [
    None,
    "60",
    b"60",
    "\ud800",
    [60],
    {"seconds": 60},
    True,
    False,
    math.nan,
    math.inf,
    -math.inf,
    10**400,
    complex(1, 1),
]


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    made = Outbox(f"sqlite:///{tmp_path / 'outbox.db'}")
    yield made
    made.close()


def trigger(key: str = "k") -> AlertEvent:
    return AlertEvent.trigger("down", source="h", severity="critical", dedup_key=key)


def rows(outbox: Outbox) -> list[dict[str, Any]]:
    with outbox.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(sa.select(outbox.events).order_by(outbox.events.c.id))]


# -- the outbox -------------------------------------------------------------------------------


@pytest.mark.parametrize("lease", [*NOT_NUMBERS, 0, 0.0, -1, -1e-9, MAX_LEASE + 1, 1e308])
def test_a_claim_refuses_a_lease_that_would_strand_the_event(outbox: Outbox, lease: Any) -> None:
    outbox.enqueue(SERVICE_KEY, trigger())
    with pytest.raises(ConfigError, match="lease") as info:
        outbox.claim("w", 10, lease=lease)
    assert info.value.setting == "lease"
    assert [row["state"] for row in rows(outbox)] == [PENDING], "nothing was leased"


def test_a_dead_workers_events_are_claimed_again_after_the_longest_lease(outbox: Outbox) -> None:
    outbox.enqueue(SERVICE_KEY, trigger())
    t = time.time()
    (held,) = outbox.claim("dead-worker", 10, lease=MAX_LEASE, now=t)
    assert outbox.claim("other", 10, lease=60, now=t + MAX_LEASE - 1) == []
    (again,) = outbox.claim("other", 10, lease=60, now=t + MAX_LEASE + 1)
    assert again.id == held.id


@pytest.mark.parametrize("limit", [*NOT_NUMBERS, -1, 1.0, 10.5, 10_001, 2**63])
def test_a_claim_refuses_a_bad_limit(outbox: Outbox, limit: Any) -> None:
    with pytest.raises(ConfigError, match="limit"):
        outbox.claim("w", limit, lease=60)


@pytest.mark.parametrize("now", [*[v for v in NOT_NUMBERS if v is not None], -1.0, 1e13])
def test_times_given_to_the_outbox_are_checked(outbox: Outbox, now: Any) -> None:
    outbox.enqueue(SERVICE_KEY, trigger())
    with pytest.raises(ConfigError, match="now"):
        outbox.claim("w", 10, lease=60, now=now)
    with pytest.raises(ConfigError, match="now"):
        outbox.stats(now=now)
    with pytest.raises(ConfigError, match="now"):
        outbox.purge_delivered(60, now=now)
    (claimed,) = outbox.claim("w", 10, lease=60)
    with pytest.raises(ConfigError, match="now"):
        outbox.record([outcome_for(claimed, DELIVERED, status=202)], now=now)
    assert [row["state"] for row in rows(outbox)] == [LEASED]


@pytest.mark.parametrize("worker", [None, 7, b"w", "", "x" * 256, "w\x00", "w\n", "w\x1b[2J", "\ud800", "\u0378"])
def test_a_worker_name_must_be_printable_text(outbox: Outbox, worker: Any) -> None:
    outbox.enqueue(SERVICE_KEY, trigger())
    with pytest.raises(ConfigError, match="worker"):
        outbox.claim(worker, 10, lease=60)
    with pytest.raises(ConfigError, match="worker"):
        outbox.leased_by(worker)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("next_attempt_at", math.nan),
        ("next_attempt_at", math.inf),
        ("next_attempt_at", -5.0),
        ("next_attempt_at", "soon"),
        ("next_attempt_at", True),
        ("pause_key_until", math.nan),
        ("pause_key_until", math.inf),
        ("state", "exploded"),
        ("state", LEASED),
        ("state", None),
    ],
)
def test_an_outcome_that_cannot_be_stored_as_meant_is_refused_whole(outbox: Outbox, field: str, value: Any) -> None:
    """SQLite stores NaN as NULL: a retry at NaN fails the NOT NULL column, and the worker would
    take that for a database outage and try again for ever."""
    outbox.enqueue_many([(SERVICE_KEY, trigger("a")), (SERVICE_KEY, trigger("b"))])
    first, second = outbox.claim("w", 10, lease=60)
    fields: dict[str, Any] = {"status": 503, "next_attempt_at": time.time() + 5}
    state = PENDING
    if field == "state":
        state = value
    else:
        fields[field] = value
    with pytest.raises(ConfigError, match=field):
        outbox.record([outcome_for(first, DELIVERED, status=202), outcome_for(second, state, **fields)])
    assert [row["state"] for row in rows(outbox)] == [LEASED, LEASED], "none of the batch was recorded"


def test_record_refuses_what_is_not_an_outcome(outbox: Outbox) -> None:
    with pytest.raises(ConfigError, match="Outcome"):
        outbox.record([{"event_id": 1}])  # type: ignore[list-item]


@pytest.mark.parametrize("older_than", [*NOT_NUMBERS, -1.0, 1e11])
def test_purge_refuses_a_bad_retention(outbox: Outbox, older_than: Any) -> None:
    outbox.enqueue(SERVICE_KEY, trigger())
    (claimed,) = outbox.claim("w", 10, lease=60)
    outbox.record([outcome_for(claimed, DELIVERED, status=202)])
    with pytest.raises(ConfigError, match="older_than"):
        outbox.purge_delivered(older_than)
    assert outbox.stats().delivered == 1, "a retention of -1 or NaN deletes nothing"


@pytest.mark.parametrize("limit", [*NOT_NUMBERS, 0, -3, 10_001])
def test_dead_refuses_a_bad_limit(outbox: Outbox, limit: Any) -> None:
    with pytest.raises(ConfigError, match="limit"):
        outbox.dead(limit=limit)


@pytest.mark.parametrize(
    "ids", ["12", b"12", [True], [1.0], ["1"], [0], [-1], [2**63], [None], [1, "2; DROP TABLE x"], ["\ud800"]]
)
def test_event_ids_are_checked(outbox: Outbox, ids: Any) -> None:
    outbox.enqueue(SERVICE_KEY, trigger())
    (claimed,) = outbox.claim("w", 10, lease=60)
    outbox.record([outcome_for(claimed, "dead", status=400)])
    for call in (outbox.states, outbox.requeue, outbox.superseded_dead):
        with pytest.raises(ConfigError, match="ids"):
            call(ids)
    assert outbox.stats().dead == 1


def test_many_ids_are_asked_in_chunks(outbox: Outbox) -> None:
    """Beyond SQLite's limit on bound parameters (32,766), in one call."""
    entries = outbox.enqueue_many([(SERVICE_KEY, trigger(f"k{i}")) for i in range(50)])
    wanted = [*range(100_000, 140_000), *(e.id for e in entries)]
    assert set(outbox.states(wanted)) == {e.id for e in entries}
    claimed = outbox.claim("w", 100, lease=60)
    outbox.record([outcome_for(e, "dead", status=400) for e in claimed])
    assert outbox.superseded_dead(wanted) == []
    assert outbox.requeue(wanted) == 50
    assert outbox.stats().pending == 50


def test_requeue_refuses_a_superseded_that_is_not_a_bool(outbox: Outbox) -> None:
    with pytest.raises(ConfigError, match="superseded"):
        outbox.requeue(superseded="no")  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["", "1abc", "a-b", "a b", 'a"; DROP TABLE x; --', "é", "a" * 49, None, 7, "\ud800"])
def test_a_table_prefix_must_be_a_plain_identifier(prefix: Any) -> None:
    with pytest.raises(ConfigError, match="table_prefix"):
        Outbox("sqlite://", table_prefix=prefix)


@given(lease=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.booleans(), st.text()))
@settings(max_examples=150)
def test_any_lease_is_taken_or_refused_and_a_taken_one_runs_out(lease: Any) -> None:
    outbox = Outbox("sqlite://")
    outbox.enqueue(SERVICE_KEY, trigger())
    t = 1_800_000_000.0
    if isinstance(lease, bool) or not isinstance(lease, int | float) or not 0 < lease <= MAX_LEASE:
        with pytest.raises(ConfigError, match="lease"):
            outbox.claim("w", 1, lease=lease, now=t)
        assert [row["state"] for row in rows(outbox)] == [PENDING]
        return
    claimed = outbox.claim("w", 1, lease=lease, now=t)
    assert 0 < lease <= MAX_LEASE
    assert len(claimed) == 1
    (row,) = rows(outbox)
    assert row["lease_until"] == t + float(lease), "stored as given, finite"
    assert len(outbox.claim("w2", 1, lease=60, now=t + float(lease) + 1)) == 1, "and it runs out"


# -- workers ----------------------------------------------------------------------------------


def worker(outbox: Outbox, **settings: Any) -> Worker:
    return Worker(outbox, sender=Sender(retry=RetryPolicy.no_retries()), **settings)


@pytest.mark.parametrize(
    ("name", "values"),
    [
        ("concurrency", [*NOT_NUMBERS, 0, -1, 2.0, 1025]),
        ("lease", [*NOT_NUMBERS, 0, -60, 5, MAX_LEASE + 1]),
        ("max_age", [*NOT_NUMBERS, 0, -1, 1e11]),
        ("rate_limit_per_key", [v for v in NOT_NUMBERS if v is not None] + [0, -120, 1e7]),
        ("keep_delivered", [*NOT_NUMBERS, -1, 1e11]),
        ("poll_interval", [*NOT_NUMBERS, 0, -0.5, 3601]),
        ("prefetch", [v for v in NOT_NUMBERS if v is not None] + [-1, 1.5, 10_001]),
        ("database_retry_max", [*NOT_NUMBERS, 0, -1, 3601]),
        ("name", [7, b"w", "", "x" * 256, "w\x00", "\ud800"]),
    ],
)
def test_a_worker_refuses_each_bad_setting(outbox: Outbox, name: str, values: list[Any]) -> None:
    for value in values:
        with pytest.raises(ConfigError, match=name) as info:
            worker(outbox, **{name: value})
        assert info.value.setting == name, value


@pytest.mark.parametrize(
    ("name", "value"),
    [("retry", "fast"), ("retry", RetryPolicy), ("sender", "requests"), ("rng", 7), ("rng", random)],
)
def test_a_worker_refuses_the_wrong_kind_of_object(outbox: Outbox, name: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=name):
        Worker(outbox, **{name: value})


def test_a_worker_refuses_what_is_not_an_outbox() -> None:
    with pytest.raises(ConfigError, match="outbox"):
        Worker("sqlite://")  # type: ignore[arg-type]


def test_good_settings_are_kept(outbox: Outbox) -> None:
    made = worker(outbox, concurrency=3, lease=30, max_age=60, rate_limit_per_key=None, keep_delivered=0,
                  poll_interval=0.01, prefetch=0, database_retry_max=1, name="w-1")  # fmt: skip
    assert (made.concurrency, made.lease, made.prefetch, made.limiter, made.name) == (3, 30.0, 0, None, "w-1")
    assert worker(outbox, concurrency=5).prefetch == 2


@pytest.mark.parametrize(
    ("per_minute", "burst"),
    [(math.nan, 10), (math.inf, 10), (0, 10), (-1, 10), ("120", 10), (True, 10), (120, 0), (120, 1.5), (120, True)],
)
def test_the_key_rate_limiter_refuses_bad_rates(per_minute: Any, burst: Any) -> None:
    with pytest.raises(ConfigError):
        KeyRateLimiter(per_minute, burst=burst)


@given(
    per_minute=st.floats(min_value=1e-3, max_value=1e6),
    burst=st.integers(min_value=1, max_value=1000),
    steps=st.lists(st.floats(min_value=0, max_value=1e4), max_size=30),
)
@settings(max_examples=100)
def test_the_key_rate_limiter_always_answers_a_finite_wait(per_minute: float, burst: int, steps: list[float]) -> None:
    now = [0.0]
    limiter = KeyRateLimiter(per_minute, burst=burst, clock=lambda: now[0])
    for step in steps:
        now[0] += step
        wait = limiter.take("k")
        assert math.isfinite(wait) and 0.0 <= wait <= 60.0 / per_minute + 1e-9


@given(
    settings_=st.fixed_dictionaries(
        {},
        optional={
            "concurrency": st.one_of(st.integers(-5, 2000), st.floats(allow_nan=True), st.booleans()),
            "lease": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 10**6)),
            "poll_interval": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-1, 5000)),
            "database_retry_max": st.floats(allow_nan=True, allow_infinity=True),
            "prefetch": st.one_of(st.none(), st.integers(-5, 20_000)),
            "rate_limit_per_key": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
        },
    )
)
@settings(max_examples=150)
def test_any_worker_settings_are_taken_whole_or_refused_with_a_config_error(settings_: dict[str, Any]) -> None:
    outbox = Outbox("sqlite://")
    failure: ConfigError | None = None
    try:
        made = worker(outbox, rng=random.Random(1), **settings_)
    except ConfigError as exc:
        failure = exc
    if failure is not None:
        assert failure.setting in settings_
        return
    for name in ("lease", "poll_interval", "database_retry_max"):
        assert math.isfinite(getattr(made, name)) and getattr(made, name) > 0
    assert 1 <= made.concurrency <= 1024 and 0 <= made.prefetch <= 10_000


# -- hostile outcomes and answers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_id", "1"),
        ("event_id", 1.0),
        ("event_id", True),
        ("event_id", 0),
        ("event_id", 2**64),
        ("lease_token", None),
        ("lease_token", b"token"),
        ("status", "202"),
        ("status", True),
        ("status", 99),
        ("status", 1000),
        ("status", math.nan),
        ("error", 7),
        ("error", b"HTTP 400"),
    ],
)
def test_an_outcome_of_the_wrong_shape_is_refused(outbox: Outbox, field: str, value: Any) -> None:
    """On PostgreSQL a str id fails in the database, and the worker would take that for an outage."""
    outbox.enqueue(SERVICE_KEY, trigger())
    (claimed,) = outbox.claim("w", 10, lease=60)
    outcome = dataclasses.replace(outcome_for(claimed, DELIVERED, status=202), **{field: value})
    with pytest.raises(ConfigError, match=field):
        outbox.record([outcome])
    assert [row["state"] for row in rows(outbox)] == [LEASED]


def test_replayed_forged_and_crossed_outcomes_count_for_nothing(outbox: Outbox) -> None:
    mine, theirs = outbox.enqueue_many([(SERVICE_KEY, trigger("a")), (SERVICE_KEY, trigger("b"))])
    (a,) = outbox.claim("w", 1, lease=60)
    (b,) = outbox.claim("other-worker", 1, lease=60)  # another lease token
    assert (a.id, b.id) == (mine.id, theirs.id)
    assert outbox.record([outcome_for(a, DEAD, status=400)]) == 1
    assert outbox.record([outcome_for(a, DELIVERED, status=202)]) == 0, "a replay changes nothing"
    forged = dataclasses.replace(outcome_for(b, DELIVERED, status=202), lease_token="0" * 32)
    crossed = dataclasses.replace(outcome_for(b, DELIVERED, status=202), lease_token=a.lease_token, event_id=b.id)
    unknown = dataclasses.replace(outcome_for(b, DELIVERED, status=202), event_id=2**62)
    assert outbox.record([forged, crossed, unknown]) == 0
    states = {row["id"]: row["state"] for row in rows(outbox)}
    assert states == {mine.id: DEAD, theirs.id: LEASED}


@pytest.mark.parametrize(
    "said",
    [
        b'{"message": "\\ud800 broken", "errors": ["\\udfff"]}',
        b'{"message": "line one\\nline two\\u0000\\u001b[2J", "errors": []}',
        b'{"message": "' + b"x" * 100_000 + b'"}',
        b"\xff\xfe not json \x00",
        b'{"message": ["not", "text"], "errors": {"a": 1}}',
    ],
)
def test_a_hostile_answer_is_recorded_not_fatal_to_the_worker(outbox: Outbox, said: bytes) -> None:
    """A 400 whose message SQLite's driver cannot encode (a lone surrogate, valid in JSON) made
    ``record`` raise UnicodeEncodeError, which killed the worker, and the next one, for ever."""
    outbox.enqueue(SERVICE_KEY, trigger())

    class Hostile:
        def post(self, *args: Any) -> HttpResponse:
            return HttpResponse(400, said, {"content-type": "application/json"})

        def close(self) -> None:
            pass

    made = Worker(outbox, sender=Sender(transport=Hostile(), retry=RetryPolicy.no_retries()), rate_limit_per_key=None)
    assert made.run_once() == 1
    (event,) = outbox.dead()
    assert event.reason is not None and len(event.reason) <= 500
    assert event.reason.isprintable()
