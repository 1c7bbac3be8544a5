"""Issue 9, the Flask extension (slice A): each test here failed before the fix it names.

Database refusals on save (a 4xx, not a 500), the Test button on a key PagerDuty no longer
knows, secret rotation, the nonce store's clock, allowed-host entries that can never match,
failed callbacks shown at a URL without keys, and the webhook's maximum event age.
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect import Handshake, Integration, MemoryNonceStore, Origin, new_session_binding
from pdconnect.errors import ConfigError, InvalidData, StateInvalid
from pdconnect.flask import current_pagerduty, failed
from pdconnect.flask.extension import _allowed_hosts, _split_host, trusted_host
from pdconnect.flask.signals import integration_broken
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.state import StateManager
from pdconnect.storage import MemoryIntegrationStore, SqlIntegrationStore, StoredIntegration
from pdconnect.webhooks import sign
from pdconnect.webhooks.deliveries import KEEP_FOR
from tests.conftest import SERVICE_KEY, FakeClock, unique_table
from tests.test_flask import _csrf, _flashes, _path, _start, make_app
from tests.webhooks import samples

_fixtures = settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _client(app: Flask, user: str = "alice") -> FlaskClient:
    client = app.test_client()
    client.get(f"/login/{user}")
    return client


def _paste(client: FlaskClient, key: str, **extra: Any) -> Any:
    return client.post(
        "/pagerduty/integrations", json={"integration_key": key, **extra}, headers={"X-PDConnect-CSRF": _csrf(client)}
    )


# -- defect 2: a value the database refuses was a RuntimeError, a 500 ----------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def refusing_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A store whose table has an extra NOT NULL column pdconnect never fills: every insert is refused."""
    if request.param == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'refusing.db'}")
    else:
        engine = request.getfixturevalue("postgres_engine")
    name = unique_table("pdc_refuse")
    template = SqlIntegrationStore(engine, table_name=name, create_tables=False)
    table = template.table.to_metadata(sa.MetaData())
    table.append_column(sa.Column("tenant_region", sa.String(8), nullable=False))
    table.create(engine)
    yield SqlIntegrationStore(engine, table_name=name)
    table.drop(engine)


def _app_with_store(tmp_path: Path, sandbox: PagerDutySandbox, store: SqlIntegrationStore) -> Flask:
    from flask import redirect, render_template_string, session

    from pdconnect.flask import PagerDutyConnect
    from tests.test_flask import APP_ID, CALLBACK, PAGE

    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        SECRET_KEY="flask-test-secret-0123456789abcdef",
        PDCONNECT_APP_ID=APP_ID,
        PDCONNECT_INSTALL_BASE_URL=sandbox.url,
        PDCONNECT_EVENTS_BASE_URL=sandbox.url,
    )
    PagerDutyConnect(app, store=store, owner_loader=lambda: session.get("user"))
    app.add_url_rule("/", "home", lambda: render_template_string(PAGE))
    app.add_url_rule("/login/<name>", "login", lambda name: (session.update(user=name), redirect("/"))[1])
    sandbox.register_app(APP_ID, [CALLBACK])
    return app


def test_a_pasted_key_the_table_refuses_is_a_400_not_a_500(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, refusing_store: SqlIntegrationStore
) -> None:
    client = _client(_app_with_store(tmp_path, pagerduty_sandbox, refusing_store))
    as_json = _paste(client, SERVICE_KEY)
    assert as_json.status_code == 400
    assert as_json.json["error"]["type"] == "InvalidData"  # type: ignore[index]
    page = client.post(
        "/pagerduty/integrations", data={"integration_key": SERVICE_KEY, "pdconnect_csrf": _csrf(client)}
    )
    assert page.status_code == 400
    assert "That could not be used" in page.get_data(as_text=True)
    for response in (as_json, page):
        assert SERVICE_KEY not in response.get_data(as_text=True)


def test_an_install_the_table_refuses_is_an_error_page_not_a_500(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, refusing_store: SqlIntegrationStore
) -> None:
    client = _client(_app_with_store(tmp_path, pagerduty_sandbox, refusing_store))
    response = client.get(_path(pagerduty_sandbox.install(_start(client, "install"))))
    assert response.status_code == 303
    page = client.get(response.headers["Location"])
    assert page.status_code == 400
    assert "That could not be used" in page.get_data(as_text=True)


