"""Credentials and the per-account REST client end to end against the sandbox, over loopback HTTP.

A real code exchange (``PagerDutyOAuth.finish`` after the sandbox's sign-in and consent pages)
leaves tokens that are stored encrypted in SQLite; the REST client then calls the sandbox's
REST API with them, refreshes an expired token without the caller noticing, and turns
"Revoke All Tokens" into :class:`NeedsReauthorization` with the hook fired once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from pdconnect.oauth import TokenSet
from pdconnect.oauth.cipher import TokenCipher
from pdconnect.oauth.credentials import Credential, SqlCredentialStore
from pdconnect.oauth.refresh import TokenRefresher
from pdconnect.rest.client import AccountRestClient
from pdconnect.rest.errors import Forbidden, NeedsReauthorization, RestError
from pdconnect.retry import RetryPolicy
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.transport import RequestsTransport
from tests.oauth.test_sandbox_e2e import OAUTH_API, Vendor, add_user, connect, make_client, register

NO_WAIT = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0, deadline=30.0, rate_limit_delay=0.0)
HOOK_URL = "http://127.0.0.1:9/pagerduty/webhook"  # the sandbox delivers to this machine only


@dataclass
class Connected:
    vendor: Vendor
    store: SqlCredentialStore
    refresher: TokenRefresher
    hooked: list[Credential]

    def link(self, user_id: str, owner: str = "owner-1") -> tuple[Credential, AccountRestClient]:
        """Connect ``user_id`` for ``owner`` through the sandbox's pages; the stored credential and a client."""
        done = connect(self.vendor, user_id, owner=owner)
        credential = self.store.save(owner, done.account, done.tokens)
        session = requests.Session()
        session.verify = self.vendor.sandbox.verify
        client = AccountRestClient(
            self.refresher, owner, done.account.account_id, transport=RequestsTransport(session), retry=NO_WAIT
        )
        return credential, client


@pytest.fixture
def connected(pagerduty_sandbox: PagerDutySandbox, tmp_path: Path) -> Iterator[Connected]:
    app = register(pagerduty_sandbox)
    oauth = make_client(pagerduty_sandbox, app, scopes=("write",))
    vendor = Vendor(pagerduty_sandbox, app["client_id"], app.get("client_secret"), oauth)
    store = SqlCredentialStore(
        f"sqlite:///{tmp_path / 'credentials.db'}", cipher=TokenCipher([TokenCipher.generate_key()])
    )
    hooked: list[Credential] = []
    yield Connected(vendor, store, TokenRefresher(store, oauth, on_needs_reauthorization=hooked.append), hooked)
    store.engine.dispose()
    pagerduty_sandbox.set_faults(spec="")


def test_a_connected_account_lists_its_services_and_manages_subscriptions(connected: Connected) -> None:
    sandbox = connected.vendor.sandbox
    credential, client = connected.link(add_user(sandbox, "acme", "Alex", role="manager"))
    assert credential.account.rest_base_url == sandbox.rest_base("acme")
    services = client.list_services()
    checkout = sandbox.service("Checkout API")
    assert checkout["id"] in {s["id"] for s in services}
    subscription, secret = client.create_webhook_subscription(HOOK_URL, service_id=checkout["id"])
    assert len(secret) == 64
    assert subscription.id in {s.id for s in client.list_webhook_subscriptions()}
    client.ping_webhook_subscription(subscription.id)
    assert client.update_webhook_subscription(subscription.id, description="renamed").description == "renamed"
    assert client.delete_webhook_subscription(subscription.id) is True
    assert client.delete_webhook_subscription(subscription.id) is False
    assert subscription.id not in {s.id for s in client.list_webhook_subscriptions()}


