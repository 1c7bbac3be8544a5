"""PKCE (RFC 7636) with the S256 method only, as PagerDuty documents it (pagerduty-oauth.md section 2).

A verifier is 43 to 128 characters of the unreserved set (RFC 7636 4.1); a challenge is the
base64url encoding, without padding, of the verifier's SHA-256, so always 43 characters
(RFC 7636 4.2). ``plain`` is refused: it protects nothing against a stolen code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CHALLENGE = re.compile(r"[A-Za-z0-9\-_]{43}")


def challenge_of(verifier: str) -> str:
    """The S256 challenge of ``verifier``."""
    digest = hashlib.sha256(verifier.encode("utf-8", "surrogatepass")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def is_verifier(value: str) -> bool:
    """True if ``value`` has RFC 7636's verifier syntax."""
    return _VERIFIER.fullmatch(value) is not None


def is_challenge(value: str) -> bool:
    """True if ``value`` can be an S256 challenge (43 base64url characters)."""
    return _CHALLENGE.fullmatch(value) is not None


def matches(verifier: str, challenge: str) -> bool:
    """True if ``verifier`` is well formed and hashes to ``challenge`` (compared in constant time)."""
    return is_verifier(verifier) and hmac.compare_digest(challenge_of(verifier), challenge)
