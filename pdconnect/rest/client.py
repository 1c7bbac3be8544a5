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
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from pdconnect.errors import InvalidData, UnsafeURLError
from pdconnect.oauth.credentials import Credential
from pdconnect.oauth.refresh import NeedsReauthorization, TokenRefresher
from pdconnect.rest.errors import Forbidden, NotFound, RestError, RestUnavailable, UnsafeRestURL
from pdconnect.rest.http import check_rest_transport, send
from pdconnect.retry import RetryPolicy, parse_retry_after
from pdconnect.storage import clean_reason
from pdconnect.text import text_problem
from pdconnect.transport import HttpResponse, RequestsTransport, TransportError
from pdconnect.urls import check_base_url, check_callback_url
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
_ID = re.compile(r"[A-Za-z0-9_\-.:~]{1,255}", re.ASCII)


@dataclass(frozen=True)
class WebhookSubscription:
    """A V3 webhook subscription as PagerDuty describes it (never with its secret)."""

    id: str
    url: str | None
    events: tuple[str, ...] = ()
    filter_type: str | None = None
    filter_id: str | None = None
    active: bool | None = None
    description: str | None = None


@dataclass(frozen=True)
class NewSubscription:
    """A subscription just created and its secret, which PagerDuty shows this once.

    Unpacks as ``subscription, secret = ...``; ``repr`` hides the secret.
    """

    subscription: WebhookSubscription
    secret: str = field(repr=False)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.subscription, self.secret))


