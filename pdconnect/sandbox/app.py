"""The sandbox's HTTP face: a WSGI application over :class:`~pdconnect.sandbox.engine.Sandbox`.

PagerDuty's own paths (``/connect``, ``/install/integration``, ``/v2/enqueue``,
``/v2/change/enqueue``, ``/generic/2010-04-15/create_event.json``, ``/webhook_subscriptions``)
behave like PagerDuty's; the sandbox's own pages live beside them, and its control API under
``/_sandbox/api/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import secrets
import socket
import struct
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode, urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from pdconnect.sandbox import pages, tenancy, validation
from pdconnect.sandbox.engine import RESPONDER_ACTIONS, Answer, Sandbox, SandboxError, check_name
from pdconnect.sandbox.faults import Decision, FaultPlan, FaultSpecError
from pdconnect.sandbox.hosts import HostCheck
from pdconnect.sandbox.model import (
    Account,
    Alert,
    ApiKey,
    App,
    ChangeEvent,
    EscalationPolicy,
    Incident,
    IntegrationKey,
    Ruleset,
    Service,
    Subscription,
    Team,
    User,
)
from pdconnect.sandbox.rest import EU_PREFIX, RestApi, _text, split_region, wants_rest
from pdconnect.urls import add_query_params, safe_link_href, safe_local_redirect

#: The environ key where the HTTP layer leaves its fault decision for an events request.
FAULT_ENVIRON_KEY = "pdconnect.sandbox.fault"
_US_EVENT_PATHS = {
    "/v2/enqueue": "v2",
    "/v2/change/enqueue": "change",
    "/generic/2010-04-15/create_event.json": "v1",
}
#: The events paths of both regions: the EU's under ``/eu`` (``pagerduty-oauth.md`` section 5).
EVENT_API = {**_US_EVENT_PATHS, **{EU_PREFIX + path: api for path, api in _US_EVENT_PATHS.items()}}
EVENT_PATHS = frozenset(EVENT_API)
#: Paths of the identity server (fault family ``identity``); its control API is not faulted.
IDENTITY_PREFIXES = ("/oauth/", "/global/oauth/")
#: The pretend PagerDuty sign-in: the account id, signed and timestamped with a key each
#: application draws at start (so a restart signs everyone out).
LOGIN_COOKIE = "pdsandbox_account"
LOGIN_SALT = "pdconnect.sandbox.login"
#: How long a sign-in lasts, in seconds.
LOGIN_MAX_AGE = 12 * 3600
_MAX_READ = 1024 * 1024
#: The highest per-key rate limit the control API accepts (PagerDuty grants AIOps accounts 10,000 a minute).
MAX_RATE_LIMIT = 1_000_000

Handler = Callable[..., Response]

URLS = Map(
    [
        Rule("/", endpoint="overview", methods=["GET"]),
        Rule("/v2/enqueue", endpoint="alert_event", methods=["POST"]),
        Rule("/v2/change/enqueue", endpoint="change_event", methods=["POST"]),
        Rule("/generic/2010-04-15/create_event.json", endpoint="legacy_event", methods=["POST"]),
        Rule("/eu/v2/enqueue", endpoint="alert_event", methods=["POST"]),
        Rule("/eu/v2/change/enqueue", endpoint="change_event", methods=["POST"]),
        Rule("/eu/generic/2010-04-15/create_event.json", endpoint="legacy_event", methods=["POST"]),
        Rule("/connect", endpoint="connect", methods=["GET", "POST"]),
        Rule("/install/integration", endpoint="install", methods=["GET", "POST"]),
        Rule("/login", endpoint="login", methods=["POST"]),
        Rule("/logout", endpoint="logout", methods=["GET"]),
        Rule("/services", endpoint="create_service", methods=["POST"]),
        Rule("/services/<service_id>", endpoint="service", methods=["GET"]),
        Rule("/services/<service_id>/integrations", endpoint="add_integration", methods=["POST"]),
        Rule("/services/<service_id>/integrations/<key_id>/<change>", endpoint="change_integration", methods=["POST"]),
        Rule("/incidents", endpoint="incidents", methods=["GET"]),
        Rule("/incidents/<incident_id>", endpoint="incident", methods=["GET"]),
        Rule("/incidents/<incident_id>/actions", endpoint="incident_action", methods=["POST"]),
        Rule("/webhooks", endpoint="webhooks", methods=["GET", "POST"]),
        Rule("/webhooks/<subscription_id>/delete", endpoint="delete_webhook", methods=["POST"]),
        Rule("/apps", endpoint="apps", methods=["GET", "POST"]),
        Rule("/received", endpoint="received_page", methods=["GET"]),
        Rule("/_sandbox/api/state", endpoint="api_state", methods=["GET"]),
        Rule("/_sandbox/api/received", endpoint="api_received", methods=["GET"]),
        Rule("/_sandbox/api/incidents", endpoint="api_incidents", methods=["GET"]),
        Rule("/_sandbox/api/incidents/<incident_id>", endpoint="api_incident", methods=["GET"]),
        Rule("/_sandbox/api/incidents/<incident_id>/actions", endpoint="api_incident_action", methods=["POST"]),
        Rule("/_sandbox/api/deliveries", endpoint="api_deliveries", methods=["GET"]),
        Rule("/_sandbox/api/reset", endpoint="api_reset", methods=["POST"]),
        Rule("/_sandbox/api/faults", endpoint="api_faults", methods=["GET", "PUT"]),
        Rule("/_sandbox/api/settings", endpoint="api_settings", methods=["GET", "PUT"]),
        Rule("/_sandbox/api/apps", endpoint="api_apps", methods=["POST"]),
        Rule("/_sandbox/api/accounts", endpoint="api_accounts", methods=["POST"]),
        Rule("/_sandbox/api/accounts/<account_id>/api_keys", endpoint="api_api_keys", methods=["POST"]),
        Rule(
            "/_sandbox/api/webhook_subscriptions/<subscription_id>/<phase>",
            endpoint="api_rotation",
            methods=["POST"],
        ),
        Rule("/_sandbox/api/services", endpoint="api_services", methods=["POST"]),
        Rule("/_sandbox/api/keys/<key_id>", endpoint="api_key", methods=["GET", "DELETE"]),
        Rule("/_sandbox/api/keys/<key_id>/<change>", endpoint="api_key_change", methods=["POST"]),
    ]
)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data, default=str), status=status, headers=headers, mimetype="application/json")


def _html(text: str, status: int = 200) -> Response:
    # An event may carry a lone surrogate ("\\ud800" is valid JSON); shown as U+FFFD, never a 500.
    body = text.encode("utf-8", errors="surrogatepass").decode("utf-8", errors="replace")
    return Response(body, status=status, mimetype="text/html")


def _redirect(location: str, status: int = 302) -> Response:
    """A redirect; refused (400) if ``location`` is not plain printable ASCII (the last line of defence)."""
    if not location or any(not 0x21 <= ord(ch) < 0x7F or ch == "\\" for ch in location):
        raise SandboxError("Refusing to redirect to that URL.")
    return Response("", status=status, headers={"Location": location})


def _record(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def _public_subscription(subscription: Subscription) -> dict[str, Any]:
    """A subscription as the control API shows it: PagerDuty's REST shape (no secret) and its account."""
    return {
        **RestApi.subscription(subscription),
        "account": subscription.account,
        "rotating": subscription.previous_secret is not None,
    }