def test_an_access_token_expired_at_pagerduty_is_refreshed_without_the_caller_noticing(connected: Connected) -> None:
    sandbox = connected.vendor.sandbox
    credential, client = connected.link(add_user(sandbox, "acme", "Alex"))
    sandbox._api("POST", f"{OAUTH_API}/tokens/expire", json={"token": credential.access_token})
    assert client.list_services()  # a 401, one refresh, the same request again
    stored = connected.store.get("owner-1", credential.account_id)
    assert stored is not None
    assert stored.version == credential.version + 1
    assert stored.access_token != credential.access_token and stored.refresh_token != credential.refresh_token
    assert connected.hooked == []


def test_an_access_token_near_its_expiry_is_refreshed_before_the_call(connected: Connected) -> None:
    sandbox = connected.vendor.sandbox
    credential, client = connected.link(add_user(sandbox, "acme", "Alex"))
    # What the store believes: the token expires in a minute, inside the refresher's 5-minute margin.
    expiring = TokenSet(credential.access_token, credential.refresh_token, time.time() + 60, credential.scopes, None)
    assert connected.store.replace(credential, expiring, credential.version) is not None
    before = connected.store.get("owner-1", credential.account_id)
    assert before is not None
    assert client.list_services()
    after = connected.store.get("owner-1", credential.account_id)
    assert after is not None and after.version == before.version + 1
    assert after.expires_at > before.expires_at


def test_revoke_all_tokens_is_needs_reauthorization_with_the_hook_fired_once(connected: Connected) -> None:
    sandbox = connected.vendor.sandbox
    credential, client = connected.link(add_user(sandbox, "acme", "Alex"))
    sandbox._api("POST", f"{OAUTH_API}/apps/{connected.vendor.client_id}/revoke")
    for _ in range(3):
        with pytest.raises(NeedsReauthorization):
            client.list_services()
    assert len(connected.hooked) == 1
    stored = connected.store.get("owner-1", credential.account_id)
    assert stored is not None and stored.needs_reauthorization
    # Reconnecting clears the mark and the calls work again.
    connected.link(credential.account.user_id)
    assert client.list_services()


def test_an_observer_cannot_create_a_subscription_and_is_told_about_the_role(connected: Connected) -> None:
    sandbox = connected.vendor.sandbox
    _, client = connected.link(add_user(sandbox, "acme", "Olga", role="observer"))
    with pytest.raises(Forbidden) as caught:
        client.create_webhook_subscription(HOOK_URL, service_id=sandbox.service("Checkout API")["id"])
    assert caught.value.missing == "role"
    assert "needs a Manager, Admin or Owner role" in str(caught.value)


def test_an_eu_account_is_called_at_its_own_base_and_sees_nothing_of_another(connected: Connected) -> None:
    sandbox = connected.vendor.sandbox
    sandbox.create_account("globex", region="eu")
    service_id, _key = sandbox.create_service("Globex Billing", account="globex")
    eu, eu_client = connected.link(add_user(sandbox, "globex", "Gina", role="admin"), owner="owner-2")
    _, us_client = connected.link(add_user(sandbox, "acme", "Alex"))
    assert eu.account.region == "eu" and eu.account.rest_base_url == sandbox.url + "/eu"
    assert [s["id"] for s in eu_client.list_services()] == [service_id]
    assert service_id not in {s["id"] for s in us_client.list_services()}
    with pytest.raises(RestError) as caught:  # the sandbox, like PagerDuty, knows no such service here
        us_client.create_webhook_subscription(HOOK_URL, service_id=service_id)
    assert caught.value.status in (400, 403, 404)
    assert not eu_client.list_webhook_subscriptions()


def test_the_default_transport_reads_every_answer(connected: Connected) -> None:
    """The client's own transport, not the test's: every one of many answers is read whole.

    The sandbox answers with ``Connection: close``, under which RequestsTransport's deadline
    reader lost about half the bodies (``Bad file descriptor``).
    """
    sandbox = connected.vendor.sandbox
    credential, _ = connected.link(add_user(sandbox, "acme", "Alex"))
    client = AccountRestClient(connected.refresher, "owner-1", credential.account_id, retry=NO_WAIT)
    for _ in range(20):
        assert client.list_services()
