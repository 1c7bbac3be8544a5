"""``POST /pagerduty/alertmanager``: an owner's Alertmanager sends its groups to PagerDuty.

Each owner gets a bearer token (:func:`alertmanager_token`, shown in the vendor's settings
page) to put in its Alertmanager's ``webhook_configs`` (``http_config.authorization``). The
token is the owner id signed with the app's secret, so it needs no storage; rotating the
secret revokes every token. A notification is enqueued in the outbox for each of the
owner's integrations (``?integration=<id>`` picks one), all or none, and answered 202.

A vendor with tokens of its own (stored, rotated, revocable one by one) sets
``PDCONNECT_ALERTMANAGER_AUTHENTICATE`` to a callable ``(request) -> owner_id | None``; it then
replaces the signed-token check entirely, so a pdconnect token is never accepted.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable

from flask import Request, current_app, request
from flask.typing import ResponseReturnValue
from itsdangerous import BadData, URLSafeSerializer
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from pdconnect.alertmanager import parse_alertmanager
from pdconnect.alertmanager_bridge import enqueue_group
from pdconnect.errors import EventValidationError, PayloadTooLarge, ReceiveError, Unauthorized
from pdconnect.events import Severity
from pdconnect.flask.blueprint import blueprint
from pdconnect.flask.extension import current_pagerduty
from pdconnect.flask.webhook_views import read_body
from pdconnect.text import text_problem

logger = logging.getLogger("pdconnect")
_SALT = "pdconnect.alertmanager-token.v1"
_UNAVAILABLE = {"error": {"type": "Unavailable", "message": "not stored; Alertmanager will retry"}}
_MISCONFIGURED = {"error": {"type": "ServerError", "message": "this endpoint is misconfigured; not stored"}}
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="alertmanager"'}
_MAX_OWNER = 255  # as for the owner ids pdconnect's handshake state accepts

#: ``PDCONNECT_ALERTMANAGER_AUTHENTICATE``: the request in, its owner id out (``None``: refuse).
AuthenticateHook = Callable[[Request], str | None]


class _HookFailed(Exception):
    """The vendor's authenticate hook failed; ``status`` and ``body`` are the answer to give."""

    def __init__(self, status: int, body: dict[str, dict[str, str]], headers: dict[str, str]) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers


def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_pagerduty().csrf.secret_key, salt=_SALT)


def alertmanager_token(owner_id: str | None = None) -> str:
    """The bearer token an owner's Alertmanager sends (by default the signed-in owner's)."""
    owner = owner_id if owner_id is not None else current_pagerduty().current_owner()
    if owner is None:
        raise RuntimeError("no owner: sign in, or pass owner_id")
    return str(_serializer().dumps(owner))


def _owner_from(authorization: str | None) -> str:
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Unauthorized("an 'Authorization: Bearer <token>' header is required")
    try:
        owner = _serializer().loads(credentials.strip())
    except BadData:
        raise Unauthorized("the bearer token is not valid here") from None
    if not isinstance(owner, str):
        raise Unauthorized("the bearer token is not valid here")
    return owner


