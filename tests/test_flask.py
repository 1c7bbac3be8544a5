"""The Flask extension, against the sandbox, with Flask's test client."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import pytest
from flask import Flask, redirect, render_template_string, session
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import OperationalError
from werkzeug.middleware.proxy_fix import ProxyFix

from pdconnect import EventsApi, Integration
from pdconnect.flask import PagerDutyConnect, cancelled, connected, current_pagerduty, failed
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.storage import MemoryIntegrationStore, StoredIntegration
from tests.conftest import SERVICE_KEY, FakeClock

APP_ID = "PFLASK1"
VENDOR_KEY = "2fc7c9f3c8030e74aae6"
CALLBACK = "http://localhost/pagerduty/callback"
PAGE = """{% for category, message in get_flashed_messages(with_categories=true) %}<p class="flash {{ category }}">{{ message }}</p>{% endfor %}
{{ pagerduty_button() }}{{ pagerduty_button("connect", size="small", theme="dark") }}
<form method="post" action="{{ url_for('pdconnect.paste_key') }}"><input name="{{ pdconnect_csrf_field() }}" value="{{ pdconnect_csrf_token() }}"></form>"""


def make_app(tmp_path: Path, sandbox: PagerDutySandbox, clock: FakeClock | None = None, **config: Any) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        SECRET_KEY="flask-test-secret-0123456789abcdef",
        PDCONNECT_VENDOR_KEY=VENDOR_KEY,
        PDCONNECT_APP_ID=APP_ID,
        PDCONNECT_CLIENT_NAME="Acme Monitoring",
        PDCONNECT_CLIENT_URL="https://acme.example",
        PDCONNECT_CONNECT_BASE_URL=sandbox.url,
        PDCONNECT_INSTALL_BASE_URL=sandbox.url,
        PDCONNECT_EVENTS_BASE_URL=sandbox.url,
        **config,
    )
    extension = PagerDutyConnect(app, clock=clock or FakeClock())

    @extension.owner_loader
    def owner() -> str | None:
        return session.get("user")

    @app.route("/")
    def home() -> str:
        return render_template_string(PAGE)

    @app.route("/login/<name>")
    def login(name: str) -> Any:
        session["user"] = name
        return redirect("/")

    sandbox.register_app(APP_ID, [CALLBACK])
    return app


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


def _path(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def _start(client: FlaskClient, flow: str) -> str:
    response = client.get(f"/pagerduty/{flow}")
    assert response.status_code == 302
    return str(response.headers["Location"])


def _flashes(client: FlaskClient) -> list[str]:
    return re.findall(r'<p class="flash \w+">(.*?)</p>', client.get("/").get_data(as_text=True))


def _problem_page(client: FlaskClient, response: Any) -> Any:
    """A failed callback answers 303 to a clean URL (its own carries keys); the page waits there."""
    assert response.status_code == 303
    assert response.headers["Location"] == "/pagerduty/problem"
    return client.get(response.headers["Location"])


def _csrf(client: FlaskClient) -> str:
    found = re.search(r'name="pdconnect_csrf" value="([^"]+)"', client.get("/").get_data(as_text=True))
    assert found
    return found.group(1)


# -- the handshakes --------------------------------------------------------------------------


def test_connect_end_to_end(client: FlaskClient, app: Flask, pagerduty_sandbox: PagerDutySandbox) -> None:
    callback = pagerduty_sandbox.connect(_start(client, "connect"), service="Database")
    assert callback.startswith(CALLBACK + "/")
    response = client.get(_path(callback))
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert _flashes(client) == ["Connected to PagerDuty: Database."]
    with app.app_context():
        (stored,) = current_pagerduty().store.list("alice")
    assert stored.events_api is EventsApi.V1
    assert stored.service_name == "Database"


def test_install_two_services(client: FlaskClient, app: Flask, pagerduty_sandbox: PagerDutySandbox) -> None:
    redirect_url = pagerduty_sandbox.install(_start(client, "install"), services=["Checkout API", "Database"])
    assert client.get(_path(redirect_url)).status_code == 302
    assert _flashes(client) == ["Connected to PagerDuty: Checkout API, Database."]
    with app.app_context():
        stored = current_pagerduty().store.list("alice")
    assert [i.service_name for i in stored] == ["Checkout API", "Database"]
    assert {i.events_api for i in stored} == {EventsApi.V2}


def test_connecting_the_same_service_again_updates(
    client: FlaskClient, app: Flask, pagerduty_sandbox: PagerDutySandbox
) -> None:
    for _ in range(2):
        client.get(_path(pagerduty_sandbox.install(_start(client, "install"), services=["Database"])))
    with app.app_context():
        assert len(current_pagerduty().store.list("alice")) == 1


def test_several_tabs_at_once(client: FlaskClient, pagerduty_sandbox: PagerDutySandbox) -> None:
    first, second = _start(client, "install"), _start(client, "connect")
    second_callback = pagerduty_sandbox.connect(second, service="Checkout API")
    first_callback = pagerduty_sandbox.install(first, services=["Database"])
    assert client.get(_path(second_callback)).status_code == 302
    assert client.get(_path(first_callback)).status_code == 302


def test_cancel_flashes_and_signals(client: FlaskClient, app: Flask, pagerduty_sandbox: PagerDutySandbox) -> None:
    seen: list[dict[str, Any]] = []

    def receiver(sender: Flask, **kwargs: Any) -> None:
        seen.append(kwargs)

    with cancelled.connected_to(receiver, app):
        callback = pagerduty_sandbox.connect(_start(client, "connect"), cancel=True)
        assert client.get(_path(callback)).status_code == 302
    assert seen[0]["owner_id"] == "alice"
    assert _flashes(client) == ["PagerDuty setup was cancelled."]


def test_connected_signal_can_take_over_the_redirect(
    client: FlaskClient, app: Flask, pagerduty_sandbox: PagerDutySandbox
) -> None:
    received: list[list[StoredIntegration]] = []

    def receiver(sender: Flask, integrations: list[StoredIntegration], owner_id: str) -> Any:
        received.append(integrations)
        return redirect("/welcome")

    with connected.connected_to(receiver, app):
        response = client.get(_path(pagerduty_sandbox.install(_start(client, "install"))))
    assert response.headers["Location"] == "/welcome"
    assert received[0][0].id


@pytest.mark.parametrize("how", ["replay", "other_session", "expired", "tampered", "foreign_config"])
def test_bad_callbacks_get_a_friendly_400(
    client: FlaskClient, app: Flask, pagerduty_sandbox: PagerDutySandbox, clock: FakeClock, how: str
) -> None:
    callback = pagerduty_sandbox.install(_start(client, "install"))
    path = _path(callback)
    if how == "replay":
        client.get(path)
        expected = "This link was already used"
    elif how == "other_session":
        client = app.test_client()
        client.get("/login/alice")
        expected = "This link belongs to another browser session"
    elif how == "expired":
        clock.advance(601)
        expected = "The link expired"
    elif how == "tampered":
        path = re.sub(r"state=([^&]+)", lambda m: "state=" + m.group(1)[:-3] + "AAA", path)
        expected = "This link is not valid"
    else:
        path = "/pagerduty/callback?" + urlencode({"config": json.dumps({"integration_keys": []})})
        expected = "This link is not valid"
    errors: list[Exception] = []
    with failed.connected_to(lambda sender, error: errors.append(error), app):
        response = _problem_page(client, client.get(path))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert expected in page
    assert 'href="/pagerduty/install">Start again</a>' in page
    assert errors, "the failed signal fired"
    with app.app_context():
        stored = current_pagerduty().store.list("alice")
    assert len(stored) == (1 if how == "replay" else 0)


def test_a_callback_for_another_signed_in_user_is_refused(
    client: FlaskClient, pagerduty_sandbox: PagerDutySandbox
) -> None:
    callback = pagerduty_sandbox.install(_start(client, "install"))
    client.get("/login/mallory")
    response = _problem_page(client, client.get(_path(callback)))
    assert response.status_code == 400
    assert "This link belongs to another account" in response.get_data(as_text=True)


def test_malformed_callback_json_answer(client: FlaskClient) -> None:
    response = client.get("/pagerduty/callback", headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert response.json == {"error": {"type": "StateInvalid", "message": "the handshake state is missing"}}


def test_signing_in_is_required(app: Flask) -> None:
    anonymous = app.test_client()
    for path in ("/pagerduty/connect", "/pagerduty/install"):
        response = anonymous.get(path)
        assert response.status_code == 401
        assert "Please sign in" in response.get_data(as_text=True)


def test_callback_url_must_be_safe(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> None:
    app = make_app(tmp_path, pagerduty_sandbox, PDCONNECT_CALLBACK_URL="http://vendor.example/pagerduty/callback")
    client = app.test_client()
    client.get("/login/alice")
    response = client.get("/pagerduty/install")
    assert response.status_code == 503
    assert "not set up here yet" in response.get_data(as_text=True)


@pytest.mark.parametrize("subdomain", ["evil.example/", "Acme", "a" * 64, "-acme", "acme.pagerduty.com@evil"])
def test_a_bad_subdomain_is_a_400_page_not_a_redirect(client: FlaskClient, subdomain: str) -> None:
    response = client.get("/pagerduty/install", query_string={"subdomain": subdomain})
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "That is not a PagerDuty account" in response.get_data(as_text=True)


def test_a_subdomain_keeps_the_sandbox_host(client: FlaskClient, pagerduty_sandbox: PagerDutySandbox) -> None:
    response = client.get("/pagerduty/install", query_string={"subdomain": "acme"})
    assert response.status_code == 302
    assert response.headers["Location"].startswith(pagerduty_sandbox.url + "/install/integration?")


def test_behind_a_tls_terminating_proxy(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> None:
    app = make_app(tmp_path, pagerduty_sandbox, PDCONNECT_ALLOWED_HOSTS="monitoring.acme.example")
    app.wsgi_app = ProxyFix(app.wsgi_app, x_proto=1, x_host=1)  # type: ignore[method-assign]
    client = app.test_client()
    client.get("/login/alice")
    response = client.get(
        "/pagerduty/connect", headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "monitoring.acme.example"}
    )
    assert response.status_code == 302
    callback = re.search(r"callback=([^&]+)", response.headers["Location"])
    assert callback
    assert (
        __import__("urllib.parse")
        .parse.unquote(callback.group(1))
        .startswith("https://monitoring.acme.example/pagerduty/callback/")
    )


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.text(max_size=200), state=st.one_of(st.none(), st.text(alphabet="abcXYZ019-_.", max_size=60)))
def test_any_callback_is_a_redirect_or_a_400(client: FlaskClient, query: str, state: str | None) -> None:
    path = "/pagerduty/callback" + (f"/{state}" if state else "")
    response = client.get(path + "?" + quote(query, safe="=&%+"))
    assert response.status_code in (302, 303, 400, 404)
    if response.status_code == 303:
        assert "?" not in response.headers["Location"]
        assert client.get(response.headers["Location"]).status_code == 400


# -- pasted keys, test, disconnect ------------------------------------------------------------


def test_paste_a_key(client: FlaskClient, app: Flask) -> None:
    response = client.post(
        "/pagerduty/integrations",
        data={"integration_key": f"  {SERVICE_KEY} ", "service_name": "Billing", "pdconnect_csrf": _csrf(client)},
    )
    assert response.status_code == 302
    assert _flashes(client) == ["Connected Billing ending in d1a6."]
    with app.app_context():
        (stored,) = current_pagerduty().store.list("alice")
    assert stored.integration_key == SERVICE_KEY


def test_paste_a_key_as_json(client: FlaskClient) -> None:
    response = client.post(
        "/pagerduty/integrations",
        json={"integration_key": SERVICE_KEY, "region": "eu"},
        headers={"X-PDConnect-CSRF": _csrf(client)},
    )
    assert response.status_code == 201
    assert response.json["integration"]["key_type"] == "service"  # type: ignore[index]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"integration_key": "too-short"}, "That is not an integration key"),
        ({"integration_key": SERVICE_KEY, "region": "mars"}, "region must be us or eu"),
        ({"integration_key": SERVICE_KEY, "pdconnect_csrf": "forged"}, "This link is not valid"),
        ({"integration_key": SERVICE_KEY, "pdconnect_csrf": None}, "This link is not valid"),
    ],
)
def test_bad_pasted_keys(client: FlaskClient, data: dict[str, Any], expected: str) -> None:
    form = {"pdconnect_csrf": _csrf(client), **data}
    form = {k: v for k, v in form.items() if v is not None}
    response = client.post("/pagerduty/integrations", data=form)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert expected in page
    assert SERVICE_KEY not in page


def test_paste_form_token_is_bound_to_the_session(client: FlaskClient, app: Flask) -> None:
    token = _csrf(client)
    other = app.test_client()
    other.get("/login/alice")
    response = other.post("/pagerduty/integrations", data={"integration_key": SERVICE_KEY, "pdconnect_csrf": token})
    assert response.status_code == 400
    assert "another browser session" in response.get_data(as_text=True)


def _paste(client: FlaskClient, key: str = SERVICE_KEY) -> str:
    response = client.post(
        "/pagerduty/integrations", json={"integration_key": key}, headers={"X-PDConnect-CSRF": _csrf(client)}
    )
    return str(response.json["integration"]["id"])  # type: ignore[index]


def test_test_button_triggers_then_resolves(client: FlaskClient, pagerduty_sandbox: PagerDutySandbox) -> None:
    integration_id = _paste(client, pagerduty_sandbox.service_key("Database"))
    response = client.post(f"/pagerduty/integrations/{integration_id}/test", data={"pdconnect_csrf": _csrf(client)})
    assert response.status_code == 302
    assert _flashes(client) == ["Test alert sent to the PagerDuty service and resolved."]
    (incident,) = pagerduty_sandbox.incidents()
    assert incident["status"] == "resolved"
    assert incident["title"].startswith("Test alert from Acme Monitoring")
    assert incident["alerts"][0]["client"] == "Acme Monitoring"


def test_test_button_marks_a_rejected_key_failing(client: FlaskClient, app: Flask) -> None:
    integration_id = _paste(client, "f" * 32)  # well formed, unknown to the sandbox: 400
    response = client.post(
        f"/pagerduty/integrations/{integration_id}/test",
        headers={"X-PDConnect-CSRF": _csrf(client), "Accept": "application/json"},
    )
    assert response.status_code == 502
    assert response.json["ok"] is False  # type: ignore[index]
    with app.app_context():
        stored = current_pagerduty().store.get("alice", integration_id)
    assert stored is not None
    assert stored.failing
    assert "Invalid routing key" in (stored.failure_reason or "")


def test_disconnect_only_your_own(client: FlaskClient, app: Flask) -> None:
    integration_id = _paste(client)
    mallory = app.test_client()
    mallory.get("/login/mallory")
    response = mallory.post(f"/pagerduty/integrations/{integration_id}/delete", data={"pdconnect_csrf": _csrf(mallory)})
    assert response.status_code == 302
    assert _flashes(mallory) == ["That PagerDuty integration does not exist (any more)."]
    with app.app_context():
        assert current_pagerduty().store.get("alice", integration_id) is not None
    response = client.post(f"/pagerduty/integrations/{integration_id}/delete", data={"pdconnect_csrf": _csrf(client)})
    assert _flashes(client) == ["Disconnected the PagerDuty integration."]
    with app.app_context():
        assert current_pagerduty().store.list("alice") == []


@pytest.mark.parametrize("action", ["delete", "test"])
def test_a_database_outage_on_any_route_is_a_503_page(client: FlaskClient, app: Flask, action: str) -> None:
    integration_id = _paste(client)
    store = app.extensions["pdconnect"].store
    store.table.drop(store.engine)
    response = client.post(f"/pagerduty/integrations/{integration_id}/{action}", data={"pdconnect_csrf": _csrf(client)})
    assert response.status_code == 503
    assert "PagerDuty settings are unavailable" in response.get_data(as_text=True)
    response = client.post(
        f"/pagerduty/integrations/{integration_id}/{action}",
        headers={"Accept": "application/json", "X-PDConnect-CSRF": _csrf(client)},
    )
    assert response.status_code == 503 and "did not answer" in response.json["error"]["message"]


def test_disconnect_needs_the_form_token(client: FlaskClient) -> None:
    integration_id = _paste(client)
    response = client.post(f"/pagerduty/integrations/{integration_id}/delete")
    assert response.status_code == 400


# -- configuration, templates, failures ------------------------------------------------------


def test_template_helpers(client: FlaskClient) -> None:
    page = client.get("/").get_data(as_text=True)
    assert 'href="/pagerduty/install"' in page
    assert 'class="pdconnect-button pdconnect-button--small pdconnect-button--dark" href="/pagerduty/connect"' in page


def test_snippet_helper(app: Flask) -> None:
    with app.test_request_context("/"):
        from pdconnect.flask import pagerduty_snippet

        assert 'href="http://localhost/pagerduty/install"' in pagerduty_snippet()


def test_url_prefix_and_redirect_setting(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> None:
    app = make_app(tmp_path, pagerduty_sandbox, PDCONNECT_URL_PREFIX="/integrations/pd", PDCONNECT_REDIRECT_TO="home")
    pagerduty_sandbox.register_app(APP_ID, ["http://localhost/integrations/pd/callback"])
    client = app.test_client()
    client.get("/login/alice")
    start = client.get("/integrations/pd/install")
    assert start.status_code == 302
    callback = pagerduty_sandbox.install(start.headers["Location"])
    response = client.get(_path(callback))
    assert response.headers["Location"] == "/"


def test_storage_outage_is_a_503_not_a_500(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> None:
    class BrokenStore(MemoryIntegrationStore):
        def save(self, integration: Integration) -> StoredIntegration:
            raise OperationalError("insert", {}, Exception("database is locked"))

    app = Flask(__name__, instance_path=str(tmp_path / "i"))
    app.config.update(SECRET_KEY="x" * 32, PDCONNECT_APP_ID=APP_ID, PDCONNECT_INSTALL_BASE_URL=pagerduty_sandbox.url)
    PagerDutyConnect(app, store=BrokenStore(), owner_loader=lambda: "alice")
    pagerduty_sandbox.register_app(APP_ID, [CALLBACK])
    client = app.test_client()
    callback = pagerduty_sandbox.install(client.get("/pagerduty/install").headers["Location"])
    response = client.get(_path(callback))
    assert response.status_code == 503
    assert "Could not save the connection" in response.get_data(as_text=True)


def test_a_nonce_store_outage_is_a_503_and_the_link_still_works(
    client: FlaskClient, app: Flask, pagerduty_sandbox: PagerDutySandbox
) -> None:
    callback = _path(pagerduty_sandbox.install(client.get("/pagerduty/install").headers["Location"]))
    nonces = app.extensions["pdconnect"].handshake.states.nonce_store
    nonces.table.drop(nonces.engine)  # the used-nonce table is gone (a restore, a bad migration)
    response = client.get(callback)
    assert response.status_code == 503
    assert "Could not finish connecting" in response.get_data(as_text=True)
    nonces.table.create(nonces.engine)
    assert client.get(callback).status_code == 302, "nothing was recorded: the same link finishes the handshake"


def test_settings_from_config(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "i"))
    app.config.update(
        SECRET_KEY="x" * 32, PDCONNECT_OWNER_LOADER="tests.test_flask:_owner_for_config", PDCONNECT_REGION="eu"
    )
    PagerDutyConnect(app)
    with app.test_request_context("/"):
        state = current_pagerduty()
        assert state.current_owner() == "from-config"
        assert state.region.value == "eu"
        assert (tmp_path / "i" / "pdconnect.db").exists()
    assert "pdconnect" in app.extensions


def _owner_for_config() -> str:
    return "from-config"


def test_missing_secret_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        PagerDutyConnect(Flask(__name__, instance_path=str(tmp_path)))
