"""The sender: validated events to PagerDuty's Events APIs, retried the way PagerDuty asks.

A :class:`Sender` is configured once with the vendor's fields (``client``, ``client_url``,
and the legacy ``vendor`` key) and then sends events to any number of integrations::

    sender = Sender(client="Acme Monitoring", client_url="https://acme.example")
    result = sender.trigger(integration, "CPU above 95% on web-1", source="web-1", severity="critical")
    sender.resolve(integration, result.dedup_key)

Sending is two steps that can also be used apart: :meth:`Sender.prepare` validates the event
and builds the exact request (an outbox stores that), and :meth:`Sender.deliver` sends it,
retrying temporary failures. :meth:`Sender.attempt` makes exactly one request.

A sender holds no per-request state: one instance can be shared by many threads. Its
``requests.Session`` pools connections (``pool_size`` per host when the sender makes the
session); a session passed in is shared as it is, so size its adapter for the threads.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import requests

from pdconnect.errors import (
    ConfigError,
    DeliveryFailed,
    EventRejected,
    EventValidationError,
    InvalidRoutingKey,
    RateLimited,
)
from pdconnect.events import (
    AlertEvent,
    ChangeEvent,
    Event,
    ImageLike,
    LegacyEvent,
    LinkLike,
    Severity,
    coerce_images,
    coerce_links,
)
from pdconnect.integration import EventsApi, Integration, Region
from pdconnect.keys import KeyType, classify_key, normalize_key, redact
from pdconnect.payloads import alert_body, change_body, check_vendor_fields, encode_body, legacy_body
from pdconnect.retry import RetryPolicy, Verdict, classify_status, is_rate_limited, parse_retry_after
from pdconnect.transport import HttpResponse, RequestsTransport, Transport, TransportError
from pdconnect.urls import EVENTS_BASE_URLS, check_base_url, masked_url
from pdconnect.version import __version__

logger = logging.getLogger("pdconnect")

#: Paths from PagerDuty's Events API schemas (``events-v2`` and ``events-v1`` OpenAPI documents).
ALERT_PATH = "/v2/enqueue"
CHANGE_PATH = "/v2/change/enqueue"
LEGACY_PATH = "/generic/2010-04-15/create_event.json"
#: (connect, read) seconds. Connect is short: PagerDuty is either reachable or not.
DEFAULT_TIMEOUT = (3.05, 10.0)
USER_AGENT = f"pdconnect/{__version__}"
_MAX_MESSAGE = 500
#: What PagerDuty's 400 says (as an ``errors`` entry, or as the message when ``errors`` is
#: empty) for a key it does not know: deleted, disabled, never made. Compared without case,
#: spacing or a final full stop. Client logs show "Invalid routing key" on Events API v2; the
#: legacy API calls the key a service key.
_UNKNOWN_KEY_ERRORS = {
    EventsApi.V2: frozenset({"invalid routing key"}),
    EventsApi.V1: frozenset({"invalid service key", "invalid routing key"}),
}

#: What a sender can send to: an integration, or a bare Events API v2 routing key (US region).
Target = Integration | str


class EventKind(StrEnum):
    """Which endpoint a prepared event goes to."""

    ALERT = "alert"
    CHANGE = "change"
    LEGACY = "legacy"


@dataclass(frozen=True, repr=False)
class PreparedEvent:
    """A validated event, ready to send: the URL, the exact body, and what identifies it.

    ``dedup_key`` is the key the alert will carry (generated for a trigger that had none);
    ``None`` for change events. The ``repr`` hides the routing key and body.
    """

    kind: EventKind
    api: EventsApi
    url: str
    body: bytes
    routing_key: str
    action: str
    dedup_key: str | None

    def __repr__(self) -> str:
        return (
            f"PreparedEvent(kind={self.kind.value}, action={self.action}, key={redact(self.routing_key)!r}, "
            f"dedup_key={self.dedup_key!r}, url={masked_url(self.url)!r}, bytes={len(self.body)})"
        )


@dataclass(frozen=True)
class SendResult:
    """A delivered event: PagerDuty's status and message, the dedup key, how many attempts."""

    status: int
    message: str | None
    dedup_key: str | None
    attempts: int


