"""``POST /pagerduty/webhook``: PagerDuty's webhooks, verified, de-duplicated and announced.

The route reads at most ``PDCONNECT_WEBHOOK_MAX_BYTES`` of the body (a larger declared
length is refused before reading), hands it to the app's
:class:`~pdconnect.webhooks.WebhookReceiver` and answers with the receipt's status and a
short JSON body. Refusals are 4xx JSON with the error's type and reason; a handler that
raises (a :data:`~pdconnect.flask.signals.webhook_received` receiver, say) gets a 500, and an
unavailable database a 503, so PagerDuty retries. A legacy V2 webhook must carry ``?token=``
(``PDCONNECT_WEBHOOK_LEGACY_TOKEN``).

Also: subscribing the webhook endpoint to a newly connected service, and unsubscribing on
disconnect, when the app has PagerDuty REST access (``PDCONNECT_REST_API_TOKEN``).
"""

from __future__ import annotations

import logging

from flask import current_app, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import BadRequest

from pdconnect.errors import PayloadInvalid, PdConnectError, ReceiveError
from pdconnect.flask.blueprint import blueprint
from pdconnect.flask.extension import current_pagerduty, external_url
from pdconnect.storage import StoredIntegration
from pdconnect.webhooks import subscribe_integration, unsubscribe_integration

logger = logging.getLogger("pdconnect")


@blueprint.route("/webhook", methods=["POST"])
def webhook() -> ResponseReturnValue:
    """Receive one PagerDuty webhook."""
    receiver = current_pagerduty().webhooks
    try:
        legacy_token = request.args.get("token")
    except (UnicodeDecodeError, ValueError):
        message = "the query string is not valid UTF-8"
        return {"error": {"type": "PayloadInvalid", "message": message}}, 400
    try:
        receiver.check_length(request.content_length)
        body = read_body(receiver.max_body_bytes + 1)
        receipt = receiver.receive(body, request.headers, legacy_token=legacy_token)
    except ReceiveError as exc:
        logger.info("pdconnect: webhook refused (%s): %s", exc.status, exc)
        return {"error": {"type": type(exc).__name__, "message": str(exc)}}, exc.status
    except SQLAlchemyError:
        logger.exception("pdconnect: the webhook stores' database is unavailable; PagerDuty will retry")
        unavailable = {"error": {"type": "Unavailable", "message": "the webhook could not be stored; retry later"}}
        return unavailable, 503, {"Retry-After": "30"}
    except Exception:
        logger.exception("pdconnect: a webhook handler failed; PagerDuty will retry")
        return {"error": {"type": "HandlerFailed", "message": "the webhook could not be handled; retry later"}}, 500
    headers = {"Retry-After": "5"} if receipt.in_progress else {}
    return receipt.body(), receipt.status, headers


def read_body(limit: int) -> bytes:
    """At most ``limit`` bytes of the request body; :class:`PayloadInvalid` if it cannot be read.

    A malformed chunked encoding (an ``OSError`` from the server) or a client that goes away
    mid-body (werkzeug's ``ClientDisconnected``) is the sender's fault, not a 500.
    """
    try:
        return request.stream.read(limit)
    except (OSError, BadRequest) as exc:
        raise PayloadInvalid("the body could not be read (a malformed chunked encoding, or a cut connection)") from exc


def webhook_url() -> str:
    """The URL PagerDuty should deliver webhooks to (``PDCONNECT_WEBHOOK_URL``, else this route's).

    This route's URL is built by :func:`~pdconnect.flask.extension.external_url`, so its host
    comes from configuration or the allow-list, never from a request's ``Host`` header.
    """
    configured = current_app.config["PDCONNECT_WEBHOOK_URL"]
    return str(configured) if configured else external_url("pdconnect.webhook")


def subscribe(integrations: list[StoredIntegration]) -> list[str]:
    """Subscribe the webhook URL to each connected service that has a service id.

    Does nothing without REST access or with ``PDCONNECT_WEBHOOK_SUBSCRIBE`` off. Returns the
    names of the services whose subscription failed (the connection itself stands; the
    failure is logged).
    """
    pagerduty = current_pagerduty()
    if not current_app.config["PDCONNECT_WEBHOOK_SUBSCRIBE"]:
        return []
    client = pagerduty.subscription_client()
    if client is None:
        return []
    failed = []
    with client:
        for integration in integrations:
            if not integration.service_id or integration.target_type not in (None, "service"):
                continue
            if pagerduty.webhook_secrets.for_integration(integration.owner_id, integration.id):
                continue  # already subscribed (the same service connected again)
            try:
                subscribe_integration(client, pagerduty.webhook_secrets, integration, webhook_url())
            except (PdConnectError, ValueError) as exc:
                logger.warning("pdconnect: could not subscribe to %s's incidents: %s", integration.service_name, exc)
                failed.append(integration.service_name or "a PagerDuty service")
    return failed


def unsubscribe(integration: StoredIntegration) -> None:
    """Delete the integration's webhook subscriptions (best effort: a failure is logged)."""
    pagerduty = current_pagerduty()
    client = pagerduty.subscription_client()
    if client is None:
        return
    with client:
        try:
            unsubscribe_integration(client, pagerduty.webhook_secrets, integration)
        except PdConnectError as exc:
            logger.warning("pdconnect: could not delete the webhook subscription of %s: %s", integration.id, exc)
