"""Webhook subscriptions through the sandbox's REST API, as PagerDuty has them (issue 10).

Create answers 200 with the secret once (64 characters of base64); filters name only the
caller's own service, team or account; custom headers are bounded, refused with CR/LF and
sent on deliveries; ping, enable and PUT; ten per service at most; during a secret
rotation deliveries carry two signatures, then only the new one.
"""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.sandbox.subscriptions import MAX_PER_SERVICE, SubscriptionRefused, check_custom_headers
from pdconnect.webhooks.signatures import matching_secrets, signatures_in
from tests.sandbox.receiver import WebhookReceiver, webhook_receiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as found:
        yield found


def _create(sandbox: PagerDutySandbox, body: dict[str, object], *, account: str = "acme") -> tuple[int, dict[str, Any]]:
    response = sandbox.rest("POST", "/webhook_subscriptions", account=account, json={"webhook_subscription": body})
    return response.status_code, response.json() if response.content else {}


def _trigger(sandbox: PagerDutySandbox, dedup_key: str) -> None:
    event = {"routing_key": sandbox.service_key(), "event_action": "trigger", "dedup_key": dedup_key,
             "payload": {"summary": "down", "source": "h", "severity": "critical"}}  # fmt: skip
    assert requests.post(sandbox.url + "/v2/enqueue", json=event, timeout=10).status_code == 202


def test_create_answers_200_with_a_64_character_base64_secret_once(
    pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver
) -> None:
    status, body = _create(pagerduty_sandbox, {"delivery_method": {"url": receiver.url}})
    assert status == 200
    secret = body["webhook_subscription"]["delivery_method"]["secret"]
    assert len(secret) == 64 and len(base64.b64decode(secret, validate=True)) == 48
    assert set(secret) <= set(string.ascii_letters + string.digits + "+/")
    sub_id = body["webhook_subscription"]["id"]
    for path in ("/webhook_subscriptions", f"/webhook_subscriptions/{sub_id}"):
        text = pagerduty_sandbox.rest("GET", path).text
        assert secret not in text and '"secret"' not in text


def test_an_account_filter_names_the_callers_own_account(
    pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver
) -> None:
    pagerduty_sandbox.create_account("beta")
    status, body = _create(
        pagerduty_sandbox, {"delivery_method": {"url": receiver.url}, "filter": {"type": "account_reference"}}
    )
    assert status == 200 and body["webhook_subscription"]["filter"] == {"type": "account_reference", "id": "acme"}
    status, body = _create(
        pagerduty_sandbox,
        {"delivery_method": {"url": receiver.url}, "filter": {"type": "account_reference", "id": "beta"}},
    )
    assert status == 400 and "your own account" in body["error"]["message"]


def test_a_team_filter_delivers_only_the_teams_incidents(
    pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver
) -> None:
    team = next(t["id"] for t in pagerduty_sandbox.state()["teams"] if t["account"] == "acme")
    status, _ = _create(pagerduty_sandbox, {"delivery_method": {"url": receiver.url}, "filter": {"type": "team_reference", "id": team},
                                            "events": ["incident.triggered"]})  # fmt: skip
    assert status == 200
    _trigger(pagerduty_sandbox, "team-1")
    pagerduty_sandbox.wait_for_deliveries(1)
    assert json.loads(receiver.requests[0].body)["event"]["event_type"] == "incident.triggered"


def test_a_service_or_team_of_another_account_is_refused_like_a_missing_one(
    pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver
) -> None:
    pagerduty_sandbox.create_account("beta")
    beta_service, _ = pagerduty_sandbox.create_service("Beta API", account="beta")
    beta_team = next(t["id"] for t in pagerduty_sandbox.state()["teams"] if t["account"] == "beta")
    answers = []
    for kind, target in (("service_reference", beta_service), ("service_reference", "PNOSUCH"),
                         ("team_reference", beta_team), ("team_reference", "PNOSUCH")):  # fmt: skip
        status, body = _create(
            pagerduty_sandbox, {"delivery_method": {"url": receiver.url}, "filter": {"type": kind, "id": target}}
        )
        answers.append((status, body["error"]["message"]))
    assert answers[0] == answers[1] and answers[2] == answers[3]
    assert {status for status, _ in answers} == {400}


def test_the_eleventh_subscription_on_a_service_is_refused(
    pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver
) -> None:
    service = pagerduty_sandbox.service("Checkout API")["id"]
    body = {"delivery_method": {"url": receiver.url}, "filter": {"type": "service_reference", "id": service}}
    for _ in range(MAX_PER_SERVICE):
        assert _create(pagerduty_sandbox, body)[0] == 200
    status, answer = _create(pagerduty_sandbox, body)
    assert status == 400 and f"already has {MAX_PER_SERVICE}" in answer["error"]["message"]
    # Moving another subscription onto the full service through PUT is refused too.
    other = _create(pagerduty_sandbox, {"delivery_method": {"url": receiver.url}})[1]["webhook_subscription"]["id"]
    moved = pagerduty_sandbox.rest(
        "PUT", f"/webhook_subscriptions/{other}", json={"webhook_subscription": {"filter": body["filter"]}}
    )
    assert moved.status_code == 400


