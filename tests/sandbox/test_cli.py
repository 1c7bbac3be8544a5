"""``pdconnect sandbox`` as a user runs it: a separate process on loopback."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from pdconnect.sandbox import SandboxClient

PDCONNECT = str(Path(sys.executable).parent / "pdconnect")


@contextmanager
def sandbox_process(*args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    process = subprocess.Popen(
        [PDCONNECT, "sandbox", "--port", "0", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        found = re.search(r"PagerDuty sandbox on (https?://127\.0\.0\.1:\d+)", first)
        assert found, first + (process.stderr.read() if process.stderr else "")
        yield found.group(1), process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)


def test_serves_until_interrupted(tmp_path: Path) -> None:
    with sandbox_process("--app", "PAPP001=http://localhost:5000/cb") as (url, process):
        client = SandboxClient(url)
        assert [a["id"] for a in client.state()["apps"]] == ["PAPP001"]
        event = {"routing_key": client.service_key(), "event_action": "resolve", "dedup_key": "k"}
        assert requests.post(url + "/v2/enqueue", json=event, timeout=10).status_code == 202
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=10)
        assert process.returncode == 0
        assert "stopped" in out


def test_state_in_a_file_survives_a_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "demo.db")
    with sandbox_process("--db", db) as (url, _):
        client = SandboxClient(url)
        key = client.service_key()
        event = {"routing_key": key, "event_action": "trigger", "dedup_key": "kept",
                 "payload": {"summary": "down", "source": "h", "severity": "critical"}}  # fmt: skip
        requests.post(url + "/v2/enqueue", json=event, timeout=10)
    with sandbox_process("--db", db) as (url, _):
        client = SandboxClient(url)
        assert client.service_key() == key
        assert client.incident_for("kept")["status"] == "triggered"


def test_faults_and_rate_limit_flags() -> None:
    with sandbox_process("--faults", "503=1", "--rate-limit", "off") as (url, _):
        client = SandboxClient(url)
        assert client.state()["settings"]["rate_limit"] is None
        event = {"routing_key": client.service_key(), "event_action": "resolve", "dedup_key": "k"}
        assert requests.post(url + "/v2/enqueue", json=event, timeout=10).status_code == 503


def test_tls_flag(tmp_path: Path) -> None:
    with sandbox_process("--tls", "--tls-dir", str(tmp_path)) as (url, _):
        assert url.startswith("https://")
        assert SandboxClient(url, verify=str(tmp_path / "sandbox-ca.pem")).state()["accounts"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--faults", "teapot=1"], "unknown fault"),
        (["--rate-limit", "lots"], "--rate-limit"),
        (["--app", "nourl"], "APP_ID=URL"),
        (["--webhook-retry-delays", "1,soon"], "--webhook-retry-delays"),
    ],
)
def test_bad_flags(args: list[str], message: str) -> None:
    result = subprocess.run([PDCONNECT, "sandbox", "--port", "0", *args], capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert message in result.stderr
