"""Which request goes where: the identity server's paths and how each answers an error.

``/oauth/authorize`` answers HTML (an error page where RFC 6749 forbids a redirect),
``/oauth/token`` answers RFC 6749 5.2 JSON, the JWKS and discovery documents are plain JSON,
and ``/_sandbox/api/oauth/`` is the control API. Nothing here raises to the WSGI layer: a
malformed request is a 4xx.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from pdconnect.sandbox.identity import authorize, control, registration, tokens
from pdconnect.sandbox.identity.core import Core
from pdconnect.sandbox.identity.errors import AuthorizePageError, ControlError, OAuthError
from pdconnect.sandbox.identity.forms import parse_fields, read_form
from pdconnect.sandbox.identity.model import Code
from pdconnect.sandbox.identity.pages import consent_page, signin_page
from pdconnect.sandbox.pages import error_page
from pdconnect.urls import add_query_params

DISCOVERY_ROOT = "/global/oauth/anonymous"
CONTROL_ROOT = "/_sandbox/api/oauth"
PREFIXES = ("/oauth/", DISCOVERY_ROOT + "/", CONTROL_ROOT + "/")

URLS = Map(
    [
        Rule("/oauth/authorize", endpoint="authorize", methods=["GET", "POST"]),
        Rule("/oauth/token", endpoint="token", methods=["POST"]),
        Rule(f"{DISCOVERY_ROOT}/jwks", endpoint="jwks", methods=["GET"]),
        Rule(f"{DISCOVERY_ROOT}/.well-known/openid-configuration", endpoint="discovery", methods=["GET"]),
        Rule(f"{CONTROL_ROOT}/apps", endpoint="c_apps", methods=["GET", "POST"]),
        Rule(f"{CONTROL_ROOT}/apps/<client_id>", endpoint="c_app", methods=["GET", "PUT"]),
        Rule(f"{CONTROL_ROOT}/apps/<client_id>/revoke", endpoint="c_revoke", methods=["POST"]),
        Rule(f"{CONTROL_ROOT}/users", endpoint="c_users", methods=["GET", "POST"]),
        Rule(f"{CONTROL_ROOT}/users/<user_id>", endpoint="c_user", methods=["PUT"]),
        Rule(f"{CONTROL_ROOT}/keys", endpoint="c_keys", methods=["GET"]),
        Rule(f"{CONTROL_ROOT}/keys/rotate", endpoint="c_rotate", methods=["POST"]),
        Rule(f"{CONTROL_ROOT}/keys/<kid>", endpoint="c_retire", methods=["DELETE"]),
        Rule(f"{CONTROL_ROOT}/tokens/expire", endpoint="c_expire", methods=["POST"]),
        Rule(f"{CONTROL_ROOT}/settings", endpoint="c_settings", methods=["GET", "PUT"]),
    ],
    strict_slashes=False,
    merge_slashes=False,
)
_CONTROL: dict[str, Callable[..., tuple[dict[str, Any], int]]] = {
    "c_apps": control.apps,
    "c_app": control.app,
    "c_revoke": control.revoke,
    "c_users": control.users,
    "c_user": control.user,
    "c_keys": control.keys,
    "c_rotate": control.rotate,
    "c_retire": control.retire,
    "c_expire": control.expire,
    "c_settings": control.settings,
}
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def owns(path: str) -> bool:
    """True for the paths the identity server answers."""
    return path.startswith(PREFIXES) or path in ("/oauth", DISCOVERY_ROOT, CONTROL_ROOT)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data), status=status, headers=headers, mimetype="application/json")


def _page(message: str, status: int) -> Response:
    return Response(error_page(message), status=status, mimetype="text/html", headers=_NO_STORE)


def _oauth_error(exc: OAuthError) -> Response:
    headers = dict(_NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="PagerDuty sandbox identity"'
    return _json({"error": exc.error, "error_description": exc.description}, exc.status, headers)


def _cross_site(request: Request) -> bool:
    """True if a browser says this state-changing request came from another origin.

    Scripts and test clients send neither header and are let through, as on the rest of the
    sandbox; the token endpoint is not checked (servers call it).
    """
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    try:
        parts, own = urlsplit(origin), urlsplit(request.host_url)
    except ValueError:
        return True
    return (parts.scheme, parts.netloc.lower()) != (own.scheme, own.netloc.lower()) or bool(parts.path.strip("/"))


def handle(core: Core, sessions: authorize.Sessions, request: Request) -> Response | None:
    """The answer to ``request`` if its path is the identity server's, else ``None``."""
    if not owns(request.path):
        return None
    try:
        endpoint, args = URLS.bind_to_environ(request.environ).match(request.path, method=request.method)
    except (NotFound, MethodNotAllowed) as exc:
        return _unrouted(request, exc)
    except HTTPException as exc:  # a redirect for a slash, which the map does not make
        return _json({"error": {"message": exc.name}}, exc.code or 400)
    try:
        if endpoint == "authorize":
            return _authorize(core, sessions, request)
        if endpoint == "token":
            return _token(core, request)
        if endpoint == "jwks":
            return _json(core.keys.jwks(), headers={"Cache-Control": "max-age=60"})
        if endpoint == "discovery":
            return _json(discovery(core))
        if request.method != "GET" and _cross_site(request):
            raise ControlError("Refused: this request came from another site.", status=403)
        data, status = _CONTROL[endpoint](core, request, **args)
        return _json(data, status)
    except ControlError as exc:
        return _json({"error": {"message": exc.message}}, exc.status)
    except HTTPException as exc:  # the body could not be read (too large, disconnected)
        return _json({"error": {"message": exc.name}}, exc.code or 400)


