"""Acme Monitoring against hostile input: redirects, route parameters, tokens and monitor URLs."""

from __future__ import annotations

import itertools
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from example_app.demo import RunningDemo
from tests.example_app.test_app import token

_users = itertools.count()

# -- sign-in's ?next= ------------------------------------------------------------------------


def _sign_in_with_next(acme: RunningDemo, query: bytes) -> str:
    client = acme.app.test_client()
    form = {"name": f"next-{next(_users)}", "pdconnect_csrf": token(client)}
    # The raw query string, as a browser or a script could send it (bytes WSGI hands on as latin-1).
    response = client.post("/signin", data=form, environ_overrides={"QUERY_STRING": query.decode("latin-1")})
    assert response.status_code == 302, response.status_code
    return response.headers["Location"]


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "/\\evil.example/",
        "\\\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/ok\r\nSet-Cookie: session=stolen",
        "/ok\nLocation: https://evil.example/",
        "/\tevil",
        "/\x00",
        "/\x7f",
        "/ /evil.example",
        " /evil",
        "evil",
        "/" + "a" * 10_000,
        "/\u2028evil",
        "/\ufeff/evil.example",
    ],
)
def test_sign_in_never_redirects_off_site_or_into_headers(acme: RunningDemo, target: str) -> None:
    assert _sign_in_with_next(acme, b"next=" + quote(target, safe="").encode()) == "/"


@pytest.mark.parametrize(
    "query",
    [b"next=%ED%A0%80", b"next=%FF%FE", b"next=%C0%AF%C0%AFevil.example", b"next=%00", b"next", b"next=&next=//x"],
)
def test_sign_in_with_undecodable_next_goes_to_the_dashboard(acme: RunningDemo, query: bytes) -> None:
    assert _sign_in_with_next(acme, query) == "/"


def test_sign_in_keeps_a_local_next(acme: RunningDemo) -> None:
    assert _sign_in_with_next(acme, b"next=/monitors/new?x=1") == "/monitors/new?x=1"


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    target=st.one_of(st.text(max_size=40), st.text(alphabet="/\\:.@%?#\r\n\t x\x00\x7f", max_size=12).map("/".__add__))
)
def test_sign_in_redirects_only_to_local_paths(acme: RunningDemo, target: str) -> None:
    location = _sign_in_with_next(acme, b"next=" + quote(target, safe="", errors="surrogatepass").encode())
    assert location.startswith("/") and not location.startswith("//")
    assert "\\" not in location and all(0x20 < ord(ch) < 0x7F for ch in location)
