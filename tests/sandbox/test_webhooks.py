"""The sandbox's outgoing webhooks: shape, signatures, retries, ordering, legacy format."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator

import pytest
import requests

from pdconnect import Sender
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.sandbox.receiver import WebhookReceiver, webhook_receiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as made:
        yield made


def _rest(sandbox: PagerDutySandbox, account: str = "acme") -> dict[str, str]:
    """The headers of a REST call with the account's own API key (the sandbox refuses any other)."""
    return {"Authorization": f"Token token={sandbox.api_key(account)}"}


def _trigger(sandbox: PagerDutySandbox, dedup_key: str = "m1") -> dict[str, str]:
    with Sender(events_base_url=sandbox.url, client="Acme Monitoring") as sender:
        sender.trigger(
            sandbox.service_key(), f"{dedup_key} is down", source="h", severity="critical", dedup_key=dedup_key
        )
    return sandbox.incident_for(dedup_key)


def _independent_signature(secret: str, body: bytes) -> str:
    return "v1=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def test_subscription_secret_is_shown_once(pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver) -> None:
    created = pagerduty_sandbox.subscribe(receiver.url, description="vendor")
    assert created["type"] == "webhook_subscription"
    assert len(created["delivery_method"]["secret"]) >= 24
    listed = requests.get(
        pagerduty_sandbox.url + "/webhook_subscriptions", headers=_rest(pagerduty_sandbox), timeout=10
    ).json()["webhook_subscriptions"]
    assert [s["id"] for s in listed] == [created["id"]]
    assert "secret" not in listed[0]["delivery_method"]
    one = requests.get(
        f"{pagerduty_sandbox.url}/webhook_subscriptions/{created['id']}", headers=_rest(pagerduty_sandbox), timeout=10
    ).json()
    assert "secret" not in one["webhook_subscription"]["delivery_method"]


def test_v3_webhook_shape_headers_and_signature(pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver) -> None:
    created = pagerduty_sandbox.subscribe(receiver.url)
    incident = _trigger(pagerduty_sandbox)
    pagerduty_sandbox.act(incident["id"], "acknowledge")
    pagerduty_sandbox.act(incident["id"], "annotate", note="looking")
    pagerduty_sandbox.act(incident["id"], "resolve")
    pagerduty_sandbox.wait_for_deliveries(4)
    assert len(receiver.requests) == 4
    types = []
    for request in receiver.requests:
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert headers["x-pagerduty-signature"] == _independent_signature(
            created["delivery_method"]["secret"], request.body
        )
        assert headers["user-agent"] == "PagerDuty-Webhook/V3.0"
        assert headers["content-type"] == "application/json"
        assert headers["x-webhook-subscription"] == created["id"]
        assert headers["x-webhook-id"]
        event = json.loads(request.body)["event"]
        assert set(event) == {"id", "event_type", "resource_type", "occurred_at", "agent", "client", "data"}
        assert event["resource_type"] == "incident"
        types.append(event["event_type"])
    assert types == ["incident.triggered", "incident.acknowledged", "incident.annotated", "incident.resolved"]
    triggered = json.loads(receiver.requests[0].body)["event"]
    data = triggered["data"]
    assert (data["type"], data["id"], data["incident_key"], data["status"]) == (
        "incident",
        incident["id"],
        "m1",
        "triggered",
    )
    assert data["service"]["type"] == "service_reference"
    assert data["assignees"][0]["type"] == "user_reference"
    assert triggered["client"] == {"name": "Acme Monitoring"}
    acknowledged = json.loads(receiver.requests[1].body)["event"]
    assert acknowledged["agent"]["type"] == "user_reference"
    assert acknowledged["agent"]["summary"] == "Alex Responder"
    note = json.loads(receiver.requests[2].body)["event"]["data"]
    assert (note["type"], note["content"]) == ("incident_note", "looking")
    assert note["incident"]["id"] == incident["id"]


