"""Where a REST request may go: the account's own REST base, and ids that stay one path segment.

The bearer token goes with every request, so a URL is built here from a path pdconnect wrote
and ids a caller passed, never from a link in an answer: a path that names another host or
climbs out of the base is refused (:class:`~pdconnect.rest.errors.UnsafeRestURL`), and an id
that is not a PagerDuty id is :class:`~pdconnect.errors.InvalidData` before any request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit

from pdconnect.errors import InvalidData, UnsafeURLError
from pdconnect.oauth.app import REST_BASES, normalize_base
from pdconnect.oauth.credentials import Credential
from pdconnect.rest.errors import UnsafeRestURL
from pdconnect.text import text_problem
from pdconnect.urls import check_base_url

# PagerDuty ids are letters and digits ("PABC123"); incidents are also found by number.
_ID = re.compile(r"[A-Za-z0-9_\-.:~]{1,255}", re.ASCII)


def rest_url(
    credential: Credential,
    path: str,
    query: Mapping[str, object] | None = None,
    *,
    allowed_bases: Mapping[str, str] = REST_BASES,
) -> str:
    """The URL of ``path`` on the credential's REST base; raises :class:`~pdconnect.rest.errors.UnsafeRestURL`.

    The base must be one of ``allowed_bases`` (REST base -> region, an
    :class:`~pdconnect.oauth.app.OAuthApp`'s ``rest_bases``; PagerDuty's two by default) and
    map to the credential's region: a stored base is data, and a row edited to name another
    host must not receive the token. ``path`` must be a path (``/services``), never a URL: a
    link from an answer that names another host, scheme or port, or climbs out of the base's
    path, is refused, so the token never leaves the account's REST base.
    """
    try:
        base = check_base_url(credential.account.rest_base_url, name="rest_base_url")
        known = normalize_base(base)
    except UnsafeURLError as exc:
        raise UnsafeRestURL(str(exc), status=None, method="-", path="-") from None
    allowed = {normalize_base(url): region for url, region in allowed_bases.items()}
    if allowed.get(known) != credential.account.region:
        raise UnsafeRestURL(
            f"the credential's REST base is not a configured PagerDuty REST base for region "
            f"{credential.account.region!r}",
            status=None,
            method="-",
            path="-",
        )
    parts = urlsplit(path) if isinstance(path, str) else None
    if (
        parts is None
        or parts.scheme
        or parts.netloc
        or not path.startswith("/")
        or path.startswith("//")
        or any(segment in (".", "..") for segment in path.split("/"))
        or any(ord(ch) < 0x21 or ord(ch) > 0x7E or ch in "\\?#" for ch in path)
    ):
        raise UnsafeRestURL(
            "refusing to send the account's token outside its REST base", status=None, method="-", path="-"
        )
    suffix = f"?{urlencode(query)}" if query else ""
    return f"{base}{path}{suffix}"


def check_text(value: object, name: str) -> str:
    problem = text_problem(value, max_length=255)
    if problem is not None:
        raise InvalidData(f"{name} {problem}", field=name)
    assert isinstance(value, str)
    return value


def segment(value: object) -> str:
    """``value`` as one path segment: a PagerDuty id (letters, digits, ``-_.:~``), never ``.`` or ``..``.

    Escaping is not enough: ``requests`` unescapes ``%2E``, and a segment ``..`` would climb
    to another endpoint with the account's token.
    """
    checked = check_text(value, "id")
    if not _ID.fullmatch(checked) or not checked.strip("."):
        raise InvalidData("id must be a PagerDuty id (letters, digits, '-', '_', '.', ':', '~')", field="id")
    return checked
