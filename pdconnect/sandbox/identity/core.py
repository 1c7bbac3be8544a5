"""What every part of the identity server shares: its records, keys, settings and the account lookup.

Also the public records of the contract with the rest of the sandbox (:class:`AccountInfo`,
:class:`UserInfo`, :class:`Grant`), and the token answer itself (:meth:`Core.issue`), since the
three grants end the same way.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pdconnect.sandbox.identity import scopes as scope_rules
from pdconnect.sandbox.identity.keys import SigningKeys
from pdconnect.sandbox.identity.model import Authorization, OAuthApp, Registry, Token

#: The issuer PagerDuty's OpenID document names (``07-PagerDuty-OpenId-Token.md``).
DEFAULT_ISSUER = "https://identity.pagerduty.com/global/oauth/anonymous"
#: The issuer the same document's sample tokens carry (UNCONFIRMED which one is live).
SAMPLE_ISSUER = "https://app.pagerduty.com/global/oauth/anonymous"
ACCESS_PREFIX = "pdus+_0"
REFRESH_PREFIX = "pdus+_1"
#: The ``region`` claim per account region. The sample token says ``UnitedStates``.
REGION_CLAIMS = {
    "us": "UnitedStates",
    "eu": "EuropeanUnion",  # UNCONFIRMED: PagerDuty documents no EU value.
}


@dataclass(frozen=True)
class AccountInfo:
    """A sandbox account as the identity server needs it: its subdomain and region."""

    id: str  # subdomain
    region: str  # "us" | "eu"


@dataclass(frozen=True)
class UserInfo:
    """A user of a sandbox account and the role that decides what their tokens may do."""

    id: str
    account_id: str
    name: str
    email: str
    role: str


@dataclass(frozen=True)
class Grant:
    """What a valid bearer token may do: on which account, as whom, with which scopes, until when."""

    account_id: str  # the sandbox account (subdomain) the token acts on
    user_id: str | None  # None for a client-credentials app token
    role: str | None  # the user's role now; None for app tokens
    scopes: frozenset[str]  # as granted, e.g. {"openid", "write"}
    kind: str  # "classic" | "scoped"
    expires_at: float  # epoch seconds


def account_id_claim(subdomain: str) -> str:
    """A stable PagerDuty-style account id (``P`` and six characters) for a subdomain.

    Sandbox accounts are known by subdomain only; the ID token's ``account_id`` claim needs an
    id that stays the same across restarts and resets, so it is derived from the subdomain.
    """
    digest = hashlib.sha256(subdomain.encode("utf-8")).digest()
    return "P" + base64.b32encode(digest).decode("ascii")[:6]


def new_delegation_id() -> str:
    return "P" + base64.b32encode(secrets.token_bytes(10)).decode("ascii")[:12]


def new_client_id() -> str:
    return str(uuid.uuid4())


class Core:
    """The identity server's state and the settings its endpoints read."""

    def __init__(
        self,
        *,
        base_url: Callable[[], str],
        accounts: Callable[[str], AccountInfo | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url
        self.accounts = accounts
        self.clock = clock
        self.registry = Registry()
        self.keys = SigningKeys()
        self.issuer = DEFAULT_ISSUER

    def base(self) -> str:
        return self.base_url().rstrip("/")

    def rest_base(self, account: AccountInfo) -> str:
        """The account's REST base: the sandbox root for US, ``<base>/eu`` for EU (S1b's contract)."""
        return self.base() + ("/eu" if account.region == "eu" else "")

    def issue(
        self,
        app: OAuthApp,
        authorization: Authorization,
        *,
        access_seconds: int,
        refresh: bool,
        id_token: bool,
    ) -> dict[str, Any]:
        """New tokens for ``authorization``, recorded, as the token endpoint answers them.

        Call with the registry's lock held.
        """
        now = self.clock()
        self.registry.count_issue(now)
        access = Token(
            value=ACCESS_PREFIX + secrets.token_urlsafe(32),
            kind="access",
            delegation_id=authorization.delegation_id,
            scopes=authorization.scopes,
            expires_at=now + access_seconds,
        )
        self.registry.tokens[access.value] = access
        answer: dict[str, Any] = {
            "access_token": access.value,
            "token_type": "bearer",
            "scope": scope_rules.text(authorization.scopes),
            "expires_in": access_seconds,
        }
        if refresh:
            window_end = authorization.created_at + app.window_seconds
            token = Token(
                value=REFRESH_PREFIX + secrets.token_urlsafe(32),
                kind="refresh",
                delegation_id=authorization.delegation_id,
                scopes=authorization.scopes,
                expires_at=min(now + app.refresh_token_seconds, window_end),
            )
            self.registry.tokens[token.value] = token
            answer["refresh_token"] = token.value
        if id_token:
            answer["id_token"] = self.id_token(app, authorization, issued_at=now, expires_at=access.expires_at)
        return answer

    def id_token(self, app: OAuthApp, authorization: Authorization, *, issued_at: float, expires_at: float) -> str:
        """The RS256 ID token of ``authorization`` with PagerDuty's claims (pagerduty-oauth.md section 3)."""
        account = self.accounts(authorization.account_id)
        if account is None:
            raise LookupError("the account is gone")
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": [self.rest_base(account), app.client_id],
            "exp": int(expires_at),
            "iat": int(issued_at),
            "sub": authorization.user_id,
            "subdomain": account.id,
            "account_id": account_id_claim(account.id),
            "user_id": authorization.user_id,
            "delegation_id": authorization.delegation_id,
            "region": REGION_CLAIMS.get(account.region, account.region),
        }
        if authorization.nonce is not None:
            claims["nonce"] = authorization.nonce  # OpenID Connect; UNCONFIRMED whether PagerDuty echoes it
        return self.keys.sign(claims)
