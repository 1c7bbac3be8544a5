"""The demo: pdconnect against a local PagerDuty sandbox, end to end, on this machine only.

It starts the sandbox, connects a user through the legacy Connect pages and through the
install flow (choosing two services), shows a replayed callback being refused, sends alerts,
lets a "responder" acknowledge one in the sandbox, resolves them, and then leaves the
sandbox running so you can open its pages in a browser.

    python3 dev.py demo            # or: .venv/bin/python examples/sandbox_demo.py [--exit] [--port N]
"""

from __future__ import annotations

import argparse
import contextlib
import socket
from urllib.parse import urlsplit

import pdconnect
from pdconnect.errors import HandshakeError
from pdconnect.sandbox import SandboxClient, SandboxServer

SECRET = "demo-secret-change-me-0123456789"
VENDOR_KEY = "2fc7c9f3c8030e74aae6"
APP_ID = "PDEMO01"
CALLBACK_URL = "http://localhost:5000/pagerduty/callback"


def step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8787, help="sandbox port (a free one if it is taken)")
    parser.add_argument("--exit", action="store_true", help="stop the sandbox at the end instead of serving")
    args = parser.parse_args()

    server = SandboxServer(port=args.port if free(args.port) else 0).start()
    sandbox = SandboxClient(server.url)  # plays the user's browser on PagerDuty's pages
    sandbox.register_app(APP_ID, [CALLBACK_URL], name="Acme Monitoring")
    print(f"PagerDuty sandbox running at {server.url}")

    handshake = pdconnect.Handshake(
        secret=SECRET,
        vendor_key=VENDOR_KEY,
        app_id=APP_ID,
        connect_base_url=server.url,
        install_base_url=server.url,
    )
    binding = pdconnect.new_session_binding()  # lives in the user's session in a real app

    step("1. Legacy PagerDuty Connect: the user picks the 'Database' service")
    url = handshake.connect_url(CALLBACK_URL, owner_id="acme-org-42", session_binding=binding)
    callback = sandbox.connect(url, service="Database")
    state = urlsplit(callback).path.rsplit("/", 1)[1]
    outcome = handshake.complete(urlsplit(callback).query, session_binding=binding, state=state)
    assert isinstance(outcome, pdconnect.Connected)
    legacy = outcome.integration
    print(legacy)

    step("2. The same callback URL again is refused")
    try:
        handshake.complete(urlsplit(callback).query, session_binding=binding, state=state)
    except HandshakeError as exc:
        print(f"{type(exc).__name__}: {exc}")

    step("3. The install flow: the user picks two services at once")
    redirect = sandbox.install(
        handshake.install_url(CALLBACK_URL, owner_id="acme-org-42", session_binding=binding),
        services=["Checkout API", "Database"],
    )
    installed = handshake.complete(urlsplit(redirect).query, session_binding=binding)
    assert isinstance(installed, pdconnect.Connected)
    for integration in installed.integrations:
        print(integration)

    step("4. A monitor fails: alerts go to every connected service")
    targets = [legacy, *installed.integrations]
    with pdconnect.Sender(
        client="Acme Monitoring",
        client_url="https://acme.example/monitors/7",
        vendor_key=VENDOR_KEY,
        events_base_url=server.url,
    ) as sender:
        keys = []
        for target in targets:
            result = sender.trigger(
                target,
                "Checkout latency above 2 s for 5 minutes",
                source="checkout.acme.example",
                severity="critical",
                dedup_key=f"monitor-7/{target.origin.value}/{target.service_name}",
                custom_details={"p95_ms": 2350, "threshold_ms": 2000, "region": "eu-west-1"},
            )
            keys.append(result.dedup_key)
            print(f"trigger via {target.events_api.value} -> HTTP {result.status}, dedup key {result.dedup_key}")

        step("5. A responder acknowledges one incident in PagerDuty (the sandbox)")
        first = sandbox.incident_for(keys[0])
        print(f"incident #{first['number']} is {sandbox.act(first['id'], 'acknowledge')['status']}")

        step("6. The monitor recovers: every alert is resolved")
        for target, key in zip(targets, keys, strict=True):
            assert key is not None
            sender.resolve(target, key)
        for key in keys:
            incident = sandbox.incident_for(str(key))
            print(f"incident #{incident['number']} ({incident['incident_key']}): {incident['status']}")

    if args.exit:
        server.stop()
        print("\nDone.")
        return
    print(f"\nThe sandbox keeps running: open {server.url} to see accounts, incidents and every event received.")
    print("Press Ctrl-C to stop.", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.wait()
    server.stop()


if __name__ == "__main__":
    main()
