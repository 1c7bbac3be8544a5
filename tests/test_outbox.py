"""The outbox's operations on SQLite and PostgreSQL: enqueue, order, leases, outcomes, mending."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from pdconnect import AlertEvent, ChangeEvent, EventsApi, Sender, integration_from_key
from pdconnect.errors import EventValidationError
from pdconnect.outbox import DEAD, DELIVERED, PENDING, REQUEUED, Outbox, outcome_for
from pdconnect.storage import MemoryIntegrationStore
from tests.conftest import OTHER_SERVICE_KEY, RULESET_KEY, SERVICE_KEY, unique_table


@pytest.fixture(params=["sqlite", "postgresql"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outbox]:
    if request.param == "sqlite":
        made = Outbox(f"sqlite:///{tmp_path / 'outbox.db'}", sender=Sender(client="Acme"))
        yield made
    else:
        engine = request.getfixturevalue("postgres_engine")
        made = Outbox(engine, sender=Sender(client="Acme"), table_prefix=unique_table("pdc_outbox"))
        yield made
        made.drop_tables()


def trigger(key: str = "k1", summary: str = "down") -> AlertEvent:
    return AlertEvent.trigger(summary, source="h", severity="critical", dedup_key=key)


def claim_ids(outbox: Outbox, limit: int = 50, *, now: float | None = None, worker: str = "w") -> list[int]:
    return [e.id for e in outbox.claim(worker, limit, lease=60, now=now)]


def test_enqueue_validates_and_prepares(outbox: Outbox) -> None:
    entry = outbox.enqueue(SERVICE_KEY, AlertEvent.trigger("down", source="h", severity="critical"))
    assert entry.dedup_key, "a trigger without a dedup key gets one at enqueue time"
    (claimed,) = outbox.claim("w", 10, lease=60)
    assert claimed.prepared.dedup_key == entry.dedup_key
    assert b'"client":"Acme"' in claimed.prepared.body
    assert claimed.prepared.url == "https://events.pagerduty.com/v2/enqueue"
    with pytest.raises(EventValidationError):
        outbox.enqueue(SERVICE_KEY, AlertEvent.trigger("", source="h", severity="loud"))
    with pytest.raises(EventValidationError):
        outbox.enqueue(RULESET_KEY, ChangeEvent(summary="deploy"))
    assert outbox.stats().depth == 1, "refused events are never stored"


def test_enqueue_inside_the_callers_transaction(outbox: Outbox) -> None:
    with outbox.engine.connect() as conn:
        transaction = conn.begin()
        outbox.enqueue(SERVICE_KEY, trigger(), connection=conn)
        transaction.rollback()
    assert outbox.stats().depth == 0
    with outbox.engine.begin() as conn:
        outbox.enqueue(SERVICE_KEY, trigger(), connection=conn)
    assert outbox.stats().depth == 1


def test_one_group_goes_in_order_and_groups_in_parallel(outbox: Outbox) -> None:
    entries = outbox.enqueue_many(
        [
            (SERVICE_KEY, trigger("a")),
            (SERVICE_KEY, AlertEvent.acknowledge("a")),
            (SERVICE_KEY, trigger("b")),
            (SERVICE_KEY, AlertEvent.resolve("a")),
            (OTHER_SERVICE_KEY, trigger("a")),  # same dedup key, other routing key: another group
        ]
    )
    a1, a2, b1, _a3, other = (e.id for e in entries)
    assert [e.id for e in entries] == sorted(e.id for e in entries)
    first = outbox.claim("w", 50, lease=60)
    assert [e.id for e in first] == [a1, b1, other]
    assert claim_ids(outbox) == [], "the rest of group a waits behind its leased head"
    outbox.record([outcome_for(first[0], DELIVERED, status=202)])
    assert claim_ids(outbox) == [a2]
    assert outbox.claim("w", 50, lease=60) == []


def test_retry_keeps_the_head_and_waits(outbox: Outbox) -> None:
    first, second = outbox.enqueue_many([(SERVICE_KEY, trigger("a")), (SERVICE_KEY, AlertEvent.resolve("a"))])
    t = time.time() + 1
    (claimed,) = outbox.claim("w", 10, lease=60, now=t)
    outbox.record([outcome_for(claimed, PENDING, status=503, error="HTTP 503", next_attempt_at=t + 100)])
    assert claim_ids(outbox, now=t + 50) == []
    again = outbox.claim("w", 10, lease=60, now=t + 100)
    assert [e.id for e in again] == [first.id]
    assert again[0].attempts == 1
    outbox.record([outcome_for(again[0], DELIVERED, status=202)])
    assert claim_ids(outbox, now=t + 101) == [second.id]


def test_a_429_pauses_the_whole_routing_key(outbox: Outbox) -> None:
    outbox.enqueue_many([(SERVICE_KEY, trigger("a")), (SERVICE_KEY, trigger("b")), (OTHER_SERVICE_KEY, trigger("c"))])
    t = time.time() + 1
    claimed = outbox.claim("w", 1, lease=60, now=t)
    outbox.record([outcome_for(claimed[0], PENDING, status=429, next_attempt_at=t + 30, pause_key_until=t + 30)], now=t)
    later = outbox.claim("w", 10, lease=60, now=t + 10)
    assert [e.routing_key for e in later] == [OTHER_SERVICE_KEY], "b waits although it is another group"
    assert outbox.stats(now=t + 10).paused_keys == 1
    resumed = outbox.claim("w", 10, lease=60, now=t + 31)
    assert sorted(e.prepared.dedup_key or "" for e in resumed) == ["a", "b"]


def test_an_expired_lease_is_claimed_again_and_the_old_outcome_ignored(outbox: Outbox) -> None:
    outbox.enqueue(SERVICE_KEY, trigger())
    t = time.time() + 1
    (stale,) = outbox.claim("crashed", 10, lease=30, now=t)
    assert claim_ids(outbox, now=t + 10) == []
    (fresh,) = outbox.claim("other", 10, lease=30, now=t + 31)
    assert fresh.id == stale.id
    assert fresh.lease_token != stale.lease_token
    assert outbox.record([outcome_for(stale, DEAD, status=400, error="late")]) == 0
    assert outbox.record([outcome_for(fresh, DELIVERED, status=202)]) == 1
    assert outbox.stats().delivered == 1
    assert outbox.stats().dead == 0


def test_dead_letters_free_the_group_and_can_be_requeued(outbox: Outbox) -> None:
    trig, res = outbox.enqueue_many([(SERVICE_KEY, trigger("a")), (SERVICE_KEY, AlertEvent.resolve("a"))])
    (claimed,) = outbox.claim("w", 10, lease=60)
    outbox.record([outcome_for(claimed, DEAD, status=400, error="HTTP 400: Event object is invalid")])
    (dead,) = outbox.dead()
    assert (dead.id, dead.action, dead.dedup_key, dead.reason) == (
        trig.id,
        "trigger",
        "a",
        "HTTP 400: Event object is invalid",
    )
    assert dead.routing_key_hint == "****d1a6"
    (next_one,) = outbox.claim("w", 10, lease=60)
    assert next_one.id == res.id
    outbox.record([outcome_for(next_one, DELIVERED, status=202)])
    (dead,) = outbox.dead()
    assert dead.superseded, "its resolve went out: sent now, the trigger would reopen the incident"
    assert outbox.requeue() == 0 and [d.id for d in outbox.dead()] == [trig.id]
    assert outbox.requeue(superseded=True) == 1
    (again,) = outbox.claim("w", 10, lease=60)
    assert again.id > res.id, "a requeued event goes to the end of its group"
    assert again.prepared.body == claimed.prepared.body
    assert again.attempts == 0
    with outbox.engine.connect() as conn:
        states = dict(conn.execute(sa.select(outbox.events.c.id, outbox.events.c.state)).all())
    assert states[trig.id] == REQUEUED
    assert outbox.dead() == []


def test_requeue_keeps_the_order_of_dead_events_that_are_not_superseded(outbox: Outbox) -> None:
    trig, ack, res = outbox.enqueue_many(
        [
            (SERVICE_KEY, trigger("a")),
            (SERVICE_KEY, AlertEvent.acknowledge("a")),
            (SERVICE_KEY, AlertEvent.resolve("a")),
        ]
    )
    for _ in range(3):  # PagerDuty refused all three (a key it did not know yet, say)
        outbox.record([outcome_for(e, DEAD, status=400) for e in outbox.claim("w", 10, lease=60)])
    assert [d.superseded for d in outbox.dead()] == [False, False, False]
    assert outbox.requeue() == 3
    heads = []
    for _ in range(3):
        (head,) = outbox.claim("w", 10, lease=60)
        heads.append(head.prepared.action)
        outbox.record([outcome_for(head, DELIVERED, status=202)])
    assert heads == ["trigger", "acknowledge", "resolve"]
    assert {trig.id, ack.id, res.id}.isdisjoint(e.id for e in outbox.dead())


def test_requeue_by_id(outbox: Outbox) -> None:
    events = outbox.enqueue_many([(SERVICE_KEY, trigger("a")), (SERVICE_KEY, trigger("b"))])
    claimed = outbox.claim("w", 10, lease=60)
    outbox.record([outcome_for(e, DEAD, status=400) for e in claimed])
    assert outbox.requeue([events[1].id]) == 1
    assert [d.id for d in outbox.dead()] == [events[0].id]


def test_release_gives_back_without_an_attempt(outbox: Outbox) -> None:
    outbox.enqueue(SERVICE_KEY, trigger())
    claimed = outbox.claim("w", 10, lease=60)
    assert outbox.release(claimed) == 1
    (again,) = outbox.claim("w", 10, lease=60)
    assert again.attempts == 0


def test_stats(outbox: Outbox) -> None:
    outbox.enqueue_many([(SERVICE_KEY, trigger("a")), (SERVICE_KEY, trigger("b")), (SERVICE_KEY, trigger("c"))])
    created = outbox.claim("w", 1, lease=60)[0].created_at
    stats = outbox.stats(now=created + 5)
    assert (stats.pending, stats.leased, stats.due, stats.depth) == (2, 1, 2, 3)
    assert stats.oldest_due_age == pytest.approx(5, abs=0.1)
    assert outbox.enqueued == 3


def test_purge_keeps_recent_deliveries(outbox: Outbox) -> None:
    outbox.enqueue(SERVICE_KEY, trigger())
    (claimed,) = outbox.claim("w", 10, lease=60)
    outbox.record([outcome_for(claimed, DELIVERED, status=202)], now=1000.0)
    assert outbox.purge_delivered(3600, now=2000.0) == 0
    assert outbox.purge_delivered(3600, now=5000.0) == 1
    assert outbox.stats().delivered == 0


def test_integration_identity_is_kept_for_dead_letters(outbox: Outbox) -> None:
    store = MemoryIntegrationStore()
    stored = store.save(integration_from_key(SERVICE_KEY, owner_id="org-1", events_api=EventsApi.V2))
    outbox.enqueue(stored, trigger())
    (claimed,) = outbox.claim("w", 10, lease=60)
    assert (claimed.owner_id, claimed.integration_id) == ("org-1", stored.id)


def test_two_workers_never_claim_the_same_event(outbox: Outbox) -> None:
    outbox.enqueue_many([(SERVICE_KEY, trigger(f"k{i}")) for i in range(40)])
    first = claim_ids(outbox, 25, worker="a")
    second = claim_ids(outbox, 25, worker="b")
    assert len(first) == 25
    assert len(second) == 15
    assert not set(first) & set(second)


def test_repr(outbox: Outbox) -> None:
    assert "Outbox(" in repr(outbox)


def test_a_long_group_advances_one_head_at_a_time(outbox: Outbox) -> None:
    """Finished rows stay in the group (until the purge); the next head is found after them."""
    actions = ["trigger", "acknowledge", "trigger", "resolve"] * 5
    for action in actions:
        event = trigger("long") if action == "trigger" else getattr(AlertEvent, action)("long")
        outbox.enqueue(SERVICE_KEY, event)
    outbox.enqueue(SERVICE_KEY, trigger("other"))
    seen = []
    while claimed := outbox.claim("w", 50, lease=60):
        heads = [e for e in claimed if e.prepared.dedup_key == "long"]
        assert len(heads) <= 1, "one head per group at a time"
        seen.extend(e.prepared.action for e in heads)
        outbox.record([outcome_for(e, DELIVERED, status=202) for e in claimed])
    assert seen == actions
    assert outbox.delivered_in_order(f"{SERVICE_KEY}/long") == actions


def test_a_burst_refreshes_the_statistics(outbox: Outbox) -> None:
    """After promoting a burst, PostgreSQL's planner gets fresh figures for the table."""

    def analysed() -> bool:
        if not outbox.postgres:
            return False
        with outbox.engine.connect() as conn:
            return bool(
                conn.execute(
                    sa.text("SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables WHERE relname = :name"),
                    {"name": outbox.events.name},
                ).scalar_one()
            )

    outbox.enqueue_many([(SERVICE_KEY, trigger(f"k{i}")) for i in range(10)])
    outbox.claim("w", 5, lease=60)
    assert not analysed(), "a small batch does not need it"
    outbox.enqueue_many([(SERVICE_KEY, trigger(f"burst{i}")) for i in range(1000)])
    assert len(outbox.claim("w", 5, lease=60)) == 5
    assert analysed() == outbox.postgres  # SQLite's planner needs no figures here


