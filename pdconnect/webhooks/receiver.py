"""Receiving PagerDuty webhooks: size limit, signature, parsing, de-duplication, handlers.

::

    receiver = WebhookReceiver(secret_store=secrets, deliveries=SqlDeliveryLog(engine),
                               incidents=IncidentStateStore(engine))

    @receiver.handler
    def show_in_ui(event: WebhookEvent) -> None:
        ...

    receipt = receiver.receive(raw_body, request_headers)   # then answer receipt.status

What :meth:`WebhookReceiver.receive` answers, and why:

- 202: verified, parsed, handled. 200: an event already handled (nothing done twice). An
  event is known by what is signed, its ``event.id``, within the subscription whose secret
  verified it; the unsigned ``X-Webhook-Id`` plays no part, so a captured body re-sent under
  a fresh id is still a duplicate, and two registered subscriptions never suppress each
  other's events. An event that several secrets verify (PagerDuty signs with two while it
  rotates) is recorded under each, so a replay keeping one signature is still a duplicate.
- 503: the same event is being handled by another request right now; PagerDuty retries
  5xx, and by then the outcome is known.
- :class:`~pdconnect.errors.ReceiveError` subclasses (always 4xx, which PagerDuty does not
  retry): 400 for a missing or malformed signature or subscription header or a bad body,
  400 too for a signed event that occurred longer ago than the delivery log remembers
  (``max_event_age``, 72 hours: PagerDuty retries for 48, so it can only be a replay),
  403 for a signature that matches no secret, 401 for a legacy webhook with the wrong
  token, 413 for a body over the limit.
- If a handler raises, the webhook is forgotten and the exception propagates: answer 500,
  and PagerDuty's retry is handled afresh. Nothing accepted is lost.

V3 webhooks are signed. Legacy V2 webhooks are not; they are accepted only when the
receiver has a ``legacy_token`` and the request carries it (put ``?token=...`` in the URL
given to PagerDuty), compared in constant time. Nothing in their body is signed, so they are
de-duplicated on the message id within the extension the body names (``webhook.id``).
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, overload

from pdconnect.errors import PayloadTooLarge, SignatureMissing, Unauthorized, WebhookError
from pdconnect.webhooks.deliveries import KEEP_FOR, Claim, DeliveryLog, MemoryDeliveryLog, delivery_key
from pdconnect.webhooks.incidents import IncidentStateStore
from pdconnect.webhooks.model import WebhookEvent
from pdconnect.webhooks.parsing import parse_legacy, parse_v3
from pdconnect.webhooks.secrets import MAX_SECRET_LENGTH, WebhookSecretStore
from pdconnect.webhooks.signatures import SIGNATURE_HEADER, matching_secrets

logger = logging.getLogger("pdconnect")

#: PagerDuty drops webhooks over 256 KB; twice that leaves room and still bounds memory.
MAX_BODY_BYTES = 512 * 1024
WEBHOOK_ID_HEADER = "X-Webhook-Id"
SUBSCRIPTION_HEADER = "X-Webhook-Subscription"
PURGE_EVERY = 3600.0

Handler = Callable[[WebhookEvent], None]
#: Whose event it is, for de-duplication: ``("subscription", id, owner)``, :data:`VENDOR_WIDE`
#: or ``("legacy", extension id)``.
Namespace = tuple[str | None, ...]
#: Every vendor-wide secret's events share one namespace: such an event has no owner and an
#: unsigned subscription id, so two deliveries of one event id are the same thing to a handler,
#: and a secret PagerDuty rotates (old and new both configured) cannot open a second namespace.
VENDOR_WIDE: Namespace = ("vendor-wide",)


@dataclass(frozen=True)
class Receipt:
    """What :meth:`WebhookReceiver.receive` did, and the HTTP status to answer with."""

    status: int
    events: tuple[WebhookEvent, ...] = ()
    duplicate: bool = False
    in_progress: bool = False

    def body(self) -> dict[str, Any]:
        """A short JSON answer (PagerDuty ignores it; it helps whoever reads the logs)."""
        if self.in_progress:
            return {"status": "in progress", "retry": True}
        if self.duplicate:
            return {"status": "duplicate"}
        return {"status": "accepted", "events": [e.event_type for e in self.events]}


class HeaderSource(Protocol):
    """Request headers: a dict, or a framework's headers object (werkzeug's, for one)."""

    def get(self, key: str, /) -> str | None: ...

    def items(self) -> Iterable[tuple[str, str]]: ...


def header(headers: HeaderSource, name: str) -> str | None:
    """``headers[name]``, ignoring case (werkzeug's headers do; a plain dict does not)."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == lowered), None)
    if value is not None and not isinstance(value, str):
        raise WebhookError(f"the {name} header is not text")
    return value


class WebhookReceiver:
    """Verifies, parses, de-duplicates and hands PagerDuty's webhooks to handlers.

    ``secrets`` are secrets accepted for every subscription (a vendor-wide subscription, or
    during a migration); ``secret_store`` holds per-subscription secrets registered with the
    owner and integration they belong to. ``incidents``, when given, is kept up to date
    before the handlers run. The receiver holds no request state: one is shared by all
    threads.
    """

    def __init__(
        self,
        *,
        secrets: Sequence[str] = (),
        secret_store: WebhookSecretStore | None = None,
        deliveries: DeliveryLog | None = None,
        incidents: IncidentStateStore | None = None,
        legacy_token: str | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_event_age: float | None = KEEP_FOR,
    ) -> None:
        if isinstance(secrets, str):
            raise TypeError("secrets must be a list of strings, not one string")
        if max_event_age is not None:
            if isinstance(max_event_age, bool) or not isinstance(max_event_age, int | float):
                raise TypeError("max_event_age must be a number of seconds, or None")
            if not 0 < max_event_age <= KEEP_FOR:  # NaN fails this too
                raise ValueError(
                    f"max_event_age must be more than 0 and at most {KEEP_FOR:.0f} seconds, how long the "
                    "delivery log remembers an event (older replays would be handled again)"
                )
        self.max_event_age = max_event_age
        self._secrets = tuple(_setting(s, "each secret") for s in secrets if s)
        if legacy_token:
            _setting(legacy_token, "legacy_token")
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes <= 0:
            raise ValueError("max_body_bytes must be a whole number of bytes, more than 0")
        self.secret_store = secret_store
        self.deliveries: DeliveryLog = deliveries if deliveries is not None else MemoryDeliveryLog()
        self.incidents = incidents
        self._legacy_token = legacy_token or None
        self.max_body_bytes = max_body_bytes
        self._handlers: list[tuple[str | None, Handler]] = []
        self._last_purge = time.monotonic()
        self._purge_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"WebhookReceiver(secrets={len(self._secrets)}, secret_store={self.secret_store!r}, "
            f"deliveries={self.deliveries!r}, legacy={'on' if self._legacy_token else 'off'})"
        )

    @overload
    def handler(self, function: Handler) -> Handler: ...

    @overload
    def handler(self, *, event_type: str) -> Callable[[Handler], Handler]: ...

    def handler(
        self, function: Handler | None = None, *, event_type: str | None = None
    ) -> Handler | Callable[[Handler], Handler]:
        """Register a handler for every event, or (``event_type=``) for one type; a decorator."""

        def register(handler: Handler) -> Handler:
            self._handlers.append((event_type, handler))
            return handler

        return register(function) if function is not None else register

    def check_length(self, content_length: int | None) -> None:
        """Refuse a body by its declared length, before reading it."""
        if content_length is not None and content_length > self.max_body_bytes:
            raise PayloadTooLarge(f"the body is over {self.max_body_bytes} bytes")

    def receive(
        self, body: bytes, headers: HeaderSource, *, legacy_token: str | None = None, now: float | None = None
    ) -> Receipt:
        """Handle one webhook request; see the module's documentation for what is answered.

        ``now`` (seconds since the epoch) is for tests; by default, the current time.
        """
        now = time.time() if now is None else now
        if not isinstance(body, bytes | bytearray | memoryview):
            raise TypeError("body must be the raw bytes of the request, as received")
        body = bytes(body)
        self.check_length(len(body))
        signature = header(headers, SIGNATURE_HEADER)
        if signature is not None:
            events = [self._verified_v3(body, signature, headers)]
            self._check_age(events[0][0], now)
        else:
            events = self._legacy(body, legacy_token)
        self._maybe_purge()
        handled: list[WebhookEvent] = []
        duplicates = in_progress = 0
        for event, namespaces in events:
            keys = list(dict.fromkeys(delivery_key(event.format.value, n, event.id) for n in namespaces))
            claim, claimed = self._claim(keys, now)
            if claim is Claim.DUPLICATE:
                duplicates += 1
                continue
            if claim is Claim.IN_PROGRESS:
                in_progress += 1
                continue
            try:
                self._dispatch(event)
            except BaseException:
                for key in claimed:
                    self.deliveries.abandon(key)
                raise
            for key in claimed:
                self.deliveries.finish(key, now=now)
            handled.append(event)
        if in_progress:
            return Receipt(503, tuple(handled), in_progress=True)
        if duplicates and not handled:
            return Receipt(200, (), duplicate=True)
        return Receipt(202, tuple(handled))

    # -- steps -------------------------------------------------------------------------------

    def _claim(self, keys: list[str], now: float) -> tuple[Claim, list[str]]:
        """Claim an event under every key it is known by; ``NEW`` only if none was taken.

        An event verified by two secrets (PagerDuty signs with both while it rotates one) is
        known in both their namespaces, and a replay may carry either signature alone: it
        must find the event in whichever namespace its signature leads to. On ``DUPLICATE``
        the keys just claimed are marked finished too; on ``IN_PROGRESS`` they are released.
        """
        claimed: list[str] = []
        for key in keys:
            claim = self.deliveries.begin(key, now=now)
            if claim is Claim.NEW:
                claimed.append(key)
                continue
            for taken in claimed:
                if claim is Claim.DUPLICATE:
                    self.deliveries.finish(taken, now=now)
                else:
                    self.deliveries.abandon(taken)
            return claim, []
        return Claim.NEW, claimed

    def _verified_v3(self, body: bytes, signature: str, headers: HeaderSource) -> tuple[WebhookEvent, list[Namespace]]:
        subscription = _subscription_header(headers)
        registered = self.secret_store.secrets_for(subscription) if self.secret_store and subscription else []
        candidates = [r.secret for r in registered] + list(self._secrets)
        matched = matching_secrets(body, signature, candidates)
        # Every secret that verifies the body names a namespace the event is known in: a
        # registered one its subscription and owner, a vendor-wide one itself.
        namespaces: list[Namespace] = [
            ("subscription", registered[i].subscription_id, registered[i].owner_id)
            if i < len(registered)
            else VENDOR_WIDE
            for i in matched
        ]
        index = matched[0]
        event = parse_v3(body)
        webhook_id = _printable(header(headers, WEBHOOK_ID_HEADER))
        if index < len(registered):
            # The secret is registered for one subscription and owner: the webhook is theirs,
            # whatever the unsigned headers say.
            owner = registered[index]
            verified = replace(
                event,
                webhook_id=webhook_id,
                subscription_id=owner.subscription_id,
                owner_id=owner.owner_id,
                integration_id=owner.integration_id,
            )
            return verified, namespaces
        # A vendor-wide secret: PagerDuty gives every subscription its own secret, so the secret
        # stands for the subscription. The header's subscription id is not signed and is not used.
        return replace(event, webhook_id=webhook_id, subscription_id=subscription), namespaces

    def _check_age(self, event: WebhookEvent, now: float) -> None:
        """Refuse a signed event older than the delivery log remembers: it can only be a replay.

        PagerDuty retries for 48 hours and the log keeps events for 72: an event that occurred
        earlier was handled and forgotten, and handling it again is what de-duplication is
        for. ``occurred_at`` is signed. An event without one (PagerDuty always sends it) is
        judged by its id alone.
        """
        if self.max_event_age is None or event.occurred_at is None:
            return
        age = now - event.occurred_at.timestamp()
        if age > self.max_event_age:
            hours = self.max_event_age / 3600
            raise WebhookError(
                f"the event occurred more than {hours:g} hours ago, longer than PagerDuty retries: "
                "not handled (a replay?)"
            )

    def _legacy(self, body: bytes, token: str | None) -> list[tuple[WebhookEvent, list[Namespace]]]:
        if self._legacy_token is None:
            raise SignatureMissing(f"the {SIGNATURE_HEADER} header is missing (legacy webhooks are not accepted here)")
        if token is None:
            raise SignatureMissing(
                f"the {SIGNATURE_HEADER} header is missing (a legacy webhook needs ?token=... in its URL)"
            )
        if not isinstance(token, str):
            raise Unauthorized("the legacy webhook's token is wrong")
        expected = self._legacy_token.encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(token.encode("utf-8", "surrogatepass"), expected):
            raise Unauthorized("the legacy webhook's token is wrong")
        # Nothing in a legacy body is signed: whoever has the token could send any of it. The
        # message id and the extension (``webhook.id``) are what PagerDuty keeps across retries.
        return [(event, [("legacy", _extension(event))]) for event in parse_legacy(body)]

    def _dispatch(self, event: WebhookEvent) -> None:
        incident = event.incident
        logger.info(
            "pdconnect: webhook %s (%s) for incident %s",
            event.event_type,
            event.format.value,
            incident.id if incident else "-",
            extra={
                "pdconnect_webhook": {
                    "event_type": event.event_type,
                    "event_id": event.id,
                    "webhook_id": event.webhook_id,
                    "subscription_id": event.subscription_id,
                    "incident_id": incident.id if incident else None,
                    "owner_id": event.owner_id,
                }
            },
        )
        if self.incidents is not None:
            self.incidents.apply(event)
        for event_type, handler in self._handlers:
            if event_type is None or event_type == event.event_type:
                handler(event)

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now - self._last_purge < PURGE_EVERY or not self._purge_lock.acquire(blocking=False):
            return
        try:
            self._last_purge = now
            self.deliveries.purge()
        finally:
            self._purge_lock.release()


def _setting(value: object, name: str) -> str:
    """A secret or token from the settings: text PagerDuty could send, checked without showing it."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string")
    if len(value) > MAX_SECRET_LENGTH:
        raise ValueError(f"{name} is over {MAX_SECRET_LENGTH} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} holds a lone surrogate, which no request can carry") from None
    return value


def _printable(value: str | None) -> str | None:
    """A header value worth keeping: stripped, printable ASCII, at most 255 characters; else ``None``."""
    text = (value or "").strip()
    return text[:255] if text and text.isascii() and text.isprintable() else None


def _subscription_header(headers: HeaderSource) -> str | None:
    raw = header(headers, SUBSCRIPTION_HEADER)
    if raw is None or not raw.strip():
        return None
    subscription = _printable(raw)
    if subscription is None or len(raw.strip()) > 255:
        raise WebhookError(f"the {SUBSCRIPTION_HEADER} header is not a subscription id")
    return subscription


def _extension(event: WebhookEvent) -> str | None:
    webhook = event.data.get("webhook")
    extension = webhook.get("id") if isinstance(webhook, dict) else None
    return extension if isinstance(extension, str) else None
