"""The HTTP layer under the sender: one POST, one answer, no policy.

:class:`RequestsTransport` is the default: a ``requests.Session`` (passed in, so vendors'
proxies, adapters and ``responses`` in their tests all apply), keep-alive, explicit connect
and read timeouts, redirects never followed. :class:`HttpClientTransport` is a leaner path
over ``http.client`` for high-volume workers. Any object with the same ``post`` method can
take its place.

Both read at most :data:`MAX_RESPONSE_BYTES` of an answer: PagerDuty's are a few hundred
bytes, and a proxy or a hostile server that streams gigabytes (or a compression bomb) must
not fill the worker's memory. What is cut is dropped, with the connection.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

#: The most of an answer's body either transport reads (1 MiB; the sender reads 64 KiB of it).
MAX_RESPONSE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class HttpResponse:
    """The parts of an HTTP answer the sender reads. Header names are lowercase."""

    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class TransportError(Exception):
    """No HTTP answer: connection refused or reset, timeout, DNS or TLS failure.

    ``reason`` is a short description without the request body. ``retryable`` is false for
    failures another attempt cannot mend, such as a malformed URL.
    """

    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class Transport(Protocol):
    """Sends one POST and returns the answer, or raises :class:`TransportError`."""

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: tuple[float, float]) -> HttpResponse: ...

    def close(self) -> None: ...


class RequestsTransport:
    """A :class:`Transport` over a ``requests.Session``.

    When no session is given, one is made with a connection pool of ``pool_size``
    connections per host, enough for that many threads sharing the sender. A session that
    is passed in is used as it is and not closed by :meth:`close`.
    """

    def __init__(self, session: requests.Session | None = None, *, pool_size: int = 16) -> None:
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self.session = session

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: tuple[float, float]) -> HttpResponse:
        try:
            response = self.session.post(
                url,
                data=body,
                headers=dict(headers),
                timeout=timeout,
                allow_redirects=False,
                # requests lets REQUESTS_CA_BUNDLE override the session's own setting unless it is passed.
                verify=self.session.verify,
                stream=True,
            )
            with response:  # a body read to its end gives the connection back; a cut one closes it
                data = _read_capped(response)
        except requests.Timeout as exc:
            raise TransportError(f"timed out ({type(exc).__name__})") from exc
        except requests.ConnectionError as exc:
            raise TransportError(f"connection failed ({type(exc).__name__})") from exc
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ) as exc:
            raise TransportError(f"bad URL ({type(exc).__name__})", retryable=False) from exc
        except requests.RequestException as exc:
            raise TransportError(f"request failed ({type(exc).__name__})") from exc
        return HttpResponse(
            status=response.status_code,
            body=data,
            headers={k.lower(): v for k, v in response.headers.items()},
        )

    def close(self) -> None:
        if self._owns_session:
            self.session.close()


def _read_capped(response: requests.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            break
    return b"".join(chunks)[:MAX_RESPONSE_BYTES]


def default_worker_transport() -> Transport:
    """The leaner :class:`HttpClientTransport`, unless a proxy is set in the environment.

    ``http.client`` does not read ``HTTPS_PROXY`` and friends; when one is set, a worker
    needs ``requests`` to reach PagerDuty through it.
    """
    proxies = urllib.request.getproxies()
    if proxies.get("https") or proxies.get("http") or proxies.get("all"):
        return RequestsTransport()
    return HttpClientTransport()


class HttpClientTransport:
    """A leaner :class:`Transport` over the standard library's ``http.client``.

    One keep-alive connection per thread and host, no session machinery: about three times
    as many events a second as ``requests`` on one thread (see ``docs/benchmarks.md``).
    It does not read proxy settings from the environment and cannot be mocked with
    ``responses``; that is why :class:`RequestsTransport` stays the default. ``verify`` is
    ``True`` (the system's certificate authorities), ``False``, or a CA bundle path.
    """

    def __init__(self, *, verify: bool | str = True) -> None:
        self._local = threading.local()
        self._every: list[http.client.HTTPConnection] = []  # every thread's, so close() reaches them all
        self._every_lock = threading.Lock()
        if verify is False:
            self._context = ssl._create_unverified_context()  # noqa: S323 -- asked for explicitly
        elif isinstance(verify, str):
            self._context = ssl.create_default_context(cafile=verify)
        else:
            self._context = ssl.create_default_context()

    def _connections(self) -> dict[tuple[str, str, int], http.client.HTTPConnection]:
        connections: dict[tuple[str, str, int], http.client.HTTPConnection] | None = getattr(
            self._local, "connections", None
        )
        if connections is None:
            connections = self._local.connections = {}
        return connections

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: tuple[float, float]) -> HttpResponse:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise TransportError("bad URL (InvalidURL)", retryable=False) from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransportError("bad URL (InvalidSchema)", retryable=False)
        key = (parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80))
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connections = self._connections()
        connection = connections.get(key)
        reused = connection is not None
        for _ in range(2):
            if connection is None:
                connection = self._connect(key, timeout)
                connections[key] = connection
            try:
                connection.request("POST", path, body=body, headers=dict(headers))
                response = connection.getresponse()
                data = response.read(MAX_RESPONSE_BYTES)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                connection.close()
                connections.pop(key, None)
                connection = None
                if reused:
                    # A kept-alive connection the server had already closed: one fresh try.
                    reused = False
                    continue
                raise TransportError(f"connection failed ({type(exc).__name__})") from exc
            except TimeoutError as exc:
                connection.close()
                connections.pop(key, None)
                raise TransportError(f"timed out ({type(exc).__name__})") from exc
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                connections.pop(key, None)
                raise TransportError(f"connection failed ({type(exc).__name__})") from exc
            if response.will_close or not response.isclosed():  # not isclosed: the rest of an over-long body
                connection.close()
                connections.pop(key, None)
            return HttpResponse(
                status=response.status,
                body=data,
                headers={name.lower(): value for name, value in response.getheaders()},
            )
        raise TransportError("connection failed (closed twice)")  # pragma: no cover - loop always returns

    def _connect(self, key: tuple[str, str, int], timeout: tuple[float, float]) -> http.client.HTTPConnection:
        scheme, host, port = key
        connect_timeout, read_timeout = timeout
        connection: http.client.HTTPConnection
        if scheme == "https":
            connection = http.client.HTTPSConnection(host, port, timeout=connect_timeout, context=self._context)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=connect_timeout)
        try:
            connection.connect()
        except TimeoutError as exc:
            raise TransportError(f"timed out ({type(exc).__name__})") from exc
        except OSError as exc:
            raise TransportError(f"connection failed ({type(exc).__name__})") from exc
        assert connection.sock is not None
        connection.sock.settimeout(read_timeout)
        connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._every_lock:
            self._every = [c for c in self._every if c.sock is not None]
            self._every.append(connection)
        return connection

    def close(self) -> None:
        """Close every thread's connections; call it when no request is under way."""
        with self._every_lock:
            for connection in self._every:
                connection.close()
            self._every.clear()
        self._connections().clear()
