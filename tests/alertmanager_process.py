"""A real Prometheus Alertmanager (Debian's package) for tests, posting to a webhook on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

CONFIG = """\
route:
  receiver: pagerduty
  group_by: ['alertname', 'env']
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: pagerduty
    webhook_configs:
      - url: {url}
        send_resolved: true
        http_config:
          authorization:
            credentials: {token}
"""


def alertmanager_binary() -> str:
    """The Alertmanager program; skipped when missing (a failure where it is required, as in CI)."""
    found = os.environ.get("PDCONNECT_ALERTMANAGER") or shutil.which("prometheus-alertmanager")
    if found:
        return found
    reason = "Alertmanager is not installed (Debian: prometheus-alertmanager; python3 dev.py test installs it)"
    if os.environ.get("PDCONNECT_REQUIRE_ALERTMANAGER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RunningAlertmanager:
    def __init__(self, api: str) -> None:
        self.api = api

    def post(self, alerts: list[dict[str, Any]]) -> None:
        """Send alerts as Prometheus would (``endsAt`` in the past resolves one)."""
        response = requests.post(f"{self.api}/api/v2/alerts", json=alerts, timeout=10)
        response.raise_for_status()


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextmanager
def alertmanager(webhook_url: str, token: str, tmp_path: Path) -> Iterator[RunningAlertmanager]:
    """Start Alertmanager; ready once it logs that it listens (read from its output, no polling)."""
    binary = alertmanager_binary()
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG.format(url=webhook_url, token=token))
    port = _free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    seen: list[str] = []
    for line in process.stdout:
        seen.append(line)
        if 'msg="Listening on"' in line:
            break
    else:
        raise RuntimeError("Alertmanager exited before listening:\n" + "".join(seen))
    drain = threading.Thread(target=lambda: seen.extend(process.stdout or ()), daemon=True)
    drain.start()
    try:
        yield RunningAlertmanager(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(timeout=20)
        drain.join(timeout=20)
        process.stdout.close()
