"""A dedup or incident key holding NUL is refused when the event is checked, on every path.

The outbox refused it at enqueue (PostgreSQL's text columns take no NUL), while an inline
``Sender`` sent it: the two paths must give the same typed error before anything is stored or
sent.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect import AlertEvent, LegacyEvent
from pdconnect.errors import EventValidationError
from pdconnect.payloads import alert_body, legacy_body
from tests.conftest import SERVICE_KEY

NUL_KEYS = ["\x00", "a\x00", "\x00b", "srv01\x00/mysql", "x" * 100 + "\x00"]


@pytest.mark.parametrize("key", NUL_KEYS)
@pytest.mark.parametrize("make", [AlertEvent.acknowledge, AlertEvent.resolve], ids=["acknowledge", "resolve"])
def test_a_dedup_key_with_nul_is_refused(make: object, key: str) -> None:
    with pytest.raises(EventValidationError, match="dedup_key must not contain a NUL"):
        alert_body(make(key), routing_key=SERVICE_KEY)  # type: ignore[operator]


@pytest.mark.parametrize("key", NUL_KEYS)
def test_a_trigger_with_a_nul_dedup_key_is_refused(key: str) -> None:
    event = AlertEvent.trigger("Disk full", source="srv01", severity="error", dedup_key=key)
    with pytest.raises(EventValidationError, match="dedup_key must not contain a NUL"):
        alert_body(event, routing_key=SERVICE_KEY)


@pytest.mark.parametrize("key", NUL_KEYS)
def test_an_incident_key_with_nul_is_refused(key: str) -> None:
    with pytest.raises(EventValidationError, match="incident_key must not contain a NUL"):
        legacy_body(LegacyEvent(event_type="resolve", incident_key=key), service_key=SERVICE_KEY)


@given(head=st.text(max_size=40), tail=st.text(max_size=40))
def test_any_key_holding_nul_is_refused(head: str, tail: str) -> None:
    with pytest.raises(EventValidationError):
        alert_body(AlertEvent.resolve(f"{head}\x00{tail}"), routing_key=SERVICE_KEY)