def _unrouted(request: Request, exc: NotFound | MethodNotAllowed) -> Response:
    status = exc.code or 404
    headers = {"Allow": ", ".join(exc.valid_methods)} if isinstance(exc, MethodNotAllowed) and exc.valid_methods else {}
    if request.path == "/oauth/authorize":
        return _page("That method is not allowed here.", status)
    if request.path.startswith("/oauth/"):
        error = "invalid_request"
        return _json({"error": error, "error_description": f"{exc.name}."}, status, headers)
    return _json({"error": {"message": exc.name}}, status, headers)


def discovery(core: Core) -> dict[str, Any]:
    """The OpenID discovery document, every URL on the sandbox's own base."""
    base = core.base()
    return {
        "issuer": core.issuer,
        "authorization_endpoint": f"{base}/oauth/authorize",
        "token_endpoint": f"{base}/oauth/token",
        "jwks_uri": f"{base}{DISCOVERY_ROOT}/jwks",
        "response_types_supported": ["code"],
        "grant_types_supported": list(tokens.GRANT_TYPES),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "none"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "read", "write"],
        "claims_supported": [
            "iss",
            "aud",
            "exp",
            "iat",
            "sub",
            "subdomain",
            "account_id",
            "user_id",
            "delegation_id",
            "region",
        ],
    }


def _token(core: Core, request: Request) -> Response:
    try:
        form = read_form(request)
        answer = tokens.exchange(core, form, request.headers.get("Authorization"))
    except OAuthError as exc:
        return _oauth_error(exc)
    return _json(answer, 200, dict(_NO_STORE))


# -- the authorize page ------------------------------------------------------------------------


def _redirect(location: str) -> Response:
    return Response("", status=302, headers={"Location": location, **_NO_STORE})


def _back(request: authorize.AuthorizeRequest, params: dict[str, str]) -> Response:
    """Send the browser to the client's ``redirect_uri`` with ``params`` (and its ``state``)."""
    if request.state is not None:
        params = {**params, "state": request.state}
    return _redirect(add_query_params(request.redirect_uri, params))


def _query(request: Request) -> dict[str, list[str]]:
    """The query string's parameters, every value of each (read strictly: UTF-8, no control characters)."""
    raw = request.environ.get("QUERY_STRING", "")
    try:
        raw.encode("ascii")
        fields = parse_fields(raw, controls=True)
    except UnicodeEncodeError as exc:
        raise AuthorizePageError("The query string is not URL-encoded.") from exc
    except OAuthError as exc:
        raise AuthorizePageError(f"The query string is malformed: {exc.description}") from exc
    params: dict[str, list[str]] = {}
    for name, value in fields:
        params.setdefault(name, []).append(value)
    return params


