"""Creating V3 webhook subscriptions through PagerDuty's REST API, and keeping their secrets.

A vendor with REST access (an API key, or an OAuth token with the
``webhook_subscriptions.write`` scope) can subscribe its webhook endpoint to a service the
user just connected, so incident changes flow back without the user copying anything:

::

    client = SubscriptionClient(api_token)
    registered = subscribe_integration(client, secret_store, integration, "https://acme.example/pagerduty/webhook")

PagerDuty returns the subscription's secret only in the answer that created it
(``pagerduty-protocols.md`` section 5.1); :func:`subscribe_integration` registers it at once.
Without REST access, the user creates a Generic Webhook (v3) in PagerDuty's UI and pastes its
secret, which the vendor registers with :meth:`~pdconnect.webhooks.secrets.WebhookSecretStore.register`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import requests

from pdconnect.errors import PdConnectError
from pdconnect.storage import StoredIntegration
from pdconnect.urls import check_base_url, check_callback_url
from pdconnect.webhooks.secrets import RegisteredSecret, WebhookSecretStore

REST_API_URL = "https://api.pagerduty.com"

#: What a vendor's UI needs to follow an incident's state.
DEFAULT_EVENTS: tuple[str, ...] = (
    "incident.triggered",
    "incident.acknowledged",
    "incident.unacknowledged",
    "incident.resolved",
    "incident.reopened",
    "incident.reassigned",
    "incident.escalated",
    "incident.delegated",
    "incident.annotated",
    "incident.priority_updated",
)


class SubscriptionError(PdConnectError):
    """PagerDuty's REST API refused or did not answer a subscription request.

    ``status`` is the HTTP status, or ``None`` without an answer. The API token is never part
    of the message.
    """

    def __init__(self, message: str, *, status: int | None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class CreatedSubscription:
    """A new subscription; ``secret`` is shown this once by PagerDuty (and never in a repr)."""

    id: str
    url: str
    secret: str = field(repr=False)
    events: tuple[str, ...] = ()
    filter_type: str | None = None
    filter_id: str | None = None


class SubscriptionClient:
    """The webhook-subscription endpoints of PagerDuty's REST API.

    ``api_token`` is a REST API key (sent as ``Token token=...``) or, with ``oauth=True``, an
    OAuth access token (sent as ``Bearer ...``). ``base_url`` points elsewhere for the EU
    service region or a sandbox.
    """

    def __init__(
        self,
        api_token: str,
        *,
        oauth: bool = False,
        base_url: str = REST_API_URL,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = (3.05, 15.0),
    ) -> None:
        if not isinstance(api_token, str) or not api_token.strip():
            raise ValueError("an API token is needed")
        self._authorization = f"Bearer {api_token.strip()}" if oauth else f"Token token={api_token.strip()}"
        self.base_url = check_base_url(base_url, name="REST API URL").rstrip("/")
        self._owns_session = session is None
        self.session = session if session is not None else requests.Session()
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"SubscriptionClient(base_url={self.base_url!r})"

    def close(self) -> None:
        if self._owns_session:
            self.session.close()

    def __enter__(self) -> SubscriptionClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _request(self, method: str, path: str, json: Any = None) -> requests.Response:
        headers = {
            "Authorization": self._authorization,
            "Accept": "application/vnd.pagerduty+json;version=2",
            "Content-Type": "application/json",
        }
        try:
            response = self.session.request(
                method, self.base_url + path, json=json, headers=headers, timeout=self.timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            raise SubscriptionError(f"PagerDuty's REST API did not answer ({type(exc).__name__})", status=None) from exc
        if response.status_code >= 400:
            raise SubscriptionError(
                f"PagerDuty's REST API answered {response.status_code} to {method} {path}: {_message(response)}",
                status=response.status_code,
            )
        return response

    def create(
        self,
        url: str,
        *,
        service_id: str | None = None,
        events: Sequence[str] = DEFAULT_EVENTS,
        description: str = "pdconnect",
    ) -> CreatedSubscription:
        """Subscribe ``url`` to ``events`` of one service (or of the whole account without ``service_id``)."""
        check_callback_url(url, name="webhook URL")
        body = {
            "webhook_subscription": {
                "type": "webhook_subscription",
                "delivery_method": {"type": "http_delivery_method", "url": url},
                "events": list(events),
                "filter": {"type": "service_reference", "id": service_id}
                if service_id
                else {"type": "account_reference"},
                "description": description[:1024],
            }
        }
        data = _json(self._request("POST", "/webhook_subscriptions", body))
        subscription = data.get("webhook_subscription") if isinstance(data, dict) else None
        delivery = subscription.get("delivery_method") if isinstance(subscription, dict) else None
        if not isinstance(subscription, dict) or not isinstance(delivery, dict):
            raise SubscriptionError("PagerDuty's answer holds no webhook_subscription", status=201)
        secret, subscription_id = delivery.get("secret"), subscription.get("id")
        if not isinstance(secret, str) or not secret or not isinstance(subscription_id, str) or not subscription_id:
            raise SubscriptionError("PagerDuty's answer holds no subscription id or secret", status=201)
        raw_filter = subscription.get("filter")
        filter_: dict[str, Any] = raw_filter if isinstance(raw_filter, dict) else {}
        return CreatedSubscription(
            id=subscription_id,
            url=url,
            secret=secret,
            events=tuple(e for e in subscription.get("events") or () if isinstance(e, str)),
            filter_type=filter_.get("type"),
            filter_id=filter_.get("id"),
        )

    def delete(self, subscription_id: str) -> bool:
        """Delete a subscription; ``False`` if PagerDuty no longer has it."""
        try:
            self._request("DELETE", f"/webhook_subscriptions/{quote(subscription_id, safe='')}")
        except SubscriptionError as exc:
            if exc.status == 404:
                return False
            raise
        return True


def subscribe_integration(
    client: SubscriptionClient,
    store: WebhookSecretStore,
    integration: StoredIntegration,
    url: str,
    *,
    events: Sequence[str] = DEFAULT_EVENTS,
) -> RegisteredSecret:
    """Subscribe ``url`` to the integration's service and register the secret for it.

    Needs the service id, which PagerDuty's install flow gives (legacy Connect and pasted
    keys do not: raises ``ValueError``). If registering fails, the new subscription is deleted
    again, so no subscription is left whose secret nobody knows.
    """
    if not integration.service_id or integration.target_type not in (None, "service"):
        raise ValueError("only a service integration with a service id can be subscribed")
    created = client.create(
        url, service_id=integration.service_id, events=events, description=f"pdconnect: {integration.owner_id}"
    )
    try:
        return store.register(created.id, created.secret, owner_id=integration.owner_id, integration_id=integration.id)
    except BaseException:
        client.delete(created.id)
        raise


def unsubscribe_integration(
    client: SubscriptionClient, store: WebhookSecretStore, integration: StoredIntegration
) -> int:
    """Delete the integration's subscriptions at PagerDuty and forget their secrets; returns how many."""
    removed = 0
    for subscription_id in {s.subscription_id for s in store.for_integration(integration.owner_id, integration.id)}:
        client.delete(subscription_id)
        removed += store.remove(subscription_id)
    return removed


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise SubscriptionError("PagerDuty's answer is not JSON", status=response.status_code) from exc


def _message(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return "no details"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])[:300]
    return "no details"