def test_custom_headers_are_sent_and_their_values_shown_only_on_create(
    pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver
) -> None:
    headers = [{"name": "X-Vendor-Token", "value": "receiver-secret-123"}]
    status, body = _create(pagerduty_sandbox, {"delivery_method": {"url": receiver.url, "custom_headers": headers}})
    assert status == 200 and body["webhook_subscription"]["delivery_method"]["custom_headers"] == headers
    sub_id = body["webhook_subscription"]["id"]
    assert "receiver-secret-123" not in pagerduty_sandbox.rest("GET", f"/webhook_subscriptions/{sub_id}").text
    _trigger(pagerduty_sandbox, "hdr-1")
    pagerduty_sandbox.wait_for_deliveries(1)
    assert receiver.requests[0].headers["X-Vendor-Token"] == "receiver-secret-123"


HOSTILE_HEADERS: list[object] = [
    "X-A: b",
    {"name": "X-A", "value": "b"},
    [{"name": "X-A"}],
    [{"name": "X-A", "value": "b\r\nX-Injected: 1"}],
    [{"name": "X-A", "value": "b\nc"}],
    [{"name": "X-A", "value": "tab\there"}],
    [{"name": "X-A", "value": "caf\u00e9"}],
    [{"name": "X A", "value": "b"}],
    [{"name": "X-A\r\nX-B", "value": "b"}],
    [{"name": "", "value": "b"}],
    [{"name": "X-" + "a" * 100, "value": "b"}],
    [{"name": "X-A", "value": "b" * 2000}],
    [{"name": "X-A", "value": 1}],
    [{"name": "X-A", "value": "b", "extra": "c"}],
    [{"name": "X-PagerDuty-Signature", "value": "v1=forged"}],
    [{"name": "content-length", "value": "0"}],
    [{"name": "Host", "value": "evil.example"}],
    [{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}],
    [{"name": f"X-{i}", "value": "v"} for i in range(11)],
]


@pytest.mark.parametrize("headers", HOSTILE_HEADERS, ids=lambda h: json.dumps(h)[:50])
def test_hostile_custom_headers_are_a_400(pagerduty_sandbox: PagerDutySandbox, headers: object) -> None:
    status, body = _create(
        pagerduty_sandbox, {"delivery_method": {"url": "http://127.0.0.1:9/h", "custom_headers": headers}}
    )
    assert status == 400 and body["error"]["message"]
    assert pagerduty_sandbox.state()["webhook_subscriptions"] == []


@settings(max_examples=200)
@given(
    st.lists(
        st.fixed_dictionaries({"name": st.text(max_size=80), "value": st.text(max_size=40)}),
        max_size=12,
    )
)
def test_accepted_custom_headers_can_never_split_a_request(headers: list[dict[str, str]]) -> None:
    try:
        kept = check_custom_headers(headers)
    except SubscriptionRefused:
        return
    for header in kept:
        text = header["name"] + header["value"]
        assert text.isascii() and all(0x20 <= ord(ch) < 0x7F for ch in text)
        assert ":" not in header["name"] and " " not in header["name"]


def test_ping_sends_a_signed_pagey_ping(pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver) -> None:
    _, body = _create(pagerduty_sandbox, {"delivery_method": {"url": receiver.url}})
    created = body["webhook_subscription"]
    ping = pagerduty_sandbox.rest("POST", f"/webhook_subscriptions/{created['id']}/ping")
    assert ping.status_code == 202
    pagerduty_sandbox.wait_for_deliveries(1)
    request = receiver.requests[0]
    assert json.loads(request.body)["event"]["event_type"] == "pagey.ping"
    secret = created["delivery_method"]["secret"]
    assert matching_secrets(request.body, request.headers["X-PagerDuty-Signature"], [secret]) == [0]


def test_enable_turns_a_disabled_subscription_back_on(
    pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver
) -> None:
    sub_id = _create(pagerduty_sandbox, {"delivery_method": {"url": receiver.url}})[1]["webhook_subscription"]["id"]
    off = pagerduty_sandbox.rest(
        "PUT", f"/webhook_subscriptions/{sub_id}", json={"webhook_subscription": {"active": False}}
    )
    assert off.status_code == 200 and off.json()["webhook_subscription"]["active"] is False
    _trigger(pagerduty_sandbox, "off-1")
    assert pagerduty_sandbox.deliveries() == []
    on = pagerduty_sandbox.rest("POST", f"/webhook_subscriptions/{sub_id}/enable")
    assert on.status_code == 200 and on.json()["webhook_subscription"]["active"] is True
    _trigger(pagerduty_sandbox, "on-1")
    assert len(pagerduty_sandbox.wait_for_deliveries(1)) == 1


