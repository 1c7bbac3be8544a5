"""Registering OAuth apps and users, with the checks a registration form would make.

Used by the control API and by Python callers (the sandbox's seed, tests). Every refusal is a
:class:`~pdconnect.sandbox.identity.errors.ControlError` naming the field; numbers are checked
for type and range where they are read (a bool is not a number of seconds).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from pdconnect.errors import UnsafeURLError
from pdconnect.sandbox.engine import SandboxError, check_name
from pdconnect.sandbox.identity import scopes as scope_rules
from pdconnect.sandbox.identity.core import Core, UserInfo, new_client_id
from pdconnect.sandbox.identity.errors import ControlError
from pdconnect.sandbox.identity.model import (
    CLASSIC_SCOPES,
    DEFAULT_LIFETIMES,
    DEFAULT_SCOPED_SCOPES,
    KINDS,
    LIFETIME_FIELDS,
    MAX_LIFETIME,
    ROLES,
    IdentityUser,
    OAuthApp,
)
from pdconnect.sandbox.model import new_id
from pdconnect.urls import check_callback_url, safe_link_href

MAX_REDIRECT_URLS = 10
MAX_EMAIL = 254
_USER_ID = re.compile(r"[A-Z0-9]{1,20}")


def _name(value: object, what: str) -> str:
    try:
        return check_name(value, what)
    except SandboxError as exc:
        raise ControlError(exc.message) from exc


def _account(core: Core, value: object) -> str:
    if not isinstance(value, str) or core.accounts(value) is None:
        raise ControlError("No such account.", status=404)
    return value


def redirect_url(value: object) -> str:
    """``value`` if it can be a registered redirect URL: absolute ``https`` (``http`` for loopback
    only), printable, without credentials or fragment (RFC 6749 3.1.2).

    UNCONFIRMED: whether PagerDuty's registration refuses plain ``http``; the sandbox does, as
    pdconnect's own callback check does, so a vendor's test does not pass on a URL PagerDuty
    may refuse.
    """
    if not isinstance(value, str) or safe_link_href(value) is None:
        raise ControlError("Each redirect URL must be an absolute http(s) URL without credentials or spaces.")
    try:
        check_callback_url(value, name="A redirect URL")
    except UnsafeURLError as exc:
        raise ControlError(f"{exc}.") from exc
    return value


def lifetime(name: str, value: object) -> int:
    """A lifetime in whole seconds, 1 to ten years."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIFETIME:
        raise ControlError(f"{name} must be a whole number of seconds from 1 to {MAX_LIFETIME}.")
    return value


def _scopes(kind: str, value: object) -> frozenset[str]:
    if value is None:
        return CLASSIC_SCOPES if kind == "classic" else DEFAULT_SCOPED_SCOPES
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        raise ControlError("scopes must be a non-empty list of scope names.")
    scopes = frozenset(value)
    if kind == "classic" and not scopes <= CLASSIC_SCOPES:
        raise ControlError("A Classic app's scopes are read and write.")
    if kind == "scoped" and not all(scope_rules.RESOURCE_SCOPE.fullmatch(s) for s in scopes):
        raise ControlError("A Scoped app's scopes look like services.read or webhook_subscriptions.write.")
    return scopes


