"""The OAuth routes: start an authorization, finish it, disconnect an account.

``GET /pagerduty/oauth/start`` sends the signed-in owner to PagerDuty's consent page;
``GET /pagerduty/oauth/callback`` finishes (the connection service stores the credential and
subscribes the webhook URL with the account's own token), then redirects to a URL without the
code; ``POST /pagerduty/oauth/disconnect`` deletes the subscription and forgets the tokens. A
cancel, a refusal, missing scopes or a bad state is a 4xx page, PagerDuty's identity host
being down a 503: never a 500. The logic is in :class:`~pdconnect.oauth.connection.AccountConnections`.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import abort, current_app, flash, redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError

from pdconnect.errors import CallbackError, PdConnectError
from pdconnect.flask.blueprint import blueprint
from pdconnect.flask.extension import check_form_token, current_pagerduty, session_binding
from pdconnect.flask.signals import account_connected, account_disconnected, cancelled
from pdconnect.flask.views import _done, _failed, _page, _redirect_target, _require_owner, _take_over, _wants_json
from pdconnect.oauth.connection import AccountConnections, WebhookSetupFailed
from pdconnect.oauth.errors import JwksUnavailable, OAuthCancelled, TokenEndpointError
from pdconnect.text import text_problem

logger = logging.getLogger("pdconnect")

#: The states this session started (newest last), for a callback on which PagerDuty did not
#: echo ``state`` (UNCONFIRMED whether it always does; see docs/oauth.md).
_STATES_KEY = "pdconnect_oauth_states"
_MAX_STATES = 4
_MAX_STATE_LENGTH = 4096


def _connections() -> AccountConnections:
    connections = current_pagerduty().connections
    if connections is None:
        abort(_page("PagerDuty OAuth is not set up here", "Connect PagerDuty another way.", 404))
    return connections


@blueprint.route("/oauth/start")
def oauth_start() -> ResponseReturnValue:
    """Send the signed-in owner to PagerDuty to authorize this app (``?then=install``: the install flow next)."""
    _connections()
    owner = _require_owner()
    oauth = current_pagerduty().oauth
    assert oauth is not None
    try:
        then = request.args.get("then")
    except UnicodeDecodeError:
        return _failed(CallbackError("the query string is not valid UTF-8", parameter="then"))
    if then not in (None, "", "install") or (then == "install" and not current_pagerduty().handshake.app_id):
        return _failed(CallbackError("'then' may only be 'install', with the install flow set up", parameter="then"))
    return_to = url_for("pdconnect.install") if then == "install" else None
    try:
        start = oauth.authorize(owner_id=owner, session_binding=session_binding(), return_to=return_to)
    except ValueError as exc:
        logger.error("pdconnect: cannot start an OAuth authorization: %s", exc)
        return _page("PagerDuty is not set up here yet", "The site's PagerDuty settings are incomplete.", 503)
    states = [s for s in session.get(_STATES_KEY, []) if isinstance(s, str)][-(_MAX_STATES - 1) :]
    session[_STATES_KEY] = [*states, start.state]
    return redirect(start.url)


def _session_state() -> str | None:
    """The state to check a callback against when PagerDuty did not echo one: this session's newest."""
    states = session.get(_STATES_KEY)
    if isinstance(states, list) and states and isinstance(states[-1], str):
        return states[-1]
    return None


def _forget_state(state: str | None) -> None:
    states = session.get(_STATES_KEY)
    if isinstance(states, list):
        session[_STATES_KEY] = [s for s in states if s != state]


