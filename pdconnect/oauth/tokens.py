"""PagerDuty's token endpoint: exchanging a code, refreshing, client credentials, and reading the answer.

Every request is form-encoded to ``<identity_url>/oauth/token`` with ``client_id`` and, for a
confidential client, ``client_secret`` in the body, as ``06-OAuth-Functionality.md`` shows. The
answer is read strictly (:func:`parse_token_response`): a token endpoint that answers garbage
must give a typed error, never a half-made :class:`TokenSet` that fails later, elsewhere.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from pdconnect.oauth.errors import OAuthRefused, TokenEndpointError
from pdconnect.oauth.scopes import parse_scopes

#: A token answer is a few hundred bytes; more than this is not PagerDuty talking.
MAX_TOKEN_RESPONSE = 64 * 1024
#: The longest ``expires_in`` accepted: PagerDuty's longest documented access token lives 30
#: days; a year leaves room for change and still refuses nonsense.
MAX_EXPIRES_IN = 366 * 86_400
#: RFC 6750's b64token alphabet, which covers PagerDuty's ``pdus+_0...`` tokens.
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*", re.ASCII)
_JWT = re.compile(r"[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*", re.ASCII)
# RFC 6749 section 5.2: error is %x20-21 / %x23-5B / %x5D-7E.
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,100}", re.ASCII)
_MAX_TOKEN_LENGTH = 8192
_MAX_DESCRIPTION = 300


@dataclass(frozen=True)
class TokenSet:
    """What the token endpoint granted. The ``repr`` shows no token.

    ``expires_at`` is a Unix time (the request's clock plus ``expires_in``); ``scopes`` what
    was granted, which may be less than what was asked. ``refresh_token`` is ``None`` for
    client credentials; ``id_token`` is the raw, not yet verified, ID token when one came.
    """

    access_token: str
    refresh_token: str | None
    expires_at: float
    scopes: frozenset[str]
    id_token: str | None

    def __repr__(self) -> str:
        refresh = "None" if self.refresh_token is None else "'<hidden>'"
        id_token = "None" if self.id_token is None else "'<hidden>'"
        return (
            f"TokenSet(access_token='<hidden>', refresh_token={refresh}, expires_at={self.expires_at!r}, "
            f"scopes={sorted(self.scopes)!r}, id_token={id_token})"
        )

    __str__ = __repr__


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("a JSON object repeats a member")
        result[key] = value
    return result


def read_json_object(body: bytes, *, limit: int, what: str) -> dict[str, Any]:
    """``body`` as one JSON object, or :class:`TokenEndpointError` naming ``what``.

    Refused: more than ``limit`` bytes, not UTF-8, not JSON, ``NaN`` or ``Infinity``, a
    repeated member (two readers may pick different values), anything but an object.
    """
    if len(body) > limit:
        raise TokenEndpointError(f"{what} answered more than {limit} bytes")
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_refuse_constant, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise TokenEndpointError(f"{what} did not answer JSON") from exc
    if not isinstance(value, dict):
        raise TokenEndpointError(f"{what} did not answer a JSON object")
    return value


def _token(answer: Mapping[str, Any], name: str, *, required: bool, shape: re.Pattern[str] = _TOKEN) -> str | None:
    value = answer.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > _MAX_TOKEN_LENGTH or not shape.fullmatch(value):
        raise TokenEndpointError(f"the token endpoint's {name!r} is missing or malformed")
    return value


def _expires_in(answer: Mapping[str, Any]) -> float:
    value = answer.get("expires_in")
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 12:
        value = int(value)  # some servers send it as a string; RFC 6749 only says "number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenEndpointError("the token endpoint's 'expires_in' is missing or not a number")
    # Range first: math.isfinite() of an int beyond a float's range raises OverflowError.
    if not 0 < value <= MAX_EXPIRES_IN or not math.isfinite(value):
        raise TokenEndpointError(f"the token endpoint's 'expires_in' is not between 1 and {MAX_EXPIRES_IN} seconds")
    return float(value)


def parse_token_response(answer: Mapping[str, Any], *, now: float, requested: frozenset[str]) -> TokenSet:
    """A :class:`TokenSet` from a successful token answer, or :class:`TokenEndpointError`.

    ``requested`` is what was asked for: RFC 6749 section 5.1 lets a server leave ``scope``
    out when it granted exactly that. ``token_type`` must be ``bearer`` (any case).
    """
    token_type = answer.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise TokenEndpointError("the token endpoint's 'token_type' is not 'bearer'")
    access = _token(answer, "access_token", required=True)
    assert access is not None
    refresh = _token(answer, "refresh_token", required=False)
    id_token = _token(answer, "id_token", required=False, shape=_JWT)
    expires_at = now + _expires_in(answer)
    raw_scope = answer.get("scope")
    try:
        scopes = requested if raw_scope is None else parse_scopes(raw_scope)
    except ValueError as exc:
        raise TokenEndpointError(f"the token endpoint's 'scope' is malformed: {exc}") from None
    return TokenSet(access_token=access, refresh_token=refresh, expires_at=expires_at, scopes=scopes, id_token=id_token)


def clean_description(value: object, *, hide: Iterable[str] = ()) -> str | None:
    """A server's ``error_description`` fit for a message: one line, printable, at most 300 characters.

    Every string of ``hide`` (what the request sent: a code, a refresh token, the client
    secret) is cut out, should the server echo it.
    """
    if not isinstance(value, str):
        return None
    text = "".join(ch if ch.isprintable() else " " for ch in value)
    for secret in hide:
        if secret:
            text = text.replace(secret, "[hidden]")
    text = text.strip()
    if len(text) > _MAX_DESCRIPTION:
        text = text[: _MAX_DESCRIPTION - 1] + "…"
    return text or None


def oauth_refusal(answer: Mapping[str, Any], *, status: int | None, hide: Iterable[str] = ()) -> OAuthRefused | None:
    """The :class:`OAuthRefused` an RFC 6749 error object describes, or ``None`` if it is not one."""
    error = answer.get("error")
    if not isinstance(error, str) or not _ERROR_CODE.fullmatch(error):
        return None
    return OAuthRefused(error, clean_description(answer.get("error_description"), hide=hide), status=status)


@dataclass(frozen=True)
class TokenRequest:
    """One call of the token endpoint, ready to send; the ``repr`` shows only the grant type."""

    grant_type: str
    form: Mapping[str, str]
    requested: frozenset[str]

    def __repr__(self) -> str:
        return f"TokenRequest(grant_type={self.grant_type!r})"

    def body(self) -> bytes:
        """The form-encoded body."""
        return urlencode(dict(self.form)).encode("ascii")


FORM_HEADERS: Mapping[str, str] = {
    "Content-Type": "application/x-www-form-urlencoded",
    "Accept": "application/json",
}


def read_token_answer(
    status: int, body: bytes, *, now: float, requested: frozenset[str], hide: Iterable[str] = ()
) -> TokenSet:
    """Turn the token endpoint's answer into a :class:`TokenSet` or the typed error it means.

    200 gives tokens. An RFC 6749 error object (any 4xx, PagerDuty uses 400 and 401) raises
    :class:`OAuthRefused`; anything else raises :class:`TokenEndpointError`.
    """
    if status == 200:
        return parse_token_response(
            read_json_object(body, limit=MAX_TOKEN_RESPONSE, what="the token endpoint"), now=now, requested=requested
        )
    refusal: OAuthRefused | None = None
    if 400 <= status < 500:
        try:
            refusal = oauth_refusal(
                read_json_object(body, limit=MAX_TOKEN_RESPONSE, what="the token endpoint"), status=status, hide=hide
            )
        except TokenEndpointError:
            refusal = None
    if refusal is not None:
        raise refusal
    raise TokenEndpointError(f"the token endpoint answered HTTP {status} without an OAuth error", status=status)