def _absolute_url(value: str | None) -> bool:
    """A URL the browser may be sent back to: absolute http(s), printable ASCII, no credentials.

    Control characters, tabs, CR/LF, spaces and backslashes are refused rather than
    stripped: Python's URL parser and Werkzeug drop some of them silently, so a callback
    that looks refused could still match, and a newline in ``Location`` would be a 500.
    """
    return safe_link_href(value) is not None


def _refuse_cross_site(request: Request) -> None:
    """Refuse (403) a state-changing request a browser says came from another origin.

    The sandbox's pages need no login, so without this any web page the developer visits
    could post a form (or a ``no-cors`` fetch with a ``text/plain`` JSON body) that deletes
    subscriptions, registers an app with its own redirect URL or resets the sandbox.
    Browsers send ``Origin`` and ``Sec-Fetch-Site`` on such posts; scripts and test clients
    send neither and are let through. The Events API stays open to every origin, as PagerDuty's.
    """
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise SandboxError("Refused: this request came from another site.", status=403)
    origin = request.headers.get("Origin")
    if origin is None:
        return
    try:
        parts = urlsplit(origin)
        own = urlsplit(request.host_url)
        same = (parts.scheme, parts.netloc.lower()) == (own.scheme, own.netloc.lower()) and not parts.path.strip("/")
    except ValueError:
        same = False
    if not same:
        raise SandboxError("Refused: this request came from another site.", status=403)


