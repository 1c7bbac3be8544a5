"""Another tenant's webhooks at the Flask route (issue 9): nothing Mallory sends changes Alice's view.

Mallory is a tenant of the same vendor. She knows her own subscription's secret, so she can
sign any body she likes; she may also know the vendor's legacy token (it is in the URL every
V2 extension was given). She names Alice's incident id, Alice's dedup key and Alice's
service, with a later ``occurred_at`` so that her event would win. Alice's incident state, as
the vendor's pages read it, must not move; every event Mallory sends is announced as hers
(or as nobody's, for legacy webhooks), never as Alice's.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect.flask import current_pagerduty, webhook_received
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.webhooks import IncidentState, WebhookEvent, sign
from tests.test_flask import make_app
from tests.webhooks import samples
from tests.webhooks.samples import OTHER_SECRET, SECRET, encode

LEGACY_TOKEN = "legacy-token-known-to-every-v2-extension-01"
ALICE_KEY = "monitor/42"


def moment(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture
def app(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> Flask:
    made = make_app(tmp_path, pagerduty_sandbox, PDCONNECT_WEBHOOK_LEGACY_TOKEN=LEGACY_TOKEN)
    with made.test_request_context("/"):
        secrets = current_pagerduty().webhook_secrets
        secrets.register("PSUB1", SECRET, owner_id="alice", integration_id="int-a")
        secrets.register("PSUB2", OTHER_SECRET, owner_id="mallory", integration_id="int-m")
    return made


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def announced(app: Flask) -> list[WebhookEvent]:
    seen: list[WebhookEvent] = []

    def record(sender: Flask, event: WebhookEvent, **extra: Any) -> None:
        seen.append(event)

    webhook_received.connect(record, app, weak=False)
    return seen


def v3(event_type: str, *, occurred: float, event_id: str, **incident: Any) -> bytes:
    data = samples.incident_data("acknowledged" if event_type == "incident.acknowledged" else "triggered")
    data.update({"incident_key": ALICE_KEY, **incident})
    return encode(samples.v3(event_type, data=data, occurred_at=moment(occurred), event_id=event_id))


def alices_state(app: Flask) -> IncidentState | None:
    with app.test_request_context("/"):
        return current_pagerduty().incident_state(ALICE_KEY, owner_id="alice")


def post_v3(client: FlaskClient, body: bytes, secret: str, subscription: str) -> int:
    headers = {"X-PagerDuty-Signature": sign(secret, body), "X-Webhook-Subscription": subscription}
    return client.post("/pagerduty/webhook", data=body, headers=headers, content_type="application/json").status_code


def post_legacy(client: FlaskClient, body: bytes) -> int:
    return client.post(
        f"/pagerduty/webhook?token={LEGACY_TOKEN}", data=body, content_type="application/json"
    ).status_code


def alice_triggers(client: FlaskClient) -> None:
    body = v3("incident.triggered", occurred=-10, event_id=f"evt-alice-{uuid.uuid4().hex}")
    assert post_v3(client, body, SECRET, "PSUB1") == 202


def legacy_body(message_id: str, event: str, incident_id: str, incident_key: str) -> bytes:
    message = samples.v2_message(event, message_id=message_id)
    message["incident"].update({"id": incident_id, "incident_key": incident_key})
    message["created_on"] = moment(5)
    return encode({"messages": [message]})


MALLORY_ATTEMPTS = [
    # (name, how): each resolves Alice's incident, by her id and key, "later" than Alice's event.
    ("her own secret, her own subscription header", "v3", OTHER_SECRET, "PSUB2"),
    ("her own secret, Alice's subscription header", "v3", OTHER_SECRET, "PSUB1"),
    ("her own secret, no subscription header", "v3", OTHER_SECRET, None),
    ("the legacy token", "legacy", None, None),
]


@pytest.mark.parametrize(("how", "secret", "subscription"), [pytest.param(*a[1:], id=a[0]) for a in MALLORY_ATTEMPTS])
def test_mallory_cannot_move_alices_incident(
    app: Flask,
    client: FlaskClient,
    announced: list[WebhookEvent],
    how: str,
    secret: str | None,
    subscription: str | None,
) -> None:
    alice_triggers(client)
    before = alices_state(app)
    assert before is not None and before.status is not None and before.status.value == "triggered"
    if how == "v3":
        body = v3("incident.resolved", occurred=5, event_id="evt-mallory-1", status="resolved")
        headers: dict[str, str] = {"X-PagerDuty-Signature": sign(str(secret), body)}
        if subscription is not None:
            headers["X-Webhook-Subscription"] = subscription
        status = client.post("/pagerduty/webhook", data=body, headers=headers).status_code
    else:
        status = post_legacy(client, legacy_body("msg-m-1", "incident.resolve", "PINC001", ALICE_KEY))
    assert status in (202, 403)
    assert alices_state(app) == before
    assert [e.owner_id for e in announced] == ["alice"] + (["mallory"] if how == "v3" and status == 202 else []) + (
        [None] if how == "legacy" else []
    )


def test_mallory_cannot_burn_alices_event_ids(app: Flask, client: FlaskClient, announced: list[WebhookEvent]) -> None:
    """Mallory signs Alice's (guessed or seen) event id first: Alice's own delivery still goes through."""
    body = v3("incident.triggered", occurred=-10, event_id="evt-alice-1")
    assert post_v3(client, body, OTHER_SECRET, "PSUB2") == 202
    assert post_legacy(client, legacy_body("evt-alice-1", "incident.trigger", "PINC001", ALICE_KEY)) == 202
    assert post_v3(client, body, SECRET, "PSUB1") == 202
    assert [e.owner_id for e in announced] == ["mallory", None, "alice"]


incident_fields = st.fixed_dictionaries(
    {},
    optional={
        "id": st.sampled_from(["PINC001", "pinc001", "PINC001 ", "PINC002"]) | st.text(max_size=70),
        "incident_key": st.sampled_from([ALICE_KEY, ALICE_KEY.upper(), ALICE_KEY + "\x00", ""]) | st.text(max_size=20),
        "status": st.sampled_from(["resolved", "acknowledged", "triggered", "RESOLVED", None]),
        "number": st.integers() | st.none(),
        "service": st.just({"id": "PSVC001", "summary": "Checkout", "type": "service_reference"}),
    },
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    attempts=st.lists(
        st.tuples(
            st.sampled_from(["incident.resolved", "incident.acknowledged", "incident.reopened", "incident.triggered"]),
            incident_fields,
            st.sampled_from([("v3", "PSUB2"), ("v3", "PSUB1"), ("v3", None), ("legacy", None)]),
            st.floats(min_value=-60, max_value=600),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_nothing_mallory_sends_changes_alices_state(
    app: Flask, client: FlaskClient, attempts: list[tuple[str, dict[str, Any], tuple[str, str | None], float]]
) -> None:
    alice_triggers(client)
    before = alices_state(app)
    for index, (event_type, fields, (how, subscription), minutes) in enumerate(attempts):
        if how == "v3":
            body = v3(event_type, occurred=minutes, event_id=f"evt-m-{index}-{uuid.uuid4().hex}", **fields)
            headers = {"X-PagerDuty-Signature": sign(OTHER_SECRET, body)}
            if subscription is not None:
                headers["X-Webhook-Subscription"] = subscription
            status = client.post("/pagerduty/webhook", data=body, headers=headers).status_code
        else:
            legacy_type = {"incident.resolved": "incident.resolve", "incident.acknowledged": "incident.acknowledge"}
            message = samples.v2_message(
                legacy_type.get(event_type, "incident.trigger"), message_id=f"m-{index}-{uuid.uuid4().hex}"
            )
            message["incident"].update(fields)
            status = post_legacy(client, json.dumps({"messages": [message]}).encode())
        assert status < 500
    assert alices_state(app) == before
