"""Loaded by every Python process a docs snippet starts: only loopback may be reached.

The docs harness puts this folder first on ``PYTHONPATH`` while a page runs, so a snippet
that starts ``python`` or ``pdconnect`` in a subprocess is held to the same rule as the test
process (``_loopback_only`` in ``tests/conftest.py``): name lookups and connections to any
host but this machine fail with :class:`NetworkRefused`: ``connect``, ``connect_ex``,
``sendto`` and ``sendmsg`` to an address, and ``getaddrinfo``, ``gethostbyname(_ex)``,
``gethostbyaddr`` and ``getnameinfo`` of a name. It cannot hold a process that skips
``sitecustomize`` (``python -I``, ``-E``, ``-S``, or an environment without this folder on
``PYTHONPATH``): the harness refuses a page that starts one.
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
_original_gethostbyname = socket.gethostbyname
_original_gethostbyname_ex = socket.gethostbyname_ex
_original_gethostbyaddr = socket.gethostbyaddr
_original_getnameinfo = socket.getnameinfo
_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex
_original_sendto = socket.socket.sendto
_original_sendmsg = socket.socket.sendmsg


def _lookup(host: Any) -> None:
    if not _local(host.decode() if isinstance(host, bytes) else host):
        raise NetworkRefused(f"docs snippets may not look up {host!r}: only loopback is allowed")


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    _lookup(host)
    return _original_getaddrinfo(host, *args, **kwargs)


def _gethostbyname(host: Any) -> Any:
    _lookup(host)
    return _original_gethostbyname(host)


def _gethostbyname_ex(host: Any) -> Any:
    _lookup(host)
    return _original_gethostbyname_ex(host)


def _gethostbyaddr(host: Any) -> Any:
    _lookup(host)
    return _original_gethostbyaddr(host)


def _getnameinfo(address: Any, flags: int) -> Any:
    _lookup(address[0])
    return _original_getnameinfo(address, flags)


def _check(sock: socket.socket, address: Any) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _local(address[0]):
        raise NetworkRefused(f"docs snippets may not connect to {address!r}: only loopback is allowed")


def _connect(self: socket.socket, address: Any) -> None:
    _check(self, address)
    _original_connect(self, address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    _check(self, address)
    return _original_connect_ex(self, address)


def _sendto(self: socket.socket, data: Any, *args: Any) -> int:
    _check(self, args[-1])  # sendto(data, address) or sendto(data, flags, address)
    return _original_sendto(self, data, *args)


def _sendmsg(self: socket.socket, buffers: Any, *args: Any) -> int:
    if len(args) >= 3 and args[2] is not None:  # sendmsg(buffers, ancdata, flags, address)
        _check(self, args[2])
    return _original_sendmsg(self, buffers, *args)


socket.getaddrinfo = _getaddrinfo  # type: ignore[assignment]
socket.gethostbyname = _gethostbyname
socket.gethostbyname_ex = _gethostbyname_ex
socket.gethostbyaddr = _gethostbyaddr
socket.getnameinfo = _getnameinfo
socket.socket.connect = _connect  # type: ignore[method-assign]
socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]
socket.socket.sendto = _sendto  # type: ignore[method-assign,assignment]
socket.socket.sendmsg = _sendmsg  # type: ignore[method-assign,assignment]