def test_put_updates_description_events_and_filter(
    pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver
) -> None:
    sub_id = _create(pagerduty_sandbox, {"delivery_method": {"url": receiver.url}})[1]["webhook_subscription"]["id"]
    service = pagerduty_sandbox.service("Database")["id"]
    change = {
        "description": "db only",
        "events": ["incident.resolved"],
        "filter": {"type": "service_reference", "id": service},
    }
    updated = pagerduty_sandbox.rest("PUT", f"/webhook_subscriptions/{sub_id}", json={"webhook_subscription": change})
    assert updated.status_code == 200
    shown = updated.json()["webhook_subscription"]
    assert (shown["description"], shown["events"], shown["filter"]["id"]) == ("db only", ["incident.resolved"], service)
    assert "secret" not in shown["delivery_method"]


@pytest.mark.parametrize(
    "change",
    [
        {"delivery_method": {"url": "http://127.0.0.1:1/elsewhere"}},
        {"active": "yes"},
        {"events": "incident.resolved"},
        {"events": ["incident.nope"]},
        {"filter": "all"},
        {"filter": {"type": "account_reference", "id": "beta"}},
        {"description": "x" * 2000},
        {"secret": "mine"},
    ],
    ids=lambda c: json.dumps(c)[:40],
)
def test_hostile_updates_are_a_400(
    pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver, change: dict[str, object]
) -> None:
    pagerduty_sandbox.create_account("beta")
    sub_id = _create(pagerduty_sandbox, {"delivery_method": {"url": receiver.url}})[1]["webhook_subscription"]["id"]
    before = pagerduty_sandbox.rest("GET", f"/webhook_subscriptions/{sub_id}").json()
    response = pagerduty_sandbox.rest("PUT", f"/webhook_subscriptions/{sub_id}", json={"webhook_subscription": change})
    assert response.status_code == 400 and response.json()["error"]["message"]
    assert pagerduty_sandbox.rest("GET", f"/webhook_subscriptions/{sub_id}").json() == before


def test_a_rotation_signs_with_both_secrets_then_only_the_new_one(
    pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver
) -> None:
    created = _create(pagerduty_sandbox, {"delivery_method": {"url": receiver.url}, "events": ["incident.triggered"]})[
        1
    ]
    old = created["webhook_subscription"]["delivery_method"]["secret"]
    sub_id = created["webhook_subscription"]["id"]
    new = pagerduty_sandbox.rotate_secret(sub_id)
    assert new != old and len(new) == 64
    _trigger(pagerduty_sandbox, "rot-1")
    pagerduty_sandbox.wait_for_deliveries(1)
    during = receiver.requests[0]
    assert len(signatures_in(during.headers["X-PagerDuty-Signature"])) == 2
    assert matching_secrets(during.body, during.headers["X-PagerDuty-Signature"], [new, old]) == [0, 1]
    pagerduty_sandbox.finish_rotation(sub_id)
    _trigger(pagerduty_sandbox, "rot-2")
    pagerduty_sandbox.wait_for_deliveries(2)
    after = receiver.requests[1]
    assert len(signatures_in(after.headers["X-PagerDuty-Signature"])) == 1
    assert matching_secrets(after.body, after.headers["X-PagerDuty-Signature"], [new, old]) == [0]
    assert new not in json.dumps(pagerduty_sandbox.state())


@pytest.mark.parametrize("step", ["rotate_secret", "finish_rotation", "rotate", ""])
def test_rotating_an_unknown_subscription_is_a_404(pagerduty_sandbox: PagerDutySandbox, step: str) -> None:
    response = requests.post(f"{pagerduty_sandbox.url}/_sandbox/api/webhook_subscriptions/PNOSUCH/{step}", timeout=10)
    assert response.status_code in (404, 405) and response.json()["error"]["message"]


def test_the_old_sandbox_page_still_subscribes_per_account(
    pagerduty_sandbox: PagerDutySandbox, receiver: WebhookReceiver
) -> None:
    pagerduty_sandbox.create_account("beta")
    page = requests.post(
        pagerduty_sandbox.url + "/webhooks", data={"url": receiver.url, "scope": "account:beta"}, timeout=10
    )
    assert page.status_code == 201
    (made,) = pagerduty_sandbox.state()["webhook_subscriptions"]
    assert made["account"] == "beta" and made["filter"] == {"type": "account_reference", "id": "beta"}
