"""Every sandbox route that redirects from request data, under hostile input (issue 9, item 6).

A redirect goes either to a path on the sandbox or to a vendor URL checked beforehand; never
to another scheme, never with a control character, space or backslash in ``Location``, and
never a 500.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlencode, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.test import Client, TestResponse

from pdconnect.sandbox import Sandbox, SandboxSettings
from pdconnect.sandbox.app import LOGIN_COOKIE, SandboxApp
from pdconnect.sandbox.model import App

CALLBACK = "http://localhost:5000/pagerduty/callback"
APP_ID = "PAPP001"

HOSTILE_URLS = [
    CALLBACK + "\r\nSet-Cookie: stolen=1",
    CALLBACK + "\n",
    CALLBACK + "\r",
    "http://localhost:5000/pagerduty/call\tback",
    "http://local\thost:5000/pagerduty/callback",
    "http://localhost:5000\\@evil.example/",
    "http://evil.example\\.localhost:5000/pagerduty/callback",
    CALLBACK + "\\..\\evil",
    CALLBACK + "\x00",
    CALLBACK + "\x0b",
    CALLBACK + "\x1b[31m",
    CALLBACK + "\x7f",
    CALLBACK + " x",
    CALLBACK + "\u2028",
    CALLBACK + "\u00a0",
    CALLBACK + "#\x01",
    CALLBACK + "?q=\r\n",
    "http://user:pw@localhost:5000/pagerduty/callback",
    "javascript:alert(1)",
    " javascript:alert(1)",
    "java\nscript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "//evil.example/",
    "/\t/evil.example/",
    "https://",
    "http://[::1/",
    "http://localhost:99999/",
    "",
    "\ud800",
    CALLBACK + "?" + "a" * 5000,
]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    sandbox = Sandbox(SandboxSettings())
    sandbox.register_app(APP_ID, [CALLBACK])
    yield sandbox
    sandbox.close()


def _client(sandbox: Sandbox, *, logged_in: bool = True) -> Client:
    app = SandboxApp(sandbox)
    client = Client(app)
    if logged_in:
        client.set_cookie(LOGIN_COOKIE, app.login_cookie("acme"))
    return client


def _unsafe(ch: str) -> bool:
    return not 0x21 <= ord(ch) < 0x7F or ch == "\\"


def assert_safe(response: TestResponse, allowed_url: str | None = None) -> None:
    """Not a 500; a redirect goes to a clean sandbox path or to the allowed vendor URL."""
    assert response.status_code < 500, response.get_data(as_text=True)[:300]
    if response.status_code not in (301, 302, 303, 307, 308):
        return
    location = response.headers["Location"]
    assert not any(_unsafe(ch) for ch in location), repr(location)
    parts = urlsplit(location)
    if parts.scheme or parts.netloc:
        assert allowed_url is not None, f"redirected off the sandbox to {location!r}"
        assert parts.scheme in ("http", "https")
        allowed = urlsplit(allowed_url)
        assert (parts.hostname, parts.port) == (allowed.hostname, allowed.port), location
        assert "@" not in parts.netloc
    else:
        assert location.startswith("/") and not location.startswith("//"), location


def _encode(fields: dict[str, str]) -> str:
    """Form encoding that can also carry a lone surrogate (as the bytes a browser might send)."""
    return urlencode(fields, encoding="utf-8", errors="surrogatepass")


def _routes(sandbox: Sandbox, url: str) -> list[tuple[str, TestResponse]]:
    """Every redirecting route, fed ``url`` where it takes a URL from the request."""
    service = sandbox.services("acme")[0].id
    form = "application/x-www-form-urlencoded"

    def post(path: str, fields: dict[str, str], *, logged_in: bool = True) -> TestResponse:
        return _client(sandbox, logged_in=logged_in).post(path, data=_encode(fields), content_type=form)

    def get(path: str, fields: dict[str, str], *, logged_in: bool = True) -> TestResponse:
        return _client(sandbox, logged_in=logged_in).get(path, query_string=_encode(fields))

    return [
        ("connect cancel", post("/connect", {"vendor": "Acme", "callback": url, "decision": "cancel"})),
        ("connect", post("/connect", {"vendor": "Acme", "callback": url, "service_id": service})),
        ("connect get", get("/connect", {"vendor": "A", "callback": url}, logged_in=False)),
        ("login connect cancel", post("/login", {"flow": "connect", "vendor": "A", "callback": url, "decision": "cancel"})),
        ("login connect", post("/login", {"flow": "connect", "vendor": "A", "callback": url, "subdomain": "acme"})),
        ("install cancel", post("/install/integration", {"app_id": APP_ID, "redirect_url": url, "decision": "cancel"})),
        ("install", post("/install/integration", {"app_id": APP_ID, "redirect_url": url, "service_ids": service})),
        ("login install cancel", post(
            "/login", {"flow": "install", "app_id": APP_ID, "redirect_url": url, "decision": "cancel"})),
        ("login install", post(
            "/login", {"flow": "install", "app_id": APP_ID, "redirect_url": url, "subdomain": "acme"})),
        ("logout", get("/logout", {"next": url})),
        ("logout raw", _client(sandbox).get("/logout", query_string="next=%ff%fe%0d%0a")),
    ]  # fmt: skip


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_urls_never_become_a_bad_redirect(sandbox: Sandbox, url: str) -> None:
    for name, response in _routes(sandbox, url):
        assert_safe(response, allowed_url=None)
        if name not in ("logout", "logout raw", "login connect", "login install"):
            assert response.status_code == 400, (name, response.status_code)


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_urls_cannot_be_registered(sandbox: Sandbox, url: str) -> None:
    client = _client(sandbox)
    body = json.dumps({"app_id": "PEVIL01", "redirect_urls": [url]}, ensure_ascii=True)
    answer = client.post("/_sandbox/api/apps", data=body, content_type="application/json")
    assert answer.status_code == 400
    assert answer.get_json()["error"]["message"]
    form = _encode({"app_id": "PEVIL02", "redirect_urls": url})
    page = client.post("/apps", data=form, content_type="application/x-www-form-urlencoded")
    assert page.status_code in (303, 400)
    assert all(_all_clean(u) for app in sandbox.store.all(App) for u in app.redirect_urls)


def _all_clean(url: str) -> bool:
    return not any(_unsafe(ch) for ch in url) and urlsplit(url).scheme in ("http", "https")


def test_the_good_callback_still_works(sandbox: Sandbox) -> None:
    for name, response in _routes(sandbox, CALLBACK):
        assert_safe(response, allowed_url=CALLBACK)
        assert response.status_code in (200, 302, 303), name


@pytest.mark.parametrize(
    "target", ["/connect?vendor=Acme&callback=" + CALLBACK, "/incidents", "/", "/install/integration?app_id=P&x=1"]
)
def test_logout_goes_back_to_a_local_page(sandbox: Sandbox, target: str) -> None:
    response = _client(sandbox).get("/logout", query_string={"next": target})
    assert (response.status_code, response.headers["Location"]) == (302, target)


def test_switch_account_returns_to_the_same_connect_page(sandbox: Sandbox) -> None:
    client = _client(sandbox)
    page = client.get("/connect", query_string={"vendor": "Acme", "callback": CALLBACK}).get_data(as_text=True)
    start = page.index('href="/logout?') + len('href="')
    href = page[start : page.index('"', start)].replace("&amp;", "&")
    response = client.get(href)
    location = response.headers["Location"]
    assert location.startswith("/connect?")
    assert client.get(location).status_code == 200, "the login form for the same handshake"


URLISH = st.text(max_size=80) | st.builds(
    str.__add__, st.sampled_from([CALLBACK, "http://127.0.0.1/", "/", "//", "javascript:"]), st.text(max_size=20)
)


@settings(max_examples=150)
@given(url=URLISH)
def test_no_text_makes_a_bad_redirect(sandbox: Sandbox, url: str) -> None:
    for _name, response in _routes(sandbox, url):
        # A vendor URL that passed the checks may be redirected to, with the sandbox's parameters added.
        assert_safe(response, allowed_url=url)