def test_every_incident_change_is_sent(pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver) -> None:
    pagerduty_sandbox.subscribe(receiver.url)
    incident = _trigger(pagerduty_sandbox)
    users = {u["name"]: u["id"] for u in pagerduty_sandbox.state()["users"] if u["account"] == "acme"}
    policy = next(p["id"] for p in pagerduty_sandbox.state()["escalation_policies"] if p["name"] == "Management")
    pagerduty_sandbox.act(incident["id"], "acknowledge")
    pagerduty_sandbox.act(incident["id"], "unacknowledge")
    pagerduty_sandbox.act(incident["id"], "reassign", assignee=users["Sam Oncall"])
    pagerduty_sandbox.act(incident["id"], "escalate")
    pagerduty_sandbox.act(incident["id"], "delegate", escalation_policy=policy)
    pagerduty_sandbox.act(incident["id"], "priority", priority="P2")
    pagerduty_sandbox.wait_for_deliveries(7)
    types = [json.loads(r.body)["event"]["event_type"] for r in receiver.requests]
    assert types == [
        "incident.triggered",
        "incident.acknowledged",
        "incident.unacknowledged",
        "incident.reassigned",
        "incident.escalated",
        "incident.delegated",
        "incident.priority_updated",
    ]
    assert json.loads(receiver.requests[-1].body)["event"]["data"]["priority"]["summary"] == "P2"


def test_failures_are_retried_with_the_same_webhook_id(
    pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver
) -> None:
    pagerduty_sandbox.subscribe(receiver.url)
    receiver.script = [500, 429, 503]
    _trigger(pagerduty_sandbox)
    deliveries = pagerduty_sandbox.wait_for_deliveries(1)
    assert deliveries[0]["state"] == "delivered"
    assert [a["status"] for a in deliveries[0]["attempts"]] == [500, 429, 503, 200]
    ids = {r.headers["X-Webhook-Id"] for r in receiver.requests}
    bodies = {r.body for r in receiver.requests}
    assert len(receiver.requests) == 4
    assert len(ids) == 1
    assert len(bodies) == 1


def test_a_4xx_drops_the_webhook_at_once(pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver) -> None:
    pagerduty_sandbox.subscribe(receiver.url)
    receiver.script = [400]
    _trigger(pagerduty_sandbox)
    deliveries = pagerduty_sandbox.wait_for_deliveries(1)
    assert deliveries[0]["state"] == "dropped"
    assert len(deliveries[0]["attempts"]) == 1


def test_later_webhooks_wait_behind_a_retried_one(
    pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver
) -> None:
    pagerduty_sandbox.subscribe(receiver.url)
    receiver.script = [503, 503]
    incident = _trigger(pagerduty_sandbox)
    pagerduty_sandbox.act(incident["id"], "acknowledge")
    pagerduty_sandbox.act(incident["id"], "resolve")
    pagerduty_sandbox.wait_for_deliveries(3)
    types = [json.loads(r.body)["event"]["event_type"] for r in receiver.requests]
    assert types == ["incident.triggered"] * 3 + ["incident.acknowledged", "incident.resolved"]


def test_different_incidents_are_not_held_up(pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver) -> None:
    pagerduty_sandbox.subscribe(receiver.url)
    receiver.hold_marker = b'"incident_key":"first"'
    _trigger(pagerduty_sandbox, "first")  # its webhook hangs at the receiver ...
    _trigger(pagerduty_sandbox, "second")
    deliveries = pagerduty_sandbox.wait_for_deliveries(1)  # ... while the other incident's goes through
    finished = [d for d in deliveries if d["state"] != "pending"]
    assert [json.loads(d["body"])["event"]["data"]["incident_key"] for d in finished] == ["second"]
    receiver.release.set()
    assert {d["state"] for d in pagerduty_sandbox.wait_for_deliveries(2)} == {"delivered"}


def test_three_dropped_webhooks_disable_the_subscription(
    pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver
) -> None:
    created = pagerduty_sandbox.subscribe(receiver.url)
    receiver.script = [410, 410, 410]
    for key in ("a", "b", "c"):
        _trigger(pagerduty_sandbox, key)
    pagerduty_sandbox.wait_for_deliveries(3)
    state = requests.get(
        f"{pagerduty_sandbox.url}/webhook_subscriptions/{created['id']}", headers=_rest(pagerduty_sandbox), timeout=10
    ).json()
    assert state["webhook_subscription"]["delivery_method"]["temporarily_disabled"] is True
    _trigger(pagerduty_sandbox, "d")
    deliveries = pagerduty_sandbox.wait_for_deliveries(4)
    assert deliveries[-1]["attempts"][0]["error"] == "subscription disabled"
    assert len(receiver.requests) == 3


