"""The incident list's service column and the Connect page's retirement notice (issue 9)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from pdconnect.sandbox import Sandbox, SandboxSettings
from pdconnect.sandbox.app import SandboxApp
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox

CALLBACK = "http://localhost:5000/pagerduty/callback"


class _Table(HTMLParser):
    """The header cells and the rows' cell texts of the first table."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[str] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self._in_header = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell, self._in_header = [], tag == "th"

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            (self.headers if self._in_header else self.rows[-1]).append(text)
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _trigger(sandbox: PagerDutySandbox, key: str, dedup: str) -> None:
    event = {"routing_key": key, "event_action": "trigger", "dedup_key": dedup,
             "payload": {"summary": f"down {dedup}", "source": "h", "severity": "critical"}}  # fmt: skip
    assert requests.post(sandbox.url + "/v2/enqueue", json=event, timeout=10).status_code == 202


def test_the_incident_list_names_each_incidents_service(pagerduty_sandbox: PagerDutySandbox) -> None:
    _trigger(pagerduty_sandbox, pagerduty_sandbox.service_key("Checkout API"), "a")
    _trigger(pagerduty_sandbox, pagerduty_sandbox.service_key("Database"), "b")
    pagerduty_sandbox.sandbox.create_account("other")
    _, key = pagerduty_sandbox.create_service("<b>Billing</b> & co", account="other")
    _trigger(pagerduty_sandbox, key, "c")

    page = requests.get(pagerduty_sandbox.url + "/incidents", timeout=10).text
    table = _Table()
    table.feed(page)
    column = table.headers.index("Service")
    by_title = {row[1]: row[column] for row in table.rows if row}
    assert by_title == {"down a": "Checkout API", "down b": "Database", "down c": "<b>Billing</b> & co"}
    assert "<b>Billing</b>" not in page, "escaped"
    database = pagerduty_sandbox.service("Database")["id"]
    assert f'<a href="/services/{database}">Database</a>' in page


@pytest.mark.parametrize("logged_in", [False, True])
def test_the_connect_page_says_connect_is_retired(pagerduty_sandbox: PagerDutySandbox, logged_in: bool) -> None:
    if logged_in:
        pagerduty_sandbox.http.cookies.set("pdsandbox_account", pagerduty_sandbox.server.app.login_cookie("acme"))
    page = pagerduty_sandbox.http.get(
        pagerduty_sandbox.url + "/connect", params={"vendor": "Acme", "callback": CALLBACK}, timeout=10
    ).text
    assert "data-connect-retired" in page
    assert "PagerDuty retired Connect in 2021" in page
    assert ("Existing service" in page) is logged_in


def test_the_install_page_has_no_such_notice(pagerduty_sandbox: PagerDutySandbox) -> None:
    pagerduty_sandbox.register_app("PAPP001", [CALLBACK])
    page = requests.get(
        pagerduty_sandbox.url + "/install/integration",
        params={"app_id": "PAPP001", "redirect_url": CALLBACK, "version": "2"},
        timeout=10,
    ).text
    assert "Log in" in page
    assert "data-connect-retired" not in page


@pytest.fixture(scope="module")
def local() -> Iterator[tuple[Sandbox, Client]]:
    sandbox = Sandbox(SandboxSettings(rate_limit=None))
    yield sandbox, Client(SandboxApp(sandbox))
    sandbox.close()


@settings(max_examples=60)
@given(
    name=st.text(min_size=1, max_size=60).filter(
        lambda n: n.strip() == n and n.strip() and all(c.isprintable() or c == " " for c in n)
    )
)
def test_any_service_name_shows_in_the_list_as_it_is(local: tuple[Sandbox, Client], name: str) -> None:
    sandbox, http = local
    sandbox.reset()
    _, key = sandbox.create_service("acme", name)
    assert key is not None
    event = {"routing_key": key.id, "event_action": "trigger", "dedup_key": "p",
             "payload": {"summary": "down p", "source": "h", "severity": "critical"}}  # fmt: skip
    assert sandbox.handle_alert(json.dumps(event).encode()).status == 202
    response = http.get("/incidents")
    assert response.status_code == 200
    table = _Table()
    table.feed(response.get_data(as_text=True))
    column = table.headers.index("Service")
    (row,) = [row for row in table.rows if row]
    shown = name.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    assert row[column] == shown
