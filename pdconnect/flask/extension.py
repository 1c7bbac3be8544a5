"""The extension object, its per-app state and the helpers templates and views share."""

from __future__ import annotations

import hmac
import importlib
import logging
import os
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

from flask import (
    Flask,
    current_app,
    render_template,
    request,
    session,
    url_for,
)
from itsdangerous import BadData, URLSafeTimedSerializer
from markupsafe import Markup

from pdconnect.button import ButtonSize, ButtonTheme, button_html, embed_snippet
from pdconnect.config_values import parse_bool, parse_float, parse_int, parse_list
from pdconnect.errors import (
    ConfigError,
    StateInvalid,
    StateSessionMismatch,
    UntrustedHost,
)
from pdconnect.events import Severity
from pdconnect.flask.blueprint import blueprint
from pdconnect.flask.oauth_config import OAUTH_DEFAULTS, OAuthSettings, read_oauth_settings
from pdconnect.flask.signals import needs_reauthorization, webhook_received
from pdconnect.handshake import Handshake
from pdconnect.integration import Region
from pdconnect.nonces import NonceStore, SqlNonceStore
from pdconnect.oauth.cipher import TokenDecryptionError
from pdconnect.oauth.client import PagerDutyOAuth
from pdconnect.oauth.connection import AccountConnections
from pdconnect.oauth.credentials import Credential, CredentialStore, SqlCredentialStore
from pdconnect.oauth.refresh import TokenRefresher
from pdconnect.outbox import Outbox
from pdconnect.retry import RetryPolicy
from pdconnect.sender import Sender
from pdconnect.state import binding_digest, new_session_binding
from pdconnect.storage import IntegrationStore, SqlIntegrationStore, StoredIntegration
from pdconnect.transport import Transport
from pdconnect.urls import CONNECT_BASE_URL, EVENTS_BASE_URLS, INSTALL_BASE_URL
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
from pdconnect.webhooks.deliveries import KEEP_FOR
from pdconnect.webhooks.subscriptions import REST_API_URL

logger = logging.getLogger("pdconnect")

