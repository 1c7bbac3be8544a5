"""An outside attacker's second look at the handshake and the Flask adapter (issue 9).

Each test here failed before the fix it names: redirect targets, pasted service names, keys
hidden from the log filter by URL encoding, secret rotation, the nonce store's clock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect.errors import ConfigError
from pdconnect.flask import PagerDutyConnect
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
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
    page = client.get("/pagerduty/callback?state=forged").get_data(as_text=True)
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
    assert client.get("/pagerduty/callback?state=forged").status_code == 400
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
