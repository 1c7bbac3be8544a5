"""The extension object, its per-app state and the helpers templates and views share."""

from __future__ import annotations

import hmac
import importlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from flask import (
    Flask,
    current_app,
    request,
    session,
    url_for,
)
from itsdangerous import BadData, URLSafeTimedSerializer
from markupsafe import Markup

from pdconnect.button import ButtonSize, ButtonTheme, button_html, embed_snippet
from pdconnect.errors import (
    StateInvalid,
    StateSessionMismatch,
)
from pdconnect.flask.blueprint import blueprint
from pdconnect.flask.signals import webhook_received
from pdconnect.handshake import Handshake
from pdconnect.integration import Region
from pdconnect.nonces import NonceStore, SqlNonceStore
from pdconnect.outbox import Outbox
from pdconnect.retry import RetryPolicy
from pdconnect.sender import Sender
from pdconnect.state import binding_digest, new_session_binding
from pdconnect.storage import IntegrationStore, SqlIntegrationStore, StoredIntegration
from pdconnect.urls import CONNECT_BASE_URL, INSTALL_BASE_URL
from pdconnect.webhooks import (
    MAX_BODY_BYTES,
    IncidentState,
    IncidentStateStore,
    MemoryWebhookSecretStore,
    SqlDeliveryLog,
    SqlWebhookSecretStore,
    SubscriptionClient,
    WebhookEvent,
    WebhookReceiver,
    WebhookSecretStore,
)
from pdconnect.webhooks.subscriptions import REST_API_URL

logger = logging.getLogger("pdconnect")

SESSION_BINDING_KEY = "pdconnect_binding"
CSRF_FIELD = "pdconnect_csrf"
CSRF_HEADER = "X-PDConnect-CSRF"
_CSRF_SALT = "pdconnect.form-token.v1"
_CSRF_MAX_AGE = 4 * 3600

DEFAULTS: dict[str, Any] = {
    "PDCONNECT_SECRET": None,
    "PDCONNECT_VENDOR_KEY": None,
    "PDCONNECT_APP_ID": None,
    "PDCONNECT_CLIENT_NAME": None,
    "PDCONNECT_CLIENT_URL": None,
    "PDCONNECT_CONNECT_BASE_URL": CONNECT_BASE_URL,
    "PDCONNECT_INSTALL_BASE_URL": INSTALL_BASE_URL,
    "PDCONNECT_EVENTS_BASE_URL": None,
    "PDCONNECT_REGION": "us",
    "PDCONNECT_STORAGE_URL": None,
    "PDCONNECT_OWNER_LOADER": None,
    "PDCONNECT_URL_PREFIX": "/pagerduty",
    "PDCONNECT_REDIRECT_TO": "/",
    "PDCONNECT_CALLBACK_URL": None,
    "PDCONNECT_STATE_MAX_AGE": 600,
    "PDCONNECT_WEBHOOK_SECRETS": (),
    "PDCONNECT_WEBHOOK_LEGACY_TOKEN": None,
    "PDCONNECT_WEBHOOK_MAX_BYTES": MAX_BODY_BYTES,
    "PDCONNECT_WEBHOOK_URL": None,
    "PDCONNECT_WEBHOOK_SUBSCRIBE": True,
    "PDCONNECT_REST_API_TOKEN": None,
    "PDCONNECT_REST_API_OAUTH": False,
    "PDCONNECT_REST_API_URL": REST_API_URL,
    "PDCONNECT_ALERTMANAGER_MAX_BYTES": 4 * 1024 * 1024,
    "PDCONNECT_ALERTMANAGER_DEFAULT_SEVERITY": "error",
}


