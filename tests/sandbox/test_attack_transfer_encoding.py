"""The sandbox frames a body by ``Content-Length`` or a lone ``chunked``, nothing else (issue 9).

Any ``Transfer-Encoding`` value used to skip the 413 check and leave the body to Werkzeug,
which framed it by its ``Content-Length``: a request over ``max_body`` reached the app. Now
any other transfer coding, or one together with a ``Content-Length``, is a 400 before a byte
of the body is read (RFC 9112 §6.1), and a chunked body is counted against ``max_body`` as it
is read. The server's read timeout is long here: a test that got a 408 would mean the server
waited for a body it should have refused unread.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdconnect.sandbox import Sandbox, SandboxServer, SandboxSettings

MAX_BODY = 1000
EVENT = json.dumps({"routing_key": "x" * 32, "event_action": "resolve", "dedup_key": "k"}).encode()


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    sandbox = Sandbox(SandboxSettings(rate_limit=None))
    with SandboxServer(sandbox, read_timeout=60, max_body=MAX_BODY) as server:
        yield server


def _send(server: SandboxServer, data: bytes) -> bytes:
    """Send ``data`` and return all the server answers until it closes the connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as conn:
        conn.sendall(data)
        answer = b""
        try:
            while chunk := conn.recv(65536):
                answer += chunk
        except ConnectionResetError:  # closed with our unread bytes: after its answer
            pass
    return answer


def _head(server: SandboxServer, *headers: str, version: str = "HTTP/1.1", path: str = "/v2/enqueue") -> bytes:
    lines = [f"POST {path} {version}", f"Host: 127.0.0.1:{server.port}", "Content-Type: application/json",
             "Connection: close", *headers]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status(answer: bytes) -> int:
    assert answer, "closed without an answer"
    return int(answer.split(b" ", 2)[1])


def _chunked(body: bytes, sizes: list[int] | None = None) -> bytes:
    sizes = sizes or [len(body)]
    out, start = b"", 0
    for size in sizes:
        piece = body[start : start + size]
        start += size
        if piece:
            out += b"%x\r\n%s\r\n" % (len(piece), piece)
    if start < len(body):
        out += b"%x\r\n%s\r\n" % (len(body) - start, body[start:])
    return out + b"0\r\n\r\n"


def _is_pagerduty_answer(answer: bytes) -> bool:
    """The events API's own answer to the unknown key: the body arrived whole and was parsed."""
    return _status(answer) == 400 and b"Invalid routing key" in answer


@pytest.mark.parametrize(
    "coding",
    ["identity", "gzip", "deflate", "compress", "gzip, chunked", "chunked, gzip", "chunked, chunked", "chunked,",
     "chunk", "chunkedx", "xchunked", "chunked;q=1", '"chunked"', "", "chunked\x0b", "\x0cchunked", "ch\u00fcnked",
     "chun\u212aed"],
)  # fmt: skip
@pytest.mark.parametrize("length", [None, "5000", "10"])
def test_a_transfer_encoding_other_than_chunked_is_a_400_unread(
    server: SandboxServer, coding: str, length: str | None
) -> None:
    lengths = [f"Content-Length: {length}"] if length else []
    head = _head(server, f"Transfer-Encoding: {coding}", *lengths).replace("ü".encode(), b"\xfc")
    answer = _send(server, head)  # and never a byte of the body
    assert _status(answer) == 400
    assert b"The only Transfer-Encoding accepted is chunked" in answer
    assert b"Connection: close" in answer


@pytest.mark.parametrize("length", ["5000", str(len(_chunked(EVENT))), "0"])
def test_chunked_with_a_content_length_is_a_400_unread(server: SandboxServer, length: str) -> None:
    answer = _send(server, _head(server, "Transfer-Encoding: chunked", f"Content-Length: {length}"))
    assert _status(answer) == 400
    assert b"both Transfer-Encoding and Content-Length" in answer


def test_two_transfer_encoding_headers_are_a_400(server: SandboxServer) -> None:
    head = _head(server, "Transfer-Encoding: chunked", "Transfer-Encoding: chunked")
    assert b"The only Transfer-Encoding accepted is chunked" in _send(server, head)


