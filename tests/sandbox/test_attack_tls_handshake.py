"""A client that never finishes its TLS handshake holds its own thread only (issue 9).

Werkzeug's wrapping shook hands inside ``accept()``, on the one thread that accepts, so one
connection that sent nothing stopped the sandbox's ``--tls`` server for everyone, with no
timeout. Now each handshake happens on the connection's own thread, under ``read_timeout``.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from pdconnect.sandbox import Sandbox, SandboxServer

pytest.importorskip("trustme")

from pdconnect.sandbox.tls import make_certificates  # it imports trustme only when called


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxServer]:
    files = make_certificates(Path(tmp_path_factory.mktemp("tls")))
    with SandboxServer(Sandbox(), tls=files, read_timeout=0.5) as server:
        yield server


def _get(server: SandboxServer) -> bytes:
    assert server.ca_path is not None
    context = ssl.create_default_context(cafile=str(server.ca_path))
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
    ):
        conn.sendall(
            f"GET /_sandbox/api/state HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n\r\n".encode()
        )
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("sent", [b"", b"\x16\x03\x01", b"GET / HTTP/1.1\r\n"])
def test_a_silent_or_broken_handshake_does_not_stop_others(server: SandboxServer, sent: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as silent:
        silent.sendall(sent)
        assert _get(server).startswith(b"HTTP/1.1 200")


def test_a_silent_handshake_is_closed_after_the_read_timeout(server: SandboxServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as silent:
        assert silent.recv(65536) == b""  # the server gave up on it: end of stream, no answer
