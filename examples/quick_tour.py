"""A quick tour of pdconnect's core, with nothing but the standard library around it.

It walks the legacy PagerDuty Connect handshake (building the redirect, then completing a
sample callback as PagerDuty would send it), shows that the callback cannot be replayed,
accepts a pasted Events API v2 key, and sends a trigger and a resolve to a small Events API
stand-in that it starts on 127.0.0.1 itself. Nothing leaves this machine.

    python3 dev.py demo        # or: .venv/bin/python examples/quick_tour.py
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit

import pdconnect
from pdconnect.errors import HandshakeError

# What the vendor configures once. (These are sample values, not real PagerDuty credentials.)
SECRET = "change-me-to-a-long-random-secret"
VENDOR_KEY = "2fc7c9f3c8030e74aae6"
CALLBACK_URL = "http://localhost:5000/pagerduty/callback"
SAMPLE_SERVICE_KEY = "e93facc04764012d7bfb002500d5d1a6"
SAMPLE_PASTED_KEY = "737ea619db564d41bd9824063e1f6b08"


class EventsStandIn(BaseHTTPRequestHandler):
    """Answers like PagerDuty's Events APIs: 202 on /v2/enqueue, 200 on the legacy endpoint."""

    received: ClassVar[list[tuple[str, dict[str, object]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((self.path, body))
        answer = {"status": "success", "message": "Event processed"}
        if self.path == "/v2/enqueue":
            status, answer["dedup_key"] = 202, body["dedup_key"]
        else:
            status, answer["incident_key"] = 200, body["incident_key"]
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def step(title: str) -> None:
    print(f"\n== {title}")


def main() -> None:
    handshake = pdconnect.Handshake(secret=SECRET, vendor_key=VENDOR_KEY)
    # In a web app this lives in the user's session; see docs/handshake.md.
    session_binding = pdconnect.new_session_binding()

    step("1. The user clicks 'Alert with PagerDuty'; we redirect them to PagerDuty Connect")
    connect_url = handshake.connect_url(CALLBACK_URL, owner_id="acme-org-42", session_binding=session_binding)
    print(connect_url[:110] + "...")
    print(pdconnect.button_html("/pagerduty/connect", include_css=False)[:100] + "...")

    step("2. PagerDuty sends the browser back to our callback; we complete the handshake")
    callback = parse_qs(urlsplit(connect_url).query)["callback"][0]
    state = urlsplit(callback).path.rsplit("/", 1)[1]  # our route reads it from its path
    callback_query = urlencode({"account": "acme", "service_key": SAMPLE_SERVICE_KEY, "service_name": "Production"})
    outcome = handshake.complete(callback_query, session_binding=session_binding, state=state)
    assert isinstance(outcome, pdconnect.Connected)
    integration = outcome.integration
    print(integration)

    step("3. The same callback URL opened again is refused")
    try:
        handshake.complete(callback_query, session_binding=session_binding, state=state)
    except HandshakeError as exc:
        print(f"{type(exc).__name__}: {exc}")

    step("4. Another user pastes an Events API v2 key instead")
    pasted = pdconnect.integration_from_key(f"  {SAMPLE_PASTED_KEY}  ", owner_id="acme-org-43", service_name="Billing")
    print(pasted)

    step("5. Alerts go out: trigger and resolve, to a local Events API stand-in")
    server = ThreadingHTTPServer(("127.0.0.1", 0), EventsStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}"
    with pdconnect.Sender(
        client="Acme Monitoring",
        client_url="https://acme.example/monitors/7",
        vendor_key=VENDOR_KEY,
        events_base_url=base_url,
    ) as sender:
        for target in (integration, pasted):
            result = sender.trigger(
                target,
                "Checkout latency above 2 s for 5 minutes",
                source="checkout.acme.example",
                severity="critical",
                custom_details={"p95_ms": 2350, "threshold_ms": 2000},
            )
            print(f"trigger -> HTTP {result.status} {result.message!r}, dedup key {result.dedup_key}")
            assert result.dedup_key is not None
            result = sender.resolve(target, result.dedup_key)
            print(f"resolve -> HTTP {result.status} {result.message!r}")
    server.shutdown()
    for path, body in EventsStandIn.received:
        shown = {k: ("****" + v[-4:] if k in ("routing_key", "service_key") else v) for k, v in body.items()}
        print(f"  {path}: {json.dumps(shown)[:150]}")
    print("\nDone: a handshake, a refused replay, a pasted key, and four events delivered locally.")


if __name__ == "__main__":
    main()
