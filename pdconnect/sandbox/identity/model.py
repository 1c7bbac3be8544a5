"""The identity server's records: OAuth apps, users with roles, codes, authorisations and tokens.

Kept in memory (a sandbox restart forgets them, as it signs everyone out). Lifetimes default
to PagerDuty's documented ones per kind of app (``06-OAuth-Functionality.md``,
``02-Private-Apps.md``; pagerduty-oauth.md section 1) and can be shortened per app for tests.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

#: The roles a PagerDuty user can have, weakest first (the ones REST access depends on).
ROLES = ("observer", "responder", "manager", "admin", "owner")
#: Classic User OAuth ("read" / "write", case-sensitive) or Scoped OAuth (per-resource scopes).
KINDS = ("classic", "scoped")
CLASSIC_SCOPES = frozenset({"read", "write"})
#: What a Scoped app may ask for when its registration lists nothing.
DEFAULT_SCOPED_SCOPES = frozenset(
    {"services.read", "incidents.read", "webhook_subscriptions.read", "webhook_subscriptions.write"}
)
DAY = 86400
#: Per kind: access token, refresh token, the rolling window an authorisation lives for.
DEFAULT_LIFETIMES = {
    "classic": {"access_token_seconds": 30 * DAY, "refresh_token_seconds": 210 * DAY, "window_seconds": 3 * 365 * DAY},
    "scoped": {"access_token_seconds": DAY, "refresh_token_seconds": 30 * DAY, "window_seconds": 365 * DAY},
}
#: An app token (client credentials) lives a day and has no refresh token.
APP_TOKEN_SECONDS = DAY
#: "The authorization code is valid for 30 seconds" (06-OAuth-Functionality.md).
CODE_SECONDS = 30
#: How long a code is remembered after it expires, so a late replay is still recognised.
CODE_MEMORY = 3600
#: Expired codes and tokens are forgotten after this many new ones.
PRUNE_EVERY = 1000
#: Bounds for a configured lifetime: a second to ten years.
MAX_LIFETIME = 10 * 365 * DAY
LIFETIME_FIELDS = (
    "access_token_seconds",
    "refresh_token_seconds",
    "window_seconds",
    "app_token_seconds",
    "code_seconds",
)


@dataclass
class OAuthApp:
    """An OAuth app registered by one sandbox account.

    ``client_secret`` is ``None`` for a public client (one that cannot keep a secret: PKCE
    is then required). ``redirect_urls`` are compared with ``redirect_uri`` exactly.
    """

    client_id: str
    client_secret: str | None
    account_id: str
    name: str
    kind: str
    redirect_urls: tuple[str, ...]
    scopes: frozenset[str]
    access_token_seconds: int
    refresh_token_seconds: int
    window_seconds: int
    app_token_seconds: int = APP_TOKEN_SECONDS
    code_seconds: int = CODE_SECONDS
    #: Whether presenting a rotated refresh token again revokes the whole authorisation.
    revoke_on_refresh_reuse: bool = True

    def __repr__(self) -> str:
        # The secret never appears in a repr, a log line or an error message.
        return f"OAuthApp(client_id={self.client_id!r}, account_id={self.account_id!r}, kind={self.kind!r})"

    @property
    def confidential(self) -> bool:
        return self.client_secret is not None

    @property
    def pkce_required(self) -> bool:
        """PKCE is optional only for a confidential Classic client (pagerduty-oauth.md section 1)."""
        return self.kind == "scoped" or not self.confidential

    def public(self) -> dict[str, object]:
        """The app as the control API lists it: everything but the secret."""
        return {
            "client_id": self.client_id,
            "account": self.account_id,
            "name": self.name,
            "kind": self.kind,
            "confidential": self.confidential,
            "redirect_urls": list(self.redirect_urls),
            "scopes": sorted(self.scopes),
            "revoke_on_refresh_reuse": self.revoke_on_refresh_reuse,
            **{name: getattr(self, name) for name in LIFETIME_FIELDS},
        }


@dataclass
class IdentityUser:
    """A user of one sandbox account, with the role PagerDuty would give them."""

    id: str
    account_id: str
    name: str
    email: str
    role: str


@dataclass
class Code:
    """An authorization code: one use, for one client and ``redirect_uri``, until ``expires_at``."""

    value: str
    client_id: str
    redirect_uri: str
    account_id: str
    user_id: str
    scopes: frozenset[str]
    challenge: str | None
    nonce: str | None
    expires_at: float
    used: bool = False
    #: The authorisation its redemption created: revoked if the code is presented again.
    delegation_id: str | None = None

    def __repr__(self) -> str:
        return f"Code(client_id={self.client_id!r}, user_id={self.user_id!r}, used={self.used})"


@dataclass
class Authorization:
    """One grant of an app by a user (or an app token): its tokens share ``delegation_id``."""

    delegation_id: str
    client_id: str
    account_id: str
    user_id: str | None
    scopes: frozenset[str]
    created_at: float
    nonce: str | None = None
    revoked: bool = False


@dataclass
class Token:
    """An access (``pdus+_0…``) or refresh (``pdus+_1…``) token of one authorisation."""

    value: str
    kind: str  # "access" | "refresh"
    delegation_id: str
    scopes: frozenset[str]
    expires_at: float
    used: bool = False  # a refresh token, once rotated

    def __repr__(self) -> str:
        return f"Token(kind={self.kind!r}, value='…{self.value[-4:]}', delegation_id={self.delegation_id!r})"


@dataclass(repr=False)
class Registry:
    """Everything the identity server knows, behind one lock (the sandbox serves many threads)."""

    apps: dict[str, OAuthApp] = field(default_factory=dict)
    users: dict[str, IdentityUser] = field(default_factory=dict)
    codes: dict[str, Code] = field(default_factory=dict)
    authorizations: dict[str, Authorization] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    issued: int = 0

    def __repr__(self) -> str:
        # Codes and tokens are the keys of their tables: a repr shows how many, never which.
        return (
            f"Registry(apps={len(self.apps)}, users={len(self.users)}, codes={len(self.codes)}, "
            f"authorizations={len(self.authorizations)}, tokens={len(self.tokens)})"
        )

    def count_issue(self, now: float) -> None:
        """Count one new code or token; every :data:`PRUNE_EVERY`, :meth:`prune`."""
        with self.lock:
            self.issued += 1
            if self.issued % PRUNE_EVERY == 0:
                self.prune(now)

    def clear(self) -> None:
        with self.lock:
            for table in (self.apps, self.users, self.codes, self.authorizations, self.tokens):
                table.clear()

    def revoke_app(self, client_id: str) -> int:
        """Revoke every authorisation and outstanding code of an app; how many authorisations."""
        with self.lock:
            count = 0
            for authorization in self.authorizations.values():
                if authorization.client_id == client_id and not authorization.revoked:
                    authorization.revoked = True
                    count += 1
            for value in [v for v, code in self.codes.items() if code.client_id == client_id]:
                del self.codes[value]
            return count

    def prune(self, now: float) -> None:
        """Forget tokens past their expiry, and codes an hour past theirs.

        Used codes are kept that long so that a late replay still revokes what the first use
        got (RFC 6749 10.5); an expired token reads the same as an unknown one.
        """
        with self.lock:
            for value in [v for v, code in self.codes.items() if now >= code.expires_at + CODE_MEMORY]:
                del self.codes[value]
            for value in [v for v, token in self.tokens.items() if now >= token.expires_at]:
                del self.tokens[value]
