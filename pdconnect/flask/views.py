"""The handshake's routes: start either flow, finish it, take a pasted key, test and disconnect."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

from flask import (
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.wrappers import Response

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
from pdconnect.flask.blueprint import blueprint
from pdconnect.flask.extension import check_form_token, current_pagerduty, session_binding
from pdconnect.flask.signals import cancelled, connected, failed
from pdconnect.flask.webhook_views import subscribe, unsubscribe
from pdconnect.install import check_subdomain
from pdconnect.integration import Integration, Region, integration_from_key
from pdconnect.outcomes import Cancelled
from pdconnect.storage import StoredIntegration

logger = logging.getLogger("pdconnect")

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
    (
        UnsafeURLError,
        "That is not a PagerDuty account",
        "Use the subdomain of your account, e.g. acme for acme.pagerduty.com.",
    ),
    (InvalidIntegrationKey, "That is not an integration key", "Copy the 32-character Integration Key again."),
]


def _explain(error: PdConnectError) -> tuple[str, str]:
    for kind, title, advice in _EXPLANATIONS:
        if isinstance(error, kind):
            return title, advice
    return "Something went wrong", "Please start again."


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
    if subdomain is not None:
        try:
            check_subdomain(subdomain)
        except UnsafeURLError as exc:
            return _failed(exc)
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
    except SQLAlchemyError:  # the used-nonce store; nothing was recorded, so this link still works
        logger.exception("pdconnect: could not check the handshake's state against the nonce store")
        return _page("Could not finish connecting", "Our database did not answer. Reload this page in a minute.", 503)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if isinstance(outcome, Cancelled):
        replacement = _take_over(cancelled.send(app, owner_id=outcome.owner_id, flow=outcome.flow))
        return replacement or _done("PagerDuty setup was cancelled.", "info")
    try:
        stored = [pagerduty.store.save(integration) for integration in outcome.integrations]
    except SQLAlchemyError:
        logger.exception("pdconnect: could not store the new integrations")
        return _unavailable()
    not_subscribed = subscribe(stored)
    replacement = _take_over(connected.send(app, integrations=stored, owner_id=outcome.owner_id))
    names = ", ".join(i.service_name or "a PagerDuty service" for i in stored)
    if not_subscribed and replacement is None:
        flash(f"Incident updates from {', '.join(not_subscribed)} could not be set up; alerts still work.", "info")
    return replacement or _done(f"Connected to PagerDuty: {names}.")


@blueprint.errorhandler(SQLAlchemyError)
def _database_unavailable(exc: SQLAlchemyError) -> ResponseReturnValue:
    """Any route whose database fails (listing, testing, disconnecting): a 503, never a 500."""
    logger.exception("pdconnect: the database did not answer")
    return _page(
        "PagerDuty settings are unavailable", "Our database did not answer. Please try again in a minute.", 503
    )


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
    unsubscribe(integration)
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