class RefusesDatabase(MemoryIntegrationStore):
    """A store whose table cannot hold one service (as a too-long value or a constraint would)."""

    def save(self, integration: Integration) -> StoredIntegration:
        if integration.service_name == "Database":
            raise InvalidData("the database refused this integration's values")
        return super().save(integration)


def test_one_service_the_table_refuses_loses_none_of_the_others(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox
) -> None:
    from flask import session

    from pdconnect.flask import PagerDutyConnect
    from tests.test_flask import APP_ID, CALLBACK, PAGE

    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        SECRET_KEY="flask-test-secret-0123456789abcdef",
        PDCONNECT_APP_ID=APP_ID,
        PDCONNECT_INSTALL_BASE_URL=pagerduty_sandbox.url,
    )
    store = RefusesDatabase()
    PagerDutyConnect(app, store=store, owner_loader=lambda: session.get("user"))
    app.add_url_rule("/", "home", lambda: __import__("flask").render_template_string(PAGE))
    app.add_url_rule("/login/<name>", "login", lambda name: (session.update(user=name), "in")[1])
    pagerduty_sandbox.register_app(APP_ID, [CALLBACK])
    client = _client(app)
    callback = pagerduty_sandbox.install(_start(client, "install"), services=["Database", "Checkout API"])
    response = client.get(_path(callback))
    assert response.status_code == 302
    assert [i.service_name for i in store.list("alice")] == ["Checkout API"]
    assert _flashes(client) == [
        "PagerDuty sent something unusable for Database, so it was not connected. Connect it again.",
        "Connected to PagerDuty: Checkout API.",
    ]


def test_an_owner_id_too_long_for_its_column_is_a_400(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> None:
    app = make_app(tmp_path, pagerduty_sandbox)
    response = _paste(_client(app, "o" * 300), SERVICE_KEY)
    assert response.status_code == 400
    assert response.json["error"]["type"] == "InvalidData"  # type: ignore[index]


# -- defect 3: the Test button on a key PagerDuty deleted or disabled ------------------------


@pytest.mark.parametrize("how", ["disable", "delete"])
def test_the_test_button_marks_a_dead_key_broken_signals_once_and_says_reconnect(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, how: str
) -> None:
    app = make_app(tmp_path, pagerduty_sandbox)
    client = _client(app)
    key = pagerduty_sandbox.service_key("Database")
    integration_id = _paste(client, key, service_name="Database").json["integration"]["id"]
    getattr(pagerduty_sandbox, f"{how}_key")(key)
    announced: list[tuple[StoredIntegration, str]] = []

    def receiver(sender: Flask, integration: StoredIntegration, owner_id: str) -> None:
        announced.append((integration, owner_id))

    with integration_broken.connected_to(receiver, app):
        response = client.post(f"/pagerduty/integrations/{integration_id}/test", data={"pdconnect_csrf": _csrf(client)})
        assert response.status_code == 302
        (flash,) = _flashes(client)
        again = client.post(
            f"/pagerduty/integrations/{integration_id}/test",
            headers={"X-PDConnect-CSRF": _csrf(client), "Accept": "application/json"},
        )
    assert "Invalid routing key" in flash
    assert "reconnect Database" in flash
    assert key not in flash
    assert again.status_code == 502
    assert again.json["broken"] is True and again.json["reconnect"] is True  # type: ignore[index]
    assert len(announced) == 1, "the signal fires once, for the call that marked it"
    record, owner = announced[0]
    assert owner == "alice" and record.id == integration_id and record.broken
    assert "Invalid routing key" in (record.broken_reason or "")
    with app.app_context():
        (broken,) = current_pagerduty().store.broken("alice")
    assert broken.id == integration_id


# -- defect 4: secret rotation (a list for PDCONNECT_SECRET, Flask's SECRET_KEY_FALLBACKS) ------

OLD = "the-old-secret-0123456789abcdef"
NEW = "the-new-secret-0123456789abcdef"


def _rotated_app(path: Path, sandbox: PagerDutySandbox, **config: Any) -> Flask:
    """``make_app`` with this test's ``SECRET_KEY`` (and fallbacks) instead of its own."""
    from flask import redirect, render_template_string, session

    from pdconnect.flask import PagerDutyConnect
    from tests.test_flask import APP_ID, CALLBACK, PAGE

    sandbox.register_app(APP_ID, [CALLBACK])
    app = Flask(__name__, instance_path=str(path / "instance"))

    app.config.update(PDCONNECT_APP_ID=APP_ID, PDCONNECT_INSTALL_BASE_URL=sandbox.url, **config)
    PagerDutyConnect(app, owner_loader=lambda: session.get("user"), clock=FakeClock())
    app.add_url_rule("/", "home", lambda: render_template_string(PAGE))
    app.add_url_rule("/login/<name>", "login", lambda name: (session.update(user=name), redirect("/"))[1])
    return app


def _carry_session(source: FlaskClient, target: FlaskClient) -> None:
    cookie = source.get_cookie("session")
    assert cookie is not None
    target.set_cookie("session", cookie.value)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({"PDCONNECT_SECRET": OLD}, {"PDCONNECT_SECRET": [NEW, OLD]}),
        ({"PDCONNECT_SECRET": OLD}, {"PDCONNECT_SECRET": (NEW, OLD)}),
        ({"SECRET_KEY": OLD}, {"SECRET_KEY": NEW, "SECRET_KEY_FALLBACKS": [OLD]}),
    ],
    ids=["list", "tuple", "flask-fallbacks"],
)
def test_a_state_and_a_form_token_signed_before_a_rotation_still_verify(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, before: dict[str, Any], after: dict[str, Any]
) -> None:
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    session_keys = {"SECRET_KEY": OLD, "SECRET_KEY_FALLBACKS": [OLD]}
    old_app = _rotated_app(
        tmp_path / "a", pagerduty_sandbox, PDCONNECT_STORAGE_URL=storage, **{**session_keys, **before}
    )
    new_app = _rotated_app(
        tmp_path / "b", pagerduty_sandbox, PDCONNECT_STORAGE_URL=storage, **{**session_keys, **after}
    )
    old_client = _client(old_app)
    callback = pagerduty_sandbox.install(_start(old_client, "install"))
    token = _csrf(old_client)
    new_client = new_app.test_client()
    _carry_session(old_client, new_client)
    assert new_client.get(_path(callback)).status_code == 302, "a state signed with the old secret"
    pasted = new_client.post("/pagerduty/integrations", data={"integration_key": SERVICE_KEY, "pdconnect_csrf": token})
    assert pasted.status_code == 302, "a form token signed with the old secret"


