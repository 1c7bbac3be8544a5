"""Workers delivering the outbox to the sandbox (in this process), and their rules."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
import sqlalchemy as sa

from pdconnect import AlertEvent, EventsApi, RetryPolicy, Sender, integration_from_key
from pdconnect.outbox import DELIVERED, Outbox, outcome_for
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.storage import MemoryIntegrationStore
from pdconnect.transport import HttpResponse
from pdconnect.worker import KeyRateLimiter, Worker
from tests.conftest import OTHER_SERVICE_KEY, SERVICE_KEY, FakeClock, unique_table

FAST_RETRY = RetryPolicy(base_delay=0.01, max_delay=0.05)


@pytest.fixture(params=["sqlite", "postgresql"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> Iterator[Outbox]:
    sender = Sender(client="Acme", events_base_url=pagerduty_sandbox.url)
    if request.param == "sqlite":
        yield Outbox(f"sqlite:///{tmp_path / 'outbox.db'}", sender=sender)
    else:
        engine = request.getfixturevalue("postgres_engine")
        made = Outbox(engine, sender=sender, table_prefix=unique_table("pdc_outbox"))
        yield made
        made.drop_tables()


def sequence(group: str) -> list[AlertEvent]:
    """An incident's life: open, add to it, acknowledge, resolve, then a new one."""
    return [
        AlertEvent.trigger(f"{group} down", source="h", severity="critical", dedup_key=group),
        AlertEvent.trigger(f"{group} still down", source="h", severity="critical", dedup_key=group),
        AlertEvent.acknowledge(group),
        AlertEvent.resolve(group),
        AlertEvent.trigger(f"{group} down again", source="h", severity="critical", dedup_key=group),
    ]


def accepted_actions(sandbox: PagerDutySandbox, key: str, group: str) -> list[str]:
    """What the sandbox accepted for one group, with consecutive repeats (re-sends) collapsed."""
    seen: list[tuple[str, str]] = []
    for record in sandbox.received(routing_key=key):
        if record["status"] != 202 or record["dedup_key"] != group:
            continue
        entry = (record["action"], str(record["request"].get("payload", {}).get("summary")))
        if not seen or seen[-1] != entry:
            seen.append(entry)
    return [action for action, _ in seen]


def test_delivers_every_event_in_order_through_faults(outbox: Outbox, pagerduty_sandbox: PagerDutySandbox) -> None:
    pagerduty_sandbox.set_settings(rate_limit=None)
    pagerduty_sandbox.set_faults("429=0.08,429-retry-after=0.02,retry-after=1,503=0.08,drop=0.05,seed=11")
    key, other = pagerduty_sandbox.service_key("Checkout API"), pagerduty_sandbox.service_key("Database")
    groups = [(key, f"g{i}") for i in range(4)] + [(other, f"g{i}") for i in range(2)]
    items = [(k, event) for round_ in range(5) for k, g in groups for event in [sequence(g)[round_]]]
    outbox.enqueue_many(items)
    worker = Worker(outbox, sender=Sender(retry=RetryPolicy.no_retries()), concurrency=6, retry=FAST_RETRY,
                    rate_limit_per_key=None, poll_interval=0.05)  # fmt: skip
    worker.run(until_empty=True)
    stats = outbox.stats()
    assert (stats.delivered, stats.dead, stats.depth) == (30, 0, 0)
    assert worker.counters.delivered == 30
    assert worker.counters.retried > 0, "the faults were met"
    for k, group in groups:
        assert accepted_actions(pagerduty_sandbox, k, group) == [
            "trigger",
            "trigger",
            "acknowledge",
            "resolve",
            "trigger",
        ]
        mine = [i for i in pagerduty_sandbox.incidents_for(group) if i["alerts"][0]["routing_key"] == k]
        assert [i["status"] for i in mine] == ["resolved", "triggered"], "exactly what the sequence implies"


