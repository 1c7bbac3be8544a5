"""Serving the sandbox: a threaded WSGI server on loopback, optionally over TLS.

Each connection gets its own thread (Werkzeug's threaded server, HTTP/1.1 keep-alive), so
slow or failing requests never hold up others. Connection-level faults are applied here,
before the application sees the request: added latency, and dropped connections (reset
without an answer, as a crashed or unreachable server looks to a client).
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from pdconnect.sandbox.app import EVENT_PATHS, FAULT_ENVIRON_KEY, SandboxApp
from pdconnect.sandbox.engine import Sandbox
from pdconnect.sandbox.faults import Decision
from pdconnect.sandbox.tls import TlsFiles, server_context

#: How much of an events body is kept; anything over 512 KB is refused by the engine anyway.
MAX_EVENT_READ = 1024 * 1024


class _Handler(WSGIRequestHandler):
    """Applies connection-level faults to the events endpoints; keeps the console quiet."""

    _decision: Decision | None = None

    def run_wsgi(self) -> None:
        self._decision = None
        path = urlsplit(self.path).path
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

    def _events_fast_path(self, app: SandboxApp, path: str, decision: Decision) -> bool:
        """Answer an events request without the WSGI layer: it is the only hot path.

        Falls back to WSGI (returns False) for anything unusual, such as a chunked body.
        """
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit() or self.headers.get("Transfer-Encoding"):
            return False
        size = int(length)
        raw = self.rfile.read(min(size, MAX_EVENT_READ))
        remaining = size - len(raw)
        while remaining > 0:  # an oversized body is read and dropped; the engine refuses it
            chunk = self.rfile.read(min(remaining, 65536))
            if not chunk:
                break
            remaining -= len(chunk)
        answer = app.events_answer(path, raw, decision)
        body = json.dumps(answer.body).encode()
        head = [f"HTTP/1.1 {answer.status} {HTTP_STATUS_CODES.get(answer.status, '')}"]
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in answer.headers.items()]
        if self.close_connection:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        return True

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
    """

    def __init__(
        self,
        sandbox: Sandbox | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TlsFiles | None = None,
    ) -> None:
        self.sandbox = sandbox if sandbox is not None else Sandbox()
        self.tls = tls
        context = server_context(tls) if tls is not None else None
        self._server: BaseWSGIServer = make_server(
            host, port, SandboxApp(self.sandbox), threaded=True, request_handler=_Handler, ssl_context=context
        )
        self._server.daemon_threads = True  # type: ignore[attr-defined]
        scheme = "https" if tls is not None else "http"
        bound_port = self._server.socket.getsockname()[1]
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
