"""PagerDuty's REST API on behalf of one customer account, with that account's own OAuth token.

::

    client = AccountRestClient(refresher, owner_id, account_id)
    services = client.list_services()
    subscription, secret = client.create_webhook_subscription(url, service_id=services[0]["id"])

Every request goes to the credential's regional REST base (``rest_base_url``, from the ID
token's ``aud``) and nowhere else: a path that would leave it is refused before the token is
attached. Requests carry ``Authorization: Bearer`` and ``Accept:
application/vnd.pagerduty+json;version=2``. The token comes from
:meth:`~pdconnect.oauth.refresh.TokenRefresher.fresh_token`, refreshed before it expires; a 401
refreshes once and retries once, and a second 401 marks the connection as needing
re-authorisation (:class:`~pdconnect.rest.errors.NeedsReauthorization`). A 403 is
:class:`~pdconnect.rest.errors.Forbidden`, saying whether the scope or the user's role is
missing. 429 (waiting at least as long as ``Retry-After`` says), 5xx and network failures are
retried within the :class:`~pdconnect.retry.RetryPolicy`; creating a subscription is retried
only after a 429, which PagerDuty answers without acting, so that a 5xx never leaves two
subscriptions of which one has a secret nobody knows.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pdconnect.errors import InvalidData
from pdconnect.oauth.app import REST_BASES
from pdconnect.oauth.refresh import NeedsReauthorization, TokenRefresher
from pdconnect.rest.answers import error_for, read_object
from pdconnect.rest.errors import NotFound, RestError, RestUnavailable
from pdconnect.rest.http import check_rest_transport, send
from pdconnect.rest.paths import rest_url, segment
from pdconnect.rest.subscriptions import (
    NewSubscription,
    WebhookSubscription,
    check_custom_headers,
    check_description,
    check_events,
    read_subscription,
)
from pdconnect.retry import RetryPolicy, parse_retry_after
from pdconnect.transport import HttpResponse, RequestsTransport, TransportError
from pdconnect.urls import check_callback_url
from pdconnect.webhooks.subscriptions import DEFAULT_EVENTS

logger = logging.getLogger("pdconnect.rest")

#: PagerDuty's REST API version header (REST API reference, "Versioning").
ACCEPT = "application/vnd.pagerduty+json;version=2"
#: Classic pagination: at most 100 per page, and offsets past 10,000 are refused
#: (REST API reference, "Pagination").
PAGE_LIMIT = 100
MAX_ITEMS = 10_000
#: An interactive page should not wait minutes for PagerDuty.
DEFAULT_RETRY = RetryPolicy(max_attempts=4, base_delay=0.5, max_delay=8.0, deadline=30.0, rate_limit_delay=5.0)
DEFAULT_TIMEOUT = (5.0, 15.0)


def _configured_bases(credentials: TokenRefresher) -> Mapping[str, str]:
    """The REST bases of the refresher's OAuth app (a PagerDutyOAuth's ``app``), else PagerDuty's."""
    bases = getattr(getattr(credentials.oauth, "app", None), "rest_bases", None)
    return bases if isinstance(bases, Mapping) else REST_BASES


def _default_transport() -> RequestsTransport:
    # Reads run under the attempt's total deadline, so a slow PagerDuty cannot hold a request.
    return RequestsTransport()


