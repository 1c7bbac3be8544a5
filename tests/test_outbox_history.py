"""The outbox's hot statements cost the same however much delivered history a group keeps.

A flapping monitor reuses one dedup key for ever: its group keeps every delivered event until
the purge. Promoting a new event, advancing a group and repairing heads must look only at the
group's *unfinished* events. These tests count the work (SQLite's virtual-machine steps,
PostgreSQL's rows read) and read the plans; they never time anything.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.schema import CreateIndex

from pdconnect import AlertEvent
from pdconnect.outbox import DELIVERED, PENDING, Outbox, outcome_for
from tests.conftest import SERVICE_KEY, unique_table

GROUPS = ("flap-a", "flap-b")


def make_outbox(backend: str, tmp_path: Path, request: pytest.FixtureRequest, name: str = "o") -> Outbox:
    if backend == "sqlite":
        return Outbox(f"sqlite:///{tmp_path / f'{name}.db'}")
    engine = request.getfixturevalue("postgres_engine")
    made = Outbox(engine, table_prefix=unique_table("pdc_hist"))
    request.addfinalizer(made.drop_tables)
    return made


def add_history(outbox: Outbox, depth: int, groups: tuple[str, ...] = GROUPS) -> None:
    """``depth`` delivered rows, spread over ``groups``, written straight into the table."""
    now = time.time()
    rows = [
        {
            "group_key": f"{SERVICE_KEY}/{groups[i % len(groups)]}",
            "routing_key": SERVICE_KEY,
            "dedup_key": groups[i % len(groups)],
            "kind": "alert",
            "api": "v2",
            "action": "trigger",
            "url": "https://events.pagerduty.com/v2/enqueue",
            "body": b"{}",
            "state": DELIVERED,
            "ready": False,
            "attempts": 1,
            "created_at": now,
            "next_attempt_at": now,
            "finished_at": now,
        }
        for i in range(depth)
    ]
    with outbox.engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            conn.execute(sa.insert(outbox.events), rows[start : start + 5000])
    outbox.refresh_statistics()


def enqueue_flaps(outbox: Outbox, count: int) -> None:
    outbox.enqueue_many(
        [
            (SERVICE_KEY, AlertEvent.trigger("flapping", source="h", severity="critical", dedup_key=GROUPS[i % 2]))
            for i in range(count)
        ]
    )


@contextmanager
def counting_steps(outbox: Outbox) -> Iterator[dict[str, int]]:
    """Count SQLite's virtual-machine steps and the statements of everything run inside."""
    counts = {"steps": 0, "statements": 0}

    def step() -> int:
        counts["steps"] += 1
        return 0

    def before(conn: sa.Connection, *args: Any) -> None:
        counts["statements"] += 1
        conn.connection.dbapi_connection.set_progress_handler(step, 1)  # type: ignore[union-attr]

    def after(conn: sa.Connection, *args: Any) -> None:
        conn.connection.dbapi_connection.set_progress_handler(None, 1)  # type: ignore[union-attr]

    sa.event.listen(outbox.engine, "before_cursor_execute", before)
    sa.event.listen(outbox.engine, "after_cursor_execute", after)
    try:
        yield counts
    finally:
        sa.event.remove(outbox.engine, "before_cursor_execute", before)
        sa.event.remove(outbox.engine, "after_cursor_execute", after)


def rows_read(plan: dict[str, Any]) -> int:
    """PostgreSQL: the rows every node of an ``EXPLAIN ANALYZE`` plan produced or threw away."""
    loops = int(plan.get("Actual Loops", 1))
    own = (
        plan.get("Actual Rows", 0)
        + plan.get("Rows Removed by Filter", 0)
        + plan.get("Rows Removed by Index Recheck", 0)
    )
    return int(own * loops) + sum(rows_read(child) for child in plan.get("Plans", []))


