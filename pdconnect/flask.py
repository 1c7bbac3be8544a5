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

from __future__ import annotations

import hmac
import importlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from blinker import Namespace
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from itsdangerous import BadData, URLSafeTimedSerializer
from markupsafe import Markup
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response

from pdconnect.button import ButtonSize, ButtonTheme, button_html, embed_snippet
from pdconnect.errors import (
    CallbackError,
    DeliveryError,
    EventRejected,
    HandshakeFailed,
    InvalidIntegrationKey,
    PdConnectError,
    StateExpired,
    StateInvalid,
    StateOwnerMismatch,
    StateReplayed,
    StateSessionMismatch,
    UnsafeURLError,
)
from pdconnect.events import AlertEvent
from pdconnect.handshake import Handshake
from pdconnect.integration import Integration, Region, integration_from_key
from pdconnect.nonces import NonceStore, SqlNonceStore
from pdconnect.outbox import Outbox
from pdconnect.outcomes import Cancelled
from pdconnect.retry import RetryPolicy
from pdconnect.sender import Sender
from pdconnect.state import binding_digest, new_session_binding
from pdconnect.storage import IntegrationStore, SqlIntegrationStore, StoredIntegration
from pdconnect.urls import CONNECT_BASE_URL, INSTALL_BASE_URL

logger = logging.getLogger("pdconnect")

_signals = Namespace()
#: Sent after a handshake or a pasted key stored integrations; ``integrations`` (the stored
#: records) and ``owner_id`` as keyword arguments. Return a response to replace the redirect.
connected = _signals.signal("pdconnect-connected")
#: Sent when the user cancelled on PagerDuty's side; ``owner_id`` and ``flow``.
cancelled = _signals.signal("pdconnect-cancelled")
#: Sent when a handshake or pasted key failed; ``error`` (a PdConnectError). Return a
#: response to replace the friendly error page.
failed = _signals.signal("pdconnect-failed")

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
}

_EXPLANATIONS: list[tuple[type[PdConnectError], str, str]] = [
    (StateExpired, "The link expired", "Connecting took longer than allowed. Please start again."),
    (StateReplayed, "This link was already used", "Each connection link works once. Start again for a new one."),
    (
        StateSessionMismatch,
        "This link belongs to another browser session",
        "The connection was started in another browser or session (or your session ended). Start again here.",
    ),
    (StateOwnerMismatch, "This link belongs to another account", "It was started by another user. Start again."),
    (StateInvalid, "This link is not valid", "It was changed, or was not made by this site. Start again."),
    (CallbackError, "PagerDuty's answer could not be read", "Start again; if it keeps happening, contact support."),
    (HandshakeFailed, "PagerDuty reported an error", "Start again; if it keeps happening, contact support."),
    (InvalidIntegrationKey, "That is not an integration key", "Copy the 32-character Integration Key again."),
]


