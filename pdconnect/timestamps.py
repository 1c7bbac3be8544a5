"""Reading times from JSON and from databases, always as timezone-aware UTC-or-offset values."""

from __future__ import annotations

from datetime import UTC, datetime

#: Longer strings are not timestamps (and are not worth parsing).
MAX_TIMESTAMP_LENGTH = 64


def parse_timestamp(value: object) -> datetime | None:
    """An ISO 8601 string as an aware datetime (a naive one is taken as UTC); else ``None``."""
    if not isinstance(value, str) or len(value) > MAX_TIMESTAMP_LENGTH:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return as_utc(moment)


def as_utc(value: datetime | None) -> datetime | None:
    """``value`` with UTC attached if it is naive (SQLite hands back naive datetimes stored in UTC)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
