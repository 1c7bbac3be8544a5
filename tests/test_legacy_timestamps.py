"""A legacy (v1) event made from an alert carries its timestamp as the v2 body would (issue 9).

``LegacyEvent.from_alert`` used to copy a string unchecked, a naive datetime as it was, and a
datetime that does not exist in UTC in its local time: one event was refused on the v2 route
and sent on the legacy one. Now both routes apply the same check and raise the same error.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.errors import EventValidationError
from pdconnect.events import AlertEvent, LegacyEvent
from pdconnect.payloads import alert_body, legacy_body

KEY = "R" * 32
PLUS_ONE = timezone(timedelta(hours=1))


class _BrokenZone(tzinfo):
    """A tzinfo whose offset cannot be read."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        raise ValueError("no offset")

    def tzname(self, dt: datetime | None) -> str:
        return "broken"

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)


def _trigger(timestamp: object) -> AlertEvent:
    return AlertEvent.trigger("disk full", source="db-1", severity="error", timestamp=timestamp)  # type: ignore[arg-type]


def _v2_problems(timestamp: object) -> list[str] | None:
    try:
        alert_body(_trigger(timestamp), routing_key=KEY)
    except EventValidationError as exc:
        return list(exc.problems)
    return None


@pytest.mark.parametrize(
    ("timestamp", "problem"),
    [
        (datetime(2026, 12, 2, 13, 0), "timestamp must carry a timezone"),
        ("2026-12-02T13:00:00", "timestamp must carry a timezone"),
        ("not a time", "timestamp must be an ISO 8601 date and time"),
        ("", "timestamp must be an ISO 8601 date and time"),
        ("2026-13-02T13:00:00+00:00", "timestamp must be an ISO 8601 date and time"),
        ("2026-12-02T13:00:00+00:00\n", "timestamp must be an ISO 8601 date and time"),
        (datetime(1, 1, 1, 0, 30, tzinfo=PLUS_ONE), "timestamp must be a date and time that exists in UTC"),
        ("0001-01-01T00:30:00+01:00", "timestamp must be a date and time that exists in UTC"),
        (datetime(2026, 1, 1, tzinfo=_BrokenZone()), "timestamp must be a date and time that exists in UTC"),
        (1764680400, "timestamp must be a datetime or an ISO 8601 string"),
        (b"2026-12-02T13:00:00+00:00", "timestamp must be a datetime or an ISO 8601 string"),
    ],
)
def test_a_timestamp_v2_refuses_is_refused_for_a_legacy_integration(timestamp: object, problem: str) -> None:
    v2 = _v2_problems(timestamp)
    assert v2 is not None and any(p.startswith(problem) for p in v2)
    with pytest.raises(EventValidationError) as refused:
        LegacyEvent.from_alert(_trigger(timestamp))
    assert [p for p in refused.value.problems if p.startswith("timestamp")] == [
        p for p in v2 if p.startswith("timestamp")
    ]


@pytest.mark.parametrize(
    ("timestamp", "sent"),
    [
        (datetime(2026, 12, 2, 14, 0, tzinfo=PLUS_ONE), "2026-12-02T13:00:00+00:00"),
        ("2026-12-02T14:00:00+01:00", "2026-12-02T13:00:00+00:00"),
        ("2026-12-02T13:00:00Z", "2026-12-02T13:00:00+00:00"),
        (datetime(2026, 12, 2, 13, 0, tzinfo=UTC), "2026-12-02T13:00:00+00:00"),
    ],
)
def test_a_good_timestamp_is_sent_in_utc_on_both_routes(timestamp: object, sent: str) -> None:
    legacy = legacy_body(LegacyEvent.from_alert(_trigger(timestamp)), service_key=KEY)
    assert legacy["details"]["timestamp"] == sent
    assert alert_body(_trigger(timestamp), routing_key=KEY)["payload"]["timestamp"] == sent


def test_no_timestamp_adds_none() -> None:
    legacy = legacy_body(LegacyEvent.from_alert(_trigger(None)), service_key=KEY)
    assert "timestamp" not in legacy["details"]


def test_a_resolve_is_not_checked_for_a_timestamp() -> None:
    """v1 acknowledge and resolve carry no details, so an alert's timestamp is not sent."""
    event = AlertEvent.resolve("k")
    assert LegacyEvent.from_alert(event).details is None


_zones = st.one_of(
    st.none(), st.timedeltas(timedelta(hours=-23, minutes=-59), timedelta(hours=23, minutes=59)).map(timezone)
)
_moments = st.builds(lambda moment, zone: moment.replace(tzinfo=zone), st.datetimes(), _zones)
_timestamps = st.one_of(_moments, _moments.map(datetime.isoformat), st.text(max_size=40))


def _legacy(timestamp: object) -> dict[str, object] | list[str]:
    """The legacy body's details for ``timestamp``, or the problems it was refused with."""
    try:
        body = legacy_body(LegacyEvent.from_alert(_trigger(timestamp)), service_key=KEY)
    except EventValidationError as exc:
        return [p for p in exc.problems if p.startswith("timestamp")]
    details: dict[str, object] = body["details"]
    return details


@given(timestamp=_timestamps)
def test_property_both_routes_accept_and_send_the_same_timestamps(timestamp: datetime | str) -> None:
    v2_problems = _v2_problems(timestamp)
    legacy = _legacy(timestamp)
    if v2_problems is not None:
        assert legacy == v2_problems
    else:
        assert isinstance(legacy, dict)
        sent = alert_body(_trigger(timestamp), routing_key=KEY)["payload"].get("timestamp")
        assert legacy.get("timestamp") == sent
