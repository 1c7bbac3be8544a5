"""Durable delivery under faults, with worker processes killed mid-batch (SQLite and PostgreSQL).

Against the sandbox with 429s (with and without Retry-After), 5xx, dropped connections, added
latency and a stretch of being down, worker processes are killed with SIGKILL several times
while requests are in flight; a second worker and restarts pick up. Then: every accepted
event was delivered, none out of order in its group (read from the sandbox's own log),
duplicates only where a killed worker's lease ran out, and the incidents end exactly as the
event sequences imply. Bounded in time: leases are 6 seconds.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from pdconnect import AlertEvent, Sender
from pdconnect.outbox import Outbox
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.conftest import unique_table

PDCONNECT = str(Path(sys.executable).parent / "pdconnect")
CONCURRENCY = 4
GROUPS_PER_KEY = 8
SEQUENCE = ["trigger", "trigger", "acknowledge", "resolve", "trigger"]


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outbox.db'}", "pdconnect_outbox"
    else:
        engine = request.getfixturevalue("postgres_engine")
        prefix = unique_table("pdc_rel")
        yield engine.url.render_as_string(hide_password=False), prefix
        Outbox(engine, table_prefix=prefix, create_tables=False).drop_tables()


def events_for(group: str) -> list[AlertEvent]:
    made = []
    for step, action in enumerate(SEQUENCE):
        if action == "trigger":
            made.append(AlertEvent.trigger(f"{group} #{step}", source="h", severity="critical", dedup_key=group))
        elif action == "acknowledge":
            made.append(AlertEvent.acknowledge(group))
        else:
            made.append(AlertEvent.resolve(group))
    return made


STARTED: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_worker_left_behind() -> Iterator[None]:
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)


def start_worker(url: str, prefix: str, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    command = [PDCONNECT, "worker", "--database", url, "--table-prefix", prefix, "--lease", "6", "--timeout", "1",
               "--max-backoff", "0.5", "--concurrency", str(CONCURRENCY), "--rate-limit", "off", "--quiet", *extra]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    STARTED.append(process)
    assert process.stdout is not None
    name = process.stdout.readline().decode().split()[2]  # "pdconnect worker NAME on ..."
    return process, name


def test_every_event_delivered_in_order_despite_faults_and_kills(
    database: tuple[str, str], pagerduty_sandbox: PagerDutySandbox
) -> None:
    url, prefix = database
    sandbox = pagerduty_sandbox
    sandbox.set_settings(rate_limit=None)
    keys = [sandbox.service_key("Checkout API"), sandbox.service_key("Database"), sandbox.create_service("Payments")[1]]
    groups = [(key, f"{name}-{i}") for key, name in zip(keys, "abc", strict=True) for i in range(GROUPS_PER_KEY)]
    with Outbox(url, sender=Sender(events_base_url=sandbox.url), table_prefix=prefix) as outbox:
        # Round-robin over groups, as events arrive from many monitors at once.
        outbox.enqueue_many([(key, events_for(group)[step]) for step in range(len(SEQUENCE)) for key, group in groups])
        total = len(groups) * len(SEQUENCE)
        sandbox.set_faults("429=0.05,429-retry-after=0.02,retry-after=1,503=0.04,502=0.02,drop=0.04,latency=15,seed=5")

        def accepted() -> int:
            return sum(1 for r in sandbox.sandbox.received() if r.status == 202)

        # Events leased to a worker when it was killed, counted per kill: an event can be held
        # by two killed workers in turn (the second claimed it when the first's lease ran out).
        held: Counter[int] = Counter()

        def kill(worker: tuple[subprocess.Popen[bytes], str]) -> None:
            process, name = worker
            process.send_signal(signal.SIGKILL)
            process.communicate(timeout=30)
            held.update(outbox.leased_by(name))

        # One worker, killed mid-batch.
        first = start_worker(url, prefix)
        sandbox.wait_for(lambda: accepted() >= 25, timeout=60, what="the first worker's deliveries")
        kill(first)
        # Two workers side by side; one killed; then PagerDuty is down for a stretch.
        second, third = start_worker(url, prefix), start_worker(url, prefix)
        sandbox.wait_for(lambda: accepted() >= 55, timeout=60, what="two workers' deliveries")
        kill(second)
        sandbox.set_faults("429=0.05,503=0.05,drop=0.04,latency=15,down=1.5,seed=6")
        sandbox.wait_for(lambda: accepted() >= 85, timeout=60, what="deliveries after the outage")
        kill(third)
        # A restart finishes the job.
        last, _ = start_worker(url, prefix, "--until-empty")
        _, errors = last.communicate(timeout=120)
        assert last.returncode == 0, errors.decode()

        stats = outbox.stats()
        assert (stats.delivered, stats.dead, stats.depth) == (total, 0, 0), "every accepted event was delivered"
        received = [r for r in sandbox.sandbox.received() if r.status == 202]
        assert len(received) >= total
        with outbox.engine.connect() as conn:
            rows = conn.execute(sa.select(outbox.events.c.id, outbox.events.c.group_key)).all()
        held_per_group: Counter[str] = Counter()
        for event_id, group in rows:
            held_per_group[group] += held[event_id]
        for key, group in groups:
            sent = [(r.action, (r.request.get("payload") or {}).get("summary")) for r in received
                    if r.routing_key == key and r.dedup_key == group]  # fmt: skip
            collapsed = [entry for i, entry in enumerate(sent) if i == 0 or sent[i - 1] != entry]
            assert [action for action, _ in collapsed] == SEQUENCE, f"order of {group}"
            resent = len(sent) - len(SEQUENCE)
            assert resent <= held_per_group[f"{key}/{group}"], f"{group}: re-sent only what a killed worker held"
            incidents = [i for i in sandbox.incidents_for(group) if i["alerts"][0]["routing_key"] == key]
            assert [i["status"] for i in incidents] == ["resolved", "triggered"], f"final state of {group}"
