"""PagerDuty's own Python client, unchanged, against the sandbox over TLS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pagerduty
import pytest

from pdconnect.sandbox import SandboxClient, SandboxServer, make_certificates


@pytest.fixture(scope="module")
def tls_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    files = make_certificates(tmp_path_factory.mktemp("tls"))
    with SandboxServer(tls=files) as server:
        yield server


def test_trigger_acknowledge_resolve_and_a_change_event(tls_sandbox: SandboxServer) -> None:
    assert tls_sandbox.url.startswith("https://")
    ca = str(tls_sandbox.ca_path)
    control = SandboxClient(tls_sandbox.url, verify=ca)
    key = control.service_key()
    client = pagerduty.EventsApiV2Client(key, base_url=tls_sandbox.url, verify=ssl.create_default_context(cafile=ca))

    dedup_key = client.trigger("Disk full on db-1", "db-1", dedup_key="db-1/disk", severity="error",
                               custom_details={"free": "1%"})  # fmt: skip
    assert dedup_key == "db-1/disk"
    assert control.incident_for("db-1/disk")["status"] == "triggered"
    assert client.acknowledge(dedup_key) == dedup_key
    assert control.incident_for("db-1/disk")["status"] == "acknowledged"
    assert client.resolve(dedup_key) == dedup_key
    assert control.incident_for("db-1/disk")["status"] == "resolved"
    client.send_change_event(
        payload={"summary": "Deployed v42", "source": "ci"}, links=[{"href": "https://ci.example/42"}]
    )
    client.close()
    received = control.received()
    assert [(r["path"], r["status"]) for r in received] == [("/v2/enqueue", 202)] * 3 + [("/v2/change/enqueue", 202)]
    control.close()


def test_a_trigger_without_dedup_key_gets_the_sandboxs(tls_sandbox: SandboxServer) -> None:
    ca = str(tls_sandbox.ca_path)
    control = SandboxClient(tls_sandbox.url, verify=ca)
    context = ssl.create_default_context(cafile=ca)
    client = pagerduty.EventsApiV2Client(control.service_key("Database"), base_url=tls_sandbox.url, verify=context)
    dedup_key = client.trigger("Replica lag", "db-2")
    client.close()
    assert control.incident_for(dedup_key)["title"] == "Replica lag"
    control.close()


def test_certificate_files(tls_sandbox: SandboxServer) -> None:
    assert tls_sandbox.ca_path is not None
    assert Path(tls_sandbox.ca_path).read_text().startswith("-----BEGIN CERTIFICATE-----")
