"""The framework-free connection service: the install check and region, without a web framework."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect import Integration
from pdconnect.integration import EventsApi, Origin, Region
from pdconnect.keys import KeyType
from pdconnect.oauth import AccountIdentity, TokenSet
from pdconnect.oauth.connection import AccountConnections, InstallAccountMismatch
from pdconnect.oauth.credentials import MemoryCredentialStore
from pdconnect.oauth.refresh import TokenRefresher
from pdconnect.storage import MemoryIntegrationStore
from pdconnect.webhooks import MemoryWebhookSecretStore
from tests.conftest import SERVICE_KEY


class _NoRefresh:
    def refresh(self, refresh_token: str) -> TokenSet:  # pragma: no cover - never reached
        raise AssertionError("no refresh expected")


def _identity(subdomain: str, region: str = "us") -> AccountIdentity:
    base = "https://api.pagerduty.com" if region == "us" else "https://api.eu.pagerduty.com"
    events = "https://events.pagerduty.com" if region == "us" else "https://events.eu.pagerduty.com"
    return AccountIdentity(subdomain, f"P{subdomain.upper()[:6]}", "PUSER1", "PDELEG1", region, base, events)  # type: ignore[arg-type]


def _service(**changes: Any) -> AccountConnections:
    store = MemoryCredentialStore()
    refresher = TokenRefresher(store, _NoRefresh())
    tokens = TokenSet("pdus+_0access", "pdus+_1refresh", time.time() + 3600, frozenset({"openid", "write"}), None)
    store.save("owner-1", _identity("acme"), tokens)
    store.save("owner-1", _identity("globex", "eu"), tokens)
    store.save("owner-2", _identity("initech"), tokens)
    options: dict[str, Any] = {"webhook_url": None, "subscribe": False, **changes}
    return AccountConnections(None, store, refresher, MemoryWebhookSecretStore(), MemoryIntegrationStore(), **options)


def _installed(account: str | None, owner: str = "owner-1") -> Integration:
    return Integration(
        owner_id=owner,
        integration_key=SERVICE_KEY,
        origin=Origin.INSTALL,
        events_api=EventsApi.V2,
        key_type=KeyType.SERVICE,
        account=account,
    )


@pytest.mark.parametrize(
    "claimed",
    [None, "", " acme", "acme ", "acme.evil.example", "acme\x00", "ac/me", "a" * 100, 5, ["acme"], "initech", "evil"],
)
def test_an_install_config_for_an_account_the_owner_did_not_connect_is_refused(claimed: Any) -> None:
    with pytest.raises(InstallAccountMismatch) as caught:
        _service().check_install("owner-1", claimed)
    assert caught.value.connected == ("acme", "globex")
    assert "\n" not in str(caught.value)


def test_an_owner_without_connections_is_told_to_connect_first() -> None:
    with pytest.raises(InstallAccountMismatch, match="connect PagerDuty"):
        _service().check_install("owner-3", "acme")


def test_the_install_s_integrations_get_the_account_s_region() -> None:
    service = _service()
    service.check_install("owner-1", "acme")
    (eu,) = service.install_integrations("owner-1", [_installed("globex")])
    assert eu.region is Region.EU
    (saved,) = service.save_install("owner-1", [_installed("acme")])
    assert saved.region is Region.US and saved.id
    with pytest.raises(InstallAccountMismatch):
        service.install_integrations("owner-1", [_installed("acme"), _installed("initech")])
    with pytest.raises(ValueError, match="owner"):
        service.install_integrations("owner-1", [_installed("acme", owner="owner-2")])


def test_subscribing_needs_a_safe_webhook_url() -> None:
    with pytest.raises(ValueError, match="webhook_url"):
        _service(subscribe=True, webhook_url=None)
    with pytest.raises(ValueError):
        _service(subscribe=True, webhook_url="http://evil.example/hook")


@given(st.one_of(st.text(max_size=70), st.sampled_from(["acme", "ACME", "Globex", "globex", "initech", "acme-"])))
def test_check_install_accepts_exactly_the_owner_s_subdomains(claimed: str) -> None:
    service = _service()
    try:
        service.check_install("owner-1", claimed)
    except InstallAccountMismatch:
        accepted = False
    else:
        accepted = True
    # Subdomains are lowercase DNS labels: "ACME" is not acme's config, it is malformed.
    assert accepted == (claimed in ("acme", "globex"))
