"""Acme against a forgotten key, a forged Host header and pdconnect's Alertmanager hook.

A key PagerDuty deleted reaches Acme's owner (signal, dashboard, settings) after a real
delivery to the sandbox; the Alertmanager receiver URL Acme shows is never the Host header's
choice; Acme's Alertmanager tokens reach pdconnect's route through its hook, unrewritten.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import TestResponse

from example_app.demo import RunningDemo, start_acme
from pdconnect.flask import alertmanager_views
from pdconnect.flask.signals import integration_broken
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.example_app.test_app import first_integration, monitor_ids, owner_id, paste, signed_in, token

FIRING = (Path(__file__).parent.parent / "data" / "alertmanager" / "firing.json").read_bytes()
_TOKEN = re.compile(r"data-alertmanager-token>([^<]+)</code>")
_RECEIVER = re.compile(r"- url: (\S+)")


# -- a key PagerDuty deleted ------------------------------------------------------------------


def test_a_deleted_key_fires_the_signal_and_asks_to_reconnect(
    acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox
) -> None:
    client = signed_in(acme, "alice")
    key = pagerduty_sandbox.service_key("Database")
    paste(client, key, "Database on-call")
    monitor_id = monitor_ids(acme, "alice")[0]
    client.post(
        f"/monitors/{monitor_id}/targets", data={"targets": first_integration(acme), "pdconnect_csrf": token(client)}
    )
    pagerduty_sandbox.delete_key(key)
    client.post(f"/monitors/{monitor_id}/simulate", data={"mode": "fail", "pdconnect_csrf": token(client)})
    fired: list[dict[str, Any]] = []

    def receiver(sender: flask.Flask, **kwargs: Any) -> None:
        fired.append(kwargs)

    with integration_broken.connected_to(receiver, acme.app):
        acme.app.extensions["acme_worker"].run(until_empty=True)
    assert len(fired) == 1, "the worker announces a broken integration once"
    assert fired[0]["owner_id"] == owner_id(acme, "alice")
    assert fired[0]["integration"].id == first_integration(acme) and fired[0]["integration"].broken
    settings_page = client.get("/settings/pagerduty").get_data(as_text=True)
    assert "data-broken" in settings_page and "data-reconnect-link" in settings_page
    assert settings_page.count("no longer knows") == 1, "the reason is said once, not wrapped in itself"
    dashboard = client.get("/").get_data(as_text=True)
    assert "data-reconnect" in dashboard and "/settings/pagerduty" in dashboard
    assert key not in settings_page + dashboard


def test_a_working_key_shows_no_reconnect(acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox) -> None:
    client = signed_in(acme, "alice")
    paste(client, pagerduty_sandbox.service_key(), "On-call")
    assert "data-reconnect" not in client.get("/").get_data(as_text=True)


# -- the Alertmanager receiver URL under a forged Host -----------------------------------------

HOSTILE_HOSTS = [
    "evil.example",
    "evil.example:80",
    "EVIL.example",
    "127.0.0.1.evil.example",
    "localhost.evil.example",
    "127.evil.example",
    "localhost@evil.example",
    "evil.example#@localhost",
    "evil.example\\@localhost",
    "[::1].evil.example",
    "0x7f000001",
    "2130706433",
    "localhost:80@evil.example",
    "xn--lcalhost-0za",
    "loca\u0131host",
    "evil.example/localhost",
    "",
    " ",
]


@pytest.fixture
def acme_by_host(pagerduty_sandbox: PagerDutySandbox, tmp_path: Path) -> Iterator[RunningDemo]:
    """Acme with no callback URL (an empty one): hosts come from ``PDCONNECT_ALLOWED_HOSTS`` alone."""
    running = start_acme(
        pagerduty_sandbox.server,
        database_url=f"sqlite:///{tmp_path / 'acme.db'}",
        scheduler=False,
        worker=False,
        extra={"PDCONNECT_CALLBACK_URL": ""},
    )
    yield running
    running.stop()


def _settings_page(acme: RunningDemo, host: str, **headers: str) -> TestResponse:
    client = signed_in(acme, "alice")
    cookie = client.get_cookie("session")
    assert cookie is not None
    # The test client sends cookies by the Host it is given: the owner's browser sends them to
    # whatever address the page was opened at, so send the session whatever the Host.
    environ = {"HTTP_HOST": host.encode("utf-8").decode("latin-1"), "HTTP_COOKIE": f"session={cookie.value}"}
    return acme.app.test_client(use_cookies=False).get(
        "/settings/pagerduty", environ_overrides=environ, headers=headers
    )


@pytest.mark.parametrize("host", HOSTILE_HOSTS)
def test_a_forged_host_never_becomes_the_receiver_url(acme_by_host: RunningDemo, host: str) -> None:
    response = _settings_page(acme_by_host, host)
    page = response.get_data(as_text=True)
    assert response.status_code == 400, page
    assert "evil" not in page.lower() and "webhook_configs" not in page


@pytest.mark.parametrize("host", HOSTILE_HOSTS)
def test_with_acme_base_url_a_forged_host_gets_the_configured_receiver_url(acme: RunningDemo, host: str) -> None:
    """The demo sets ACME_BASE_URL, so its callback URL (and the receiver's host) come from it."""
    response = _settings_page(acme, host)
    page = response.get_data(as_text=True)
    assert response.status_code == 200, page
    found = _RECEIVER.search(page)
    assert found and found.group(1) == f"{acme.url}/pagerduty/alertmanager"
    assert "evil" not in page.lower()


@pytest.mark.parametrize("forwarded", ["evil.example", "evil.example:443", "localhost, evil.example"])
def test_a_forwarded_host_is_not_trusted(acme_by_host: RunningDemo, forwarded: str) -> None:
    response = _settings_page(acme_by_host, "localhost", **{"X-Forwarded-Host": forwarded})
    assert response.status_code == 200
    found = _RECEIVER.search(response.get_data(as_text=True))
    assert found and found.group(1) == "http://localhost/pagerduty/alertmanager"


@pytest.fixture
def acme_configured(pagerduty_sandbox: PagerDutySandbox, tmp_path: Path) -> Iterator[RunningDemo]:
    """Acme with its public address configured, as in production."""
    running = start_acme(
        pagerduty_sandbox.server,
        database_url=f"sqlite:///{tmp_path / 'acme.db'}",
        scheduler=False,
        worker=False,
        extra={"PDCONNECT_CALLBACK_URL": "https://monitoring.acme.example/pagerduty/callback"},
    )
    yield running
    running.stop()


@pytest.mark.parametrize("host", ["localhost", *HOSTILE_HOSTS])
def test_a_configured_address_is_shown_whatever_the_host(acme_configured: RunningDemo, host: str) -> None:
    response = _settings_page(acme_configured, host, **{"X-Forwarded-Host": "evil.example"})
    assert response.status_code == 200
    found = _RECEIVER.search(response.get_data(as_text=True))
    assert found and found.group(1) == "https://monitoring.acme.example/pagerduty/alertmanager"


_LOOPBACK = {"localhost", "127.0.0.1", "[::1]"}


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    host=st.one_of(
        st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
        st.sampled_from(sorted(_LOOPBACK)).flatmap(
            lambda h: st.text(alphabet="evil.:@#/\\[]0123456789x", max_size=12).map(lambda tail: h + tail)
        ),
    )
)
def test_the_receiver_url_is_on_an_allowed_host_or_not_shown(acme: RunningDemo, host: str) -> None:
    response = _settings_page(acme, host)
    assert response.status_code in (200, 400)
    found = _RECEIVER.search(response.get_data(as_text=True))
    if response.status_code == 400:
        assert found is None
        return
    assert found
    shown = re.fullmatch(r"http://([^/]+)/pagerduty/alertmanager", found.group(1))
    assert shown, found.group(1)
    name = shown.group(1).lower()
    name = name if name.startswith("[") else name.rsplit(":", 1)[0] if ":" in name else name
    assert name.rstrip(".") in _LOOPBACK or name.rsplit(":", 1)[0] in _LOOPBACK


