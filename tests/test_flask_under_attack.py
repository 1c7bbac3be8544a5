"""The Flask blueprint under attack and misuse (issue 9): hosts, sessions, replays, raw bytes.

Each route answers a hostile request with a 4xx page or JSON, never a 500 and never a URL
built from a header it does not trust.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import pytest
from flask import Flask, render_template_string, session
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2 import DictLoader
from werkzeug.middleware.proxy_fix import ProxyFix

from pdconnect import MemoryNonceStore
from pdconnect.errors import ConfigError
from pdconnect.flask import PagerDutyConnect, current_pagerduty, pagerduty_snippet
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.conftest import OTHER_SERVICE_KEY, SERVICE_KEY, FakeClock
from tests.test_flask import APP_ID, _csrf, _flashes, _path, make_app

_fixtures = settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=__import__("time").time())


def _with_logout(app: Flask) -> Flask:
    @app.route("/logout")
    def logout() -> str:
        session.pop("user", None)  # a logout that keeps the rest of the session, binding included
        return "bye"

    return app


@pytest.fixture
def app(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, clock: FakeClock) -> Flask:
    return _with_logout(make_app(tmp_path, pagerduty_sandbox, clock))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    made = app.test_client()
    made.get("/login/alice")
    return made


def _callback_of(location: str) -> str:
    """The callback URL a PagerDuty redirect (Connect or install) carries."""
    query = parse_qs(urlsplit(location).query)
    return (query.get("callback") or query["redirect_url"])[0]


def _state_of(client: FlaskClient) -> str:
    location = client.get("/pagerduty/install").headers["Location"]
    return parse_qs(urlsplit(_callback_of(location)).query)["state"][0]


# -- item 4: the callback URL never comes from a request header ---------------------------------
# The test client sends its session cookie only to the host it was set for, so these apps sign
# everyone in as alice instead.


def _host_app(tmp_path: Path, sandbox: PagerDutySandbox, **config: Any) -> FlaskClient:
    app = Flask(__name__, instance_path=str(tmp_path / "hosts"))
    app.config.update(
        SECRET_KEY="y" * 32,
        PDCONNECT_APP_ID=APP_ID,
        PDCONNECT_VENDOR_KEY="2fc7c9f3c8030e74aae6",
        PDCONNECT_INSTALL_BASE_URL=sandbox.url,
        PDCONNECT_CONNECT_BASE_URL=sandbox.url,
        **config,
    )
    PagerDutyConnect(app, owner_loader=lambda: "alice")
    return app.test_client()


@pytest.fixture
def anyhost(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> FlaskClient:
    return _host_app(tmp_path, pagerduty_sandbox)


HOSTILE_HOSTS = [
    "evil.example",
    "localhost.evil.example",
    "evil.example:80",
    "localhost@evil.example",
    "evil.example#@localhost",
    "localhost#@evil.example",
    "localhost/@evil.example",
    "localhost\\@evil.example",
    "localhost:80@evil.example",
    "127.0.0.1.nip.io",
    "127.0.0.2",
    "[::2]",
    "[::1].evil.example",
    "lоcalhost",  # a Cyrillic o
    "%6cocalhost",
    "localhost%00.evil.example",
    "localhost:99999",
    "localhost:abc",
    "",
    " localhost",
    "localhost evil.example",
    "a" * 300,
]


@pytest.mark.parametrize("host", HOSTILE_HOSTS)
@pytest.mark.parametrize("flow", ["connect", "install"])
def test_a_hostile_host_header_gets_no_callback(anyhost: FlaskClient, host: str, flow: str) -> None:
    response = anyhost.get(f"/pagerduty/{flow}", headers={"Host": host})
    assert response.status_code == 400
    assert "Location" not in response.headers
    page = response.get_data(as_text=True)
    # Werkzeug itself refuses some hosts (too long, say) with its own 400 before any route runs.
    assert "This address is not set up for PagerDuty" in page or "could not understand" in page
    assert "evil" not in page


@pytest.mark.parametrize("host", ["evil.example", "localhost.evil.example"])
def test_x_forwarded_host_is_checked_too_behind_proxyfix(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, host: str
) -> None:
    client = _host_app(tmp_path, pagerduty_sandbox, PDCONNECT_ALLOWED_HOSTS=["monitoring.acme.example"])
    app = client.application
    app.wsgi_app = ProxyFix(app.wsgi_app, x_proto=1, x_host=1)  # type: ignore[method-assign]
    https = {"X-Forwarded-Proto": "https"}
    forged = client.get("/pagerduty/connect", headers={**https, "X-Forwarded-Host": host})
    assert forged.status_code == 400
    good = client.get("/pagerduty/connect", headers={**https, "X-Forwarded-Host": "Monitoring.Acme.Example."})
    assert good.status_code == 302


def test_x_forwarded_host_means_nothing_without_proxyfix(client: FlaskClient) -> None:
    response = client.get("/pagerduty/install", headers={"X-Forwarded-Host": "evil.example"})
    assert response.status_code == 302
    assert _callback_of(response.headers["Location"]).startswith("http://localhost/pagerduty/callback?state=")


@pytest.mark.parametrize(
    ("host", "callback"),
    [
        ("localhost", "http://localhost/pagerduty/callback"),
        ("LOCALHOST", "http://localhost/pagerduty/callback"),
        ("localhost:5000", "http://localhost:5000/pagerduty/callback"),
        ("127.0.0.1:8080", "http://127.0.0.1:8080/pagerduty/callback"),
        ("[::1]:8080", "http://[::1]:8080/pagerduty/callback"),
    ],
)
def test_loopback_hosts_are_allowed_by_default(anyhost: FlaskClient, host: str, callback: str) -> None:
    response = anyhost.get("/pagerduty/connect", headers={"Host": host})
    assert response.status_code == 302
    assert _callback_of(response.headers["Location"]).startswith(callback + "/")


HTTPS = {"wsgi.url_scheme": "https"}


def test_an_allowed_host_with_a_port_pins_the_port(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> None:
    client = _host_app(tmp_path, pagerduty_sandbox, PDCONNECT_ALLOWED_HOSTS="acme.example:8443, ::1")
    assert (
        client.get("/pagerduty/connect", environ_overrides=HTTPS, headers={"Host": "acme.example:8443"}).status_code
        == 302
    )
    assert (
        client.get("/pagerduty/connect", environ_overrides=HTTPS, headers={"Host": "acme.example:8444"}).status_code
        == 400
    )
    assert (
        client.get("/pagerduty/connect", environ_overrides=HTTPS, headers={"Host": "acme.example"}).status_code == 400
    )
    assert client.get("/pagerduty/connect", headers={"Host": "[::1]:9"}).status_code == 302
    assert client.get("/pagerduty/connect", headers={"Host": "localhost"}).status_code == 400, "the list replaces"


@pytest.mark.parametrize("host", ["evil.example", "localhost"])
def test_a_configured_callback_url_ignores_the_host(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, host: str
) -> None:
    configured = "https://monitoring.acme.example/pagerduty/callback"
    client = _host_app(tmp_path, pagerduty_sandbox, PDCONNECT_CALLBACK_URL=configured, PDCONNECT_ALLOWED_HOSTS=[])
    app = client.application
    response = client.get("/pagerduty/install", headers={"Host": host})
    assert response.status_code == 302
    assert _callback_of(response.headers["Location"]).startswith(configured + "?state=")
    with app.test_request_context("/", headers={"Host": host}):
        assert 'href="https://monitoring.acme.example/pagerduty/install"' in pagerduty_snippet()


@pytest.mark.parametrize("host", ["evil.example", "localhost@evil.example"])
def test_the_snippet_refuses_a_hostile_host(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, host: str) -> None:
    from pdconnect.errors import UntrustedHost

    client = _host_app(tmp_path, pagerduty_sandbox)
    app = client.application

    @app.route("/share")
    def share() -> str:  # a vendor's own page
        return render_template_string("<pre>{{ pagerduty_snippet() }}</pre>")

    with app.test_request_context("/", headers={"Host": host}), pytest.raises(UntrustedHost):
        pagerduty_snippet()
    response = client.get("/share", headers={"Host": host})
    assert response.status_code == 400
    assert "This address is not set up for PagerDuty" in response.get_data(as_text=True)
    assert client.get("/share").status_code == 200


@_fixtures
@given(host=st.text(max_size=60))
def test_any_host_header_is_refused_or_allowed(anyhost: FlaskClient, host: str) -> None:
    try:
        host.encode("latin-1")
    except UnicodeEncodeError:
        return  # not a header value a WSGI server can pass
    response = anyhost.get("/pagerduty/connect", environ_overrides={"HTTP_HOST": host})
    assert response.status_code in (302, 400)
    if response.status_code == 302:
        callback = urlsplit(unquote(_callback_of(response.headers["Location"])))
        assert callback.hostname in ("localhost", "127.0.0.1", "::1")


# -- item 10: nobody signed in ---------------------------------------------------------------


def test_a_callback_with_nobody_signed_in_is_refused_and_not_burned(
    client: FlaskClient, app: Flask, pagerduty_sandbox: PagerDutySandbox
) -> None:
    callback = _path(pagerduty_sandbox.install(client.get("/pagerduty/install").headers["Location"]))
    client.get("/logout")
    response = client.get(callback)
    assert response.status_code == 401
    assert "Please sign in" in response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    with app.app_context():
        assert current_pagerduty().store.list("alice") == []
    client.get("/login/alice")
    assert client.get(callback).status_code == 302, "the state was not consumed"
    with app.app_context():
        assert len(current_pagerduty().store.list("alice")) == 1


def test_a_callback_with_nobody_signed_in_answers_json_401(client: FlaskClient) -> None:
    client.get("/logout")
    response = client.get("/pagerduty/callback?state=x", headers={"Accept": "application/json"})
    assert response.status_code == 401
    assert "sign in" in response.json["error"]["message"].lower()  # type: ignore[index]


# -- item 11: keys leave the URL as soon as possible -------------------------------------------


@pytest.mark.parametrize("flow", ["connect", "install"])
def test_success_redirects_to_a_clean_url_that_is_not_cached(
    client: FlaskClient, pagerduty_sandbox: PagerDutySandbox, flow: str
) -> None:
    start = client.get(f"/pagerduty/{flow}").headers["Location"]
    callback = pagerduty_sandbox.connect(start) if flow == "connect" else pagerduty_sandbox.install(start)
    response = client.get(_path(callback))
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_a_failed_callback_page_is_not_cached_nor_referred(client: FlaskClient) -> None:
    response = client.get(f"/pagerduty/callback?state=forged&service_key={SERVICE_KEY}")
    assert response.status_code == 303  # to a URL without the key: see test_flask_hardening.py
    for answer in (response, client.get(response.headers["Location"])):
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert SERVICE_KEY not in answer.get_data(as_text=True)


# -- item 1: one module-level, empty MemoryNonceStore ----------------------------------------

SHARED_NONCES = MemoryNonceStore()


def test_an_empty_shared_nonce_store_still_refuses_a_replay(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox
) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "i"))
    app.config.update(SECRET_KEY="x" * 32, PDCONNECT_APP_ID=APP_ID, PDCONNECT_INSTALL_BASE_URL=pagerduty_sandbox.url)
    PagerDutyConnect(app, nonce_store=SHARED_NONCES, owner_loader=lambda: "alice")
    assert app.extensions["pdconnect"].handshake.states.nonce_store is SHARED_NONCES
    pagerduty_sandbox.register_app(APP_ID, ["http://localhost/pagerduty/callback"])
    client = app.test_client()
    callback = _path(pagerduty_sandbox.install(client.get("/pagerduty/install").headers["Location"]))
    assert client.get(callback).status_code == 302
    again = client.get(callback, follow_redirects=True)
    assert again.status_code == 400
    assert "This link was already used" in again.get_data(as_text=True)


# -- one bad install entry among good ones ---------------------------------------------------


def test_a_bad_install_entry_is_reported_and_the_good_ones_kept(client: FlaskClient, app: Flask) -> None:
    config = {
        "integration_keys": [
            {"integration_key": SERVICE_KEY, "name": "Checkout API", "id": "P1", "type": "service"},
            {"integration_key": "not-a-key", "name": "Billing", "id": "P2", "type": "service"},
            {"integration_key": OTHER_SERVICE_KEY, "name": "Database", "id": "P3", "type": "service"},
        ],
        "account": {"subdomain": "acme", "name": "Acme"},
    }
    query = urlencode({"state": _state_of(client), "config": json.dumps(config)})
    response = client.get(f"/pagerduty/callback?{query}")
    assert response.status_code == 302
    flashes = _flashes(client)
    assert "Connected to PagerDuty: Checkout API, Database." in flashes
    assert any("Billing" in f and "not connected" in f for f in flashes)
    assert not any("not-a-key" in f for f in flashes)
    with app.app_context():
        assert [i.service_name for i in current_pagerduty().store.list("alice")] == ["Checkout API", "Database"]


# -- the Test button says what PagerDuty said --------------------------------------------------


def test_the_test_button_shows_pagerdutys_reason(client: FlaskClient) -> None:
    response = client.post(
        "/pagerduty/integrations",
        json={"integration_key": "f" * 32},
        headers={"X-PDConnect-CSRF": _csrf(client)},
    )
    integration_id = response.json["integration"]["id"]  # type: ignore[index]
    client.post(f"/pagerduty/integrations/{integration_id}/test", data={"pdconnect_csrf": _csrf(client)})
    (flash,) = _flashes(client)
    assert "Invalid routing key" in flash
    assert "f" * 32 not in flash


# -- settings, read once at init_app -----------------------------------------------------------


def _bare_app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "i"))
    app.config.update(SECRET_KEY="x" * 32, **config)
    return app


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("PDCONNECT_STATE_MAX_AGE", "ten minutes"),
        ("PDCONNECT_STATE_MAX_AGE", 0),
        ("PDCONNECT_STATE_MAX_AGE", -5),
        ("PDCONNECT_STATE_MAX_AGE", float("nan")),
        ("PDCONNECT_STATE_MAX_AGE", 10**9),
        ("PDCONNECT_STATE_MAX_AGE", True),
        ("PDCONNECT_WEBHOOK_MAX_BYTES", "1e6"),
        ("PDCONNECT_WEBHOOK_MAX_BYTES", "inf"),
        ("PDCONNECT_ALERTMANAGER_MAX_BYTES", 0),
        ("PDCONNECT_WEBHOOK_SUBSCRIBE", "maybe"),
        ("PDCONNECT_REST_API_OAUTH", 2),
        ("PDCONNECT_WEBHOOK_SECRETS", 12345),
        ("PDCONNECT_WEBHOOK_SECRETS", ["ok", 5]),
        ("PDCONNECT_ALLOWED_HOSTS", "https://acme.example/"),
        ("PDCONNECT_ALLOWED_HOSTS", "acme.example/path"),
        ("PDCONNECT_ALLOWED_HOSTS", "user@acme.example"),
        ("PDCONNECT_REGION", "mars"),
        ("PDCONNECT_REGION", 1),
        ("PDCONNECT_ALERTMANAGER_DEFAULT_SEVERITY", "fatal"),
        ("PDCONNECT_CALLBACK_URL", 42),
        ("PDCONNECT_URL_PREFIX", ""),
        ("PDCONNECT_ERROR_TEMPLATE", None),
        ("PDCONNECT_OWNER_LOADER", 5),
        ("PDCONNECT_SECRET", 1234567890123456),
    ],
)
def test_a_bad_setting_is_a_config_error_at_init_app(tmp_path: Path, setting: str, value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        PagerDutyConnect(_bare_app(tmp_path, **{setting: value}))
    assert caught.value.setting == setting
    assert setting in str(caught.value)


def test_a_config_error_never_repeats_a_secret(tmp_path: Path) -> None:
    secret = "whsec-very-secret-value-0123456789"
    with pytest.raises(ConfigError) as caught:
        PagerDutyConnect(_bare_app(tmp_path, PDCONNECT_STATE_MAX_AGE=secret))
    assert secret not in str(caught.value)


def test_settings_from_environment_strings(tmp_path: Path) -> None:
    app = _bare_app(
        tmp_path,
        PDCONNECT_STATE_MAX_AGE=" 300 ",
        PDCONNECT_WEBHOOK_MAX_BYTES="65536",
        PDCONNECT_WEBHOOK_SUBSCRIBE="off",
        PDCONNECT_REST_API_OAUTH="Yes",
        PDCONNECT_WEBHOOK_SECRETS="first-secret, second-secret,",
        PDCONNECT_ALLOWED_HOSTS="Monitoring.Acme.Example,localhost",
        PDCONNECT_REGION="EU",
        PDCONNECT_CALLBACK_URL="",
    )
    PagerDutyConnect(app)
    config = app.config
    assert config["PDCONNECT_STATE_MAX_AGE"] == 300
    assert app.extensions["pdconnect"].handshake.states.max_age == 300
    assert config["PDCONNECT_WEBHOOK_MAX_BYTES"] == 65536
    assert config["PDCONNECT_WEBHOOK_SUBSCRIBE"] is False
    assert config["PDCONNECT_REST_API_OAUTH"] is True
    assert config["PDCONNECT_WEBHOOK_SECRETS"] == ("first-secret", "second-secret")
    assert config["PDCONNECT_ALLOWED_HOSTS"] == ("monitoring.acme.example", "localhost")
    assert config["PDCONNECT_REGION"] == "eu"
    assert config["PDCONNECT_CALLBACK_URL"] is None


@_fixtures
@given(value=st.one_of(st.text(max_size=20), st.integers(), st.floats(), st.booleans(), st.none()))
def test_any_max_age_is_a_number_or_a_config_error(tmp_path: Path, value: object) -> None:
    try:
        PagerDutyConnect(_bare_app(tmp_path, PDCONNECT_STATE_MAX_AGE=value))
    except ConfigError as exc:
        assert exc.setting == "PDCONNECT_STATE_MAX_AGE"  # noqa: PT017
    # anything else raised fails the test


# -- the error page is the vendor's to replace ---------------------------------------------

CUSTOM = (
    "<h1>{{ title }}</h1><p>{{ advice }}</p><i>{{ detail }}</i><b>{{ status }}</b><u>{{ error_type }}</u>"
    "<a id=again href='{{ start_again_url }}'></a><a id=back href='{{ back_url }}'></a>{{ back }}"
    "{{ can_install }}{{ can_connect }}"
)


def test_the_error_template_can_be_replaced(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> None:
    app = make_app(tmp_path, pagerduty_sandbox, PDCONNECT_ERROR_TEMPLATE="acme/problem.html")
    app.jinja_loader = DictLoader({"acme/problem.html": CUSTOM})  # type: ignore[assignment]
    client = app.test_client()
    client.get("/login/alice")
    page = client.get("/pagerduty/callback?state=forged", follow_redirects=True).get_data(as_text=True)
    assert "<h1>This link is not valid</h1>" in page
    assert "<b>400</b><u>StateInvalid</u>" in page
    assert "<a id=again href='/pagerduty/install'>" in page
    assert "<a id=back href='/'>" in page
    assert "TrueTrue" in page
    anonymous = app.test_client().get("/pagerduty/install").get_data(as_text=True)
    assert "<h1>Please sign in</h1>" in anonymous
    assert "<b>401</b>" in anonymous
    assert "FalseFalse" in anonymous


# -- raw bytes and odd values on every route ----------------------------------------------------

ROUTES = [
    ("GET", "/pagerduty/connect"),
    ("GET", "/pagerduty/install"),
    ("GET", "/pagerduty/callback"),
    ("GET", "/pagerduty/callback/abc"),
    ("POST", "/pagerduty/integrations"),
    ("POST", "/pagerduty/integrations/1/delete"),
    ("POST", "/pagerduty/integrations/1/test"),
    ("POST", "/pagerduty/alertmanager"),
]


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe",
        b"state=\xff",
        b"subdomain=\xc3",
        b"subdomain=%ff",
        b"subdomain=%ED%A0%80",
        b"config=%ff&state=%ff",
        b"service_key=\x00",
        b"subdomain=" + b"a" * 100_000,
        b"&" * 10_000,
        b"state=a&state=b",
        b"%",
        b"subdomain=acme&subdomain=evil",
    ],
)
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_raw_bytes_in_the_query_string_are_never_a_500(client: FlaskClient, method: str, path: str, raw: bytes) -> None:
    response = client.open(path, method=method, environ_overrides={"QUERY_STRING": raw.decode("latin-1")})
    assert response.status_code < 500


@pytest.mark.parametrize(
    "segment",
    [
        b"\xff",
        b"%ff",
        b"%ED%A0%80",
        b"\xed\xa0\x80",
        b"a" * 5000,
        b"-1",
        b"99999999999999999999999999",
        b"1e9",
        b"NaN",
        b"%00",
        b"..",
        b"\xc3\xa9",
    ],
)
def test_raw_bytes_in_path_parameters_are_never_a_500(client: FlaskClient, segment: bytes) -> None:
    text = segment.decode("latin-1")
    for method, path in (
        ("GET", f"/pagerduty/callback/{text}"),
        ("POST", f"/pagerduty/integrations/{text}/delete"),
        ("POST", f"/pagerduty/integrations/{text}/test"),
    ):
        response = client.open(
            "/", method=method, environ_overrides={"PATH_INFO": path}, data={"pdconnect_csrf": _csrf(client)}
        )
        assert response.status_code < 500, (method, path, response.status_code)


@_fixtures
@given(raw=st.binary(max_size=300), route=st.sampled_from(ROUTES), signed_in=st.booleans())
def test_any_query_bytes_on_any_route_are_below_500(
    app: Flask, raw: bytes, route: tuple[str, str], signed_in: bool
) -> None:
    client = app.test_client()
    if signed_in:
        client.get("/login/alice")
    method, path = route
    response = client.open(path, method=method, environ_overrides={"QUERY_STRING": raw.decode("latin-1")})
    assert response.status_code < 500


@_fixtures
@given(raw=st.binary(max_size=120))
def test_any_path_bytes_on_the_callback_are_below_500(client: FlaskClient, raw: bytes) -> None:
    path = "/pagerduty/callback/" + raw.decode("latin-1").replace("/", "")
    response = client.open("/", environ_overrides={"PATH_INFO": path})
    assert response.status_code < 500


def test_hostile_requests_never_log_a_key(
    client: FlaskClient, anyhost: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="pdconnect"):
        client.get(f"/pagerduty/callback?state=x&service_key={SERVICE_KEY}")
        anyhost.get("/pagerduty/connect", headers={"Host": "evil.example"})
    assert SERVICE_KEY not in caplog.text
    assert "for host 'evil.example'" in caplog.text, "the refused host is logged, quoted"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40) | st.just(SERVICE_KEY),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3),
    max_leaves=10,
)


@_fixtures
@given(
    body=st.one_of(
        _json,
        st.fixed_dictionaries(
            {}, optional={"integration_key": _json, "service_name": _json, "region": _json, "x": _json}
        ),
    )
)
def test_any_json_pasted_is_a_201_or_a_4xx(client: FlaskClient, body: object) -> None:
    response = client.post(
        "/pagerduty/integrations",
        data=json.dumps(body),
        content_type="application/json",
        headers={"X-PDConnect-CSRF": _csrf(client), "Accept": "application/json"},
    )
    assert response.status_code in (201, 400), response.get_data(as_text=True)
    assert SERVICE_KEY not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "integration_id",
    ["0", "-1", "1e9", "NaN", "9" * 400, "%00", "%ED%A0%80", "..%2F..", "another-tenants-id", " "],
)
@pytest.mark.parametrize("action", ["test", "delete"])
def test_odd_or_foreign_integration_ids_are_a_404_never_a_500(
    client: FlaskClient, app: Flask, integration_id: str, action: str
) -> None:
    mallory = app.test_client()
    mallory.get("/login/mallory")
    response = mallory.post(
        "/pagerduty/integrations",
        json={"integration_key": SERVICE_KEY},
        headers={"X-PDConnect-CSRF": _csrf(mallory)},
    )
    theirs = response.json["integration"]["id"]  # type: ignore[index]
    target = theirs if integration_id == "another-tenants-id" else integration_id
    response = client.post(
        f"/pagerduty/integrations/{target}/{action}",
        headers={"X-PDConnect-CSRF": _csrf(client), "Accept": "application/json"},
    )
    assert response.status_code == 404
    with app.app_context():
        assert current_pagerduty().store.get("mallory", theirs) is not None


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"token=\xff"])
def test_raw_bytes_in_the_webhook_query_string_are_never_a_500(client: FlaskClient, raw: bytes) -> None:
    response = client.post("/pagerduty/webhook", data=b"{}", environ_overrides={"QUERY_STRING": raw.decode("latin-1")})
    assert response.status_code < 500
