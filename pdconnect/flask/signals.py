"""The extension's blinker signals: connect to them to react, or return a response to take over."""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()
#: Sent after a handshake or a pasted key stored integrations; ``integrations`` (the stored
#: records) and ``owner_id`` as keyword arguments. Return a response to replace the redirect.
connected = _signals.signal("pdconnect-connected")
#: Sent when the user cancelled on PagerDuty's side; ``owner_id`` and ``flow``.
cancelled = _signals.signal("pdconnect-cancelled")
#: Sent when a handshake or pasted key failed; ``error`` (a PdConnectError). Return a
#: response to replace the friendly error page.
failed = _signals.signal("pdconnect-failed")
#: Sent for each webhook event PagerDuty delivers (verified, and not a duplicate); ``event``
#: (a :class:`~pdconnect.webhooks.WebhookEvent`). Incident states are already updated. If a
#: receiver raises, the webhook is answered 500 and handled again when PagerDuty retries.
webhook_received = _signals.signal("pdconnect-webhook-received")
