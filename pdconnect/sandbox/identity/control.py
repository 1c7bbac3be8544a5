"""The identity server's part of the control API, under ``/_sandbox/api/oauth/``.

JSON in and out, like the rest of ``/_sandbox/api``: register apps (the client secret is in
that answer only), add users with roles, change lifetimes, revoke all of an app's tokens,
rotate the signing key, expire a token now and set the issuer. Errors are
``{"error": {"message": ...}}``.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request

from pdconnect.sandbox import validation
from pdconnect.sandbox.identity import registration
from pdconnect.sandbox.identity.core import Core
from pdconnect.sandbox.identity.errors import ControlError
from pdconnect.urls import safe_link_href

MAX_BODY = 64 * 1024


def body(request: Request) -> dict[str, Any]:
    """The JSON object a control request sent (an empty body is ``{}``)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ControlError(f"The body is larger than {MAX_BODY} bytes.", status=413)
    raw = request.stream.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ControlError(f"The body is larger than {MAX_BODY} bytes.", status=413)
    try:
        data = validation.parse_json(raw or b"{}")
    except validation.JsonBodyError as exc:
        raise ControlError(f"The body is not usable JSON: {exc}.") from exc
    if not isinstance(data, dict):
        raise ControlError("The body must be a JSON object.")
    return data


def apps(core: Core, request: Request) -> tuple[dict[str, Any], int]:
    if request.method == "GET":
        with core.registry.lock:
            return {"apps": [app.public() for app in core.registry.apps.values()]}, 200
    app = registration.register_app(core, body(request))
    return {"app": {**app.public(), "client_secret": app.client_secret}}, 201


def app(core: Core, request: Request, client_id: str) -> tuple[dict[str, Any], int]:
    if request.method == "GET":
        found = core.registry.apps.get(client_id)
        if found is None:
            raise ControlError("No such app.", status=404)
        return {"app": found.public()}, 200
    return {"app": registration.update_app(core, client_id, body(request)).public()}, 200


def revoke(core: Core, request: Request, client_id: str) -> tuple[dict[str, Any], int]:
    """PagerDuty's "Revoke All Tokens" (the only revocation it documents, pagerduty-oauth.md 2.7)."""
    if client_id not in core.registry.apps:
        raise ControlError("No such app.", status=404)
    return {"revoked": core.registry.revoke_app(client_id)}, 200


def users(core: Core, request: Request) -> tuple[dict[str, Any], int]:
    if request.method == "GET":
        account = request.args.get("account")
        return {"users": [vars(u) for u in registration.users_of(core, account)]}, 200
    return {"user": vars(registration.add_user(core, body(request)))}, 201


def user(core: Core, request: Request, user_id: str) -> tuple[dict[str, Any], int]:
    data = body(request)
    if set(data) != {"role"}:
        raise ControlError('Send {"role": ...}: a user\'s role is all that changes.')
    with core.registry.lock:
        found = core.registry.users.get(user_id)
        if found is None:
            raise ControlError("No such user.", status=404)
        found.role = registration.role(data["role"])
        return {"user": vars(registration.info(found))}, 200


def keys(core: Core, request: Request) -> tuple[dict[str, Any], int]:
    return {"current": core.keys.current_kid, "kids": core.keys.kids()}, 200


def rotate(core: Core, request: Request) -> tuple[dict[str, Any], int]:
    kid = core.keys.rotate()
    return {"current": kid, "kids": core.keys.kids()}, 200


def retire(core: Core, request: Request, kid: str) -> tuple[dict[str, Any], int]:
    if not core.keys.retire(kid):
        raise ControlError("No such key, or it is the current one (rotate first).", status=404)
    return {"current": core.keys.current_kid, "kids": core.keys.kids()}, 200


def expire(core: Core, request: Request) -> tuple[dict[str, Any], int]:
    """Make one access or refresh token expire now (the token goes in the body, never the URL)."""
    token = body(request).get("token")
    if not isinstance(token, str):
        raise ControlError('Send {"token": "<access or refresh token>"}.')
    with core.registry.lock:
        found = core.registry.tokens.get(token)
        if found is None:
            raise ControlError("No such token.", status=404)
        found.expires_at = min(found.expires_at, core.clock())
        return {"expired": found.kind}, 200


def settings(core: Core, request: Request) -> tuple[dict[str, Any], int]:
    if request.method == "PUT":
        data = body(request)
        if set(data) - {"issuer"}:
            raise ControlError("The only identity setting is issuer.")
        if "issuer" in data:
            issuer = data["issuer"]
            if not isinstance(issuer, str) or safe_link_href(issuer) is None:
                raise ControlError("issuer must be an absolute http(s) URL.")
            core.issuer = issuer
    return {"issuer": core.issuer}, 200
