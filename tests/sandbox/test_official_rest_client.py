"""PagerDuty's own REST client (``pagerduty.RestApiV2Client``), pointed at the sandbox, works unchanged (issue 10).

Over loopback TLS (it insists on https): classic pagination, reads, a webhook subscription
created, listed and deleted, a Bearer token, an EU account at ``/eu``, and a 401 for a key
the sandbox does not know.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pagerduty
import pytest

from pdconnect.sandbox import Sandbox, SandboxServer
from pdconnect.sandbox.tls import TlsFiles, make_certificates
from tests.sandbox.grants import bearer


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def server(tls: TlsFiles) -> Iterator[SandboxServer]:
    with SandboxServer(Sandbox(), tls=tls) as running:
        yield running


def _client(server: SandboxServer, tls: TlsFiles, credential: str, **options: str) -> pagerduty.RestApiV2Client:
    client = pagerduty.RestApiV2Client(
        credential, verify=ssl.create_default_context(cafile=str(tls.ca_path)), **options
    )
    client.url = server.url
    return client


def test_pagination_reads_and_a_subscription_with_an_api_key(server: SandboxServer, tls: TlsFiles) -> None:
    client = _client(server, tls, server.sandbox.create_api_key("acme").id)
    assert [s["name"] for s in client.iter_all("services", params={"limit": 1})] == ["Checkout API", "Database"]
    service = server.sandbox.services()[0]
    assert client.rget(f"/services/{service.id}")["name"] == service.name
    body = {"webhook_subscription": {"delivery_method": {"type": "http_delivery_method", "url": "http://127.0.0.1:9/h"},
                                     "filter": {"type": "service_reference", "id": service.id}}}  # fmt: skip
    created = client.rpost("/webhook_subscriptions", json=body)
    assert len(created["delivery_method"]["secret"]) == 64
    assert [s["id"] for s in client.list_all("webhook_subscriptions")] == [created["id"]]
    client.rdelete(f"/webhook_subscriptions/{created['id']}")
    assert client.list_all("webhook_subscriptions") == []


def test_a_bearer_token_and_an_eu_account(server: SandboxServer, tls: TlsFiles) -> None:
    server.sandbox.create_account("euro", region="eu")
    server.sandbox.create_service("euro", "Euro API")
    client = _client(server, tls, bearer(server.sandbox, "euro", scopes=["read"]), auth_type="oauth2")
    client.url = server.url + "/eu"
    assert [s["name"] for s in client.iter_all("services")] == ["Euro API"]
    client.url = server.url
    with pytest.raises(pagerduty.HttpError) as raised:
        client.rget("/services")
    assert raised.value.response.status_code == 401


def test_an_unknown_key_is_a_401(server: SandboxServer, tls: TlsFiles) -> None:
    with pytest.raises(pagerduty.HttpError) as raised:
        _client(server, tls, "not-a-key-of-any-account").rget("/services")
    assert raised.value.response.status_code == 401
