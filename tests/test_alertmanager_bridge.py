"""The Alertmanager bridge: in process, over HTTP, and as `pdconnect alertmanager` fed by a real Alertmanager."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pdconnect import Sender
from pdconnect.alertmanager_bridge import AlertmanagerBridge, serve
from pdconnect.errors import PayloadInvalid, PayloadTooLarge, Unauthorized
from pdconnect.outbox import Outbox, body_json
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.alertmanager_process import alertmanager, now
from tests.conftest import OTHER_SERVICE_KEY, SERVICE_KEY
from tests.servers import serving

DATA = Path(__file__).parent / "data" / "alertmanager"
TOKEN = "alertmanager-bearer-token-0123456789"


def real(name: str) -> bytes:
    return (DATA / f"{name}.json").read_bytes()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(f"sqlite:///{tmp_path / 'outbox.db'}", sender=Sender(client="Acme")) as made:
        yield made


def test_a_group_is_enqueued_for_every_target_in_order(outbox: Outbox) -> None:
    bridge = AlertmanagerBridge(outbox, [SERVICE_KEY, OTHER_SERVICE_KEY], token=TOKEN)
    fired = bridge.handle(real("firing"), f"Bearer {TOKEN}")
    assert (fired.action, len(fired.enqueued), fired.firing) == ("trigger", 2, 2)
    mixed = bridge.handle(real("mixed"), f"Bearer {TOKEN}")
    resolved = bridge.handle(real("resolved"), f"bearer {TOKEN}")
    assert resolved.action == "resolve" and resolved.dedup_key == fired.dedup_key == mixed.dedup_key
    claimed = outbox.claim("w", 10, lease=60)
    assert [e.prepared.action for e in claimed] == ["trigger", "trigger"], "one head per key and group"
    body = body_json(claimed[0])
    assert body["payload"]["summary"] == "[CRITICAL] [FIRING:2] prod HighLatency"
    assert body["client"] == "Alertmanager" and body["client_url"] == "http://vm:9912"


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Token {TOKEN}"])
def test_the_token_is_required(outbox: Outbox, authorization: str | None) -> None:
    with pytest.raises(Unauthorized):
        AlertmanagerBridge(outbox, [SERVICE_KEY], token=TOKEN).handle(real("firing"), authorization)
    assert outbox.stats().depth == 0


def test_refusals(outbox: Outbox) -> None:
    bridge = AlertmanagerBridge(outbox, [SERVICE_KEY], max_body_bytes=100)
    with pytest.raises(PayloadTooLarge):
        bridge.handle(real("firing"))
    with pytest.raises(PayloadInvalid):
        AlertmanagerBridge(outbox, [SERVICE_KEY]).handle(b'{"version": "4"}')
    with pytest.raises(ValueError):
        AlertmanagerBridge(outbox, [])
    assert "token" in repr(AlertmanagerBridge(outbox, [SERVICE_KEY], token=TOKEN))
    assert TOKEN not in repr(AlertmanagerBridge(outbox, [SERVICE_KEY], token=TOKEN))


def test_over_http(outbox: Outbox) -> None:
    server = serve(AlertmanagerBridge(outbox, [SERVICE_KEY], token=TOKEN), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    with serving(server), requests.Session() as http:
        ok = http.post(url, data=real("firing"), headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert ok.status_code == 202 and ok.json()["action"] == "trigger" and ok.json()["enqueued"] == 1
        assert http.post(url, data=real("firing"), timeout=10).status_code == 401
        bad = http.post(url, data=b"{}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        assert bad.status_code == 400 and bad.json()["error"]["type"] == "PayloadInvalid"
        assert http.get(url + "healthz", timeout=10).json() == {"status": "ok"}


def test_a_database_outage_is_a_503_so_alertmanager_retries(tmp_path: Path) -> None:
    outbox = Outbox(f"sqlite:///{tmp_path / 'gone.db'}")
    outbox.drop_tables()
    server = serve(AlertmanagerBridge(outbox, [SERVICE_KEY]), "127.0.0.1", 0)
    with serving(server):
        answer = requests.post(f"http://127.0.0.1:{server.server_address[1]}/", data=real("firing"), timeout=10)
    assert answer.status_code == 503
    outbox.close()


class Cli:
    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url


@pytest.fixture
def cli(pagerduty_sandbox: PagerDutySandbox, tmp_path: Path) -> Iterator[Cli]:
    env = {
        **os.environ,
        "PDCONNECT_ROUTING_KEYS": pagerduty_sandbox.service_key(),
        "PDCONNECT_ALERTMANAGER_TOKEN": TOKEN,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pdconnect.cli",
            "alertmanager",
            "--listen",
            "127.0.0.1:0",
            "--database",
            f"sqlite:///{tmp_path / 'bridge.db'}",
            "--create",
            "--events-base-url",
            pagerduty_sandbox.url,
            "--worker",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    first = process.stdout.readline()
    assert "listening on http://" in first, first
    url = first.split("listening on ")[1].split()[0]
    try:
        yield Cli(process, url)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=20)
        process.stdout.close()


def test_a_real_alertmanager_through_the_command_line(
    cli: Cli, pagerduty_sandbox: PagerDutySandbox, tmp_path: Path
) -> None:
    def status(prefix: str) -> str | None:
        """The newest matching incident's status (read in process: wait_for holds the sandbox's lock)."""
        found = [i for i in pagerduty_sandbox.sandbox.incidents() if i.title.startswith(prefix)]
        return found[-1].status if found else None

    def incident(prefix: str) -> dict[str, object] | None:
        found = [i for i in pagerduty_sandbox.incidents() if str(i["title"]).startswith(prefix)]
        return found[-1] if found else None

    def latency(instance: str, *, resolved: bool = False) -> dict[str, object]:
        alert: dict[str, object] = {
            "labels": {"alertname": "HighLatency", "env": "prod", "severity": "critical", "instance": instance},
            "annotations": {"summary": "p99 over 2s"},
            "generatorURL": "http://prometheus.local:9090/graph",
        }
        return {**alert, "endsAt": now()} if resolved else alert

    with alertmanager(cli.url + "/", TOKEN, tmp_path) as am:
        am.post([latency("checkout-1"), latency("checkout-2")])
        pagerduty_sandbox.wait_for(lambda: status("[CRITICAL] [FIRING:2] prod HighLatency") is not None, timeout=30,
                                   what="the group's incident")  # fmt: skip
        opened = incident("[CRITICAL]")
        assert opened is not None and opened["status"] == "triggered"
        am.post([latency("checkout-1", resolved=True)])  # a mixed group: still open
        am.post([latency("checkout-2", resolved=True)])
        pagerduty_sandbox.wait_for(lambda: status("[CRITICAL]") == "resolved", timeout=30,
                                   what="the incident resolved")  # fmt: skip
        assert len([i for i in pagerduty_sandbox.incidents() if str(i["title"]).startswith("[CRITICAL]")]) == 1

        # An oversized group: 1,500 alerts with long descriptions, far over PagerDuty's 512 KB.
        many = [
            {
                "labels": {"alertname": "DiskFull", "env": "prod", "severity": "warning", "device": f"sd{i}"},
                "annotations": {"description": "d" * 1000},
            }
            for i in range(1500)
        ]
        am.post(many)
        pagerduty_sandbox.wait_for(lambda: status("[WARNING] [FIRING:1500] prod DiskFull") is not None, timeout=30,
                                   what="the oversized group's incident")  # fmt: skip
    big = incident("[WARNING]")
    assert big is not None
    details = big["alerts"][0]["details"]  # type: ignore[index]
    assert details["firing"] == 1500 and details["omitted_alerts"] > 0
    assert len(details["alerts"]) + details["omitted_alerts"] == 1500
    accepted = [r for r in pagerduty_sandbox.received() if r["status"] == 202]
    assert accepted and all(len(json.dumps(r["request"])) < 512 * 1024 for r in accepted)

    cli.process.send_signal(signal.SIGTERM)
    assert cli.process.wait(timeout=30) == 0


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (
            ["--listen", "nowhere"],
            {"PDCONNECT_ROUTING_KEYS": SERVICE_KEY, "PDCONNECT_ALERTMANAGER_TOKEN": TOKEN},
            "HOST:PORT",
        ),
        ([], {"PDCONNECT_ALERTMANAGER_TOKEN": TOKEN}, "PDCONNECT_ROUTING_KEYS"),
        ([], {"PDCONNECT_ROUTING_KEYS": "not-a-key", "PDCONNECT_ALERTMANAGER_TOKEN": TOKEN}, "32 characters"),
        ([], {"PDCONNECT_ROUTING_KEYS": SERVICE_KEY}, "PDCONNECT_ALERTMANAGER_TOKEN"),
        (["--listen", "0.0.0.0:9", "--no-token"], {"PDCONNECT_ROUTING_KEYS": SERVICE_KEY}, "only on loopback"),
        (
            ["--events-base-url", "ftp://x"],
            {"PDCONNECT_ROUTING_KEYS": SERVICE_KEY, "PDCONNECT_ALERTMANAGER_TOKEN": TOKEN},
            "URL",
        ),
    ],
)
def test_the_command_line_refuses_bad_settings(
    argv: list[str],
    env: dict[str, str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pdconnect.cli import main

    for name in ("PDCONNECT_ROUTING_KEYS", "PDCONNECT_ALERTMANAGER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status = main(["alertmanager", "--database", f"sqlite:///{tmp_path / 'o.db'}", *argv])
    assert status == 2
    error = capsys.readouterr().err
    assert message in error
    assert TOKEN not in error
