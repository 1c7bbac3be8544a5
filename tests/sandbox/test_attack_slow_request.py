"""A request must arrive whole within the sandbox's ``read_timeout``, however it trickles in (issue 9).

The timeout used to bound each ``recv()`` only, so a client sending a byte just before every
timeout held a server thread for as long as it liked, in the request line, the headers or the
body. Now one deadline is set when a request's first bytes arrive and every later read may
wait only for what is left of it; once it has passed the request is answered 408 and closed.

The server's clock is injected: it moves one second on at every reading, and the server reads
it once per read from the socket. The tests send one piece per reading, so "a client that
sends a little before each read times out" is exact, with no sleeps and no timing thresholds.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import queue
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdconnect.sandbox import Sandbox, SandboxServer, SandboxSettings

#: Seconds of the stepping clock a request has; real socket waits are bounded by it too.
TIMEOUT = 4


class SteppingClock:
    """A clock one second later at each reading, that hands the test every value it gives out."""

    def __init__(self) -> None:
        self.now = 0.0
        self.readings: queue.Queue[float] = queue.Queue()

    def __call__(self) -> float:
        self.now += 1
        self.readings.put(self.now)
        return self.now

    def next_reading(self) -> float:
        """The next time the server reads the clock (waits for it: the server is about to read)."""
        try:
            return self.readings.get(timeout=30)  # only stops a hung test
        except queue.Empty:
            raise AssertionError("the server did not read its clock before reading from the socket") from None

    def forget(self) -> None:
        while not self.readings.empty():
            self.readings.get_nowait()


@pytest.fixture(scope="module")
def clock() -> SteppingClock:
    return SteppingClock()


@pytest.fixture(scope="module")
def server(clock: SteppingClock) -> Iterator[SandboxServer]:
    sandbox = Sandbox(SandboxSettings(rate_limit=None))
    with SandboxServer(sandbox, read_timeout=TIMEOUT, max_body=64 * 1024, clock=clock) as server:
        yield server


def _until_closed(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset after its answer ends it too)."""
    data = b""
    try:
        while chunk := conn.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def _drip(server: SandboxServer, clock: SteppingClock, pieces: list[bytes]) -> bytes:
    """Send ``pieces`` one per read of the server, as the slowest patient client would; the answer.

    The server reads its clock when a request's first bytes arrive (its deadline starts) and
    before each later read, so a piece sent after each reading reaches a server waiting for
    it. Once a reading is past the deadline the rest goes at once: a server that still read
    would then have the whole request and answer it.
    """
    clock.forget()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        conn.sendall(pieces[0])
        deadline = clock.next_reading() + TIMEOUT
        for index, piece in enumerate(pieces[1:], start=1):
            if clock.next_reading() >= deadline:
                with contextlib.suppress(OSError):  # the server may have closed already
                    conn.sendall(b"".join(pieces[index:]))
                break
            conn.sendall(piece)
        return _until_closed(conn)


def _status(answer: bytes) -> int:
    assert answer, "the server closed the connection without an answer"
    return int(answer.split(b" ", 2)[1])


def _request(server: SandboxServer, *headers: str, method: str = "GET", path: str = "/_sandbox/api/state") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _bytes(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def _slow_parts(server: SandboxServer) -> dict[str, list[bytes]]:
    """Requests that would each be complete after many more pieces than the deadline allows."""
    body = json.dumps({"routing_key": "x" * 32, "event_action": "resolve", "dedup_key": "k"}).encode()
    chunked = b"".join(b"1\r\n" + byte + b"\r\n" for byte in _bytes(body)) + b"0\r\n\r\n"
    line, _, rest = _request(server).partition(b"\r\n")
    post = ["Content-Type: application/json"]
    sized = _request(server, f"Content-Length: {len(body)}", *post, method="POST", path="/v2/enqueue")
    dechunked = _request(server, "Transfer-Encoding: chunked", *post, method="POST", path="/v2/enqueue")
    return {
        "request line": [*_bytes(line + b"\r\n"), rest],
        "headers": [line + b"\r\n", *[f"X-Slow-{i}: a\r\n".encode() for i in range(20)], rest],
        "header bytes": [line + b"\r\n", *_bytes(b"X-Slow: " + b"a" * 20 + b"\r\n"), rest],
        "body": [sized, *_bytes(body)],
        "chunked body": [dechunked, *_bytes(chunked)],
    }


@pytest.mark.parametrize("part", ["request line", "headers", "header bytes", "body", "chunked body"])
def test_a_request_that_trickles_in_past_its_deadline_is_a_408_and_closed(
    server: SandboxServer, clock: SteppingClock, part: str
) -> None:
    answer = _drip(server, clock, _slow_parts(server)[part])
    assert _status(answer) == 408
    assert b"Connection: close" in answer
    assert "did not arrive within" in json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["message"]


@pytest.mark.parametrize("part", ["request line", "headers", "header bytes", "body", "chunked body"])
def test_the_same_request_sent_at_once_is_answered(server: SandboxServer, clock: SteppingClock, part: str) -> None:
    answer = _drip(server, clock, [b"".join(_slow_parts(server)[part])])
    assert _status(answer) in (200, 400)  # 400: the events API's "Invalid routing key", so the body was read
    assert b"did not arrive" not in answer


def test_a_slow_client_does_not_hold_up_others(server: SandboxServer, clock: SteppingClock) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as stuck:
        stuck.sendall(b"GET /_sandbox/api/state HTTP/1.1\r\n")
        clock.next_reading()  # the stuck request has started and waits for its headers
        assert _status(_drip(server, clock, [_request(server)])) == 200


_REQUEST = b"GET /_sandbox/api/state HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nX-Pad: abcdefgh\r\n\r\n"


@settings(max_examples=40, deadline=None)
@given(cuts=st.sets(st.integers(1, 80), max_size=9))
def test_property_a_request_is_answered_if_it_fits_in_the_deadline_and_408_if_not(
    server: SandboxServer, clock: SteppingClock, cuts: set[int]
) -> None:
    request = _REQUEST.replace(b"{port}", str(server.port).encode())
    bounds = [0, *sorted(cuts), len(request)]
    pieces = [request[a:b] for a, b in itertools.pairwise(bounds)]
    answer = _drip(server, clock, pieces)
    # The first piece starts the deadline; each later one needs one more reading of the clock.
    assert _status(answer) == (200 if len(pieces) <= TIMEOUT else 408)
