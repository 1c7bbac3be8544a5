"""The sandbox's PagerDuty identity server: OAuth apps, users with roles, authorize, token, JWKS.

It stands in for ``identity.pagerduty.com`` as strictly as PagerDuty documents it
(``/work/shared/pagerduty-oauth.md`` has the facts and what is unconfirmed): an authorize page
where a user of one account approves or denies an app's scopes, a token endpoint for the
authorization-code (PKCE S256), refresh-token (rotating) and client-credentials grants, RS256
ID tokens with PagerDuty's claims, the JWKS and discovery documents, and a control API under
``/_sandbox/api/oauth/``. The sandbox application hands every request to :meth:`Identity.handle`
first and asks :meth:`Identity.bearer` what a REST request's ``Bearer`` token may do::

    identity = Identity(base_url=lambda: server.url, accounts=lookup)
    response = identity.handle(request)      # None: not an identity path
    grant = identity.bearer(token)           # None: unknown, expired or revoked
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from werkzeug.wrappers import Request, Response

from pdconnect.sandbox.identity import registration, routes
from pdconnect.sandbox.identity.authorize import Sessions
from pdconnect.sandbox.identity.core import DEFAULT_ISSUER, AccountInfo, Core, Grant, UserInfo
from pdconnect.sandbox.identity.model import LIFETIME_FIELDS, OAuthApp

__all__ = ["AccountInfo", "Grant", "Identity", "OAuthApp", "UserInfo"]


class Identity:
    """One sandbox's identity server; thread-safe; its state lives in memory.

    ``base_url`` gives the sandbox's own base URL (its port is known once it listens): the
    discovery document's URLs and a US account's REST base (the ID token's ``aud``) are on it,
    an EU account's under ``<base>/eu``. ``accounts`` looks an account up by subdomain.
    ``clock`` is injectable so tests can expire codes and tokens without sleeping.
    """

    def __init__(
        self,
        *,
        base_url: Callable[[], str],
        accounts: Callable[[str], AccountInfo | None],
        clock: Callable[[], float] = time.time,
        secret: bytes | None = None,
    ) -> None:
        self._core = Core(base_url=base_url, accounts=accounts, clock=clock)
        self._sessions = Sessions(secret)

    def __repr__(self) -> str:
        return f"Identity(apps={len(self._core.registry.apps)}, users={len(self._core.registry.users)})"

    @property
    def core(self) -> Core:
        """The records and keys behind the endpoints (for the sandbox's own tests and pages)."""
        return self._core

    def handle(self, request: Request) -> Response | None:
        """The answer to ``/oauth/*``, ``/global/oauth/anonymous/*`` and ``/_sandbox/api/oauth/*``;
        ``None`` for any other path. Never raises for a malformed request: that is a 4xx."""
        return routes.handle(self._core, self._sessions, request)

    def bearer(self, token: str) -> Grant | None:
        """What an access token may do now; ``None`` if it is unknown, expired or revoked.

        The role is the user's role at this moment, so demoting a user takes effect at once.
        """
        core = self._core
        with core.registry.lock:
            found = core.registry.tokens.get(token) if isinstance(token, str) else None
            if found is None or found.kind != "access" or core.clock() >= found.expires_at:
                return None
            authorization = core.registry.authorizations.get(found.delegation_id)
            if authorization is None or authorization.revoked:
                return None
            app = core.registry.apps.get(authorization.client_id)
            if app is None or core.accounts(authorization.account_id) is None:
                return None
            role = None
            if authorization.user_id is not None:
                user = core.registry.users.get(authorization.user_id)
                if user is None:
                    return None
                role = user.role
            return Grant(
                account_id=authorization.account_id,
                user_id=authorization.user_id,
                role=role,
                scopes=found.scopes,
                kind=app.kind,
                expires_at=found.expires_at,
            )

    def users(self, account_id: str) -> list[UserInfo]:
        """The users of an account, in the order they were added."""
        return registration.users_of(self._core, account_id)

    def role_of(self, account_id: str, user_id: str) -> str | None:
        """The role of a user of ``account_id``; ``None`` if there is no such user in that account."""
        user = self._core.registry.users.get(user_id)
        return user.role if user is not None and user.account_id == account_id else None

    def add_user(
        self, account_id: str, *, name: str, email: str, role: str = "responder", user_id: str | None = None
    ) -> UserInfo:
        """Add a user with a role to an existing account (as ``POST /_sandbox/api/oauth/users``).

        ``user_id`` reuses an id the sandbox already gave the person (a seeded responder), so
        :meth:`role_of` and the ID token's ``user_id`` name the same user the incident pages show.
        """
        body = {"account": account_id, "name": name, "email": email, "role": role, "id": user_id}
        return registration.add_user(self._core, body)

    def register_app(
        self,
        account_id: str,
        *,
        name: str,
        redirect_urls: Iterable[str],
        kind: str = "classic",
        scopes: Iterable[str] | None = None,
        confidential: bool = True,
        **lifetimes: int,
    ) -> OAuthApp:
        """Register an OAuth app for an account (as ``POST /_sandbox/api/oauth/apps``).

        ``lifetimes`` are any of ``access_token_seconds``, ``refresh_token_seconds``,
        ``window_seconds``, ``app_token_seconds`` and ``code_seconds``. The answer holds
        the client secret; keep it, it is not shown again.
        """
        unknown = set(lifetimes) - set(LIFETIME_FIELDS)
        if unknown:
            raise TypeError(f"unknown lifetimes: {sorted(unknown)}")
        body: dict[str, object] = {
            "account": account_id,
            "name": name,
            "redirect_urls": list(redirect_urls),
            "kind": kind,
            "confidential": confidential,
            **lifetimes,
        }
        if scopes is not None:
            body["scopes"] = list(scopes)
        return registration.register_app(self._core, body)

    def reset(self) -> None:
        """Forget every app, user, code and token, and go back to the default issuer.

        The signing keys stay, so a JWKS a client cached before the reset still verifies.
        """
        self._core.registry.clear()
        self._core.issuer = DEFAULT_ISSUER
