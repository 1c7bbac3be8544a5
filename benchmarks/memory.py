"""Memory while draining a large outbox: peak RSS must not grow with the queue.

    .venv/bin/python -m benchmarks.memory [--events 100000]

Enqueues the events (SQLite file, batches of 1,000), then one worker (16 threads) drains them
to the fast local endpoint while a thread samples this process's resident set size
(``VmRSS``). The table shows RSS as the drain progresses; a flat line means the worker holds
only what is in flight, whatever the size of the queue.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.common import fast_endpoint, machine, table
from pdconnect import AlertEvent, Sender
from pdconnect.outbox import Outbox
from pdconnect.worker import Worker

KEYS = [f"{i:032x}" for i in range(1, 101)]


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run(count: int = 100_000) -> str:
    with fast_endpoint() as endpoint:
        directory = Path(tempfile.mkdtemp(prefix="pdconnect-bench-"))
        outbox = Outbox(f"sqlite:///{directory / 'outbox.db'}", sender=Sender(events_base_url=endpoint))
        for start in range(0, count, 1000):
            outbox.enqueue_many(
                [
                    (
                        KEYS[i % len(KEYS)],
                        AlertEvent.trigger(f"alert {i}", source="bench", severity="info", dedup_key=f"e{i}"),
                    )
                    for i in range(start, min(count, start + 1000))
                ]
            )
        before = rss_mib()
        worker = Worker(outbox, concurrency=16, rate_limit_per_key=None, poll_interval=0.05, keep_delivered=0)
        samples: list[tuple[int, float]] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.25):
                samples.append((worker.counters.delivered, rss_mib()))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        worker.run(until_empty=True)
        elapsed = time.perf_counter() - started
        done.set()
        sampler.join()
        outbox.close()
    rows = [["before the drain", "0", f"{before:.1f}"]]
    for share in (0.1, 0.25, 0.5, 0.75, 1.0):
        point = next((s for s in samples if s[0] >= share * count), samples[-1])
        rows.append([f"{share:.0%} delivered", f"{point[0]:,}", f"{point[1]:.1f}"])
    peak = max(rss for _, rss in samples)
    rows.append(["peak", "", f"{peak:.1f}"])
    return f"Memory while draining {count:,} queued events ({count / elapsed:,.0f} events/s); {machine()}\n\n" + table(
        ["point", "delivered", "RSS (MiB)"], rows
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    print(run(parser.parse_args().events))


if __name__ == "__main__":
    main()
