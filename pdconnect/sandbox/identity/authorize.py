"""The authorize request: reading its parameters, the sign-in and the consent's CSRF token.

Order of checks, as RFC 6749 4.1.2.1 requires: an unknown ``client_id`` or a ``redirect_uri``
the app did not register (compared exactly) is an error *page*, never a redirect, since the
sandbox cannot know the redirect is the client's; every later problem (``response_type``,
PKCE, a repeated parameter) is sent back to the client as ``?error=...&state=...``.

A sign-in is a signed, timestamped cookie naming the user and a random nonce drawn at sign-in;
the consent form carries a token signed over that nonce and the request's parameters, so a
page that is not the sandbox's own cannot approve for the user (a cross-site request
forgery), and a token from one sign-in or one request does not work for another.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer

from pdconnect.sandbox.identity import pkce
from pdconnect.sandbox.identity import scopes as scope_rules
from pdconnect.sandbox.identity.core import Core
from pdconnect.sandbox.identity.errors import AuthorizePageError
from pdconnect.sandbox.identity.model import IdentityUser, OAuthApp

SIGNIN_COOKIE = "pdsandbox_oauth"
SIGNIN_SALT = "pdconnect.sandbox.identity.signin"
CONSENT_SALT = "pdconnect.sandbox.identity.consent"
#: A sign-in lasts as long as the sandbox's own (12 hours); a consent page stays usable an hour.
SIGNIN_MAX_AGE = 12 * 3600
CONSENT_MAX_AGE = 3600
PARAMS = (
    "client_id",
    "redirect_uri",
    "response_type",
    "scope",
    "code_challenge",
    "code_challenge_method",
    "state",
    "nonce",
)
MAX_STATE = 1024
MAX_NONCE = 255


class RedirectError(Exception):
    """A bad authorize request whose client is known: answered by redirecting with ``error``."""

    def __init__(self, request: AuthorizeRequest, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.request = request
        self.error = error
        self.description = description


@dataclass(frozen=True)
class AuthorizeRequest:
    """An authorize request whose client and ``redirect_uri`` are known to be the app's."""

    app: OAuthApp
    redirect_uri: str
    scope: str | None = None
    challenge: str | None = None
    state: str | None = None
    nonce: str | None = None

    def carry(self) -> dict[str, str | None]:
        """The parameters as the sandbox's forms carry them from page to page."""
        return {
            "client_id": self.app.client_id,
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
            "scope": self.scope,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256" if self.challenge is not None else None,
            "state": self.state,
            "nonce": self.nonce,
        }

    def fingerprint(self) -> str:
        """A digest of every parameter, so a consent token works for this very request only."""
        return hashlib.sha256(json.dumps(self.carry(), sort_keys=True).encode("utf-8")).hexdigest()

    def granted(self) -> frozenset[str]:
        return scope_rules.granted(self.scope, self.app.scopes)


def read(core: Core, params: Mapping[str, Sequence[str]]) -> AuthorizeRequest:
    """The authorize request in ``params`` (each name with all its values, blank ones included).

    Raises :class:`AuthorizePageError` when the browser must not be sent back, and
    :class:`RedirectError` for a request the client should hear about.
    """

    def one(name: str) -> str | None:
        values = params.get(name, ())
        if len(values) > 1:
            return None
        return values[0] if values and values[0] != "" else None

    for name in ("client_id", "redirect_uri"):
        if len(params.get(name, ())) > 1:
            raise AuthorizePageError(f"The {name} parameter is given more than once.")
    client_id, redirect_uri = one("client_id"), one("redirect_uri")
    app = core.registry.apps.get(client_id) if client_id is not None else None
    if app is None:
        raise AuthorizePageError("Unknown client: no OAuth app has this client_id.")
    if redirect_uri is None or redirect_uri not in app.redirect_urls:
        raise AuthorizePageError("The redirect_uri does not match a redirect URL registered for this app.")
    state = one("state")
    state_ok = state is None or (len(state) <= MAX_STATE and state.isprintable())
    bare = AuthorizeRequest(app=app, redirect_uri=redirect_uri, state=state if state_ok else None)
    repeated = [name for name in PARAMS if len(params.get(name, ())) > 1]
    if repeated:
        raise RedirectError(bare, "invalid_request", f"The {repeated[0]} parameter is given more than once.")
    if not state_ok:
        raise RedirectError(bare, "invalid_request", f"state must be at most {MAX_STATE} printable characters.")
    response_type = one("response_type")
    if response_type is None:
        raise RedirectError(bare, "invalid_request", "response_type is missing.")
    if response_type != "code":
        raise RedirectError(bare, "unsupported_response_type", "response_type must be code.")
    challenge, method = one("code_challenge"), one("code_challenge_method")
    if method is not None and method != "S256":
        raise RedirectError(bare, "invalid_request", "code_challenge_method must be S256 (plain is refused).")
    if challenge is None and method is not None:
        raise RedirectError(bare, "invalid_request", "code_challenge_method was sent without a code_challenge.")
    if challenge is not None:
        if method is None:
            raise RedirectError(bare, "invalid_request", "code_challenge_method=S256 is required with a challenge.")
        if not pkce.is_challenge(challenge):
            raise RedirectError(bare, "invalid_request", "code_challenge must be 43 base64url characters.")
    elif app.pkce_required:
        raise RedirectError(bare, "invalid_request", "This app must use PKCE: send code_challenge (S256).")
    nonce = one("nonce")
    if nonce is not None and (len(nonce) > MAX_NONCE or not nonce.isprintable()):
        raise RedirectError(bare, "invalid_request", f"nonce must be at most {MAX_NONCE} printable characters.")
    return AuthorizeRequest(
        app=app, redirect_uri=redirect_uri, scope=one("scope"), challenge=challenge, state=state, nonce=nonce
    )


class Sessions:
    """Sign-in cookies and consent tokens, signed with a key drawn per sandbox."""

    def __init__(self, secret: bytes | None = None) -> None:
        key = secret if secret is not None else secrets.token_bytes(32)
        self._signin = URLSafeTimedSerializer(key, salt=SIGNIN_SALT)
        self._consent = URLSafeTimedSerializer(key, salt=CONSENT_SALT)

    def signin_cookie(self, user_id: str) -> str:
        """A new sign-in for ``user_id``, with a fresh nonce."""
        return self._signin.dumps({"u": user_id, "n": secrets.token_urlsafe(16)})

    def signed_in(self, core: Core, cookie: str | None) -> tuple[IdentityUser, str] | None:
        """The user and nonce of a sign-in cookie; ``None`` if missing, forged, expired or the user is gone."""
        if not cookie:
            return None
        try:
            data: Any = self._signin.loads(cookie, max_age=SIGNIN_MAX_AGE)
        except BadSignature:  # SignatureExpired is one
            return None
        if not isinstance(data, dict) or not isinstance(data.get("u"), str) or not isinstance(data.get("n"), str):
            return None
        user = core.registry.users.get(data["u"])
        if user is None or core.accounts(user.account_id) is None:
            return None
        return user, data["n"]

    def consent_token(self, nonce: str, request: AuthorizeRequest) -> str:
        return self._consent.dumps({"n": nonce, "f": request.fingerprint()})

    def consent_ok(self, token: str | None, nonce: str, request: AuthorizeRequest) -> bool:
        """True if ``token`` was made by :meth:`consent_token` for this sign-in and request, within the hour."""
        if not token:
            return False
        try:
            data: Any = self._consent.loads(token, max_age=CONSENT_MAX_AGE)
        except BadSignature:
            return False
        return isinstance(data, dict) and data.get("n") == nonce and data.get("f") == request.fingerprint()
