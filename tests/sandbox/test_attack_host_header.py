"""DNS rebinding: the sandbox answers only a ``Host`` that names it (issue 9).

A page on ``evil.example`` whose name resolves to 127.0.0.1 could otherwise drive the control
API from the developer's browser and read the answers. Every request whose ``Host`` is not a
loopback name or address, or a name the server was started with, on its own port, is a 421
(JSON on the APIs), whichever path it asks for, the events fast path included.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdconnect.sandbox import Sandbox, SandboxServer, SandboxSettings
from pdconnect.sandbox.hosts import HostCheck, HostError, normalise_host
from tests.sandbox.test_cli import PDCONNECT, sandbox_process


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(Sandbox(SandboxSettings(rate_limit=None))) as server:
        yield server


@pytest.fixture(scope="module")
def named_server() -> Iterator[SandboxServer]:
    with SandboxServer(Sandbox(SandboxSettings(rate_limit=None)), allowed_hosts=["sandbox.test"]) as server:
        yield server


def _ask(
    server: SandboxServer | int, host: bytes | None, *, method: str = "GET", path: str = "/_sandbox/api/state"
) -> tuple[int, bytes]:
    """Send one request with exactly this Host line (None: no Host header); the status and body."""
    lines = [f"{method} {path} HTTP/1.1".encode()]
    if host is not None:
        lines.append(b"Host: " + host)
    body = b""
    if method == "POST":
        body = json.dumps({"routing_key": "x" * 32, "event_action": "resolve", "dedup_key": "k"}).encode()
        lines += [b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
    lines.append(b"Connection: close")
    port = server if isinstance(server, int) else server.port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), rest


def _hostile(port: int) -> list[bytes]:
    return [
        b"evil.example",
        b"evil.example:%d" % port,
        b"127.0.0.1.evil.example:%d" % port,
        b"localhost.evil:%d" % port,
        b"127.evil.example:%d" % port,
        b"[::1]",  # loopback, but no port: the scheme's default, 80, is not this server's
        b"127.0.0.1",
        b"127.1:%d" % port,
        b"0x7f.1:%d" % port,
        b"2130706433:%d" % port,
        b"127.0.0.1:%d" % (port + 1 if port < 65535 else port - 1),
        b"127.0.0.1:0%d" % port,
        b"127.0.0.1:%d:%d" % (port, port),
        b"127.0.0.1:",
        b"",
        b"user@127.0.0.1:%d" % port,
        b"127.0.0.1:%d@evil.example" % port,
        b"localhost:%d/evil" % port,
        b"localhost.:%d" % port,
        b"a" * 5000 + b".example",
        b"local\x00host:%d" % port,
        b"localhost\x7f:%d" % port,
        b"local\thost:%d" % port,
        "l\u043ecalhost:%d".encode() % port,  # a Cyrillic "o"
        "localhost\u3002:%d".encode() % port,
        b"\xff\xfe:%d" % port,
        b"localhost :%d" % port,
        b"[::1:%d" % port,
        b"[::ffff:7f00:1]x:%d" % port,
        b"sandbox.test:%d" % port,  # allowed only where the server was started with it
    ]


def test_hostile_host_headers_are_refused_with_a_421(server: SandboxServer) -> None:
    for host in _hostile(server.port):
        status, body = _ask(server, host)
        assert status in (400, 421), host
        assert status == 400 or "error" in json.loads(body), host


@pytest.mark.parametrize("index", range(30))
def test_each_hostile_host_is_refused_on_every_kind_of_path(server: SandboxServer, index: int) -> None:
    host = _hostile(server.port)[index]
    for method, path in [("GET", "/_sandbox/api/state"), ("GET", "/"), ("GET", "/incidents"), ("POST", "/v2/enqueue")]:
        status, body = _ask(server, host, method=method, path=path)
        assert status in (400, 421), (host, path, status)
        assert b"acme" not in body


def test_a_request_without_host_is_refused(server: SandboxServer) -> None:
    assert _ask(server, None)[0] in (400, 421)


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "[::1]:{port}",
                                  "127.0.0.2:{port}"])  # fmt: skip
def test_loopback_names_on_the_right_port_are_answered(server: SandboxServer, host: str) -> None:
    status, body = _ask(server, host.format(port=server.port).encode())
    assert status == 200
    assert json.loads(body)["accounts"]


def test_a_name_the_server_was_started_with_is_answered(named_server: SandboxServer) -> None:
    port = named_server.port
    assert _ask(named_server, b"sandbox.test:%d" % port)[0] == 200
    assert _ask(named_server, b"SANDBOX.test:%d" % port)[0] == 200
    assert _ask(named_server, b"sandbox.test:%d" % (port + 1 if port < 65535 else port - 1))[0] == 421
    assert _ask(named_server, b"evil.sandbox.test:%d" % port)[0] == 421
    assert _ask(named_server, b"sandbox.test.evil.example:%d" % port)[0] == 421


def test_an_html_page_refuses_with_a_page(server: SandboxServer) -> None:
    status, body = _ask(server, b"evil.example:%d" % server.port, path="/")
    assert status == 421
    assert b"data-error" in body


@pytest.mark.parametrize("name", ["127.1", "evil.example:80", "a b", "", "user@host", "[::1", "-a.example", "\u0430.example",
                                  "a" * 64 + ".example", "1.2.3", "0x7f.0.0.1", "host\x00", "::1:80x"])  # fmt: skip
def test_allowed_host_names_are_checked(name: str) -> None:
    with pytest.raises(HostError):
        normalise_host(name)


@pytest.mark.parametrize(("name", "normal"), [("Sandbox.Test", "sandbox.test"), ("::1", "[::1]"), ("[::1]", "[::1]"),
                                              ("10.0.0.5", "10.0.0.5"), ("dev-box", "dev-box")])  # fmt: skip
def test_allowed_host_names_are_normalised(name: str, normal: str) -> None:
    assert normalise_host(name) == normal


def _good(host: str, allowed: set[str]) -> bool:
    name = host.lower()
    if name in allowed or name in ("localhost", "[::1]"):
        return True
    parts = name.split(".")
    return (
        len(parts) == 4 and parts[0] == "127" and all(p.isdigit() and str(int(p)) == p and int(p) < 256 for p in parts)
    )


@settings(max_examples=300, deadline=None)
@given(host=st.text(max_size=80), port=st.one_of(st.none(), st.integers(0, 70000), st.text(max_size=6)))
def test_property_only_loopback_or_allowed_names_on_the_port_pass(host: str, port: int | str | None) -> None:
    check = HostCheck(["sandbox.test"], port=8787)
    header = host if port is None else f"{host}:{port}"
    refusal = check.refusal(header)
    if refusal is None:
        assert port == 8787 and _good(host, {"sandbox.test"}), header


@settings(max_examples=200, deadline=None)
@given(prefix=st.text(max_size=40))
def test_property_no_name_under_another_domain_passes(prefix: str) -> None:
    check = HostCheck(["sandbox.test"], port=8787)
    for suffix in (".evil.example", "evil.example", ".localhost.evil"):
        assert check.refusal(f"{prefix}{suffix}:8787") is not None


@pytest.mark.parametrize("value", ["evil.example:80", "127.1", "a b", "", "user@host", "ex\u0430mple.test", "-x.test"])
def test_the_allowed_host_flag_is_checked(value: str) -> None:
    result = subprocess.run(
        [PDCONNECT, "sandbox", "--port", "0", "--allowed-host", value], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "--allowed-host" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2  # argparse's usage line, then one line


def test_the_allowed_host_flag_lets_that_name_in() -> None:
    with sandbox_process("--allowed-host", "Sandbox.Test") as (url, _):
        port = int(url.rsplit(":", 1)[1])
        assert _ask(port, b"sandbox.test:%d" % port)[0] == 200
        assert _ask(port, b"other.test:%d" % port)[0] == 421
