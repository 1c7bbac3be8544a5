"""Loaded by every Python process a docs snippet starts: only loopback may be reached.

The docs harness puts this folder first on ``PYTHONPATH`` while a page runs, so a snippet
that starts ``python`` or ``pdconnect`` in a subprocess is held to the same rule as the test
process (``_loopback_only`` in ``tests/conftest.py``): name lookups and connections to any
host but this machine fail with :class:`NetworkRefused`.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any


class NetworkRefused(OSError):
    """A docs snippet's subprocess tried to reach a host other than this machine."""


def _local(host: object) -> bool:
    if host in (None, "localhost") or (isinstance(host, str) and host.endswith(".localhost")):
        return True
    try:
        return ipaddress.ip_address(str(host).strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return False


_original_getaddrinfo = socket.getaddrinfo
_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if not _local(host.decode() if isinstance(host, bytes) else host):
        raise NetworkRefused(f"docs snippets may not look up {host!r}: only loopback is allowed")
    return _original_getaddrinfo(host, *args, **kwargs)


def _check(sock: socket.socket, address: Any) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        raise NetworkRefused(f"docs snippets may not connect to {address!r}: only loopback is allowed")


def _connect(self: socket.socket, address: Any) -> None:
    _check(self, address)
    _original_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    _check(self, address)
    return _original_connect_ex(self, address)


socket.getaddrinfo = _getaddrinfo  # type: ignore[assignment]
socket.socket.connect = _connect  # type: ignore[method-assign]
socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]
