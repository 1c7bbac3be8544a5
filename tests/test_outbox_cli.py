"""The worker and outbox commands, as an operator runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pdconnect import AlertEvent, Sender
from pdconnect.cli import main
from pdconnect.metrics import CONTENT_TYPE, metrics_text
from pdconnect.outbox import DEAD, DELIVERED, Outbox, outcome_for
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.worker import Worker
from tests.conftest import SERVICE_KEY

PDCONNECT = str(Path(sys.executable).parent / "pdconnect")


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'outbox.db'}"


def test_worker_command_drains_the_outbox(url: str, pagerduty_sandbox: PagerDutySandbox) -> None:
    outbox = Outbox(url, sender=Sender(events_base_url=pagerduty_sandbox.url))
    key = pagerduty_sandbox.service_key()
    outbox.enqueue_many(
        [(key, AlertEvent.trigger(f"a{i}", source="h", severity="info", dedup_key=f"k{i}")) for i in range(5)]
    )
    result = subprocess.run(
        [PDCONNECT, "worker", "--database", url, "--until-empty", "--rate-limit", "off"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "stopped: delivered 5, retried 0, dead 0" in result.stdout
    assert "delivered 5" in result.stderr, "the progress line"
    assert len(pagerduty_sandbox.incidents()) == 5


def test_status_dead_and_requeue(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    outbox = Outbox(url)
    outbox.enqueue_many([(SERVICE_KEY, AlertEvent.resolve(f"k{i}")) for i in range(3)])
    claimed = outbox.claim("w", 2, lease=60)
    outbox.record([outcome_for(e, DEAD, status=400, error="HTTP 400: Event object is invalid") for e in claimed])

    assert main(["outbox", "status", "--database", url]) == 0
    out = capsys.readouterr().out
    assert "pending     1" in out
    assert "dead        2" in out

    assert main(["outbox", "dead", "--database", url]) == 0
    out = capsys.readouterr().out
    assert out.count("reason: HTTP 400: Event object is invalid") == 2
    assert SERVICE_KEY not in out
    assert "****d1a6" in out

    assert main(["outbox", "requeue", "--database", url, str(claimed[0].id)]) == 0
    assert "requeued 1 event(s)" in capsys.readouterr().out
    assert main(["outbox", "requeue", "--database", url, "--all"]) == 0
    assert "requeued 1 event(s)" in capsys.readouterr().out
    assert outbox.stats().dead == 0
    assert outbox.stats().pending == 3


def test_requeue_needs_ids_or_all(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["outbox", "requeue", "--database", url]) == 2
    assert "one of the arguments --all ID is required" in capsys.readouterr().err


def test_prometheus_text(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    outbox = Outbox(url)
    outbox.enqueue(SERVICE_KEY, AlertEvent.resolve("k"))
    assert main(["outbox", "status", "--database", url, "--prometheus"]) == 0
    text = capsys.readouterr().out
    assert 'pdconnect_outbox_events{state="pending"} 1' in text
    assert "# TYPE pdconnect_outbox_depth gauge" in text
    worker = Worker(outbox, rate_limit_per_key=None)
    worker.counters.delivered = 7
    with_worker = metrics_text(outbox, worker)
    assert "pdconnect_worker_delivered_total 7" in with_worker
    assert "pdconnect_outbox_enqueued_total 1" in with_worker
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")
    for line in with_worker.splitlines():
        assert line.startswith("#") or len(line.split(" ")) == 2


def test_bad_rate_limit(url: str) -> None:
    assert main(["worker", "--database", url, "--rate-limit", "fast", "--until-empty"]) == 2


def test_worker_stops_cleanly_on_sigterm(url: str, pagerduty_sandbox: PagerDutySandbox) -> None:
    import signal

    outbox = Outbox(url, sender=Sender(events_base_url=pagerduty_sandbox.url))
    outbox.enqueue(pagerduty_sandbox.service_key(), AlertEvent.resolve("k"))
    process = subprocess.Popen(
        [PDCONNECT, "worker", "--database", url, "--rate-limit", "off", "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().startswith("pdconnect worker ")
    pagerduty_sandbox.wait_for(lambda: len(pagerduty_sandbox.sandbox.received()) == 1, what="the delivery")
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "stopped: delivered 1" in out
    assert outbox.stats().leased == 0


@pytest.mark.parametrize(
    ("command", "database", "status", "message"),
    [
        ("worker", "postgresql://acme:hunter2-secret@127.0.0.1:1/outbox", 1, "cannot be used: connection failed"),
        ("outbox status", "postgresql://acme:hunter2-secret@127.0.0.1:1/outbox", 1, "cannot be used"),
        ("outbox dead", "nonsense://x", 2, "--database: no SQLAlchemy dialect 'nonsense' is installed"),
        ("db init", "not a url at all", 2, "argument --database: not a database URL"),
        ("db init", "postgresql+psycopg://acme:hunter2-secret@127.0.0.1:port/db", 2, "not a database URL"),
        ("db init", "sqlite:////no-such-directory/outbox.db", 1, "unable to open database file"),
        ("worker", "sqlite:////no-such-directory/outbox.db", 2, "no such SQLite file"),
    ],
)
def test_a_database_that_cannot_be_used_is_one_line_not_a_traceback(
    command: str, database: str, status: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command.split(), "--database", database]) == status
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "hunter2-secret" not in err, "the password is hidden"


def test_a_sandbox_file_that_cannot_be_opened_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sandbox", "--db", "/no-such-directory/sandbox.db", "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "the database /no-such-directory/sandbox.db cannot be used" in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["status", "dead", "requeue --all"])
def test_looking_at_an_outbox_never_makes_one(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "typo.db"
    assert main(["outbox", *command.split(), "--database", f"sqlite:///{missing}"]) == 2
    assert "no such SQLite file" in capsys.readouterr().err
    assert not missing.exists(), "no empty database left behind"

    other = tmp_path / "other.db"
    Outbox(f"sqlite:///{other}")  # tables under the default prefix only
    assert main(["outbox", *command.split(), "--database", f"sqlite:///{other}", "--table-prefix", "typo"]) == 2
    assert "no outbox table 'typo' there" in capsys.readouterr().err


def test_requeue_leaves_superseded_events_dead_unless_asked(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    outbox = Outbox(url)
    trig, _ = outbox.enqueue_many([(SERVICE_KEY, AlertEvent.trigger("down", source="h", severity="critical",
                                    dedup_key="m1")), (SERVICE_KEY, AlertEvent.resolve("m1"))])  # fmt: skip
    outbox.record([outcome_for(e, DEAD, status=400, error="HTTP 400") for e in outbox.claim("w", 1, lease=60)])
    outbox.record([outcome_for(e, DELIVERED, status=202) for e in outbox.claim("w", 1, lease=60)])
    assert main(["outbox", "dead", "--database", url]) == 0
    assert "(superseded: a later event of its group was delivered or is queued)" in capsys.readouterr().out
    assert main(["outbox", "requeue", "--database", url, "--all"]) == 0
    out = capsys.readouterr().out
    assert "requeued 0 event(s)" in out and f"left 1 superseded event(s) dead: {trig.id}" in out
    assert main(["outbox", "requeue", "--database", url, str(trig.id), "--superseded"]) == 0
    assert "requeued 1 event(s)" in capsys.readouterr().out