# -- Acme's tokens through pdconnect's hook ----------------------------------------------------


def _queued(acme: RunningDemo) -> int:
    engine: sa.Engine = acme.app.extensions["acme_engine"]
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM pdconnect_outbox")).scalar_one())


def test_pdconnects_route_is_not_wrapped_and_sees_the_header_sent(
    acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox
) -> None:
    assert acme.app.view_functions["pdconnect.alertmanager"] is alertmanager_views.alertmanager
    assert callable(acme.app.config["PDCONNECT_ALERTMANAGER_AUTHENTICATE"])
    client = signed_in(acme, "alice")
    paste(client, pagerduty_sandbox.service_key(), "On-call")
    page = client.post("/settings/alertmanager-token", data={"pdconnect_csrf": token(client)}).get_data(as_text=True)
    found = _TOKEN.search(page)
    assert found
    seen: list[str | None] = []

    def record(sender: flask.Flask, **kwargs: Any) -> None:
        seen.append(flask.request.headers.get("Authorization"))

    with flask.request_finished.connected_to(record, acme.app):
        response = acme.app.test_client().post(
            "/pagerduty/alertmanager", data=FIRING, headers={"Authorization": f"Bearer {found.group(1)}"}
        )
    assert response.status_code == 202 and _queued(acme) == 1
    assert seen == [f"Bearer {found.group(1)}"], "the request reaches pdconnect as it was sent"


def test_the_token_table_down_is_a_503_without_the_token(
    acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox, caplog: pytest.LogCaptureFixture
) -> None:
    client = signed_in(acme, "alice")
    page = client.post("/settings/alertmanager-token", data={"pdconnect_csrf": token(client)}).get_data(as_text=True)
    found = _TOKEN.search(page)
    assert found
    engine: sa.Engine = acme.app.extensions["acme_engine"]
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE acme_alertmanager_tokens"))
    with caplog.at_level("DEBUG"):
        response = acme.app.test_client().post(
            "/pagerduty/alertmanager", data=FIRING, headers={"Authorization": f"Bearer {found.group(1)}"}
        )
    assert response.status_code == 503 and response.is_json
    secret = found.group(1).split(".")[1]
    assert all(secret not in record.getMessage() for record in caplog.records)
