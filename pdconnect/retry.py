"""When to retry a delivery, and how long to wait.

PagerDuty's guidance (Events API v2 overview and "Rate Limits"): retry 429, 5xx and network
errors, never 400. Go-pagerduty also treats 408 as temporary, and the legacy Integration API
answers 403 when it rate-limits. Waits grow exponentially with full jitter (a uniformly
random wait between zero and the exponential ceiling, so many clients do not retry in step),
are capped per wait, and are lengthened by a server's ``Retry-After``, never shortened: a
``Retry-After: 0``, or an HTTP date that a client clock running ahead reads as past, must not
turn a retry loop into a burst.

A rate limit is different: PagerDuty asks for "a backoff of a few minutes" or "3 tries 30
seconds apart" (Events API v2 overview and "Rate Limits"), and does not promise a
``Retry-After``. So a 429 (or the legacy API's 403) waits at least
:attr:`RetryPolicy.rate_limit_delay`, not the short exponential backoff, whatever
``Retry-After`` says; a longer ``Retry-After`` is waited as given.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum

from pdconnect.integration import EventsApi

#: A ``Retry-After`` longer than this (a day) is treated as this.
MAX_RETRY_AFTER = 86_400.0
#: PagerDuty's "Rate Limits" page: "retrying 3 times with each request being 30 seconds apart".
RATE_LIMIT_DELAY = 30.0

# delay-seconds (RFC 9110 10.2.3) is digits; a fraction is accepted too (the sandbox sends them).
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


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


def is_rate_limited(status: int | None, api: EventsApi) -> bool:
    """Whether ``status`` is PagerDuty's "slow down": 429, or 403 on the legacy API."""
    return status == 429 or (status == 403 and api is EventsApi.V1)


def parse_retry_after(value: object, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date.

    Returns ``None`` for a missing or unreadable header (a negative number, ``NaN``, words,
    control characters, anything but a ``str``); a date in the past gives ``0``; anything
    longer than :data:`MAX_RETRY_AFTER` gives that.
    """
    if not isinstance(value, str):
        return None
    value = value.strip(" \t")
    if not value or len(value) > 200:
        return None
    if _SECONDS.fullmatch(value):
        seconds = float(value)  # a thousand digits is inf, never an error
        return min(seconds, MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        delta = (when - (now if now is not None else datetime.now(UTC))).total_seconds()
    except OverflowError:
        return None
    if math.isnan(delta):
        return None
    return min(max(delta, 0.0), MAX_RETRY_AFTER)


@dataclass(frozen=True)
class RetryPolicy:
    """How persistently one send tries.

    ``max_attempts`` counts every request including the first. The n-th retry waits a random
    time between 0 and ``min(max_delay, base_delay * 2 ** (n - 1))`` seconds, or the server's
    ``Retry-After`` if that is longer. A rate limit waits the ``Retry-After`` if it is at least
    ``rate_limit_delay``, else between ``rate_limit_delay`` and 1.2 times that: a shorter,
    zero, past or unreadable ``Retry-After`` never hurries it. ``deadline`` bounds
    the whole send, waits included: a wait that would pass it ends the send at once, with
    :class:`~pdconnect.errors.RateLimited` for a rate limit and
    :class:`~pdconnect.errors.DeliveryFailed` otherwise.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    deadline: float = 120.0
    rate_limit_delay: float = RATE_LIMIT_DELAY

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError("max_attempts must be a whole number, at least 1")
        for name in ("base_delay", "max_delay", "deadline", "rate_limit_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number of seconds")
            if value < 0 or (name == "deadline" and value == 0):
                raise ValueError("delays must not be negative and the deadline must be positive")

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """The wait before retry number ``retry_number`` (1 for the first retry), with full jitter."""
        ceiling = min(self.max_delay, self.base_delay * (2 ** min(retry_number - 1, 62)))
        return rng.uniform(0.0, ceiling)

    def wait(self, retry_number: int, rng: random.Random, *, retry_after: float | None, rate_limited: bool) -> float:
        """The wait before retry number ``retry_number``, in seconds.

        For a rate limit, never less than ``rate_limit_delay``; otherwise never less than the
        backoff. ``retry_after`` (from :func:`parse_retry_after`) only ever lengthens the wait,
        up to :data:`MAX_RETRY_AFTER`; a negative or non-finite one is ignored.
        """
        if retry_after is not None:
            retry_after = min(retry_after, MAX_RETRY_AFTER) if retry_after >= 0.0 else None  # NaN is not >= 0
        if rate_limited:
            if retry_after is not None and retry_after >= self.rate_limit_delay:
                return retry_after
            return self.rate_limit_delay * (1.0 + 0.2 * rng.random())
        backoff = self.backoff(retry_number, rng)
        return max(backoff, retry_after) if retry_after is not None else backoff

    @classmethod
    def no_retries(cls) -> RetryPolicy:
        """Make exactly one attempt (an outbox schedules its own retries)."""
        return cls(max_attempts=1)