@dataclass(frozen=True)
class AttemptOutcome:
    """What one request gave: a :class:`~pdconnect.retry.Verdict` and what the server said.

    ``rate_limited`` is true for PagerDuty's "slow down" (429, or 403 on the legacy API);
    ``invalid_key`` for its 400 saying the integration key is unknown (deleted or disabled):
    then the integration, not the event, is at fault.
    """

    verdict: Verdict
    status: int | None
    reason: str
    message: str | None = None
    errors: tuple[str, ...] = ()
    dedup_key: str | None = None
    retry_after: float | None = None
    rate_limited: bool = False
    invalid_key: bool = False


@dataclass
class _Defaults:
    client: str | None
    client_url: str | None
    vendor_key: str | None
    base_urls: dict[Region, str] = field(default_factory=dict)


class Sender:
    """Sends events to PagerDuty for any number of integrations.

    ``client`` and ``client_url`` are added to every trigger ("View in {client}" in
    PagerDuty); ``vendor_key`` is added as ``vendor`` to legacy Integration API events. Each
    event may override ``client`` and ``client_url``.

    ``events_base_url`` sends everything to one host (the sandbox in tests);
    ``events_base_urls`` maps each :class:`~pdconnect.integration.Region` to a host. By
    default US integrations go to ``events.pagerduty.com`` and EU ones to
    ``events.eu.pagerduty.com``.

    ``session`` or ``transport`` choose the HTTP layer (by default a new
    ``requests.Session``); ``retry`` and ``timeout`` how hard to try. ``sleep``, ``clock``
    and ``rng`` exist for tests.

    A rate limit is waited out only while the wait fits in what is left of the retry
    policy's ``deadline``; beyond that :meth:`deliver` raises
    :class:`~pdconnect.errors.RateLimited` at once, carrying ``retry_at``.
    """

    def __init__(
        self,
        *,
        client: str | None = None,
        client_url: str | None = None,
        vendor_key: str | None = None,
        events_base_url: str | None = None,
        events_base_urls: Mapping[Region, str] | None = None,
        session: requests.Session | None = None,
        transport: Transport | None = None,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        user_agent: str = USER_AGENT,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        if session is not None and transport is not None:
            raise ValueError("give either a session or a transport, not both")
        if events_base_url is not None and events_base_urls is not None:
            raise ValueError("give either events_base_url or events_base_urls, not both")
        if events_base_url is not None:
            base_urls = {region: check_base_url(events_base_url) for region in Region}
        else:
            base_urls = {region: check_base_url(url) for region, url in (events_base_urls or EVENTS_BASE_URLS).items()}
        self._defaults = _Defaults(client=client, client_url=client_url, vendor_key=vendor_key, base_urls=base_urls)
        # Fail at construction, not on the first trigger, if the vendor fields are bad.
        check_vendor_fields(client=client, client_url=client_url)
        self.transport: Transport = transport if transport is not None else RequestsTransport(session)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigError(f"retry must be a RetryPolicy, not a {type(retry).__name__}", setting="retry")
        self.retry = retry if retry is not None else RetryPolicy()
        self.timeout = _check_timeout(timeout)
        # A CR or LF would be refused by the HTTP library on every send, as a retryable failure.
        if not isinstance(user_agent, str) or not user_agent or not _HEADER_VALUE.fullmatch(user_agent):
            raise ConfigError("user_agent must be printable ASCII on one line", setting="user_agent")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json", "User-Agent": user_agent}
        self._sleep = sleep
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 -- jitter, not secrecy

    def __repr__(self) -> str:
        base_urls = [masked_url(url) for url in self._defaults.base_urls.values()]
        return f"Sender(client={self._defaults.client!r}, base_urls={base_urls!r})"

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session if the sender made it."""
        self.transport.close()

    # -- preparing ---------------------------------------------------------------------------

    def prepare(self, target: Target, event: Event) -> PreparedEvent:
        """Validate ``event`` for ``target`` and build the exact request; no network.

        An :class:`~pdconnect.events.AlertEvent` goes to the API the integration speaks (it is
        converted for a legacy integration); a :class:`~pdconnect.events.LegacyEvent` always
        goes to the legacy API and a :class:`~pdconnect.events.ChangeEvent` to the change
        endpoint. Raises :class:`~pdconnect.errors.EventValidationError` listing every problem.
        """
        if isinstance(target, Integration):
            key, api, region = target.integration_key, target.events_api, target.region
        else:
            key, api, region = _bare_key(target), EventsApi.V2, Region.US
        base = self._defaults.base_urls[region]
        defaults = self._defaults
        if isinstance(event, ChangeEvent):
            if classify_key(key) is KeyType.RULESET:
                raise EventValidationError(["ruleset keys (starting with R) do not accept change events"])
            body = change_body(event, routing_key=key)
            return PreparedEvent(
                EventKind.CHANGE, EventsApi.V2, base + CHANGE_PATH, encode_body(body), key, "change", None
            )
        if isinstance(event, AlertEvent) and api is EventsApi.V1:
            event = LegacyEvent.from_alert(event)
        if isinstance(event, LegacyEvent):
            body = legacy_body(
                event,
                service_key=key,
                vendor=defaults.vendor_key,
                client=defaults.client,
                client_url=defaults.client_url,
            )
            return PreparedEvent(
                EventKind.LEGACY,
                EventsApi.V1,
                base + LEGACY_PATH,
                encode_body(body),
                key,
                body["event_type"],
                body["incident_key"],
            )
        if isinstance(event, AlertEvent):
            body = alert_body(event, routing_key=key, client=defaults.client, client_url=defaults.client_url)
            return PreparedEvent(
                EventKind.ALERT,
                EventsApi.V2,
                base + ALERT_PATH,
                encode_body(body),
                key,
                body["event_action"],
                body["dedup_key"],
            )
        raise TypeError(f"cannot send a {type(event).__name__}; expected AlertEvent, ChangeEvent or LegacyEvent")

    # -- sending -----------------------------------------------------------------------------

    def attempt(self, prepared: PreparedEvent) -> AttemptOutcome:
        """Make exactly one request for ``prepared`` and say what came of it; never raises."""
        try:
            response = self.transport.post(prepared.url, prepared.body, self._headers, self.timeout)
        except TransportError as exc:
            verdict = Verdict.RETRY if exc.retryable else Verdict.REJECTED
            return AttemptOutcome(verdict=verdict, status=None, reason=exc.reason)
        return _read_outcome(response, prepared)

    def deliver(self, prepared: PreparedEvent) -> SendResult:
        """Send ``prepared``, retrying temporary failures within the retry policy.

        Returns a :class:`SendResult` once PagerDuty accepts the event. Raises
        :class:`~pdconnect.errors.InvalidRoutingKey` when PagerDuty does not know the key
        (deleted or disabled: reconnect), :class:`~pdconnect.errors.EventRejected` for any other
        final refusal (400 and other 4xx), :class:`~pdconnect.errors.RateLimited` when PagerDuty
        asks to wait longer than the deadline leaves (or attempts run out while it does), and
        :class:`~pdconnect.errors.DeliveryFailed` when attempts or time run out otherwise.
        """
        policy = self.retry
        started = self._clock()
        outcome: AttemptOutcome | None = None
        attempts = 0
        wait = 0.0
        for attempts in range(1, policy.max_attempts + 1):
            outcome = self.attempt(prepared)
            if outcome.verdict is Verdict.DELIVERED:
                assert outcome.status is not None
                _log_event(logging.INFO, "delivered", prepared, outcome, attempts)
                return SendResult(
                    status=outcome.status,
                    message=outcome.message,
                    dedup_key=prepared.dedup_key or outcome.dedup_key,
                    attempts=attempts,
                )
            if outcome.verdict is Verdict.REJECTED:
                _log_event(logging.ERROR, "rejected", prepared, outcome, attempts)
                if outcome.status is None:
                    raise DeliveryFailed(f"cannot deliver: {outcome.reason}", status=None, attempts=attempts)
                refusal = InvalidRoutingKey if outcome.invalid_key else EventRejected
                raise refusal(
                    status=outcome.status,
                    attempts=attempts,
                    pagerduty_message=outcome.message,
                    errors=outcome.errors,
                )
            wait = policy.wait(attempts, self._rng, retry_after=outcome.retry_after, rate_limited=outcome.rate_limited)
            if attempts == policy.max_attempts:
                break
            if self._clock() - started + wait > policy.deadline:
                _log_event(logging.ERROR, "gave up (deadline)", prepared, outcome, attempts)
                if outcome.rate_limited:
                    raise _rate_limited(outcome, attempts, wait, f"the {policy.deadline:g}s deadline leaves less")
                raise DeliveryFailed(
                    f"gave up: waiting {wait:.1f}s more would pass the {policy.deadline:g}s deadline "
                    f"(last: {outcome.reason})",
                    status=outcome.status,
                    attempts=attempts,
                    retry_after=outcome.retry_after,
                )
            _log_event(logging.WARNING, f"retrying in {wait:.2f}s", prepared, outcome, attempts)
            self._sleep(wait)
        assert outcome is not None
        _log_event(logging.ERROR, "gave up (attempts)", prepared, outcome, attempts)
        if outcome.rate_limited:
            raise _rate_limited(outcome, attempts, wait, f"{attempts} attempts were made")
        raise DeliveryFailed(
            f"gave up after {attempts} attempts (last: {outcome.reason})",
            status=outcome.status,
            attempts=attempts,
            retry_after=outcome.retry_after,
        )

    def send(self, target: Target, event: Event) -> SendResult:
        """Validate, then deliver: :meth:`prepare` followed by :meth:`deliver`."""
        return self.deliver(self.prepare(target, event))

    # -- conveniences ------------------------------------------------------------------------

    def trigger(
        self,
        target: Target,
        summary: str,
        *,
        source: str,
        severity: Severity | str,
        dedup_key: str | None = None,
        timestamp: datetime | str | None = None,
        component: str | None = None,
        group: str | None = None,
        event_class: str | None = None,
        custom_details: Mapping[str, Any] | None = None,
        links: Iterable[LinkLike] = (),
        images: Iterable[ImageLike] = (),
        client: str | None = None,
        client_url: str | None = None,
    ) -> SendResult:
        """Trigger an alert; keep ``result.dedup_key`` to acknowledge or resolve it later."""
        event = AlertEvent.trigger(
            summary,
            source=source,
            severity=severity,
            dedup_key=dedup_key,
            timestamp=timestamp,
            component=component,
            group=group,
            event_class=event_class,
            custom_details=custom_details,
            links=links,
            images=images,
            client=client,
            client_url=client_url,
        )
        return self.send(target, event)

    def acknowledge(self, target: Target, dedup_key: str) -> SendResult:
        """Acknowledge the open alert with ``dedup_key``; a 202 does not prove one was open."""
        return self.send(target, AlertEvent.acknowledge(dedup_key))

    def resolve(self, target: Target, dedup_key: str) -> SendResult:
        """Resolve the open alert with ``dedup_key``; a 202 does not prove one was open."""
        return self.send(target, AlertEvent.resolve(dedup_key))

    def change(
        self,
        target: Target,
        summary: str,
        *,
        source: str | None = None,
        timestamp: datetime | str | None = None,
        custom_details: Mapping[str, Any] | None = None,
        links: Iterable[LinkLike] = (),
        images: Iterable[ImageLike] = (),
    ) -> SendResult:
        """Send a change event (a deploy, a config change): shown beside incidents, never pages."""
        event = ChangeEvent(
            summary=summary,
            source=source,
            timestamp=timestamp,
            custom_details=custom_details,
            links=coerce_links(links),
            images=coerce_images(images),
        )
        return self.send(target, event)


_HEADER_VALUE = re.compile(r"[\x20-\x7e]{1,512}")
#: The longest connect or read timeout a sender takes, in seconds.
_MAX_TIMEOUT = 600.0


def _check_timeout(timeout: object) -> tuple[float, float]:
    """``(connect, read)`` seconds, each finite and in (0, 600]: NaN or inf would wait forever."""
    if isinstance(timeout, tuple) and len(timeout) == 2:
        connect, read = timeout
        if all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and 0 < v <= _MAX_TIMEOUT
            for v in (connect, read)
        ):
            return float(connect), float(read)
    raise ConfigError(
        f"timeout must be (connect, read) seconds, each above 0 and at most {_MAX_TIMEOUT:g}", setting="timeout"
    )


def _bare_key(target: object) -> str:
    if not isinstance(target, str):
        raise TypeError("target must be an Integration or a routing key string")
    try:
        return normalize_key(target, name="routing_key")
    except ValueError as exc:
        raise EventValidationError([str(exc)]) from exc


def _rate_limited(outcome: AttemptOutcome, attempts: int, wait: float, why: str) -> RateLimited:
    retry_at = datetime.now(UTC) + timedelta(seconds=wait)
    return RateLimited(
        f"rate limited by PagerDuty (HTTP {outcome.status}): retry at {retry_at.isoformat(timespec='seconds')}, "
        f"in {wait:.1f}s; not waited for because {why}",
        status=outcome.status,
        attempts=attempts,
        retry_after=wait,
        retry_at=retry_at,
    )


def _names_unknown_key(status: int, api: EventsApi, errors: tuple[str, ...], message: str | None) -> bool:
    if status != 400:
        return False
    wanted = _UNKNOWN_KEY_ERRORS[api]
    said = errors if errors else (message or "",)
    return any(" ".join(text.split()).rstrip(".").lower() in wanted for text in said)


def _read_outcome(response: HttpResponse, prepared: PreparedEvent) -> AttemptOutcome:
    verdict = classify_status(response.status, prepared.api)
    data = _json_object(response.body)
    message = _scrub(data.get("message"), prepared.routing_key)
    raw_errors = data.get("errors")
    errors = (
        tuple(_scrub(e, prepared.routing_key) or "" for e in raw_errors[:20]) if isinstance(raw_errors, list) else ()
    )
    echoed = data.get("dedup_key") if prepared.api is EventsApi.V2 else data.get("incident_key")
    retry_after = parse_retry_after(response.headers.get("retry-after")) if verdict is Verdict.RETRY else None
    status_text = _scrub(data.get("status"), prepared.routing_key)
    reason = f"HTTP {response.status}" + (f" {status_text}" if status_text else "")
    return AttemptOutcome(
        verdict=verdict,
        status=response.status,
        reason=reason,
        message=message or status_text,
        errors=errors,
        dedup_key=echoed if isinstance(echoed, str) else None,
        retry_after=retry_after,
        rate_limited=verdict is Verdict.RETRY and is_rate_limited(response.status, prepared.api),
        invalid_key=_names_unknown_key(response.status, prepared.api, errors, message),
    )


def _json_object(body: bytes) -> dict[str, Any]:
    # PagerDuty's bodies are small JSON objects, but a proxy or a 429 may send anything.
    if not body or len(body) > 64 * 1024:
        return {}
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _scrub(value: object, key: str) -> str | None:
    """PagerDuty's text, shortened, with the key masked in case a server echoes it."""
    if not isinstance(value, str):
        return None
    return value.replace(key, redact(key))[:_MAX_MESSAGE]


def _log_event(level: int, what: str, prepared: PreparedEvent, outcome: AttemptOutcome, attempts: int) -> None:
    if not logger.isEnabledFor(level):
        return
    logger.log(
        level,
        "pdconnect: %s %s %s event for key %s after %d attempt(s): %s",
        what,
        prepared.kind.value,
        prepared.action,
        redact(prepared.routing_key),
        attempts,
        outcome.reason + (f" ({outcome.message})" if outcome.message else ""),
        extra={
            "pdconnect_event": {
                "outcome": outcome.verdict.value,
                "kind": prepared.kind.value,
                "action": prepared.action,
                "key": redact(prepared.routing_key),
                "dedup_key": prepared.dedup_key,
                "status": outcome.status,
                "attempts": attempts,
            }
        },
    )
