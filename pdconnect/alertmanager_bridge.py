"""An Alertmanager webhook receiver in front of the outbox: ``pdconnect alertmanager --listen``.

:class:`AlertmanagerBridge` checks the bearer token (Alertmanager's ``http_config``
``authorization``), reads the payload, turns the group into one event
(:func:`pdconnect.alertmanager.to_event`) and enqueues it for each target in one
transaction. A worker delivers it, in order per group: a resolve never overtakes its
trigger. :func:`serve` puts the bridge behind a small threaded HTTP server from the
standard library, for the command line; the Flask extension has its own route.

Answers: 202 with the action and dedup key; 400 for a bad payload, 401 for a missing or
wrong token, 413 for a body over the limit (Alertmanager does not retry 4xx; it retries
5xx, which is what a database outage gives, so nothing accepted is lost).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pdconnect.alertmanager import AlertGroup, parse_alertmanager, to_event
from pdconnect.errors import PayloadTooLarge, ReceiveError, Unauthorized
from pdconnect.events import Severity
from pdconnect.outbox import Outbox
from pdconnect.sender import Target

logger = logging.getLogger("pdconnect")

MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class BridgeReceipt:
    """What a notification became."""

    action: str
    dedup_key: str
    enqueued: tuple[int, ...]
    firing: int

    def body(self) -> dict[str, Any]:
        return {"action": self.action, "dedup_key": self.dedup_key, "enqueued": len(self.enqueued)}


def check_bearer(authorization: str | None, token: str | None) -> None:
    """Raise :class:`~pdconnect.errors.Unauthorized` unless ``authorization`` is ``Bearer <token>``.

    No ``token`` configured means no check. The comparison is constant-time.
    """
    if token is None:
        return
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not credentials:
        raise Unauthorized("an 'Authorization: Bearer <token>' header is required")
    if not hmac.compare_digest(credentials.strip().encode("utf-8"), token.encode("utf-8")):
        raise Unauthorized("the bearer token is wrong")


class AlertmanagerBridge:
    """Enqueues Alertmanager groups for fixed targets (routing keys or integrations)."""

    def __init__(
        self,
        outbox: Outbox,
        targets: Sequence[Target],
        *,
        token: str | None = None,
        default_severity: Severity = Severity.ERROR,
        client: str = "Alertmanager",
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if not targets:
            raise ValueError("the bridge needs at least one routing key or integration")
        self.outbox = outbox
        self.targets = tuple(targets)
        self._token = token or None
        self.default_severity = default_severity
        self.client = client
        self.max_body_bytes = max_body_bytes

    def __repr__(self) -> str:
        return f"AlertmanagerBridge(targets={len(self.targets)}, token={'set' if self._token else 'none'})"

    def handle(self, body: bytes, authorization: str | None = None) -> BridgeReceipt:
        """Check, parse and enqueue one notification; raises :class:`~pdconnect.errors.ReceiveError`."""
        check_bearer(authorization, self._token)
        if len(body) > self.max_body_bytes:
            raise PayloadTooLarge(f"the body is over {self.max_body_bytes} bytes")
        group = parse_alertmanager(body)
        return enqueue_group(
            self.outbox, self.targets, group, default_severity=self.default_severity, client=self.client
        )


def enqueue_group(
    outbox: Outbox,
    targets: Sequence[Target],
    group: AlertGroup,
    *,
    default_severity: Severity = Severity.ERROR,
    client: str = "Alertmanager",
) -> BridgeReceipt:
    """Enqueue a group's event for every target, all or none (one transaction)."""
    event = to_event(group, default_severity=default_severity, client=client)
    entries = outbox.enqueue_many([(target, event) for target in targets]) if targets else []
    logger.info(
        "pdconnect: alertmanager group %s (%s, %d firing) enqueued for %d target(s)",
        group.dedup_key[:12],
        event.action,
        len(group.firing),
        len(entries),
    )
    return BridgeReceipt(
        action=str(event.action),
        dedup_key=group.dedup_key,
        enqueued=tuple(e.id for e in entries),
        firing=len(group.firing),
    )


def serve(bridge: AlertmanagerBridge, host: str = "127.0.0.1", port: int = 9095) -> ThreadingHTTPServer:
    """A threaded HTTP server that hands every POST to ``bridge`` (call ``serve_forever``)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "pdconnect-alertmanager"

        def do_POST(self) -> None:
            try:
                length = int(self.headers.get("Content-Length") or "0")
            except ValueError:
                self._answer(400, {"error": {"type": "PayloadInvalid", "message": "bad Content-Length"}})
                return
            if length > bridge.max_body_bytes:
                self._answer(413, {"error": {"type": "PayloadTooLarge", "message": "the body is too large"}})
                return
            body = self.rfile.read(length)
            try:
                receipt = bridge.handle(body, self.headers.get("Authorization"))
            except ReceiveError as exc:
                self._answer(exc.status, {"error": {"type": type(exc).__name__, "message": str(exc)}})
                return
            except Exception:
                logger.exception("pdconnect: could not enqueue an Alertmanager notification")
                self._answer(503, {"error": {"type": "Unavailable", "message": "not stored; retry"}})
                return
            self._answer(202, receipt.body())

        def do_GET(self) -> None:
            self._answer(200 if self.path == "/healthz" else 404, {"status": "ok"} if self.path == "/healthz" else {})

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status >= 400:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            logger.debug("pdconnect alertmanager: " + format, *args)

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