def _own_notice(done: str | None) -> str | None:
    """``done`` if it is one of the sandbox's own "Done: <action>." notices, else nothing.

    The notice comes back in the query string after a responder action; any other text
    would let a link make the sandbox's page say whatever its author likes.
    """
    return done if done in {f"Done: {action}." for action in RESPONDER_ACTIONS} else None


def _is_api(path: str) -> bool:
    """True for the paths that answer JSON (the control API, the EU prefix and PagerDuty's REST shape)."""
    return path.startswith(("/_sandbox/api/", "/webhook_subscriptions", EU_PREFIX + "/")) or path in (
        "/_sandbox/api",
        EU_PREFIX,
    )


def _family(request: Request) -> str | None:
    """The fault family of a request: ``rest``, ``identity`` or ``None`` (events are faulted by the server)."""
    if request.path.startswith(IDENTITY_PREFIXES):
        return "identity"
    if request.path not in EVENT_PATHS and wants_rest(request):
        return "rest"
    return None


def _drop_connection(environ: dict[str, Any]) -> None:
    """Reset the client's connection without an answer, as a crashed server would.

    Werkzeug's server hands the socket in ``werkzeug.socket``; linger 0 makes the close a
    reset, and the ``ConnectionResetError`` tells Werkzeug not to answer on it.
    """
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RDWR)
    raise ConnectionResetError("dropped by the sandbox's fault injection")


def _fault_response(family: str, decision: Decision) -> Response:
    """An injected status in the family's error shape (REST's or OAuth's), with ``Retry-After`` if planned."""
    assert decision.status is not None
    headers = {"Retry-After": f"{decision.retry_after:g}"} if decision.retry_after is not None else {}
    if family == "identity":
        error = "temporarily_unavailable" if decision.status in (429, 503) else "server_error"
        return _json({"error": error, "error_description": "Injected by the sandbox."}, decision.status, headers)
    if decision.status == 429:
        body = {"error": {"message": "Rate Limit Exceeded", "code": tenancy.CODE_RATE_LIMIT}}
    else:
        body = {"error": {"message": "Internal server error (injected by the sandbox)", "code": 2013}}
    return _json(body, decision.status, headers)


