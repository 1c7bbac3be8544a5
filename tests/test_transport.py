"""The leaner http.client transport: the same behaviour as the default, on real sockets."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pdconnect import RetryPolicy, Sender
from pdconnect.errors import DeliveryFailed, EventRejected
from pdconnect.sandbox import SandboxServer, make_certificates
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.transport import HttpClientTransport, TransportError
from tests.conftest import SERVICE_KEY
from tests.endpoint import recording_endpoint


def sender_for(url: str, **options: object) -> Sender:
    return Sender(events_base_url=url, transport=HttpClientTransport(), **options)  # type: ignore[arg-type]


def test_trigger_and_resolve_against_the_sandbox(pagerduty_sandbox: PagerDutySandbox) -> None:
    sender = sender_for(pagerduty_sandbox.url, client="Acme")
    key = pagerduty_sandbox.service_key()
    result = sender.trigger(key, "down", source="h", severity="critical", dedup_key="t1")
    assert (result.status, result.dedup_key, result.message) == (202, "t1", "Event processed")
    sender.resolve(key, "t1")
    assert pagerduty_sandbox.incident_for("t1")["status"] == "resolved"
    received = pagerduty_sandbox.received()
    assert received[0]["request"]["client"] == "Acme"
    sender.close()


def test_refusals_and_retries(pagerduty_sandbox: PagerDutySandbox) -> None:
    waits: list[float] = []
    sender = sender_for(pagerduty_sandbox.url, retry=RetryPolicy(max_attempts=3), sleep=waits.append)
    with pytest.raises(EventRejected, match="Invalid routing key"):
        sender.resolve("f" * 32, "k")
    pagerduty_sandbox.set_faults("429-retry-after=1,retry-after=2")
    with pytest.raises(DeliveryFailed) as info:
        sender.resolve(pagerduty_sandbox.service_key(), "k")
    assert info.value.status == 429
    assert waits == [2.0, 2.0], "Retry-After is read from http.client's headers too"
    pagerduty_sandbox.set_faults("drop=1")
    with pytest.raises(DeliveryFailed, match="connection failed"):
        sender.resolve(pagerduty_sandbox.service_key(), "k")
    sender.close()


def test_a_dropped_connection_is_replaced(pagerduty_sandbox: PagerDutySandbox) -> None:
    sender = sender_for(pagerduty_sandbox.url, retry=RetryPolicy(max_attempts=2), sleep=lambda s: None)
    key = pagerduty_sandbox.service_key()
    sender.resolve(key, "a")
    pagerduty_sandbox.set_faults("drop=1")
    with pytest.raises(DeliveryFailed):
        sender.resolve(key, "b")
    pagerduty_sandbox.set_faults("")
    assert sender.resolve(key, "c").status == 202
    sender.close()


def test_many_threads_share_one_transport() -> None:
    with recording_endpoint() as endpoint:
        sender = sender_for(endpoint.url)

        def send(i: int) -> str | None:
            return sender.resolve(SERVICE_KEY, f"k{i}").dedup_key

        with ThreadPoolExecutor(max_workers=8) as pool:
            keys = list(pool.map(send, range(200)))
        sender.close()
    assert keys == [f"k{i}" for i in range(200)]
    assert sorted(b["dedup_key"] for b in endpoint.bodies) == sorted(keys)
    assert all(json.dumps(b) for b in endpoint.bodies)


def test_tls_with_a_private_certificate_authority(tmp_path: Path) -> None:
    files = make_certificates(tmp_path)
    with SandboxServer(tls=files) as server:
        key = server.sandbox.keys_of(server.sandbox.services()[0].id)[0].id
        trusted = Sender(events_base_url=server.url, transport=HttpClientTransport(verify=str(files.ca_path)))
        assert trusted.resolve(key, "k").status == 202
        untrusted = Sender(events_base_url=server.url, transport=HttpClientTransport(), retry=RetryPolicy.no_retries())
        with pytest.raises(DeliveryFailed):
            untrusted.resolve(key, "k")
        unverified = Sender(events_base_url=server.url, transport=HttpClientTransport(verify=False))
        assert unverified.resolve(key, "k").status == 202
        for sender in (trusted, untrusted, unverified):
            sender.close()


@pytest.mark.parametrize("url", ["ftp://x/v2/enqueue", "http://:99999/x", "http:///x"])
def test_bad_urls_are_not_retried(url: str) -> None:
    with pytest.raises(TransportError) as info:
        HttpClientTransport().post(url, b"{}", {}, (1, 1))
    assert not info.value.retryable


def test_nothing_listening() -> None:
    with pytest.raises(TransportError, match="connection failed") as info:
        HttpClientTransport().post("http://127.0.0.1:9/v2/enqueue", b"{}", {}, (1, 1))
    assert info.value.retryable
