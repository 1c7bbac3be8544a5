"""Acme's HTTP check: one GET of a monitor's URL that cannot be turned on Acme's own network.

A monitor's URL comes from a user, but the check runs inside Acme's network. Fetched naively,
``http://169.254.169.254/`` (the cloud's metadata service), ``http://127.0.0.1:6379/`` or
``http://10.0.0.5/admin`` would be reached from there, and the answer read back in the
monitor's status: server-side request forgery. So the host is resolved here, every address it
resolves to must be public unless the operator allows its network
(``ACME_MONITOR_ALLOWED_NETWORKS``), and the connection goes to the address that was checked,
so a DNS answer that changes between the check and the connection (rebinding) cannot win.
Redirects are followed here too, a few at most, each hop checked the same way.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from pdconnect.urls import safe_link_href

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

TIMEOUT_SECONDS = 5.0
DEADLINE_SECONDS = 10.0
MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IANA's special-purpose registries, written out: the standard library's tables are incomplete
# before Python 3.12.4 (192.0.0.8 counted as global, for one).
_NOT_PUBLIC = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
        "3fff::/20", "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip
# What the C library (and so every browser and HTTP client) reads as an IPv4 address:
# 2130706433, 0x7f.1, 017700000001, 127.1. Parsed here, never handed to a resolver (a host
# of numbers only, like 1.2.3.4.5, is no name either).
_NUMERIC_IPV4 = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+))*\.?", re.IGNORECASE | re.ASCII)


class TargetRefused(Exception):
    """The URL may not be checked from here; the message says why, for the monitor's owner."""


@dataclass(frozen=True)
class HttpOutcome:
    """What one check saw: the final status, or why there was none."""

    status: int | None
    reason: str
    elapsed_ms: float
    error: str | None = None
    refused: bool = False


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (``10.0.0.0/8``, ``::1/128``, or one address) as networks; ValueError names a bad one."""
    networks = []
    for position, value in enumerate(values, 1):
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ValueError(f"item {position} is not a network (like 10.0.0.0/8) or an address") from None
    return tuple(networks)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries and would reach (mapped, 6to4, Teredo, NAT64)."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is on the public internet (not private, loopback, link-local, ...)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and not is_public(embedded):
            return False
    if any(address.version == network.version and address in network for network in _NOT_PUBLIC):
        return False
    return address.is_global and not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _normal(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def may_connect(address: IPAddress, networks: Sequence[Network]) -> bool:
    """Whether a check may connect to ``address``: public, or in one of the operator's ``networks``."""
    address = _normal(address)
    return is_public(address) or any(address.version == n.version and address in n for n in networks)