@blueprint.route("/oauth/callback")
def oauth_callback() -> ResponseReturnValue:
    """Finish an authorization: verify, store, subscribe, signal, then redirect to a clean URL.

    Nobody signed in is a 401 page before the state is looked at, so it is not consumed.
    """
    connections = _connections()
    owner = _require_owner()
    oauth = current_pagerduty().oauth
    assert oauth is not None
    try:
        echoed = request.args.get("state")
    except UnicodeDecodeError:
        return _failed(CallbackError("the query string is not valid UTF-8", parameter="state"))
    if echoed is not None and len(echoed) > _MAX_STATE_LENGTH:
        return _failed(CallbackError("the callback's state is too long", parameter="state"))
    fallback = None if echoed is not None else _session_state()
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        authorized = oauth.finish(
            request.query_string, owner_id=owner, session_binding=session_binding(), state=fallback
        )
    except OAuthCancelled:
        _forget_state(echoed or fallback)
        replacement = _take_over(cancelled.send(app, owner_id=owner, flow="oauth"))
        return replacement or _done("PagerDuty was not connected: the authorization was cancelled.", "info")
    except (JwksUnavailable, TokenEndpointError) as exc:
        retryable = isinstance(exc, JwksUnavailable) or exc.retryable or exc.status is None
        return _failed(exc, 503 if retryable else 502)
    except PdConnectError as exc:
        return _failed(exc)
    except SQLAlchemyError:
        logger.exception("pdconnect: could not check the OAuth state against the nonce store")
        return _page("Could not finish connecting", "Our database did not answer. Start again in a minute.", 503)
    _forget_state(echoed or fallback)
    subscribed = True
    try:
        credential = connections.connected(authorized)
    except WebhookSetupFailed as exc:
        credential, subscribed = exc.credential, False
        flash(f"Connected, but incident updates could not be set up: {exc.cause}", "info")
    except PdConnectError as exc:  # InvalidData: nothing a table could hold
        return _failed(exc)
    except SQLAlchemyError:
        logger.exception("pdconnect: could not store the OAuth credential")
        return _page("Could not save the connection", "Our database did not answer. Start again in a minute.", 503)
    replacement = _take_over(account_connected.send(app, credential=credential, owner_id=owner, subscribed=subscribed))
    if replacement is not None:
        return replacement
    if authorized.return_to:
        return redirect(authorized.return_to, 303)
    region = " (EU)" if credential.account.region == "eu" else ""
    flash(f"Connected to the PagerDuty account {credential.account.subdomain}{region}.", "success")
    return redirect(_redirect_target(), 303)


@blueprint.route("/oauth/disconnect", methods=["POST"])
def oauth_disconnect() -> ResponseReturnValue:
    """Disconnect one of the owner's accounts (form field ``account_id``): subscription first, then tokens."""
    connections = _connections()
    owner = _require_owner()
    try:
        check_form_token()
    except PdConnectError as exc:
        return _failed(exc)
    data: Any = request.get_json(silent=True) if request.is_json else request.form
    account_id = data.get("account_id") if isinstance(data, dict) or hasattr(data, "get") else None
    # PagerDuty account ids are short printable ids; anything else names no connection (and a NUL
    # would be a database error on PostgreSQL rather than a 400).
    if not isinstance(account_id, str) or text_problem(account_id, max_length=255) is not None:
        return _page("Which account?", "The form did not say which PagerDuty account to disconnect.", 400)
    result = connections.disconnect(owner, account_id)
    if not (result.forgotten or result.removed or result.left_at_pagerduty):
        if _wants_json():
            return {"error": {"type": "NotFound", "message": "no such PagerDuty connection"}}, 404
        return _done("That PagerDuty account is not connected (any more).", "error")
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    replacement = _take_over(account_disconnected.send(app, owner_id=owner, account_id=account_id, result=result))
    if replacement is not None:
        return replacement
    if _wants_json():
        return {
            "disconnected": account_id,
            "removed": list(result.removed),
            "left_at_pagerduty": list(result.left_at_pagerduty),
        }
    if result.left_at_pagerduty:
        flash(
            f"Disconnected {result.subdomain or 'the account'}, but its webhook subscription could not be "
            f"deleted in PagerDuty ({result.reason}); delete it there under Integrations > Generic Webhooks.",
            "error",
        )
        return redirect(_redirect_target())
    return _done(f"Disconnected the PagerDuty account {result.subdomain or result.account_id}.")
