"""V3 webhook signatures: ``X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]``.

Each signature is the hex HMAC-SHA256 of the raw body, keyed with the subscription's secret
(``pagerduty-protocols.md`` section 5.5). PagerDuty sends several during its own secret
rotation; pdconnect accepts several local secrets too, so the receiver can rotate without
downtime. Every comparison is constant-time. A header that is missing or holds no
well-formed ``v1=`` entry is a 400; a well-formed header that matches no secret is a 403.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

from pdconnect.errors import SignatureMismatch, SignatureMissing

SIGNATURE_HEADER = "X-PagerDuty-Signature"
#: More entries than this in one header is not PagerDuty (it sends one, two while rotating).
MAX_SIGNATURES = 16
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


def sign(secret: str, body: bytes) -> str:
    """The header value PagerDuty would send for ``body`` (for tests and the sandbox)."""
    return "v1=" + _digest(secret, body)


def _digest(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def signatures_in(header: str | None) -> list[str]:
    """The well-formed ``v1`` signatures of a header, lowercased; raises :class:`SignatureMissing`.

    Entries of other versions (``v2=...``, should PagerDuty add one) are skipped, as PagerDuty
    asks; malformed ``v1`` entries are skipped too, as PagerDuty's Go library does.
    """
    if not header or not header.strip():
        raise SignatureMissing(f"the {SIGNATURE_HEADER} header is missing")
    entries = header.split(",")
    if len(entries) > MAX_SIGNATURES:
        raise SignatureMissing(f"the {SIGNATURE_HEADER} header holds too many entries")
    found = []
    for entry in entries:
        version, _, value = entry.strip().partition("=")
        if version == "v1" and _HEX64.fullmatch(value):
            found.append(value.lower())
    if not found:
        raise SignatureMissing(f"the {SIGNATURE_HEADER} header holds no v1 signature")
    return found


def matching_secret(body: bytes, header: str | None, secrets: Sequence[str]) -> int:
    """The index in ``secrets`` of the first secret that signed ``body``.

    Raises :class:`SignatureMissing` (400) for a missing or malformed header and
    :class:`SignatureMismatch` (403) when no signature matches any secret, or when there is
    no secret to check with. Neither message contains a secret or a signature.
    """
    return matching_secrets(body, header, secrets)[0]


def matching_secrets(body: bytes, header: str | None, secrets: Sequence[str]) -> list[int]:
    """The indexes in ``secrets`` of every secret that signed ``body``, in order; never empty.

    While PagerDuty rotates a secret it signs with two, and a receiver may hold both: the
    receiver needs all of them, because a replay may carry either signature alone. Raises
    like :func:`matching_secret`.
    """
    signatures = signatures_in(header)
    found = []
    for index, secret in enumerate(secrets):
        expected = _digest(secret, body)
        # Compare against every entry, without stopping early, so the time taken does not
        # depend on which entry matched.
        matched = False
        for signature in signatures:
            matched |= hmac.compare_digest(expected, signature)
        if matched:
            found.append(index)
    if not found:
        raise SignatureMismatch("the webhook's signature matches no secret for this subscription")
    return found


def verify_signature(body: bytes, header: str | None, secrets: Sequence[str]) -> None:
    """Raise unless one of ``secrets`` signed ``body`` (see :func:`matching_secret`)."""
    matching_secret(body, header, secrets)