def test_a_refused_event_goes_dead_with_the_reason_and_marks_the_key(outbox: Outbox) -> None:
    store = MemoryIntegrationStore()
    unknown = store.save(integration_from_key("f" * 32, owner_id="org-1", events_api=EventsApi.V2))
    outbox.enqueue(unknown, AlertEvent.trigger("down", source="h", severity="critical", dedup_key="x"))
    worker = Worker(outbox, concurrency=2, integrations=store, rate_limit_per_key=None)
    worker.run(until_empty=True)
    (dead,) = outbox.dead()
    assert "HTTP 400" in (dead.reason or "")
    assert "Invalid routing key" in (dead.reason or "")
    assert worker.counters.dead == 1
    failing = store.get("org-1", unknown.id)
    assert failing is not None
    assert failing.failing


def test_old_events_expire_instead_of_paging_late(outbox: Outbox, pagerduty_sandbox: PagerDutySandbox) -> None:
    outbox.enqueue(pagerduty_sandbox.service_key(), AlertEvent.trigger("down", source="h", severity="critical"))
    with outbox.engine.begin() as conn:
        conn.execute(sa.update(outbox.events).values(created_at=time.time() - 7200))
    Worker(outbox, max_age=3600, rate_limit_per_key=None).run(until_empty=True)
    (dead,) = outbox.dead()
    assert dead.reason == "expired: older than 3600 s"
    assert dead.attempts == 0
    assert pagerduty_sandbox.received() == []


def test_a_429_with_retry_after_pauses_only_its_key(tmp_path: Path) -> None:
    outbox = Outbox(f"sqlite:///{tmp_path / 'o.db'}")
    outbox.enqueue_many(
        [
            (SERVICE_KEY, AlertEvent.trigger("a", source="h", severity="info", dedup_key="a")),
            (OTHER_SERVICE_KEY, AlertEvent.trigger("b", source="h", severity="info", dedup_key="b")),
        ]
    )
    with responses.RequestsMock() as mock:

        def answer(request: Any) -> tuple[int, dict[str, str], str]:
            if SERVICE_KEY.encode() in request.body:
                return 429, {"Retry-After": "30"}, ""
            return 202, {}, '{"status": "success", "dedup_key": "b"}'

        mock.add_callback(responses.POST, "https://events.pagerduty.com/v2/enqueue", callback=answer)
        started = time.time()
        mocked = Sender(retry=RetryPolicy.no_retries())  # requests, so that responses answers
        assert Worker(outbox, sender=mocked, rate_limit_per_key=None).run_once() == 2
    stats = outbox.stats()
    assert (stats.delivered, stats.pending, stats.paused_keys) == (1, 1, 1)
    with outbox.engine.connect() as conn:
        row = conn.execute(sa.select(outbox.events).where(outbox.events.c.routing_key == SERVICE_KEY)).one()
        pause = conn.execute(sa.select(outbox.pauses.c.paused_until)).scalar_one()
    assert row.next_attempt_at == pytest.approx(started + 30, abs=2)
    assert pause == pytest.approx(started + 30, abs=2)
    assert row.attempts == 1
    assert row.last_status == 429


def test_the_per_key_limiter_gives_events_back_untried(tmp_path: Path) -> None:
    outbox = Outbox(f"sqlite:///{tmp_path / 'o.db'}")
    outbox.enqueue_many(
        [(SERVICE_KEY, AlertEvent.trigger("a", source="h", severity="info", dedup_key=f"k{i}")) for i in range(15)]
    )
    with responses.RequestsMock() as mock:
        mock.add(responses.POST, "https://events.pagerduty.com/v2/enqueue", json={"status": "success"}, status=202)
        worker = Worker(outbox, sender=Sender(retry=RetryPolicy.no_retries()), concurrency=20, rate_limit_per_key=60)
        assert worker.run_once() == 15
        assert len(mock.calls) == 10, "a burst of ten, then one a second"
    assert worker.counters.given_back == 5
    assert outbox.stats().pending == 5
    with outbox.engine.connect() as conn:
        attempts = conn.execute(
            sa.select(sa.func.max(outbox.events.c.attempts)).where(outbox.events.c.state == "pending")
        ).scalar()
    assert attempts == 0


def test_key_rate_limiter() -> None:
    clock = FakeClock()
    limiter = KeyRateLimiter(120, burst=2, clock=clock)
    assert [limiter.take("k"), limiter.take("k")] == [0.0, 0.0]
    assert limiter.take("k") == pytest.approx(0.5)
    assert limiter.take("other") == 0.0
    clock.advance(0.5)
    assert limiter.take("k") == 0.0
    with pytest.raises(ValueError):
        KeyRateLimiter(0)


