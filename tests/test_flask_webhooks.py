"""The Flask extension's webhook route, live against the sandbox, and its refusals."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.serving import make_server

from pdconnect import Sender
from pdconnect.flask import current_pagerduty, webhook_received
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.webhooks import WebhookEvent, sign
from tests.servers import serving
from tests.test_flask import _path, make_app
from tests.webhooks import samples
from tests.webhooks.samples import SECRET, encode

LEGACY_TOKEN = "legacy-token-0123456789"


class LiveApp:
    """A Flask app served on loopback, so the sandbox can deliver webhooks to it."""

    def __init__(self, app: Flask, url: str) -> None:
        self.app = app
        self.url = url
        self.client = app.test_client()
        self.client.get("/login/alice")


@pytest.fixture
def live(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> Iterator[LiveApp]:
    holder: dict[str, str] = {}
    app = make_app(
        tmp_path,
        pagerduty_sandbox,
        PDCONNECT_REST_API_TOKEN=pagerduty_sandbox.api_key(),  # the account's own key (issue 10)
        PDCONNECT_REST_API_URL=pagerduty_sandbox.url,
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    holder["url"] = f"http://127.0.0.1:{server.server_port}"
    app.config["PDCONNECT_WEBHOOK_URL"] = holder["url"] + "/pagerduty/webhook"
    with serving(server):
        yield LiveApp(app, holder["url"])


def connect_checkout(live: LiveApp, sandbox: PagerDutySandbox) -> None:
    callback = sandbox.install(live.client.get("/pagerduty/install").headers["Location"])
    assert live.client.get(_path(callback)).status_code == 302


def test_connecting_subscribes_and_incident_changes_come_back(
    live: LiveApp, pagerduty_sandbox: PagerDutySandbox
) -> None:
    received: list[WebhookEvent] = []
    lock = threading.Lock()

    def record(_app: Flask, event: WebhookEvent) -> None:
        with lock:
            received.append(event)

    webhook_received.connect(record, live.app)
    try:
        connect_checkout(live, pagerduty_sandbox)
        (subscription,) = pagerduty_sandbox.state()["webhook_subscriptions"]
        assert subscription["delivery_method"]["url"] == live.url + "/pagerduty/webhook"
        key = pagerduty_sandbox.service_key()
        with Sender(events_base_url=pagerduty_sandbox.url) as sender:
            sender.trigger(key, "Checkout is down", source="monitor", severity="critical", dedup_key="monitor/1")
        incident = pagerduty_sandbox.incident_for("monitor/1")
        pagerduty_sandbox.act(incident["id"], "acknowledge")
        deliveries = pagerduty_sandbox.wait_for_deliveries(2)
        assert [d["state"] for d in deliveries] == ["delivered", "delivered"]
        assert [e.event_type for e in received] == ["incident.triggered", "incident.acknowledged"]
        assert {e.owner_id for e in received} == {"alice"}
        with live.app.test_request_context("/"):
            pagerduty = current_pagerduty()
            state = pagerduty.incident_state("monitor/1", owner_id="alice")
            assert state is not None and state.acknowledged and state.changed_by
            assert pagerduty.incident_state("monitor/1", owner_id="bob") is None
            (integration,) = pagerduty.integrations("alice")
        token = _csrf(live.client)
        response = live.client.post(f"/pagerduty/integrations/{integration.id}/delete", data={"pdconnect_csrf": token})
        assert response.status_code == 302
        assert pagerduty_sandbox.state()["webhook_subscriptions"] == [], "disconnecting unsubscribes"
    finally:
        webhook_received.disconnect(record, live.app)


def test_a_failing_receiver_gets_the_webhook_again(live: LiveApp, pagerduty_sandbox: PagerDutySandbox) -> None:
    calls: list[str] = []

    def flaky(_app: Flask, event: WebhookEvent) -> None:
        calls.append(event.event_type)
        if len(calls) == 1:
            raise RuntimeError("the vendor's database blinked")

    webhook_received.connect(flaky, live.app)
    try:
        connect_checkout(live, pagerduty_sandbox)
        with Sender(events_base_url=pagerduty_sandbox.url) as sender:
            sender.trigger(pagerduty_sandbox.service_key(), "down", source="m", severity="error", dedup_key="m/2")
        (delivery,) = pagerduty_sandbox.wait_for_deliveries(1)
        assert delivery["state"] == "delivered"
        assert [a["status"] for a in delivery["attempts"]] == [500, 202]
        assert calls == ["incident.triggered", "incident.triggered"]
    finally:
        webhook_received.disconnect(flaky, live.app)


def test_legacy_v2_webhooks_with_the_token(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> None:
    app = make_app(tmp_path, pagerduty_sandbox, PDCONNECT_WEBHOOK_LEGACY_TOKEN=LEGACY_TOKEN)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    with serving(server):
        url = f"http://127.0.0.1:{server.server_port}/pagerduty/webhook?token={LEGACY_TOKEN}"
        pagerduty_sandbox.subscribe(url, version="v2", events=["incident.triggered", "incident.resolved"])
        with Sender(events_base_url=pagerduty_sandbox.url) as sender:
            sender.trigger(pagerduty_sandbox.service_key(), "down", source="m", severity="error", dedup_key="m/3")
            sender.resolve(pagerduty_sandbox.service_key(), "m/3")
        deliveries = pagerduty_sandbox.wait_for_deliveries(2)
    assert [d["state"] for d in deliveries] == ["delivered", "delivered"]
    with app.test_request_context("/"):
        state = current_pagerduty().incident_state("m/3", owner_id="")
    assert state is not None and state.resolved


@pytest.fixture
def client(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> FlaskClient:
    app = make_app(
        tmp_path,
        pagerduty_sandbox,
        PDCONNECT_WEBHOOK_SECRETS=f"{SECRET}, second-secret",
        PDCONNECT_WEBHOOK_LEGACY_TOKEN=LEGACY_TOKEN,
        PDCONNECT_WEBHOOK_MAX_BYTES=4096,
    )
    return app.test_client()


BODY = encode(samples.v3())


def post(client: FlaskClient, body: bytes, headers: dict[str, str] | None = None, query: str = "") -> Any:
    return client.post(
        "/pagerduty/webhook" + query, data=body, headers={"Content-Type": "application/json", **(headers or {})}
    )


def test_a_signed_webhook_with_a_configured_secret(client: FlaskClient) -> None:
    headers = {"X-PagerDuty-Signature": sign(SECRET, BODY), "X-Webhook-Id": "w-1"}
    first = post(client, BODY, headers)
    assert first.status_code == 202 and first.json == {"status": "accepted", "events": ["incident.acknowledged"]}
    second = post(client, BODY, headers)
    assert second.status_code == 200 and second.json == {"status": "duplicate"}
    # The other configured secret (PagerDuty rotating to it) verifies the same event: still once.
    other = post(client, BODY, {"X-PagerDuty-Signature": sign("second-secret", BODY), "X-Webhook-Id": "w-2"})
    assert other.status_code == 200 and other.json == {"status": "duplicate"}
    another_event = encode(samples.v3(event_id="01DEN4HPBQAPCFDGPPQGPNMAUD"))
    assert (
        post(client, another_event, {"X-PagerDuty-Signature": sign("second-secret", another_event)}).status_code == 202
    )


@pytest.mark.parametrize(
    ("body", "headers", "query", "status", "error"),
    [
        (BODY, {}, "", 400, "SignatureMissing"),
        (BODY, {"X-PagerDuty-Signature": "v1=zz"}, "", 400, "SignatureMissing"),
        (BODY, {"X-PagerDuty-Signature": sign("wrong", BODY)}, "", 403, "SignatureMismatch"),
        (b"{}", {"X-PagerDuty-Signature": sign(SECRET, b"{}")}, "", 400, "PayloadInvalid"),
        (b"", {"X-PagerDuty-Signature": sign(SECRET, b"")}, "", 400, "PayloadInvalid"),
        (b"x" * 5000, {"X-PagerDuty-Signature": sign(SECRET, b"x" * 5000)}, "", 413, "PayloadTooLarge"),
        (encode({"messages": []}), {}, "?token=wrong", 401, "Unauthorized"),
        (encode({"messages": [5]}), {}, f"?token={LEGACY_TOKEN}", 400, "PayloadInvalid"),
    ],
)
def test_refusals_are_short_json(
    client: FlaskClient, body: bytes, headers: dict[str, str], query: str, status: int, error: str
) -> None:
    response = post(client, body, headers, query)
    assert response.status_code == status
    assert response.json["error"]["type"] == error
    assert SECRET not in response.get_data(as_text=True)


def test_a_legacy_body_with_the_token(client: FlaskClient) -> None:
    body = encode({"messages": [samples.v1_message()]})
    assert post(client, body, {}, f"?token={LEGACY_TOKEN}").status_code == 202


def test_get_is_not_allowed(client: FlaskClient) -> None:
    assert client.get("/pagerduty/webhook").status_code == 405


def test_a_chunked_body_over_the_limit_is_refused(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> None:
    """A chunked body declares no length: the route reads one byte past the limit and stops."""
    app = make_app(tmp_path, pagerduty_sandbox, PDCONNECT_WEBHOOK_SECRETS=[SECRET], PDCONNECT_WEBHOOK_MAX_BYTES=4096)
    big = encode(samples.v3(data={**samples.incident_data(), "title": "t" * 5000}))
    server = make_server("127.0.0.1", 0, app, threaded=True)
    with serving(server):
        connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        connection.request(
            "POST",
            "/pagerduty/webhook",
            body=iter([big[:3000], big[3000:]]),
            headers={"X-PagerDuty-Signature": sign(SECRET, big), "Content-Type": "application/json"},
            encode_chunked=True,
        )
        response = connection.getresponse()
        answer = json.loads(response.read())
        connection.close()
    assert response.status == 413 and answer["error"]["type"] == "PayloadTooLarge"


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.binary(max_size=600)
    | st.builds(lambda v: json.dumps(v).encode(), st.dictionaries(st.text(max_size=8), st.text(max_size=8))),
    signature=st.none() | st.text(max_size=80),
    token=st.none() | st.text(max_size=30),
)
def test_any_request_gets_an_answer_never_a_500(
    client: FlaskClient, body: bytes, signature: str | None, token: str | None
) -> None:
    headers = {} if signature is None else {"X-PagerDuty-Signature": signature.replace("\n", "").replace("\r", "")}
    query = "" if token is None else "?" + __import__("urllib.parse").parse.urlencode({"token": token})
    response = post(client, body, headers, query)
    assert response.status_code in (200, 202) or 400 <= response.status_code < 500
    assert response.is_json


def _csrf(client: FlaskClient) -> str:
    page = client.get("/").get_data(as_text=True)
    return page.split('value="')[1].split('"')[0]


def test_an_unavailable_database_is_a_503_that_pagerduty_retries(client: FlaskClient) -> None:
    deliveries = client.application.extensions["pdconnect"].webhooks.deliveries
    deliveries.drop_tables()  # the stores' database has lost its tables (a restore, a bad migration)
    response = post(client, BODY, {"X-PagerDuty-Signature": sign(SECRET, BODY), "X-Webhook-Id": "w-db"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    assert response.json["error"]["type"] == "Unavailable"
