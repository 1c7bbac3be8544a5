"""Outbox throughput: enqueueing (one event a transaction, and batched) and a worker's drain rate.

    .venv/bin/python -m benchmarks.outbox_throughput [--events 20000]

On SQLite (a file, WAL) and on PostgreSQL (``PDCONNECT_BENCH_POSTGRES_URL``, by default the
local server; skipped when it is not reachable). The drain goes to the fast local endpoint
(``fast_endpoint.py``), so it measures the outbox and worker, not the network: one worker
process, 16 threads, the http.client transport, no rate limit.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from benchmarks.common import fast_endpoint, machine, table
from pdconnect import AlertEvent, Sender
from pdconnect.outbox import Outbox
from pdconnect.worker import Worker

KEYS = [f"{i:032x}" for i in range(1, 51)]
POSTGRES = os.environ.get("PDCONNECT_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def events(count: int) -> list[tuple[str, AlertEvent]]:
    return [
        (KEYS[i % len(KEYS)], AlertEvent.trigger(f"alert {i}", source="bench", severity="info", dedup_key=f"e{i}"))
        for i in range(count)
    ]


def measure(label: str, url_or_engine: str | sa.Engine, endpoint: str, count: int) -> list[str]:
    prefix = f"bench_{uuid.uuid4().hex[:8]}"
    outbox = Outbox(url_or_engine, sender=Sender(events_base_url=endpoint), table_prefix=prefix)
    try:
        single = events(1000)
        started = time.perf_counter()
        for target, event in single:
            outbox.enqueue(target, event)
        single_rate = len(single) / (time.perf_counter() - started)
        batched = events(count)
        started = time.perf_counter()
        for start in range(0, count, 500):
            outbox.enqueue_many(batched[start : start + 500])
        batched_rate = count / (time.perf_counter() - started)
        total = count + len(single)
        worker = Worker(outbox, concurrency=16, rate_limit_per_key=None, poll_interval=0.05)
        started = time.perf_counter()
        worker.run(until_empty=True)
        drain_rate = total / (time.perf_counter() - started)
        assert outbox.stats().delivered == total
    finally:
        outbox.drop_tables()
        outbox.close()
    return [label, f"{single_rate:,.0f}", f"{batched_rate:,.0f}", f"{drain_rate:,.0f}"]


def postgres_engine() -> sa.Engine | None:
    engine = sa.create_engine(POSTGRES)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception:
        engine.dispose()
        return None
    return engine


def run(count: int = 20_000) -> str:
    rows = []
    with fast_endpoint() as endpoint:
        directory = Path(tempfile.mkdtemp(prefix="pdconnect-bench-"))
        rows.append(measure("SQLite (WAL, file)", f"sqlite:///{directory / 'outbox.db'}", endpoint, count))
        engine = postgres_engine()
        if engine is not None:
            rows.append(measure("PostgreSQL 15 (loopback)", engine, endpoint, count))
            engine.dispose()
        else:
            rows.append(["PostgreSQL", "not reachable", "", ""])
    return (
        f"Outbox throughput: 1,000 single enqueues, {count:,} batched (500 a transaction), then one worker "
        f"(16 threads) drains everything to a fast local endpoint; {machine()}\n\n"
        + table(
            [
                "database",
                "enqueue, one a transaction (events/s)",
                "enqueue, batched (events/s)",
                "worker drain (events/s)",
            ],
            rows,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    print(run(parser.parse_args().events))


if __name__ == "__main__":
    main()
