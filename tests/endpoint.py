"""A tiny real HTTP endpoint on loopback that records what it receives (for thread-safety tests)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers import serving


class RecordingEndpoint:
    """Accepts every POST with 202 and the dedup key, like the Events API, and records the bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                with endpoint.lock:
                    endpoint.bodies.append(body)
                    endpoint.headers.append(dict(self.headers))
                answer = json.dumps(
                    {"status": "success", "message": "Event processed", "dedup_key": body.get("dedup_key")}
                ).encode()
                self.send_response(202)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@contextmanager
def recording_endpoint() -> Iterator[RecordingEndpoint]:
    endpoint = RecordingEndpoint()
    with serving(endpoint.server):
        yield endpoint
