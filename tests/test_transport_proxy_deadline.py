"""An HTTPS proxy's answer to ``CONNECT`` is read under the attempt's deadline too (issue 9).

``http.client`` reads the proxy's status line and headers in ``_tunnel()``, from ``connect()``,
with a timeout on each read only, so a proxy that answers ``200 Connection established`` and
then dribbles header lines kept an attempt going for as long as it liked, past a worker's
lease; ``default_worker_transport()`` picks :class:`RequestsTransport` exactly when a proxy is
set. The clock is injected and steps each time it is read: the deadline passes after a known
number of reads, and no test waits on the real time. The proxy is a loopback socket; the
origin's name is never looked up (it goes to the proxy in the ``CONNECT`` line).
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdconnect.transport import RequestsTransport, TransportError, TransportTimeout, default_worker_transport

ORIGIN = "https://events.pagerduty.invalid/v2/enqueue"
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n"
#: Header lines after the status line: more reads than any deadline here allows, then the end
#: of the headers and a closed connection (a TLS failure, not a timeout, for a client that got there).
ENDLESS_HEADERS = b"X-Slow: a\r\n" * 100_000 + b"\r\n"  # 1.1 MB: over 130 reads of 8 KiB


class SteppingClock:
    """A monotonic clock that moves ``step`` seconds each time it is read."""

    def __init__(self, step: float = 1.0) -> None:
        self.now = 1000.0
        self.step = step
        self.reads = 0

    def __call__(self) -> float:
        self.now += self.step
        self.reads += 1
        return self.now


@contextlib.contextmanager
def proxy(answer: bytes) -> Iterator[str]:
    """A loopback "proxy" that reads a ``CONNECT`` and answers ``answer``; yields its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    connects: list[bytes] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                request = b""
                while b"\r\n\r\n" not in request and (data := conn.recv(65536)):
                    request += data
                connects.append(request)
                conn.sendall(answer)  # a client that stops reading resets it: that ends it

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        thread.join(timeout=30)  # the client connected: the proxy accepts it, however soon it left
        listener.close()
    assert connects and connects[0].startswith(b"CONNECT events.pagerduty.invalid:443 ")


@pytest.fixture
def through(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


def _post(url: str, monkeypatch: pytest.MonkeyPatch, clock: SteppingClock, timeout: tuple[float, float]) -> None:
    monkeypatch.setenv("HTTPS_PROXY", url)
    transport = RequestsTransport(clock=clock)
    try:
        transport.post(ORIGIN, b"{}", {}, timeout)
    finally:
        transport.close()


@pytest.mark.usefixtures("through")
@pytest.mark.parametrize(
    "answer",
    [
        ESTABLISHED + ENDLESS_HEADERS,
        b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * 60_000 + b"\r\n" + ENDLESS_HEADERS,
        b"HTTP/1.1 200 " + b"x" * 60_000 + b"\r\n" + ENDLESS_HEADERS,
    ],
    ids=["many header lines", "long header lines", "long status line"],
)
def test_a_proxy_that_dribbles_its_connect_answer_ends_in_a_timeout(
    monkeypatch: pytest.MonkeyPatch, answer: bytes
) -> None:
    clock = SteppingClock()
    with proxy(answer) as url, pytest.raises(TransportTimeout, match=r"no complete answer within 2 s"):
        _post(url, monkeypatch, clock, (1.0, 1.0))
    assert clock.reads <= 3  # the start, one read in time, the read that finds the deadline passed


@pytest.mark.usefixtures("through")
@pytest.mark.parametrize(
    ("answer", "timeout"),
    [
        (ESTABLISHED + b"\r\n", False),  # the tunnel is up; the TLS handshake meets a closed socket
        (b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", False),
        (b"", False),
        (b"garbage\r\n\r\n", False),
    ],
)
def test_a_proxy_that_answers_in_time_gets_no_timeout(
    monkeypatch: pytest.MonkeyPatch, answer: bytes, timeout: bool
) -> None:
    with proxy(answer) as url, pytest.raises(TransportError) as failed:
        _post(url, monkeypatch, SteppingClock(step=0.001), (1.0, 1.0))
    assert isinstance(failed.value, TransportTimeout) is timeout


@pytest.mark.usefixtures("through")
@settings(max_examples=20, deadline=None)
@given(
    connect=st.floats(0.05, 10, allow_nan=False),
    read=st.floats(0.05, 30, allow_nan=False),
    step=st.floats(0.5, 5, allow_nan=False),  # at most 80 reads of 8 KiB: fewer than the headers need
)
def test_property_no_read_of_the_tunnel_starts_after_the_deadline(connect: float, read: float, step: float) -> None:
    clock = SteppingClock(step)
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        proxy(ESTABLISHED + ENDLESS_HEADERS) as url,
        pytest.raises(TransportTimeout),
    ):
        _post(url, monkeypatch, clock, (connect, read))
    # One reading starts the deadline; each read of the tunnel takes one more, and the one
    # that finds no time left is the last.
    assert clock.reads <= math.ceil((connect + read) / step) + 2


def test_a_worker_with_a_proxy_uses_the_transport_under_test(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    transport = default_worker_transport()
    try:
        assert isinstance(transport, RequestsTransport)
    finally:
        transport.close()