def test_the_first_secret_of_a_list_signs(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> None:
    app = make_app(tmp_path, pagerduty_sandbox, PDCONNECT_SECRET=[NEW, OLD])
    binding = new_session_binding()
    token = app.extensions["pdconnect"].handshake.states.issue(
        owner_id="alice", session_binding=binding, flow=Origin.INSTALL
    )
    StateManager(NEW, clock=FakeClock()).verify(token, session_binding=binding)
    with pytest.raises(StateInvalid):
        StateManager(OLD, clock=FakeClock()).verify(token, session_binding=binding)


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        ({"PDCONNECT_SECRET": []}, "PDCONNECT_SECRET"),
        ({"PDCONNECT_SECRET": ["short"]}, "PDCONNECT_SECRET"),
        ({"PDCONNECT_SECRET": [NEW, "short"]}, "PDCONNECT_SECRET"),
        ({"PDCONNECT_SECRET": [NEW, None]}, "PDCONNECT_SECRET"),
        ({"PDCONNECT_SECRET": [NEW, 12345678901234567]}, "PDCONNECT_SECRET"),
        ({"PDCONNECT_SECRET": {NEW}}, "PDCONNECT_SECRET"),
        ({"PDCONNECT_SECRET": [NEW, "\ud800" * 20]}, "PDCONNECT_SECRET"),
        ({"PDCONNECT_SECRET": 42}, "PDCONNECT_SECRET"),
        ({"SECRET_KEY_FALLBACKS": ["short"]}, "SECRET_KEY_FALLBACKS"),
        ({"SECRET_KEY_FALLBACKS": [None]}, "SECRET_KEY_FALLBACKS"),
        ({"SECRET_KEY_FALLBACKS": 5}, "SECRET_KEY_FALLBACKS"),
    ],
)
def test_hostile_secrets_are_a_config_error_that_never_shows_them(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, config: dict[str, Any], setting: str
) -> None:
    with pytest.raises(ConfigError) as info:
        make_app(tmp_path, pagerduty_sandbox, **config)
    assert info.value.setting == setting
    assert NEW not in str(info.value) and "short" not in str(info.value)


