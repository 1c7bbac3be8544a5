"""Serving the sandbox: a threaded WSGI server on loopback, optionally over TLS.

Each connection gets its own thread (Werkzeug's threaded server, HTTP/1.1 keep-alive), so
slow or failing requests never hold up others. Connection-level faults are applied here,
before the application sees the request: added latency, and dropped connections (reset
without an answer, as a crashed or unreachable server looks to a client).
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import math
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from pdconnect.sandbox.app import EVENT_PATHS, FAULT_ENVIRON_KEY, SandboxApp
from pdconnect.sandbox.engine import Sandbox
from pdconnect.sandbox.faults import Decision
from pdconnect.sandbox.hosts import HostError, normalise_host
from pdconnect.sandbox.tls import TlsFiles, server_context

#: The largest request body read; a longer ``Content-Length`` is answered 413 unread. Above
#: PagerDuty's 512 KB, so a slightly oversized event still gets PagerDuty's own 400.
#: UNCONFIRMED: what PagerDuty answers to a body of megabytes is not documented.
MAX_BODY = 2 * 1024 * 1024
#: Seconds a client has for its whole request (request line, headers and body), counted from
#: its first byte, before it is answered 408 and closed; also how long an idle keep-alive lasts.
READ_TIMEOUT = 30.0
#: The longest chunk-size line or trailer line of a chunked body, and the most trailer lines.
_MAX_CHUNK_LINE = 4096
_MAX_TRAILERS = 100


class _RequestDeadline(io.RawIOBase):
    """A connection's raw bytes, every read bounded by what is left of one request's deadline.

    A socket timeout alone bounds each ``recv()``: a client sending a byte a second would never
    trip it. So the deadline is set when a request's first bytes arrive (:meth:`next_request`
    clears it) and each read may wait only for the time left; once none is, reads raise
    :class:`TimeoutError` and :attr:`expired` says so. Between requests a read waits up to
    ``timeout`` (an idle keep-alive), and writes always get the full ``timeout``.
    """

    def __init__(self, sock: socket.socket, timeout: float, clock: Callable[[], float]) -> None:
        super().__init__()
        self._sock = sock
        self._timeout = timeout
        self._clock = clock
        self._deadline: float | None = None
        self.expired = False

    def next_request(self) -> None:
        self._deadline = None
        self.expired = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._deadline is None:
            read = self._sock.recv_into(buffer)
            self._deadline = self._clock() + self._timeout
            return read
        left = self._deadline - self._clock()
        if left <= 0:
            self.expired = True
            raise TimeoutError("the request did not arrive in time")
        self._sock.settimeout(left)
        try:
            return self._sock.recv_into(buffer)
        except TimeoutError:
            self.expired = True
            raise
        finally:
            self._sock.settimeout(self._timeout)


class _Handler(WSGIRequestHandler):
    """Reads each request in full first (bounded in size, and in time from its first byte),
    applies connection-level faults to the events endpoints, and keeps the console quiet.

    Without the bounds a client announcing a ``Content-Length`` it never sends, or sending its
    headers a byte at a time, would hold a server thread forever, and one announcing gigabytes
    would be read to the end.
    """

    _decision: Decision | None = None
    _reader: _RequestDeadline
    #: Set per server by :class:`SandboxServer`.
    timeout: ClassVar[float] = READ_TIMEOUT
    max_body: ClassVar[int] = MAX_BODY
    clock: ClassVar[Callable[[], float]] = staticmethod(time.monotonic)

    def setup(self) -> None:
        super().setup()
        plain = self.rfile
        self._reader = _RequestDeadline(self.connection, self.timeout, type(self).clock)
        self.rfile = io.BufferedReader(self._reader)
        plain.close()  # the socket stays open: only the makefile's hold on it is given back

    def handle(self) -> None:
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()  # bounded by the socket's timeout, set in setup()
            except (OSError, ValueError):
                self.close_connection = True
                return
        super().handle()

    def handle_one_request(self) -> None:
        """One request under one deadline; 408 and closed if it passes before the request is in."""
        self._reader.next_request()
        super().handle_one_request()  # a read that times out ends it with close_connection set
        if self._reader.expired:
            self._refuse(408, f"The request did not arrive within {self.timeout:g} seconds.")

    def run_wsgi(self) -> None:
        self._decision = None
        # http.server has answered "Expect: 100-continue" already; Werkzeug would answer it again.
        del self.headers["Expect"]
        stream = self.rfile
        body = self._read_body()
        if body is None:
            return
        self.rfile = io.BytesIO(body)
        try:
            self._run(urlsplit(self.path).path)
        finally:
            self.rfile = stream

    def _run(self, path: str) -> None:
        if self.command == "POST" and path in EVENT_PATHS:
            app: SandboxApp = self.server.app  # type: ignore[assignment]
            decision = app.sandbox.fault()
            if decision.delay:
                time.sleep(decision.delay)
            if decision.drop:
                self._reset_connection()
                return
            if self._events_fast_path(app, path, decision):
                return
            self._decision = decision
        super().run_wsgi()

    def _read_body(self) -> bytes | None:
        """The whole body, or ``None`` when the request was answered (or its client left) here.

        ``Content-Length`` and a lone ``Transfer-Encoding: chunked`` are the only framings
        read (RFC 9112 §6.1): any other transfer coding, or both headers at once, is a 400
        before a byte of the body is read, since a server and the client behind a proxy could
        frame the message differently. A malformed length is a 400, one over :attr:`max_body`
        a 413 unread; a chunked body counts against :attr:`max_body` as it arrives, and is
        then handed on as if it had come with its ``Content-Length``. A body that does not
        arrive in time raises :class:`TimeoutError` (answered 408 by the caller).
        """
        codings = self.headers.get_all("Transfer-Encoding") or []
        lengths = self.headers.get_all("Content-Length") or []
        if codings:
            coding = codings[0].strip(" \t") if len(codings) == 1 else ""
            if not coding.isascii() or coding.lower() != "chunked":  # names are case-insensitive, only ASCII
                self._refuse(400, "The only Transfer-Encoding accepted is chunked.")
                return None
            if lengths:
                self._refuse(400, "A request may not have both Transfer-Encoding and Content-Length.")
                return None
            if self.request_version == "HTTP/1.0":
                self._refuse(400, "Transfer-Encoding is not allowed in an HTTP/1.0 request.")
                return None
            body = self._read_chunked()
            if body is not None:
                del self.headers["Transfer-Encoding"]
                self.headers["Content-Length"] = str(len(body))
            return body
        if not lengths:
            return b""
        if len(set(lengths)) != 1 or not lengths[0].strip().isdigit() or not lengths[0].strip().isascii():
            self._refuse(400, "The Content-Length header is not a number.")
            return None
        size = int(lengths[0].strip())
        if size > self.max_body:
            self._refuse(413, f"The body is larger than {self.max_body} bytes.")
            return None
        return self._read_exactly(size)

    def _read_chunked(self) -> bytes | None:
        """A chunked body, decoded; ``None`` when it was answered 400 or 413, or the client left."""
        chunks: list[bytes] = []
        size = 0
        while True:
            line = self._read_line()
            if line is None:
                return None
            digits = line.split(b";", 1)[0]
            if not digits or len(digits) > 16 or not all(c in b"0123456789abcdefABCDEF" for c in digits):
                self._refuse(400, "A chunk size is not a hexadecimal number.")
                return None
            length = int(digits, 16)
            if length == 0:
                break
            size += length
            if size > self.max_body:
                self._refuse(413, f"The body is larger than {self.max_body} bytes.")
                return None
            chunk = self._read_exactly(length + 2)
            if chunk is None:
                return None
            if not chunk.endswith(b"\r\n"):
                self._refuse(400, "A chunk does not end where its size says.")
                return None
            chunks.append(chunk[:-2])
        for _ in range(_MAX_TRAILERS + 1):  # trailer fields are read and dropped
            line = self._read_line()
            if line is None:
                return None
            if not line:
                return b"".join(chunks)
        self._refuse(400, "A chunked body has too many trailer lines.")
        return None

    def _read_line(self) -> bytes | None:
        """One CRLF-terminated line of a chunked body, without its CRLF; ``None`` if answered 400."""
        line = self.rfile.readline(_MAX_CHUNK_LINE + 1)
        if not line:
            self.close_connection = True  # the client closed its side: nobody to answer
            return None
        if len(line) > _MAX_CHUNK_LINE or not line.endswith(b"\r\n") or b"\r" in line[:-2]:
            self._refuse(400, "A chunked body is malformed.")
            return None
        return line[:-2]

    def _read_exactly(self, size: int) -> bytes | None:
        """``size`` bytes of the body; ``None`` when the client closed or failed before sending them."""
        chunks: list[bytes] = []
        remaining = size
        try:
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:  # the client closed its side: nobody to answer
                    self.close_connection = True
                    return None
                chunks.append(chunk)
                remaining -= len(chunk)
        except TimeoutError:
            raise
        except OSError:
            self.close_connection = True
            return None
        return b"".join(chunks)

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with a JSON error and close the connection (its input is not trusted)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self._write_json(status, {"error": {"message": message}}, {})

    def _write_json(self, status: int, data: Any, headers: dict[str, str]) -> None:
        body = json.dumps(data).encode()
        head = [f"HTTP/1.1 {status} {HTTP_STATUS_CODES.get(status, '')}"]
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        if self.close_connection:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    def _events_fast_path(self, app: SandboxApp, path: str, decision: Decision) -> bool:
        """Answer an events request without the WSGI layer: it is the only hot path.

        Falls back to WSGI (returns False) for a ``Host`` the application refuses (it answers
        that).
        """
        if app.host_check.refusal(self.headers.get("Host"), scheme=self._scheme):
            return False
        answer = app.events_answer(path, self.rfile.read(), decision)
        self._write_json(answer.status, answer.body, answer.headers)
        return True

    @property
    def _scheme(self) -> str:
        return "https" if self.server.ssl_context is not None else "http"

    def make_environ(self) -> Any:
        environ = super().make_environ()
        if self._decision is not None:
            environ[FAULT_ENVIRON_KEY] = self._decision
        return environ

    def _reset_connection(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            # Linger 0: closing sends a reset, as a crashed server would.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def log_error(self, format: str, *args: Any) -> None:
        pass


class SandboxServer:
    """Runs a :class:`~pdconnect.sandbox.engine.Sandbox` over HTTP (or HTTPS) on ``host:port``.

    ``port=0`` picks a free port. Use as a context manager, or call :meth:`start` and
    :meth:`stop`; :meth:`serve_forever` blocks (the command line uses it).

    It answers only requests whose ``Host`` names loopback, ``host`` itself or one of
    ``allowed_hosts``, on its own port (421 otherwise: DNS rebinding). ``read_timeout`` is
    how many seconds a client has for its whole request, request line, headers and body,
    counted from its first byte by ``clock`` (408 and closed after that, however steadily the
    bytes trickle in), and how long an idle keep-alive connection is kept open; a body over
    ``max_body`` bytes is answered 413 without being read (a chunked one as soon as it passes
    that). Only ``Content-Length`` and a lone ``Transfer-Encoding: chunked`` frame a body;
    any other framing is a 400.
    """

    def __init__(
        self,
        sandbox: Sandbox | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TlsFiles | None = None,
        allowed_hosts: Iterable[str] = (),
        read_timeout: float = READ_TIMEOUT,
        max_body: int = MAX_BODY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(read_timeout, bool) or not isinstance(read_timeout, int | float):
            raise TypeError("read_timeout must be a number of seconds")
        if not math.isfinite(read_timeout) or not 0 < read_timeout <= 3600:
            raise ValueError("read_timeout must be more than 0 and at most 3600 seconds")
        if isinstance(max_body, bool) or not isinstance(max_body, int) or not 1 <= max_body <= 1024**3:
            raise ValueError("max_body must be a whole number of bytes from 1 to 1 GiB")
        names = list(allowed_hosts)
        with contextlib.suppress(HostError):
            if not _is_wildcard(host):
                names.append(normalise_host(host))
        self.sandbox = sandbox if sandbox is not None else Sandbox()
        self.tls = tls
        self.app = SandboxApp(self.sandbox, allowed_hosts=names)
        bounds = {"timeout": float(read_timeout), "max_body": max_body, "clock": staticmethod(clock)}
        handler = type("_Handler", (_Handler,), bounds)
        self._server: BaseWSGIServer = make_server(host, port, self.app, threaded=True, request_handler=handler)
        if tls is not None:
            # Werkzeug's wrapping would shake hands inside accept(), on the one thread that
            # accepts: a client that connects and says nothing would stop the whole server.
            # Each connection's handshake happens on its own thread instead, under the timeout.
            context = server_context(tls)
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
            self._server.ssl_context = context
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        scheme = "https" if tls is not None else "http"
        bound_port = self._server.socket.getsockname()[1]
        self.app.host_check.port = bound_port
        shown_host = f"[{host}]" if ":" in host else host
        self.url = f"{scheme}://{shown_host}:{bound_port}"
        self.sandbox.base_url = self.url
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.socket.getsockname()[1])

    @property
    def ca_path(self) -> Path | None:
        """The certificate authority a client should trust, when serving TLS."""
        return self.tls.ca_path if self.tls is not None else None

    def start(self) -> SandboxServer:
        """Serve in a background thread and deliver webhooks; returns self."""
        self.sandbox.start()
        self._thread = threading.Thread(target=self._server.serve_forever, name="pdconnect-sandbox", daemon=True)
        self._thread.start()
        return self

    def wait(self) -> None:
        """Block until the server stops (or Ctrl-C), after :meth:`start`."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=0.5)  # a timed join keeps Ctrl-C responsive

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self.sandbox.start()
        try:
            self._server.serve_forever()
        finally:
            self.sandbox.close()
            self._server.server_close()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()
        self.sandbox.close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _is_wildcard(host: str) -> bool:
    """True for an address that means "every interface" (not a name a client would use)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False
