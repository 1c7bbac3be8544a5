"""Delivery through the outbox: under latency, and under faults, against PagerDuty's own client.

    .venv/bin/python -m benchmarks.delivery latency [--events 10000 --keys 100 --concurrency 100]
    .venv/bin/python -m benchmarks.delivery faults [--events 100 --keys 10]

**latency**: the sandbox (its own process, rate limit off) adds 50 ms to every answer. The
outbox (SQLite, WAL) holds the events: ``keys`` routing keys, each with groups of ten events
(trigger, trigger, acknowledge, resolve, ...), enqueued round-robin. A worker with
``concurrency`` threads drains it. The ceiling is ``concurrency / 0.05`` events a second.
PagerDuty's ``pagerduty`` client sending the same events one by one is measured on a sample
and scaled. Order per group is checked from the sandbox's log.

**faults**: 5 % of answers are 429 and 5 % are 503, both with ``Retry-After: 1``. The same
events go once through the outbox and worker and once through the ``pagerduty`` client, one
by one; both runs are timed and checked for completeness and order.
"""

from __future__ import annotations

import argparse
import json
import ssl
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import requests

from benchmarks.common import machine, sandbox, table
from pdconnect import AlertEvent, Sender
from pdconnect.outbox import Outbox
from pdconnect.sandbox import SandboxClient
from pdconnect.worker import Worker

GROUP = [
    "trigger",
    "trigger",
    "acknowledge",
    "resolve",
    "trigger",
    "acknowledge",
    "trigger",
    "resolve",
    "trigger",
    "resolve",
]


def make_keys(url: str, count: int) -> list[str]:
    client = SandboxClient(url)
    client.http.post(url + "/_sandbox/api/accounts", json={"subdomain": "bench", "name": "Bench"}, timeout=10)
    keys = [client.create_service(f"service {i}", account="bench")[1] for i in range(count)]
    client.close()
    return keys


def event(action: str, group: str, step: int) -> AlertEvent:
    if action == "trigger":
        return AlertEvent.trigger(f"{group} step {step}", source="bench", severity="error", dedup_key=group)
    return AlertEvent.acknowledge(group) if action == "acknowledge" else AlertEvent.resolve(group)