def scans(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from scans(child)


def analyse(outbox: Outbox, statement: sa.Executable, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """PostgreSQL: run ``statement`` under ``EXPLAIN (ANALYZE, FORMAT JSON)`` and roll it back."""
    compiled = statement.compile(outbox.engine, compile_kwargs={"render_postcompile": True})
    values = compiled.construct_params(params or {})
    with outbox.engine.connect() as conn, conn.begin() as transaction:
        (row,) = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled}", values).one()
        transaction.rollback()
    plan: dict[str, Any] = row[0]["Plan"]
    return plan


def work(outbox: Outbox, operation: Callable[[], object]) -> int:
    """How much work ``operation`` does: VM steps on SQLite (PostgreSQL is measured with analyse)."""
    with counting_steps(outbox) as counts:
        operation()
    return counts["steps"]


def promote(outbox: Outbox) -> int:
    with outbox.engine.begin() as conn:
        return outbox.promote(conn)


# -- counting ---------------------------------------------------------------------------------


def sqlite_costs(tmp_path: Path, request: pytest.FixtureRequest, depth: int) -> dict[str, int]:
    """The steps of promoting 20 events of two flapping groups, advancing one, and a repair."""
    outbox = make_outbox("sqlite", tmp_path, request, name=f"d{depth}")
    add_history(outbox, depth)
    enqueue_flaps(outbox, 20)
    costs = {"promote": work(outbox, lambda: promote(outbox))}
    with outbox.engine.begin() as conn:  # the heads, leased, so that recording them advances
        heads = [row.id for row in conn.execute(sa.select(outbox.events.c.id).where(outbox.events.c.ready))]
    assert len(heads) == 2
    claimed = outbox.claim("w", 10, lease=60)
    assert sorted(e.id for e in claimed) == heads
    costs["record"] = work(outbox, lambda: outbox.record([outcome_for(e, DELIVERED, status=202) for e in claimed]))
    with outbox.engine.begin() as conn:  # a lost advance for the repair to mend
        conn.execute(sa.update(outbox.events).where(outbox.events.c.ready == sa.true()).values(ready=False))
    costs["repair"] = work(outbox, outbox.repair_heads)
    assert len(outbox.claim("w", 10, lease=60)) == 2, "the repair gave both groups their head back"
    outbox.close()
    return costs


def test_sqlite_promotion_advance_and_repair_cost_the_same_at_any_history_depth(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    shallow = sqlite_costs(tmp_path, request, 10)
    deep = sqlite_costs(tmp_path, request, 10_000)
    assert deep == shallow, f"cost grows with the delivered history: {shallow} -> {deep}"


def postgres_costs(tmp_path: Path, request: pytest.FixtureRequest, depth: int) -> dict[str, int]:
    outbox = make_outbox("postgresql", tmp_path, request)
    add_history(outbox, depth)
    enqueue_flaps(outbox, 20)
    outbox.refresh_statistics()
    costs = {"promote": rows_read(analyse(outbox, outbox._promote))}
    promote(outbox)
    claimed = outbox.claim("w", 10, lease=60)
    assert len(claimed) == 2
    after = {"b_group": f"{SERVICE_KEY}/{GROUPS[0]}", "b_after": min(e.id for e in claimed)}
    with outbox.engine.begin() as conn:  # finish the head, as record does before it advances
        conn.execute(sa.update(outbox.events).where(outbox.events.c.id == after["b_after"]).values(state=DELIVERED))
        conn.execute(sa.update(outbox.events).where(outbox.events.c.ready == sa.true()).values(ready=False))
    costs["advance"] = rows_read(analyse(outbox, outbox._advance, after))
    costs["repair"] = rows_read(analyse(outbox, outbox._repair))
    return costs


def test_postgres_promotion_advance_and_repair_read_the_same_rows_at_any_history_depth(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # Not 10: on a table of 30 rows PostgreSQL rightly reads the whole table instead of an index.
    shallow = postgres_costs(tmp_path, request, 1_000)
    deep = postgres_costs(tmp_path, request, 10_000)
    assert deep == shallow, f"rows read grow with the delivered history: {shallow} -> {deep}"
    assert deep["promote"] <= 10 * 20 and deep["advance"] <= 10 and deep["repair"] <= 10 * 20, "O(new events)"


# -- plans ------------------------------------------------------------------------------------

#: The partial indexes a hot statement may read from end to end: each holds only the rows it is about.
SMALL_INDEXES = ("new", "open", "claim", "dead", "finished")


@contextmanager
def capturing(outbox: Outbox) -> Iterator[list[tuple[str, Any]]]:
    """Every statement run inside, as sent to the driver, with its (first) parameters."""
    seen: list[tuple[str, Any]] = []

    def before(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        seen.append((statement, parameters[0] if executemany else parameters))

    sa.event.listen(outbox.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        sa.event.remove(outbox.engine, "before_cursor_execute", before)


def worker_statements(outbox: Outbox) -> list[tuple[str, Any]]:
    """What a worker runs on the events table in a turn: promote and claim, record (with a
    429's pause, so an advance and a retry), repair, purge."""
    enqueue_flaps(outbox, 20)
    with capturing(outbox) as seen:
        first, second = outbox.claim("w", 10, lease=60)
        outbox.record(
            [
                outcome_for(first, DELIVERED, status=202),
                outcome_for(second, PENDING, status=429, next_attempt_at=1.0, pause_key_until=time.time() + 60),
            ]
        )
        outbox.repair_heads()
        outbox.purge_delivered(10**9)
    name = outbox.events.name
    return [(sql, params) for sql, params in seen if f"{name} " in sql or f"{name}\n" in sql]


def sqlite_plan(outbox: Outbox, sql: str, params: Any) -> list[str]:
    with outbox.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        return [str(row[3]) for row in raw.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


@pytest.mark.parametrize("group_index_last", [False, True])
def test_sqlite_hot_statements_use_the_small_indexes_as_written(
    tmp_path: Path, request: pytest.FixtureRequest, group_index_last: bool
) -> None:
    """No hot statement scans the table or walks a group's history, whichever index is newer.

    SQLite weighs two usable indexes of the same cost by which was created last; recreating
    the (group_key, id) index puts it last, as a table from an older pdconnect would have it.
    """
    outbox = make_outbox("sqlite", tmp_path, request)
    add_history(outbox, 2000)
    if group_index_last:
        (group,) = (i for i in outbox.events.indexes if str(i.name).endswith("_group"))
        with outbox.engine.begin() as conn:
            group.drop(conn)
            group.create(conn)
    prefix = outbox.events.name
    statements = worker_statements(outbox)
    assert len(statements) >= 7
    for sql, params in statements:
        plan = sqlite_plan(outbox, sql, params)
        for line in plan:
            scanned = line.startswith("SCAN ") and line.split()[1] in (prefix, "earlier", "later")
            assert not scanned or any(f"INDEX {prefix}_{small}" in line for small in SMALL_INDEXES), (sql, plan)
            assert f"{prefix}_group " not in line, ("walks a group's whole history", sql, plan)
        if "EXISTS" in sql or "min(" in sql:
            assert any(f"{prefix}_open " in line for line in plan), (sql, plan)


def test_postgres_hot_statements_use_the_small_indexes(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    outbox = make_outbox("postgresql", tmp_path, request)
    add_history(outbox, 5000)
    name = outbox.events.name
    statements = worker_statements(outbox)
    assert len(statements) >= 7
    for sql, params in statements:
        with outbox.engine.connect() as conn:
            (row,) = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {sql}", params).one()
        nodes = list(scans(row[0]["Plan"]))
        for node in nodes:
            assert not (node["Node Type"] == "Seq Scan" and node.get("Relation Name") == name), (sql, nodes)
            assert node.get("Index Name") != f"{name}_group", ("walks a group's whole history", sql, nodes)
        if "EXISTS" in sql or "min(" in sql:
            assert any(node.get("Index Name") == f"{name}_open" for node in nodes), (sql, nodes)


# -- existing tables --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_outbox_table_from_before_the_open_index_gets_it(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    """A table made by an older pdconnect has no ``open`` index: the next Outbox adds it, once."""
    outbox = make_outbox(backend, tmp_path, request)
    enqueue_flaps(outbox, 4)
    name = outbox.events.name
    with outbox.engine.begin() as conn:
        conn.exec_driver_sql(f"DROP INDEX {name}_open")
    again = Outbox(outbox.engine, table_prefix=name)
    with again.engine.connect() as conn:
        indexes = {index["name"] for index in sa.inspect(conn).get_indexes(name)}
    assert f"{name}_open" in indexes
    assert len(again.claim("w", 10, lease=60)) == 2, "the queued events are still there, heads as before"
    with capturing(again) as seen:
        Outbox(outbox.engine, table_prefix=name)
    assert not any("CREATE" in sql for sql, _ in seen), "nothing to add the second time"


# -- the order, whatever happens --------------------------------------------------------------

OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("enqueue"), st.sampled_from((*GROUPS, "other"))),
        st.tuples(st.just("history"), st.integers(min_value=1, max_value=30)),
        st.tuples(st.just("claim"), st.lists(st.sampled_from(["delivered", "dead", "retry", "release", "keep"]))),
        st.tuples(st.just("requeue"), st.booleans()),
        st.tuples(st.just("repair"), st.none()),
        st.tuples(st.just("purge"), st.none()),
    ),
    max_size=25,
)


@given(operations=OPERATIONS)
@settings(max_examples=60)
def test_heads_are_always_the_oldest_unfinished_event_of_their_group(operations: list[tuple[str, Any]]) -> None:
    """Against a model: whatever history, outcomes, requeues and repairs came before, a claim
    returns only the oldest unfinished event of each group, and draining delivers each group's
    events in the order they were enqueued."""
    outbox = Outbox("sqlite://")
    table = outbox.events
    held: list[Any] = []  # claimed and kept (an outcome not yet recorded)

    def unfinished() -> dict[int, str]:
        with outbox.engine.connect() as conn:
            query = sa.select(table.c.id, table.c.group_key).where(table.c.state.in_((PENDING, "leased")))
            return {int(row.id): str(row.group_key) for row in conn.execute(query)}

    def check(claimed: list[Any]) -> None:
        open_ = unfinished()
        for event in claimed:
            group = open_[event.id]
            assert event.id == min(i for i, g in open_.items() if g == group), "claimed behind an older event"
        leased = [e.prepared.dedup_key for e in held + claimed]
        assert len(leased) == len(set(leased)), "two events of one group out at once"

    for op, arg in operations:
        if op == "enqueue":
            outbox.enqueue(SERVICE_KEY, AlertEvent.trigger("x", source="h", severity="critical", dedup_key=arg))
        elif op == "history":
            add_history(outbox, arg)
        elif op == "claim":
            claimed = outbox.claim("w", 10, lease=60, now=time.time() + 1)
            check(claimed)
            outcomes = []
            for event, fate in zip(claimed, arg + ["keep"] * len(claimed), strict=False):
                if fate == "keep":
                    held.append(event)
                elif fate == "release":
                    outbox.release([event])
                elif fate == "retry":
                    outcomes.append(outcome_for(event, PENDING, status=503, next_attempt_at=0.0))
                else:
                    outcomes.append(outcome_for(event, fate, status=202 if fate == "delivered" else 400))
            outbox.record(outcomes)
        elif op == "requeue":
            outbox.requeue(superseded=arg)
        elif op == "repair":
            assert outbox.repair_heads() == 0, "nothing should ever need mending here"
        else:
            outbox.purge_delivered(0, now=time.time() + 1)
    outbox.record([outcome_for(e, DELIVERED, status=202) for e in held])
    held = []
    expected = {g: sorted(i for i, grp in unfinished().items() if grp == g) for g in set(unfinished().values())}
    delivered: dict[str, list[int]] = {}
    while claimed := outbox.claim("w", 10, lease=60, now=time.time() + 1):
        check(claimed)
        for event in claimed:
            delivered.setdefault(f"{SERVICE_KEY}/{event.prepared.dedup_key}", []).append(event.id)
        outbox.record([outcome_for(e, DELIVERED, status=202) for e in claimed])
    assert delivered == expected
    outbox.close()


# -- upkeep -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_purge_deletes_a_backlog_a_batch_per_transaction(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """A long backlog of old deliveries is not deleted under one write lock that every enqueue waits for."""
    monkeypatch.setattr("pdconnect.outbox.PURGE_BATCH", 10)
    outbox = make_outbox(backend, tmp_path, request)
    add_history(outbox, 25)
    enqueue_flaps(outbox, 4)
    (dead, *_) = outbox.claim("w", 10, lease=60)
    outbox.record([outcome_for(dead, "dead", status=400)])
    commits: list[None] = []
    sa.event.listen(outbox.engine, "commit", lambda conn: commits.append(None))
    with capturing(outbox) as seen:
        assert outbox.purge_delivered(0, now=time.time() + 1) == 25
    deletes = [sql for sql, _ in seen if sql.startswith("DELETE")]
    assert (len(deletes), len(commits)) == (3, 3), "10 + 10 + 5, each committed on its own"
    stats = outbox.stats()
    assert (stats.delivered, stats.dead, stats.depth) == (0, 1, 3)


def test_workers_starting_together_both_add_the_missing_index(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """PostgreSQL: one process's CREATE INDEX IF NOT EXISTS, not yet committed, is invisible to
    another's, which then fails on the catalog's unique name; the second must carry on."""
    outbox = make_outbox("postgresql", tmp_path, request)
    name = outbox.events.name
    (index,) = (i for i in outbox.events.indexes if i.name == f"{name}_open")
    with outbox.engine.begin() as conn:
        conn.exec_driver_sql(f"DROP INDEX {name}_open")
    failures: list[BaseException] = []
    with outbox.engine.connect() as first:
        hold = first.begin()
        first.execute(CreateIndex(index, if_not_exists=True))  # the first worker, not committed yet
        pid = first.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()

        def second() -> None:
            try:
                Outbox(outbox.engine, table_prefix=name)
            except BaseException as exc:  # reported below
                failures.append(exc)

        thread = threading.Thread(target=second, daemon=True)
        thread.start()
        with outbox.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as watcher:
            for _ in range(3000):  # until the second waits on the first's catalog row
                waiting = watcher.execute(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"),
                    {"pid": pid},
                ).scalar_one()
                if waiting or not thread.is_alive():
                    break
                watcher.execute(sa.text("SELECT pg_sleep(0.01)"))
        assert waiting, f"the second never waited on the first: {failures}"
        hold.commit()
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert not failures, failures


def add_dead(outbox: Outbox, count: int, group: str = "revoked") -> None:
    """``count`` dead events in one group after a delivered one: a key PagerDuty stopped knowing."""
    add_history(outbox, 1, groups=(group,))
    with outbox.engine.begin() as conn:
        rows = [dict(row._mapping) for row in conn.execute(sa.select(outbox.events))]
        template = {k: v for k, v in rows[0].items() if k != "id"}
        conn.execute(sa.insert(outbox.events), [{**template, "state": "dead", "last_error": "HTTP 400"}] * count)


def dead_listing_steps(tmp_path: Path, request: pytest.FixtureRequest, count: int) -> int:
    outbox = make_outbox("sqlite", tmp_path, request, name=f"dead{count}")
    add_dead(outbox, count)
    steps = work(outbox, lambda: outbox.superseded_dead()) + work(outbox, lambda: outbox.requeue())
    assert outbox.superseded_dead() == [] and outbox.stats().pending == count, "none superseded: all requeued"
    outbox.close()
    return steps


def test_the_superseded_check_is_linear_in_the_dead_events_of_a_group(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A walk of the later events per dead event cost their number squared: 10 times the dead
    events must cost about 10 times the work, not 100 times."""
    few = dead_listing_steps(tmp_path, request, 100)
    many = dead_listing_steps(tmp_path, request, 1000)
    assert many <= 15 * few, f"{few} steps for 100 dead events, {many} for 1,000"
