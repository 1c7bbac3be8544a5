"""Workers: claim due events from the outbox, deliver them, record what happened.

One worker process runs a loop in its main thread that talks to the database (promote,
claim, record, in batches) and a pool of ``concurrency`` threads that make the HTTP
requests, one attempt each: retries are scheduled in the outbox, not slept on, so a slow key
never holds a thread. Events of different groups go out in parallel; each group in order.

- A 2xx marks the event delivered; 400 and other final refusals send it to the dead-letter
  state with PagerDuty's reason (and mark the integration failing when a store is given).
- 429, 5xx, 408 and network failures schedule a retry: after ``Retry-After`` when the server
  sent one, else after an exponential backoff with full jitter. A 429 pauses every event of
  that routing key (in the database, so every worker sees it); other keys carry on.
- A per-key limiter (120 events a minute by default, as PagerDuty) keeps each worker under
  the limit; events over it are given back, untried, until the key has room.
- Events older than ``max_age`` go to the dead-letter state instead of being sent late.
- On SIGTERM or SIGINT (with ``handle_signals``) the worker stops claiming, lets requests
  under way finish, records them, and gives back what it had not started.
- When the database is unreachable (a restart, a fail-over, a network cut) the worker keeps
  the outcomes it could not record, logs a warning, waits (doubling up to
  ``database_retry_max`` seconds) and carries on when the database is back. Requests under way
  finish meanwhile; nothing new is claimed.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import queue
import random
import signal
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from sqlalchemy.exc import OperationalError, ProgrammingError, SQLAlchemyError

from pdconnect.database import driver_message
from pdconnect.errors import ConfigError
from pdconnect.keys import redact
from pdconnect.outbox import (
    DEAD,
    DELIVERED,
    MAX_BATCH,
    MAX_LEASE,
    PENDING,
    Outbox,
    OutboxEvent,
    Outcome,
    label,
    number,
    outcome_for,
    whole,
)
from pdconnect.retry import RetryPolicy, Verdict
from pdconnect.sender import Sender
from pdconnect.storage import IntegrationStore, StoredIntegration
from pdconnect.transport import default_worker_transport

logger = logging.getLogger("pdconnect")

#: The most events a minute :class:`KeyRateLimiter` (and ``rate_limit_per_key``) allows a key.
MAX_RATE = 1e6
#: The longest a :class:`KeyRateLimiter` holds an event back, in seconds (a day).
MAX_LIMITER_WAIT = MAX_LEASE
#: The most request threads one worker runs.
MAX_CONCURRENCY = 1024
#: The longest retention, event age and wait a worker takes, in seconds (about 300 years).
_FOREVER = 1e10


class KeyRateLimiter:
    """A token bucket per routing key: ``per_minute`` events a minute, bursts of ``burst``.

    ``take`` returns 0 when the event may go now, or how many seconds until it may.
    """

    def __init__(self, per_minute: float, *, burst: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        # NaN passed the old "<= 0" check and let every event through; infinity did the same.
        per_minute = number(per_minute, name="per_minute", minimum=0.0, maximum=MAX_RATE, above=True)
        self.rate = per_minute / 60.0
        self.burst = float(whole(burst, name="burst", minimum=1, maximum=MAX_BATCH))
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        now = self._clock()
        with self._lock:
            tokens, stamp = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + max(0.0, now - stamp) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            # Capped: a tiny rate (1e-12 a minute) would give a time the outbox cannot store.
            missing = 1.0 - tokens
            if missing >= MAX_LIMITER_WAIT * self.rate:  # also a rate that underflowed to 0
                return MAX_LIMITER_WAIT
            return missing / self.rate


@dataclass
class WorkerCounters:
    """What this worker process has done since it started (Prometheus counters)."""

    delivered: int = 0
    retried: int = 0
    dead: int = 0
    given_back: int = 0
    attempts: int = 0
    #: Times the loop found the database unavailable and waited for it.
    database_errors: int = 0
    started_at: float = field(default_factory=time.time)
    recent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=120), repr=False)

    def rate(self, window: float = 10.0) -> float:
        """Deliveries a second over the last ``window`` seconds."""
        now = time.time()
        total = sum(n for at, n in self.recent if at >= now - window)
        return total / window


class Worker:
    """Delivers an :class:`~pdconnect.outbox.Outbox`'s events.

    ``sender`` makes the requests (by default a plain one over the leaner ``http.client``
    transport, or ``requests`` when a proxy is configured: the bodies were prepared at enqueue
    time, with the vendor's fields). ``retry`` gives the backoff between attempts
    (its ``max_attempts`` and ``deadline`` do not apply: an event is retried until it is
    ``max_age`` seconds old). ``rate_limit_per_key`` is events a minute per routing key for
    this process (``None``: no limit). ``integrations``, when given, is told about keys that
    PagerDuty refuses (:meth:`~pdconnect.storage.IntegrationStore.mark_failing`), and marks an
    integration broken when PagerDuty no longer knows its key
    (:meth:`~pdconnect.storage.IntegrationStore.mark_broken`); ``on_integration_broken`` is then
    called once, from the worker's loop, with the broken record (to tell its owner). ``prefetch``
    events (half the concurrency by default) are claimed ahead, queued for the next free thread.
    ``database_retry_max`` caps the wait between tries while the database is unavailable.
    """

    def __init__(
        self,
        outbox: Outbox,
        *,
        sender: Sender | None = None,
        concurrency: int = 8,
        lease: float = 60.0,
        retry: RetryPolicy | None = None,
        max_age: float = 24 * 3600.0,
        rate_limit_per_key: float | None = 120.0,
        keep_delivered: float = 3600.0,
        poll_interval: float = 0.5,
        integrations: IntegrationStore | None = None,
        on_integration_broken: Callable[[StoredIntegration], None] | None = None,
        name: str | None = None,
        prefetch: int | None = None,
        rng: random.Random | None = None,
        database_retry_max: float = 30.0,
    ) -> None:
        if not isinstance(outbox, Outbox):
            raise ConfigError(f"outbox must be an Outbox, not a {type(outbox).__name__}", setting="outbox")
        for setting, value, kind in (
            ("sender", sender, Sender),
            ("retry", retry, RetryPolicy),
            ("rng", rng, random.Random),
        ):
            if value is not None and not isinstance(value, kind):
                raise ConfigError(f"{setting} must be a {kind.__name__}, not a {type(value).__name__}", setting=setting)
        concurrency = whole(concurrency, name="concurrency", minimum=1, maximum=MAX_CONCURRENCY)
        lease = number(lease, name="lease", minimum=0.0, maximum=MAX_LEASE, above=True)
        max_age = number(max_age, name="max_age", minimum=0.0, maximum=_FOREVER, above=True)
        if rate_limit_per_key is not None:
            rate_limit_per_key = number(
                rate_limit_per_key, name="rate_limit_per_key", minimum=0.0, maximum=MAX_RATE, above=True
            )
        keep_delivered = number(keep_delivered, name="keep_delivered", minimum=0.0, maximum=_FOREVER)
        poll_interval = number(poll_interval, name="poll_interval", minimum=0.0, maximum=3600.0, above=True)
        database_retry_max = number(
            database_retry_max, name="database_retry_max", minimum=0.0, maximum=3600.0, above=True
        )
        if prefetch is not None:
            prefetch = whole(prefetch, name="prefetch", minimum=0, maximum=MAX_BATCH)
        if name is not None:
            name = label(name, name="name")
        if on_integration_broken is not None and integrations is None:
            raise ValueError("on_integration_broken needs the integrations store that records the mark")
        self._owns_sender = sender is None
        self.sender = (
            sender
            if sender is not None
            else Sender(retry=RetryPolicy.no_retries(), transport=default_worker_transport())
        )
        # Never start a request with less than this left of the lease: it may take its timeouts.
        self.lease_margin = sum(self.sender.timeout) + 1.0
        if lease < 2 * self.lease_margin:
            raise ConfigError(
                f"the lease must be at least {2 * self.lease_margin:g} seconds (twice a request's timeouts)",
                setting="lease",
            )
        self.outbox = outbox
        self.concurrency = concurrency
        # Claimed events queued behind the busy threads, so a thread that finishes starts the
        # next one at once instead of waiting for the loop to claim it.
        self.prefetch = concurrency // 2 if prefetch is None else prefetch
        self.lease = lease
        self.retry = retry if retry is not None else RetryPolicy(base_delay=1.0, max_delay=300.0)
        self.max_age = max_age
        self.limiter = KeyRateLimiter(rate_limit_per_key) if rate_limit_per_key is not None else None
        self.keep_delivered = keep_delivered
        self.poll_interval = poll_interval
        self.batch_window = 0.005
        self.integrations = integrations
        self.on_integration_broken = on_integration_broken
        # Ids of events whose key PagerDuty did not know, from the request threads to the loop.
        self._unknown_key_events: set[int] = set()
        self.name = name if name is not None else f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.counters = WorkerCounters()
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 -- jitter, not secrecy
        self._results: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._last_purge = 0.0
        self._last_tick = 0.0
        self.database_retry_max = database_retry_max
        # Outcomes drained from the results queue that the database has not taken yet.
        self._unrecorded: list[Outcome] = []

    def __repr__(self) -> str:
        return f"Worker(name={self.name!r}, concurrency={self.concurrency}, {self.outbox!r})"

    # -- control -----------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish: no more claims; work under way completes."""
        self._stopping.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def _handle_signal(self, signum: int, frame: FrameType | None) -> None:
        logger.info("pdconnect: worker %s stopping on signal %d", self.name, signum)
        self.stop()

    # -- the loop ----------------------------------------------------------------------------

    def run(
        self,
        *,
        until_empty: bool = False,
        handle_signals: bool = False,
        on_tick: Callable[[Worker], None] | None = None,
    ) -> None:
        """Deliver until :meth:`stop` (or, with ``until_empty``, until nothing is left to do).

        ``on_tick`` is called about once a second (the command line prints progress there).
        """
        previous: dict[signal.Signals, Any] = {}
        if handle_signals:
            for each in (signal.SIGTERM, signal.SIGINT):
                previous[each] = signal.signal(each, self._handle_signal)
        in_flight: dict[int, tuple[OutboxEvent, Future[None]]] = {}
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="pdconnect-worker")
        self._last_tick = 0.0
        self.outbox.refresh_statistics()
        self.outbox.add_listener(self._wake.set)
        database_wait = 0.0
        try:
            while not self.stopping:
                try:
                    if self._turn(in_flight, pool, until_empty=until_empty, on_tick=on_tick):
                        break
                    database_wait = 0.0
                except SQLAlchemyError as exc:
                    if _schema_error(exc):
                        # Not an outage: the table is not an outbox this pdconnect can use, and
                        # trying again would fail the same way forever.
                        logger.error(
                            "pdconnect: worker %s stopped: the outbox table cannot be used (%s)",
                            self.name,
                            driver_message(exc),
                        )
                        raise
                    database_wait = min(self.database_retry_max, max(0.25, database_wait * 2))
                    self.counters.database_errors += 1
                    logger.warning(
                        "pdconnect: worker %s cannot reach the outbox's database (%s); %d outcome(s) kept, "
                        "trying again in %.2g s",
                        self.name,
                        driver_message(exc),
                        len(self._unrecorded) + self._results.qsize(),
                        database_wait,
                    )
                    self._stopping.wait(database_wait)
        finally:
            self.outbox.remove_listener(self._wake.set)
            self._shutdown(pool, in_flight)
            self._close_connections()
            for each, handler in previous.items():
                signal.signal(each, handler)

    def _turn(
        self,
        in_flight: dict[int, tuple[OutboxEvent, Future[None]]],
        pool: ThreadPoolExecutor,
        *,
        until_empty: bool,
        on_tick: Callable[[Worker], None] | None,
    ) -> bool:
        """One turn of the loop: record, claim, submit, tick. True when ``until_empty`` is done."""
        if in_flight and 0 < self._results.qsize() < len(in_flight) // 4:
            # Busy: let a few more outcomes arrive, so one transaction records a batch.
            self._wake.wait(self.batch_window)
            self._wake.clear()
        recorded = self._record(in_flight)
        free = self.concurrency + self.prefetch - len(in_flight)
        claimed = self.outbox.claim(self.name, free, lease=self.lease) if free > 0 else []
        for event in claimed:
            in_flight[event.id] = (event, pool.submit(self._deliver, event))
        self._housekeeping()
        now = time.monotonic()
        if on_tick is not None and now - self._last_tick >= 1.0:
            self._last_tick = now
            on_tick(self)
        if until_empty and not in_flight and not claimed and not recorded and self.outbox.stats().depth == 0:
            return True
        if not claimed and not recorded:
            self._wake.wait(self.poll_interval)  # the loop's tick; a finished request wakes it early
            self._wake.clear()
        return False

    def run_once(self) -> int:
        """Claim what is due, deliver it, record the outcomes, and return (for tests and cron jobs)."""
        in_flight: dict[int, tuple[OutboxEvent, Future[None]]] = {}
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            for event in self.outbox.claim(self.name, self.concurrency, lease=self.lease):
                in_flight[event.id] = (event, pool.submit(self._deliver, event))
        self._close_connections()
        return self._record(in_flight)

    def _close_connections(self) -> None:
        # The pool's threads are gone; their kept-alive connections would linger until collected.
        if self._owns_sender:
            self.sender.close()

    def _shutdown(self, pool: ThreadPoolExecutor, in_flight: dict[int, tuple[OutboxEvent, Future[None]]]) -> None:
        not_started = [event for event, future in in_flight.values() if future.cancel()]
        pool.shutdown(wait=True)
        for event in not_started:
            in_flight.pop(event.id, None)
        try:
            self._record(in_flight)
            if not_started:
                released = self.outbox.release(not_started)
                self.counters.given_back += released
            for event, _ in list(in_flight.values()):
                self.outbox.release([event])  # anything whose outcome never arrived
        except SQLAlchemyError as exc:
            # Their leases run out and another worker sends them again: at least once, never lost.
            logger.error(
                "pdconnect: worker %s stopped without recording %d outcome(s) (%s); "
                "their events are sent again when their leases run out",
                self.name,
                len(self._unrecorded) + len(not_started),
                driver_message(exc),
            )

    def _record(self, in_flight: dict[int, tuple[OutboxEvent, Future[None]]]) -> int:
        outcomes = self._unrecorded
        self._unrecorded = []
        while True:
            try:
                outcomes.append(self._results.get_nowait())
            except queue.Empty:
                break
        if not outcomes:
            return 0
        outcomes = [_recordable(outcome, self.retry.max_delay) for outcome in outcomes]
        try:
            self.outbox.record(outcomes)
        except SQLAlchemyError:
            self._unrecorded = outcomes  # kept for the next try; their events stay in flight
            raise
        delivered = 0
        for outcome in outcomes:
            entry = in_flight.pop(outcome.event_id, None)
            if outcome.attempted:
                self.counters.attempts += 1
            if outcome.state == DELIVERED:
                delivered += 1
            elif outcome.state == DEAD:
                self.counters.dead += 1
                self._mark_failing(entry[0] if entry else None, outcome)
            elif outcome.attempted:
                self.counters.retried += 1
            else:
                self.counters.given_back += 1
        self.counters.delivered += delivered
        self.counters.recent.append((time.time(), delivered))
        return len(outcomes)

    def _mark_failing(self, event: OutboxEvent | None, outcome: Outcome) -> None:
        unknown_key = outcome.event_id in self._unknown_key_events
        self._unknown_key_events.discard(outcome.event_id)
        if self.integrations is None or event is None or not event.owner_id or not event.integration_id:
            return
        if outcome.status is not None and 400 <= outcome.status < 500:
            try:
                self.integrations.mark_failing(event.owner_id, event.integration_id, outcome.error or "refused")
            except SQLAlchemyError as exc:  # a hint for the vendor's UI; the dead letter is recorded
                logger.warning(
                    "pdconnect: could not mark integration %s failing (%s)", event.integration_id, driver_message(exc)
                )
        if unknown_key:
            self._mark_broken(self.integrations, event.owner_id, event.integration_id, event, outcome)

    def _mark_broken(
        self, store: IntegrationStore, owner_id: str, integration_id: str, event: OutboxEvent, outcome: Outcome
    ) -> None:
        reason = outcome.error or "invalid routing key"
        try:
            newly = store.mark_broken(owner_id, integration_id, reason, integration_key=event.routing_key)
            record = store.get(owner_id, integration_id) if newly else None
        except SQLAlchemyError as exc:  # the dead letter is recorded; the next refusal tries again
            logger.warning(
                "pdconnect: could not mark integration %s broken (%s)", event.integration_id, driver_message(exc)
            )
            return
        except Exception:  # a vendor's own store (one without mark_broken, say) must not stop deliveries
            logger.exception("pdconnect: could not mark integration %s broken", event.integration_id)
            return
        if record is None or self.on_integration_broken is None:
            return
        try:
            self.on_integration_broken(record)
        except Exception:  # the vendor's hook must not stop deliveries
            logger.exception("pdconnect: on_integration_broken failed for integration %s", event.integration_id)

    def _housekeeping(self) -> None:
        """At start and then every 30 s: purge old deliveries, and give stranded groups a head."""
        now = time.monotonic()
        if now - self._last_purge >= 30.0:
            self._last_purge = now
            self.outbox.purge_delivered(self.keep_delivered)
            self.outbox.repair_heads()

    # -- one event ---------------------------------------------------------------------------

    def _deliver(self, event: OutboxEvent) -> None:
        try:
            outcome = self._attempt(event)
        except Exception as exc:  # a bug must not lose the event: give it back for a retry
            logger.exception("pdconnect: worker failed on outbox event %d", event.id)
            outcome = outcome_for(event, PENDING, attempted=False, error=f"worker error: {type(exc).__name__}")
        self._results.put(outcome)
        self._wake.set()

    def _attempt(self, event: OutboxEvent) -> Outcome:
        now = time.time()
        if self.stopping:  # claimed ahead, never started: give it back for the next worker
            return outcome_for(event, PENDING, attempted=False, next_attempt_at=now)
        if now - event.created_at > self.max_age:
            return self._log(
                event, outcome_for(event, DEAD, attempted=False, error=f"expired: older than {self.max_age:g} s")
            )
        if event.lease_until - now < self.lease_margin:
            return outcome_for(event, PENDING, attempted=False, next_attempt_at=now)
        if self.limiter is not None:
            wait = self.limiter.take(event.routing_key)
            if wait > 0:
                return outcome_for(event, PENDING, attempted=False, next_attempt_at=now + wait)
        result = self.sender.attempt(event.prepared)
        if result.verdict is Verdict.DELIVERED:
            return self._log(event, outcome_for(event, DELIVERED, status=result.status))
        reason = result.reason
        if result.message:
            reason += f": {result.message}"
        if result.errors:
            reason += " (" + "; ".join(result.errors) + ")"
        if result.verdict is Verdict.REJECTED:
            if result.invalid_key:
                self._unknown_key_events.add(event.id)
                reason = f"PagerDuty no longer knows this integration key; reconnect the integration ({reason})"
            return self._log(event, outcome_for(event, DEAD, status=result.status, error=reason))
        delay = self.retry.wait(
            event.attempts + 1, self._rng, retry_after=result.retry_after, rate_limited=result.rate_limited
        )
        if not math.isfinite(delay) or delay < 0:  # never store a retry time the queue cannot order
            delay = self.retry.max_delay
        retry_at = time.time() + delay
        pause = retry_at if result.rate_limited else None
        return self._log(
            event,
            outcome_for(
                event, PENDING, status=result.status, error=reason, next_attempt_at=retry_at, pause_key_until=pause
            ),
        )

    def _log(self, event: OutboxEvent, outcome: Outcome) -> Outcome:
        level = logging.INFO if outcome.state == DELIVERED else logging.WARNING
        if outcome.state == DEAD:
            level = logging.ERROR
        if logger.isEnabledFor(level):
            what = {DELIVERED: "delivered", DEAD: "dead-lettered", PENDING: "will retry"}[outcome.state]
            logger.log(
                level,
                "pdconnect: outbox event %d (%s %s, key %s) %s after %d attempt(s)%s",
                event.id,
                event.prepared.kind.value,
                event.prepared.action,
                redact(event.routing_key),
                what,
                event.attempts + (1 if outcome.attempted else 0),
                f": {outcome.error}" if outcome.error else "",
                extra={
                    "pdconnect_outbox": {
                        "event_id": event.id,
                        "outcome": outcome.state,
                        "status": outcome.status,
                        "attempts": event.attempts + (1 if outcome.attempted else 0),
                        "key": redact(event.routing_key),
                        "dedup_key": event.prepared.dedup_key,
                        "action": event.prepared.action,
                        "worker": self.name,
                    }
                },
            )
        return outcome


def _recordable(outcome: Outcome, max_delay: float) -> Outcome:
    """``outcome`` with its times made storable: one bad time must not stop a batch's deliveries
    from being recorded (they would be sent again), nor stop the worker."""
    limit = time.time() + MAX_LEASE
    changes: dict[str, float] = {}
    for name in ("next_attempt_at", "pause_key_until"):
        value = getattr(outcome, name)
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= limit):
            changes[name] = min(limit, time.time() + max_delay)
    return dataclasses.replace(outcome, **changes) if changes else outcome  # type: ignore[arg-type]


def _schema_error(exc: SQLAlchemyError) -> bool:
    """Whether ``exc`` says the table's shape is wrong (a missing table or column), not that the
    database is away: PostgreSQL's undefined table or column, SQLite's "no such table/column"."""
    if isinstance(exc, ProgrammingError) and getattr(exc.orig, "sqlstate", None) in _SCHEMA_STATES:
        return True
    if isinstance(exc, OperationalError):
        text = driver_message(exc)
        return text.startswith(("no such table", "no such column")) or " has no column named " in text
    return False


# PostgreSQL's SQLSTATEs for an undefined table and an undefined column.
_SCHEMA_STATES = ("42P01", "42703")
