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
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.routing import BuildError
from werkzeug.wrappers import Response

from pdconnect.errors import (
    CallbackError,
    DeliveryError,
    EventRejected,
    HandshakeFailed,
    InvalidData,
    InvalidIntegrationKey,
    InvalidRoutingKey,
    PdConnectError,
    StateExpired,
    StateInvalid,
    StateOwnerMismatch,
    StateReplayed,
    StateSessionMismatch,
    UnsafeURLError,
    UntrustedHost,
)
from pdconnect.events import AlertEvent
from pdconnect.failures import delivery_error_reason
from pdconnect.flask.blueprint import blueprint
from pdconnect.flask.extension import check_form_token, current_pagerduty, external_url, session_binding
from pdconnect.flask.signals import cancelled, connected, failed, integration_broken
from pdconnect.flask.webhook_views import subscribe, unsubscribe
from pdconnect.install import check_subdomain
from pdconnect.integration import Integration, Origin, Region, integration_from_key
from pdconnect.oauth.connection import InstallAccountMismatch
from pdconnect.oauth.errors import IdTokenInvalid, JwksUnavailable, MissingScopes, OAuthRefused, TokenEndpointError
from pdconnect.oauth.refresh import CredentialNotFound, NeedsReauthorization
from pdconnect.outcomes import Cancelled, RejectedEntry
from pdconnect.storage import StoredIntegration
from pdconnect.text import text_problem

logger = logging.getLogger("pdconnect")

#: The longest service name kept, as for a name PagerDuty sends on a callback.
_MAX_NAME = 255

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
    (
        InstallAccountMismatch,
        "That is not the PagerDuty account you connected",
        "Install in the PagerDuty account you authorized, or connect that account first.",
    ),
    (
        MissingScopes,
        "PagerDuty did not grant the access this app needs",
        "Start again and approve every permission listed on PagerDuty's page.",
    ),
    (OAuthRefused, "PagerDuty refused the authorization", "Start again; if it keeps happening, contact support."),
    (JwksUnavailable, "PagerDuty could not be reached", "PagerDuty's sign-in service did not answer. Try again soon."),
    (IdTokenInvalid, "PagerDuty's answer could not be verified", "Start again; if it keeps happening, tell us."),
    (TokenEndpointError, "PagerDuty could not be reached", "PagerDuty's sign-in service did not answer. Try again."),
    (NeedsReauthorization, "PagerDuty needs you to reconnect", "Connect PagerDuty again to restore access."),
    (CredentialNotFound, "PagerDuty is not connected", "Connect PagerDuty first."),
    (HandshakeFailed, "PagerDuty reported an error", "Start again; if it keeps happening, contact support."),
    (
        UnsafeURLError,
        "That is not a PagerDuty account",
        "Use the subdomain of your account, e.g. acme for acme.pagerduty.com.",
    ),
    (InvalidIntegrationKey, "That is not an integration key", "Copy the 32-character Integration Key again."),
    (InvalidData, "That could not be used", "Check what you entered and try again."),
]


def _explain(error: PdConnectError) -> tuple[str, str]:
    for kind, title, advice in _EXPLANATIONS:
        if isinstance(error, kind):
            return title, advice
    return "Something went wrong", "Please start again."


def _wants_json() -> bool:
    return request.is_json or request.accept_mimetypes.best == "application/json"


def _redirect_target() -> str:
    """Where ``PDCONNECT_REDIRECT_TO`` points: a local path, checked at start-up, or its endpoint's URL.

    An endpoint name that names no route is known only once routes are matched; it falls back
    to the home page, with an error logged, rather than turning every outcome into a 500.
    """
    target = str(current_app.config["PDCONNECT_REDIRECT_TO"])
    if target.startswith("/"):
        return target
    try:
        return str(url_for(target))
    except BuildError:
        logger.error("pdconnect: PDCONNECT_REDIRECT_TO names no route of this app (%r); using /", target[:100])
        return "/"


def _done(message: str, category: str = "success") -> Response:
    flash(message, category)
    return redirect(_redirect_target())


def _take_over(signal_results: list[tuple[Any, Any]]) -> Response | None:
    for _receiver, value in signal_results:
        if isinstance(value, Response):
            return value
        if isinstance(value, str):
            return redirect(value)
    return None