class BlockingTransport:
    """Holds every request until released, to stop a worker mid-request."""

    def __init__(self, expected: int) -> None:
        self.entered = threading.Event()  # set once ``expected`` requests are under way
        self.release = threading.Event()
        self.calls = 0
        self.expected = expected
        self.lock = threading.Lock()

    def post(self, url: str, body: bytes, headers: Any, timeout: Any) -> HttpResponse:
        with self.lock:
            self.calls += 1
            if self.calls >= self.expected:
                self.entered.set()
        self.release.wait(30)
        return HttpResponse(status=202, body=b'{"status":"success"}')

    def close(self) -> None:
        pass


def test_stop_lets_requests_under_way_finish(tmp_path: Path) -> None:
    outbox = Outbox(f"sqlite:///{tmp_path / 'o.db'}")
    outbox.enqueue_many(
        [(SERVICE_KEY, AlertEvent.trigger("a", source="h", severity="info", dedup_key=f"k{i}")) for i in range(5)]
    )
    transport = BlockingTransport(expected=2)
    worker = Worker(outbox, sender=Sender(transport=transport), concurrency=2, rate_limit_per_key=None)
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert transport.entered.wait(10)
    worker.stop()
    transport.release.set()
    thread.join(10)
    assert not thread.is_alive()
    stats = outbox.stats()
    assert stats.delivered == transport.calls == 2
    assert (stats.pending, stats.leased) == (3, 0), "nothing is left leased to a stopped worker"
    assert worker.counters.given_back == 1, "the event claimed ahead was given back untried"


def test_a_worker_bug_gives_the_event_back(tmp_path: Path) -> None:
    outbox = Outbox(f"sqlite:///{tmp_path / 'o.db'}")
    outbox.enqueue(SERVICE_KEY, AlertEvent.trigger("a", source="h", severity="info"))

    class Broken:
        def post(self, *args: Any) -> HttpResponse:
            raise RuntimeError("bug")

        def close(self) -> None:
            pass

    worker = Worker(outbox, sender=Sender(transport=Broken()), rate_limit_per_key=None)
    assert worker.run_once() == 1
    stats = outbox.stats()
    assert (stats.pending, stats.dead, stats.delivered) == (1, 0, 0)


def test_bad_settings() -> None:
    outbox = Outbox("sqlite://")
    with pytest.raises(ValueError, match="concurrency"):
        Worker(outbox, concurrency=0)
    with pytest.raises(ValueError, match="lease"):
        Worker(outbox, lease=5)


def test_delivered_rows_are_purged_later(outbox: Outbox, pagerduty_sandbox: PagerDutySandbox) -> None:
    """A delivered row is kept ``keep_delivered`` seconds, then the worker's purge deletes it.

    Every step is decided by the test, not by when the loop's housekeeping happens to run:
    the run keeps its delivery (a long ``keep_delivered``), and the purge is then run with an
    explicit clock on each side of the retention.
    """
    entry = outbox.enqueue(pagerduty_sandbox.service_key(), AlertEvent.resolve("nothing-open"))
    worker = Worker(outbox, keep_delivered=3600, rate_limit_per_key=None)
    worker.run(until_empty=True)
    with outbox.engine.connect() as conn:
        row = conn.execute(sa.select(outbox.events).where(outbox.events.c.id == entry.id)).one()
    assert (row.state, worker.counters.delivered) == (DELIVERED, 1), (row.state, row.last_status, row.last_error)
    assert outbox.purge_delivered(3600, now=row.finished_at + 3599) == 0, "kept within the retention"
    assert outbox.purge_delivered(3600, now=row.finished_at + 3601) == 1, "purged after it"
    assert outbox.stats().delivered == 0
    assert outbox.states([entry.id]) == {}


