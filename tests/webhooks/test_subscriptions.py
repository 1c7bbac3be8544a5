"""Creating subscriptions through the REST API (the sandbox's, and mocked failures), end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import responses

from pdconnect import Sender, integration_from_key
from pdconnect.errors import UnsafeURLError
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.storage import StoredIntegration
from pdconnect.webhooks import (
    IncidentStateStore,
    MemoryWebhookSecretStore,
    SubscriptionClient,
    SubscriptionError,
    WebhookEvent,
    WebhookReceiver,
    subscribe_integration,
    unsubscribe_integration,
)
from tests.conftest import SERVICE_KEY
from tests.sandbox.receiver import WebhookReceiver as RecordingEndpoint
from tests.sandbox.receiver import webhook_receiver

API = "http://127.0.0.1:9/rest"
TOKEN = "u+rest-api-token-abcdef"


@pytest.fixture
def endpoint() -> Iterator[RecordingEndpoint]:
    with webhook_receiver() as made:
        yield made


def stored(key: str, service_id: str | None, *, owner: str = "org-1") -> StoredIntegration:
    base = integration_from_key(key, owner_id=owner, service_name="Checkout API")
    fields = {f: getattr(base, f) for f in base.__dataclass_fields__}
    return StoredIntegration(**{**fields, "service_id": service_id, "target_type": "service"}, id="int-1")


def test_subscribe_an_integration_and_follow_its_incidents(
    pagerduty_sandbox: PagerDutySandbox, endpoint: RecordingEndpoint, tmp_path: Path
) -> None:
    service = pagerduty_sandbox.service("Checkout API")
    key = pagerduty_sandbox.service_key()
    integration = stored(key, service["id"])
    secrets = MemoryWebhookSecretStore()
    with SubscriptionClient(pagerduty_sandbox.api_key(), base_url=pagerduty_sandbox.url) as client:
        registered = subscribe_integration(client, secrets, integration, endpoint.url)
    assert (registered.owner_id, registered.integration_id) == ("org-1", "int-1")
    subscription = pagerduty_sandbox.state()["webhook_subscriptions"][0]
    assert subscription["id"] == registered.subscription_id
    assert subscription["filter"] == {"type": "service_reference", "id": service["id"]}

    with Sender(events_base_url=pagerduty_sandbox.url) as sender:
        sender.trigger(key, "Checkout is down", source="monitor", severity="critical", dedup_key="monitor/7")
    incident = pagerduty_sandbox.incident_for("monitor/7")
    pagerduty_sandbox.act(incident["id"], "acknowledge")
    pagerduty_sandbox.wait_for_deliveries(2)

    states = IncidentStateStore(f"sqlite:///{tmp_path / 'states.db'}")
    receiver = WebhookReceiver(secret_store=secrets, incidents=states)
    seen: list[WebhookEvent] = []
    receiver.handler(seen.append)
    for request in endpoint.requests:
        assert receiver.receive(request.body, request.headers).status == 202
    assert [e.event_type for e in seen] == ["incident.triggered", "incident.acknowledged"]
    assert {e.owner_id for e in seen} == {"org-1"}
    state = states.by_dedup_key("monitor/7", owner_id="org-1")
    assert state is not None and state.acknowledged and state.changed_by
    states.engine.dispose()

    with SubscriptionClient(pagerduty_sandbox.api_key(), base_url=pagerduty_sandbox.url) as client:
        assert unsubscribe_integration(client, secrets, integration) == 1
    assert pagerduty_sandbox.state()["webhook_subscriptions"] == []
    assert secrets.for_integration("org-1", "int-1") == []


def test_integrations_without_a_service_id_cannot_be_subscribed() -> None:
    with SubscriptionClient(TOKEN, base_url=API) as client, pytest.raises(ValueError):
        subscribe_integration(client, MemoryWebhookSecretStore(), stored(SERVICE_KEY, None), "https://a.example/h")


@responses.activate
def test_what_is_sent() -> None:
    responses.post(
        f"{API}/webhook_subscriptions",
        json={
            "webhook_subscription": {
                "id": "PSUB1",
                "delivery_method": {"secret": "s3cret", "url": "https://a.example/h"},
                "events": ["incident.resolved"],
                "filter": {"type": "service_reference", "id": "PSVC1"},
            }
        },
        status=201,
    )
    with SubscriptionClient(TOKEN, base_url=API) as client:
        created = client.create("https://a.example/h", service_id="PSVC1", events=["incident.resolved"])
    assert (created.id, created.secret, created.filter_id, created.events) == (
        "PSUB1",
        "s3cret",
        "PSVC1",
        ("incident.resolved",),
    )
    assert "s3cret" not in repr(created)
    request = responses.calls[0].request
    assert request.headers["Authorization"] == f"Token token={TOKEN}"
    assert request.headers["Accept"] == "application/vnd.pagerduty+json;version=2"


@responses.activate
def test_oauth_tokens_are_bearer_tokens() -> None:
    responses.delete(f"{API}/webhook_subscriptions/PSUB1", status=204)
    with SubscriptionClient(TOKEN, base_url=API, oauth=True) as client:
        assert client.delete("PSUB1") is True
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("status", "body", "expected_status"),
    [
        (401, {"error": {"message": "Unauthorized"}}, 401),
        (403, {"error": {"message": "Forbidden"}}, 403),
        (400, {"error": {"message": "Invalid Input Provided"}}, 400),
        (500, "not json", 500),
        (201, {"webhook_subscription": {"id": "PSUB1", "delivery_method": {}}}, 201),
        (201, {"webhook_subscription": None}, 201),
        (201, "not json", 201),
    ],
)
@responses.activate
def test_refusals_are_typed_and_never_show_the_token(status: int, body: object, expected_status: int) -> None:
    if isinstance(body, str):
        responses.post(f"{API}/webhook_subscriptions", body=body, status=status)
    else:
        responses.post(f"{API}/webhook_subscriptions", json=body, status=status)
    with SubscriptionClient(TOKEN, base_url=API) as client, pytest.raises(SubscriptionError) as raised:
        client.create("https://a.example/h")
    assert raised.value.status == expected_status
    assert TOKEN not in str(raised.value) and TOKEN not in repr(client)


@responses.activate
def test_no_answer() -> None:
    responses.post(f"{API}/webhook_subscriptions", body=requests.ConnectionError("refused"))
    with SubscriptionClient(TOKEN, base_url=API) as client, pytest.raises(SubscriptionError) as raised:
        client.create("https://a.example/h")
    assert raised.value.status is None


@responses.activate
def test_a_subscription_gone_at_pagerduty_is_not_an_error() -> None:
    responses.delete(f"{API}/webhook_subscriptions/PSUB1", status=404)
    with SubscriptionClient(TOKEN, base_url=API) as client:
        assert client.delete("PSUB1") is False


@responses.activate
def test_if_the_secret_cannot_be_kept_the_subscription_is_deleted() -> None:
    responses.post(
        f"{API}/webhook_subscriptions",
        json={"webhook_subscription": {"id": "PSUB1", "delivery_method": {"secret": "s3cret"}}},
        status=201,
    )
    deleted = responses.delete(f"{API}/webhook_subscriptions/PSUB1", status=204)

    class Broken(MemoryWebhookSecretStore):
        def register(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
            raise RuntimeError("database down")

    with SubscriptionClient(TOKEN, base_url=API) as client, pytest.raises(RuntimeError):
        subscribe_integration(client, Broken(), stored(SERVICE_KEY, "PSVC1"), "https://a.example/h")
    assert deleted.call_count == 1


@pytest.mark.parametrize("url", ["http://vendor.example/h", "ftp://x/h", "https://u:p@a.example/h", "", "/relative"])
def test_unsafe_webhook_urls_are_refused(url: str) -> None:
    with SubscriptionClient(TOKEN, base_url=API) as client, pytest.raises(UnsafeURLError):
        client.create(url)


@pytest.mark.parametrize("token", ["", "   ", None])
def test_a_token_is_needed(token: object) -> None:
    with pytest.raises(ValueError):
        SubscriptionClient(token)  # type: ignore[arg-type]