def _explain(error: PdConnectError) -> tuple[str, str]:
    for kind, title, advice in _EXPLANATIONS:
        if isinstance(error, kind):
            return title, advice
    return "Something went wrong", "Please start again."


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
    storage_url: str = ""
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
        store = self._store or SqlIntegrationStore(storage_url)
        nonce_store = self._nonce_store or SqlNonceStore(
            store.engine if isinstance(store, SqlIntegrationStore) else storage_url
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
        sender = self._sender or Sender(
            client=config["PDCONNECT_CLIENT_NAME"],
            client_url=config["PDCONNECT_CLIENT_URL"],
            vendor_key=config["PDCONNECT_VENDOR_KEY"],
            events_base_url=config["PDCONNECT_EVENTS_BASE_URL"],
            retry=RetryPolicy(max_attempts=3, deadline=20.0),
        )
        loader = self._owner_loader
        if loader is None and config["PDCONNECT_OWNER_LOADER"]:
            configured = config["PDCONNECT_OWNER_LOADER"]
            loader = _import(configured) if isinstance(configured, str) else configured
        state = PagerDutyState(
            app=app,
            handshake=handshake,
            store=store,
            sender=sender,
            owner_loader=loader,
            region=Region(config["PDCONNECT_REGION"]),
            csrf=URLSafeTimedSerializer(secret, salt=_CSRF_SALT),
            storage_url=storage_url,
        )
        self._states.append(state)
        app.extensions["pdconnect"] = state
        app.register_blueprint(blueprint, url_prefix=config["PDCONNECT_URL_PREFIX"])
        app.add_template_global(pagerduty_button, "pagerduty_button")
        app.add_template_global(pagerduty_snippet, "pagerduty_snippet")
        app.add_template_global(csrf_token, "pdconnect_csrf_token")
        app.add_template_global(lambda: CSRF_FIELD, "pdconnect_csrf_field")


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


# -- the blueprint -----------------------------------------------------------------------------

blueprint = Blueprint("pdconnect", __name__, template_folder="templates")


def _wants_json() -> bool:
    return request.is_json or request.accept_mimetypes.best == "application/json"


def _done(message: str, category: str = "success") -> Response:
    flash(message, category)
    target = current_app.config["PDCONNECT_REDIRECT_TO"]
    location = target if target.startswith("/") else url_for(target)
    return redirect(location)


def _take_over(signal_results: list[tuple[Any, Any]]) -> Response | None:
    for _receiver, value in signal_results:
        if isinstance(value, Response):
            return value
        if isinstance(value, str):
            return redirect(value)
    return None


def _error_page(error: PdConnectError, status: int = 400) -> ResponseReturnValue:
    title, advice = _explain(error)
    if _wants_json():
        return {"error": {"type": type(error).__name__, "message": str(error)}}, status
    handshake = current_pagerduty().handshake
    return (
        render_template(
            "pdconnect/error.html",
            title=title,
            advice=advice,
            detail=str(error),
            can_connect=bool(handshake.vendor_key),
            can_install=bool(handshake.app_id),
            back=current_app.config["PDCONNECT_REDIRECT_TO"],
        ),
        status,
    )


def _failed(error: PdConnectError, status: int = 400) -> ResponseReturnValue:
    logger.info("pdconnect: handshake failed: %s: %s", type(error).__name__, error)
    replacement = _take_over(failed.send(current_app._get_current_object(), error=error))  # type: ignore[attr-defined]
    return replacement if replacement is not None else _error_page(error, status)


def _page(title: str, advice: str, status: int) -> Response:
    """A plain error page (or JSON reason) that is not about a PdConnectError."""
    if _wants_json():
        return make_response({"error": {"message": f"{title}. {advice}"}}, status)
    page = render_template(
        "pdconnect/error.html",
        title=title,
        advice=advice,
        detail="",
        can_connect=False,
        can_install=False,
        back=current_app.config["PDCONNECT_REDIRECT_TO"],
    )
    return make_response(page, status)


def _require_owner() -> str:
    """The signed-in owner; otherwise stop with a friendly 401."""
    owner = current_pagerduty().current_owner()
    if owner is None:
        abort(_page("Please sign in", "Sign in to your account before connecting PagerDuty.", 401))
    return owner


def _callback_url() -> str:
    configured = current_app.config["PDCONNECT_CALLBACK_URL"]
    return str(configured or url_for("pdconnect.callback", _external=True))


@blueprint.route("/connect")
def connect() -> ResponseReturnValue:
    """Start legacy PagerDuty Connect for the signed-in owner."""
    owner = _require_owner()
    try:
        url = current_pagerduty().handshake.connect_url(
            _callback_url(), owner_id=owner, session_binding=session_binding()
        )
    except (UnsafeURLError, ValueError) as exc:
        return _misconfigured(exc)
    return redirect(url)


@blueprint.route("/install")
def install() -> ResponseReturnValue:
    """Start PagerDuty's install flow for the signed-in owner (``?subdomain=`` optional)."""
    owner = _require_owner()
    subdomain = request.args.get("subdomain") or None
    try:
        url = current_pagerduty().handshake.install_url(
            _callback_url(), owner_id=owner, session_binding=session_binding(), subdomain=subdomain
        )
    except (UnsafeURLError, ValueError) as exc:
        return _misconfigured(exc)
    return redirect(url)


def _misconfigured(exc: Exception) -> ResponseReturnValue:
    logger.error("pdconnect: cannot start a handshake: %s", exc)
    return _page(
        "PagerDuty is not set up here yet",
        "The site's PagerDuty settings are incomplete (for example a callback URL that is not https). "
        "Its administrators have been told.",
        503,
    )


@blueprint.route("/callback")
@blueprint.route("/callback/<state>")
def callback(state: str | None = None) -> ResponseReturnValue:
    """Finish either handshake: verify, parse, store, signal, then redirect or show an error."""
    pagerduty = current_pagerduty()
    try:
        outcome = pagerduty.handshake.complete(
            request.args,
            session_binding=session_binding(),
            owner_id=pagerduty.current_owner(),
            state=state,
            region=pagerduty.region,
        )
    except PdConnectError as exc:
        return _failed(exc)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if isinstance(outcome, Cancelled):
        replacement = _take_over(cancelled.send(app, owner_id=outcome.owner_id, flow=outcome.flow))
        return replacement or _done("PagerDuty setup was cancelled.", "info")
    try:
        stored = [pagerduty.store.save(integration) for integration in outcome.integrations]
    except SQLAlchemyError:
        logger.exception("pdconnect: could not store the new integrations")
        return _unavailable()
    replacement = _take_over(connected.send(app, integrations=stored, owner_id=outcome.owner_id))
    names = ", ".join(i.service_name or "a PagerDuty service" for i in stored)
    return replacement or _done(f"Connected to PagerDuty: {names}.")


def _unavailable() -> ResponseReturnValue:
    return _page("Could not save the connection", "Our database did not answer. Please try again in a minute.", 503)


@blueprint.route("/integrations", methods=["POST"])
def paste_key() -> ResponseReturnValue:
    """Connect with a pasted Events API v2 key (form or JSON: ``integration_key``, ``service_name``)."""
    owner = _require_owner()
    body = request.get_json(silent=True) if request.is_json else None
    data: Mapping[str, Any] = body if isinstance(body, dict) else request.form
    try:
        check_form_token()
        raw_name = data.get("service_name")
        name = (raw_name.strip()[:255] or None) if isinstance(raw_name, str) else None
        region = Region(data.get("region") or current_pagerduty().region.value)
        integration = integration_from_key(
            data.get("integration_key") or "", owner_id=owner, service_name=name, region=region
        )
    except PdConnectError as exc:
        return _failed(exc)
    except ValueError:
        return _failed(InvalidIntegrationKey("region must be us or eu"))
    try:
        stored = current_pagerduty().store.save(integration)
    except SQLAlchemyError:
        logger.exception("pdconnect: could not store a pasted key")
        return _unavailable()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    replacement = _take_over(connected.send(app, integrations=[stored], owner_id=owner))
    if replacement is not None:
        return replacement
    if _wants_json():
        return {"integration": {"id": stored.id, "service_name": stored.service_name, "key_type": stored.key_type}}, 201
    return _done(f"Connected {stored.service_name or 'the integration key'} ending in {stored.integration_key[-4:]}.")


def _owned(integration_id: str) -> tuple[str, StoredIntegration]:
    """The signed-in owner and its integration, after the form's token checked out; else stop."""
    owner = _require_owner()
    try:
        check_form_token()
    except PdConnectError as exc:
        abort(make_response(_failed(exc)))
    integration = current_pagerduty().store.get(owner, integration_id)
    if integration is None:
        if _wants_json():
            abort(make_response({"error": {"type": "NotFound", "message": "no such integration"}}, 404))
        abort(_done("That PagerDuty integration does not exist (any more).", "error"))
    return owner, integration


@blueprint.route("/integrations/<integration_id>/delete", methods=["POST"])
def disconnect(integration_id: str) -> ResponseReturnValue:
    """Disconnect one of the signed-in owner's integrations."""
    owner, integration = _owned(integration_id)
    current_pagerduty().store.delete(owner, integration.id)
    if _wants_json():
        return {"deleted": integration.id}
    return _done(f"Disconnected {integration.service_name or 'the PagerDuty integration'}.")


def send_test_alert(integration: Integration) -> str:
    """Trigger a test incident on ``integration`` and resolve it at once; returns what happened.

    Raises :class:`~pdconnect.errors.DeliveryError` if PagerDuty refused or could not be reached.
    """
    sender = current_pagerduty().sender
    client = current_app.config["PDCONNECT_CLIENT_NAME"] or "this app"
    dedup_key = f"pdconnect-test-{uuid.uuid4().hex[:12]}"
    sender.send(
        integration,
        AlertEvent.trigger(
            f"Test alert from {client}: the PagerDuty connection works",
            source=client,
            severity="info",
            dedup_key=dedup_key,
            custom_details={"note": "Sent by the Test button; resolved right away."},
        ),
    )
    sender.send(integration, AlertEvent.resolve(dedup_key))
    return dedup_key


@blueprint.route("/integrations/<integration_id>/test", methods=["POST"])
def test_integration(integration_id: str) -> ResponseReturnValue:
    """Send a test trigger, then resolve it, and say how it went."""
    owner, integration = _owned(integration_id)
    store = current_pagerduty().store
    name = integration.service_name or "the PagerDuty service"
    try:
        dedup_key = send_test_alert(integration)
    except EventRejected as exc:
        store.mark_failing(owner, integration.id, str(exc))
        if _wants_json():
            return {"ok": False, "error": str(exc)}, 502
        return _done(f"PagerDuty refused the test alert for {name}: {exc.pagerduty_message or exc}.", "error")
    except DeliveryError as exc:
        if _wants_json():
            return {"ok": False, "error": str(exc)}, 502
        return _done(f"Could not reach PagerDuty for {name}: {exc}.", "error")
    store.mark_working(owner, integration.id)
    if _wants_json():
        return {"ok": True, "dedup_key": dedup_key}
    return _done(f"Test alert sent to {name} and resolved.")


@blueprint.route("/webhook", methods=["POST"])
def webhook() -> ResponseReturnValue:
    """Reserved for receiving PagerDuty's webhooks."""
    return {"error": {"message": "webhooks are not enabled"}}, 404
