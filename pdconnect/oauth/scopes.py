"""OAuth scope strings: parsing what PagerDuty granted and comparing it with what is needed.

A scope string is scope tokens separated by spaces (RFC 6749 section 3.3), each token printable
ASCII without space, ``"`` or ``\\``. PagerDuty's Classic apps know ``read`` and ``write``;
Scoped apps name a resource and an access (``services.read``, ``webhook_subscriptions.write``).
``openid`` is always asked for: the ID token is how pdconnect learns the account and region.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

#: Always requested and always needed: without it there is no ID token.
OPENID = "openid"
#: The scopes a Classic User OAuth app can ask for (``06-OAuth-Functionality.md``).
CLASSIC_SCOPES = frozenset({"read", "write"})
#: A scope string longer than this, or with more tokens, is not PagerDuty talking.
MAX_SCOPE_STRING = 4096
MAX_SCOPES = 200

AppKind = Literal["classic", "scoped"]

_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,200}", re.ASCII)


def check_scope(scope: object) -> str:
    """Return ``scope`` if it is one RFC 6749 scope token, else raise ``ValueError``."""
    if not isinstance(scope, str) or not _TOKEN.fullmatch(scope):
        raise ValueError("a scope is 1 to 200 printable ASCII characters without space, '\"' or '\\'")
    return scope


def parse_scopes(value: object) -> frozenset[str]:
    """The set of scopes in a space-separated scope string.

    Runs of spaces are read as one (RFC 6749 wants one; being strict here would refuse a
    grant over a typo). Raises ``ValueError`` for anything that is not such a string: another
    type, a tab or other control character, a token with a forbidden character, more than
    :data:`MAX_SCOPES` tokens or more than :data:`MAX_SCOPE_STRING` characters.
    """
    if not isinstance(value, str):
        raise ValueError("a scope string must be a string")
    if len(value) > MAX_SCOPE_STRING:
        raise ValueError(f"a scope string is at most {MAX_SCOPE_STRING} characters")
    tokens = [t for t in value.split(" ") if t]
    if len(tokens) > MAX_SCOPES:
        raise ValueError(f"a scope string holds at most {MAX_SCOPES} scopes")
    return frozenset(check_scope(t) for t in tokens)


def format_scopes(scopes: Iterable[str]) -> str:
    """The scope string for ``scopes``: sorted, deduplicated, one space apart."""
    return " ".join(sorted({check_scope(s) for s in scopes}))


def requested_scopes(scopes: Iterable[str], *, kind: AppKind) -> frozenset[str]:
    """What to ask PagerDuty for: the app's scopes plus ``openid``.

    Raises ``ValueError`` for a malformed scope, and for a Classic app asking for anything
    but ``read`` or ``write`` (PagerDuty would silently grant only ``openid``).
    """
    wanted = frozenset(check_scope(s) for s in scopes)
    if kind == "classic":
        unknown = wanted - CLASSIC_SCOPES - {OPENID}
        if unknown:
            raise ValueError(f"a Classic OAuth app's scopes are 'read' or 'write', not {' '.join(sorted(unknown))}")
    return wanted | {OPENID}


def missing_scopes(needed: Iterable[str], granted: Iterable[str], *, kind: AppKind) -> frozenset[str]:
    """The needed scopes that ``granted`` does not cover.

    For a Classic app ``write`` covers ``read`` (a write token acts as the user for reads too);
    Scoped scopes cover only themselves, since PagerDuty documents no implication between them.
    """
    have = frozenset(granted)
    if kind == "classic" and "write" in have:
        have |= {"read"}
    return frozenset(needed) - have
