"""Every SQL store shows its database URL the one way: password and password-like query keys masked.

libpq and psycopg take ``?password=`` in the query as well as in the userinfo; a repr or a
start-up line that masked only the userinfo printed the other one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdconnect.oauth import TokenCipher
from pdconnect.oauth.credentials import SqlCredentialStore
from pdconnect.storage import SqlIntegrationStore
from pdconnect.webhooks.deliveries import SqlDeliveryLog
from pdconnect.webhooks.incidents import IncidentStateStore
from pdconnect.webhooks.secrets import SqlWebhookSecretStore

STORES: dict[str, Callable[[str], Any]] = {
    "integrations": lambda url: SqlIntegrationStore(url, create_tables=False),
    "webhook secrets": lambda url: SqlWebhookSecretStore(url, create_tables=False),
    "deliveries": lambda url: SqlDeliveryLog(url, create_tables=False),
    "incidents": lambda url: IncidentStateStore(url, create_tables=False),
    "credentials": lambda url: SqlCredentialStore(
        url, cipher=TokenCipher([TokenCipher.generate_key()]), create_tables=False
    ),
}


@pytest.mark.parametrize("make", STORES.values(), ids=STORES.keys())
@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://acme:pw-in-userinfo-1@127.0.0.1/acme?password=pw-in-query-2",
        "postgresql+psycopg://acme@127.0.0.1/acme?sslpassword=pw-in-query-2&application_name=x",
        "postgresql+psycopg://acme:pw-in-userinfo-1@127.0.0.1/acme",
    ],
)
def test_a_store_repr_masks_every_password(make: Callable[[str], Any], url: str) -> None:
    shown = repr(make(url))
    assert "pw-in-userinfo-1" not in shown and "pw-in-query-2" not in shown
    assert "127.0.0.1/acme" in shown


@settings(max_examples=40, deadline=None)
@given(secret=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=30))
def test_no_store_repr_shows_a_query_password(secret: str) -> None:
    url = f"postgresql+psycopg://acme@127.0.0.1/acme?password=zz{secret}"
    for make in STORES.values():
        assert f"zz{secret}" not in repr(make(url))


@pytest.mark.parametrize(
    "base_url",
    ["http://user:pw-in-userinfo-1@127.0.0.1:9/", "http://:pw-in-userinfo-1@127.0.0.1:9/v2"],
)
def test_a_prepared_event_repr_masks_credentials_in_its_url(base_url: str) -> None:
    from pdconnect import AlertEvent, Sender
    from tests.conftest import SERVICE_KEY

    prepared = Sender(events_base_url=base_url).prepare(SERVICE_KEY, AlertEvent.resolve("k"))
    shown = repr(prepared)
    assert "pw-in-userinfo-1" not in shown and "pw-in-query-2" not in shown


def test_a_base_url_with_a_query_password_is_refused_without_showing_it() -> None:
    from pdconnect import Sender
    from pdconnect.errors import UnsafeURLError

    with pytest.raises(UnsafeURLError) as caught:
        Sender(events_base_url="http://127.0.0.1:9/?password=pw-in-query-2")
    assert "pw-in-query-2" not in str(caught.value)
