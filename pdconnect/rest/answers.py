"""Reading PagerDuty's REST answers: JSON objects, error messages, and what a 403 lacks.

PagerDuty's error answer is ``{"error": {"message", "code", "errors": [...]}}``. Its text is
kept to one line, cut, and stripped of the credential's tokens before it goes in an exception.
"""

from __future__ import annotations

import json
from typing import Any

from pdconnect.oauth.credentials import Credential
from pdconnect.rest.errors import Forbidden, NotFound, RestError, RestUnavailable
from pdconnect.storage import clean_reason
from pdconnect.transport import HttpResponse


def read_object(data: dict[str, Any], key: str, method: str, path: str) -> dict[str, Any]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise RestError(f"PagerDuty's answer holds no {key}", status=200, method=method, path=path)
    return value


def pagerduty_said(
    response: HttpResponse, credential: Credential, *, sent_token: str | None = None
) -> tuple[str | None, tuple[str, ...]]:
    """PagerDuty's error message and errors, one line each, without the credential's tokens or ``sent_token``.

    ``sent_token`` is the token the request carried: by the time the answer is read, another
    caller may have refreshed, and the credential read then no longer holds it.
    """
    try:
        data = json.loads(response.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, ()
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None, ()
    # Longest first: a token inside the other would otherwise leave the rest of that one.
    tokens = sorted(
        filter(None, {credential.access_token, credential.refresh_token, sent_token}), key=len, reverse=True
    )

    def clean(text: object) -> str | None:
        if not isinstance(text, str) or not text.strip():
            return None
        for token in tokens:
            text = text.replace(token, "****")
        return clean_reason(text)[:300]

    message = clean(error.get("message"))
    raw_errors = error.get("errors")
    errors = tuple(e for e in (clean(x) for x in raw_errors[:10]) if e) if isinstance(raw_errors, list) else ()
    return message, errors


def covers(granted: frozenset[str], needed: str) -> bool:
    """Whether ``granted`` scopes allow what ``needed`` (a Scoped app's ``resource.access``) names.

    A Classic app's ``write`` covers everything, its ``read`` every ``*.read``; a Scoped app's
    ``x.write`` covers ``x.read``.
    """
    resource, _, access = needed.rpartition(".")
    if "write" in granted or needed in granted:
        return True
    if access == "read":
        return "read" in granted or f"{resource}.write" in granted
    return False


def error_for(
    response: HttpResponse,
    method: str,
    path: str,
    *,
    scope: str,
    credential: Credential,
    sent_token: str | None = None,
) -> RestError:
    message, errors = pagerduty_said(response, credential, sent_token=sent_token)
    status = response.status
    said = f": {message}" if message else ""
    if status == 403:
        text = " ".join([message or "", *errors]).lower()
        lacks_scope = "scope" in text or not covers(credential.scopes, scope)
        return Forbidden(
            missing="scope" if lacks_scope else "role",
            needed_scope=scope if lacks_scope else None,
            method=method,
            path=path,
            pagerduty_message=message,
            errors=errors,
        )
    kind = NotFound if status == 404 else RestUnavailable if status == 429 or status >= 500 else RestError
    # Redirects are never followed: one would carry the bearer token to wherever it points.
    what = " (a redirect, not followed)" if 300 <= status < 400 else ""
    return kind(
        f"PagerDuty answered {status}{what} to {method} {path}{said}",
        status=status,
        method=method,
        path=path,
        pagerduty_message=message,
        errors=errors,
    )
