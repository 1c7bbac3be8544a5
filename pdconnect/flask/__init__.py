"""The Flask extension: "Alert with PagerDuty" for a Flask app in a few lines.

::

    from flask import Flask
    from pdconnect.flask import PagerDutyConnect

    app = Flask(__name__)
    app.config.update(SECRET_KEY="...", PDCONNECT_APP_ID="P6LEX1U", PDCONNECT_CLIENT_NAME="Acme Monitoring")
    pagerduty = PagerDutyConnect(app)

    @pagerduty.owner_loader
    def current_owner():
        return str(current_user.org_id) if current_user.is_authenticated else None

Templates then render ``{{ pagerduty_button() }}``; the blueprint (under ``/pagerduty`` by
default) starts and finishes both handshakes, takes pasted keys, sends test alerts and
disconnects, storing integrations in SQL. Settings are ``PDCONNECT_*`` keys of
``app.config`` (see the Flask guide for the list). Outcomes are announced with blinker
signals (:data:`connected`, :data:`cancelled`, :data:`failed`); a receiver may return a
response to take over the redirect. A failed, tampered or replayed callback renders a
friendly 400 page; it is never a 500.
"""

from pdconnect.flask import oauth_views as _oauth_views  # noqa: F401  (registers the OAuth routes)
from pdconnect.flask import views as _views  # noqa: F401  (registers the routes on the blueprint)
from pdconnect.flask.alertmanager_views import alertmanager_token
from pdconnect.flask.blueprint import blueprint
from pdconnect.flask.extension import (
    CSRF_FIELD,
    CSRF_HEADER,
    DEFAULTS,
    SESSION_BINDING_KEY,
    ConnectedAccount,
    PagerDutyConnect,
    PagerDutyState,
    check_form_token,
    csrf_token,
    current_pagerduty,
    external_url,
    pagerduty_accounts,
    pagerduty_button,
    pagerduty_reconnect_banner,
    pagerduty_snippet,
    session_binding,
)
from pdconnect.flask.signals import (
    account_connected,
    account_disconnected,
    broken_announcer,
    cancelled,
    connected,
    failed,
    integration_broken,
    needs_reauthorization,
    webhook_received,
)
from pdconnect.flask.views import send_test_alert
from pdconnect.flask.webhook_views import webhook_url

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "DEFAULTS",
    "SESSION_BINDING_KEY",
    "ConnectedAccount",
    "PagerDutyConnect",
    "PagerDutyState",
    "account_connected",
    "account_disconnected",
    "alertmanager_token",
    "blueprint",
    "broken_announcer",
    "cancelled",
    "check_form_token",
    "connected",
    "csrf_token",
    "current_pagerduty",
    "external_url",
    "failed",
    "integration_broken",
    "needs_reauthorization",
    "pagerduty_accounts",
    "pagerduty_button",
    "pagerduty_reconnect_banner",
    "pagerduty_snippet",
    "send_test_alert",
    "session_binding",
    "webhook_received",
    "webhook_url",
]