@_fixtures
@given(secrets=st.lists(st.text(min_size=16, max_size=40) | st.binary(min_size=16, max_size=40), max_size=4))
def test_any_list_of_long_enough_secrets_rotates(
    tmp_path_factory: pytest.TempPathFactory, pagerduty_sandbox: PagerDutySandbox, secrets: list[Any]
) -> None:
    """Whichever secret of the list signed a state, the app verifies it; an empty list is refused."""
    tmp = tmp_path_factory.mktemp("rot")
    if not secrets:
        with pytest.raises(ConfigError):
            make_app(tmp, pagerduty_sandbox, PDCONNECT_SECRET=secrets)
        return
    app = make_app(tmp, pagerduty_sandbox, PDCONNECT_SECRET=secrets, PDCONNECT_STORAGE_URL="sqlite://")
    states = app.extensions["pdconnect"].handshake.states
    for secret in secrets:
        binding = new_session_binding()
        token = StateManager(secret, nonce_store=MemoryNonceStore(), clock=FakeClock()).issue(
            owner_id="alice", session_binding=binding, flow=Origin.INSTALL
        )
        assert states.verify(token, session_binding=binding).owner_id == "alice"


# -- defect 5: the SQL nonce store ran on the real clock, the states on the injected one ------


def test_the_nonce_store_keeps_time_with_the_handshake(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> None:
    """With a clock years behind, the real clock purged a used nonce at once: the callback replayed."""
    clock = FakeClock(start=1_000_000_000.0)
    app = make_app(tmp_path, pagerduty_sandbox, clock)
    client = _client(app)
    callback = _path(pagerduty_sandbox.install(_start(client, "install")))
    assert client.get(callback).status_code == 302
    nonces = app.extensions["pdconnect"].handshake.states.nonce_store
    for n in range(64):  # the SQL store purges expired nonces every 64th use
        nonces.consume(f"filler-{n}", expires_at=clock() + 3600)
    replay = client.get(callback)
    assert replay.status_code == 303
    assert "This link was already used" in client.get(replay.headers["Location"]).get_data(as_text=True)


# -- defect 6: allowed-host entries that can never match were accepted ------------------------

NEVER_MATCH = [
    "https://acme.example",
    "acme.example/path",
    "acme.example:99999",
    "acme.example:0",
    "acme.example:",
    "acme example",
    "*",
    "*.acme.example",
    "[::1",
    "[not-an-address]",
    ".",
    "a..b.example",
    "-acme.example",
    "acme-.example",
    "x" * 64 + ".example",
    "acmé.example",
    "acme.example\n",
    "user@acme.example",
    "my_host.internal",  # Werkzeug empties a Host with an underscore
]


@pytest.mark.parametrize("entry", NEVER_MATCH)
def test_an_allowed_host_that_can_never_match_is_refused_by_name(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, entry: str
) -> None:
    with pytest.raises(ConfigError) as info:
        make_app(tmp_path, pagerduty_sandbox, PDCONNECT_ALLOWED_HOSTS=["localhost", entry])
    assert info.value.setting == "PDCONNECT_ALLOWED_HOSTS"
    assert "PDCONNECT_ALLOWED_HOSTS[1]" in str(info.value)
    assert repr(entry[:100]) in str(info.value)


@pytest.mark.parametrize("value", [[""], ["localhost", ""], ["  "], [" localhost"], "localhost,,::1", "localhost,"])
def test_an_empty_or_padded_entry_is_refused_not_dropped(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, value: Any
) -> None:
    with pytest.raises(ConfigError, match="PDCONNECT_ALLOWED_HOSTS"):
        make_app(tmp_path, pagerduty_sandbox, PDCONNECT_ALLOWED_HOSTS=value)


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("localhost, 127.0.0.1, ::1", ("localhost", "127.0.0.1", "::1")),
        (["[::1]:8443", "Monitoring.Acme.Example."], ("[::1]:8443", "monitoring.acme.example")),
        (["internal-host:8080"], ("internal-host:8080",)),
        ("", ()),
        (None, ()),
        ([], ()),
    ],
)
def test_good_allowed_hosts_are_kept(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, value: Any, kept: tuple[str, ...]
) -> None:
    app = make_app(tmp_path, pagerduty_sandbox, PDCONNECT_ALLOWED_HOSTS=value)
    assert app.config["PDCONNECT_ALLOWED_HOSTS"] == kept


