"""A Host header that is not a host name is a plain 400 on every route, never a 500.

Werkzeug refuses ``a..b`` or a label over 63 characters before routing (``BadHost``); Acme's
400 page then called ``url_for`` with no URL adapter and crashed, with a traceback in the log.
These go over a real socket: a test client cannot send a Host that is not a host name.
"""

from __future__ import annotations

import logging
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from example_app.demo import RunningDemo

ROUTES = [
    ("GET", "/signin"),
    ("GET", "/"),
    ("GET", "/monitors/1"),
    ("GET", "/nowhere"),
    ("GET", "/signin?next=%FF"),
    ("POST", "/signin"),
    ("POST", "/signout"),
    ("PUT", "/signin"),
    ("GET", "/pagerduty/connect"),
    ("GET", "/pagerduty/install"),
    ("GET", "/pagerduty/callback?state=x"),
    ("GET", "/settings/pagerduty"),
    ("GET", "/static/acme.css"),
]

BAD_HOSTS = [
    b"a..b",
    b"a" * 64,
    b"a" * 64 + b".example",
    b"ok." + b"b" * 64 + b".example:5000",
    b"..",
    b".a",
    b"a..b:80",
    b"x" * 300,
]


def _raw(acme: RunningDemo, method: str, path: str, host: bytes) -> tuple[int, bytes]:
    port = int(acme.url.rsplit(":", 1)[1])
    body = b"name=x" if method == "POST" else b""
    request = (
        f"{method} {path} HTTP/1.1\r\n".encode() + b"Host: " + host + b"\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n" + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    )
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    return int(answer.split(b" ", 2)[1]), answer


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_a_bad_host_is_a_plain_400(acme: RunningDemo, caplog: pytest.LogCaptureFixture, method: str, path: str) -> None:
    caplog.set_level(logging.DEBUG)
    for host in BAD_HOSTS:
        status, answer = _raw(acme, method, path, host)
        assert status == 400, (host, answer[:300])
        assert b"Bad request" in answer and b"Traceback" not in answer
        assert b"href=" not in answer, "no link can be built for a request with no host"
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    host=st.one_of(
        st.text(alphabet="ab.-_:[]0x9n", max_size=30),
        st.lists(st.integers(0, 80).map("q".__mul__), min_size=1, max_size=4).map(".".join),
        st.binary(max_size=20).filter(lambda b: b"\r" not in b and b"\n" not in b).map(lambda b: b.decode("latin-1")),
    ),
    route=st.sampled_from(ROUTES),
)
def test_no_host_header_makes_a_500(
    acme: RunningDemo, caplog: pytest.LogCaptureFixture, host: str, route: tuple[str, str]
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    status, answer = _raw(acme, *route, host.encode("latin-1"))
    assert status < 500, answer[:300]
    assert b"Traceback" not in answer
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