def _render_error(
    title: str, advice: str, status: int, *, detail: str = "", error_type: str | None = None, can_restart: bool = False
) -> Response:
    """Render ``PDCONNECT_ERROR_TEMPLATE``, the one template of every pdconnect error page.

    Its context is documented in the Flask guide; keep the two in step.
    """
    pagerduty = current_pagerduty()
    handshake = pagerduty.handshake
    can_install = can_restart and bool(handshake.app_id)
    can_connect = can_restart and bool(handshake.vendor_key)
    start_again = "pdconnect.install" if can_install else "pdconnect.connect" if can_connect else None
    if can_restart and pagerduty.connections is not None:
        start_again = "pdconnect.oauth_start"
    back = current_app.config["PDCONNECT_REDIRECT_TO"]
    back_url = _redirect_target()
    page = render_template(
        current_app.config["PDCONNECT_ERROR_TEMPLATE"],
        title=title,
        advice=advice,
        detail=detail,
        status=status,
        error_type=error_type,
        can_connect=can_connect,
        can_install=can_install,
        start_again_url=_start_url(start_again),
        back=back,
        back_url=back_url,
    )
    return make_response(page, status)


def _start_url(endpoint: str | None) -> str | None:
    if endpoint is None:
        return None
    if endpoint == "pdconnect.oauth_start" and current_pagerduty().handshake.app_id:
        return str(url_for(endpoint, then="install"))
    return str(url_for(endpoint))


#: Endpoints whose URL carries secrets (integration keys, an OAuth code): their pages are shown at a clean URL.
_SECRET_URL_ENDPOINTS = ("pdconnect.callback", "pdconnect.oauth_callback")

#: Where a failed callback's page waits, one-shot, for the clean URL it is redirected to.
_PROBLEM_KEY = "pdconnect_problem"


def _error_page(error: PdConnectError, status: int = 400) -> ResponseReturnValue:
    title, advice = _explain(error)
    if _wants_json():
        return {"error": {"type": type(error).__name__, "message": str(error)}}, status
    if request.endpoint in _SECRET_URL_ENDPOINTS:
        # The callback's URL carries integration keys: show the page at a clean URL, so
        # browser history never keeps them. The message names no key (errors.py's rule).
        session[_PROBLEM_KEY] = {
            "title": title,
            "advice": advice,
            "status": status,
            "detail": str(error)[:500],
            "error_type": type(error).__name__,
        }
        return redirect(url_for("pdconnect.problem"), 303)
    return _render_error(title, advice, status, detail=str(error), error_type=type(error).__name__, can_restart=True)


@blueprint.route("/problem")
def problem() -> ResponseReturnValue:
    """The page of a failed callback, once, at a URL without keys; then back to the app."""
    shown = session.pop(_PROBLEM_KEY, None)
    if not isinstance(shown, dict):
        return redirect(_redirect_target())
    status = shown.get("status")
    return _render_error(
        str(shown.get("title", "Something went wrong")),
        str(shown.get("advice", "Please start again.")),
        status if isinstance(status, int) and 400 <= status < 600 else 400,
        detail=str(shown.get("detail", "")),
        error_type=str(shown.get("error_type") or "") or None,
        can_restart=True,
    )


def _failed(error: PdConnectError, status: int = 400) -> ResponseReturnValue:
    logger.info("pdconnect: handshake failed: %s: %s", type(error).__name__, error)
    replacement = _take_over(failed.send(current_app._get_current_object(), error=error))  # type: ignore[attr-defined]
    return replacement if replacement is not None else _error_page(error, status)


def _page(title: str, advice: str, status: int) -> Response:
    """A plain error page (or JSON reason) that is not about a PdConnectError."""
    if _wants_json():
        return make_response({"error": {"message": f"{title}. {advice}"}}, status)
    return _render_error(title, advice, status)


def _require_owner() -> str:
    """The signed-in owner; otherwise stop with a friendly 401."""
    owner = current_pagerduty().current_owner()
    if owner is None:
        abort(_page("Please sign in", "Sign in to your account before connecting PagerDuty.", 401))
    return owner


def _callback_url() -> str:
    """``PDCONNECT_CALLBACK_URL``, else this route's URL on an allowed host (never a header's choice).

    Stops with a 400 page for a host ``PDCONNECT_ALLOWED_HOSTS`` does not list: a forged
    ``Host`` or ``X-Forwarded-Host`` would otherwise have PagerDuty send the keys elsewhere.
    """
    configured = current_app.config["PDCONNECT_CALLBACK_URL"]
    return str(configured) if configured else external_url("pdconnect.callback")


