"""A strict PagerDuty identity server in-process, on ``responses``: the unit tests' counterpart.

It plays PagerDuty's part of the flow as ``06-OAuth-Functionality.md`` describes it: codes
bound to a PKCE challenge and a redirect URI, valid 30 seconds and once, refresh tokens rotated
(the old one refused once used), RS256 ID tokens, a JWKS document. Tests change what it answers
to play a hostile or broken PagerDuty.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import responses
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

IDENTITY = "https://identity.pagerduty.com"
ISSUER = "https://identity.pagerduty.com/global/oauth/anonymous"
CLIENT_ID = "pdconnect-test-client"
CLIENT_SECRET = "client-secret-XYZZY-0123456789"
REDIRECT_URI = "https://vendor.example/pagerduty/oauth/callback"
US_REST = "https://api.pagerduty.com"
EU_REST = "https://api.eu.pagerduty.com"
CODE_LIFETIME = 30

_KEYS: dict[int, rsa.RSAPrivateKey] = {}


def rsa_key(index: int = 0) -> rsa.RSAPrivateKey:
    """A 2048-bit RSA key, made once per test session per index (making one takes a moment)."""
    if index not in _KEYS:
        _KEYS[index] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEYS[index]


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid=kid, use="sig", alg="RS256")
    return dict(jwk)


@dataclass
class Grant:
    challenge: str
    redirect_uri: str
    scopes: str
    issued_at: float
    used: bool = False


@dataclass
class FakeIdentity:
    """PagerDuty's identity host, answering through ``responses``; the clock is the test's."""

    mock: responses.RequestsMock
    clock: Callable[[], float]
    account: dict[str, Any] = field(
        default_factory=lambda: {
            "subdomain": "acme",
            "account_id": "PACME01",
            "user_id": "PUSER01",
            "delegation_id": "PDELEG1",
            "region": "UnitedStates",
        }
    )
    rest_base: str = US_REST
    kid: str = "key-1"
    key_index: int = 0
    grant_scopes: str | None = None  # None: grant what was asked
    expires_in: Any = 86_400
    codes: dict[str, Grant] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)  # live refresh token -> scopes
    token_calls: list[dict[str, str]] = field(default_factory=list)
    jwks_calls: int = 0
    token_override: Callable[[dict[str, str]], tuple[int, dict[str, str], bytes] | None] | None = None
    jwks_override: Callable[[], tuple[int, dict[str, str], bytes]] | None = None
    id_token_override: Callable[[dict[str, Any]], str] | None = None

    def __post_init__(self) -> None:
        self.mock.add_callback(responses.POST, f"{IDENTITY}/oauth/token", callback=self._token)
        self.mock.add_callback(responses.GET, f"{IDENTITY}/global/oauth/anonymous/jwks", callback=self._jwks)

    # -- the browser's part ------------------------------------------------------------------

    def approve(self, authorize_url: str, *, scopes: str | None = None) -> str:
        """What the browser brings back after the user approves: the callback's query string."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        assert query["code_challenge_method"] == "S256"
        code = "code_" + secrets.token_urlsafe(16)
        granted = scopes if scopes is not None else (self.grant_scopes or query["scope"])
        self.codes[code] = Grant(query["code_challenge"], query["redirect_uri"], granted, self.clock())
        return f"code={code}&state={query['state']}"

    def state_of(self, authorize_url: str) -> str:
        return parse_qs(urlsplit(authorize_url).query)["state"][0]

    # -- the tokens ---------------------------------------------------------------------------

    def claims(self, **changes: Any) -> dict[str, Any]:
        now = int(self.clock())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": [self.rest_base, CLIENT_ID],
            "iat": now,
            "exp": now + 3600,
            **self.account,
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def id_token(self, **changes: Any) -> str:
        claims = self.claims(**changes)
        if self.id_token_override is not None:
            return self.id_token_override(claims)
        return jwt.encode(claims, rsa_key(self.key_index), algorithm="RS256", headers={"kid": self.kid})

    def _answer(self, scopes: str, *, with_id_token: bool) -> dict[str, Any]:
        refresh = "pdus+_1" + secrets.token_urlsafe(24)
        self.refresh_tokens[refresh] = scopes
        answer: dict[str, Any] = {
            "access_token": "pdus+_0" + secrets.token_urlsafe(24),
            "refresh_token": refresh,
            "token_type": "bearer",
            "scope": scopes,
            "expires_in": self.expires_in,
        }
        if with_id_token and "openid" in scopes.split():
            answer["id_token"] = self.id_token()
        return answer

    def _token(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        form = {
            k: v[0]
            for k, v in parse_qs(request.body if isinstance(request.body, str) else request.body.decode()).items()
        }
        self.token_calls.append(form)
        if self.token_override is not None:
            overridden = self.token_override(form)
            if overridden is not None:
                return overridden
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return _error(401, "invalid_client")
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            grant = self.codes.get(form.get("code", ""))
            if grant is None or grant.used or self.clock() - grant.issued_at > CODE_LIFETIME:
                return _error(400, "invalid_grant", "the code is unknown, used or expired")
            grant.used = True
            if form.get("redirect_uri") != grant.redirect_uri:
                return _error(400, "invalid_grant", "redirect_uri does not match")
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            if digest != grant.challenge:
                return _error(400, "invalid_grant", "PKCE verification failed")
            return _json(200, self._answer(grant.scopes, with_id_token=True))
        if grant_type == "refresh_token":
            scopes = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if scopes is None:
                return _error(400, "invalid_grant", "the refresh token is unknown or used")
            return _json(200, self._answer(scopes, with_id_token=False))
        if grant_type == "client_credentials":
            answer = self._answer(form.get("scope", ""), with_id_token=False)
            del answer["refresh_token"]
            return _json(200, answer)
        return _error(400, "unsupported_grant_type")

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(rsa_key(self.key_index), self.kid)]}

    def _jwks(self, request: Any) -> tuple[int, dict[str, str], bytes]:
        self.jwks_calls += 1
        if self.jwks_override is not None:
            return self.jwks_override()
        return _json(200, self.jwks())


def _json(status: int, body: object) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def _error(status: int, error: str, description: str | None = None) -> tuple[int, dict[str, str], bytes]:
    body = {"error": error} | ({"error_description": description} if description else {})
    return _json(status, body)