def test_a_head_finishing_while_its_successor_is_promoted_never_strands_the_group(postgres_engine: sa.Engine) -> None:
    """PostgreSQL, READ COMMITTED: worker A records E1 delivered; before A commits, E2 (same
    group) is enqueued and worker B's claim promotes it while E1 still looks unfinished, so E2
    is marked blocked. A's advance ran before E2 existed. E2 must still become the head.

    The interleaving is forced: A's record also pauses another key (a 429 in the same batch),
    and this test holds that pause's row, so A stops after its advance and before its commit.
    """
    outbox = Outbox(postgres_engine, table_prefix=unique_table("pdc_race"))
    with contextlib.ExitStack() as stack:
        stack.callback(outbox.drop_tables)
        outbox.enqueue(SERVICE_KEY, trigger("g"))
        outbox.enqueue(OTHER_SERVICE_KEY, trigger("other"))
        e1, other = outbox.claim("A", 10, lease=60)
        with outbox.engine.begin() as conn:  # the row A's record will have to update
            conn.execute(outbox.pauses.insert().values(routing_key=OTHER_SERVICE_KEY, paused_until=0.0))
        holder = stack.enter_context(outbox.engine.connect())  # closed (its lock freed) even on failure
        hold = holder.begin()
        holder.execute(
            sa.select(outbox.pauses).where(outbox.pauses.c.routing_key == OTHER_SERVICE_KEY).with_for_update()
        )
        holder_pid = holder.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        outcomes = [outcome_for(e1, DELIVERED, status=202),
                    outcome_for(other, PENDING, status=429, next_attempt_at=0.0, pause_key_until=time.time() + 0.01)]  # fmt: skip
        failures: list[BaseException] = []

        def record() -> None:
            try:
                outbox.record(outcomes)
            except BaseException as exc:  # reported below
                failures.append(exc)

        recorder = threading.Thread(target=record, daemon=True)
        recorder.start()
        # Until A waits on the held row. Autocommit: in one transaction PostgreSQL would show
        # the same snapshot of pg_stat_activity every time.
        with outbox.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
            for _ in range(3000):
                blocked = watcher.execute(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"),
                    {"pid": holder_pid},
                ).scalar_one()
                if blocked or not recorder.is_alive():
                    break
                watcher.execute(sa.text("SELECT pg_sleep(0.01)"))
            activity = watcher.execute(
                sa.text("SELECT pid, state, wait_event_type, pg_blocking_pids(pid), left(query, 60) FROM pg_stat_activity"
                        " WHERE datname = current_database()")
            ).all()  # fmt: skip
            assert blocked, (
                f"A's record never waited on the held row: {failures}, alive={recorder.is_alive()}, {activity}"
            )
        e2 = outbox.enqueue(SERVICE_KEY, AlertEvent.resolve("g"))
        assert outbox.claim("B", 10, lease=60) == [], "E1 is not finished yet as B sees it"
        hold.commit()
        recorder.join(timeout=30)
        assert not failures, failures
        assert e2.id in [e.id for e in outbox.claim("B", 10, lease=60, now=time.time() + 1)], "E2 is the head"


def test_repair_gives_a_stranded_group_its_head_and_only_that(outbox: Outbox) -> None:
    first = outbox.enqueue(SERVICE_KEY, trigger("g"))
    second = outbox.enqueue(SERVICE_KEY, AlertEvent.acknowledge("g"))
    third = outbox.enqueue(SERVICE_KEY, AlertEvent.resolve("g"))
    (head,) = outbox.claim("w", 10, lease=60)
    assert head.id == first.id
    outbox.record([outcome_for(head, DELIVERED, status=202)])
    with outbox.engine.begin() as conn:  # an advance lost (a crash, a race): the group has no head
        conn.execute(sa.update(outbox.events).where(outbox.events.c.id == second.id).values(ready=False))
    assert claim_ids(outbox) == []
    assert outbox.repair_heads() == 1
    assert outbox.repair_heads() == 0, "nothing left to mend"
    assert claim_ids(outbox) == [second.id], "the oldest unfinished event, not the one behind it"
    assert third.id not in claim_ids(outbox)