def _is_localhost(host: str) -> bool:
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` stands for; a literal (in any spelling) without asking a resolver."""
    literal = host.strip("[]")
    try:
        return [ipaddress.ip_address(literal)]
    except ValueError:
        pass
    if _is_localhost(host):  # loopback by definition (RFC 6761), whatever a resolver says
        return [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    if _NUMERIC_IPV4.fullmatch(host):
        try:
            return [ipaddress.IPv4Address(socket.inet_aton(host))]
        except OSError:
            raise TargetRefused(f"{host[:60]} is not a valid address") from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise TargetRefused(f"cannot resolve {host[:60]}") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetRefused(f"cannot resolve {host[:60]}")
    return addresses


def checked_addresses(host: str, port: int, networks: Sequence[Network]) -> list[IPAddress]:
    """The addresses to connect to for ``host``; TargetRefused if any of them is not allowed.

    All of them, not just the first: a name with one public and one private address would
    otherwise reach the private one whenever the public one is down.
    """
    addresses = resolve(host, port)
    if not all(may_connect(address, networks) for address in addresses):
        raise TargetRefused(
            f"{host[:60]} is a private, loopback or link-local address, which Acme does not check"
            " (an operator can allow a network with ACME_MONITOR_ALLOWED_NETWORKS)"
        )
    return addresses


def _split(url: str) -> tuple[str, str, int, str]:
    """Scheme, host, port and request target of an http(s) URL; TargetRefused for anything else."""
    if not url.isascii():
        raise TargetRefused("write the URL in ASCII: a host as xn--..., other characters %-escaped")
    if safe_link_href(url) is None:
        raise TargetRefused("not an http:// or https:// URL with a host")
    parts = urlsplit(url)
    host = parts.hostname
    port = parts.port or (443 if parts.scheme == "https" else 80)
    if not host:
        raise TargetRefused("not an http:// or https:// URL with a host")
    try:  # empty or over-long labels: what no resolver takes
        host.encode("idna")
    except UnicodeError:
        raise TargetRefused("not a valid host name") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port, target


def check_url(url: str, *, networks: Sequence[Network] = ()) -> None:
    """Validate a monitor's ``url`` without connecting or resolving; TargetRefused says why not.

    A literal address is checked now; a name is checked each time it is resolved, at check time.
    """
    _scheme, host, port, _target = _split(url)
    if _NUMERIC_IPV4.fullmatch(host) or ":" in host or _is_localhost(host):
        checked_addresses(host, port, networks)


def _connect(scheme: str, host: str, port: int, addresses: Sequence[IPAddress], timeout: float) -> socket.socket:
    """A connection to the first of ``addresses`` that answers (TLS verified against ``host``)."""
    error: OSError | None = None
    for address in addresses:
        try:
            sock = socket.create_connection((str(address), port), timeout=timeout)
        except OSError as exc:
            error = exc
            continue
        if scheme == "https":
            try:
                return ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            except (OSError, ValueError):
                sock.close()
                raise
        return sock
    assert error is not None
    raise error


def _get_once(url: str, *, timeout: float, networks: Sequence[Network], deadline: float) -> tuple[int, str, str | None]:
    scheme, host, port, target = _split(url)
    addresses = checked_addresses(host, port, networks)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("the check took too long")
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    connection.sock = sock = _connect(scheme, host, port, addresses, min(timeout, remaining))
    # The timeout is per read: a server trickling a byte at a time would hold the schedule (one
    # thread for every monitor) for as long as it liked. At the deadline the socket is shut.
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(remaining, expire)
    timer.daemon = True
    timer.start()
    try:
        connection.request("GET", target, headers={"User-Agent": "AcmeMonitoring/1.0", "Accept": "*/*"})
        response = connection.getresponse()
        if expired.is_set():  # the shutdown can read as the end of the headers: not an answer
            raise TimeoutError("the check took too long")
        return response.status, response.reason, response.getheader("Location")
    except (OSError, http.client.HTTPException):
        if expired.is_set():
            raise TimeoutError("the check took too long") from None
        raise
    finally:
        timer.cancel()
        connection.close()


def fetch(
    url: str,
    *,
    networks: Sequence[Network] = (),
    timeout: float = TIMEOUT_SECONDS,
    deadline: float = DEADLINE_SECONDS,
) -> HttpOutcome:
    """GET ``url`` (following up to :data:`MAX_REDIRECTS` redirects, each checked) and report.

    ``timeout`` bounds each connect and read; ``deadline`` the whole check, redirects included.
    """
    started = time.perf_counter()
    deadline_at = time.monotonic() + deadline

    def elapsed() -> float:
        return (time.perf_counter() - started) * 1000

    current = url
    for _hop in range(MAX_REDIRECTS + 1):
        try:
            status, reason, location = _get_once(current, timeout=timeout, networks=networks, deadline=deadline_at)
        except TargetRefused as exc:
            return HttpOutcome(None, "refused", elapsed(), error=f"Refused: {exc}", refused=True)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return HttpOutcome(None, "no answer", elapsed(), error=type(exc).__name__)
        if status not in _REDIRECTS or not location:
            return HttpOutcome(status, reason, elapsed())
        current = urljoin(current, location)
    return HttpOutcome(None, "too many redirects", elapsed(), error=f"more than {MAX_REDIRECTS} redirects")
