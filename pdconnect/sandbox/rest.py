"""The sandbox's REST API in PagerDuty's shape: services, incidents and webhook subscriptions.

Served at the sandbox's base URL for US accounts and under ``<base>/eu`` for EU accounts.
Every request is authorised against one account first (:mod:`pdconnect.sandbox.tenancy`);
nothing of another account is ever in an answer, and another account's object answers
exactly as a missing one (404). Lists take ``limit`` and ``offset`` and answer ``limit``,
``offset``, ``more`` and ``total`` (``null`` unless ``total=true``), as PagerDuty's do.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from pdconnect.sandbox.engine import Sandbox, SandboxError
from pdconnect.sandbox.model import EscalationPolicy, Incident, Service, Subscription, Team, User
from pdconnect.sandbox.subscriptions import SubscriptionRefused, owned
from pdconnect.sandbox.tenancy import (
    CODE_INVALID_INPUT,
    CODE_NOT_FOUND,
    Caller,
    RestError,
    authenticate,
    check_accept,
    not_found,
)

#: The prefix of the EU region's REST and events endpoints on the sandbox.
EU_PREFIX = "/eu"
#: PagerDuty's default and largest page size (``limit``).
DEFAULT_LIMIT = 25
MAX_LIMIT = 100
#: UNCONFIRMED: PagerDuty caps ``offset`` (at 10,000 for classic pagination); the sandbox does the same.
MAX_OFFSET = 10_000
#: What a custom header's value shows outside the answer that created it. UNCONFIRMED:
#: whether PagerDuty shows the values again; they may be credentials of the receiver.
REDACTED = "[REDACTED]"

ROUTES = Map(
    [
        Rule("/services", endpoint="services", methods=["GET"]),
        Rule("/services/<service_id>", endpoint="service", methods=["GET"]),
        Rule("/incidents/<incident_id>", endpoint="incident", methods=["GET"]),
        Rule("/webhook_subscriptions", endpoint="subscriptions", methods=["GET", "POST"]),
        Rule("/webhook_subscriptions/<subscription_id>", endpoint="subscription", methods=["GET", "PUT", "DELETE"]),
        Rule("/webhook_subscriptions/<subscription_id>/ping", endpoint="ping", methods=["POST"]),
        Rule("/webhook_subscriptions/<subscription_id>/enable", endpoint="enable", methods=["POST"]),
    ],
    strict_slashes=False,
)
#: The resource (scope name) each endpoint reads or changes.
RESOURCE = {
    "services": "services",
    "service": "services",
    "incident": "incidents",
    "subscriptions": "webhook_subscriptions",
    "subscription": "webhook_subscriptions",
    "ping": "webhook_subscriptions",
    "enable": "webhook_subscriptions",
}
#: Paths shared with the sandbox's own HTML pages at the US base: REST only when asked for.
_SHARED_WITH_PAGES = ("/services", "/incidents/")


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data, default=str), status=status, headers=headers, mimetype="application/json")


def error_response(error: RestError) -> Response:
    return _json(error.body(), error.status, error.headers)


def split_region(path: str) -> tuple[str, str]:
    """``(region, path within it)``: ``/eu/...`` is the EU region's, anything else the US one's."""
    if path == EU_PREFIX or path.startswith(EU_PREFIX + "/"):
        return "eu", path[len(EU_PREFIX) :] or "/"
    return "us", path


def wants_rest(request: Request) -> bool:
    """True when a request is for the REST API rather than the sandbox's pages.

    The EU prefix and ``/webhook_subscriptions`` are REST only. ``/services`` and
    ``/incidents/<id>`` at the US base are also the sandbox's pages: a request is REST there
    when it carries ``Authorization`` or asks for JSON (as every REST client does), so a
    browser still gets the page.
    """
    region, path = split_region(request.path)
    if region == "eu" or path.startswith("/webhook_subscriptions"):
        return True
    if not path.startswith(_SHARED_WITH_PAGES) or request.method != "GET":
        return False
    accept = (request.headers.get("Accept") or "").lower()
    return "Authorization" in request.headers or "json" in accept


class RestApi:
    """Answers REST requests for a :class:`~pdconnect.sandbox.engine.Sandbox`, per account and region."""

    def __init__(self, sandbox: Sandbox, *, body: Callable[[Request], dict[str, Any]]) -> None:
        self.sandbox = sandbox
        self._body = body

    # -- dispatch ----------------------------------------------------------------------------

    def __call__(self, request: Request) -> Response:
        """The answer to a request :func:`wants_rest` claimed: JSON always, errors in PagerDuty's shape."""
        region, path = split_region(request.path)
        try:
            try:
                endpoint, args = ROUTES.bind("sandbox").match(path, method=request.method)
            except MethodNotAllowed as exc:
                raise RestError(405, "Method Not Allowed", code=CODE_INVALID_INPUT) from exc
            except (NotFound, HTTPException) as exc:
                raise RestError(404, "Not Found", code=CODE_NOT_FOUND) from exc
            check_accept(request.headers.get("Accept"))
            caller = authenticate(
                request.headers.get("Authorization"),
                region=region,
                store=self.sandbox.store,
                identity=self.sandbox.identity,
            )
            caller.require(RESOURCE[endpoint], write=request.method != "GET")
            handler: Callable[..., Response] = getattr(self, f"on_{endpoint}")
            return handler(request, caller, self._rest_base(region), **args)
        except RestError as exc:
            return error_response(exc)
        except SubscriptionRefused as exc:
            code = CODE_NOT_FOUND if exc.status == 404 else CODE_INVALID_INPUT
            return error_response(RestError(exc.status, exc.message, code=code))
        except SandboxError as exc:
            code = CODE_NOT_FOUND if exc.status == 404 else CODE_INVALID_INPUT
            return error_response(RestError(exc.status, exc.message, code=code))

    def _rest_base(self, region: str) -> str:
        base = self.sandbox.base_url.rstrip("/")
        return base + EU_PREFIX if region == "eu" else base

    # -- shapes ------------------------------------------------------------------------------

    def _ref(self, kind: str, record_id: str, summary: str, rest_base: str, path: str) -> dict[str, Any]:
        return {
            "id": record_id,
            "type": f"{kind}_reference",
            "summary": summary,
            "self": f"{rest_base}/{path}/{record_id}",
            "html_url": f"{self.sandbox.base_url.rstrip('/')}/{path}/{record_id}",
        }

    def _policy_ref(self, policy_id: str, policy: EscalationPolicy | None, rest_base: str) -> dict[str, Any]:
        name = policy.name if policy else ""
        return self._ref("escalation_policy", policy_id, name, rest_base, "escalation_policies")

    def _service(self, service: Service, rest_base: str) -> dict[str, Any]:
        store = self.sandbox.store
        policy = store.get(EscalationPolicy, service.escalation_policy)
        team = store.get(Team, service.team)
        return {
            "id": service.id,
            "type": "service",
            "summary": service.name,
            "self": f"{rest_base}/services/{service.id}",
            "html_url": f"{self.sandbox.base_url.rstrip('/')}/services/{service.id}",
            "name": service.name,
            "description": service.description or None,
            "status": "active",
            "created_at": service.created_at,
            "escalation_policy": self._policy_ref(service.escalation_policy, policy, rest_base),
            "teams": [self._ref("team", team.id, team.name, rest_base, "teams")] if team else [],
        }

    def _user(self, user_id: str, rest_base: str) -> dict[str, Any]:
        user = self.sandbox.store.get(User, user_id)
        return self._ref("user", user_id, user.name if user else user_id, rest_base, "users")

    def _incident(self, incident: Incident, rest_base: str) -> dict[str, Any]:
        service = self.sandbox.store.get(Service, incident.service)
        policy = self.sandbox.store.get(EscalationPolicy, incident.escalation_policy)
        return {
            "id": incident.id,
            "type": "incident",
            "summary": f"[#{incident.number}] {incident.title}",
            "self": f"{rest_base}/incidents/{incident.id}",
            "html_url": f"{self.sandbox.base_url.rstrip('/')}/incidents/{incident.id}",
            "incident_number": incident.number,
            "title": incident.title,
            "status": incident.status,
            "urgency": incident.urgency,
            "incident_key": incident.incident_key,
            "created_at": incident.created_at,
            "updated_at": incident.updated_at,
            "last_status_change_at": incident.updated_at,
            "resolved_at": incident.resolved_at,
            "service": self._ref("service", incident.service, service.name if service else "", rest_base, "services"),
            "escalation_policy": self._policy_ref(incident.escalation_policy, policy, rest_base),
            "assignments": [
                {"at": incident.updated_at, "assignee": self._user(u, rest_base)} for u in incident.assignees
            ],
            "acknowledgements": [
                {"at": incident.updated_at, "acknowledger": self._user(u, rest_base)} for u in incident.acknowledgers
            ],
            "priority": {"id": incident.priority, "type": "priority", "summary": incident.priority}
            if incident.priority
            else None,
            "alert_counts": {"all": len(incident.alerts)},
        }

    @staticmethod
    def subscription(subscription: Subscription, *, created: bool = False) -> dict[str, Any]:
        """A subscription in PagerDuty's shape; the secret and custom header values only when ``created``."""
        delivery: dict[str, Any] = {
            "type": "http_delivery_method",
            "url": subscription.url,
            "temporarily_disabled": subscription.disabled_until is not None,
            "custom_headers": [
                {"name": h["name"], "value": h["value"] if created else REDACTED} for h in subscription.custom_headers
            ],
        }
        if created:
            delivery["secret"] = subscription.secret
        return {
            "id": subscription.id,
            "type": "webhook_subscription",
            "active": subscription.active,
            "description": subscription.description,
            "delivery_method": delivery,
            "events": subscription.events,
            "filter": {"type": subscription.filter_type, "id": subscription.filter_id},
            "version": subscription.version,
        }

    # -- lists -------------------------------------------------------------------------------

    @staticmethod
    def _page(request: Request, name: str, items: list[dict[str, Any]]) -> Response:
        limit = _whole(request.args.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _whole(request.args.get("offset"), "offset", 0, 0, MAX_OFFSET)
        total = request.args.get("total", "false")
        if total not in ("true", "false"):
            raise RestError(400, "total must be true or false.", code=CODE_INVALID_INPUT)
        page = items[offset : offset + limit]
        return _json(
            {
                name: page,
                "limit": limit,
                "offset": offset,
                "more": offset + limit < len(items),
                "total": len(items) if total == "true" else None,
            }
        )

    # -- services and incidents --------------------------------------------------------------

    def on_services(self, request: Request, caller: Caller, rest_base: str) -> Response:
        with self.sandbox.store.lock:
            services = [self._service(s, rest_base) for s in self.sandbox.services(caller.account)]
        return self._page(request, "services", services)

    def on_service(self, request: Request, caller: Caller, rest_base: str, service_id: str) -> Response:
        with self.sandbox.store.lock:
            service = self.sandbox.store.get(Service, service_id)
            if service is None or service.account != caller.account:
                raise not_found()
            return _json({"service": self._service(service, rest_base)})

    def on_incident(self, request: Request, caller: Caller, rest_base: str, incident_id: str) -> Response:
        with self.sandbox.store.lock:
            incident = self.sandbox.store.get(Incident, incident_id)
            if incident is None or incident.account != caller.account:
                raise not_found()
            return _json({"incident": self._incident(incident, rest_base)})

    # -- webhook subscriptions ---------------------------------------------------------------

    def on_subscriptions(self, request: Request, caller: Caller, rest_base: str) -> Response:
        if request.method == "GET":
            with self.sandbox.store.lock:
                mine = [
                    self.subscription(s) for s in self.sandbox.store.all(Subscription) if s.account == caller.account
                ]
            return self._page(request, "webhook_subscriptions", mine)
        body = self._subscription_body(request)
        delivery = _object(body, "delivery_method")
        filter_ = _object(body, "filter")
        if body.get("type", "webhook_subscription") != "webhook_subscription":
            raise SandboxError("type must be webhook_subscription.")
        if delivery.get("type", "http_delivery_method") != "http_delivery_method":
            raise SandboxError("delivery_method type must be http_delivery_method.")
        events = body.get("events")
        if events is not None and (not isinstance(events, list) or not all(isinstance(e, str) for e in events)):
            raise SandboxError("events must be a list of event types.")
        subscription = self.sandbox.subscribe(
            _text(delivery, "url") or "",
            account=caller.account,
            events=events,
            filter_type=_text(filter_, "type", "account_reference") or "",
            filter_id=_text(filter_, "id", None),
            version=_text(body, "version", "v3") or "",
            description=_text(body, "description") or "",
            custom_headers=delivery.get("custom_headers"),
        )
        # PagerDuty answers 200, not 201 (api-schema createWebhookSubscription).
        return _json({"webhook_subscription": self.subscription(subscription, created=True)})

    def on_subscription(self, request: Request, caller: Caller, rest_base: str, subscription_id: str) -> Response:
        if request.method == "DELETE":
            self.sandbox.unsubscribe(subscription_id, caller.account)
            return Response(status=204)
        if request.method == "PUT":
            body = self._subscription_body(request)
            subscription = self.sandbox.update_subscription(subscription_id, caller.account, body)
            return _json({"webhook_subscription": self.subscription(subscription)})
        with self.sandbox.store.lock:
            found = owned(self.sandbox.store, subscription_id, caller.account)
            return _json({"webhook_subscription": self.subscription(found)})

    def on_ping(self, request: Request, caller: Caller, rest_base: str, subscription_id: str) -> Response:
        self.sandbox.ping_subscription(subscription_id, caller.account)
        # UNCONFIRMED: PagerDuty's ping answers 202 with no body, as far as its reference shows.
        return Response(status=202)

    def on_enable(self, request: Request, caller: Caller, rest_base: str, subscription_id: str) -> Response:
        subscription = self.sandbox.enable_subscription(subscription_id, caller.account)
        return _json({"webhook_subscription": self.subscription(subscription)})

    def _subscription_body(self, request: Request) -> dict[str, Any]:
        body = self._body(request).get("webhook_subscription")
        if not isinstance(body, dict):
            raise SandboxError("The body needs a webhook_subscription object.")
        return body


def _whole(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    """A query parameter as a whole number from ``low`` to ``high`` (``default`` when absent), else a 400."""
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 6 or not low <= int(raw) <= high:
        raise RestError(400, f"{name} must be a whole number from {low} to {high}.", code=CODE_INVALID_INPUT)
    return int(raw)


def _text(body: dict[str, Any], name: str, default: str | None = "") -> str | None:
    """``body[name]`` if it is a string (or missing, then ``default``); else a 400."""
    value = body.get(name, default)
    if value is None and default is None:
        return None
    if not isinstance(value, str):
        raise SandboxError(f"{name} must be a string.")
    return value


def _object(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SandboxError(f"{name} must be an object.")
    return value