class AccountRestClient:
    """The REST endpoints pdconnect uses, for the account ``account_id`` of ``owner_id``.

    ``credentials`` hands out fresh tokens (a :class:`~pdconnect.oauth.refresh.TokenRefresher`).
    ``transport`` is a :class:`~pdconnect.transport.RequestsTransport` (the default) or
    anything with a ``request`` method (:class:`~pdconnect.rest.http.RestTransport`);
    ``retry`` how hard to try. ``allowed_bases`` (REST base -> region) are where the token may
    go; by default the ``rest_bases`` of the refresher's :class:`~pdconnect.oauth.app.OAuthApp`,
    else PagerDuty's two. ``sleep`` and ``clock`` are for tests.
    """

    def __init__(
        self,
        credentials: TokenRefresher,
        owner_id: str,
        account_id: str,
        *,
        transport: object | None = None,
        retry: RetryPolicy | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        allowed_bases: Mapping[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if transport is not None:
            check_rest_transport(transport)
        self.credentials = credentials
        self.owner_id = owner_id
        self.account_id = account_id
        self._owns_transport = transport is None
        self.transport = transport if transport is not None else _default_transport()
        self.retry = retry if retry is not None else DEFAULT_RETRY
        self.allowed_bases = allowed_bases if allowed_bases is not None else _configured_bases(credentials)
        self.timeout = timeout
        self._sleep = sleep
        self._clock = clock
        self._rng = random.Random()  # noqa: S311 -- jitter, not a secret

    def __repr__(self) -> str:
        return f"AccountRestClient(owner_id={self.owner_id!r}, account_id={self.account_id!r})"

    def close(self) -> None:
        if self._owns_transport and isinstance(self.transport, RequestsTransport):
            self.transport.session.close()

    def __enter__(self) -> AccountRestClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the endpoints -----------------------------------------------------------------------

    def list_services(self, *, max_items: int = MAX_ITEMS) -> list[dict[str, Any]]:
        """Every service of the account (each page of 100, until PagerDuty says there is no more).

        ``max_items`` (1 to 10,000, PagerDuty's own limit for offsets) bounds the walk.
        """
        return self._paginate("/services", "services", scope="services.read", max_items=max_items)

    def get_incident(self, incident_id: str) -> dict[str, Any]:
        """The incident ``incident_id``; raises :class:`~pdconnect.rest.errors.NotFound`."""
        data = self._json("GET", f"/incidents/{segment(incident_id)}", scope="incidents.read")
        return read_object(data, "incident", "GET", "/incidents/{id}")

    def list_webhook_subscriptions(self, *, max_items: int = MAX_ITEMS) -> list[WebhookSubscription]:
        """The account's webhook subscriptions, every page."""
        raw = self._paginate(
            "/webhook_subscriptions", "webhook_subscriptions", scope="webhook_subscriptions.read", max_items=max_items
        )
        return [read_subscription(item, "GET", "/webhook_subscriptions") for item in raw]

    def create_webhook_subscription(
        self,
        url: str,
        *,
        service_id: str | None = None,
        team_id: str | None = None,
        events: Sequence[str] = DEFAULT_EVENTS,
        description: str = "pdconnect",
        custom_headers: Mapping[str, str] | None = None,
    ) -> NewSubscription:
        """Subscribe ``url`` to ``events`` of a service, a team, or (with neither) the whole account.

        Returns the subscription and its secret (``subscription, secret = ...``): register the
        secret at once, PagerDuty never shows it again.
        """
        check_callback_url(url, name="webhook URL")
        event_names, text = check_events(events), check_description(description)
        if service_id is not None and team_id is not None:
            raise ValueError("filter by a service or a team, not both")
        if service_id is not None:
            filter_: dict[str, str] = {"type": "service_reference", "id": segment(service_id)}
        elif team_id is not None:
            filter_ = {"type": "team_reference", "id": segment(team_id)}
        else:
            filter_ = {"type": "account_reference"}
        delivery: dict[str, Any] = {"type": "http_delivery_method", "url": url}
        if custom_headers is not None:
            delivery["custom_headers"] = check_custom_headers(custom_headers)
        body = {
            "webhook_subscription": {
                "type": "webhook_subscription",
                "delivery_method": delivery,
                "events": event_names,
                "filter": filter_,
                "description": text,
            }
        }
        path = "/webhook_subscriptions"
        data = self._json("POST", path, body=body, scope="webhook_subscriptions.write", retry_errors=False)
        raw = read_object(data, "webhook_subscription", "POST", path)
        method = raw.get("delivery_method")
        secret = method.get("secret") if isinstance(method, dict) else None
        if not isinstance(secret, str) or not secret:
            raise RestError("PagerDuty's answer holds no subscription secret", status=200, method="POST", path=path)
        return NewSubscription(read_subscription(raw, "POST", path), secret)

    def ping_webhook_subscription(self, subscription_id: str) -> None:
        """Ask PagerDuty to send a ``pagey.ping`` to the subscription's URL."""
        path = f"/webhook_subscriptions/{segment(subscription_id)}/ping"
        self._request("POST", path, scope="webhook_subscriptions.write")

    def enable_webhook_subscription(self, subscription_id: str) -> WebhookSubscription:
        """Enable a subscription PagerDuty disabled after failed deliveries."""
        path = f"/webhook_subscriptions/{segment(subscription_id)}/enable"
        data = self._json("POST", path, scope="webhook_subscriptions.write")
        return read_subscription(read_object(data, "webhook_subscription", "POST", path), "POST", path)

    def update_webhook_subscription(
        self,
        subscription_id: str,
        *,
        url: str | None = None,
        events: Sequence[str] | None = None,
        description: str | None = None,
        active: bool | None = None,
    ) -> WebhookSubscription:
        """Change what is given of a subscription (``PUT``); the rest stays as it is."""
        change: dict[str, Any] = {}
        if url is not None:
            change["delivery_method"] = {"type": "http_delivery_method", "url": check_callback_url(url, name="url")}
        if events is not None:
            change["events"] = check_events(events)
        if description is not None:
            change["description"] = check_description(description)
        if active is not None:
            if not isinstance(active, bool):
                raise InvalidData("active must be true or false", field="active")
            change["active"] = active
        path = f"/webhook_subscriptions/{segment(subscription_id)}"
        data = self._json("PUT", path, body={"webhook_subscription": change}, scope="webhook_subscriptions.write")
        return read_subscription(read_object(data, "webhook_subscription", "PUT", path), "PUT", path)

    def delete_webhook_subscription(self, subscription_id: str) -> bool:
        """Delete a subscription; ``False`` if PagerDuty no longer has it."""
        try:
            self._request(
                "DELETE", f"/webhook_subscriptions/{segment(subscription_id)}", scope="webhook_subscriptions.write"
            )
        except NotFound:
            return False
        return True

    # -- requests ----------------------------------------------------------------------------

    def _paginate(self, path: str, key: str, *, scope: str, max_items: int) -> list[dict[str, Any]]:
        """Every item of a classic-paginated list, following ``more`` (only a JSON ``true`` counts).

        The next offset is counted here from the items received, never taken from the answer,
        and an empty page ends the walk: an answer cannot make the client loop or skip back.
        """
        if isinstance(max_items, bool) or not isinstance(max_items, int) or not 1 <= max_items <= MAX_ITEMS:
            raise ValueError(f"max_items must be a whole number from 1 to {MAX_ITEMS}")
        items: list[dict[str, Any]] = []
        while len(items) < max_items:
            limit = min(PAGE_LIMIT, max_items - len(items))
            data = self._json("GET", path, query={"limit": limit, "offset": len(items)}, scope=scope)
            page = data.get(key) if isinstance(data, dict) else None
            if not isinstance(page, list) or not all(isinstance(item, dict) for item in page):
                raise RestError(f"PagerDuty's answer holds no list of {key}", status=200, method="GET", path=path)
            items.extend(page[:limit])
            if data.get("more") is not True or not page:
                break
        return items

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self._request(method, path, **kwargs)
        try:
            data = json.loads(response.body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise RestError(
                "PagerDuty's answer is not JSON", status=response.status, method=method, path=path
            ) from None
        if not isinstance(data, dict):
            raise RestError("PagerDuty's answer is not a JSON object", status=response.status, method=method, path=path)
        return data

    def _request(
        self,
        method: str,
        path: str,
        *,
        scope: str,
        body: Any = None,
        query: Mapping[str, object] | None = None,
        retry_errors: bool = True,
    ) -> HttpResponse:
        """Send with a fresh token; on a 401 refresh once and send once more; map errors to types."""
        credential = self.credentials.credential(self.owner_id, self.account_id)
        if credential.needs_reauthorization:
            raise NeedsReauthorization(credential)
        url = rest_url(credential, path, query, allowed_bases=self.allowed_bases)
        payload = json.dumps(body).encode("utf-8") if body is not None else b""
        token = self.credentials.fresh_token(self.owner_id, self.account_id)
        response = self._attempts(method, url, path, payload, token, retry_errors=retry_errors)
        if response.status == 401:
            token = self.credentials.fresh_token(self.owner_id, self.account_id, force=True, failed_token=token)
            response = self._attempts(method, url, path, payload, token, retry_errors=retry_errors)
            if response.status == 401:
                self._revoked(token)
        if 200 <= response.status < 300:
            return response
        current = self.credentials.credential(self.owner_id, self.account_id)
        raise error_for(response, method, path, scope=scope, credential=current, sent_token=token)

    def _revoked(self, token: str) -> None:
        """A refreshed token was refused too: the grant is gone; mark it (once) and raise."""
        current = self.credentials.credential(self.owner_id, self.account_id)
        if current.access_token == token and not current.needs_reauthorization:
            marked = self.credentials.mark_needs_reauthorization(
                current, "PagerDuty refused the access token twice (401): access was revoked"
            )
            current = marked if marked is not None else self.credentials.credential(self.owner_id, self.account_id)
        if current.needs_reauthorization:
            raise NeedsReauthorization(current)
        raise RestError("PagerDuty refused the access token (401)", status=401, method="-", path="-")

    def _attempts(
        self, method: str, url: str, path: str, payload: bytes, token: str, *, retry_errors: bool
    ) -> HttpResponse:
        headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT}
        if payload:
            headers["Content-Type"] = "application/json"
        policy, started = self.retry, self._clock()
        status: int | None = None
        reason = "no attempt"
        for attempt in range(1, policy.max_attempts + 1):
            retry_after: float | None = None
            try:
                response = send(self.transport, method, url, payload, headers, self.timeout)
            except TransportError as exc:
                status, reason = None, exc.reason
                if not (exc.retryable and retry_errors):
                    raise RestUnavailable(
                        f"PagerDuty's REST API did not answer {method} {path} ({reason})",
                        status=None,
                        method=method,
                        path=path,
                    ) from exc
            else:
                logger.debug("%s %s -> %s (account %s)", method, path, response.status, self.account_id)
                status = response.status
                temporary = status == 429 or (retry_errors and (status == 408 or 500 <= status < 600))
                if not temporary:
                    return response
                reason = f"HTTP {status}"
                retry_after = parse_retry_after(response.headers.get("retry-after"))
            if attempt == policy.max_attempts:
                break
            wait = policy.wait(attempt, self._rng, retry_after=retry_after, rate_limited=status == 429)
            if self._clock() - started + wait > policy.deadline:
                break
            logger.warning("PagerDuty answered %s %s with %s; retrying in %.2fs", method, path, reason, wait)
            self._sleep(wait)
        raise RestUnavailable(
            f"PagerDuty's REST API gave no usable answer to {method} {path} (last: {reason})",
            status=status,
            method=method,
            path=path,
        )