@dataclass
class PagerDutyState:
    """Per-app state, in ``app.extensions["pdconnect"]``: what the blueprint and a vendor use."""

    app: Flask
    handshake: Handshake
    store: IntegrationStore
    sender: Sender
    owner_loader: Callable[[], str | None] | None
    region: Region
    csrf: URLSafeTimedSerializer = field(repr=False)
    storage_url: str = field(default="", repr=False)  # may carry a password
    webhooks: WebhookReceiver = field(default_factory=WebhookReceiver, repr=False)
    webhook_secrets: WebhookSecretStore = field(default_factory=MemoryWebhookSecretStore, repr=False)
    incidents: IncidentStateStore | None = field(default=None, repr=False)
    _outbox: Outbox | None = field(default=None, repr=False)

    def current_owner(self) -> str | None:
        """The signed-in owner id, from the configured owner loader (``None``: not signed in)."""
        if self.owner_loader is None:
            raise RuntimeError("pdconnect needs an owner loader: PDCONNECT_OWNER_LOADER or @pagerduty.owner_loader")
        owner = self.owner_loader()
        return None if owner is None else str(owner)

    @property
    def outbox(self) -> Outbox:
        """The outbox, in the integrations' database (made, with its tables, on first use).

        Enqueue there instead of sending from a request, and run ``pdconnect worker`` (or a
        :class:`~pdconnect.worker.Worker`) to deliver.
        """
        if self._outbox is None:
            engine = self.store.engine if isinstance(self.store, SqlIntegrationStore) else self.storage_url
            self._outbox = Outbox(engine, sender=self.sender)
        return self._outbox

    def subscription_client(self) -> SubscriptionClient | None:
        """A REST client for webhook subscriptions, when ``PDCONNECT_REST_API_TOKEN`` is set (close it)."""
        config = self.app.config
        token = config["PDCONNECT_REST_API_TOKEN"]
        if not token:
            return None
        return SubscriptionClient(
            token, oauth=bool(config["PDCONNECT_REST_API_OAUTH"]), base_url=config["PDCONNECT_REST_API_URL"]
        )

    def incident_state(self, dedup_key: str, owner_id: str | None = None) -> IncidentState | None:
        """What PagerDuty's webhooks last said about the incident for ``dedup_key`` (this owner's)."""
        if self.incidents is None:
            return None
        owner = owner_id if owner_id is not None else self.current_owner()
        return self.incidents.by_dedup_key(dedup_key, owner_id=owner)

    def integrations(self, owner_id: str | None = None) -> list[StoredIntegration]:
        """The integrations of ``owner_id`` (by default the signed-in owner)."""
        owner = owner_id if owner_id is not None else self.current_owner()
        return self.store.list(owner) if owner else []


def current_pagerduty() -> PagerDutyState:
    """The pdconnect state of the current Flask app."""
    return cast(PagerDutyState, current_app.extensions["pdconnect"])


def session_binding() -> str:
    """This browser session's binding value, made on first use (see the handshake guide)."""
    binding = session.get(SESSION_BINDING_KEY)
    if not isinstance(binding, str) or len(binding) < 16:
        binding = new_session_binding()
        session[SESSION_BINDING_KEY] = binding
    return binding


def csrf_token() -> str:
    """A token for pdconnect's forms: signed, bound to this session, valid for four hours."""
    return str(current_pagerduty().csrf.dumps(binding_digest(session_binding())))


def check_form_token() -> None:
    """Verify the token of a POST (form field ``pdconnect_csrf`` or header ``X-PDConnect-CSRF``).

    pdconnect's own routes call it; a vendor can call it for its own forms too. Raises
    :class:`~pdconnect.errors.StateInvalid` or :class:`~pdconnect.errors.StateSessionMismatch`.
    """
    token = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    try:
        digest = current_pagerduty().csrf.loads(token or "", max_age=_CSRF_MAX_AGE)
    except BadData as exc:
        raise StateInvalid("the form's security token is missing or expired") from exc
    if not isinstance(digest, str) or not hmac.compare_digest(digest, binding_digest(session_binding())):
        raise StateSessionMismatch("the form was made for another browser session")


def _import(path: str) -> Any:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


