"""When to retry a delivery, and how long to wait.

PagerDuty's guidance (Events API v2 overview and "Rate Limits"): retry 429, 5xx and network
errors, never 400. Go-pagerduty also treats 408 as temporary, and the legacy Integration API
answers 403 when it rate-limits. Waits grow exponentially with full jitter (a uniformly
random wait between zero and the exponential ceiling, so many clients do not retry in step),
are capped per wait, and give way to a server's ``Retry-After``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

from pdconnect.integration import EventsApi

#: A ``Retry-After`` longer than this (a day) is treated as this.
MAX_RETRY_AFTER = 86_400.0


class Verdict(StrEnum):
    """What to do after one attempt."""

    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"


def classify_status(status: int, api: EventsApi) -> Verdict:
    """Decide from an HTTP status whether the event was delivered, may be retried, or is refused.

    2xx is delivered. 408, 429 and 5xx may be retried; so may 403 on the legacy API, its
    rate-limit answer. Every other status (400, other 4xx, and 3xx: redirects are never
    followed to PagerDuty) is final.
    """
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status in (408, 429) or 500 <= status < 600:
        return Verdict.RETRY
    if status == 403 and api is EventsApi.V1:
        return Verdict.RETRY
    return Verdict.REJECTED


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date).

    Returns ``None`` for a missing or unreadable header; a date in the past gives ``0``.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delta, 0.0), MAX_RETRY_AFTER)


@dataclass(frozen=True)
class RetryPolicy:
    """How persistently one send tries.

    ``max_attempts`` counts every request including the first. The n-th retry waits a random
    time between 0 and ``min(max_delay, base_delay * 2 ** (n - 1))`` seconds, unless the
    server sent ``Retry-After``, which is honoured as given. ``deadline`` bounds the whole
    send, waits included: a wait that would pass it ends the send with
    :class:`~pdconnect.errors.DeliveryFailed` instead.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    deadline: float = 120.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_delay < 0 or self.max_delay < 0 or self.deadline <= 0:
            raise ValueError("delays must not be negative and the deadline must be positive")

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """The wait before retry number ``retry_number`` (1 for the first retry), with full jitter."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** min(retry_number - 1, 62)))
        return rng.uniform(0.0, ceiling)

    @classmethod
    def no_retries(cls) -> RetryPolicy:
        """Make exactly one attempt (an outbox schedules its own retries)."""
        return cls(max_attempts=1)