class AccountRestClient:
    """The REST endpoints pdconnect uses, for the account ``account_id`` of ``owner_id``.

    ``credentials`` hands out fresh tokens (a :class:`~pdconnect.oauth.refresh.TokenRefresher`).
    ``transport`` is a :class:`~pdconnect.transport.RequestsTransport` (the default) or
    anything with a ``request`` method (:class:`~pdconnect.rest.http.RestTransport`);
    ``retry`` how hard to try. ``sleep`` and ``clock`` are for tests.
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
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if transport is not None:
            check_rest_transport(transport)
        self.credentials = credentials
        self.owner_id = owner_id
        self.account_id = account_id
        self._owns_transport = transport is None
        self.transport = transport if transport is not None else RequestsTransport()
        self.retry = retry if retry is not None else DEFAULT_RETRY
        self.timeout = timeout
        self._sleep = sleep
        self._clock = clock
        self._rng = random.Random()  # noqa: S311 -- jitter, not a secret

    def __repr__(self) -> str:
        return f"AccountRestClient(owner_id={self.owner_id!r}, account_id={self.account_id!r})"

    def close(self) -> None:
        if self._owns_transport and isinstance(self.transport, RequestsTransport):
            self.transport.close()

    def __enter__(self) -> AccountRestClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the endpoints -----------------------------------------------------------------------

    def list_services(self, *, max_items: int = MAX_ITEMS) -> list[dict[str, Any]]:
        """Every service of the account (each page of 100, until PagerDuty says there is no more)."""
        return self._paginate("/services", "services", scope="services.read", max_items=max_items)

    def get_incident(self, incident_id: str) -> dict[str, Any]:
        """The incident ``incident_id``; raises :class:`~pdconnect.rest.errors.NotFound`."""
        data = self._json("GET", f"/incidents/{_segment(incident_id)}", scope="incidents.read")
        return _object(data, "incident", "GET", "/incidents/{id}")

    def list_webhook_subscriptions(self, *, max_items: int = MAX_ITEMS) -> list[WebhookSubscription]:
        """The account's webhook subscriptions, every page."""
        raw = self._paginate(
            "/webhook_subscriptions", "webhook_subscriptions", scope="webhook_subscriptions.read", max_items=max_items
        )
        return [_subscription(item, "GET", "/webhook_subscriptions") for item in raw]

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
        if service_id is not None and team_id is not None:
            raise ValueError("filter by a service or a team, not both")
        if service_id is not None:
            filter_: dict[str, str] = {"type": "service_reference", "id": _check_id(service_id, "service_id")}
        elif team_id is not None:
            filter_ = {"type": "team_reference", "id": _check_id(team_id, "team_id")}
        else:
            filter_ = {"type": "account_reference"}
        delivery: dict[str, Any] = {"type": "http_delivery_method", "url": url}
        if custom_headers:
            delivery["custom_headers"] = [{"name": k, "value": v} for k, v in custom_headers.items()]
        body = {
            "webhook_subscription": {
                "type": "webhook_subscription",
                "delivery_method": delivery,
                "events": [_check_id(e, "event") for e in events],
                "filter": filter_,
                "description": description[:1024],
            }
        }
        path = "/webhook_subscriptions"
        data = self._json("POST", path, body=body, scope="webhook_subscriptions.write", retry_errors=False)
        raw = _object(data, "webhook_subscription", "POST", path)
        method = raw.get("delivery_method")
        secret = method.get("secret") if isinstance(method, dict) else None
        if not isinstance(secret, str) or not secret:
            raise RestError("PagerDuty's answer holds no subscription secret", status=200, method="POST", path=path)
        return NewSubscription(_subscription(raw, "POST", path), secret)

    def ping_webhook_subscription(self, subscription_id: str) -> None:
        """Ask PagerDuty to send a ``pagey.ping`` to the subscription's URL."""
        path = f"/webhook_subscriptions/{_segment(subscription_id)}/ping"
        self._request("POST", path, scope="webhook_subscriptions.write")

    def enable_webhook_subscription(self, subscription_id: str) -> WebhookSubscription:
        """Enable a subscription PagerDuty disabled after failed deliveries."""
        path = f"/webhook_subscriptions/{_segment(subscription_id)}/enable"
        data = self._json("POST", path, scope="webhook_subscriptions.write")
        return _subscription(_object(data, "webhook_subscription", "POST", path), "POST", path)

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
            change["events"] = [_check_id(e, "event") for e in events]
        if description is not None:
            change["description"] = description[:1024]
        if active is not None:
            change["active"] = bool(active)
        path = f"/webhook_subscriptions/{_segment(subscription_id)}"
        data = self._json("PUT", path, body={"webhook_subscription": change}, scope="webhook_subscriptions.write")
        return _subscription(_object(data, "webhook_subscription", "PUT", path), "PUT", path)

    def delete_webhook_subscription(self, subscription_id: str) -> bool:
        """Delete a subscription; ``False`` if PagerDuty no longer has it."""
        try:
            self._request(
                "DELETE", f"/webhook_subscriptions/{_segment(subscription_id)}", scope="webhook_subscriptions.write"
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
        url = rest_url(credential, path, query)
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
        raise _error(
            response, method, path, scope=scope, credential=self.credentials.credential(self.owner_id, self.account_id)
        )

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


def rest_url(credential: Credential, path: str, query: Mapping[str, object] | None = None) -> str:
    """The URL of ``path`` on the credential's REST base; raises :class:`~pdconnect.rest.errors.UnsafeRestURL`.

    ``path`` must be a path (``/services``), never a URL: a link from an answer that names
    another host, scheme or port, or climbs out of the base's path, is refused, so the token
    never leaves the account's REST base.
    """
    try:
        base = check_base_url(credential.account.rest_base_url, name="rest_base_url")
    except UnsafeURLError as exc:
        raise UnsafeRestURL(str(exc), status=None, method="-", path="-") from None
    parts = urlsplit(path) if isinstance(path, str) else None
    if (
        parts is None
        or parts.scheme
        or parts.netloc
        or not path.startswith("/")
        or path.startswith("//")
        or any(segment in (".", "..") for segment in path.split("/"))
        or any(ord(ch) < 0x21 or ord(ch) > 0x7E or ch in "\\?#" for ch in path)
    ):
        raise UnsafeRestURL(
            "refusing to send the account's token outside its REST base", status=None, method="-", path="-"
        )
    suffix = f"?{urlencode(query)}" if query else ""
    return f"{base}{path}{suffix}"


def _check_id(value: object, name: str) -> str:
    problem = text_problem(value, max_length=255)
    if problem is not None:
        raise InvalidData(f"{name} {problem}", field=name)
    assert isinstance(value, str)
    return value


def _segment(value: object) -> str:
    """``value`` as one path segment: a PagerDuty id (letters, digits, ``-_.:~``), never ``.`` or ``..``.

    Escaping is not enough: ``requests`` unescapes ``%2E``, and a segment ``..`` would climb
    to another endpoint with the account's token.
    """
    checked = _check_id(value, "id")
    if not _ID.fullmatch(checked) or not checked.strip("."):
        raise InvalidData("id must be a PagerDuty id (letters, digits, '-', '_', '.', ':', '~')", field="id")
    return checked


def _object(data: dict[str, Any], key: str, method: str, path: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise RestError(f"PagerDuty's answer holds no {key}", status=200, method=method, path=path)
    return value


def _subscription(raw: dict[str, Any], method: str, path: str) -> WebhookSubscription:
    subscription_id = raw.get("id")
    if not isinstance(subscription_id, str) or not subscription_id:
        raise RestError("PagerDuty's answer holds a subscription without an id", status=200, method=method, path=path)
    delivery = raw.get("delivery_method")
    url = delivery.get("url") if isinstance(delivery, dict) else None
    raw_filter, raw_events = raw.get("filter"), raw.get("events")
    filter_: dict[str, Any] = raw_filter if isinstance(raw_filter, dict) else {}
    events: list[Any] = raw_events if isinstance(raw_events, list) else []
    description = raw.get("description")
    active = raw.get("active")
    return WebhookSubscription(
        id=subscription_id,
        url=url if isinstance(url, str) else None,
        events=tuple(e for e in events if isinstance(e, str)),
        filter_type=filter_.get("type") if isinstance(filter_.get("type"), str) else None,
        filter_id=filter_.get("id") if isinstance(filter_.get("id"), str) else None,
        active=active if isinstance(active, bool) else None,
        description=description if isinstance(description, str) else None,
    )


def _said(response: HttpResponse, credential: Credential) -> tuple[str | None, tuple[str, ...]]:
    """PagerDuty's error message and errors, one line each, without any of the credential's tokens."""
    try:
        data = json.loads(response.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, ()
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None, ()
    tokens = [t for t in (credential.access_token, credential.refresh_token) if t]

    def clean(text: object) -> str | None:
        if not isinstance(text, str) or not text.strip():
            return None
        for token in tokens:
            text = text.replace(token, "****")
        return clean_reason(text)[:300]

    message = clean(error.get("message"))
    raw_errors = error.get("errors")
    errors = tuple(e for e in (clean(x) for x in raw_errors[:10]) if e) if isinstance(raw_errors, list) else ()
    return message, errors


def covers(granted: frozenset[str], needed: str) -> bool:
    """Whether ``granted`` scopes allow what ``needed`` (a Scoped app's ``resource.access``) names.

    A Classic app's ``write`` covers everything, its ``read`` every ``*.read``; a Scoped app's
    ``x.write`` covers ``x.read``.
    """
    resource, _, access = needed.rpartition(".")
    if "write" in granted or needed in granted:
        return True
    if access == "read":
        return "read" in granted or f"{resource}.write" in granted
    return False


def _error(response: HttpResponse, method: str, path: str, *, scope: str, credential: Credential) -> RestError:
    message, errors = _said(response, credential)
    status = response.status
    said = f": {message}" if message else ""
    if status == 403:
        text = " ".join([message or "", *errors]).lower()
        lacks_scope = "scope" in text or not covers(credential.scopes, scope)
        return Forbidden(
            missing="scope" if lacks_scope else "role",
            needed_scope=scope if lacks_scope else None,
            method=method,
            path=path,
            pagerduty_message=message,
            errors=errors,
        )
    kind = NotFound if status == 404 else RestUnavailable if status == 429 or status >= 500 else RestError
    # Redirects are never followed: one would carry the bearer token to wherever it points.
    what = " (a redirect, not followed)" if 300 <= status < 400 else ""
    return kind(
        f"PagerDuty answered {status}{what} to {method} {path}{said}",
        status=status,
        method=method,
        path=path,
        pagerduty_message=message,
        errors=errors,
    )
