"""Names in the sandbox's control API and handshakes are bounded and printable (issue 9).

App ids, app names, account subdomains and names, service names and Connect vendor names:
empty, too long (over 255 characters; app ids over 64, subdomains over 63), control
characters, lone surrogates, line separators and invisible or bidirectional characters are
a 400 (JSON on the API), never stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from pdconnect.sandbox import Sandbox, SandboxSettings
from pdconnect.sandbox.app import SandboxApp
from pdconnect.sandbox.engine import MAX_NAME
from pdconnect.sandbox.model import App

CALLBACK = "http://localhost:5000/cb"
BAD_NAMES = ["", "   ", "a" * (MAX_NAME + 1), "a\x00b", "a\nb", "a\rb", "a\tb", "\x1b[31mred", "a\x7fb", "\u202eevil",
             "a\u200bb", "\ufeffbom", "a\u2028b", "a\u2029b", "\ud800", "a\udfffb", "\u0085", "\ue000private",
             "\U000e0041tag"]  # fmt: skip
BAD_IDS = [*BAD_NAMES, "a" * 65, "P 1", "P/1", "P.1", "P?1", "Pé", "<b>", "\uff30APP"]
BAD_SUBDOMAINS = [*BAD_NAMES, "a" * 64, "a.b", "a_b", "ünï", "a b", "\u212a"]  # a Kelvin sign lowers to "k"
GOOD_NAMES = ["Acme Corp", "Ünïcødé 名前", "a" * MAX_NAME, '<b>tags</b> & "quotes"', "emoji 🚨"]


@pytest.fixture(scope="module")
def local() -> Iterator[tuple[Sandbox, Client]]:
    sandbox = Sandbox(SandboxSettings(rate_limit=None))
    yield sandbox, Client(SandboxApp(sandbox))
    sandbox.close()


def _post(client: Client, path: str, body: dict[str, Any]) -> Any:
    return client.post(path, data=json.dumps(body), content_type="application/json")


def _refused(response: Any) -> None:
    assert response.status_code == 400, response.get_data(as_text=True)[:200]
    error = response.get_json()["error"]["message"]
    assert "\n" not in error and len(error) < 200


@pytest.mark.parametrize("name", BAD_NAMES, ids=ascii)
def test_bad_app_names_are_refused(local: tuple[Sandbox, Client], name: str) -> None:
    _refused(_post(local[1], "/_sandbox/api/apps", {"app_id": "PNAME01", "name": name, "redirect_urls": [CALLBACK]}))


@pytest.mark.parametrize("app_id", BAD_IDS, ids=ascii)
def test_bad_app_ids_are_refused(local: tuple[Sandbox, Client], app_id: str) -> None:
    _refused(_post(local[1], "/_sandbox/api/apps", {"app_id": app_id, "redirect_urls": [CALLBACK]}))


@pytest.mark.parametrize("name", BAD_NAMES, ids=ascii)
def test_bad_account_names_are_refused(local: tuple[Sandbox, Client], name: str) -> None:
    _refused(_post(local[1], "/_sandbox/api/accounts", {"subdomain": "named", "name": name}))


@pytest.mark.parametrize("subdomain", BAD_SUBDOMAINS, ids=ascii)
def test_bad_subdomains_are_refused(local: tuple[Sandbox, Client], subdomain: str) -> None:
    _refused(_post(local[1], "/_sandbox/api/accounts", {"subdomain": subdomain}))


@pytest.mark.parametrize("name", BAD_NAMES, ids=ascii)
def test_bad_service_names_are_refused(local: tuple[Sandbox, Client], name: str) -> None:
    _refused(_post(local[1], "/_sandbox/api/services", {"account": "acme", "name": name}))


@pytest.mark.parametrize(
    "name", [n for n in BAD_NAMES if n.strip() and "\ud800" not in n and "\udfff" not in n], ids=ascii
)
def test_bad_vendor_names_are_refused_on_the_connect_page(local: tuple[Sandbox, Client], name: str) -> None:
    page = local[1].get("/connect", query_string={"vendor": name, "callback": CALLBACK})
    assert page.status_code == 400
    assert b"data-error" in page.get_data()


@pytest.mark.parametrize("name", [n for n in BAD_NAMES if n.strip() and n.isascii()], ids=ascii)
def test_bad_names_are_refused_by_the_forms(local: tuple[Sandbox, Client], name: str) -> None:
    client = local[1]
    assert client.post("/services", data={"account": "acme", "name": name}).status_code == 400
    form = {"app_id": "PFORM01", "name": name, "redirect_urls": CALLBACK}
    assert client.post("/apps", data=form).status_code == 400


def test_a_refused_name_stores_nothing(local: tuple[Sandbox, Client]) -> None:
    sandbox, client = local
    before = len(sandbox.services())
    _post(client, "/_sandbox/api/services", {"account": "acme", "name": "a\x00b"})
    _post(client, "/_sandbox/api/apps", {"app_id": "PNEVER1", "name": "\u202e", "redirect_urls": [CALLBACK]})
    assert len(sandbox.services()) == before
    assert sandbox.store.get(App, "PNEVER1") is None


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_good_names_are_kept_as_given(local: tuple[Sandbox, Client], name: str) -> None:
    client = local[1]
    app = _post(client, "/_sandbox/api/apps", {"app_id": "PGOOD01", "name": name, "redirect_urls": [CALLBACK]})
    assert app.status_code == 201 and app.get_json()["app"]["name"] == name
    account = _post(client, "/_sandbox/api/accounts", {"subdomain": "good-one", "name": name})
    assert account.status_code == 201
    service = _post(client, "/_sandbox/api/services", {"account": "acme", "name": name})
    assert service.status_code == 201 and service.get_json()["service"]["name"] == name


def _acceptable(name: str, maximum: int = MAX_NAME) -> bool:
    stripped = name.strip()
    return 0 < len(stripped) <= maximum and all(c.isprintable() or c == " " for c in stripped)


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=300))
def test_property_a_name_is_stored_exactly_when_it_is_printable_and_bounded(
    local: tuple[Sandbox, Client], name: str
) -> None:
    response = _post(local[1], "/_sandbox/api/services", {"account": "acme", "name": name})
    assert response.status_code in (201, 400)
    assert (response.status_code == 201) == _acceptable(name)
    if response.status_code == 201:
        assert response.get_json()["service"]["name"] == name.strip()


@settings(max_examples=200, deadline=None)
@given(app_id=st.text(max_size=80), name=st.one_of(st.none(), st.text(max_size=300)))
def test_property_apps(local: tuple[Sandbox, Client], app_id: str, name: str | None) -> None:
    body: dict[str, Any] = {"app_id": app_id, "redirect_urls": [CALLBACK]}
    if name is not None:
        body["name"] = name
    response = _post(local[1], "/_sandbox/api/apps", body)
    assert response.status_code in (201, 400)
    id_ok = 0 < len(app_id) <= 64 and all(c.isascii() and (c.isalnum() or c in "_-") for c in app_id)
    assert (response.status_code == 201) == (id_ok and (name is None or _acceptable(name)))
