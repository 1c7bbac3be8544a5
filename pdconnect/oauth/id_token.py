"""Verifying PagerDuty's ID token, and the account it names.

The ID token is how a vendor learns which PagerDuty account, user and region an
authorization belongs to (``07-PagerDuty-OpenId-Token.md``), so everything in it is checked
before anything is believed: the algorithm is RS256 and nothing else (``none``, and HS256
with the public key as its secret, are the classic forgeries), the signature verifies with a
key PagerDuty publishes, the issuer is one configured, the audience holds our client id and
exactly one known regional REST base, the token is within its lifetime (a minute's leeway),
and the private claims are there with the right types.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from pdconnect.errors import UnsafeURLError
from pdconnect.oauth.app import OAuthApp, RegionName, normalize_base
from pdconnect.oauth.errors import IdTokenInvalid
from pdconnect.oauth.jwks import JwksCache

#: Seconds of clock difference with PagerDuty tolerated on ``exp`` and ``iat``.
LEEWAY = 60.0
#: An ID token longer than this is refused before it is decoded.
MAX_ID_TOKEN_LENGTH = 16 * 1024
ALGORITHM = "RS256"

_SUBDOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?", re.ASCII)
_ID = re.compile(r"[A-Za-z0-9_\-.:]{1,128}", re.ASCII)


@dataclass(frozen=True)
class AccountIdentity:
    """The PagerDuty account, user and region of one authorization, from its verified ID token.

    ``delegation_id`` is stable across every token of one authorization. ``rest_base_url`` is
    the account's regional REST API (from the token's ``aud``), ``events_base_url`` its Events
    API; every call about this account goes there, never to a URL configured for the app.
    """

    subdomain: str
    account_id: str
    user_id: str
    delegation_id: str
    region: RegionName
    rest_base_url: str
    events_base_url: str


def _text_claim(claims: Mapping[str, Any], name: str, pattern: re.Pattern[str]) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise IdTokenInvalid(f"its {name!r} claim is missing or malformed")
    return value


def _time_claim(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise IdTokenInvalid(f"its {name!r} claim is missing or not a number")
    try:
        seconds = float(value)  # an int beyond a float's range raises here, not later
    except OverflowError:
        raise IdTokenInvalid(f"its {name!r} claim is not a time") from None
    if not math.isfinite(seconds):
        raise IdTokenInvalid(f"its {name!r} claim is not a time")
    return seconds


def _rest_base(audience: list[str], app: OAuthApp) -> tuple[str, RegionName]:
    found: dict[str, RegionName] = {}
    for entry in audience:
        if entry == app.client_id:
            continue
        try:
            base = normalize_base(entry)
        except UnsafeURLError:
            continue
        region = app.rest_bases.get(base)
        if region is not None:
            found[base] = region
    if len(found) != 1:
        raise IdTokenInvalid("its audience names no known PagerDuty REST base, or more than one")
    return next(iter(found.items()))


def verify_id_token(token: object, *, app: OAuthApp, keys: JwksCache, now: float) -> AccountIdentity:
    """The :class:`AccountIdentity` of a verified ID token; :class:`IdTokenInvalid` naming what failed.

    :class:`~pdconnect.oauth.errors.JwksUnavailable` (a subclass) means PagerDuty's keys could
    not be fetched: try again later.
    """
    if not isinstance(token, str) or not token or len(token) > MAX_ID_TOKEN_LENGTH:
        raise IdTokenInvalid("it is missing or too long")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise IdTokenInvalid("it is not a JWT") from None
    if header.get("alg") != ALGORITHM:
        raise IdTokenInvalid(f"it is not signed with {ALGORITHM}")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise IdTokenInvalid("its key id is not a string")
    key = keys.key(kid)
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=app.client_id,
            issuer=app.issuers,
            # Lifetime is checked below, on this client's clock (injectable, unlike PyJWT's).
            options={
                "require": ["iss", "aud", "exp", "iat"],
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
            },
        )
    except jwt.InvalidSignatureError:
        raise IdTokenInvalid("its signature does not verify") from None
    except jwt.InvalidIssuerError:
        raise IdTokenInvalid("it was issued by an issuer not configured for this app") from None
    except jwt.InvalidAudienceError:
        raise IdTokenInvalid("it was not issued for this app (audience)") from None
    except jwt.MissingRequiredClaimError as exc:
        raise IdTokenInvalid(f"its {exc.claim!r} claim is missing") from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise IdTokenInvalid("it could not be decoded") from None
    expires, issued = _time_claim(claims, "exp"), _time_claim(claims, "iat")
    if expires <= now - LEEWAY:
        raise IdTokenInvalid("it has expired")
    if issued > now + LEEWAY:
        raise IdTokenInvalid("it was issued in the future")
    if "nbf" in claims and _time_claim(claims, "nbf") > now + LEEWAY:
        raise IdTokenInvalid("it is not valid yet")
    audience = claims["aud"]
    rest_base, region = _rest_base([audience] if isinstance(audience, str) else list(audience), app)
    return AccountIdentity(
        subdomain=_text_claim(claims, "subdomain", _SUBDOMAIN),
        account_id=_text_claim(claims, "account_id", _ID),
        user_id=_text_claim(claims, "user_id", _ID),
        delegation_id=_text_claim(claims, "delegation_id", _ID),
        region=region,
        rest_base_url=rest_base,
        events_base_url=app.events_bases[region],
    )
