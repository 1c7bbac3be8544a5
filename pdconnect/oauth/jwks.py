"""PagerDuty's signing keys: the JWKS document, fetched by ``kid`` and cached briefly.

PagerDuty may rotate its keys at any time (``07-PagerDuty-OpenId-Token.md``), so a token
signed with a key the cache does not know makes the cache fetch the document again, but at
most once per ``min_refetch_interval``: tokens naming random key ids must not turn every
callback into a request to PagerDuty. A document that cannot be fetched or read leaves the
keys already known in use until it can.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import RSAAlgorithm
from jwt.exceptions import InvalidKeyError

from pdconnect.oauth.errors import IdTokenInvalid, JwksUnavailable, TokenEndpointError
from pdconnect.oauth.http import Requester
from pdconnect.oauth.tokens import read_json_object

logger = logging.getLogger("pdconnect.oauth")

#: A JWKS document is a few kilobytes; more than this is not PagerDuty's.
MAX_JWKS_BYTES = 64 * 1024
MAX_KEYS = 32
MAX_KID_LENGTH = 256
#: Keys shorter than this are refused (NIST SP 800-131A).
MIN_RSA_BITS = 2048

Keys = Mapping[str | None, RSAPublicKey]


def _kid(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_KID_LENGTH or not value.isprintable():
        raise ValueError("a key id is 1 to 256 printable characters")
    return value


def _rsa_key(entry: Mapping[str, Any]) -> RSAPublicKey | None:
    """The RSA signing key of one JWK, or ``None`` when it is not one (another type or use)."""
    if entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig" or entry.get("alg", "RS256") != "RS256":
        return None
    n, e = entry.get("n"), entry.get("e")
    if not isinstance(n, str) or not isinstance(e, str) or len(n) > 2048 or len(e) > 16:
        return None
    try:
        # Only the public numbers: a document that also carries "d" must not make us hold a private key.
        key = RSAAlgorithm.from_jwk({"kty": "RSA", "n": n, "e": e})
    except (InvalidKeyError, ValueError, TypeError):
        return None
    if not isinstance(key, RSAPublicKey) or key.key_size < MIN_RSA_BITS:
        return None
    return key


def parse_jwks(document: Mapping[str, Any]) -> dict[str | None, RSAPublicKey]:
    """The RS256 signing keys of a JWKS document, by ``kid``; ``ValueError`` if it has none.

    Keys of other types, uses or algorithms, and malformed or short RSA keys, are skipped; a
    ``kid`` that appears twice makes the whole document ambiguous, so it is refused. A key
    without ``kid`` is kept under ``None``.
    """
    entries = document.get("keys")
    if not isinstance(entries, list) or len(entries) > MAX_KEYS:
        raise ValueError(f"a JWKS document holds a 'keys' list of at most {MAX_KEYS} keys")
    keys: dict[str | None, RSAPublicKey] = {}
    seen: set[str | None] = set()
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid = _kid(entry.get("kid"))
        if kid in seen:
            raise ValueError("a JWKS document names one key id twice")
        seen.add(kid)
        key = _rsa_key(entry)
        if key is not None:
            keys[kid] = key
    if not keys:
        raise ValueError("the JWKS document holds no RS256 signing key")
    return keys


class JwksCache:
    """The keys of one JWKS URL, fetched through a :class:`~pdconnect.oauth.http.Requester`; thread-safe."""

    def __init__(
        self,
        url: str,
        requester: Requester,
        *,
        ttl: float = 300.0,
        min_refetch_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, value in (("jwks_ttl", ttl), ("min_refetch_interval", min_refetch_interval)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
                raise ValueError(f"{name} must be a finite number of seconds, not negative")
        self.url = url
        self.ttl = float(ttl)
        self.min_refetch_interval = float(min_refetch_interval)
        self._requester = requester
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str | None, RSAPublicKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        #: How many times the document was requested (for tests and metrics).
        self.fetches = 0

    def key(self, kid: str | None) -> RSAPublicKey:
        """The key named ``kid`` (``None``: the document's only key), or :class:`IdTokenInvalid`."""
        with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at >= self.ttl
            if stale or self._find(kid) is None:
                self._refresh(now)
            key = self._find(kid)
            if key is None:
                if not self._keys:
                    raise JwksUnavailable("PagerDuty's signing keys could not be fetched")
                raise IdTokenInvalid("it is signed with a key PagerDuty does not publish")
            return key

    def _find(self, kid: str | None) -> RSAPublicKey | None:
        if kid is None:
            # A token without kid is accepted only while the document holds exactly one key.
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    def _refresh(self, now: float) -> None:
        if self._attempted_at is not None and 0 <= now - self._attempted_at < self.min_refetch_interval:
            return
        self._attempted_at = now
        self.fetches += 1
        try:
            response = self._requester.request(
                "GET", self.url, what="PagerDuty's JWKS endpoint", headers={"Accept": "application/json"}
            )
            if response.status != 200:
                raise ValueError(f"it answered HTTP {response.status}")
            document = read_json_object(response.body, limit=MAX_JWKS_BYTES, what="PagerDuty's JWKS endpoint")
            keys = parse_jwks(document)
        except (TokenEndpointError, ValueError) as exc:
            logger.warning(
                "cannot refresh PagerDuty's signing keys (%s); %d known keys stay in use", exc, len(self._keys)
            )
            return
        self._keys = keys
        self._fetched_at = now
