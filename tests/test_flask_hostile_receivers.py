"""The two receiving routes under attack (issue 9): ``/pagerduty/webhook`` and ``/pagerduty/alertmanager``.

Every hostile request gets a 4xx with a typed JSON error: never a 500, never a traceback,
never a secret, a signature or a bearer token in the answer or in the logs (captured at
DEBUG). A token only ever reaches its own owner's services.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect import integration_from_key
from pdconnect.flask import alertmanager_token, current_pagerduty
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.webhooks import sign
from tests.conftest import OTHER_SERVICE_KEY, SERVICE_KEY
from tests.test_flask import make_app
from tests.webhooks import samples
from tests.webhooks.samples import OTHER_SECRET, SECRET, encode

VENDOR_SECRET = "whsec-vendor-wide-secret-for-the-route-9"
FIRING = (Path(__file__).parent / "data" / "alertmanager" / "firing.json").read_bytes()
BODY = encode(samples.v3())


@pytest.fixture
def app(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> Flask:
    made = make_app(
        tmp_path,
        pagerduty_sandbox,
        PDCONNECT_WEBHOOK_SECRETS=[VENDOR_SECRET],
        PDCONNECT_WEBHOOK_MAX_BYTES=64 * 1024,
        PDCONNECT_ALERTMANAGER_MAX_BYTES=64 * 1024,
    )
    with made.test_request_context("/"):
        pagerduty = current_pagerduty()
        pagerduty.webhook_secrets.register("PSUB1", SECRET, owner_id="alice", integration_id="int-a")
        pagerduty.webhook_secrets.register("PSUB2", OTHER_SECRET, owner_id="mallory", integration_id="int-m")
        pagerduty.store.save(integration_from_key(SERVICE_KEY, owner_id="alice", service_name="Checkout"))
        pagerduty.store.save(integration_from_key(OTHER_SERVICE_KEY, owner_id="bob", service_name="Billing"))
    return made


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def hook(client: FlaskClient, body: bytes, headers: list[tuple[str, str]] | dict[str, str]) -> Any:
    return client.post("/pagerduty/webhook", data=body, headers=headers, content_type="application/json")


def secrets_in(app: Flask) -> list[str]:
    with app.test_request_context("/"):
        tokens = [alertmanager_token("alice"), alertmanager_token("bob")]
    return [SECRET, OTHER_SECRET, VENDOR_SECRET, *tokens]


def assert_clean(app: Flask, response: Any, caplog: pytest.LogCaptureFixture, body: bytes) -> None:
    """A typed JSON answer, no 5xx, and nothing secret in the answer or the logs."""
    assert response.status_code < 500, response.get_data(as_text=True)
    assert response.is_json
    if response.status_code >= 400:
        assert set(response.json["error"]) == {"type", "message"}
        assert "Traceback" not in response.get_data(as_text=True)
    shown = response.get_data(as_text=True) + caplog.text
    for secret in secrets_in(app):
        assert secret not in shown
    for signature in (sign(s, body)[3:] for s in (SECRET, OTHER_SECRET, VENDOR_SECRET)):
        assert signature not in shown


def deep(depth: int) -> bytes:
    return b'{"event": {"id": "1", "event_type": "x", "data": ' + b"[" * depth + b"]" * depth + b"}}"


HOSTILE_BODIES = [
    (b"\xff\xfe\x00garbage", "PayloadInvalid"),
    (b'{"event": {"id": "\xc3\x28"}}', "PayloadInvalid"),
    (deep(200), "PayloadInvalid"),
    (deep(30_000), "PayloadInvalid"),
    (b'{"event": {"id": "1", "event_type": "incident.triggered", "data": {"number": NaN}}}', "PayloadInvalid"),
    (b'{"event": {"id": "1", "event_type": "incident.triggered", "data": {"n": -Infinity}}}', "PayloadInvalid"),
    (b'{"event": {"id": "\\ud800", "event_type": "incident.triggered"}}', "PayloadInvalid"),
    (b'{"event": []}', "PayloadInvalid"),
    (b'{"event": {"id": 5, "event_type": "incident.triggered"}}', "PayloadInvalid"),
    (b'{"event": {"id": "1", "event_type": null}}', "PayloadInvalid"),
    (b'{"event": {"id": ["1"], "event_type": "incident.triggered"}}', "PayloadInvalid"),
    (b'{"messages": [{"id": "m", "event": "incident.trigger"}]}', "PayloadInvalid"),  # legacy, signed
    (b"[" + b"1," * 30_000 + b"1]", "PayloadInvalid"),
    (b"", "PayloadInvalid"),
]


@pytest.mark.parametrize(("body", "error"), HOSTILE_BODIES)
def test_hostile_signed_bodies_are_typed_4xx(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture, body: bytes, error: str
) -> None:
    with caplog.at_level(logging.DEBUG):
        response = hook(client, body, {"X-PagerDuty-Signature": sign(SECRET, body), "X-Webhook-Subscription": "PSUB1"})
    assert response.status_code == 400 and response.json["error"]["type"] == error
    assert_clean(app, response, caplog, body)


def test_a_huge_body_is_refused_before_it_is_read(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"event": {"id": "1", "event_type": "x", "data": "' + b"x" * (70 * 1024) + b'"}}'
    with caplog.at_level(logging.DEBUG):
        response = hook(client, body, {"X-PagerDuty-Signature": sign(VENDOR_SECRET, body)})
    assert response.status_code == 413 and response.json["error"]["type"] == "PayloadTooLarge"
    assert_clean(app, response, caplog, body)


GOOD = sign(SECRET, BODY)
GOOD_HEX = GOOD[3:]

SIGNATURE_HEADERS = [
    # (headers, expected status): odd whitespace and case, repeats, garbage around a good one
    ([("X-PagerDuty-Signature", f"  {GOOD}  ")], 202),
    ([("X-PagerDuty-Signature", f"v1={GOOD_HEX.upper()}")], 202),
    ([("X-PagerDuty-Signature", f"v2=abc,\t{GOOD} ,v1=zz")], 202),
    ([("X-PagerDuty-Signature", "garbage"), ("X-PagerDuty-Signature", GOOD)], 202),  # repeated: joined
    ([("X-PagerDuty-Signature", sign(OTHER_SECRET, BODY)), ("X-PagerDuty-Signature", GOOD)], 202),
    ([("x-pagerduty-signature", GOOD)], 202),
    ([("X-PagerDuty-Signature", f"V1={GOOD_HEX}")], 400),  # the version is lowercase
    ([("X-PagerDuty-Signature", f"v1 = {GOOD_HEX}")], 400),
    ([("X-PagerDuty-Signature", f"v1={GOOD_HEX}0")], 400),
    ([("X-PagerDuty-Signature", f"v1={GOOD_HEX[:-1]}")], 400),
    ([("X-PagerDuty-Signature", "v1=" + "\u0660" * 64)], 400),  # Arabic-Indic digits are not hex
    ([("X-PagerDuty-Signature", ",".join([GOOD] * 17))], 400),  # more entries than PagerDuty sends
    ([("X-PagerDuty-Signature", "")], 400),
    ([("X-PagerDuty-Signature", "   ")], 400),
    ([], 400),
    ([("X-PagerDuty-Signature", "v1=" + "0" * 64)], 403),
    ([("X-PagerDuty-Signature", sign(SECRET, BODY + b" "))], 403),
]


@pytest.mark.parametrize(("headers", "status"), SIGNATURE_HEADERS)
def test_signature_headers(
    app: Flask,
    client: FlaskClient,
    caplog: pytest.LogCaptureFixture,
    headers: list[tuple[str, str]],
    status: int,
) -> None:
    with caplog.at_level(logging.DEBUG):
        response = hook(client, BODY, [*headers, ("X-Webhook-Subscription", "PSUB1")])
    assert response.status_code == status
    assert_clean(app, response, caplog, BODY)


@pytest.mark.parametrize(
    ("subscription", "secret", "status"),
    [
        ("PSUB1", OTHER_SECRET, 403),  # Mallory's signature under Alice's subscription
        ("PSUB2", SECRET, 403),  # Alice's under Mallory's
        ("PSUB1, PSUB2", SECRET, 403),  # a repeated header, joined
        ("PSUB1\x7f", SECRET, 400),
        ("P" * 300, SECRET, 400),
    ],
)
def test_another_tenants_subscription_verifies_nothing(
    app: Flask,
    client: FlaskClient,
    caplog: pytest.LogCaptureFixture,
    subscription: str,
    secret: str,
    status: int,
) -> None:
    with caplog.at_level(logging.DEBUG):
        response = hook(
            client, BODY, {"X-PagerDuty-Signature": sign(secret, BODY), "X-Webhook-Subscription": subscription}
        )
    assert response.status_code == status
    assert_clean(app, response, caplog, BODY)
    with app.test_request_context("/"):
        assert current_pagerduty().incident_state("monitor/42", owner_id="alice") is None


def test_a_replay_under_a_fresh_webhook_id_is_a_duplicate_at_the_route(app: Flask, client: FlaskClient) -> None:
    headers = {"X-PagerDuty-Signature": GOOD, "X-Webhook-Subscription": "PSUB1"}
    assert hook(client, BODY, {**headers, "X-Webhook-Id": "first"}).status_code == 202
    replay = hook(client, BODY, {**headers, "X-Webhook-Id": "captured-and-re-sent"})
    assert replay.status_code == 200 and replay.json == {"status": "duplicate"}


any_text = st.text(max_size=20)
any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(any_text, children, max_size=3),
    max_leaves=15,
)


def _event_with(where: str, value: Any) -> bytes:
    body = samples.v3(event_id="hypothesis-event")
    if where == "event":
        body["event"] = value
    elif where.startswith("data."):
        body["event"]["data"][where[5:]] = value
    else:
        body["event"][where] = value
    return json.dumps(body).encode()


WHERE = ["event", "id", "event_type", "occurred_at", "agent", "client", "data", "data.id", "data.number",
         "data.status", "data.title", "data.service", "data.assignees", "data.incident_key", "data.urgency"]  # fmt: skip


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.binary(max_size=500) | st.builds(_event_with, st.sampled_from(WHERE), any_json),
    subscription=st.sampled_from([None, "PSUB1", "PSUB2"]),
)
def test_any_signed_body_gets_a_2xx_or_a_typed_4xx(
    app: Flask, client: FlaskClient, body: bytes, subscription: str | None
) -> None:
    headers = {"X-PagerDuty-Signature": sign(SECRET if subscription != "PSUB2" else OTHER_SECRET, body)}
    if subscription is not None:
        headers["X-Webhook-Subscription"] = subscription
    response = hook(client, body, headers)
    assert response.status_code in (200, 202) or response.status_code in (400, 403)
    assert response.is_json
    text = response.get_data(as_text=True)
    assert SECRET not in text and OTHER_SECRET not in text and VENDOR_SECRET not in text


# -- the Alertmanager route ----------------------------------------------------------------------


def alert(client: FlaskClient, body: bytes, authorization: str | None, query: str = "") -> Any:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return client.post("/pagerduty/alertmanager" + query, data=body, headers=headers, content_type="application/json")


def token(app: Flask, owner: str) -> str:
    with app.test_request_context("/"):
        return alertmanager_token(owner)


def enqueued(app: Flask) -> list[tuple[str | None, str]]:
    with app.test_request_context("/"):
        return sorted((e.owner_id, e.routing_key) for e in current_pagerduty().outbox.claim("t", 100, lease=60))


def test_a_token_reaches_only_its_own_owners_services(app: Flask, client: FlaskClient) -> None:
    with app.test_request_context("/"):
        (bobs,) = current_pagerduty().store.list("bob")
    # Alice's token naming Bob's integration: not found, and nothing is enqueued for Bob.
    refused = alert(client, FIRING, f"Bearer {token(app, 'alice')}", f"?integration={bobs.id}")
    assert refused.status_code == 404 and refused.json["error"]["type"] == "NotFound"
    assert enqueued(app) == []
    assert alert(client, FIRING, f"Bearer {token(app, 'alice')}").json["enqueued"] == 1
    assert alert(client, FIRING, f"Bearer {token(app, 'bob')}").json["enqueued"] == 1
    assert enqueued(app) == sorted([("alice", SERVICE_KEY), ("bob", OTHER_SERVICE_KEY)])


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        ("bearer {alice}", 202),
        ("BEARER {alice}", 202),
        ("Bearer   {alice}  ", 202),
        ("Bearer {alice}x", 401),
        ("Bearer x{alice}", 401),
        ("Bearer {flipped}", 401),
        ("Bearer {alice} {alice}", 401),
        ("Basic {alice}", 401),
        ("Bearer\t{alice}", 401),
        ("{alice}", 401),
        ("Bearer ", 401),
        ("Bearer", 401),
        ("", 401),
        (None, 401),
        ("Bearer {csrf}", 401),  # signed by the same app, for another purpose
        ("Bearer {listed}", 401),  # a signed value that is not an owner id
        ("Bearer \u00e9\u00e9", 401),
        ("Bearer " + "A" * 10_000, 401),
    ],
)
def test_bearer_tokens(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture, authorization: str | None, status: int
) -> None:
    from itsdangerous import URLSafeSerializer, URLSafeTimedSerializer

    alice = token(app, "alice")
    with app.test_request_context("/"):
        key = current_pagerduty().csrf.secret_key
    values = {
        "alice": alice,
        "flipped": alice[:-1] + ("A" if alice[-1] != "A" else "B"),
        "csrf": str(URLSafeTimedSerializer(key, salt="pdconnect.form-token.v1").dumps("alice")),
        "listed": str(URLSafeSerializer(key, salt="pdconnect.alertmanager-token.v1").dumps(["alice"])),
    }
    header = authorization.format(**values) if authorization is not None else None
    with caplog.at_level(logging.DEBUG):
        response = alert(client, FIRING, header)
    assert response.status_code == status
    assert_clean(app, response, caplog, FIRING)
    assert values["flipped"] not in caplog.text and values["listed"] not in caplog.text
    if status == 401:
        assert response.json["error"]["type"] == "Unauthorized" and enqueued(app) == []


def test_the_token_is_checked_in_constant_time(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hmac

    import itsdangerous.signer

    calls: list[int] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append(1)
        return real(a, b)

    monkeypatch.setattr(itsdangerous.signer.hmac, "compare_digest", spy)
    assert alert(client, FIRING, f"Bearer {token(app, 'alice')}x").status_code == 401
    assert calls, "the signature of the token goes through hmac.compare_digest"


HOSTILE_ALERTS = [
    (b"\xff\xfe{", 400),
    (b'{"version": "4", "groupKey": "\\udfff", "status": "firing", "alerts": [{"status": "firing"}]}', 400),
    (b'{"version": "4", "groupKey": "k", "status": "firing", "alerts": [{"status": "firing"}], "x": NaN}', 400),
    (b'{"version": "4", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400),
    (json.dumps({**json.loads(FIRING), "truncatedAlerts": 10**4000}).encode(), 400),
    (json.dumps({**json.loads(FIRING), "commonLabels": {"instance": " ", "job": " "}}).encode(), 202),
    (json.dumps({**json.loads(FIRING), "externalURL": "http://admin:hunter2@am:9093"}).encode(), 202),
    (b"x" * (65 * 1024), 413),
]


@pytest.mark.parametrize(("body", "status"), HOSTILE_ALERTS)
def test_hostile_alertmanager_bodies(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture, body: bytes, status: int
) -> None:
    with caplog.at_level(logging.DEBUG):
        response = alert(client, body, f"Bearer {token(app, 'alice')}")
    assert response.status_code == status
    assert_clean(app, response, caplog, body)
    assert "hunter2" not in json.dumps(enqueued(app))


ALERT_FIELDS = ["version", "groupKey", "status", "receiver", "alerts", "groupLabels", "commonLabels",
                "commonAnnotations", "externalURL", "truncatedAlerts"]  # fmt: skip


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.binary(max_size=400)
    | st.builds(
        lambda changes: json.dumps({**json.loads(FIRING), **changes}).encode(),
        st.dictionaries(st.sampled_from(ALERT_FIELDS), any_json, max_size=4),
    )
)
def test_any_alertmanager_body_gets_a_202_or_a_typed_4xx(app: Flask, client: FlaskClient, body: bytes) -> None:
    response = alert(client, body, f"Bearer {token(app, 'alice')}")
    assert response.status_code == 202 or response.status_code in (400, 413)
    assert response.is_json


def _raw_post(port: int, path: str, head: str, body: bytes) -> tuple[int, Any]:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        request = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{head}\r\n".encode() + body
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    answer = b"".join(chunks)
    status = int(answer.split(b" ", 2)[1])
    payload = answer.partition(b"\r\n\r\n")[2]
    return status, json.loads(payload) if payload.startswith(b"{") else payload


@pytest.mark.parametrize("route", ["webhook", "alertmanager"])
def test_a_malformed_chunked_body_is_a_typed_400(app: Flask, route: str, caplog: pytest.LogCaptureFixture) -> None:
    """The server's OSError while reading the body was a 500 (webhook) or an HTML 500 (Alertmanager)."""
    from werkzeug.serving import make_server

    from tests.servers import serving

    head = "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n"
    head += (
        f"X-PagerDuty-Signature: {GOOD}\r\n"
        if route == "webhook"
        else f"Authorization: Bearer {token(app, 'alice')}\r\n"
    )
    server = make_server("127.0.0.1", 0, app, threaded=True)
    with serving(server), caplog.at_level(logging.DEBUG):
        status, answer = _raw_post(server.server_port, f"/pagerduty/{route}", head, b"zz\r\nnot a chunk\r\n0\r\n\r\n")
    assert status == 400 and answer["error"]["type"] == "PayloadInvalid", answer
    assert "Traceback" not in caplog.text


def test_an_unavailable_integrations_database_is_a_503_not_a_500(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy as sa

    def down(owner_id: str) -> list[Any]:
        raise sa.exc.OperationalError("SELECT", {}, Exception("the server closed the connection"))

    with app.test_request_context("/"):
        monkeypatch.setattr(current_pagerduty().store, "list", down)
    response = alert(client, FIRING, f"Bearer {token(app, 'alice')}")
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    assert response.json["error"]["type"] == "Unavailable"
