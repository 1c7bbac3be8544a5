"""An outside attacker's second look at the handshake and the Flask adapter (issue 9).

Each test here failed before the fix it names: redirect targets, pasted service names, keys
hidden from the log filter by URL encoding, secret rotation, the nonce store's clock.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect.errors import ConfigError
from pdconnect.flask import PagerDutyConnect, current_pagerduty
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.text import text_problem
from tests.conftest import SERVICE_KEY, FakeClock
from tests.test_flask import _csrf, make_app

_fixtures = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=__import__("time").time())


@pytest.fixture
def app(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, clock: FakeClock) -> Flask:
    return make_app(tmp_path, pagerduty_sandbox, clock)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    made = app.test_client()
    made.get("/login/alice")
    return made


def _bare_app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "bare"))
    app.config.update(SECRET_KEY="x" * 32, **config)
    return app


def _same_site(location: str) -> bool:
    """A Location (or href) a browser resolves on this site: a path, never another host."""
    parts = urlsplit(location)
    return (
        not parts.scheme
        and not parts.netloc
        and location.startswith("/")
        and not location.startswith(("//", "/\\"))
        and "\\" not in location
        and not any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in location)
    )


# -- PDCONNECT_REDIRECT_TO: where a finished handshake and the error page's Back link go ---------

HOSTILE_REDIRECTS = [
    "//evil.example",  # protocol-relative: an open redirect after every success
    "///evil.example",
    "/\\evil.example",  # browsers read /\ as //
    "/\\/evil.example",
    "\\\\evil.example",
    "https://evil.example/",
    "http:/evil.example",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "/ok\r\nSet-Cookie: x=1",
    "/ok\nLocation: //evil.example",
    "/ok\x00",
    "/ok\x7f",
    "/tab\there",
    "/a\u2028b",
    "/a\u202eb",
    "/\ud800",
    "acme settings",
    ".settings",
    "acme.settings:evil",
    "a" * 2049,
]


@pytest.mark.parametrize("target", HOSTILE_REDIRECTS)
def test_a_hostile_redirect_target_is_a_config_error(tmp_path: Path, target: str) -> None:
    with pytest.raises(ConfigError) as caught:
        PagerDutyConnect(_bare_app(tmp_path, PDCONNECT_REDIRECT_TO=target))
    assert caught.value.setting == "PDCONNECT_REDIRECT_TO"


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/", "/"),
        ("/settings/pagerduty", "/settings/pagerduty"),
        ("/settings?tab=pagerduty#alerts", "/settings?tab=pagerduty#alerts"),
        (" /settings ", "/settings"),
        ("home", "/"),  # an endpoint name
    ],
)
def test_a_local_redirect_target_is_followed(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, target: str, location: str
) -> None:
    app = make_app(tmp_path, pagerduty_sandbox, PDCONNECT_REDIRECT_TO=target)
    client = app.test_client()
    client.get("/login/alice")
    response = client.post(
        "/pagerduty/integrations", data={"integration_key": SERVICE_KEY, "pdconnect_csrf": _csrf(client)}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == location
    page = client.get("/pagerduty/callback?state=forged", follow_redirects=True).get_data(as_text=True)
    assert f'href="{location}">Back' in page


def test_an_unknown_endpoint_name_falls_back_to_the_home_page(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(tmp_path, pagerduty_sandbox, PDCONNECT_REDIRECT_TO="acme.no_such_page")
    client = app.test_client()
    client.get("/login/alice")
    response = client.post(
        "/pagerduty/integrations", data={"integration_key": SERVICE_KEY, "pdconnect_csrf": _csrf(client)}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert client.get("/pagerduty/callback?state=forged", follow_redirects=True).status_code == 400
    assert "PDCONNECT_REDIRECT_TO" in caplog.text


@_fixtures
@given(target=st.text(max_size=30) | st.sampled_from(HOSTILE_REDIRECTS))
def test_any_redirect_target_is_refused_or_stays_on_this_site(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, target: str
) -> None:
    try:
        app = make_app(tmp_path, pagerduty_sandbox, PDCONNECT_REDIRECT_TO=target)
    except ConfigError as exc:
        assert exc.setting == "PDCONNECT_REDIRECT_TO"  # noqa: PT017
        return
    client = app.test_client()
    client.get("/login/alice")
    response = client.post(
        "/pagerduty/integrations", data={"integration_key": SERVICE_KEY, "pdconnect_csrf": _csrf(client)}
    )
    assert response.status_code == 302
    assert _same_site(response.headers["Location"]), response.headers["Location"]


# -- the paste-a-key route: the service name and region are the attacker's text -------------


def _paste(client: FlaskClient, body: object) -> Any:
    return client.post(
        "/pagerduty/integrations",
        data=json.dumps(body),
        content_type="application/json",
        headers={"X-PDConnect-CSRF": _csrf(client), "Accept": "application/json"},
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"service_name": "\ud800"},  # was a 500: UTF-8 cannot store it
        {"service_name": "Data\udfffbase"},
        {"service_name": "a\x00b"},  # PostgreSQL cannot store a NUL
        {"service_name": "\x1b[31mred"},
        {"service_name": "two\nlines"},
        {"service_name": "tab\there"},
        {"service_name": "\x7f"},
        {"service_name": "x" * 256},
        {"service_name": 5},
        {"service_name": ["Database"]},
        {"service_name": {"name": "Database"}},
        {"service_name": True},
        {"region": ["us"]},
        {"region": {}},
        {"region": 1},
        {"region": "mars"},
        {"region": "\ud800"},
        {"region": "us\x00"},
    ],
)
def test_a_hostile_pasted_name_or_region_is_a_400_and_stores_nothing(
    client: FlaskClient, app: Flask, fields: dict[str, object]
) -> None:
    response = _paste(client, {"integration_key": SERVICE_KEY, **fields})
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.json["error"]  # type: ignore[index]
    assert error["type"] == "InvalidData"
    assert next(iter(fields)) in error["message"]
    with app.app_context():
        assert current_pagerduty().store.list("alice") == []


def test_a_hostile_pasted_name_in_a_form_is_a_400_page(client: FlaskClient, app: Flask) -> None:
    response = client.post(
        "/pagerduty/integrations",
        data={"integration_key": SERVICE_KEY, "service_name": "a\x00b", "pdconnect_csrf": _csrf(client)},
    )
    assert response.status_code == 400
    assert "service_name contains control characters" in response.get_data(as_text=True)
    with app.app_context():
        assert current_pagerduty().store.list("alice") == []


@pytest.mark.parametrize(
    ("fields", "name", "region"),
    [
        ({}, None, "us"),
        ({"service_name": None, "region": None}, None, "us"),
        ({"service_name": "  ", "region": ""}, None, "us"),
        ({"service_name": " Database ", "region": "eu"}, "Database", "eu"),
        ({"service_name": "Base de données ☕", "region": " EU "}, "Base de données ☕", "eu"),
        ({"service_name": "x" * 255}, "x" * 255, "us"),
    ],
)
def test_a_plain_pasted_name_and_region_are_kept(
    client: FlaskClient, app: Flask, fields: dict[str, object], name: str | None, region: str
) -> None:
    response = _paste(client, {"integration_key": SERVICE_KEY, **fields})
    assert response.status_code == 201, response.get_data(as_text=True)
    with app.app_context():
        (stored,) = current_pagerduty().store.list("alice")
    assert (stored.service_name, stored.region.value) == (name, region)


def test_a_bad_form_token_is_named_as_such_not_as_a_region(client: FlaskClient) -> None:
    response = client.post(
        "/pagerduty/integrations",
        json={"integration_key": SERVICE_KEY},
        headers={"X-PDConnect-CSRF": "\udc80forged", "Accept": "application/json"},
    )
    assert response.status_code == 400
    assert response.json["error"]["type"] == "StateInvalid"  # type: ignore[index]


@_fixtures
@given(
    name=st.text(st.characters(codec=None), max_size=300) | st.none() | st.integers(),
    region=st.text(st.characters(codec=None), max_size=5) | st.sampled_from(["us", "eu", "EU"]) | st.none(),
)
def test_any_pasted_name_and_region_are_kept_clean_or_refused(
    client: FlaskClient, app: Flask, name: object, region: object
) -> None:
    response = _paste(client, {"integration_key": SERVICE_KEY, "service_name": name, "region": region})
    assert response.status_code in (201, 400), response.get_data(as_text=True)
    if response.status_code == 201:
        with app.app_context():
            (stored,) = current_pagerduty().store.list("alice")
        assert stored.service_name is None or text_problem(stored.service_name, max_length=255) is None


@pytest.mark.parametrize("token", ["\udc80forged", "\ud800", "é" * 10, "x" * 10_000, ""])
@pytest.mark.parametrize("action", ["test", "delete"])
def test_a_hostile_form_token_on_test_or_disconnect_is_a_400(client: FlaskClient, token: str, action: str) -> None:
    stored = _paste(client, {"integration_key": SERVICE_KEY}).json["integration"]["id"]
    response = client.post(
        f"/pagerduty/integrations/{stored}/{action}", headers={"X-PDConnect-CSRF": token, "Accept": "application/json"}
    )
    assert response.status_code == 400
    assert response.json["error"]["type"] == "StateInvalid"  # type: ignore[index]