def register_app(core: Core, body: Mapping[str, Any]) -> OAuthApp:
    """Register an OAuth app from the control API's fields; the new app, secret included."""
    unknown = set(body) - {
        "account",
        "name",
        "kind",
        "redirect_urls",
        "scopes",
        "confidential",
        "revoke_on_refresh_reuse",
        *LIFETIME_FIELDS,
    }
    if unknown:
        raise ControlError(f"Unknown fields: {sorted(name[:40] for name in unknown)}")
    account = _account(core, body.get("account"))
    kind = body.get("kind", "classic")
    if kind not in KINDS:
        raise ControlError("kind must be classic or scoped.")
    urls = body.get("redirect_urls")
    if not isinstance(urls, list) or not 1 <= len(urls) <= MAX_REDIRECT_URLS:
        raise ControlError(f"redirect_urls must be a list of 1 to {MAX_REDIRECT_URLS} URLs.")
    confidential = body.get("confidential", True)
    reuse = body.get("revoke_on_refresh_reuse", True)
    if not isinstance(confidential, bool) or not isinstance(reuse, bool):
        raise ControlError("confidential and revoke_on_refresh_reuse must be true or false.")
    lifetimes: dict[str, int] = dict(DEFAULT_LIFETIMES[kind])
    lifetimes.update({name: lifetime(name, body[name]) for name in LIFETIME_FIELDS if name in body})
    app = OAuthApp(
        client_id=new_client_id(),
        client_secret=secrets.token_urlsafe(32) if confidential else None,
        account_id=account,
        name=_name(body.get("name"), "The app name"),
        kind=kind,
        redirect_urls=tuple(redirect_url(u) for u in urls),
        scopes=_scopes(kind, body.get("scopes")),
        revoke_on_refresh_reuse=reuse,
        **lifetimes,
    )
    with core.registry.lock:
        core.registry.apps[app.client_id] = app
    return app


def update_app(core: Core, client_id: str, body: Mapping[str, Any]) -> OAuthApp:
    """Change an app's lifetimes (or its refresh-reuse rule); tokens already issued keep theirs."""
    unknown = set(body) - {"revoke_on_refresh_reuse", *LIFETIME_FIELDS}
    if unknown:
        raise ControlError(f"Unknown fields: {sorted(name[:40] for name in unknown)}")
    with core.registry.lock:
        app = core.registry.apps.get(client_id)
        if app is None:
            raise ControlError("No such app.", status=404)
        changes = {name: lifetime(name, body[name]) for name in LIFETIME_FIELDS if name in body}
        if "revoke_on_refresh_reuse" in body:
            if not isinstance(body["revoke_on_refresh_reuse"], bool):
                raise ControlError("revoke_on_refresh_reuse must be true or false.")
            app.revoke_on_refresh_reuse = body["revoke_on_refresh_reuse"]
        for name, value in changes.items():
            setattr(app, name, value)
        return app


def _email(value: object) -> str:
    if not isinstance(value, str) or not 3 <= len(value) <= MAX_EMAIL or value.count("@") != 1:
        raise ControlError("email must be an address such as alex@acme.example.")
    if any(not ch.isprintable() or ch.isspace() for ch in value):
        raise ControlError("email cannot contain spaces or control characters.")
    return value


def role(value: object) -> str:
    if not isinstance(value, str) or value not in ROLES:
        raise ControlError(f"role must be one of: {', '.join(ROLES)}.")
    return value


def _user_id(core: Core, value: object) -> str:
    """A new user's id: ``value`` if given (the sandbox's own responder id, say), else a fresh one."""
    if value is None:
        return new_id()
    if not isinstance(value, str) or _USER_ID.fullmatch(value) is None:
        raise ControlError("id must be 1 to 20 upper-case letters and digits, such as PXYZ123.")
    if value in core.registry.users:
        raise ControlError("A user with this id exists already.", status=409)
    return value


def add_user(core: Core, body: Mapping[str, Any]) -> UserInfo:
    """Add a user with a role to an account (with ``id``, under that id)."""
    unknown = set(body) - {"account", "name", "email", "role", "id"}
    if unknown:
        raise ControlError(f"Unknown fields: {sorted(name[:40] for name in unknown)}")
    with core.registry.lock:
        return _add_user(core, body)


def _add_user(core: Core, body: Mapping[str, Any]) -> UserInfo:
    user = IdentityUser(
        id=_user_id(core, body.get("id")),
        account_id=_account(core, body.get("account")),
        name=_name(body.get("name"), "The user name"),
        email=_email(body.get("email")),
        role=role(body.get("role", "responder")),
    )
    core.registry.users[user.id] = user
    return info(user)


def info(user: IdentityUser) -> UserInfo:
    return UserInfo(id=user.id, account_id=user.account_id, name=user.name, email=user.email, role=user.role)


def users_of(core: Core, account_id: str | None = None) -> list[UserInfo]:
    with core.registry.lock:
        users: Iterable[IdentityUser] = core.registry.users.values()
        return [info(u) for u in users if account_id is None or u.account_id == account_id]