def _authorize(core: Core, sessions: authorize.Sessions, request: Request) -> Response:
    try:
        if request.method == "POST":
            return _authorize_post(core, sessions, request)
        with core.registry.lock:
            auth = authorize.read(core, _query(request))
            signed_in = sessions.signed_in(core, request.cookies.get(authorize.SIGNIN_COOKIE))
            if signed_in is None:
                users = [u for u in registration.users_of(core) if core.accounts(u.account_id) is not None]
                text = signin_page(auth, users)
                return Response(text, mimetype="text/html", headers=_NO_STORE)
            user, nonce = signed_in
            text = consent_page(
                auth, registration.info(user), csrf=sessions.consent_token(nonce, auth), refusal=_refusal(auth, user)
            )
        return Response(text, mimetype="text/html", headers=_NO_STORE)
    except AuthorizePageError as exc:
        return _page(exc.message, exc.status)
    except authorize.RedirectError as exc:
        return _back(exc.request, {"error": exc.error, "error_description": exc.description})


def _refusal(auth: authorize.AuthorizeRequest, user: Any) -> str | None:
    # A Scoped app is private to its account (Public Scoped Apps are early access and need an
    # admin's install first: EA-Public-Scoped-Apps.md). UNCONFIRMED what PagerDuty shows.
    if auth.app.kind == "scoped" and user.account_id != auth.app.account_id:
        return f"This app is private to the account {auth.app.account_id}: a user of that account must approve it."
    return None


def _authorize_post(core: Core, sessions: authorize.Sessions, request: Request) -> Response:
    if _cross_site(request):
        raise AuthorizePageError("Refused: this request came from another site.", status=403)
    try:
        form = read_form(request, controls=True)
    except OAuthError as exc:
        raise AuthorizePageError(exc.description) from exc
    with core.registry.lock:
        auth = authorize.read(core, {name: [value] for name, value in form.items()})
        decision = form.get("decision")
        again = "/oauth/authorize?" + urlencode({k: v for k, v in auth.carry().items() if v is not None})
        if decision == "cancel":
            return _back(auth, {"error": "access_denied", "error_description": "The user cancelled the sign-in."})
        if decision == "signin":
            user = core.registry.users.get(form.get("user", ""))
            if user is None or core.accounts(user.account_id) is None:
                raise AuthorizePageError("No such user: pick one from the list.")
            response = Response("", status=303, headers={"Location": again, **_NO_STORE})
            response.set_cookie(
                authorize.SIGNIN_COOKIE,
                sessions.signin_cookie(user.id),
                max_age=authorize.SIGNIN_MAX_AGE,
                path="/oauth/",
                httponly=True,
                samesite="Lax",
            )
            return response
        signed_in = sessions.signed_in(core, request.cookies.get(authorize.SIGNIN_COOKIE))
        if signed_in is None:
            raise AuthorizePageError("Sign in first: your sign-in is missing or has expired.", status=401)
        user, nonce = signed_in
        if not sessions.consent_ok(form.get("csrf_token"), nonce, auth):
            raise AuthorizePageError(
                "This form is stale or did not come from the sandbox's own page: open the link again.", status=403
            )
        if decision == "signout":
            response = Response("", status=303, headers={"Location": again, **_NO_STORE})
            response.delete_cookie(authorize.SIGNIN_COOKIE, path="/oauth/")
            return response
        if decision == "deny":
            return _back(auth, {"error": "access_denied", "error_description": "The user denied access."})
        if decision != "approve":
            raise AuthorizePageError("Unknown decision: approve, deny or signout.")
        refusal = _refusal(auth, user)
        if refusal is not None:
            raise AuthorizePageError(refusal, status=403)
        code = Code(
            value=secrets.token_urlsafe(24),
            client_id=auth.app.client_id,
            redirect_uri=auth.redirect_uri,
            account_id=user.account_id,
            user_id=user.id,
            scopes=auth.granted(),
            challenge=auth.challenge,
            nonce=auth.nonce,
            expires_at=core.clock() + auth.app.code_seconds,
        )
        core.registry.codes[code.value] = code
        core.registry.count_issue(core.clock())
        return _back(auth, {"code": code.value})
