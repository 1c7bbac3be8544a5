"""``POST /pagerduty/alertmanager``: an owner's Alertmanager sends its groups to PagerDuty.

Each owner gets a bearer token (:func:`alertmanager_token`, shown in the vendor's settings
page) to put in its Alertmanager's ``webhook_configs`` (``http_config.authorization``). The
token is the owner id signed with the app's secret, so it needs no storage; rotating the
secret revokes every token. A notification is enqueued in the outbox for each of the
owner's integrations (``?integration=<id>`` picks one), all or none, and answered 202.
"""

from __future__ import annotations

import logging

from flask import current_app, request
from flask.typing import ResponseReturnValue
from itsdangerous import BadData, URLSafeSerializer
from sqlalchemy.exc import SQLAlchemyError

from pdconnect.alertmanager import parse_alertmanager
from pdconnect.alertmanager_bridge import enqueue_group
from pdconnect.errors import EventValidationError, PayloadTooLarge, ReceiveError, Unauthorized
from pdconnect.events import Severity
from pdconnect.flask.blueprint import blueprint
from pdconnect.flask.extension import current_pagerduty
from pdconnect.flask.webhook_views import read_body

logger = logging.getLogger("pdconnect")
_SALT = "pdconnect.alertmanager-token.v1"
_UNAVAILABLE = {"error": {"type": "Unavailable", "message": "not stored; Alertmanager will retry"}}


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


@blueprint.route("/alertmanager", methods=["POST"])
def alertmanager() -> ResponseReturnValue:
    """Receive one Alertmanager notification (webhook payload version 4)."""
    pagerduty = current_pagerduty()
    limit = int(current_app.config["PDCONNECT_ALERTMANAGER_MAX_BYTES"])
    try:
        owner = _owner_from(request.headers.get("Authorization"))
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
