"""Who a REST request acts for: one account, through an API key or an OAuth Bearer token.

Every REST request to the sandbox is authorised against exactly one account, as at
PagerDuty (``pagerduty-oauth.md`` sections 1, 2.6 and 5):

- ``Authorization: Token token=<key>``: a REST API key belongs to one account; a read-only
  key may only GET (PagerDuty documents a 403 for anything else).
- ``Authorization: Bearer <token>``: an OAuth token, resolved by the identity server into a
  grant of one account with its scopes, user role and expiry. Classic tokens carry ``read``
  (GET only) or ``write``; scoped tokens need ``<resource>.read`` or ``<resource>.write``.
  Changing webhook subscriptions also needs the user to be a manager, admin or owner.
- Missing, malformed, unknown or expired credentials, and credentials of an account in the
  other region, are a 401: PagerDuty's regions are separate systems, so an EU account's
  credentials do not exist at the US base (and the reverse).

Errors are :class:`RestError` and answer PagerDuty's REST error shape,
``{"error": {"message": ..., "code": ...}}``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pdconnect.sandbox.model import Account, ApiKey
from pdconnect.sandbox.store import SandboxStore

if TYPE_CHECKING:  # the identity package imports the engine, which imports this package's modules
    from pdconnect.sandbox.identity import Identity

# UNCONFIRMED: the codes come from PagerDuty's "Errors" page of the REST API reference as
# remembered, not from a source stored here; the statuses are documented.
CODE_INVALID_INPUT = 2001
CODE_AUTHENTICATION = 2006
CODE_ACCESS_DENIED = 2010
CODE_RATE_LIMIT = 2020
CODE_NOT_FOUND = 2100
#: The roles that may create, change or delete webhook subscriptions (``pagerduty-oauth.md`` 2.6).
SUBSCRIPTION_ROLES = frozenset({"manager", "admin", "owner"})
#: The most characters of a credential the sandbox reads; a longer one is malformed.
MAX_CREDENTIAL = 512
#: The media types a REST client may ask for: PagerDuty's versioned one, and plain JSON.
ACCEPTED_TYPES = ("application/vnd.pagerduty+json", "application/json", "*/*", "application/*")


class RestError(Exception):
    """A refused REST request: the HTTP ``status``, PagerDuty's error ``code`` and a ``message``.

    The message never holds the credential that was sent.
    """

    def __init__(self, status: int, message: str, *, code: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "code": self.code}}


def unauthorized(message: str = "Authentication failed") -> RestError:
    return RestError(401, message, code=CODE_AUTHENTICATION)


def forbidden(message: str) -> RestError:
    return RestError(403, message, code=CODE_ACCESS_DENIED)


def not_found() -> RestError:
    return RestError(404, "Not Found", code=CODE_NOT_FOUND)


@dataclass(frozen=True)
class Caller:
    """The account a REST request acts for, and what it may do there.

    ``kind`` is ``api_key``, ``classic`` or ``scoped``; ``role`` is the OAuth user's role
    (``None`` for API keys and app tokens, which act for the account itself).
    """

    account: str
    kind: str
    read_only: bool = False
    scopes: frozenset[str] = frozenset()
    role: str | None = None
    user_id: str | None = None

    def require(self, resource: str, *, write: bool) -> None:
        """Refuse (403) unless this caller may read (or, with ``write``, change) ``resource``.

        The message says what is missing: the key's write access, the scope, or the role.
        """
        if self.kind == "api_key":
            if write and self.read_only:
                raise forbidden("Access Denied: a read-only API key can only make GET requests.")
            return
        if self.kind == "classic":
            needed = "write" if write else "read"
            if "write" not in self.scopes and needed not in self.scopes:
                raise forbidden(f"Access Denied: this token lacks the {needed!r} scope.")
        else:
            # UNCONFIRMED: whether a scoped ``.write`` implies ``.read``; the stricter reading
            # is that a GET needs ``.read`` itself.
            needed = f"{resource}.{'write' if write else 'read'}"
            if needed not in self.scopes:
                raise forbidden(f"Access Denied: this token lacks the {needed!r} scope.")
        subscription_change = write and resource == "webhook_subscriptions"
        if subscription_change and self.user_id is not None and self.role not in SUBSCRIPTION_ROLES:
            raise forbidden(
                f"Access Denied: the user's role ({self.role or 'none'}) is insufficient; changing webhook "
                "subscriptions needs a manager, admin or owner."
            )


def credentials(header: str | None) -> tuple[str, str]:
    """``(scheme, credential)`` from an ``Authorization`` header, or a 401 if it is missing or malformed.

    ``scheme`` is ``token`` (``Token token=<key>``) or ``bearer`` (``Bearer <token>``).
    """
    if header is None or not header.strip():
        raise unauthorized("Authentication failed: send 'Authorization: Token token=<API key>' or a Bearer token.")
    if len(header) > MAX_CREDENTIAL or not header.isascii() or not header.isprintable():
        raise unauthorized()
    scheme, _, rest = header.strip().partition(" ")
    rest = rest.strip()
    if scheme.lower() == "token":
        name, sep, key = rest.partition("=")
        if name.lower() != "token" or not sep:
            raise unauthorized()
        value, kind = key.strip(), "token"
    elif scheme.lower() == "bearer":
        value, kind = rest, "bearer"
    else:
        raise unauthorized()
    if not value or any(ch.isspace() for ch in value):
        raise unauthorized()
    return kind, value


def _expired(expires_at: object, now: float) -> bool:
    if isinstance(expires_at, int | float) and not isinstance(expires_at, bool):
        return not math.isfinite(expires_at) or expires_at <= now
    timestamp = getattr(expires_at, "timestamp", None)
    return not callable(timestamp) or float(timestamp()) <= now


def authenticate(
    header: str | None,
    *,
    region: str,
    store: SandboxStore,
    identity: Identity,
    clock: Callable[[], float] = time.time,
) -> Caller:
    """The :class:`Caller` an ``Authorization`` header names at the ``region``'s base, or a 401."""
    kind, value = credentials(header)
    if kind == "token":
        with store.lock:
            key = store.get(ApiKey, value)
            account = store.get(Account, key.account) if key is not None else None
        if key is None or account is None or account.region != region:
            raise unauthorized()
        return Caller(account=account.id, kind="api_key", read_only=key.read_only)
    grant = identity.bearer(value)
    if grant is None or _expired(grant.expires_at, clock()):
        raise unauthorized()
    with store.lock:
        account = store.get(Account, grant.account_id)
    if account is None or account.region != region:
        raise unauthorized()
    return Caller(
        account=account.id,
        kind="scoped" if grant.kind == "scoped" else "classic",
        scopes=frozenset(grant.scopes),
        role=grant.role,
        user_id=grant.user_id,
    )


def check_accept(header: str | None) -> None:
    """Refuse (406) an ``Accept`` that allows neither PagerDuty's JSON type nor plain JSON.

    UNCONFIRMED: PagerDuty's answer to other media types; a missing ``Accept`` is taken.
    """
    if header is None or not header.strip():
        return
    for part in header.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in ACCEPTED_TYPES:
            return
    raise RestError(406, "Not Acceptable: ask for application/vnd.pagerduty+json;version=2", code=CODE_INVALID_INPUT)
