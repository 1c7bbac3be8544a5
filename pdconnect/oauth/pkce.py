"""PKCE (RFC 7636) with the S256 method, the only one PagerDuty documents."""

from __future__ import annotations

import hashlib
import re
import secrets
from base64 import urlsafe_b64encode

#: RFC 7636 section 4.1: 43 to 128 characters of ``[A-Za-z0-9-._~]``.
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}", re.ASCII)


def new_verifier() -> str:
    """A fresh code verifier: 32 random bytes, base64url without padding (43 characters)."""
    return secrets.token_urlsafe(32)


def is_verifier(value: object) -> bool:
    """Whether ``value`` is a code verifier RFC 7636 allows."""
    return isinstance(value, str) and _VERIFIER.fullmatch(value) is not None


def challenge(verifier: str) -> str:
    """The S256 code challenge of ``verifier``: base64url, no padding, of its SHA-256.

    Raises ``ValueError`` for a value that is not a verifier RFC 7636 allows.
    """
    if not is_verifier(verifier):
        raise ValueError("a PKCE verifier is 43 to 128 characters of A-Z a-z 0-9 - . _ ~")
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return urlsafe_b64encode(digest).decode("ascii").rstrip("=")