@blueprint.app_errorhandler(UntrustedHost)
def _untrusted_host(exc: UntrustedHost) -> ResponseReturnValue:
    """A URL was to be built on a host nobody configured (a forged ``Host``): a 400, on any page.

    App-wide, so that a vendor's page rendering :func:`pagerduty_snippet` under such a host
    gets the same page instead of a 500.
    """
    logger.warning(
        "pdconnect: refused to build a URL for host %r: set PDCONNECT_CALLBACK_URL, "
        "or list the host in PDCONNECT_ALLOWED_HOSTS",
        request.host[:100],
    )
    return _page("This address is not set up for PagerDuty", "Open this site at its usual address.", 400)


@blueprint.route("/connect")
def connect() -> ResponseReturnValue:
    """Start legacy PagerDuty Connect for the signed-in owner."""
    owner = _require_owner()
    callback_url = _callback_url()
    try:
        url = current_pagerduty().handshake.connect_url(callback_url, owner_id=owner, session_binding=session_binding())
    except (UnsafeURLError, ValueError) as exc:
        return _misconfigured(exc)
    return redirect(url)


@blueprint.route("/install")
def install() -> ResponseReturnValue:
    """Start PagerDuty's install flow for the signed-in owner (``?subdomain=`` optional)."""
    owner = _require_owner()
    try:
        subdomain = request.args.get("subdomain") or None
    except UnicodeDecodeError:  # Werkzeug decodes the raw query string strictly
        return _failed(CallbackError("the query string is not valid UTF-8", parameter="subdomain"))
    if subdomain is not None:
        try:
            check_subdomain(subdomain)
        except UnsafeURLError as exc:
            return _failed(exc)
    callback_url = _callback_url()
    try:
        url = current_pagerduty().handshake.install_url(
            callback_url, owner_id=owner, session_binding=session_binding(), subdomain=subdomain
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
    """Finish either handshake: verify, parse, store, signal, then redirect or show an error.

    Nobody signed in (a logout that kept the session) is a 401 page before the state is
    looked at, so the state is not consumed. Success redirects to ``PDCONNECT_REDIRECT_TO``,
    a URL without the keys this one carries.
    """
    pagerduty = current_pagerduty()
    owner = _require_owner()
    try:
        outcome = pagerduty.handshake.complete(
            request.query_string,  # the raw bytes: decoded once, strictly, by the core
            session_binding=session_binding(),
            owner_id=owner,
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
    integrations = outcome.integrations
    if pagerduty.connections is not None and outcome.flow is Origin.INSTALL:
        # The install's config is unsigned: only an account the owner authorized through OAuth
        # (the signed ID token's subdomain) is accepted, and its region is the account's.
        try:
            integrations = tuple(pagerduty.connections.install_integrations(outcome.owner_id, integrations))
        except InstallAccountMismatch as exc:
            logger.warning("pdconnect: an install for another account than the OAuth connection's was refused")
            return _failed(exc, 403)
    try:
        stored, rejected = _save_each(integrations, outcome.rejected)
    except InvalidData as exc:  # no value the table could hold: the data's fault, not an outage
        return _failed(exc)
    except SQLAlchemyError:
        logger.exception("pdconnect: could not store the new integrations")
        return _unavailable()
    not_subscribed = subscribe(stored)
    replacement = _take_over(connected.send(app, integrations=stored, owner_id=outcome.owner_id))
    names = ", ".join(i.service_name or "a PagerDuty service" for i in stored)
    if rejected:
        logger.warning(
            "pdconnect: an install callback had %d malformed target(s), left out: %s",
            len(rejected),
            "; ".join(r.reason for r in rejected),
        )
    if replacement is None:
        if not_subscribed:
            flash(f"Incident updates from {', '.join(not_subscribed)} could not be set up; alerts still work.", "info")
        if rejected:
            flash(_refused_message(rejected), "error")
    return replacement or _done(f"Connected to PagerDuty: {names}.")


def _save_each(
    integrations: tuple[Integration, ...], rejected: tuple[RejectedEntry, ...]
) -> tuple[list[StoredIntegration], tuple[RejectedEntry, ...]]:
    """Save each target; one the table refuses joins ``rejected`` and the others are kept.

    As with a malformed entry in the callback, one bad service must not lose the rest of an
    install. Raises the table's :class:`~pdconnect.errors.InvalidData` when none could be saved.
    """
    taken = {entry.index for entry in rejected}
    # Each integration's position among the callback's entries, around the ones already refused.
    positions = [i for i in range(len(integrations) + len(rejected)) if i not in taken]
    stored: list[StoredIntegration] = []
    refused: list[RejectedEntry] = []
    last: InvalidData | None = None
    store = current_pagerduty().store
    for position, integration in zip(positions, integrations, strict=True):
        try:
            stored.append(store.save(integration))
        except InvalidData as exc:
            last = exc
            refused.append(RejectedEntry(index=position, service_name=integration.service_name, reason=str(exc)))
    if last is not None and not stored:
        raise last
    return stored, tuple(sorted((*rejected, *refused), key=lambda entry: entry.index))


def _refused_message(rejected: tuple[RejectedEntry, ...]) -> str:
    which = ", ".join(entry.service_name or f"target {entry.index + 1}" for entry in rejected)
    return f"PagerDuty sent something unusable for {which}, so it was not connected. Connect it again."


@blueprint.after_request
def _no_keys_left_behind(response: Response) -> Response:
    """The callback's URL carries integration keys: keep its page out of caches and Referer headers."""
    if request.endpoint in (*_SECRET_URL_ENDPOINTS, "pdconnect.problem"):
        response.headers["Cache-Control"] = "no-store"
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


@blueprint.errorhandler(UnicodeDecodeError)
def _undecodable(exc: UnicodeDecodeError) -> ResponseReturnValue:
    """Bytes in a request that are not UTF-8 (Werkzeug decodes some strictly): a 400, never a 500."""
    return _page("This request could not be read", "It contains characters that are not valid text.", 400)


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
        name = _pasted_name(data.get("service_name"))
        region = _pasted_region(data.get("region"))
        integration = integration_from_key(
            data.get("integration_key") or "", owner_id=owner, service_name=name, region=region
        )
    except PdConnectError as exc:
        return _failed(exc)
    try:
        stored = current_pagerduty().store.save(integration)
    except InvalidData as exc:
        return _failed(exc)
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


def _pasted_name(value: object) -> str | None:
    """A pasted ``service_name``: absent or blank is ``None``; text a callback would refuse is an error.

    The name is shown on pages, written to logs and stored, so it gets the same check as a
    name PagerDuty sends: at most 255 characters, no control characters, nothing UTF-8 cannot
    encode (a lone surrogate was a 500; a NUL, one on PostgreSQL).
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    problem = text_problem(value, max_length=_MAX_NAME)
    if problem is not None:
        raise InvalidData(f"service_name {problem}", field="service_name")
    assert isinstance(value, str)
    return value.strip()


def _pasted_region(value: object) -> Region:
    """A pasted ``region`` (``us`` or ``eu``, any case); absent or blank is the app's region."""
    if value is None or value == "":
        return current_pagerduty().region
    if isinstance(value, str) and value.strip().lower() in {region.value for region in Region}:
        return Region(value.strip().lower())
    raise InvalidData("region must be us or eu", field="region")


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
    except InvalidRoutingKey as exc:
        return _broken(owner, integration, exc)
    except EventRejected as exc:
        reason = delivery_error_reason(exc)
        store.mark_failing(owner, integration.id, reason)
        if _wants_json():
            return {"ok": False, "error": reason}, 502
        return _done(f"PagerDuty refused the test alert for {name}: {reason}.", "error")
    except DeliveryError as exc:
        reason = delivery_error_reason(exc)
        if _wants_json():
            return {"ok": False, "error": reason}, 502
        return _done(f"Could not reach PagerDuty for {name}: {reason}.", "error")
    store.mark_working(owner, integration.id)
    if _wants_json():
        return {"ok": True, "dedup_key": dedup_key}
    return _done(f"Test alert sent to {name} and resolved.")


def _broken(owner: str, integration: StoredIntegration, error: InvalidRoutingKey) -> ResponseReturnValue:
    """PagerDuty no longer knows the key: mark it broken, tell the app once, and say "reconnect".

    The same as a worker does (``broken_announcer``): the store records PagerDuty's reason,
    and :data:`~pdconnect.flask.signals.integration_broken` is sent only by the call that
    marked it, so pressing Test again does not announce it twice.
    """
    store = current_pagerduty().store
    reason = delivery_error_reason(error)
    store.mark_failing(owner, integration.id, reason)
    if store.mark_broken(owner, integration.id, error.reason, integration_key=integration.integration_key):
        record = store.get(owner, integration.id)
        if record is not None:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            integration_broken.send(app, integration=record, owner_id=owner)
    name = integration.service_name or "the PagerDuty service"
    if _wants_json():
        return {"ok": False, "error": reason, "broken": True, "reconnect": True}, 502
    return _done(
        f"PagerDuty refused the test alert for {name}: {reason}. "
        f"The key was deleted or disabled in PagerDuty: reconnect {name}.",
        "error",
    )