def plan(keys: list[str], events: int) -> list[tuple[str, str, AlertEvent]]:
    """``events`` events over the keys, in groups of ten, interleaved as many monitors would send them."""
    per_key = events // len(keys)
    groups_per_key = max(1, per_key // len(GROUP))
    streams = []
    for k, key in enumerate(keys):
        for g in range(groups_per_key):
            group = f"k{k}-g{g}"
            streams.append([(key, group, event(action, group, step)) for step, action in enumerate(GROUP)])
    ordered = []
    for step in range(len(GROUP)):
        ordered += [stream[step] for stream in streams]
    return ordered[:events]


def times(ratio: float) -> str:
    """A speed ratio as the tables print it: 16 x, 2.4 x, 0.71 x (a slower run must not read as 1 x)."""
    return f"{ratio:.0f} x" if ratio >= 10 else f"{ratio:.2g} x"


def check_order(url: str, items: list[tuple[str, str, AlertEvent]]) -> tuple[bool, int]:
    """Whether the sandbox accepted every group's events in order; and how many it accepted."""
    received = requests.get(url + "/_sandbox/api/received", timeout=60).json()["received"]
    accepted: dict[tuple[str, str], list[str]] = defaultdict(list)
    count = 0
    for record in received:
        if record["status"] == 202:
            count += 1
            sequence = accepted[(record["routing_key"], record["dedup_key"])]
            entry = record["action"] + "|" + json.dumps(record["request"].get("payload", {}).get("summary"))
            if not sequence or sequence[-1] != entry:
                sequence.append(entry)
    expected: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key, group, item in items:
        expected[(key, group)].append(str(item.action) + "|" + json.dumps(item.summary))
    return all(accepted[k] == v for k, v in expected.items()), count


def drain(url: str, items: list[tuple[str, str, AlertEvent]], concurrency: int) -> tuple[float, Worker]:
    directory = Path(tempfile.mkdtemp(prefix="pdconnect-bench-"))
    outbox = Outbox(f"sqlite:///{directory / 'outbox.db'}", sender=Sender(events_base_url=url))
    for start in range(0, len(items), 1000):
        outbox.enqueue_many([(key, item) for key, _, item in items[start : start + 1000]])
    worker = Worker(outbox, concurrency=concurrency, rate_limit_per_key=None, poll_interval=0.05)
    started = time.perf_counter()
    worker.run(until_empty=True)
    elapsed = time.perf_counter() - started
    outbox.close()
    return elapsed, worker


def pagerduty_loop(url: str, items: list[tuple[str, str, AlertEvent]]) -> float:
    """PagerDuty's own client, one event after another; returns seconds."""
    import pagerduty

    clients: dict[str, Any] = {}
    started = time.perf_counter()
    for key, group, item in items:
        client = clients.get(key)
        if client is None:
            client = clients[key] = pagerduty.EventsApiV2Client(key, verify=ssl.create_default_context())
            client._url = url
        if item.action == "trigger":
            client.trigger(item.summary or "", item.source or "", dedup_key=group, severity="error")
        elif item.action == "acknowledge":
            client.acknowledge(group)
        else:
            client.resolve(group)
    elapsed = time.perf_counter() - started
    for client in clients.values():
        client.close()
    return elapsed


def latency(events: int, keys: int, concurrency: int, sample: int) -> str:
    with sandbox("--rate-limit", "off", "--faults", "latency=50", "--no-seed") as url:
        routing_keys = make_keys(url, keys)
        items = plan(routing_keys, events)
        elapsed, worker = drain(url, items, concurrency)
        in_order, accepted = check_order(url, items)
        requests.post(url + "/_sandbox/api/reset", json={"seed": False}, timeout=10)
        requests.put(url + "/_sandbox/api/faults", json={"spec": "latency=50"}, timeout=10)
        routing_keys = make_keys(url, keys)
        sample_items = plan(routing_keys, sample)
        loop = pagerduty_loop(url, sample_items)
    rate = len(items) / elapsed
    ceiling = concurrency / 0.05
    loop_rate = len(sample_items) / loop
    rows = [
        ["pdconnect outbox + worker", f"{len(items):,}", f"{elapsed:.1f}", f"{rate:,.0f}", f"{rate / ceiling:.0%}", times(rate / loop_rate)],
        [f"pagerduty loop (sample of {len(sample_items)}, scaled)", f"{len(items):,}", f"{len(items) / loop_rate:.0f}",
         f"{loop_rate:,.1f}", f"{loop_rate / ceiling:.1%}", "1 x"],
    ]  # fmt: skip
    return (
        f"Delivery under 50 ms latency: {len(items):,} events over {keys} routing keys, concurrency {concurrency} "
        f"(ceiling {ceiling:,.0f}/s); {machine()}\n\n"
        + table(["sender", "events", "seconds", "events/s", "of ceiling", "vs pagerduty loop"], rows)
        + f"\n\nOrder per group preserved: {'yes' if in_order else 'NO'}; accepted by the sandbox: {accepted:,} "
        f"(delivered {worker.counters.delivered:,}, retried {worker.counters.retried}, dead {worker.counters.dead})."
    )


def faults(events: int, keys: int, concurrency: int) -> str:
    spec = "429-retry-after=0.05,503-retry-after=0.05,retry-after=1,seed=7"
    with sandbox("--rate-limit", "off", "--faults", spec, "--no-seed") as url:
        items = plan(make_keys(url, keys), events)
        elapsed, worker = drain(url, items, concurrency)
        ours_in_order, ours_accepted = check_order(url, items)
        requests.post(url + "/_sandbox/api/reset", json={"seed": False}, timeout=10)
        requests.put(url + "/_sandbox/api/faults", json={"spec": spec}, timeout=10)
        items = plan(make_keys(url, keys), events)
        loop = pagerduty_loop(url, items)
        theirs_in_order, theirs_accepted = check_order(url, items)
    rows = [
        ["pdconnect outbox + worker", f"{elapsed:.1f}", times(loop / elapsed), "yes" if ours_in_order else "NO",
         str(ours_accepted)],
        ["pagerduty loop", f"{loop:.1f}", "1 x", "yes" if theirs_in_order else "NO", str(theirs_accepted)],
    ]  # fmt: skip
    return (
        f"Delivery under faults: {len(items)} events over {keys} routing keys, 5 % 429 and 5 % 503 with Retry-After: 1, "
        f"concurrency {concurrency}; {machine()}\n\n"
        + table(["sender", "seconds", "speed vs pagerduty", "in order", "accepted"], rows)
        + f"\n\nWorker: delivered {worker.counters.delivered}, retried {worker.counters.retried}, dead {worker.counters.dead}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", choices=["latency", "faults"])
    parser.add_argument("--events", type=int)
    parser.add_argument("--keys", type=int)
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--sample", type=int, default=100)
    args = parser.parse_args()
    if args.which == "latency":
        print(latency(args.events or 10_000, args.keys or 100, args.concurrency or 100, args.sample))
    else:
        print(faults(args.events or 100, args.keys or 10, args.concurrency or 10))


if __name__ == "__main__":
    main()
