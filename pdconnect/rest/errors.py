"""Every error the per-account REST client raises on purpose.

All derive from :class:`RestError`, a :class:`~pdconnect.errors.PdConnectError`. Messages
name the request (method and path, never the host's query or a token) and carry what
PagerDuty said, cut to one line; they never contain a token.
:class:`~pdconnect.oauth.errors.NeedsReauthorization` and
:class:`~pdconnect.oauth.errors.CredentialNotFound` come from the credential layer and are
re-exported here, as a vendor catches them around REST calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pdconnect.errors import PdConnectError
from pdconnect.oauth.errors import CredentialNotFound, NeedsReauthorization

__all__ = [
    "CredentialNotFound",
    "Forbidden",
    "NeedsReauthorization",
    "NotFound",
    "RestError",
    "RestUnavailable",
    "UnsafeRestURL",
]

#: What PagerDuty requires to manage webhook subscriptions, for the 403 message.
ROLE_HINT = "needs a Manager, Admin or Owner role"


class RestError(PdConnectError):
    """PagerDuty's REST API refused a request, or its answer could not be read.

    ``status`` is the HTTP status (``None`` without an answer), ``method`` and ``path`` the
    request, ``pagerduty_message`` and ``errors`` what PagerDuty's error object said.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        method: str,
        path: str,
        pagerduty_message: str | None = None,
        errors: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.method = method
        self.path = path
        self.pagerduty_message = pagerduty_message
        self.errors = tuple(errors)


class RestUnavailable(RestError):
    """No usable answer within the retry policy: 429, 5xx or network failures to the end."""


class NotFound(RestError):
    """404: the resource does not exist in this account (or this token may not see it)."""


class Forbidden(RestError):
    """403: the token lacks the scope, or its user lacks the role, the request needs.

    ``missing`` is ``"scope"`` (``needed_scope`` names it; the owner must authorize again with
    it) or ``"role"`` (the user who connected must be given a higher role in PagerDuty, or
    someone with one must connect).
    """

    def __init__(
        self,
        *,
        missing: Literal["scope", "role"],
        needed_scope: str | None,
        method: str,
        path: str,
        pagerduty_message: str | None,
        errors: Sequence[str] = (),
    ) -> None:
        said = f" (PagerDuty said: {pagerduty_message})" if pagerduty_message else ""
        if missing == "scope":
            need = f" {needed_scope!r}" if needed_scope else ""
            message = f"PagerDuty refused {method} {path}: the connection lacks the scope{need}{said}"
        else:
            message = (
                f"PagerDuty refused {method} {path}: the user who connected PagerDuty lacks the role for it "
                f"(it {ROLE_HINT}){said}"
            )
        super().__init__(
            message, status=403, method=method, path=path, pagerduty_message=pagerduty_message, errors=errors
        )
        self.missing = missing
        self.needed_scope = needed_scope


class UnsafeRestURL(RestError):
    """A URL to request is not on the account's REST base (a ``next`` link to another host)."""
