"""Links on the sandbox's pages built from event data (issue 9, item 7).

Only absolute http(s) URLs become links; ``javascript:``, ``data:`` and every other trick is
shown as plain text. Each page is parsed and every ``href``/``src`` attribute is checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from pdconnect.sandbox import Sandbox, SandboxSettings
from pdconnect.sandbox.app import SandboxApp
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox

DANGEROUS = [
    "javascript:alert(document.cookie)",
    "JavaScript:alert(1)",
    " javascript:alert(1)",
    "\tjavascript:alert(1)",
    "java\nscript:alert(1)",
    "java\tscript:alert(1)",
    "javascript&colon;alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "//evil.example/",
    "/\\evil.example/",
    "\\\\evil.example",
    "http:evil.example",
    "https://bank.example@evil.example/",
    "file:///etc/passwd",
    '"><script>alert(1)</script>',
    "http://a.example/\r\nx",
    "\x00javascript:alert(1)",
    "\ud800",
]


class _Attributes(HTMLParser):
    """Every href and src attribute in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.scripts += tag == "script"
        self.urls += [value or "" for name, value in attrs if name in ("href", "src", "action", "formaction")]


def links_of(page: str) -> list[str]:
    parser = _Attributes()
    parser.feed(page)
    assert parser.scripts == 0, "no page of the sandbox has a script"
    return parser.urls


def assert_links_safe(page: str, allowed_remote: set[str]) -> None:
    for url in links_of(page):
        parts = urlsplit(url)
        if parts.scheme or parts.netloc:
            assert url in allowed_remote, f"unexpected link {url!r}"
            assert parts.scheme in ("http", "https")
        else:
            assert url.startswith("/") and not url.startswith("//"), url
        assert not any(not 0x21 <= ord(ch) < 0x7F or ch == "\\" for ch in url), repr(url)


def _v2(key: str, dedup: str, client_url: Any) -> dict[str, Any]:
    return {
        "routing_key": key,
        "event_action": "trigger",
        "dedup_key": dedup,
        "client": "Acme <b>Monitoring</b>",
        "client_url": client_url,
        "links": [{"href": client_url, "text": "link"}],
        "images": [{"src": client_url, "href": client_url}],
        "payload": {"summary": "CPU high", "source": "web-1", "severity": "critical"},
    }


def _v1(key: str, dedup: str, client_url: Any) -> dict[str, Any]:
    return {
        "service_key": key,
        "event_type": "trigger",
        "incident_key": dedup,
        "description": "Disk full",
        "client": "Acme",
        "client_url": client_url,
        "contexts": [{"type": "link", "href": client_url}, {"type": "image", "src": client_url}],
    }


def _pages(get: Any, incident_ids: list[str], service_id: str) -> Iterator[str]:
    for path in ["/", "/incidents", f"/services/{service_id}", "/received", "/webhooks"]:
        yield get(path)
    for incident in incident_ids:
        yield get(f"/incidents/{incident}")


@pytest.mark.parametrize("url", DANGEROUS)
def test_a_dangerous_client_url_is_never_a_link(pagerduty_sandbox: PagerDutySandbox, url: str) -> None:
    key = pagerduty_sandbox.service_key()
    for body, path in (
        (_v2(key, "v2", url), "/v2/enqueue"),
        (_v1(key, "v1", url), "/generic/2010-04-15/create_event.json"),
    ):
        raw = json.dumps(body).encode()  # escapes the lone surrogate as \ud800
        answer = requests.post(pagerduty_sandbox.url + path, data=raw, timeout=10)
        assert answer.status_code in (200, 202), answer.text
    incidents = pagerduty_sandbox.incidents()
    assert {i["incident_key"] for i in incidents} == {"v1", "v2"}
    service = pagerduty_sandbox.service("Checkout API")["id"]

    def get(path: str) -> str:
        response = requests.get(pagerduty_sandbox.url + path, timeout=10)
        assert response.status_code == 200
        return response.text

    pages = list(_pages(get, [i["id"] for i in incidents], service))
    for page in pages:
        assert_links_safe(page, allowed_remote=set())
    incident_page = pages[-1]
    assert "data-unsafe-link" in incident_page, "shown, as plain text"


def test_an_http_client_url_is_a_link(pagerduty_sandbox: PagerDutySandbox) -> None:
    key = pagerduty_sandbox.service_key()
    url = "https://acme.example/monitors/3?tab=1&x=%20"
    requests.post(pagerduty_sandbox.url + "/v2/enqueue", json=_v2(key, "ok", url), timeout=10)
    (incident,) = pagerduty_sandbox.incidents()
    page = requests.get(f"{pagerduty_sandbox.url}/incidents/{incident['id']}", timeout=10).text
    assert links_of(page).count(url) == 2, "the alert's link and the timeline's"
    assert_links_safe(page, allowed_remote={url})


@pytest.fixture(scope="module")
def local() -> Iterator[tuple[Sandbox, Client]]:
    sandbox = Sandbox(SandboxSettings(rate_limit=None))
    yield sandbox, Client(SandboxApp(sandbox))
    sandbox.close()


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
URLISH = st.builds(
    str.__add__,
    st.sampled_from(["", "http://", "https://a.example/", "javascript:", "//", " ", "data:", "\\"]),
    st.text(max_size=30),
)


@settings(max_examples=80)
@given(client_url=URLISH | JSONISH, client=JSONISH)
def test_no_client_url_makes_a_dangerous_link(local: tuple[Sandbox, Client], client_url: Any, client: Any) -> None:
    sandbox, http = local
    sandbox.reset()
    key = sandbox.keys_of(sandbox.services()[0].id)[0].id
    body = _v2(key, "h", client_url)
    body["client"] = client
    sandbox.handle_alert(json.dumps(body).encode())
    sandbox.handle_legacy(json.dumps({**_v1(key, "h1", client_url), "client": client}).encode())
    service = sandbox.services()[0].id

    def get(path: str) -> str:
        response = http.get(path)
        assert response.status_code == 200, path
        return response.get_data(as_text=True)

    allowed = {client_url} if isinstance(client_url, str) and client_url.startswith(("http://", "https://")) else set()
    for page in _pages(get, [i.id for i in sandbox.incidents()], service):
        assert_links_safe(page, allowed_remote=allowed)