_HOST_APP = Flask("hosts")


@given(entry=st.text(max_size=40) | st.from_regex(r"[a-z0-9.:\[\]_-]{1,30}", fullmatch=True))
def test_every_accepted_allowed_host_matches_a_request_for_it(entry: str) -> None:
    """An entry is refused with a ConfigError, or a request whose Host is that entry is trusted."""
    try:
        (kept,) = _allowed_hosts([entry])
    except ConfigError as exc:
        refused: ConfigError | None = exc
    else:
        refused = None
    if refused is not None:
        assert refused.setting == "PDCONNECT_ALLOWED_HOSTS"
        return
    name, port = _split_host(kept)  # type: ignore[misc]
    host = f"[{name}]" if ":" in name else name
    host += f":{port}" if port is not None else ":443"
    _HOST_APP.config["PDCONNECT_ALLOWED_HOSTS"] = (kept,)
    with _HOST_APP.test_request_context("/", headers={"Host": host}):
        assert trusted_host() == host


# -- defect 7: a failed callback's page was shown at the URL that carries the keys -------------


def _failing_callback(how: str, client: FlaskClient, sandbox: PagerDutySandbox, clock: FakeClock) -> str:
    config = json.dumps({"integration_keys": [{"integration_key": SERVICE_KEY, "name": "Billing"}]})
    if how == "forged":
        return "/pagerduty/callback?" + urlencode({"state": "forged", "config": config})
    if how == "connect-forged":
        return "/pagerduty/callback/forged?" + urlencode({"service_key": SERVICE_KEY, "service_name": "Billing"})
    callback = _path(sandbox.install(_start(client, "install")))
    if how == "replayed":
        assert client.get(callback).status_code == 302
    elif how == "expired":
        clock.advance(3600)
    elif how == "other-owner":
        client.get("/login/mallory")
    elif how == "bad-entry":
        state = re.search(r"state=([^&]+)", callback)
        assert state
        bad = json.dumps({"integration_keys": [{"integration_key": "not-a-key", "name": SERVICE_KEY}]})
        return f"/pagerduty/callback?state={state.group(1)}&config={bad}&service_key={SERVICE_KEY}"
    return callback + f"&service_key={SERVICE_KEY}"


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("forged", "This link is not valid"),
        ("connect-forged", "This link is not valid"),
        ("replayed", "This link was already used"),
        ("expired", "The link expired"),
        ("other-owner", "This link belongs to another account"),
        ("bad-entry", "PagerDuty"),
    ],
)
def test_a_failed_callback_redirects_to_a_clean_url_and_shows_its_error_there_once(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, how: str, expected: str
) -> None:
    clock = FakeClock(start=__import__("time").time())
    app = make_app(tmp_path, pagerduty_sandbox, clock)
    client = _client(app)
    url = _failing_callback(how, client, pagerduty_sandbox, clock)
    assert SERVICE_KEY in url
    response = client.get(url)
    assert response.status_code in (302, 303), response.get_data(as_text=True)
    assert SERVICE_KEY not in response.headers["Location"]
    assert "?" not in response.headers["Location"]
    assert response.headers["Cache-Control"] == "no-store"
    cookie = client.get_cookie("session")
    assert cookie is not None and SERVICE_KEY not in cookie.value
    page = client.get(response.headers["Location"])
    text = page.get_data(as_text=True)
    assert expected in text
    assert SERVICE_KEY not in text
    if response.status_code == 303:
        assert page.status_code == 400
        assert page.headers["Cache-Control"] == "no-store"
        again = client.get(response.headers["Location"])
        assert again.status_code == 302, "the page is shown once; a reload goes back to the app"
        assert expected not in again.get_data(as_text=True)