class PagerDutyConnect:
    """The extension object; ``init_app`` pattern.

    ``store`` and ``nonce_store`` replace the SQL stores made from ``PDCONNECT_STORAGE_URL``
    (SQLite in the app's instance folder by default); ``sender`` replaces the one made from
    the settings; ``clock`` is for tests of expiry.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        store: IntegrationStore | None = None,
        nonce_store: NonceStore | None = None,
        sender: Sender | None = None,
        owner_loader: Callable[[], str | None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._nonce_store = nonce_store
        self._sender = sender
        self._owner_loader = owner_loader
        self._clock = clock
        self._states: list[PagerDutyState] = []
        if app is not None:
            self.init_app(app)

    def owner_loader(self, function: Callable[[], str | None]) -> Callable[[], str | None]:
        """Decorator: register the function that returns the signed-in owner id (or ``None``)."""
        self._owner_loader = function
        for state in self._states:
            state.owner_loader = function
        return function

    def init_app(self, app: Flask) -> None:
        for name, value in DEFAULTS.items():
            app.config.setdefault(name, value)
        config = app.config
        secret = config["PDCONNECT_SECRET"] or app.secret_key
        if not secret:
            raise RuntimeError("pdconnect needs PDCONNECT_SECRET or the app's SECRET_KEY")
        storage_url = config["PDCONNECT_STORAGE_URL"] or f"sqlite:///{app.instance_path}/pdconnect.db"
        if storage_url.startswith("sqlite:///") and (self._store is None or self._nonce_store is None):
            os.makedirs(app.instance_path, exist_ok=True)
        store = self._store if self._store is not None else SqlIntegrationStore(storage_url)
        nonce_store = (
            self._nonce_store
            if self._nonce_store is not None
            else SqlNonceStore(store.engine if isinstance(store, SqlIntegrationStore) else storage_url)
        )
        handshake = Handshake(
            secret=secret,
            vendor_key=config["PDCONNECT_VENDOR_KEY"],
            app_id=config["PDCONNECT_APP_ID"],
            nonce_store=nonce_store,
            max_age=int(config["PDCONNECT_STATE_MAX_AGE"]),
            connect_base_url=config["PDCONNECT_CONNECT_BASE_URL"],
            install_base_url=config["PDCONNECT_INSTALL_BASE_URL"],
            clock=self._clock,
        )
        sender = (
            self._sender
            if self._sender is not None
            else Sender(
                client=config["PDCONNECT_CLIENT_NAME"],
                client_url=config["PDCONNECT_CLIENT_URL"],
                vendor_key=config["PDCONNECT_VENDOR_KEY"],
                events_base_url=config["PDCONNECT_EVENTS_BASE_URL"],
                retry=RetryPolicy(max_attempts=3, deadline=20.0),
            )
        )
        loader = self._owner_loader
        if loader is None and config["PDCONNECT_OWNER_LOADER"]:
            configured = config["PDCONNECT_OWNER_LOADER"]
            loader = _import(configured) if isinstance(configured, str) else configured
        engine = store.engine if isinstance(store, SqlIntegrationStore) else storage_url
        webhook_secrets = SqlWebhookSecretStore(
            engine, cipher=store.cipher if isinstance(store, SqlIntegrationStore) else None
        )
        incidents = IncidentStateStore(webhook_secrets.engine)
        receiver = WebhookReceiver(
            secrets=_secrets(config["PDCONNECT_WEBHOOK_SECRETS"]),
            secret_store=webhook_secrets,
            deliveries=SqlDeliveryLog(webhook_secrets.engine),
            incidents=incidents,
            legacy_token=config["PDCONNECT_WEBHOOK_LEGACY_TOKEN"],
            max_body_bytes=int(config["PDCONNECT_WEBHOOK_MAX_BYTES"]),
        )
        receiver.handler(lambda event: _announce(app, event))
        state = PagerDutyState(
            app=app,
            handshake=handshake,
            store=store,
            sender=sender,
            owner_loader=loader,
            region=Region(config["PDCONNECT_REGION"]),
            csrf=URLSafeTimedSerializer(secret, salt=_CSRF_SALT),
            storage_url=storage_url,
            webhooks=receiver,
            webhook_secrets=webhook_secrets,
            incidents=incidents,
        )
        self._states.append(state)
        app.extensions["pdconnect"] = state
        app.register_blueprint(blueprint, url_prefix=config["PDCONNECT_URL_PREFIX"])
        app.add_template_global(pagerduty_button, "pagerduty_button")
        app.add_template_global(pagerduty_snippet, "pagerduty_snippet")
        app.add_template_global(csrf_token, "pdconnect_csrf_token")
        app.add_template_global(lambda: CSRF_FIELD, "pdconnect_csrf_field")


def _secrets(configured: str | Sequence[str] | None) -> list[str]:
    """``PDCONNECT_WEBHOOK_SECRETS``: a list, or one string of comma-separated secrets."""
    if not configured:
        return []
    items = configured.split(",") if isinstance(configured, str) else list(configured)
    return [item.strip() for item in items if isinstance(item, str) and item.strip()]


def _announce(app: Flask, event: WebhookEvent) -> None:
    webhook_received.send(app, event=event)


# -- template helpers --------------------------------------------------------------------------


def _default_flow() -> str:
    handshake = current_pagerduty().handshake
    return "install" if handshake.app_id else "connect"


def pagerduty_button(
    flow: str | None = None,
    *,
    size: ButtonSize | str = ButtonSize.MEDIUM,
    theme: ButtonTheme | str = ButtonTheme.LIGHT,
    label: str = "Alert with PagerDuty",
    include_css: bool = True,
) -> Markup:
    """The button for the current user, linking to this app's start of ``flow``.

    ``flow`` is ``install`` or ``connect``; by default the install flow when an app id is
    configured, else legacy Connect.
    """
    href = url_for(f"pdconnect.{flow or _default_flow()}")
    return button_html(href, size=size, theme=theme, label=label, include_css=include_css)


def pagerduty_snippet(flow: str | None = None, **options: Any) -> str:
    """The self-contained snippet, with an absolute link to this app's start of ``flow``."""
    return embed_snippet(url_for(f"pdconnect.{flow or _default_flow()}", _external=True), **options)
