"""Receiving PagerDuty webhooks: size limit, signature, parsing, de-duplication, handlers.

::

    receiver = WebhookReceiver(secret_store=secrets, deliveries=SqlDeliveryLog(engine),
                               incidents=IncidentStateStore(engine))

    @receiver.handler
    def show_in_ui(event: WebhookEvent) -> None:
        ...

    receipt = receiver.receive(raw_body, request_headers)   # then answer receipt.status

What :meth:`WebhookReceiver.receive` answers, and why:

- 202: verified, parsed, handled. 200: a retry of a webhook already handled (nothing done
  twice). 503: the same webhook is being handled by another request right now; PagerDuty
  retries 5xx, and by then the outcome is known.
- :class:`~pdconnect.errors.ReceiveError` subclasses (always 4xx, which PagerDuty does not
  retry): 400 for a missing or malformed signature header or a bad body, 403 for a signature
  that matches no secret, 401 for a legacy webhook with the wrong token, 413 for a body
  over the limit.
- If a handler raises, the webhook is forgotten and the exception propagates: answer 500,
  and PagerDuty's retry is handled afresh. Nothing accepted is lost.

V3 webhooks are signed. Legacy V2 webhooks are not; they are accepted only when the
receiver has a ``legacy_token`` and the request carries it (put ``?token=...`` in the URL
given to PagerDuty), compared in constant time.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, overload

from pdconnect.errors import PayloadTooLarge, SignatureMissing, Unauthorized
from pdconnect.webhooks.deliveries import Claim, DeliveryLog, MemoryDeliveryLog
from pdconnect.webhooks.incidents import IncidentStateStore
from pdconnect.webhooks.model import WebhookEvent
from pdconnect.webhooks.parsing import parse_legacy, parse_v3
from pdconnect.webhooks.secrets import WebhookSecretStore
from pdconnect.webhooks.signatures import SIGNATURE_HEADER, matching_secret

logger = logging.getLogger("pdconnect")

#: PagerDuty drops webhooks over 256 KB; twice that leaves room and still bounds memory.
MAX_BODY_BYTES = 512 * 1024
WEBHOOK_ID_HEADER = "X-Webhook-Id"
SUBSCRIPTION_HEADER = "X-Webhook-Subscription"
PURGE_EVERY = 3600.0

Handler = Callable[[WebhookEvent], None]


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
    if value is not None:
        return value
    lowered = name.lower()
    for key, candidate in headers.items():
        if key.lower() == lowered:
            return candidate
    return None


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
    ) -> None:
        if isinstance(secrets, str):
            raise TypeError("secrets must be a list of strings, not one string")
        self._secrets = tuple(s for s in secrets if s)
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

    def receive(self, body: bytes, headers: HeaderSource, *, legacy_token: str | None = None) -> Receipt:
        """Handle one webhook request; see the module's documentation for what is answered."""
        self.check_length(len(body))
        signature = header(headers, SIGNATURE_HEADER)
        if signature is not None:
            events = [self._verified_v3(body, signature, headers)]
        else:
            events = self._legacy(body, legacy_token)
        self._maybe_purge()
        handled: list[WebhookEvent] = []
        duplicates = in_progress = 0
        for event in events:
            delivery_id = f"{event.format.value}:{event.webhook_id or event.id}"
            claim = self.deliveries.begin(delivery_id)
            if claim is Claim.DUPLICATE:
                duplicates += 1
                continue
            if claim is Claim.IN_PROGRESS:
                in_progress += 1
                continue
            try:
                self._dispatch(event)
            except BaseException:
                self.deliveries.abandon(delivery_id)
                raise
            self.deliveries.finish(delivery_id)
            handled.append(event)
        if in_progress:
            return Receipt(503, tuple(handled), in_progress=True)
        if duplicates and not handled:
            return Receipt(200, (), duplicate=True)
        return Receipt(202, tuple(handled))

    # -- steps -------------------------------------------------------------------------------

    def _verified_v3(self, body: bytes, signature: str, headers: HeaderSource) -> WebhookEvent:
        subscription = (header(headers, SUBSCRIPTION_HEADER) or "").strip()[:255] or None
        registered = self.secret_store.secrets_for(subscription) if self.secret_store and subscription else []
        candidates = [r.secret for r in registered] + list(self._secrets)
        index = matching_secret(body, signature, candidates)
        owner = registered[index] if index < len(registered) else None
        event = parse_v3(body)
        webhook_id = (header(headers, WEBHOOK_ID_HEADER) or "").strip()[:255] or None
        return replace(
            event,
            webhook_id=webhook_id,
            subscription_id=subscription,
            owner_id=owner.owner_id if owner else None,
            integration_id=owner.integration_id if owner else None,
        )

    def _legacy(self, body: bytes, token: str | None) -> list[WebhookEvent]:
        if self._legacy_token is None:
            raise SignatureMissing(f"the {SIGNATURE_HEADER} header is missing (legacy webhooks are not accepted here)")
        if token is None:
            raise SignatureMissing(
                f"the {SIGNATURE_HEADER} header is missing (a legacy webhook needs ?token=... in its URL)"
            )
        if not hmac.compare_digest(token.encode("utf-8"), self._legacy_token.encode("utf-8")):
            raise Unauthorized("the legacy webhook's token is wrong")
        return parse_legacy(body)

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
