"""The Flask extension's Alertmanager route: owners' tokens, their integrations, refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect.flask import alertmanager_token, current_pagerduty
from pdconnect.outbox import body_json
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.conftest import OTHER_SERVICE_KEY, SERVICE_KEY
from tests.test_flask import make_app

DATA = Path(__file__).parent / "data" / "alertmanager"
FIRING = (DATA / "firing.json").read_bytes()


@pytest.fixture
def app(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> Flask:
    made = make_app(tmp_path, pagerduty_sandbox, PDCONNECT_ALERTMANAGER_MAX_BYTES=64 * 1024)
    with made.test_request_context("/"):
        store = current_pagerduty().store
        from pdconnect import integration_from_key

        store.save(integration_from_key(SERVICE_KEY, owner_id="alice", service_name="Checkout"))
        store.save(integration_from_key(OTHER_SERVICE_KEY, owner_id="alice", service_name="Database"))
    return made


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def token(app: Flask, owner: str = "alice") -> str:
    with app.test_request_context("/"):
        return alertmanager_token(owner)


def post(client: FlaskClient, body: bytes, bearer: str | None, query: str = "") -> Any:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    return client.post("/pagerduty/alertmanager" + query, data=body, headers=headers, content_type="application/json")


def test_a_group_goes_to_every_integration_of_the_owner(app: Flask, client: FlaskClient) -> None:
    response = post(client, FIRING, token(app))
    assert response.status_code == 202
    assert response.json["action"] == "trigger" and response.json["enqueued"] == 2
    with app.test_request_context("/"):
        claimed = current_pagerduty().outbox.claim("w", 10, lease=60)
        assert sorted(e.routing_key for e in claimed) == sorted([SERVICE_KEY, OTHER_SERVICE_KEY])
        assert {e.owner_id for e in claimed} == {"alice"}
        assert body_json(claimed[0])["payload"]["summary"] == "[CRITICAL] [FIRING:2] prod HighLatency"
        assert body_json(claimed[0])["client"] == "Acme Monitoring"


def test_one_integration_by_id(app: Flask, client: FlaskClient) -> None:
    with app.test_request_context("/"):
        first = current_pagerduty().store.list("alice")[0]
    assert post(client, FIRING, token(app), f"?integration={first.id}").json["enqueued"] == 1
    assert post(client, FIRING, token(app), "?integration=nope").status_code == 404


def test_an_owner_without_integrations(app: Flask, client: FlaskClient) -> None:
    response = post(client, FIRING, token(app, "bob"))
    assert response.status_code == 202 and response.json["enqueued"] == 0


def test_tokens_belong_to_one_owner_and_one_app(
    app: Flask, tmp_path: Path, pagerduty_sandbox: PagerDutySandbox
) -> None:
    assert token(app, "alice") != token(app, "bob")
    other = make_app(tmp_path / "other", pagerduty_sandbox, PDCONNECT_SECRET="another-app-secret-0123456789abcdef")
    assert post(other.test_client(), FIRING, token(app)).status_code == 401


@pytest.mark.parametrize(
    ("body", "bearer", "status", "error"),
    [
        (FIRING, None, 401, "Unauthorized"),
        (FIRING, "", 401, "Unauthorized"),
        (FIRING, "forged.token", 401, "Unauthorized"),
        (b"{}", "VALID", 400, "PayloadInvalid"),
        (b"not json", "VALID", 400, "PayloadInvalid"),
        (json.dumps({**json.loads(FIRING), "version": "3"}).encode(), "VALID", 400, "PayloadInvalid"),
        (b"x" * (65 * 1024), "VALID", 413, "PayloadTooLarge"),
    ],
)
def test_refusals(app: Flask, client: FlaskClient, body: bytes, bearer: str | None, status: int, error: str) -> None:
    response = post(client, body, token(app) if bearer == "VALID" else bearer)
    assert response.status_code == status and response.json["error"]["type"] == error


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.binary(max_size=400),
    bearer=st.none() | st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=40),
)
def test_anything_gets_a_4xx_or_202(client: FlaskClient, body: bytes, bearer: str | None) -> None:
    response = post(client, body, bearer)
    assert response.status_code == 202 or 400 <= response.status_code < 500
    assert response.is_json