SESSION_BINDING_KEY = "pdconnect_binding"
CSRF_FIELD = "pdconnect_csrf"
CSRF_HEADER = "X-PDConnect-CSRF"
_CSRF_SALT = "pdconnect.form-token.v1"
_CSRF_MAX_AGE = 4 * 3600
_MAX_CSRF_LENGTH = 512
#: The loopback names, allowed by default so a development server works unconfigured.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
#: A state older than a day is not a person clicking through PagerDuty.
_MAX_STATE_AGE = 24 * 3600
#: No request body pdconnect reads needs more than this.
_MAX_BODY_LIMIT = 256 * 1024 * 1024
# A Flask endpoint name ("acme.settings"): what PDCONNECT_REDIRECT_TO holds when it is not a path.
_ENDPOINT = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z_][A-Za-z0-9_\-]*)*", re.ASCII)
_MAX_REDIRECT_LENGTH = 2048
# Characters a redirect target never needs: controls, format (bidi) and separators (spaces, U+2028).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})
# A host as a request may carry it: a name or a bracketed IPv6 address, then an optional port.
_REQUEST_HOST = re.compile(r"(?:[A-Za-z0-9_.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?", re.ASCII)

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
    "PDCONNECT_ALLOWED_HOSTS": LOOPBACK_HOSTS,
    "PDCONNECT_ERROR_TEMPLATE": "pdconnect/error.html",
    "PDCONNECT_STATE_MAX_AGE": 600,
    "PDCONNECT_WEBHOOK_SECRETS": (),
    "PDCONNECT_WEBHOOK_LEGACY_TOKEN": None,
    "PDCONNECT_WEBHOOK_MAX_BYTES": MAX_BODY_BYTES,
    "PDCONNECT_WEBHOOK_MAX_EVENT_AGE": KEEP_FOR,
    "PDCONNECT_WEBHOOK_URL": None,
    "PDCONNECT_WEBHOOK_SUBSCRIBE": True,
    "PDCONNECT_REST_API_TOKEN": None,
    "PDCONNECT_REST_API_OAUTH": False,
    "PDCONNECT_REST_API_URL": REST_API_URL,
    "PDCONNECT_ALERTMANAGER_MAX_BYTES": 4 * 1024 * 1024,
    "PDCONNECT_ALERTMANAGER_DEFAULT_SEVERITY": "error",
    "PDCONNECT_ALERTMANAGER_AUTHENTICATE": None,
    **OAUTH_DEFAULTS,
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
    #: Per-account OAuth, when ``PDCONNECT_OAUTH_CLIENT_ID`` is set (else ``None``).
    oauth: PagerDutyOAuth | None = field(default=None, repr=False)
    connections: AccountConnections | None = field(default=None, repr=False)
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
    token = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if len(token) > _MAX_CSRF_LENGTH or not token.isascii():  # none of ours; itsdangerous would raise
        raise StateInvalid("the form's security token is missing or expired")
    try:
        digest = current_pagerduty().csrf.loads(token, max_age=_CSRF_MAX_AGE)
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
        credential_store: CredentialStore | None = None,
        transport: Transport | None = None,
    ) -> None:
        self._credential_store = credential_store
        self._transport = transport
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
        _read_settings(config)
        oauth_settings = read_oauth_settings(config)
        secrets = _signing_secrets(config)
        # itsdangerous signs with the last key of a list and verifies with all of them.
        secret = [key.encode("utf-8") if isinstance(key, str) else key for key in reversed(secrets)]
        storage_url = config["PDCONNECT_STORAGE_URL"] or f"sqlite:///{app.instance_path}/pdconnect.db"
        if storage_url.startswith("sqlite:///") and (self._store is None or self._nonce_store is None):
            os.makedirs(app.instance_path, exist_ok=True)
        store = self._store if self._store is not None else SqlIntegrationStore(storage_url)
        nonce_store = (
            self._nonce_store
            if self._nonce_store is not None
            # The handshake's clock, so a nonce is kept exactly as long as its state could verify.
            else SqlNonceStore(
                store.engine if isinstance(store, SqlIntegrationStore) else storage_url, clock=self._clock
            )
        )
        handshake = Handshake(
            secret=secret,
            vendor_key=config["PDCONNECT_VENDOR_KEY"],
            app_id=config["PDCONNECT_APP_ID"],
            nonce_store=nonce_store,
            max_age=config["PDCONNECT_STATE_MAX_AGE"],
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
                events_base_urls=_regional_events(oauth_settings, config),
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
            secrets=list(config["PDCONNECT_WEBHOOK_SECRETS"]),
            secret_store=webhook_secrets,
            deliveries=SqlDeliveryLog(webhook_secrets.engine),
            incidents=incidents,
            legacy_token=config["PDCONNECT_WEBHOOK_LEGACY_TOKEN"],
            max_body_bytes=config["PDCONNECT_WEBHOOK_MAX_BYTES"],
            max_event_age=config["PDCONNECT_WEBHOOK_MAX_EVENT_AGE"],
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
        if oauth_settings is not None:
            self._init_oauth(app, state, oauth_settings, secret=secret, nonces=nonce_store)
        self._states.append(state)
        app.extensions["pdconnect"] = state
        app.register_blueprint(blueprint, url_prefix=config["PDCONNECT_URL_PREFIX"])
        app.add_template_global(pagerduty_button, "pagerduty_button")
        app.add_template_global(pagerduty_snippet, "pagerduty_snippet")
        app.add_template_global(csrf_token, "pdconnect_csrf_token")
        app.add_template_global(lambda: CSRF_FIELD, "pdconnect_csrf_field")
        app.add_template_global(pagerduty_accounts, "pagerduty_accounts")
        app.add_template_global(pagerduty_reconnect_banner, "pagerduty_reconnect_banner")

    def _init_oauth(
        self,
        app: Flask,
        state: PagerDutyState,
        settings: OAuthSettings,
        *,
        secret: Sequence[bytes | str],
        nonces: NonceStore,
    ) -> None:
        """Per-account OAuth: the client, the encrypted credential store, the refresher and the connection service."""
        config = app.config
        credentials = self._credential_store
        if credentials is None:
            engine = state.store.engine if isinstance(state.store, SqlIntegrationStore) else state.storage_url
            credentials = SqlCredentialStore(
                engine, cipher=settings.cipher, insecure_plaintext=settings.insecure_plaintext
            )
        oauth = PagerDutyOAuth(settings.app, secret=secret, nonces=nonces, transport=self._transport, clock=self._clock)

        def announce(credential: Credential) -> None:
            with app.app_context():
                needs_reauthorization.send(app, credential=credential, owner_id=credential.owner_id)

        refresher = TokenRefresher(credentials, oauth, on_needs_reauthorization=announce)
        configured_hook = config["PDCONNECT_WEBHOOK_URL"]
        state.oauth = oauth
        state.connections = AccountConnections(
            oauth,
            credentials,
            refresher,
            state.webhook_secrets,
            state.store,
            webhook_url=configured_hook if configured_hook else _route_webhook_url,
            subscribe=bool(config["PDCONNECT_WEBHOOK_SUBSCRIBE"]),
            rest_transport=self._transport,
        )


def _route_webhook_url() -> str:
    """The URL of this app's webhook route, on a configured or allowed host (needs a request)."""
    return external_url("pdconnect.webhook")


def _regional_events(settings: OAuthSettings | None, config: dict[str, Any]) -> dict[Region, str] | None:
    """With OAuth, each region's Events API host from the app's ``events_bases``."""
    if settings is None:
        return None
    bases = dict(EVENTS_BASE_URLS)
    for region, url in settings.app.events_bases.items():
        bases[Region(region)] = url
    return bases


_OPTIONAL_TEXT = (
    "PDCONNECT_VENDOR_KEY",
    "PDCONNECT_APP_ID",
    "PDCONNECT_CLIENT_NAME",
    "PDCONNECT_CLIENT_URL",
    "PDCONNECT_EVENTS_BASE_URL",
    "PDCONNECT_STORAGE_URL",
    "PDCONNECT_CALLBACK_URL",
    "PDCONNECT_WEBHOOK_LEGACY_TOKEN",
    "PDCONNECT_WEBHOOK_URL",
    "PDCONNECT_REST_API_TOKEN",
)
_REQUIRED_TEXT = (
    "PDCONNECT_CONNECT_BASE_URL",
    "PDCONNECT_INSTALL_BASE_URL",
    "PDCONNECT_URL_PREFIX",
    "PDCONNECT_REDIRECT_TO",
    "PDCONNECT_REST_API_URL",
    "PDCONNECT_ERROR_TEMPLATE",
)


def _read_settings(config: dict[str, Any]) -> None:
    """Check every ``PDCONNECT_*`` setting once and keep it as its real type.

    A setting may be the Python value or the string an environment variable holds
    (``"false"``, ``"600"``, ``"a,b"``). A wrong one raises
    :class:`~pdconnect.errors.ConfigError` here, at start-up, not on some later request.
    """
    for name in ("PDCONNECT_WEBHOOK_SUBSCRIBE", "PDCONNECT_REST_API_OAUTH"):
        config[name] = parse_bool(config[name], name=name)
    config["PDCONNECT_STATE_MAX_AGE"] = parse_int(
        config["PDCONNECT_STATE_MAX_AGE"], name="PDCONNECT_STATE_MAX_AGE", minimum=1, maximum=_MAX_STATE_AGE
    )
    for name in ("PDCONNECT_WEBHOOK_MAX_BYTES", "PDCONNECT_ALERTMANAGER_MAX_BYTES"):
        config[name] = parse_int(config[name], name=name, minimum=1, maximum=_MAX_BODY_LIMIT)
    config["PDCONNECT_WEBHOOK_MAX_EVENT_AGE"] = _max_event_age(config["PDCONNECT_WEBHOOK_MAX_EVENT_AGE"])
    config["PDCONNECT_WEBHOOK_SECRETS"] = parse_list(
        config["PDCONNECT_WEBHOOK_SECRETS"], name="PDCONNECT_WEBHOOK_SECRETS"
    )
    config["PDCONNECT_ALLOWED_HOSTS"] = _allowed_hosts(config["PDCONNECT_ALLOWED_HOSTS"])
    for name in _OPTIONAL_TEXT:
        value = config[name]
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{name} must be a string, not a {type(value).__name__}", setting=name)
        config[name] = (value.strip() or None) if isinstance(value, str) else None
    for name in _REQUIRED_TEXT:
        if not isinstance(config[name], str) or not config[name].strip():
            raise ConfigError(f"{name} must be a non-empty string", setting=name)
        config[name] = config[name].strip()
    _check_redirect_target(config["PDCONNECT_REDIRECT_TO"])
    for name, kind in (("PDCONNECT_REGION", Region), ("PDCONNECT_ALERTMANAGER_DEFAULT_SEVERITY", Severity)):
        allowed = ", ".join(member.value for member in kind)
        value = config[name]
        if not isinstance(value, str) or value.strip().lower() not in {member.value for member in kind}:
            raise ConfigError(f"{name} must be one of {allowed}", setting=name)
        config[name] = value.strip().lower()
    secret = config["PDCONNECT_SECRET"]
    if isinstance(secret, list | tuple):
        config["PDCONNECT_SECRET"] = _secret_list(secret, name="PDCONNECT_SECRET", allow_empty=False)
    elif secret is not None and not isinstance(secret, str | bytes):
        raise ConfigError(
            f"PDCONNECT_SECRET must be a string or a list of strings, not a {type(secret).__name__}",
            setting="PDCONNECT_SECRET",
        )
    loader = config["PDCONNECT_OWNER_LOADER"]
    if loader is not None and not (isinstance(loader, str) or callable(loader)):
        raise ConfigError(
            "PDCONNECT_OWNER_LOADER must be 'module:function' or a function", setting="PDCONNECT_OWNER_LOADER"
        )
    authenticate = config["PDCONNECT_ALERTMANAGER_AUTHENTICATE"]
    if authenticate is not None and not callable(authenticate):
        # A string from the environment cannot name a hook; refusing it here beats a 500 per request.
        raise ConfigError(
            "PDCONNECT_ALERTMANAGER_AUTHENTICATE must be a function (request) -> owner id or None, "
            f"set in Python, not a {type(authenticate).__name__}",
            setting="PDCONNECT_ALERTMANAGER_AUTHENTICATE",
        )


def _check_redirect_target(target: str) -> None:
    """``PDCONNECT_REDIRECT_TO`` must be a path on this site or an endpoint name, nothing a browser leaves for.

    Every finished handshake redirects there and every error page links there, so a
    protocol-relative ``//host``, a ``/\\host`` (which browsers read as ``//host``), another
    scheme or a CR/LF would be an open redirect or a broken header on each of them.
    """
    setting = "PDCONNECT_REDIRECT_TO"
    expected = f"{setting} must be a path on this site (such as /settings) or an endpoint name (such as acme.settings)"
    if len(target) > _MAX_REDIRECT_LENGTH or any(unicodedata.category(ch) in _UNSAFE_CATEGORIES for ch in target):
        raise ConfigError(expected, setting=setting)
    if target.startswith("/"):
        if target.startswith("//") or "\\" in target:
            raise ConfigError(f"{expected}; //host and backslashes lead to another site", setting=setting)
        return
    if not _ENDPOINT.fullmatch(target):
        raise ConfigError(expected, setting=setting)


_MIN_SECRET_LENGTH = 16


def _secret_list(value: list[Any] | tuple[Any, ...], *, name: str, allow_empty: bool) -> tuple[str | bytes, ...]:
    """A list of signing secrets from ``name``: each a string or bytes of at least 16 characters."""
    if not value and not allow_empty:
        raise ConfigError(f"{name} must not be an empty list", setting=name)
    for position, item in enumerate(value):
        if not isinstance(item, str | bytes):
            raise ConfigError(f"{name}[{position}] must be a string, not a {type(item).__name__}", setting=name)
        if len(item) < _MIN_SECRET_LENGTH:
            raise ConfigError(f"{name}[{position}] must be at least {_MIN_SECRET_LENGTH} characters", setting=name)
        if isinstance(item, str) and not _encodable(item):
            raise ConfigError(f"{name}[{position}] must be text UTF-8 can encode", setting=name)
    return tuple(value)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _signing_secrets(config: dict[str, Any]) -> tuple[str | bytes, ...]:
    """The secrets that sign (the first) and verify (all) handshake states and form tokens.

    ``PDCONNECT_SECRET`` (one secret, or a list to rotate: the new one first), else the app's
    ``SECRET_KEY`` followed by its ``SECRET_KEY_FALLBACKS``, as Flask rotates its sessions, so
    a state signed before a rotation still verifies after it.
    """
    configured = config["PDCONNECT_SECRET"]
    if configured:
        return tuple(configured) if isinstance(configured, tuple) else (configured,)
    key = config.get("SECRET_KEY")
    if not key:
        raise RuntimeError("pdconnect needs PDCONNECT_SECRET or the app's SECRET_KEY")
    if not isinstance(key, str | bytes):
        raise ConfigError(f"SECRET_KEY must be a string, not a {type(key).__name__}", setting="SECRET_KEY")
    fallbacks = config.get("SECRET_KEY_FALLBACKS") or ()
    if isinstance(fallbacks, str | bytes):
        fallbacks = (fallbacks,)
    if not isinstance(fallbacks, list | tuple):
        raise ConfigError(
            f"SECRET_KEY_FALLBACKS must be a list of strings, not a {type(fallbacks).__name__}",
            setting="SECRET_KEY_FALLBACKS",
        )
    return (key, *_secret_list(fallbacks, name="SECRET_KEY_FALLBACKS", allow_empty=True))


def _max_event_age(value: Any) -> float:
    """``PDCONNECT_WEBHOOK_MAX_EVENT_AGE``: seconds, more than 0 and at most 72 hours."""
    name = "PDCONNECT_WEBHOOK_MAX_EVENT_AGE"
    seconds = parse_float(value, name=name, minimum=0, maximum=KEEP_FOR)
    if seconds <= 0:
        raise ConfigError(f"{name} must be a finite number of seconds above 0 and at most {KEEP_FOR:.0f}", setting=name)
    return seconds


def _allowed_hosts(value: Any) -> tuple[str, ...]:
    """``PDCONNECT_ALLOWED_HOSTS``: a list, or one comma-separated string, of entries a request can match.

    ``None``, ``""`` and an empty list allow no host (set ``PDCONNECT_CALLBACK_URL``). Inside a
    list, an empty entry (``"a.example,,b.example"``) is refused like any entry that can never
    match, rather than dropped: it is a typo someone should see.
    """
    setting = "PDCONNECT_ALLOWED_HOSTS"
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ConfigError(
            f"{setting} must be a list of host names or one comma-separated string, not a {type(value).__name__}",
            setting=setting,
        )
    hosts = []
    for position, item in enumerate(items):
        if not isinstance(item, str):
            raise ConfigError(f"{setting}[{position}] must be a string, not a {type(item).__name__}", setting=setting)
        hosts.append(_allowed_host(item.strip() if isinstance(value, str) else item, position))
    return tuple(hosts)


# One label of a host name: letters, digits and inner hyphens. Werkzeug empties a request's
# host that holds anything else (an underscore, say), so such an entry could never match.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)


def _allowed_host(entry: str, position: int = 0) -> str:
    """One ``PDCONNECT_ALLOWED_HOSTS`` entry (``monitoring.acme.example``, ``host:8443``, ``::1``), lowercased.

    Refused, naming the entry, when no request could ever match it: a URL (``https://x``), a
    path, a wildcard, whitespace, an empty entry, a port of 0 or over 65535, an empty label.
    Host names are not secrets, so the message may quote the entry.
    """
    shown = repr(entry[:100])
    expected = (
        f"PDCONNECT_ALLOWED_HOSTS[{position}] ({shown}) can never match a request: entries are host names "
        "or IP addresses, optionally with :port (1 to 65535), without a scheme, path, wildcard or spaces"
    )
    setting = "PDCONNECT_ALLOWED_HOSTS"
    if not entry or entry != entry.strip():
        raise ConfigError(expected, setting=setting)
    split = _split_host(entry)
    if split is None:
        raise ConfigError(expected, setting=setting)
    name, port = split
    if port == 0:
        raise ConfigError(expected, setting=setting)
    is_address = entry.startswith("[") or ":" in name
    if not is_address and not all(_LABEL.fullmatch(label) for label in name.split(".")):
        raise ConfigError(expected, setting=setting)
    return entry.lower().rstrip(".")


def _split_host(host: str) -> tuple[str, int | None] | None:
    """``(name, port)`` of a host as a request or the allow-list spells it; ``None`` if malformed."""
    bare = host if _REQUEST_HOST.fullmatch(host) else f"[{host}]"  # an IPv6 allow-list entry, unbracketed
    if not _REQUEST_HOST.fullmatch(bare):
        return None
    try:
        parts = urlsplit(f"//{bare}")
        port = parts.port
    except ValueError:  # a port over 65535, or brackets that are not an IPv6 address
        return None
    if not parts.hostname:
        return None
    return parts.hostname.lower().rstrip("."), port


def trusted_host() -> str:
    """The request's host, if ``PDCONNECT_ALLOWED_HOSTS`` lists it; else raise.

    Compared as host names (case-insensitive, a trailing dot ignored), and the port too when
    the entry gives one. A proxy's ``X-Forwarded-Host`` counts only if the app trusts it
    (``ProxyFix``); either way it must be listed. Raises :class:`~pdconnect.errors.UntrustedHost`.
    """
    requested = _split_host(request.host)
    if requested is not None:
        for entry in current_app.config["PDCONNECT_ALLOWED_HOSTS"]:
            allowed = _split_host(entry)
            if allowed is not None and allowed[0] == requested[0] and allowed[1] in (None, requested[1]):
                return request.host
    raise UntrustedHost("this site is not configured to serve PagerDuty under the host of this request")


def external_url(endpoint: str, **values: Any) -> str:
    """An absolute URL of one of this app's routes, never with a host chosen by a request header.

    With ``PDCONNECT_CALLBACK_URL`` set, its scheme and host are used; otherwise the request's,
    only if :func:`trusted_host` accepts it (raises :class:`~pdconnect.errors.UntrustedHost`).
    """
    configured = current_app.config["PDCONNECT_CALLBACK_URL"]
    if configured:
        origin = urlsplit(configured)
        return f"{origin.scheme}://{origin.netloc}{url_for(endpoint, **values)}"
    trusted_host()
    return str(url_for(endpoint, _external=True, **values))


def _announce(app: Flask, event: WebhookEvent) -> None:
    webhook_received.send(app, event=event)


# -- template helpers --------------------------------------------------------------------------


def _default_flow() -> str:
    handshake = current_pagerduty().handshake
    return "install" if handshake.app_id else "connect"


def oauth_start_url() -> str:
    """Where the "Connect PagerDuty" button starts: OAuth, then the install flow when an app id is set too."""
    pagerduty = current_pagerduty()
    if pagerduty.handshake.app_id:
        return str(url_for("pdconnect.oauth_start", then="install"))
    return str(url_for("pdconnect.oauth_start"))


def _button_href(flow: str | None) -> str:
    if flow == "oauth" or (flow is None and current_pagerduty().connections is not None):
        return oauth_start_url()
    return str(url_for(f"pdconnect.{flow or _default_flow()}"))


def pagerduty_button(
    flow: str | None = None,
    *,
    size: ButtonSize | str = ButtonSize.MEDIUM,
    theme: ButtonTheme | str = ButtonTheme.LIGHT,
    label: str = "Alert with PagerDuty",
    include_css: bool = True,
) -> Markup:
    """The button for the current user, linking to this app's start of ``flow``.

    ``flow`` is ``oauth``, ``install`` or ``connect``. By default: with OAuth configured, OAuth
    (continuing into the install flow when an app id is configured too: one button for both);
    else the install flow when an app id is configured, else legacy Connect.
    """
    href = _button_href(flow)
    return button_html(href, size=size, theme=theme, label=label, include_css=include_css)


def pagerduty_snippet(flow: str | None = None, **options: Any) -> str:
    """The self-contained snippet, with an absolute link to this app's start of ``flow``."""
    if flow == "oauth" or (flow is None and current_pagerduty().connections is not None):
        then = {"then": "install"} if current_pagerduty().handshake.app_id else {}
        return embed_snippet(external_url("pdconnect.oauth_start", **then), **options)
    return embed_snippet(external_url(f"pdconnect.{flow or _default_flow()}"), **options)


@dataclass(frozen=True)
class ConnectedAccount:
    """One of the owner's connected PagerDuty accounts, as pages show it (never with a token)."""

    account_id: str
    subdomain: str
    region: str
    scopes: tuple[str, ...]
    needs_reauthorization: bool
    reason: str | None
    user_id: str

    @classmethod
    def of(cls, credential: Credential) -> ConnectedAccount:
        return cls(
            account_id=credential.account_id,
            subdomain=credential.account.subdomain,
            region=credential.account.region,
            scopes=tuple(sorted(credential.scopes)),
            needs_reauthorization=credential.needs_reauthorization,
            reason=credential.needs_reauthorization_reason,
            user_id=credential.account.user_id,
        )


def pagerduty_accounts(owner_id: str | None = None) -> list[ConnectedAccount]:
    """The signed-in owner's (or ``owner_id``'s) OAuth-connected accounts; empty without OAuth or owner.

    Empty too, with an error logged, when the stored tokens cannot be decrypted with any of
    ``PDCONNECT_TOKEN_KEYS``, so that the vendor's pages still render.
    """
    pagerduty = current_pagerduty()
    if pagerduty.connections is None:
        return []
    owner = owner_id if owner_id is not None else pagerduty.current_owner()
    if owner is None:
        return []
    try:
        credentials = pagerduty.connections.accounts(owner)
    except TokenDecryptionError as exc:
        # A key was dropped before the rows were re-encrypted: every page showing the banner
        # would be a 500. Say it where operators look, and show no connection.
        logger.error("pdconnect: the owner's PagerDuty connections cannot be read: %s", exc)
        return []
    return [ConnectedAccount.of(c) for c in credentials]


#: The banner's template; an app overrides it with a template of the same name.
RECONNECT_TEMPLATE = "pdconnect/reconnect_banner.html"


def pagerduty_reconnect_banner() -> Markup:
    """A "Reconnect PagerDuty" banner when any of the owner's connections needs re-authorisation, else nothing.

    Rendered from ``pdconnect/reconnect_banner.html`` (autoescaped; override it in the app's
    templates) with ``accounts`` (the :class:`ConnectedAccount` values to reconnect) and
    ``reconnect_url``.
    """
    accounts = [a for a in pagerduty_accounts() if a.needs_reauthorization]
    if not accounts:
        return Markup("")
    # The template is autoescaped: Markup marks its already-escaped output as such.
    return Markup(render_template(RECONNECT_TEMPLATE, accounts=accounts, reconnect_url=oauth_start_url()))  # noqa: S704
