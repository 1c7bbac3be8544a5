"""The extension's blinker signals: connect to them to react, or return a response to take over."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from blinker import Namespace

if TYPE_CHECKING:
    from flask import Flask

    from pdconnect.storage import StoredIntegration

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
#: Sent once when PagerDuty no longer knows an integration's key (deleted or disabled) and the
#: store has marked it broken; ``integration`` (the :class:`~pdconnect.storage.StoredIntegration`,
#: with ``broken_reason``) and ``owner_id``. Tell the owner to reconnect. Workers send it when
#: given ``on_integration_broken=broken_announcer(app)``.
integration_broken = _signals.signal("pdconnect-integration-broken")
#: Sent after an OAuth authorization was stored; ``credential`` (a
#: :class:`~pdconnect.oauth.credentials.Credential`, never showing its tokens), ``owner_id`` and
#: ``subscribed`` (whether the account's webhook subscription is in place). Return a response
#: to replace the redirect.
account_connected = _signals.signal("pdconnect-account-connected")
#: Sent after an OAuth connection was disconnected; ``owner_id``, ``account_id`` and ``result``
#: (a :class:`~pdconnect.oauth.connection.Disconnected`, naming subscriptions left at PagerDuty).
account_disconnected = _signals.signal("pdconnect-account-disconnected")
#: Sent once when PagerDuty refused a connection's refresh token for good (revoked, expired):
#: ``credential`` and ``owner_id``. Tell the owner to reconnect; ``pagerduty_reconnect_banner()``
#: shows it on pages. Sent from whatever thread made the REST call, inside an app context.
needs_reauthorization = _signals.signal("pdconnect-needs-reauthorization")


def broken_announcer(app: Flask) -> Callable[[StoredIntegration], None]:
    """A worker's ``on_integration_broken`` hook that sends :data:`integration_broken` for ``app``."""

    def announce(integration: StoredIntegration) -> None:
        with app.app_context():
            integration_broken.send(app, integration=integration, owner_id=integration.owner_id)

    return announce
