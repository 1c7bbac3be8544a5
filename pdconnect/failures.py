"""One wording for an event PagerDuty did not take, wherever a person reads it.

The Test button, the integration's stored failure reason and the outbox's dead-letter view
all say the same thing: what PagerDuty answered, then its message, then its listed errors
(``HTTP 400: Event object is invalid (Invalid routing key)``), so a reason that PagerDuty
gave is never hidden behind a vaguer one. The parts come already scrubbed of the key.
"""

from __future__ import annotations

from collections.abc import Sequence

from pdconnect.errors import DeliveryError, EventRejected


def send_failure_reason(headline: str, *, message: str | None = None, errors: Sequence[str] = ()) -> str:
    """``headline`` (``HTTP 400``, ``HTTP 400 invalid event``), then ``: message``, then ``(errors)``."""
    reason = headline
    if message:
        reason += f": {message}"
    listed = [error for error in errors if error]
    if listed:
        reason += " (" + "; ".join(listed) + ")"
    return reason


def delivery_error_reason(error: DeliveryError) -> str:
    """How to word ``error`` for a person: PagerDuty's own reasons for a refusal, else what failed."""
    if isinstance(error, EventRejected):
        return send_failure_reason(f"HTTP {error.status}", message=error.pagerduty_message, errors=error.errors)
    return str(error)
