"""PagerDuty's base URLs, and the rules for URLs a vendor hands to pdconnect.

The library never redirects to a URL taken from a request: callback and redirect URLs come
from the vendor's own configuration and are checked here before use.
"""

from __future__ import annotations

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

_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback_host(host: str | None) -> bool:
    """True for ``localhost``, ``*.localhost`` and the loopback addresses."""
    if not host:
        return False
    host = host.lower()
    return host in _LOOPBACK_HOSTS or host.endswith(".localhost") or host.startswith("127.")


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
