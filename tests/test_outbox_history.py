"""The outbox's hot statements cost the same however much delivered history a group keeps.

A flapping monitor reuses one dedup key for ever: its group keeps every delivered event until
the purge. Promoting a new event, advancing a group and repairing heads must look only at the
group's *unfinished* events. These tests count the work (SQLite's virtual-machine steps,
PostgreSQL's rows read) and read the plans; they never time anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pdconnect import AlertEvent
from pdconnect.outbox import DELIVERED, Outbox, outcome_for
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
    shallow = postgres_costs(tmp_path, request, 1_000)
    deep = postgres_costs(tmp_path, request, 10_000)
    assert deep == shallow, f"rows read grow with the delivered history: {shallow} -> {deep}"
