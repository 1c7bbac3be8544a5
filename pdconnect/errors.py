"""Every error pdconnect raises on purpose.

All of them derive from :class:`PdConnectError`, so a vendor can catch the whole family in one
place. Messages name the problem and the parameter or field at fault; they never contain an
integration key, a signing secret or a state token.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime


class PdConnectError(Exception):
    """Base class of every error pdconnect raises on purpose."""


# -- the handshake ---------------------------------------------------------------------------


class HandshakeError(PdConnectError):
    """A handshake could not be completed. A normal outcome, to show the user, never a 500."""


class CallbackError(HandshakeError):
    """The callback's query string is malformed: missing, repeated, over-long or bad values.

    ``parameter`` names the query parameter (or JSON path inside ``config``) at fault.
    """

    def __init__(self, message: str, *, parameter: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter


class HandshakeFailed(HandshakeError):
    """PagerDuty reported a failure other than a cancel (``error=<value>`` on the callback)."""

    def __init__(self, error: str) -> None:
        self.error = error
        super().__init__(f"PagerDuty reported an error: {error!r}")


class StateError(HandshakeError):
    """The state carried through the handshake did not verify."""


class StateInvalid(StateError):
    """The state is missing, malformed, or its signature does not match (tampered or foreign key)."""


class StateExpired(StateError):
    """The state is older than the allowed maximum age; the user should start again."""


class StateReplayed(StateError):
    """The state was already used once; a callback URL cannot be replayed."""


class StateSessionMismatch(StateError):
    """The state was issued to another browser session than the one completing the handshake."""


class StateOwnerMismatch(StateError):
    """The state was issued for another owner (user or organisation) than the current one."""


# -- keys, URLs and events -------------------------------------------------------------------


class InvalidIntegrationKey(PdConnectError, ValueError):
    """A string is not a PagerDuty integration key (32 ASCII letters and digits)."""


class UnsafeURLError(PdConnectError, ValueError):
    """A URL given to pdconnect is not safe to redirect to or to link from a button."""


class UntrustedHost(UnsafeURLError):
    """A request's host (``Host`` or ``X-Forwarded-Host``) is not one this site is configured to serve.

    pdconnect refuses to build a callback or a link from it: an attacker's ``Host`` header would
    send PagerDuty's callback, and the integration keys in it, to the attacker.
    """


class ConfigError(PdConnectError, ValueError):
    """A setting holds a value of the wrong type or out of range; ``setting`` names it.

    The message says what was expected and never repeats the value, which may be a secret.
    """

    def __init__(self, message: str, *, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


class EventValidationError(PdConnectError, ValueError):
    """An event breaks PagerDuty's documented rules; it was refused before any request.

    ``problems`` lists every problem found, each naming the field at fault.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("invalid event: " + "; ".join(self.problems))


class InvalidData(PdConnectError, ValueError):
    """Data handed to pdconnect (a rule, a stored state) is not valid; ``field`` names what, when known."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# -- delivery --------------------------------------------------------------------------------


class DeliveryError(PdConnectError):
    """An event was not accepted by PagerDuty.

    ``attempts`` is how many requests were made; ``status`` the last HTTP status, or ``None``
    when the last attempt got no response at all.
    """

    def __init__(self, message: str, *, status: int | None, attempts: int) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


class EventRejected(DeliveryError):
    """PagerDuty refused the event for good (400 or another 4xx); retrying cannot help.

    ``pagerduty_message`` and ``errors`` carry what PagerDuty said, with any key removed.
    """

    def __init__(
        self,
        *,
        status: int,
        attempts: int,
        pagerduty_message: str | None,
        errors: Sequence[str] = (),
    ) -> None:
        self.pagerduty_message = pagerduty_message
        self.errors = tuple(errors)
        detail = pagerduty_message or "no message"
        if self.errors:
            detail += ": " + "; ".join(self.errors)
        super().__init__(f"PagerDuty rejected the event (HTTP {status}): {detail}", status=status, attempts=attempts)


class DeliveryFailed(DeliveryError):
    """Every allowed attempt failed with a temporary error, or the deadline passed.

    ``retry_after`` holds the server's last ``Retry-After`` in seconds when it sent one, so a
    caller that queues events (the outbox) can schedule the next try.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        attempts: int,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, attempts=attempts)
        self.retry_after = retry_after


class RateLimited(DeliveryFailed):
    """PagerDuty asked to slow down (429, or 403 on the legacy API) for longer than the send may wait.

    The event was not ingested. ``retry_after`` is how many seconds from when this was raised
    PagerDuty asked for (its ``Retry-After``, else the policy's rate-limit wait) and
    ``retry_at`` the same moment as a timezone-aware UTC ``datetime``: send it again then,
    not before. The limit is per integration key, so other keys can go on sending.
    """

    retry_after: float

    def __init__(
        self, message: str, *, status: int | None, attempts: int, retry_after: float, retry_at: datetime
    ) -> None:
        super().__init__(message, status=status, attempts=attempts, retry_after=retry_after)
        self.retry_at = retry_at


class InvalidRoutingKey(EventRejected):
    """PagerDuty does not know the integration key (400 "Invalid routing key" or "Invalid service key").

    The key was deleted or disabled in PagerDuty (or never existed there): every event sent
    with it will be refused the same way, so the integration needs reconnecting.
    ``reason`` is a one-line explanation, without the key, fit to store and show the user.
    """

    @property
    def reason(self) -> str:
        said = "; ".join(self.errors) or self.pagerduty_message or "invalid routing key"
        return f"PagerDuty refused the integration key (HTTP {self.status}: {said}); reconnect the integration"


# -- receiving webhooks and alerts -----------------------------------------------------------


class ReceiveError(PdConnectError):
    """A request pdconnect received (a webhook, an Alertmanager notification) was refused.

    ``status`` is the HTTP status to answer with: always a 4xx, which PagerDuty does not
    retry, because sending the same request again cannot succeed.
    """

    status: int = 400


class WebhookError(ReceiveError):
    """A PagerDuty webhook was refused."""


class SignatureMissing(WebhookError):
    """``X-PagerDuty-Signature`` is missing or holds no well-formed ``v1=`` signature (400)."""


class SignatureMismatch(WebhookError):
    """No signature matches any secret for the subscription (403): forged, altered, or an old secret."""

    status = 403


class PayloadTooLarge(ReceiveError):
    """The body is over the size limit; it was refused before it was read (413)."""

    status = 413


class PayloadInvalid(ReceiveError):
    """The body is empty, not JSON, or not the shape the sender documents (400).

    ``field`` names the JSON path at fault, when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Unauthorized(ReceiveError):
    """The request did not carry the token this endpoint requires (401)."""

    status = 401
