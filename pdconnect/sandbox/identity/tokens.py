"""``POST /oauth/token``: the authorization-code, refresh-token and client-credentials grants.

As PagerDuty documents them (``06-OAuth-Functionality.md``; pagerduty-oauth.md section 2) and
RFC 6749 requires: the client authenticates with its secret in the form or with HTTP Basic
(never both); a code is valid :attr:`~pdconnect.sandbox.identity.model.OAuthApp.code_seconds`
(30 by default) and once, and a second use revokes what the first one issued (RFC 6749 10.5);
``redirect_uri`` must be the authorize request's; PKCE is S256 and required except for a
confidential Classic client that sent no challenge; refresh tokens rotate. Refusals are
:class:`~pdconnect.sandbox.identity.errors.OAuthError`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any
from urllib.parse import unquote_plus

from pdconnect.sandbox.identity import pkce
from pdconnect.sandbox.identity import scopes as scope_rules
from pdconnect.sandbox.identity.core import Core, new_delegation_id
from pdconnect.sandbox.identity.errors import OAuthError
from pdconnect.sandbox.identity.model import Authorization, OAuthApp

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")
_BAD_CLIENT = "Client authentication failed."


def _basic(header: str | None) -> tuple[str, str] | None:
    """The client id and secret of an HTTP Basic ``Authorization`` header (RFC 6749 2.3.1)."""
    if header is None:
        return None
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic":
        raise OAuthError("invalid_client", "The Authorization header must hold HTTP Basic client credentials.")
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        client_id, colon, secret = decoded.partition(":")
        if not colon:
            raise ValueError("no colon")
        # RFC 6749 2.3.1: both halves are form-encoded before they are joined.
        return unquote_plus(client_id, errors="strict"), unquote_plus(secret, errors="strict")
    except (binascii.Error, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise OAuthError("invalid_client", "The HTTP Basic credentials are malformed.") from exc


def authenticate(core: Core, form: dict[str, str], header: str | None) -> OAuthApp:
    """The app the request authenticates as; :class:`OAuthError` ``invalid_client`` (401) if none."""
    basic = _basic(header)
    client_id, secret = form.get("client_id"), form.get("client_secret")
    if basic is not None:
        if secret is not None:
            raise OAuthError(
                "invalid_request", "Use one client authentication method: HTTP Basic or client_secret, not both."
            )
        if client_id is not None and client_id != basic[0]:
            raise OAuthError("invalid_client", "client_id differs from the one in the Authorization header.")
        client_id, secret = basic
    if not client_id:
        raise OAuthError("invalid_client", f"{_BAD_CLIENT} No client_id was sent.")
    app = core.registry.apps.get(client_id)
    if app is None:
        raise OAuthError("invalid_client", _BAD_CLIENT)
    if app.client_secret is None:
        if secret:
            raise OAuthError("invalid_client", f"{_BAD_CLIENT} This is a public client: it has no secret.")
        return app
    if not secret:
        raise OAuthError("invalid_client", f"{_BAD_CLIENT} This client must send its client_secret.")
    if not hmac.compare_digest(secret.encode("utf-8"), app.client_secret.encode("utf-8")):
        raise OAuthError("invalid_client", _BAD_CLIENT)
    return app


def exchange(core: Core, form: dict[str, str], header: str | None) -> dict[str, Any]:
    """The token answer to a token request's ``form``, or :class:`OAuthError`."""
    with core.registry.lock:
        app = authenticate(core, form, header)
        grant_type = form.get("grant_type")
        if grant_type is None:
            raise OAuthError("invalid_request", "grant_type is missing.")
        if grant_type == "authorization_code":
            return _authorization_code(core, app, form)
        if grant_type == "refresh_token":
            return _refresh(core, app, form)
        if grant_type == "client_credentials":
            return _client_credentials(core, app, form)
        raise OAuthError("unsupported_grant_type", f"grant_type must be one of: {', '.join(GRANT_TYPES)}.")