def test_legacy_v2_messages_format(pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver) -> None:
    pagerduty_sandbox.subscribe(receiver.url, version="v2")
    incident = _trigger(pagerduty_sandbox)
    pagerduty_sandbox.act(incident["id"], "priority", priority="P1")  # no V2 equivalent: not sent
    pagerduty_sandbox.act(incident["id"], "resolve")
    pagerduty_sandbox.wait_for_deliveries(2)
    bodies = [json.loads(r.body) for r in receiver.requests]
    assert [b["messages"][0]["event"] for b in bodies] == ["incident.trigger", "incident.resolve"]
    message = bodies[0]["messages"][0]
    assert message["incident"]["incident_key"] == "m1"
    assert message["incident"]["incident_number"] == incident["number"]
    assert receiver.requests[0].headers["User-Agent"] == "PagerDuty-Webhook/V2.0"
    assert "X-PagerDuty-Signature" not in receiver.requests[0].headers


def test_service_filter_and_event_choice(pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver) -> None:
    database = pagerduty_sandbox.service("Database")["id"]
    pagerduty_sandbox.subscribe(
        receiver.url, filter={"type": "service_reference", "id": database}, events=["incident.resolved"]
    )
    _trigger(pagerduty_sandbox, "checkout-only")  # on Checkout API: filtered out
    with Sender(events_base_url=pagerduty_sandbox.url) as sender:
        key = pagerduty_sandbox.service_key("Database")
        sender.trigger(key, "db down", source="db", severity="critical", dedup_key="db")
        sender.resolve(key, "db")
    deliveries = pagerduty_sandbox.wait_for_deliveries(1)
    assert [d["event_type"] for d in deliveries] == ["incident.resolved"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"webhook_subscription": {"delivery_method": {"url": "https://example.com/hooks"}}},
            "only delivers webhooks to this machine",
        ),
        ({"webhook_subscription": {"delivery_method": {"url": "not a url"}}}, "absolute http"),
        ({"webhook_subscription": {"delivery_method": {"url": "http://[::1/h"}}}, "absolute http"),
        (
            {
                "webhook_subscription": {
                    "delivery_method": {"url": "http://127.0.0.1:9/h"},
                    "events": ["incident.exploded"],
                }
            },
            "Unknown event types",
        ),
        ({"webhook_subscription": {"delivery_method": {"url": "http://127.0.0.1:9/h"}, "version": "v9"}}, "version"),
        ({"nope": 1}, "webhook_subscription object"),
    ],
)
def test_bad_subscriptions(pagerduty_sandbox: PagerDutySandbox, body: dict[str, object], message: str) -> None:
    response = requests.post(
        pagerduty_sandbox.url + "/webhook_subscriptions", json=body, headers=_rest(pagerduty_sandbox), timeout=10
    )
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


@pytest.mark.parametrize("authorization", [None, "", "Token", "Token token=", "Basic dXNlcjpwYXNz", "Bearer  "])
def test_the_rest_endpoints_want_a_token(pagerduty_sandbox: PagerDutySandbox, authorization: str | None) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in (("GET", "/webhook_subscriptions"), ("POST", "/webhook_subscriptions"),
                         ("GET", "/webhook_subscriptions/P1"), ("DELETE", "/webhook_subscriptions/P1")):  # fmt: skip
        response = requests.request(method, pagerduty_sandbox.url + path, headers=headers, json={}, timeout=10)
        error = response.json()["error"]
        assert response.status_code == 401 and "Authentication failed" in error["message"] and error["code"] == 2006


def test_subscription_made_in_the_pages(pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver) -> None:
    response = requests.post(
        pagerduty_sandbox.url + "/webhooks",
        data={"url": receiver.url, "scope": "account", "version": "v3", "events": ["incident.triggered"]},
        timeout=10,
    )
    assert response.status_code == 201
    assert "shown only once" in response.text
    assert "data-secret" in response.text
    page = requests.get(pagerduty_sandbox.url + "/webhooks", timeout=10).text
    assert "data-secret" not in page
    subscription = pagerduty_sandbox.state()["webhook_subscriptions"][0]
    requests.post(f"{pagerduty_sandbox.url}/webhooks/{subscription['id']}/delete", timeout=10)
    assert pagerduty_sandbox.state()["webhook_subscriptions"] == []
