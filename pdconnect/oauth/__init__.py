"""OAuth 2.0 with PagerDuty: per-account user tokens through the authorization-code flow with PKCE.

::

    oauth = PagerDutyOAuth(app, secret=STATE_SECRET, nonces=SqlNonceStore(engine))
    start = oauth.authorize(owner_id=user.id, session_binding=session["binding"])
    # redirect the browser to start.url; on the callback:
    done = oauth.finish(request.query_string, owner_id=user.id, session_binding=session["binding"])
    done.account.rest_base_url, done.tokens.access_token  # the account's REST API, and its token

See ``docs/oauth.md``.
"""

from __future__ import annotations

from typing import Any

from pdconnect.oauth.app import OAuthApp, RegionName
from pdconnect.oauth.authorize import AuthorizeRequest
from pdconnect.oauth.cipher import TokenCipher, TokenDecryptionError
from pdconnect.oauth.client import Authorized, PagerDutyOAuth
from pdconnect.oauth.credentials import Credential, CredentialStore, MemoryCredentialStore, SqlCredentialStore
from pdconnect.oauth.errors import (
    CredentialNotFound,
    IdTokenInvalid,
    JwksUnavailable,
    MissingScopes,
    NeedsReauthorization,
    OAuthCancelled,
    OAuthError,
    OAuthRefused,
    TokenEndpointError,
)
from pdconnect.oauth.id_token import AccountIdentity
from pdconnect.oauth.refresh import TokenRefresher
from pdconnect.oauth.tokens import TokenSet

__all__ = [
    "AccountConnections",
    "AccountIdentity",
    "AuthorizeRequest",
    "Authorized",
    "Credential",
    "CredentialNotFound",
    "CredentialStore",
    "Disconnected",
    "IdTokenInvalid",
    "InstallAccountMismatch",
    "JwksUnavailable",
    "MemoryCredentialStore",
    "MissingScopes",
    "NeedsReauthorization",
    "OAuthApp",
    "OAuthCancelled",
    "OAuthError",
    "OAuthRefused",
    "PagerDutyOAuth",
    "RegionName",
    "SqlCredentialStore",
    "TokenCipher",
    "TokenDecryptionError",
    "TokenEndpointError",
    "TokenRefresher",
    "TokenSet",
    "WebhookSetupFailed",
]

#: Names of :mod:`pdconnect.oauth.connection`, imported on first use: that module builds on
#: :mod:`pdconnect.rest`, which itself imports from this package.
_CONNECTION_NAMES = frozenset({"AccountConnections", "Disconnected", "InstallAccountMismatch", "WebhookSetupFailed"})


def __getattr__(name: str) -> Any:
    if name in _CONNECTION_NAMES:
        from pdconnect.oauth import connection

        return getattr(connection, name)
    raise AttributeError(f"module 'pdconnect.oauth' has no attribute {name!r}")
