"""Reading ISO 8601 times: aware results, naive ones taken as UTC, anything else None."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.timestamps import as_utc, parse_timestamp


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-22T10:05:00Z", datetime(2026, 11, 22, 10, 5, tzinfo=UTC)),
        ("2026-11-22T10:05:00", datetime(2026, 11, 22, 10, 5, tzinfo=UTC)),
        ("2026-11-22", datetime(2026, 11, 22, tzinfo=UTC)),
        ("2026-11-22T11:05:00+01:00", datetime(2026, 11, 22, 11, 5, tzinfo=timezone(timedelta(hours=1)))),
        ("yesterday", None),
        ("", None),
        ("2026-13-01", None),
        ("2026-11-22T10:05:00Z" + " " * 60, None),
        (1795333900, None),
        (None, None),
        (["2026-11-22"], None),
    ],
)
def test_parse_timestamp(value: object, expected: datetime | None) -> None:
    assert parse_timestamp(value) == expected


def test_as_utc() -> None:
    assert as_utc(None) is None
    assert as_utc(datetime(2026, 1, 1)) == datetime(2026, 1, 1, tzinfo=UTC)


@given(st.text(max_size=80) | st.integers() | st.none())
def test_anything_is_a_time_or_none(value: object) -> None:
    moment = parse_timestamp(value)
    assert moment is None or moment.tzinfo is not None