class _Announcements(logging.Handler):
    """Counts the worker's 'cannot reach the database' warnings, and wakes a waiting test."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        if "cannot reach the outbox's database" in record.getMessage():
            with self.changed:
                self.count += 1
                self.changed.notify_all()

    def wait_for(self, count: int, timeout: float) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.count >= count, timeout), "the worker never met the outage"


def test_a_database_outage_pauses_the_worker_and_loses_nothing(
    postgres_engine: sa.Engine, pagerduty_sandbox: PagerDutySandbox
) -> None:
    """PostgreSQL refuses the worker's role mid-run (its sessions killed, logins refused), then
    takes it back: the worker waits, keeps what it could not record, and finishes with every
    event delivered once, in order."""
    role, prefix = unique_table("pdc_role"), unique_table("pdc_outage")
    admin = postgres_engine.execution_options(isolation_level="AUTOCOMMIT")

    def logins(allowed: bool) -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER ROLE "{role}" {"LOGIN" if allowed else "NOLOGIN"}'))
            if not allowed:
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"),
                             {"r": role})  # fmt: skip

    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN SUPERUSER'))
    setup = Outbox(postgres_engine, sender=Sender(events_base_url=pagerduty_sandbox.url), table_prefix=prefix)
    worker_outbox = Outbox(
        postgres_engine.url.set(username=role).render_as_string(hide_password=False),
        table_prefix=prefix,
        create_tables=False,
    )
    announcements = _Announcements()
    logging.getLogger("pdconnect").addHandler(announcements)
    try:
        pagerduty_sandbox.set_settings(rate_limit=None)
        # Slow enough that the cut below lands mid-run: 24 events are left, 8 rounds of 200 ms.
        pagerduty_sandbox.set_faults("latency=200")
        keys = [pagerduty_sandbox.service_key("Checkout API"), pagerduty_sandbox.service_key("Database")]
        groups = [(key, f"outage-{i}") for key in keys for i in range(3)]
        setup.enqueue_many([(k, sequence(g)[step]) for step in range(5) for k, g in groups])
        worker = Worker(worker_outbox, sender=Sender(retry=RetryPolicy.no_retries()), concurrency=3,
                        retry=FAST_RETRY, rate_limit_per_key=None, poll_interval=0.05, database_retry_max=0.5)  # fmt: skip
        errors: list[BaseException] = []

        def run() -> None:
            try:
                worker.run(until_empty=True)
            except BaseException as exc:  # the test reports it
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        pagerduty_sandbox.wait_for(
            lambda: len(pagerduty_sandbox.sandbox.received()) >= 6, timeout=60, what="deliveries"
        )
        logins(False)
        announcements.wait_for(3, timeout=60)
        logins(True)
        thread.join(timeout=120)
        assert not thread.is_alive() and not errors, errors

        stats = setup.stats()
        assert (stats.delivered, stats.dead, stats.depth) == (30, 0, 0)
        assert worker.counters.delivered == 30 and worker.counters.database_errors >= 3
        for key, group in groups:
            sent = [r["action"] for r in pagerduty_sandbox.received(routing_key=key) if r["dedup_key"] == group]
            assert sent == ["trigger", "trigger", "acknowledge", "resolve", "trigger"], f"{group}: once each, in order"
    finally:
        worker.stop()
        thread.join(timeout=30)
        logging.getLogger("pdconnect").removeHandler(announcements)
        worker_outbox.close()
        setup.drop_tables()
        setup.close()
        with admin.connect() as conn:
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"), {"r": role}
            )
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))


def test_a_worker_mends_a_stranded_group_when_it_starts(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> None:
    outbox = Outbox(f"sqlite:///{tmp_path / 'outbox.db'}", sender=Sender(events_base_url=pagerduty_sandbox.url))
    key = pagerduty_sandbox.service_key()
    first, second = (outbox.enqueue(key, event) for event in sequence("stranded")[:2])
    (head,) = outbox.claim("earlier-worker", 10, lease=60)
    outbox.record([outcome_for(head, DELIVERED, status=202)])
    with outbox.engine.begin() as conn:  # as if the advance had been lost
        conn.execute(sa.update(outbox.events).where(outbox.events.c.id == second.id).values(ready=False))
    worker = Worker(outbox, rate_limit_per_key=None, poll_interval=0.05)
    thread = threading.Thread(target=worker.run, kwargs={"until_empty": True}, daemon=True)
    thread.start()
    thread.join(timeout=30)
    worker.stop()  # without the repair it would wait for a head forever
    thread.join(timeout=30)
    assert outbox.states([first.id, second.id]) == {first.id: DELIVERED, second.id: DELIVERED}