def _where(exc: BaseException) -> str:
    """``file:line`` where ``exc`` was raised: enough to find the bug, and never a value."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"


def _hook_owner(hook: object) -> str | None:
    """Ask the vendor's ``PDCONNECT_ALERTMANAGER_AUTHENTICATE`` who sent this request.

    Its errors are the vendor's bugs or outages, not the sender's: logged by type and place
    only (an exception's message may well quote the token it was given), and answered with a
    JSON 5xx. A raised error may be passing (a database down), so it is a 503 Alertmanager
    retries; an answer that is not an owner id (not text, empty, control characters, over 255
    characters) is refused as a 500 rather than guessed at. A :class:`HTTPException` the hook
    raises on purpose (``abort(403)``) is its answer and passes through.
    """
    if not callable(hook):
        logger.error("pdconnect: PDCONNECT_ALERTMANAGER_AUTHENTICATE is a %s, not a callable", type(hook).__name__)
        raise _HookFailed(500, _MISCONFIGURED, {})
    try:
        owner = hook(request)
    except HTTPException:
        raise
    except Exception as exc:
        # No traceback: its message could quote the token.
        logger.error(
            "pdconnect: PDCONNECT_ALERTMANAGER_AUTHENTICATE raised %s at %s; answered 503",
            type(exc).__name__,
            _where(exc),
        )
        raise _HookFailed(503, _UNAVAILABLE, {"Retry-After": "30"}) from None
    if owner is None:
        return None
    problem = text_problem(owner, max_length=_MAX_OWNER)
    if problem is not None:
        logger.error(
            "pdconnect: PDCONNECT_ALERTMANAGER_AUTHENTICATE returned an owner id that %s; answered 500", problem
        )
        raise _HookFailed(500, _MISCONFIGURED, {})
    assert isinstance(owner, str)
    return owner


def _authenticated_owner() -> str:
    """The owner this request comes from, by the vendor's hook if set, else by pdconnect's token."""
    hook = current_app.config.get("PDCONNECT_ALERTMANAGER_AUTHENTICATE")
    if hook is None:
        return _owner_from(request.headers.get("Authorization"))
    owner = _hook_owner(hook)
    if owner is None:
        raise Unauthorized("an 'Authorization' header with a token this site issued is required")
    return owner


@blueprint.route("/alertmanager", methods=["POST"])
def alertmanager() -> ResponseReturnValue:
    """Receive one Alertmanager notification (webhook payload version 4)."""
    pagerduty = current_pagerduty()
    limit = int(current_app.config["PDCONNECT_ALERTMANAGER_MAX_BYTES"])
    try:
        owner = _authenticated_owner()
    except _HookFailed as failed:
        return failed.body, failed.status, failed.headers
    except Unauthorized as exc:
        return {"error": {"type": type(exc).__name__, "message": str(exc)}}, exc.status, _CHALLENGE
    try:
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"the body is over {limit} bytes")
        body = read_body(limit + 1)
        if len(body) > limit:
            raise PayloadTooLarge(f"the body is over {limit} bytes")
        group = parse_alertmanager(body)
    except ReceiveError as exc:
        return {"error": {"type": type(exc).__name__, "message": str(exc)}}, exc.status
    try:
        targets = pagerduty.store.list(owner)
    except SQLAlchemyError:
        logger.exception("pdconnect: the integrations' database is unavailable; Alertmanager will retry")
        return _UNAVAILABLE, 503, {"Retry-After": "30"}
    chosen = request.args.get("integration")
    if chosen is not None:
        targets = [t for t in targets if t.id == chosen]
        if not targets:
            return {"error": {"type": "NotFound", "message": "no such integration"}}, 404
    try:
        receipt = enqueue_group(
            pagerduty.outbox,
            targets,
            group,
            default_severity=Severity(current_app.config["PDCONNECT_ALERTMANAGER_DEFAULT_SEVERITY"]),
            client=current_app.config["PDCONNECT_CLIENT_NAME"] or "Alertmanager",
        )
    except ReceiveError as exc:
        return {"error": {"type": type(exc).__name__, "message": str(exc)}}, exc.status
    except EventValidationError as exc:
        # The payload made an event PagerDuty would refuse: sending it again cannot help, and a
        # 5xx would have Alertmanager retry it for ever.
        return {"error": {"type": "PayloadInvalid", "message": str(exc)[:1000]}}, 400
    except Exception:
        logger.exception("pdconnect: could not enqueue an Alertmanager notification")
        return _UNAVAILABLE, 503, {"Retry-After": "30"}
    if not targets:
        logger.info("pdconnect: an Alertmanager notification for %s, who has no PagerDuty integration", owner)
    return receipt.body(), 202
