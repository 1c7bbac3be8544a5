"""The HTTP layer under the sender: one POST, one answer, no policy.

:class:`RequestsTransport` is the default: a ``requests.Session`` (passed in, so vendors'
proxies, adapters and ``responses`` in their tests all apply), keep-alive, explicit connect
and read timeouts, redirects never followed. :class:`HttpClientTransport` is a leaner path
over ``http.client`` for high-volume workers. Any object with the same ``post`` method can
take its place.

Both read at most :data:`MAX_RESPONSE_BYTES` of an answer: PagerDuty's are a few hundred
bytes, and a proxy or a hostile server that streams gigabytes (or a compression bomb) must
not fill the worker's memory. What is cut is dropped, with the connection.

A ``timeout`` of ``(connect, read)`` bounds the whole attempt, not only each read: from the
moment :meth:`Transport.post` is called, the answer (status line, headers and body, and an
HTTPS proxy's answer to ``CONNECT`` before them) must be in within ``connect + read``
seconds, or the attempt ends with :class:`TransportTimeout`. ``requests`` alone applies
``read`` to each read from the socket, so a server that dribbles one byte a second would
keep an attempt alive forever, past a worker's lease. The total deadline applies to
:class:`HttpClientTransport` and to the session a :class:`RequestsTransport` makes itself;
a session passed in keeps ``requests``' per-read timeouts while headers arrive, and its body
is read under the deadline chunk by chunk.
"""

from __future__ import annotations

import functools
import http.client
import io
import socket
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests
import urllib3
import urllib3.connection
import urllib3.response
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


class TransportTimeout(TransportError):
    """No complete answer in time: the connection, or the whole answer, took longer than allowed."""


class _DeadlinePassed(TimeoutError):
    """Raised from a socket read once an attempt's total deadline has passed."""


@dataclass(frozen=True)
class _Deadline:
    """When an attempt must have its whole answer, by ``clock``, and the longest single read."""

    at: float
    read_timeout: float
    clock: Callable[[], float]

    @classmethod
    def start(cls, timeout: tuple[float, float], clock: Callable[[], float]) -> _Deadline:
        connect, read = timeout
        return cls(at=clock() + connect + read, read_timeout=read, clock=clock)

    def left(self) -> float:
        """Seconds left, at most the read timeout; raises :class:`_DeadlinePassed` when none are."""
        left = self.at - self.clock()
        if left <= 0:
            raise _DeadlinePassed("the answer did not arrive in time")
        return min(left, self.read_timeout)


class _DeadlineSocketReader(io.RawIOBase):
    """The raw bytes of a socket, each read bounded by what is left of a :class:`_Deadline`.

    It reads through a ``makefile`` of the socket, as ``http.client``'s own file does, so it
    holds the socket open: ``http.client`` closes a ``Connection: close`` connection as soon
    as the headers are in, and the real close must wait until the body has been read.
    """

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        super().__init__()
        self._sock = sock
        self._raw = sock.makefile("rb", buffering=0)
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(self._deadline.left())
        return self._raw.readinto(buffer) or 0

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """An ``http.client`` answer whose status line, headers and body are read under a deadline."""

    def __init__(self, sock: socket.socket, *args: Any, deadline: _Deadline, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        # Replace the plain file http.client made; closing it gives its hold on the socket back.
        plain, self.fp = self.fp, io.BufferedReader(_DeadlineSocketReader(sock, deadline))
        plain.close()


# The deadline of the attempt under way in this thread, for the connections of a RequestsTransport.
_current = threading.local()


def _response_class() -> Any:
    """The answer class for this thread's attempt: read under its deadline, if one is set."""
    deadline: _Deadline | None = getattr(_current, "deadline", None)
    if deadline is None:
        return http.client.HTTPResponse
    return functools.partial(_DeadlineResponse, deadline=deadline)


class _DeadlineHTTPConnection(urllib3.connection.HTTPConnection):
    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]  # as urllib3 does
        self.response_class = _response_class()
        return super().getresponse()


class _DeadlineHTTPSConnection(urllib3.connection.HTTPSConnection):
    def connect(self) -> None:
        # Through a proxy, http.client reads the answer to CONNECT with response_class in
        # _tunnel(), called from here: a proxy dribbling it must not outlast the deadline.
        self.response_class = _response_class()
        super().connect()

    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]  # as urllib3 does
        self.response_class = _response_class()
        return super().getresponse()


