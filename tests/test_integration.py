from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pdconnect import EventsApi, Integration, KeyType, Origin, Region, integration_from_key
from pdconnect.errors import InvalidIntegrationKey
from tests.conftest import RULESET_KEY, SERVICE_KEY


def test_pasted_key_becomes_a_v2_integration() -> None:
    integration = integration_from_key(f" {SERVICE_KEY} ", owner_id="org-7", service_name="Checkout")
    assert integration.integration_key == SERVICE_KEY
    assert integration.owner_id == "org-7"
    assert integration.origin is Origin.PASTED
    assert integration.events_api is EventsApi.V2
    assert integration.key_type is KeyType.SERVICE
    assert integration.region is Region.US
    assert integration.service_name == "Checkout"
    assert integration.connected_at.tzinfo is not None


def test_pasted_ruleset_key_is_classified_and_refuses_change_events() -> None:
    integration = integration_from_key(RULESET_KEY, owner_id="o", region=Region.EU)
    assert integration.key_type is KeyType.RULESET
    assert integration.region is Region.EU
    assert not integration.accepts_change_events


def test_pasted_bad_key_is_refused() -> None:
    with pytest.raises(InvalidIntegrationKey):
        integration_from_key("not-a-key", owner_id="o")


def test_repr_and_str_never_show_the_key() -> None:
    integration = Integration(
        owner_id="o",
        integration_key=SERVICE_KEY,
        origin=Origin.CONNECT,
        events_api=EventsApi.V1,
        key_type=KeyType.SERVICE,
        account="acme",
        connected_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    for text in (repr(integration), str(integration), f"{integration}", repr([integration])):
        assert SERVICE_KEY not in text
        assert SERVICE_KEY[:-4] not in text
        assert "d1a6" in text
    assert "account='acme'" in repr(integration)


def test_with_region_copies() -> None:
    integration = integration_from_key(SERVICE_KEY, owner_id="o")
    moved = integration.with_region(Region.EU)
    assert moved.region is Region.EU
    assert integration.region is Region.US
