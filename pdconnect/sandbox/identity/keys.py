"""The keys the sandbox signs ID tokens with, and the JWKS that publishes them.

PagerDuty signs ID tokens with RS256 and publishes its keys at
``/global/oauth/anonymous/jwks``; they "may rotate at any time" (``07-PagerDuty-OpenId-Token.md``,
pagerduty-oauth.md section 3). Each sandbox draws its own 2048-bit key the first time it signs,
names it by its RFC 7638 thumbprint (``kid``), and can rotate to a new one while the old ones stay
published, so a client that caches the JWKS can be tested against a rotation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

#: How many keys the JWKS lists at most: the current one and the ones it replaced, newest first.
MAX_PUBLISHED = 3


@dataclass(frozen=True)
class SigningKey:
    """One RSA key pair and its ``kid``."""

    kid: str
    private: rsa.RSAPrivateKey

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r})"

    def jwk(self) -> dict[str, Any]:
        """The public half as a JWK, as PagerDuty's JWKS lists it."""
        public: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": public["n"], "e": public["e"]}


def _new_key() -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public: dict[str, Any] = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    # RFC 7638: the SHA-256 of the required members, in lexical order, without whitespace.
    canonical = json.dumps({"e": public["e"], "kty": "RSA", "n": public["n"]}, separators=(",", ":"), sort_keys=True)
    kid = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
    return SigningKey(kid=kid, private=private)


class SigningKeys:
    """The current signing key and the recent ones; thread-safe; keys are made lazily."""

    def __init__(self) -> None:
        self._keys: list[SigningKey] = []  # newest first
        self._lock = threading.Lock()

    def _current(self) -> SigningKey:
        if not self._keys:
            self._keys.append(_new_key())
        return self._keys[0]

    @property
    def current_kid(self) -> str:
        with self._lock:
            return self._current().kid

    def rotate(self) -> str:
        """Sign with a new key from now on; the previous ones stay in the JWKS. The new ``kid``."""
        with self._lock:
            self._current()
            self._keys.insert(0, _new_key())
            del self._keys[MAX_PUBLISHED:]
            return self._keys[0].kid

    def retire(self, kid: str) -> bool:
        """Stop publishing an old key (tokens it signed stop verifying). False if unknown or current."""
        with self._lock:
            for index, key in enumerate(self._keys):
                if key.kid == kid and index > 0:
                    del self._keys[index]
                    return True
            return False

    def kids(self) -> list[str]:
        with self._lock:
            self._current()
            return [key.kid for key in self._keys]

    def jwks(self) -> dict[str, Any]:
        """``{"keys": [...]}``, the current key first."""
        with self._lock:
            self._current()
            return {"keys": [key.jwk() for key in self._keys]}

    def sign(self, claims: dict[str, Any]) -> str:
        """``claims`` as a compact RS256 JWT with the current key's ``kid`` in its header."""
        with self._lock:
            key = self._current()
        return jwt.encode(claims, key.private, algorithm="RS256", headers={"kid": key.kid, "typ": "JWT"})
