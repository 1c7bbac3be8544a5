"""Slow or lying clients cannot hold the sandbox's server threads (issue 9).

A client that announces a ``Content-Length`` and sends less is answered 408 and disconnected
after the server's ``read_timeout``; one that announces more than ``max_body`` is answered
413 before a byte of its body is read. Each test waits on the socket's end (``recv``
returning ``b""``), never on a sleep; the sockets' own timeouts only stop a hung test.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdconnect.sandbox import Sandbox, SandboxServer, SandboxSettings

PDCONNECT = str(Path(sys.executable).parent / "pdconnect")
PATHS = ["/v2/enqueue", "/v2/change/enqueue", "/generic/2010-04-15/create_event.json", "/_sandbox/api/reset",
         "/_sandbox/api/apps", "/login", "/webhook_subscriptions"]  # fmt: skip


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    sandbox = Sandbox(SandboxSettings(rate_limit=None))
    with SandboxServer(sandbox, read_timeout=0.2, max_body=64 * 1024) as server:
        yield server


def _connect(server: SandboxServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def _until_closed(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def _head(server: SandboxServer, path: str, length: str, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", "Content-Type: application/json",
             f"Content-Length: {length}", *extra]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.mark.parametrize("path", PATHS)
def test_a_body_shorter_than_announced_is_a_408_and_the_connection_closes(server: SandboxServer, path: str) -> None:
    with _connect(server) as conn:
        conn.sendall(_head(server, path, "1000") + b"0123456789")
        answer = _until_closed(conn)
    assert _status(answer) == 408
    assert b"Connection: close" in answer


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("length", [str(64 * 1024 + 1), str(10**9), str(10**30)])
def test_a_body_over_the_maximum_is_a_413_before_it_is_sent(server: SandboxServer, path: str, length: str) -> None:
    with _connect(server) as conn:
        conn.sendall(_head(server, path, length))  # and never a byte of the body
        answer = _until_closed(conn)
    assert _status(answer) == 413
    assert "error" in json.loads(answer.partition(b"\r\n\r\n")[2])


@pytest.mark.parametrize("length", ["abc", "-1", "1e3", "0x10", " ", "１０", "10, 12"])
def test_a_malformed_length_is_a_400(server: SandboxServer, length: str) -> None:
    with _connect(server) as conn:
        conn.sendall(_head(server, "/v2/enqueue", length).replace(b"\xef\xbc\x91\xef\xbc\x90", "１０".encode()))
        answer = _until_closed(conn)
    assert _status(answer) == 400


def test_two_different_lengths_are_a_400(server: SandboxServer) -> None:
    with _connect(server) as conn:
        conn.sendall(_head(server, "/v2/enqueue", "2", "Content-Length: 3") + b"{}")
        assert _status(_until_closed(conn)) == 400


def test_headers_that_never_end_are_a_408_and_the_connection_closes(server: SandboxServer) -> None:
    with _connect(server) as conn:
        conn.sendall(f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode())
        answer = _until_closed(conn)
    assert _status(answer) == 408
    assert b"Connection: close" in answer


def test_a_request_line_that_never_ends_is_a_408(server: SandboxServer) -> None:
    with _connect(server) as conn:
        conn.sendall(b"GET /_sandbox/api/st")
        assert _status(_until_closed(conn)) == 408


def test_an_idle_connection_that_sends_nothing_is_closed_without_an_answer(server: SandboxServer) -> None:
    with _connect(server) as conn:
        assert _until_closed(conn) == b""


def test_an_idle_keep_alive_connection_is_closed(server: SandboxServer) -> None:
    with _connect(server) as conn:
        conn.sendall(f"GET /_sandbox/api/state HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        answer = _until_closed(conn)  # answered, then closed once idle for read_timeout
    assert _status(answer) == 200


def test_a_stuck_client_does_not_hold_up_others(server: SandboxServer) -> None:
    with _connect(server) as stuck:
        stuck.sendall(_head(server, "/v2/enqueue", "1000") + b"{")
        with _connect(server) as other:
            body = json.dumps({"seed": True}).encode()
            other.sendall(_head(server, "/_sandbox/api/reset", str(len(body)), "Connection: close") + body)
            assert _status(_until_closed(other)) == 200
        assert _status(_until_closed(stuck)) == 408


def test_a_body_sent_in_pieces_within_the_timeout_is_read(server: SandboxServer) -> None:
    event = {"routing_key": "x" * 32, "event_action": "resolve", "dedup_key": "k"}
    body = json.dumps(event).encode()
    with _connect(server) as conn:
        conn.sendall(_head(server, "/v2/enqueue", str(len(body)), "Connection: close"))
        for index in range(0, len(body), 7):
            conn.sendall(body[index : index + 7])
        answer = _until_closed(conn)
    assert _status(answer) == 400  # the key is unknown: PagerDuty's answer, so the body was read whole
    assert "Invalid routing key" in answer.decode()


def test_expect_100_continue_is_answered_once(server: SandboxServer) -> None:
    body = b'{"seed": true}'
    with _connect(server) as conn:
        conn.sendall(_head(server, "/_sandbox/api/reset", str(len(body)), "Expect: 100-continue", "Connection: close"))
        first = conn.recv(25)
        assert first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"[: len(first)])
        conn.sendall(body)
        answer = first + _until_closed(conn)
    assert answer.count(b"100 Continue") == 1
    assert b"HTTP/1.1 200" in answer


@settings(max_examples=15, deadline=None)
@given(announced=st.integers(1, 4096), short_by=st.integers(0, 4096))
def test_property_a_short_body_is_408_and_a_whole_one_is_answered(
    server: SandboxServer, announced: int, short_by: int
) -> None:
    sent = max(0, announced - short_by)
    with _connect(server) as conn:
        conn.sendall(_head(server, "/v2/enqueue", str(announced), "Connection: close") + b" " * sent)
        status = _status(_until_closed(conn))
    assert status == (408 if sent < announced else 400)


@pytest.mark.parametrize("timeout", [0, -1, math.nan, math.inf, 3601, True, "1"])
def test_the_read_timeout_is_checked(timeout: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        SandboxServer(Sandbox(), read_timeout=timeout)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, -1, 2**31, True, 1.5])
def test_the_maximum_body_is_checked(size: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        SandboxServer(Sandbox(), max_body=size)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1", "3601", "soon"])
def test_the_read_timeout_flag_is_checked(value: str) -> None:
    result = subprocess.run(
        [PDCONNECT, "sandbox", "--port", "0", "--read-timeout", value], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "--read-timeout" in result.stderr
    assert "Traceback" not in result.stderr
