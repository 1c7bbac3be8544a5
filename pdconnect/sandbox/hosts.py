"""Which ``Host`` headers the sandbox answers: its defence against DNS rebinding.

A web page on ``evil.example`` whose name is made to resolve to 127.0.0.1 can send requests
to the sandbox from the developer's browser *and read the answers*, as same-origin: the
Origin checks do not help, since the browser thinks it is talking to ``evil.example``. What
gives it away is the ``Host`` header, which carries the attacker's name. So the sandbox
answers only a loopback name or address (``localhost``, ``127.x.x.x`` in full, ``[::1]``),
or a name it was started with, and only on its own port.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

#: The longest ``Host`` header looked at; a longer one is refused unread.
MAX_HOST_HEADER = 300
#: A DNS name: labels of letters, digits and hyphens, not starting or ending with a hyphen.
_NAME = re.compile(r"(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_IPV4 = re.compile(r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}")
#: A last label that makes browsers and resolvers read a name as an IPv4 address (``127.1``, ``0x7f.1``).
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
_PORT = re.compile(r"[0-9]{1,5}")


class HostError(ValueError):
    """A host name the sandbox will not take as an allowed host; the message says why."""


def normalise_host(value: str) -> str:
    """``value`` as the sandbox compares hosts: a lower-case DNS name, a dotted-quad IPv4
    address, or an IPv6 address in brackets (``[::1]``). Raises :class:`HostError`.

    Only these exact forms are taken: no port, no userinfo, no trailing dot, and none of the
    short or octal IPv4 spellings (``127.1``, ``0x7f.1``) that resolvers read as addresses.
    """
    host = value.strip().lower() if value.isascii() else value
    if host.startswith("[") and host.endswith("]"):
        try:
            return f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            raise HostError(f"not an IPv6 address: {value[:60]!r}") from None
    if ":" in host:
        try:
            return f"[{ipaddress.IPv6Address(host).compressed}]"
        except ValueError:
            raise HostError(f"not a host name (give no port): {value[:60]!r}") from None
    if _IPV4.fullmatch(host):
        return host
    if not host.isascii() or not _NAME.fullmatch(host) or _NUMERIC_LABEL.fullmatch(host.rpartition(".")[2]):
        raise HostError(f"not a host name: {value[:60]!r}")
    return host


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class HostCheck:
    """Decides whether a request's ``Host`` header names this sandbox.

    ``allowed`` are extra names (or addresses) besides loopback, normalised by
    :func:`normalise_host`. ``port`` is the port the server listens on; when it is known the
    header's port (or the scheme's default, when it gives none) must be it. ``None``, for an
    application not behind a listening server (a WSGI test client), checks the name only.
    """

    def __init__(self, allowed: Iterable[str] = (), *, port: int | None = None) -> None:
        self.allowed = frozenset(normalise_host(name) for name in allowed)
        self.port = port

    def refusal(self, header: str | None, *, scheme: str = "http") -> str | None:
        """Why a request with this ``Host`` header is refused, or ``None`` when it is fine."""
        if header is None or not header:
            return "The request has no Host header."
        if len(header) > MAX_HOST_HEADER or not header.isascii() or not header.isprintable():
            return "The Host header is not a host name."
        host, port = _split(header)
        try:
            name = normalise_host(host) if host == host.strip() else None
        except HostError:
            name = None
        if name is None or port is False:
            return "The Host header is not a host name."
        if not _is_loopback(name) and name not in self.allowed:
            return "This sandbox does not answer to that host name (see --allowed-host)."
        if self.port is not None:
            given = port if isinstance(port, int) else (443 if scheme == "https" else 80)
            if given != self.port:
                return "This sandbox does not listen on the port the Host header names."
        return None


def _split(header: str) -> tuple[str, int | bool | None]:
    """``host[:port]`` as (host, port); the port ``None`` when absent, ``False`` when malformed."""
    if header.startswith("["):
        end = header.find("]")
        if end < 0:
            return header, False
        host, rest = header[: end + 1], header[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            return host, False
        text = rest[1:]
    else:
        host, sep, text = header.rpartition(":")
        if not sep:
            return header, None
    if not _PORT.fullmatch(text) or not 0 < int(text) < 65536:
        return host, False
    return host, int(text)