def _authorization_code(core: Core, app: OAuthApp, form: dict[str, str]) -> dict[str, Any]:
    registry = core.registry
    value = form.get("code")
    if value is None:
        raise OAuthError("invalid_request", "code is missing.")
    code = registry.codes.get(value)
    if code is None or code.client_id != app.client_id:
        # Another app's code is left alone: its own client may still redeem it.
        raise OAuthError("invalid_grant", "The code is unknown, expired or was issued to another client.")
    if code.used:
        if code.delegation_id is not None and code.delegation_id in registry.authorizations:
            registry.authorizations[code.delegation_id].revoked = True
        raise OAuthError("invalid_grant", "The code was already used; the tokens issued from it are revoked.")
    code.used = True  # any attempt by its own client spends it, so a verifier cannot be guessed
    verifier = form.get("code_verifier")
    if core.clock() >= code.expires_at:
        raise OAuthError("invalid_grant", "The code has expired.")
    if form.get("redirect_uri") != code.redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri does not match the one of the authorize request.")
    if code.challenge is not None:
        if verifier is None:
            raise OAuthError("invalid_grant", "code_verifier is missing (the authorize request sent a challenge).")
        if not pkce.matches(verifier, code.challenge):
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge.")
    elif verifier is not None:
        # OAuth 2.1 4.1.3: a verifier without a challenge is a downgrade attempt.
        raise OAuthError("invalid_grant", "code_verifier was sent but the authorize request had no code_challenge.")
    if code.user_id not in registry.users or core.accounts(code.account_id) is None:
        raise OAuthError("invalid_grant", "The user or account that approved the code is gone.")
    authorization = Authorization(
        delegation_id=new_delegation_id(),
        client_id=app.client_id,
        account_id=code.account_id,
        user_id=code.user_id,
        scopes=code.scopes,
        created_at=core.clock(),
        nonce=code.nonce,
    )
    registry.authorizations[authorization.delegation_id] = authorization
    code.delegation_id = authorization.delegation_id
    return core.issue(app, authorization, access_seconds=app.access_token_seconds, refresh=True, id_token=True)


def _refresh(core: Core, app: OAuthApp, form: dict[str, str]) -> dict[str, Any]:
    registry = core.registry
    value = form.get("refresh_token")
    if value is None:
        raise OAuthError("invalid_request", "refresh_token is missing.")
    token = registry.tokens.get(value)
    authorization = registry.authorizations.get(token.delegation_id) if token is not None else None
    if token is None or token.kind != "refresh" or authorization is None or authorization.client_id != app.client_id:
        raise OAuthError("invalid_grant", "The refresh token is unknown or was issued to another client.")
    if token.used:
        # UNCONFIRMED: whether PagerDuty revokes the authorisation on reuse (the stricter choice,
        # RFC 9700 4.14.2); the app's revoke_on_refresh_reuse turns it off.
        if app.revoke_on_refresh_reuse:
            authorization.revoked = True
        raise OAuthError("invalid_grant", "The refresh token was already used (tokens rotate on refresh).")
    if authorization.revoked:
        raise OAuthError("invalid_grant", "The authorization was revoked.")
    if core.clock() >= token.expires_at:
        raise OAuthError("invalid_grant", "The refresh token has expired.")
    if authorization.user_id is None or authorization.user_id not in registry.users:
        raise OAuthError("invalid_grant", "The user who authorized the app is gone.")
    requested = form.get("scope")
    if requested is not None:
        tokens = scope_rules.split(requested)
        if tokens is None or not set(tokens) <= authorization.scopes:
            raise OAuthError("invalid_scope", "A refresh may only narrow the scopes granted.")
        authorization.scopes = frozenset(tokens) | {scope_rules.OPENID}
    token.used = True
    return core.issue(app, authorization, access_seconds=app.access_token_seconds, refresh=True, id_token=True)


def _client_credentials(core: Core, app: OAuthApp, form: dict[str, str]) -> dict[str, Any]:
    if app.kind != "scoped":
        raise OAuthError("unauthorized_client", "Only Scoped OAuth apps can get an app token.")
    if not app.confidential:
        raise OAuthError("unauthorized_client", "Only a confidential client can get an app token.")
    tokens = scope_rules.split(form.get("scope"))
    if tokens is None:
        raise OAuthError("invalid_scope", "scope is not a space-separated list of scopes.")
    targets = [t for t in tokens if t.startswith("as_account-")]
    if len(targets) != 1:
        raise OAuthError("invalid_scope", "scope must name exactly one as_account-{us|eu}.{subdomain}.")
    match = scope_rules.AS_ACCOUNT.fullmatch(targets[0])
    account = core.accounts(app.account_id)
    # UNCONFIRMED: which error PagerDuty answers for another account; invalid_scope is chosen.
    if match is None or account is None or match.groups() != (account.region, account.id):
        raise OAuthError("invalid_scope", "An app token acts only on the account that registered the app.")
    resources = set(tokens) - {targets[0], scope_rules.OPENID}
    if not resources <= app.scopes:
        raise OAuthError("invalid_scope", "scope names a scope this app is not registered for.")
    authorization = Authorization(
        delegation_id=new_delegation_id(),
        client_id=app.client_id,
        account_id=app.account_id,
        user_id=None,
        scopes=frozenset(tokens),
        created_at=core.clock(),
    )
    core.registry.authorizations[authorization.delegation_id] = authorization
    return core.issue(app, authorization, access_seconds=app.app_token_seconds, refresh=False, id_token=False)