class SandboxApp:
    """WSGI application serving one :class:`Sandbox`.

    ``allowed_hosts`` are the host names it answers besides loopback ones, and ``port`` the
    port the ``Host`` header must name (see :class:`~pdconnect.sandbox.hosts.HostCheck`; the
    server sets it once it listens). Any other ``Host`` is a 421, so a DNS-rebinding page
    cannot drive the sandbox from a browser.
    """

    def __init__(
        self,
        sandbox: Sandbox,
        *,
        allowed_hosts: Iterable[str] = (),
        port: int | None = None,
        login_secret: bytes | None = None,
        login_max_age: int = LOGIN_MAX_AGE,
    ) -> None:
        self.sandbox = sandbox
        self.host_check = HostCheck(allowed_hosts, port=port)
        if isinstance(login_max_age, bool) or not isinstance(login_max_age, int) or login_max_age < 1:
            raise ValueError("login_max_age must be a whole number of seconds, at least 1")
        self.login_max_age = login_max_age
        secret = login_secret if login_secret is not None else secrets.token_bytes(32)
        self._login = URLSafeTimedSerializer(secret, salt=LOGIN_SALT)
        self.rest = RestApi(sandbox, body=self._body)

    def login_cookie(self, account_id: str) -> str:
        """A signed sign-in cookie value for ``account_id``, as ``/login`` sets it (for tests)."""
        return self._login.dumps(account_id)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = _MAX_READ
        refusal = self.host_check.refusal(environ.get("HTTP_HOST"), scheme=environ.get("wsgi.url_scheme", "http"))
        if refusal is not None:
            return self._error(request, refusal, 421)(environ, start_response)
        adapter = URLS.bind_to_environ(environ)
        try:
            family = _family(request)
            if family is not None:
                decision = self.sandbox.faults.decide(family)
                if decision.delay:
                    time.sleep(decision.delay)  # the injected latency, on the server's thread
                if decision.drop:
                    _drop_connection(environ)
                if decision.status is not None:
                    return _fault_response(family, decision)(environ, start_response)
            if request.method not in ("GET", "HEAD", "OPTIONS") and request.path not in EVENT_PATHS:
                _refuse_cross_site(request)
            answer = self.sandbox.identity.handle(request)
            if answer is not None:
                return answer(environ, start_response)
            if family == "rest":
                return self.rest(request)(environ, start_response)
            endpoint, args = adapter.match()
            handler: Handler = getattr(self, f"on_{endpoint}")
            response = handler(request, **args)
        except SandboxError as exc:
            response = self._error(request, exc.message, exc.status)
        except HTTPException as exc:
            if exc.code is not None and exc.code >= 400 and _is_api(request.path):
                response = _json({"error": {"message": exc.name}}, exc.code)
            else:
                response = exc.get_response(environ)
        return response(environ, start_response)

    def _error(self, request: Request, message: str, status: int) -> Response:
        if _is_api(request.path):
            return _json({"error": {"message": message}}, status)
        return _html(pages.error_page(message), status)

    def _body(self, request: Request) -> dict[str, Any]:
        """The JSON object a control or REST request sent (an empty body is ``{}``)."""
        try:
            data = validation.parse_json(request.get_data() or b"{}")
        except validation.JsonBodyError as exc:
            raise SandboxError(f"The body is not usable JSON: {exc}.") from exc
        if not isinstance(data, dict):
            raise SandboxError("The body must be a JSON object.")
        return data

    def _logged_in(self, request: Request) -> Account | None:
        """The account the sign-in cookie names; signed out if it is missing, forged or expired."""
        value = request.cookies.get(LOGIN_COOKIE)
        if not value:
            return None
        try:
            account_id = self._login.loads(value, max_age=self.login_max_age)
        except BadSignature:  # SignatureExpired is one
            return None
        return self.sandbox.store.get(Account, account_id) if isinstance(account_id, str) else None

    # -- the events endpoints ----------------------------------------------------------------

    def events_answer(self, path: str, raw: bytes, decision: Decision) -> Answer:
        """The answer to a POST on one of the events paths of either region (also the server's fast path)."""
        api = EVENT_API[path]
        region, _ = split_region(path)
        sandbox = self.sandbox
        handle = {"v2": sandbox.handle_alert, "change": sandbox.handle_change, "v1": sandbox.handle_legacy}
        if decision.status is not None:
            return self.sandbox.faulted(api, path, raw, decision)
        return handle[api](raw, region=region)

    def _events(self, request: Request) -> Response:
        decision: Decision = request.environ.get(FAULT_ENVIRON_KEY) or self.sandbox.fault()
        answer = self.events_answer(request.path, request.get_data(cache=False), decision)
        return _json(answer.body, answer.status, answer.headers)

    def on_alert_event(self, request: Request) -> Response:
        return self._events(request)

    def on_change_event(self, request: Request) -> Response:
        return self._events(request)

    def on_legacy_event(self, request: Request) -> Response:
        return self._events(request)

    # -- the handshakes ----------------------------------------------------------------------

    def on_connect(self, request: Request) -> Response:
        source = request.form if request.method == "POST" else request.args
        vendor, callback = source.get("vendor"), source.get("callback")
        if not vendor or not vendor.strip():
            raise SandboxError("The vendor parameter is missing.")
        check_name(vendor, "The vendor parameter")
        if not _absolute_url(callback):
            raise SandboxError("The callback parameter must be an absolute URL.")
        assert callback is not None
        if request.method == "POST":
            if request.form.get("decision") == "cancel":
                return _redirect(add_query_params(callback, {"error": "cancelled"}))
            account = self._logged_in(request)
            if account is None:
                raise SandboxError("Log in first.", status=401)
            return _redirect(
                self.sandbox.complete_connect(
                    vendor=vendor,
                    callback=callback,
                    account=account.id,
                    service_id=request.form.get("service_id") or None,
                    new_service=request.form.get("new_service"),
                )
            )
        account = self._logged_in(request)
        if account is None:
            return self._login_form("connect", {"vendor": vendor, "callback": callback})
        return _html(
            pages.connect_page(
                vendor=vendor, callback=callback, account=account, services=self.sandbox.services(account.id)
            )
        )

    def on_install(self, request: Request) -> Response:
        source = request.form if request.method == "POST" else request.args
        app_id, redirect_url = source.get("app_id"), source.get("redirect_url")
        app = self.sandbox.app_for(app_id, redirect_url)
        assert redirect_url is not None
        if request.method == "POST":
            if request.form.get("decision") == "cancel":
                # UNCONFIRMED: PagerDuty documents no cancel answer for this flow; this mirrors Connect.
                return _redirect(add_query_params(redirect_url, {"error": "cancelled"}))
            account = self._logged_in(request)
            if account is None:
                raise SandboxError("Log in first.", status=401)
            return _redirect(
                self.sandbox.complete_install(
                    app_id=app.id,
                    redirect_url=redirect_url,
                    account=account.id,
                    service_ids=request.form.getlist("service_ids"),
                    new_service=request.form.get("new_service"),
                    ruleset_ids=request.form.getlist("ruleset_ids"),
                )
            )
        account = self._logged_in(request)
        if account is None:
            return self._login_form("install", {"app_id": app.id, "redirect_url": redirect_url, "version": "2"})
        rulesets = self.sandbox.rulesets(account.id)
        return _html(
            pages.install_page(
                app=app,
                redirect_url=redirect_url,
                account=account,
                services=self.sandbox.services(account.id),
                rulesets=rulesets,
            )
        )

    def _login_form(self, flow: str, carry: dict[str, str]) -> Response:
        title, intro = {
            "connect": ("Log in to PagerDuty", f"Log in to connect {carry.get('vendor')} to PagerDuty."),
            "install": ("Log in to PagerDuty", "Log in to install this integration."),
        }[flow]
        return _html(
            pages.login_page(
                title=title,
                intro=intro,
                carry={"flow": flow, **carry},
                accounts=self.sandbox.store.all(Account),
                cancel=True,
                notice=pages.CONNECT_RETIRED if flow == "connect" else None,
            )
        )

    def on_login(self, request: Request) -> Response:
        form = request.form
        flow = form.get("flow")
        if flow == "connect":
            query = {"vendor": form.get("vendor", ""), "callback": form.get("callback", "")}
            target = "/connect?" + urlencode(query)
            back = query["callback"]
            if not query["vendor"] or not _absolute_url(back):
                raise SandboxError("The vendor or callback parameter is missing.")
        elif flow == "install":
            query = {"app_id": form.get("app_id", ""), "redirect_url": form.get("redirect_url", ""), "version": "2"}
            self.sandbox.app_for(query["app_id"], query["redirect_url"])
            target = "/install/integration?" + urlencode(query)
            back = query["redirect_url"]
        else:
            raise SandboxError("Unknown flow.")
        if form.get("decision") == "cancel":
            return _redirect(add_query_params(back, {"error": "cancelled"}))
        account = self.sandbox.login(form.get("subdomain", ""))
        response = _redirect(target, 303)
        response.set_cookie(
            LOGIN_COOKIE, self.login_cookie(account.id), max_age=self.login_max_age, httponly=True, samesite="Lax"
        )
        return response

    def on_logout(self, request: Request) -> Response:
        response = _redirect(safe_local_redirect(request.args.get("next")))
        response.delete_cookie(LOGIN_COOKIE)
        return response

    # -- pages -------------------------------------------------------------------------------

    def on_overview(self, request: Request) -> Response:
        store = self.sandbox.store
        with store.lock:
            text = pages.overview(
                store.all(Account),
                store.all(User),
                store.all(EscalationPolicy),
                store.all(Service),
                store.all(IntegrationKey),
                store.all(Ruleset),
                store.all(Incident),
                self.sandbox.base_url,
            )
        return _html(text)

    def on_create_service(self, request: Request) -> Response:
        service, _ = self.sandbox.create_service(request.form.get("account", ""), request.form.get("name", ""))
        return _redirect(f"/services/{service.id}", 303)

    def on_service(self, request: Request, service_id: str) -> Response:
        store = self.sandbox.store
        with store.lock:
            service = store.get(Service, service_id)
            if service is None:
                raise SandboxError("No such service.", status=404)
            incidents = [i for i in self.sandbox.incidents() if i.service == service_id]
            changes = [c for c in store.all(ChangeEvent) if c.service == service_id]
            text = pages.service_page(service, self.sandbox.keys_of(service_id), incidents, changes)
        return _html(text)

    def on_add_integration(self, request: Request, service_id: str) -> Response:
        self.sandbox.add_integration(service_id, "events_api_v2", "Events API V2")
        return _redirect(f"/services/{service_id}", 303)

    def _change_key(self, key_id: str, change: str) -> IntegrationKey:
        if change == "disable":
            return self.sandbox.set_key_disabled(key_id, True)
        if change == "enable":
            return self.sandbox.set_key_disabled(key_id, False)
        if change == "delete":
            return self.sandbox.delete_key(key_id)
        raise SandboxError("Unknown change: disable, enable or delete.", status=404)

    def on_change_integration(self, request: Request, service_id: str, key_id: str, change: str) -> Response:
        key = self.sandbox.store.get(IntegrationKey, key_id)
        if key is None or key.service != service_id:
            raise SandboxError("No such integration on this service.", status=404)
        self._change_key(key_id, change)
        return _redirect(f"/services/{service_id}", 303)

    def on_incidents(self, request: Request) -> Response:
        with self.sandbox.store.lock:
            return _html(pages.incidents_page(self.sandbox.incidents(), self.sandbox.services()))

    def on_incident(self, request: Request, incident_id: str) -> Response:
        store = self.sandbox.store
        with store.lock:
            incident = store.get(Incident, incident_id)
            if incident is None:
                raise SandboxError("No such incident.", status=404)
            text = pages.incident_page(
                incident,
                store.get(Service, incident.service),
                self.sandbox.users(incident.account),
                self.sandbox.policies(incident.account),
                [store.get(Alert, a) for a in incident.alerts],
                notice=_own_notice(request.args.get("done")),
            )
        return _html(text)

    def on_incident_action(self, request: Request, incident_id: str) -> Response:
        form = request.form
        options = {k: v for k, v in form.items() if k in ("assignee", "escalation_policy", "note", "priority")}
        account = self._logged_in(request)
        incident = self.sandbox.store.get(Incident, incident_id)
        user = None
        if account is not None and incident is not None and account.id == incident.account:
            user = next((u.id for u in self.sandbox.users(account.id)), None)
        action = form.get("action", "")
        self.sandbox.act(incident_id, action, user_id=user, **options)
        return _redirect(f"/incidents/{incident_id}?" + urlencode({"done": f"Done: {action}."}), 303)

    def on_webhooks(self, request: Request) -> Response:
        created = None
        if request.method == "POST":
            scope = request.form.get("scope", "account")
            # "account" is the first account's; "account:<id>" names one; anything else is a service id.
            whole = scope == "account" or scope.startswith("account:")
            created = self.sandbox.subscribe(
                request.form.get("url", ""),
                events=request.form.getlist("events") or None,
                filter_type="account_reference" if whole else "service_reference",
                filter_id=scope.partition(":")[2] or None if whole else scope,
                version=request.form.get("version", "v3"),
            )
        store = self.sandbox.store
        with store.lock:
            text = pages.webhooks_page(
                store.all(Subscription),
                self.sandbox.deliveries(),
                store.all(Service),
                created,
                accounts=[a.id for a in store.all(Account)],
            )
        return _html(text, 201 if created else 200)

    def on_delete_webhook(self, request: Request, subscription_id: str) -> Response:
        self.sandbox.unsubscribe(subscription_id)
        return _redirect("/webhooks", 303)

    def on_apps(self, request: Request) -> Response:
        if request.method == "POST":
            urls = [line.strip() for line in request.form.get("redirect_urls", "").splitlines() if line.strip()]
            self.sandbox.register_app(request.form.get("app_id", "").strip(), urls, request.form.get("name") or None)
            return _redirect("/apps", 303)
        return _html(pages.apps_page(self.sandbox.store.all(App)))

    def on_received_page(self, request: Request) -> Response:
        return _html(pages.received_page(self.sandbox.received()))

    # -- the control API ---------------------------------------------------------------------

    def on_api_state(self, request: Request) -> Response:
        sandbox, store = self.sandbox, self.sandbox.store
        with store.lock:
            state = {
                "accounts": [_record(a) for a in store.all(Account)],
                "users": [{**_record(u), "role": self._role_of(u)} for u in store.all(User)],
                "identity_users": self._identity_users(store.all(Account)),
                "api_keys": [
                    {"key": f"…{k.id[-4:]}", "account": k.account, "read_only": k.read_only} for k in store.all(ApiKey)
                ],
                "teams": [_record(t) for t in store.all(Team)],
                "escalation_policies": [_record(p) for p in store.all(EscalationPolicy)],
                "services": [
                    {**_record(s), "integration_keys": [_record(k) for k in sandbox.keys_of(s.id)]}
                    for s in store.all(Service)
                ],
                "rulesets": [_record(r) for r in store.all(Ruleset)],
                "apps": [_record(a) for a in store.all(App)],
                "webhook_subscriptions": [_public_subscription(s) for s in store.all(Subscription)],
                "settings": self._settings(),
                "faults": sandbox.faults.plan.to_dict(),
            }
        return _json(state)

    def _role_of(self, user: User) -> str:
        """The user's role now: the identity server's (it can be changed there), else the seeded one."""
        role = self.sandbox.identity.role_of(user.account, user.id)
        return role if role is not None else user.role

    def _identity_users(self, accounts: list[Account]) -> list[dict[str, Any]]:
        """The identity server's users (with their roles), account by account."""
        found: list[dict[str, Any]] = []
        for account in accounts:
            for user in self.sandbox.identity.users(account.id):
                found.append({**dataclasses.asdict(user), "account": account.id})
        return found

    def on_api_received(self, request: Request) -> Response:
        try:
            since = int(request.args.get("since", "0"))
        except ValueError as exc:
            raise SandboxError("since must be a number") from exc
        records = self.sandbox.received(since=since, routing_key=request.args.get("routing_key"))
        return _json({"received": [_record(r) for r in records]})

    def _incident_json(self, incident: Incident) -> dict[str, Any]:
        alerts = [self.sandbox.store.get(Alert, a) for a in incident.alerts]
        return {**_record(incident), "alerts": [_record(a) for a in alerts if a is not None]}

    def on_api_incidents(self, request: Request) -> Response:
        with self.sandbox.store.lock:
            return _json({"incidents": [self._incident_json(i) for i in self.sandbox.incidents()]})

    def on_api_incident(self, request: Request, incident_id: str) -> Response:
        with self.sandbox.store.lock:
            incident = self.sandbox.store.get(Incident, incident_id)
            if incident is None:
                raise SandboxError("No such incident.", status=404)
            return _json({"incident": self._incident_json(incident)})

    def on_api_incident_action(self, request: Request, incident_id: str) -> Response:
        body = self._body(request)
        options = {k: _text(body, k) or "" for k in ("assignee", "escalation_policy", "note", "priority") if k in body}
        action = _text(body, "action") or ""
        incident = self.sandbox.act(incident_id, action, user_id=_text(body, "user", None), **options)
        with self.sandbox.store.lock:
            return _json({"incident": self._incident_json(incident)})

    def on_api_deliveries(self, request: Request) -> Response:
        return _json({"deliveries": [_record(d) for d in self.sandbox.deliveries()]})

    def on_api_reset(self, request: Request) -> Response:
        seed = self._body(request).get("seed", True)
        if not isinstance(seed, bool):
            raise SandboxError("seed must be true or false.")
        self.sandbox.reset(seed=seed)
        return _json({"reset": True})

    def on_api_faults(self, request: Request) -> Response:
        if request.method == "PUT":
            body = self._body(request)
            if "spec" in body and (len(body) > 1 or not isinstance(body["spec"], str)):
                raise SandboxError('Send either {"spec": "429=0.1,..."} or the plan\'s fields.')
            try:
                plan = FaultPlan.parse(body["spec"]) if "spec" in body else FaultPlan.from_dict(body)
            except FaultSpecError as exc:
                raise SandboxError(str(exc)) from exc
            self.sandbox.faults.set(plan)
        return _json(self.sandbox.faults.plan.to_dict())

    def _settings(self) -> dict[str, Any]:
        settings = self.sandbox.settings
        return {
            "rate_limit": settings.rate_limit,
            "account_name_field": settings.account_name_field,
            "allow_remote_webhooks": settings.allow_remote_webhooks,
        }

    def on_api_settings(self, request: Request) -> Response:
        if request.method == "PUT":
            body = self._body(request)
            settings = self.sandbox.settings
            unknown = set(body) - {"rate_limit", "account_name_field"}
            if unknown:
                raise SandboxError(f"Unknown settings: {sorted(name[:40] for name in unknown)}")
            limit = body.get("rate_limit", settings.rate_limit)
            if limit is not None and (
                isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_RATE_LIMIT
            ):
                raise SandboxError(f"rate_limit must be a whole number from 1 to {MAX_RATE_LIMIT}, or null")
            field_name = body.get("account_name_field", settings.account_name_field)
            if not isinstance(field_name, str) or field_name not in ("name", "Name", "both"):
                raise SandboxError("account_name_field must be name, Name or both")
            settings.rate_limit = limit
            self.sandbox.limiter.limit = limit
            settings.account_name_field = field_name
        return _json(self._settings())

    def on_api_apps(self, request: Request) -> Response:
        body = self._body(request)
        urls = body.get("redirect_urls")
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise SandboxError("redirect_urls must be a list of URLs")
        app = self.sandbox.register_app(_text(body, "app_id") or "", urls, _text(body, "name", None))
        return _json({"app": _record(app)}, 201)

    def on_api_key(self, request: Request, key_id: str) -> Response:
        if request.method == "DELETE":
            self.sandbox.delete_key(key_id)
            return Response(status=204)
        key = self.sandbox.store.get(IntegrationKey, key_id)
        if key is None:
            raise SandboxError("No such integration key.", status=404)
        return _json({"integration_key": _record(key)})

    def on_api_key_change(self, request: Request, key_id: str, change: str) -> Response:
        if change == "delete":
            raise SandboxError("Delete a key with DELETE /_sandbox/api/keys/<key>.", status=404)
        return _json({"integration_key": _record(self._change_key(key_id, change))})

    def on_api_accounts(self, request: Request) -> Response:
        body = self._body(request)
        account = self.sandbox.create_account(
            _text(body, "subdomain") or "", _text(body, "name", None), region=_text(body, "region", None)
        )
        return _json({"account": _record(account)}, 201)

    def on_api_api_keys(self, request: Request, account_id: str) -> Response:
        """Make a REST API key of the account; the key is in this answer only."""
        body = self._body(request)
        read_only = body.get("read_only", False)
        key = self.sandbox.create_api_key(account_id, read_only=read_only, description=_text(body, "description") or "")
        return _json({"api_key": {"key": key.id, "account": key.account, "read_only": key.read_only}}, 201)

    def on_api_rotation(self, request: Request, subscription_id: str, phase: str) -> Response:
        """``rotate_secret`` starts a rotation (the new secret in this answer only); ``finish_rotation`` ends it."""
        if phase == "rotate_secret":
            subscription = self.sandbox.rotate_secret(subscription_id)
            return _json({"webhook_subscription": _public_subscription(subscription), "secret": subscription.secret})
        if phase == "finish_rotation":
            subscription = self.sandbox.finish_rotation(subscription_id)
            return _json({"webhook_subscription": _public_subscription(subscription)})
        raise SandboxError("Unknown step: rotate_secret or finish_rotation.", status=404)

    def on_api_services(self, request: Request) -> Response:
        body = self._body(request)
        service, key = self.sandbox.create_service(_text(body, "account") or "", _text(body, "name") or "")
        return _json({"service": _record(service), "integration_key": key.id if key else None}, 201)
