"""A minimal vendor web app for browser tests: starts and finishes handshakes with pdconnect."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from markupsafe import escape
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from pdconnect import Cancelled, Handshake, new_session_binding
from pdconnect.errors import HandshakeError

BINDING_COOKIE = "vendor_binding"


class VendorApp:
    def __init__(self, handshake: Handshake) -> None:
        self.handshake = handshake
        self.base_url = ""
        self.connected: list[Any] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        binding = request.cookies.get(BINDING_COOKIE) or new_session_binding()
        if request.path == "/start-connect":
            url = self.handshake.connect_url(self.base_url + "/cb", owner_id="org-1", session_binding=binding)
            response = Response(status=302, headers={"Location": url})
        elif request.path == "/start-install":
            url = self.handshake.install_url(self.base_url + "/cb", owner_id="org-1", session_binding=binding)
            response = Response(status=302, headers={"Location": url})
        elif request.path.startswith("/cb"):
            state = request.path.removeprefix("/cb").strip("/") or None
            try:
                outcome = self.handshake.complete(request.args, session_binding=binding, state=state)
            except HandshakeError as exc:
                response = Response(f"<h1>Failed</h1><p id=reason>{escape(str(exc))}</p>", 400, mimetype="text/html")
            else:
                if isinstance(outcome, Cancelled):
                    text = "<h1 id=result>Cancelled</h1>"
                else:
                    self.connected.extend(outcome.integrations)
                    names = ", ".join(i.service_name or "?" for i in outcome.integrations)
                    text = f"<h1 id=result>Connected: {escape(names)}</h1>"
                response = Response(text, mimetype="text/html")
        else:
            response = Response("not found", 404)
        response.set_cookie(BINDING_COOKIE, binding, httponly=True)
        return response(environ, start_response)


@contextmanager
def serve_vendor(handshake: Handshake) -> Iterator[VendorApp]:
    app = VendorApp(handshake)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    app.base_url = f"http://127.0.0.1:{server.socket.getsockname()[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
