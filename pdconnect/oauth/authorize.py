"""The authorization request (the URL the browser goes to) and the callback PagerDuty sends back."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from pdconnect.errors import CallbackError
from pdconnect.oauth.errors import OAuthCancelled
from pdconnect.oauth.tokens import clean_description, oauth_refusal
from pdconnect.query import QueryInput, normalize_query, single_value

#: An authorization code longer than this is not PagerDuty's.
MAX_CODE_LENGTH = 2048
_CODE = re.compile(r"[\x21-\x7e]+", re.ASCII)
_ERROR = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,100}", re.ASCII)


@dataclass(frozen=True)
class AuthorizeRequest:
    """Where to send the user's browser (``url``) and the ``state`` it carries.

    The state is also in the URL; it is given apart for a vendor that keeps it in the session
    as well (see ``state=`` of :meth:`~pdconnect.oauth.PagerDutyOAuth.finish`). Neither holds
    the PKCE verifier in the clear. The ``repr`` shows neither.
    """

    url: str
    state: str

    def __repr__(self) -> str:
        return "AuthorizeRequest(url='<hidden>', state='<hidden>')"


def build_authorize_url(
    authorize_url: str, *, client_id: str, redirect_uri: str, scope: str, code_challenge: str, state: str
) -> str:
    """``authorize_url`` with the authorization-code request of RFC 6749 4.1.1 and PKCE (RFC 7636 4.3)."""
    query = {
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "scope": scope,
        "code_challenge": code_challenge,
        "code_challenge_method": "S256",
        "state": state,
    }
    return f"{authorize_url}?{urlencode(query)}"


@dataclass(frozen=True)
class Callback:
    """A callback read strictly: a ``code`` on approval, with the ``state`` if PagerDuty echoed it."""

    code: str
    state: str | None

    def __repr__(self) -> str:
        return "Callback(code='<hidden>')"


def read_state(query: QueryInput) -> tuple[dict[str, list[str]], str | None]:
    """The callback's parameters and its ``state`` if it has one, unjudged: the state's checks do that.

    A repeated ``state`` is a :class:`~pdconnect.errors.CallbackError` (which one would count?).
    """
    params = normalize_query(query)
    values = params.get("state")
    if not values:
        return params, None
    if len(values) > 1:
        raise CallbackError("the callback repeats the 'state' parameter", parameter="state")
    return params, values[0]


def read_callback(params: Mapping[str, list[str]], state: str | None) -> Callback:
    """The outcome a callback's parameters describe, once its state verified.

    Raises :class:`~pdconnect.oauth.errors.OAuthCancelled` for ``error=access_denied``,
    :class:`~pdconnect.oauth.errors.OAuthRefused` for another ``error``, and
    :class:`~pdconnect.errors.CallbackError` for a malformed, repeated or missing parameter.
    """
    error = single_value(params, "error", max_length=100, required=False)
    if error is not None:
        if not _ERROR.fullmatch(error):
            raise CallbackError("the callback's 'error' parameter is malformed", parameter="error")
        # Only shown to the user, cleaned: a strange description must not turn a cancel into an error.
        descriptions = params.get("error_description") or []
        description = clean_description(descriptions[0]) if len(descriptions) == 1 else None
        if error == "access_denied":
            raise OAuthCancelled(description)
        refusal = oauth_refusal({"error": error, "error_description": description}, status=None)
        assert refusal is not None
        raise refusal
    code = single_value(params, "code", max_length=MAX_CODE_LENGTH)
    assert code is not None
    if not _CODE.fullmatch(code):
        raise CallbackError("the callback's 'code' parameter is malformed", parameter="code")
    return Callback(code=code, state=state)
