"""Which scopes an app may be granted, and what a request for an invalid one gets.

Classic apps have ``read`` and ``write`` (case-sensitive); Scoped apps have per-resource
scopes such as ``services.read`` or ``users:contact_methods.write``; every grant includes
``openid``. An authorize request naming any scope the app may not have is not an error:
PagerDuty silently grants only ``openid`` (pagerduty-oauth.md section 2.4), and so does the
sandbox. A client-credentials request names its account as ``as_account-{us|eu}.{subdomain}``.
"""

from __future__ import annotations

import re

OPENID = "openid"
#: RFC 6749 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), tokens separated by one space.
_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
#: A Scoped app's resource scope (UNCONFIRMED beyond the documented examples).
RESOURCE_SCOPE = re.compile(r"[a-z][a-z_]*(:[a-z][a-z_]*)?\.(read|write)")
#: ``as_account-us.acme``: the account a client-credentials app token acts on.
AS_ACCOUNT = re.compile(r"as_account-(us|eu)\.([a-z0-9][a-z0-9-]*)")
MAX_SCOPE_TEXT = 2048


def split(text: str | None) -> list[str] | None:
    """The scope tokens of ``text`` (``[]`` for none); ``None`` if it is not RFC 6749 syntax."""
    if text is None or text == "":
        return []
    if len(text) > MAX_SCOPE_TEXT:
        return None
    tokens = text.split(" ")
    if not all(_TOKEN.fullmatch(token) for token in tokens):
        return None  # doubled, leading or trailing spaces, tabs, quotes, backslashes, non-ASCII
    return tokens


def granted(requested: str | None, allowed: frozenset[str]) -> frozenset[str]:
    """What an authorize request for ``requested`` is granted: all of it plus ``openid``, or
    only ``openid`` if any token is malformed or not in ``allowed``."""
    tokens = split(requested)
    if tokens is None or not set(tokens) <= allowed | {OPENID}:
        return frozenset({OPENID})
    return frozenset(tokens) | {OPENID}


def text(scopes: frozenset[str]) -> str:
    """``scopes`` as the token answer's space-separated ``scope``, ``openid`` first."""
    return " ".join(sorted(scopes, key=lambda s: (s != OPENID, s)))
