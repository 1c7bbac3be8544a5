"""PagerDuty's base URLs, and the rules for URLs a vendor hands to pdconnect.

The library never redirects to a URL taken from a request: callback and redirect URLs come
from the vendor's own configuration and are checked here before use.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pdconnect.errors import UnsafeURLError
from pdconnect.integration import Region

#: Legacy PagerDuty Connect (the Connect guide, seed 004).
CONNECT_BASE_URL = "https://connect.pagerduty.com"
#: The install flow ("Simple Install Flow", PagerDuty developer docs, Events Integration).
INSTALL_BASE_URL = "https://app.pagerduty.com"
#: Events API hosts per region (PagerDuty support, "Service Regions").
EVENTS_BASE_URLS: Mapping[Region, str] = {
    Region.US: "https://events.pagerduty.com",
    Region.EU: "https://events.eu.pagerduty.com",
}

#: Local redirect targets longer than this are refused (no browser needs more).
MAX_REDIRECT_LENGTH = 2048


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost`` and for literal loopback addresses (``127.0.0.0/8``, ``::1``).

    The host is parsed as an address, never matched by prefix: ``127.evil.example`` is a DNS
    name that anybody can point anywhere, so it is not loopback. Other names under
    ``.localhost`` are refused too, since Python's resolver may send them to DNS, and so is a
    trailing dot.
    """
    if not isinstance(host, str) or not host:
        return False
    host = host.lower()
    if host == "localhost":
        return True
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _has_unsafe_characters(value: str) -> bool:
    r"""True if ``value`` holds anything a browser and Python may read differently.

    That is any character outside printable ASCII: control characters (which Werkzeug and
    browsers strip, so ``/\t/evil.example`` becomes ``//evil.example``), spaces, non-ASCII
    letters, and the backslash, which browsers read as ``/``.
    """
    return any(not ("\x21" <= ch <= "\x7e") or ch == "\\" for ch in value)


def safe_local_redirect(target: object, *, default: str = "/") -> str:
    """Return ``target`` if the browser may be redirected there, else ``default``.

    Only a path on the same site qualifies: a string that starts with one ``/`` (not ``//``,
    which is another host), holds printable ASCII only (no backslash, no control character,
    no space), has no scheme or host once parsed, and is at most
    :data:`MAX_REDIRECT_LENGTH` characters. Anything else, including ``None`` and other types,
    gives ``default``. Use it for every ``next``-style parameter.
    """
    if not isinstance(target, str) or not target or len(target) > MAX_REDIRECT_LENGTH:
        return default
    if not target.startswith("/") or target.startswith("//") or _has_unsafe_characters(target):
        return default
    try:
        parts = urlsplit(target)
    except ValueError:
        return default
    if parts.scheme or parts.netloc:
        return default
    return target


def safe_link_href(url: object) -> str | None:
    """Return ``url`` if it may be rendered as a clickable link, else ``None``.

    Only absolute ``http`` and ``https`` URLs with a host qualify: ``javascript:``, ``data:``,
    ``vbscript:``, relative and protocol-relative links are refused, and so is anything with
    control characters, spaces, backslashes or credentials (``https://bank.example@evil.example``
    shows one host and opens another). Callers render a refused URL as plain text.
    """
    if not isinstance(url, str) or not url or len(url) > MAX_REDIRECT_LENGTH or _has_unsafe_characters(url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host or "@" in parts.netloc:
        return None
    return url


def check_callback_url(url: str, *, name: str = "callback URL") -> str:
    """Return ``url`` if PagerDuty may send the user's browser there, else raise.

    The URL must be absolute ``https`` (``http`` only for localhost and loopback addresses),
    with a host, no credentials and no fragment. Raises
    :class:`~pdconnect.errors.UnsafeURLError`.
    """
    if not isinstance(url, str) or not url:
        raise UnsafeURLError(f"{name} must be a non-empty string")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise UnsafeURLError(f"{name} must not contain spaces or control characters")
    if "\\" in url:
        raise UnsafeURLError(f"{name} must not contain a backslash (browsers read it as '/')")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError as exc:
        raise UnsafeURLError(f"{name} is not a valid URL") from exc
    if parts.scheme not in ("https", "http") or not host:
        raise UnsafeURLError(f"{name} must be an absolute https URL")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise UnsafeURLError(f"{name} must use https (http is allowed only for localhost)")
    if parts.username is not None or parts.password is not None:
        raise UnsafeURLError(f"{name} must not contain credentials")
    if parts.fragment or url.endswith("#"):
        raise UnsafeURLError(f"{name} must not contain a fragment")
    return url


def check_base_url(url: str, *, name: str = "base URL") -> str:
    """Check a PagerDuty (or sandbox) base URL and return it without a trailing slash."""
    if not isinstance(url, str):
        raise UnsafeURLError(f"{name} must be a string")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise UnsafeURLError(f"{name} is not a valid URL") from exc
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeURLError(f"{name} must be an absolute http(s) URL")
    if parts.query or parts.fragment:
        raise UnsafeURLError(f"{name} must not carry a query or fragment")
    return url.rstrip("/")


def add_query_params(url: str, params: Mapping[str, str]) -> str:
    """Append ``params`` to ``url``'s query, keeping the parameters it already has."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query.extend(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def add_path_segment(url: str, segment: str) -> str:
    """Append one path segment to ``url`` (before its query string)."""
    parts = urlsplit(url)
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit(parts._replace(path=path + segment))


# Query parameters that can carry a secret: libpq's ``password`` and ``sslpassword``, a
# SQLCipher ``key``, tokens in a relay's URL. Matched by part of the name, case-insensitively.
_SECRET_QUERY_WORDS = ("pass", "pwd", "secret", "token", "key", "auth", "credential", "signature")


def is_secret_query_key(name: str) -> bool:
    """Whether a URL query parameter named ``name`` may hold a secret (and must be masked when shown)."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_QUERY_WORDS)


def masked_url(url: str) -> str:
    """``url`` for messages, logs and reprs: a password in the userinfo and every query
    parameter that may hold a secret replaced by ``***``; an unreadable URL by a placeholder."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, colon, _password = userinfo.partition(":")
            netloc = f"{user}{':***' if colon else ''}@{hostport}"
        query = parts.query
        if query:
            pairs = parse_qsl(query, keep_blank_values=True)
            query = urlencode([(k, "***" if is_secret_query_key(k) else v) for k, v in pairs], safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "(unreadable URL)"