def test_a_failed_signal_receiver_still_takes_over(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> None:
    from flask import redirect

    app = make_app(tmp_path, pagerduty_sandbox)
    client = _client(app)
    with failed.connected_to(lambda sender, error: redirect("/oops"), app):
        response = client.get(f"/pagerduty/callback?state=forged&service_key={SERVICE_KEY}")
    assert response.headers["Location"] == "/oops"


def test_the_problem_page_without_a_problem_goes_back(client_app: FlaskClient) -> None:
    response = client_app.get("/pagerduty/problem")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"


@pytest.fixture
def client_app(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> FlaskClient:
    return _client(make_app(tmp_path, pagerduty_sandbox))


@_fixtures
@given(
    query=st.dictionaries(st.sampled_from(["state", "config", "service_name", "account", "x"]), st.text(max_size=40))
)
def test_no_failed_callback_leaves_a_key_in_a_url_or_a_page(client_app: FlaskClient, query: dict[str, str]) -> None:
    response = client_app.get("/pagerduty/callback?" + urlencode({**query, "service_key": SERVICE_KEY}))
    assert response.status_code in (302, 303, 400)
    assert SERVICE_KEY not in response.headers.get("Location", "")
    assert SERVICE_KEY not in response.get_data(as_text=True)
    if response.status_code == 303:
        assert SERVICE_KEY not in client_app.get(response.headers["Location"]).get_data(as_text=True)


# -- defect 8: the webhook receiver's maximum event age could not be configured -----------------

BAD_AGES: list[Any] = ["nan", "NaN", "inf", "-inf", math.nan, math.inf, 0, 0.0, -1, "0", "-5", KEEP_FOR + 1]
BAD_AGES += ["", "abc", "1e999", True, None, [], "72h"]


@pytest.mark.parametrize("value", BAD_AGES, ids=repr)
def test_a_bad_max_event_age_is_a_config_error(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        make_app(tmp_path, pagerduty_sandbox, PDCONNECT_WEBHOOK_MAX_EVENT_AGE=value)
    assert info.value.setting == "PDCONNECT_WEBHOOK_MAX_EVENT_AGE"


@pytest.mark.parametrize(("value", "seconds"), [(3600, 3600.0), ("3600", 3600.0), (" 1.5 ", 1.5), (KEEP_FOR, KEEP_FOR)])
def test_a_good_max_event_age_reaches_the_receiver(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, value: Any, seconds: float
) -> None:
    app = make_app(tmp_path, pagerduty_sandbox, PDCONNECT_WEBHOOK_MAX_EVENT_AGE=value)
    assert app.extensions["pdconnect"].webhooks.max_event_age == seconds


def test_the_default_max_event_age_is_72_hours(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> None:
    assert make_app(tmp_path, pagerduty_sandbox).extensions["pdconnect"].webhooks.max_event_age == 72 * 3600


@_fixtures
@given(value=st.floats(allow_nan=True, allow_infinity=True) | st.integers())
def test_any_number_is_refused_or_kept_within_range(
    tmp_path_factory: pytest.TempPathFactory, pagerduty_sandbox: PagerDutySandbox, value: float
) -> None:
    tmp = tmp_path_factory.mktemp("age")
    try:
        app = make_app(tmp, pagerduty_sandbox, PDCONNECT_WEBHOOK_MAX_EVENT_AGE=value, PDCONNECT_STORAGE_URL="sqlite://")
    except ConfigError:
        assert not (isinstance(value, float) and math.isfinite(value) and 0 < value <= KEEP_FOR) and not (
            isinstance(value, int) and 0 < value <= KEEP_FOR
        )
        return
    kept = app.extensions["pdconnect"].webhooks.max_event_age
    assert math.isfinite(kept) and 0 < kept <= KEEP_FOR


def test_an_event_older_than_the_configured_age_is_refused(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> None:
    app = make_app(
        tmp_path, pagerduty_sandbox, PDCONNECT_WEBHOOK_SECRETS=[samples.SECRET], PDCONNECT_WEBHOOK_MAX_EVENT_AGE=3600
    )
    client = app.test_client()

    def post(age: timedelta, event_id: str) -> Any:
        at = (datetime.now(UTC) - age).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        body = samples.encode(samples.v3(occurred_at=at, event_id=event_id))
        headers = {"X-PagerDuty-Signature": sign(samples.SECRET, body), "Content-Type": "application/json"}
        return client.post("/pagerduty/webhook", data=body, headers=headers)

    old = post(timedelta(hours=2), "01OLD0000000000000000000000")
    assert old.status_code == 400
    assert "hours ago" in old.json["error"]["message"]  # type: ignore[index]
    assert post(timedelta(minutes=5), "01NEW0000000000000000000000").status_code == 202


# -- a handshake made by hand still works with the extension's pieces (no regression) --------


def test_a_plain_handshake_is_unaffected() -> None:
    Handshake(secret=NEW, app_id="P1", nonce_store=MemoryNonceStore())
