"""Answers sent with ``Connection: close`` arrive whole on every transport.

The deadline reader of :class:`RequestsTransport` once read the raw socket without holding it
open, so ``http.client``, closing a ``Connection: close`` connection as soon as the headers were
in, closed the socket under the body: about half such answers were lost (EBADF) and retried,
which spends an OAuth code and would resend an event. PagerDuty's identity host and many
proxies answer this way.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect.transport import HttpClientTransport, RequestsTransport, Transport
from tests.servers import serving


class _ClosingHandler(BaseHTTPRequestHandler):
    """Echoes the body's length and a padding of the size asked, then closes the connection."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        asked = json.loads(self.rfile.read(length))
        answer = json.dumps({"n": asked["n"], "padding": "x" * asked["size"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(answer)
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def closing_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ClosingHandler)
    server.daemon_threads = True
    with serving(server):
        yield f"http://127.0.0.1:{server.server_address[1]}/"


TRANSPORTS = {
    "requests-own-session": RequestsTransport,
    "http-client": HttpClientTransport,
}


def _ask(transport: Transport, url: str, n: int, size: int) -> dict[str, object]:
    body = json.dumps({"n": n, "size": size}).encode()
    response = transport.post(url, body, {"Content-Type": "application/json"}, (5.0, 5.0))
    assert response.status == 200
    answer: dict[str, object] = json.loads(response.body)
    return answer


@pytest.mark.parametrize("make", TRANSPORTS.values(), ids=TRANSPORTS.keys())
@pytest.mark.parametrize("size", [0, 1, 100, 16_384, 200_000])
def test_every_answer_with_connection_close_arrives_whole(closing_url: str, make: type, size: int) -> None:
    transport = make()
    try:
        for n in range(60):
            assert _ask(transport, closing_url, n, size) == {"n": n, "padding": "x" * size}
    finally:
        transport.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(min_value=0, max_value=70_000), min_size=1, max_size=8))
def test_any_sequence_of_closing_answers_arrives_whole(closing_url: str, sizes: list[int]) -> None:
    transport = RequestsTransport()
    try:
        for n, size in enumerate(sizes):
            assert _ask(transport, closing_url, n, size) == {"n": n, "padding": "x" * size}
    finally:
        transport.close()
