"""Every error the OAuth client raises on purpose.

All derive from :class:`OAuthError`, itself a :class:`~pdconnect.errors.PdConnectError`. A
cancelled or refused authorization is a normal outcome, to show the user, never a 500. The
state carried through the flow fails with pdconnect's :class:`~pdconnect.errors.StateError`
family, as the handshakes do. Messages never contain a token, a code, a verifier, a client
secret or a state.

:class:`CredentialNotFound` and :class:`NeedsReauthorization` are about a *stored* connection,
not a step of the protocol, so they are not :class:`OAuthError`: a vendor catches them around
REST calls (:mod:`pdconnect.rest.errors` re-exports them) to ask its user to connect again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from pdconnect.errors import PdConnectError

if TYPE_CHECKING:
    from pdconnect.oauth.credentials import Credential


class OAuthError(PdConnectError):
    """An OAuth step with PagerDuty could not be completed."""


class OAuthCancelled(OAuthError):
    """The user declined on PagerDuty's consent page (``error=access_denied`` on the callback)."""

    def __init__(self, description: str | None = None) -> None:
        self.description = description
        super().__init__("the PagerDuty authorization was cancelled")


class OAuthRefused(OAuthError):
    """PagerDuty answered with an OAuth error (RFC 6749 section 4.1.2.1 or 5.2).

    ``error`` is the error code (``invalid_grant``, ``invalid_client``, ...), ``description``
    PagerDuty's ``error_description`` when it sent one (cut to a line), and ``status`` the HTTP
    status of the token endpoint's answer, or ``None`` when the error came on the callback. A
    refresh that raises this with ``error == "invalid_grant"`` means the refresh token is dead:
    the user must authorize again.
    """

    def __init__(self, error: str, description: str | None = None, *, status: int | None = None) -> None:
        self.error = error
        self.description = description
        self.status = status
        detail = f": {description}" if description else ""
        super().__init__(f"PagerDuty refused the authorization ({error}){detail}")


class MissingScopes(OAuthError):
    """PagerDuty granted fewer scopes than the app needs.

    PagerDuty does not fail on a scope it will not grant: it silently grants less (often only
    ``openid``). ``missing`` holds the needed scopes that were not granted, ``granted`` what was.
    The tokens of such an authorization are dropped, not stored.
    """

    def __init__(self, *, missing: Iterable[str], granted: Iterable[str]) -> None:
        self.missing = frozenset(missing)
        self.granted = frozenset(granted)
        names = " ".join(sorted(self.missing))
        super().__init__(
            f"PagerDuty did not grant the scopes this app needs: {names} "
            "(ask the user to authorize again and approve them, or check the app's registered scopes)"
        )


class TokenEndpointError(OAuthError):
    """PagerDuty's token endpoint gave no usable answer: unreachable, 5xx or 429 to the end, or garbage.

    ``status`` is the last HTTP status, or ``None`` without an answer; ``retryable`` says
    whether trying again later may help (a network failure or a 5xx may, a malformed answer
    will probably not).
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class IdTokenInvalid(OAuthError):
    """The ID token did not verify: signature, algorithm, issuer, audience, lifetime or claims.

    ``reason`` says which check failed. An authorization whose ID token fails is refused: the
    account, the user and the region all come from that token.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"the PagerDuty ID token is not valid: {reason}")


class JwksUnavailable(IdTokenInvalid):
    """PagerDuty's signing keys (its JWKS document) could not be fetched or read."""


class CredentialNotFound(PdConnectError, LookupError):
    """The owner has no credential for this account (never connected, or disconnected)."""

    def __init__(self, owner_id: str, account_id: str) -> None:
        self.owner_id = owner_id
        self.account_id = account_id
        super().__init__("no PagerDuty connection for this account: connect PagerDuty first")


class NeedsReauthorization(PdConnectError):
    """The owner must authorize PagerDuty again: the tokens were revoked or expired for good.

    ``credential`` is the marked credential (its ``needs_reauthorization_reason`` says why).
    """

    def __init__(self, credential: Credential) -> None:
        self.credential = credential
        reason = credential.needs_reauthorization_reason or "no reason given"
        super().__init__(
            f"the PagerDuty connection to {credential.account.subdomain!r} needs to be authorized again ({reason})"
        )