class _DeadlineHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


class _DeadlineAdapter(HTTPAdapter):
    """An adapter whose connections read each answer under its attempt's total deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}
        return manager


class Transport(Protocol):
    """Sends one POST and returns the answer, or raises :class:`TransportError`.

    ``timeout`` is ``(connect, read)`` seconds; the whole attempt ends within their sum.
    """

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: tuple[float, float]) -> HttpResponse: ...

    def close(self) -> None: ...


class RequestsTransport:
    """A :class:`Transport` over a ``requests.Session``.

    When no session is given, one is made with a connection pool of ``pool_size``
    connections per host, enough for that many threads sharing the sender. A session that
    is passed in is used as it is and not closed by :meth:`close`.
    """

    def __init__(
        self,
        session: requests.Session | None = None,
        *,
        pool_size: int = 16,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._owns_session = session is None
        if session is None:
            session = requests.Session()
            adapter = _DeadlineAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self.session = session
        self._clock = clock

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: tuple[float, float]) -> HttpResponse:
        deadline = _Deadline.start(timeout, self._clock)
        _current.deadline = deadline
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
                data = _read_capped(response, deadline)
        except _DeadlinePassed as exc:
            raise _too_slow(timeout) from exc
        except (requests.Timeout, requests.ConnectionError) as exc:
            if _deadline_passed(exc):
                raise _too_slow(timeout) from exc
            if isinstance(exc, requests.Timeout):
                raise TransportTimeout(f"timed out ({type(exc).__name__})") from exc
            raise TransportError(f"connection failed ({type(exc).__name__})") from exc
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.MissingSchema,
            requests.exceptions.InvalidSchema,
        ) as exc:
            raise TransportError(f"bad URL ({type(exc).__name__})", retryable=False) from exc
        except requests.RequestException as exc:
            raise TransportError(f"request failed ({type(exc).__name__})") from exc
        finally:
            _current.deadline = None
        return HttpResponse(
            status=response.status_code,
            body=data,
            headers={k.lower(): v for k, v in response.headers.items()},
        )

    def close(self) -> None:
        if self._owns_session:
            self.session.close()


def _read_capped(response: requests.Response, deadline: _Deadline) -> bytes:
    chunks: list[bytes] = []
    size = 0
    # Small chunks, so that a session passed in (whose reads are not under the deadline) is
    # still checked against it often; PagerDuty's answers are a few hundred bytes.
    for chunk in response.iter_content(chunk_size=4096):
        deadline.left()
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            break
    return b"".join(chunks)[:MAX_RESPONSE_BYTES]


def _too_slow(timeout: tuple[float, float]) -> TransportTimeout:
    return TransportTimeout(f"timed out (no complete answer within {timeout[0] + timeout[1]:g} s)")


def _deadline_passed(exc: BaseException) -> bool:
    """Whether ``exc`` was caused by a :class:`_DeadlinePassed`, however requests wrapped it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, _DeadlinePassed):
            return True
        seen.add(id(current))
        nested = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        reason = getattr(current, "reason", None)
        current = current.__cause__ or current.__context__ or (reason if isinstance(reason, BaseException) else nested)
    return False


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

    def __init__(self, *, verify: bool | str = True, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
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
        deadline = _Deadline.start(timeout, self._clock)
        for _ in range(2):
            try:
                if connection is None:
                    connection = self._connect(key, (min(timeout[0], deadline.left()), timeout[1]))
                    connections[key] = connection
            except _DeadlinePassed as exc:
                raise _too_slow(timeout) from exc
            try:
                assert connection.sock is not None
                connection.sock.settimeout(deadline.left())
                connection.request("POST", path, body=body, headers=dict(headers))
                connection.response_class = functools.partial(_DeadlineResponse, deadline=deadline)  # type: ignore[assignment]
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
            except _DeadlinePassed as exc:
                connection.close()
                connections.pop(key, None)
                raise _too_slow(timeout) from exc
            except TimeoutError as exc:
                connection.close()
                connections.pop(key, None)
                raise TransportTimeout(f"timed out ({type(exc).__name__})") from exc
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
            raise TransportTimeout(f"timed out ({type(exc).__name__})") from exc
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
