"""The leaner http.client transport: the same behaviour as the default, on real sockets."""

from __future__ import annotations

import gzip
import json
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pdconnect import RetryPolicy, Sender
from pdconnect.errors import DeliveryFailed, EventRejected
from pdconnect.sandbox import SandboxServer, make_certificates
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.transport import MAX_RESPONSE_BYTES, HttpClientTransport, RequestsTransport, TransportError
from tests.conftest import SERVICE_KEY
from tests.endpoint import recording_endpoint
from tests.servers import serving


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
    sender = sender_for(
        pagerduty_sandbox.url, retry=RetryPolicy(max_attempts=3, rate_limit_delay=1), sleep=waits.append
    )
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


# -- answers too large to hold (issue 9) -----------------------------------------------------


class _Flood:
    """A loopback 'events API' whose answers are huge: a long body, an endless one, a gzip bomb."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.requests = 0
        self.connections: set[int] = set()  # client ports: one per TCP connection
        flood = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                flood.requests += 1
                flood.connections.add(self.client_address[1])
                if flood.requests > 1 or flood.kind == "small":
                    return self._send(b'{"status": "success", "message": "Event processed", "dedup_key": "k"}')
                try:
                    if flood.kind == "long":
                        self._send(b" " * (8 * MAX_RESPONSE_BYTES))
                    elif flood.kind == "gzip":
                        self._send(gzip.compress(b" " * (64 * MAX_RESPONSE_BYTES)), encoding="gzip")
                    else:  # endless, until the client hangs up
                        self.send_response(202)
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        chunk = b" " * 65536
                        while True:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _send(self, body: bytes, encoding: str | None = None) -> None:
                self.send_response(202)
                self.send_header("Content-Length", str(len(body)))
                if encoding:
                    self.send_header("Content-Encoding", encoding)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.mark.parametrize(
    ("kind", "transport_class"),
    [
        ("long", HttpClientTransport),
        ("long", RequestsTransport),
        ("endless", HttpClientTransport),
        ("endless", RequestsTransport),
        ("gzip", RequestsTransport),  # http.client asks for no compression and decodes none
    ],
)
def test_a_flood_of_an_answer_is_cut_and_the_connection_replaced(kind: str, transport_class: type) -> None:
    flood = _Flood(kind)
    with serving(flood.server):
        transport = transport_class()
        first = transport.post(flood.url + "/v2/enqueue", b"{}", {"Content-Type": "application/json"}, (2, 5))
        assert first.status == 202
        assert len(first.body) <= MAX_RESPONSE_BYTES
        # The rest of the flood is never read as the next answer: a fresh connection is used.
        second = transport.post(flood.url + "/v2/enqueue", b"{}", {"Content-Type": "application/json"}, (2, 5))
        assert json.loads(second.body)["dedup_key"] == "k"
        transport.close()
    assert flood.requests == 2
    if kind != "gzip":  # a bomb's compressed bytes may all be read, leaving the connection reusable
        assert len(flood.connections) == 2


@pytest.mark.parametrize("transport_class", [HttpClientTransport, RequestsTransport])
def test_small_answers_keep_the_connection(transport_class: type) -> None:
    flood = _Flood("small")
    with serving(flood.server):
        sender = Sender(events_base_url=flood.url, transport=transport_class())
        for i in range(3):
            assert sender.resolve(SERVICE_KEY, f"k{i}").status == 202
        sender.close()
    assert flood.requests == 3
    assert len(flood.connections) == 1, "a body read to its end leaves the connection reusable"


def test_a_flooded_202_is_still_a_delivery() -> None:
    flood = _Flood("endless")
    with serving(flood.server):
        sender = Sender(events_base_url=flood.url, transport=HttpClientTransport())
        result = sender.trigger(SERVICE_KEY, "down", source="h", severity="critical", dedup_key="d1")
        sender.close()
    assert (result.status, result.dedup_key, result.attempts) == (202, "d1", 1)