def test_chunked_in_an_http_1_0_request_is_a_400(server: SandboxServer) -> None:
    answer = _send(server, _head(server, "Transfer-Encoding: chunked", version="HTTP/1.0"))
    assert _status(answer) == 400
    assert b"not allowed in an HTTP/1.0 request" in answer


@pytest.mark.parametrize("coding", ["chunked", "Chunked", "CHUNKED", " chunked ", "\tchunked\t"])
def test_a_chunked_body_reaches_the_events_api(server: SandboxServer, coding: str) -> None:
    answer = _send(server, _head(server, f"Transfer-Encoding: {coding}") + _chunked(EVENT, [7, 1, 30]))
    assert _is_pagerduty_answer(answer)


def test_chunk_extensions_and_trailers_are_read_and_dropped(server: SandboxServer) -> None:
    body = b"%x;name=value;other\r\n%s\r\n0;last\r\nX-Trailer: 1\r\nX-Other: 2\r\n\r\n" % (len(EVENT), EVENT)
    assert _is_pagerduty_answer(_send(server, _head(server, "Transfer-Encoding: chunked") + body))


def test_a_chunked_body_reaches_the_wsgi_application_too(server: SandboxServer) -> None:
    body = json.dumps({"seed": True}).encode()
    answer = _send(server, _head(server, "Transfer-Encoding: chunked", path="/_sandbox/api/reset") + _chunked(body))
    assert _status(answer) == 200


@pytest.mark.parametrize("announced", [MAX_BODY + 1, 10**9, 16**16 - 1])
def test_a_chunk_over_the_maximum_is_a_413_before_it_is_sent(server: SandboxServer, announced: int) -> None:
    answer = _send(server, _head(server, "Transfer-Encoding: chunked") + b"%x\r\n" % announced)
    assert _status(answer) == 413


def test_chunks_that_add_up_past_the_maximum_are_a_413_at_the_one_that_passes(server: SandboxServer) -> None:
    chunks = b"".join(b"64\r\n" + b"a" * 100 + b"\r\n" for _ in range(MAX_BODY // 100))  # exactly MAX_BODY
    answer = _send(server, _head(server, "Transfer-Encoding: chunked") + chunks + b"1\r\n")  # one byte more
    assert _status(answer) == 413


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\n", b"0x10\r\n", b"+5\r\n", b" 5\r\n", b"5 \r\n", b"-1\r\n", b"\r\n", b"1" * 17 + b"\r\n",
        b"\xef\xbc\x95\r\n", b"5\n{}{}{\r\n0\r\n\r\n", b"5\r;x\r\n", b"5;" + b"e" * 5000 + b"\r\n",
        b"2\r\n{}}}\r\n0\r\n\r\n", b"2\r\n{}\n0\r\n\r\n", b"0\r\n" + b"X-T: 1\r\n" * 101 + b"\r\n",
        b"0\r\nX-T: 1\n\r\n",
    ],
)  # fmt: skip
def test_a_malformed_chunked_body_is_a_400(server: SandboxServer, body: bytes) -> None:
    answer = _send(server, _head(server, "Transfer-Encoding: chunked") + body)
    assert _status(answer) == 400
    assert b"Invalid routing key" not in answer


def test_a_chunked_body_cut_short_gets_no_answer(server: SandboxServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as conn:
        conn.sendall(_head(server, "Transfer-Encoding: chunked") + b"10\r\nabc")
        conn.shutdown(socket.SHUT_WR)
        assert conn.recv(65536) == b""


@settings(max_examples=40, deadline=None)
@given(padding=st.integers(0, 2 * MAX_BODY), sizes=st.lists(st.integers(1, 400), max_size=8))
def test_property_a_chunked_body_is_413_past_the_maximum_and_read_whole_below_it(
    server: SandboxServer, padding: int, sizes: list[int]
) -> None:
    body = EVENT[:-1] + b" " * padding + b"}"
    answer = _send(server, _head(server, "Transfer-Encoding: chunked") + _chunked(body, sizes))
    if len(body) > MAX_BODY:
        assert _status(answer) == 413
    else:
        assert _is_pagerduty_answer(answer)
