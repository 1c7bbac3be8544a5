"""The one-command demo: the PagerDuty sandbox and Acme Monitoring, together on loopback.

    python3 dev.py demo                      # or: .venv/bin/python -m example_app.demo
    python3 dev.py demo --check              # start both, check they answer, stop

Open the address it prints, sign in with any name, connect PagerDuty (the sandbox's pages
stand in for PagerDuty's: sign in as a user of an account, approve Acme, pick services), make
a monitor fail, and watch the incident open in the sandbox; acknowledge it there, recover the
monitor, and see it resolved. Each Acme user connects their own PagerDuty account through
OAuth; ``--single-account`` runs instead with one REST API key of the sandbox's "acme" account.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from example_app import create_app
from pdconnect.oauth import TokenCipher
from pdconnect.sandbox import Sandbox, SandboxServer

DEMO_APP_ID = "PACMEMO"
DEMO_VENDOR_KEY = "ac3e0d3a1b2c4d5e6f70"
#: The sandbox account that registers Acme's OAuth app (or, in single-account mode, whose REST
#: API key Acme uses).
DEMO_ACCOUNT = "acme"


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class _Deferred:
    """A WSGI app whose real application is set once the server's port is known."""

    app: Callable[..., Iterable[bytes]] | None = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        assert self.app is not None
        return self.app(environ, start_response)


@dataclass
class RunningDemo:
    url: str
    app: Flask
    server: BaseWSGIServer
    thread: threading.Thread
    #: The client id of Acme's OAuth app in the sandbox (``None`` in single-account mode).
    oauth_client_id: str | None = None

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
        self.app.extensions["acme_monitoring"].stop()
        self.app.extensions["acme_worker"].stop()
        self.app.extensions["acme_engine"].dispose()  # close the database files before they are removed


def start_acme(
    sandbox: SandboxServer,
    *,
    port: int = 0,
    database_url: str | None = None,
    scheduler: bool = True,
    worker: bool = True,
    extra: dict[str, Any] | None = None,
    clock: Callable[[], float] | None = None,
    oauth: bool = True,
) -> RunningDemo:
    """Start Acme Monitoring on ``port``, configured to use ``sandbox`` as its PagerDuty.

    With ``oauth`` (the default) Acme is registered in the sandbox as an OAuth app and every
    customer account connects with its own token (OAuth, then the install flow); without it
    the demo runs in single-account mode, with one REST API key of the sandbox's ``acme`` account.
    """
    deferred = _Deferred()
    server = make_server("127.0.0.1", port, deferred, threaded=True, request_handler=_QuietHandler)
    url = f"http://127.0.0.1:{server.socket.getsockname()[1]}"
    sandbox.sandbox.register_app(DEMO_APP_ID, [f"{url}/pagerduty/callback"], name="Acme Monitoring")
    environ = {
        "ACME_BASE_URL": url,
        # The demo's monitors check the app's own endpoints, on loopback: HTTP monitors reach
        # only public addresses unless the operator allows a network.
        "ACME_MONITOR_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
        "PDCONNECT_APP_ID": DEMO_APP_ID,
        "PDCONNECT_VENDOR_KEY": DEMO_VENDOR_KEY,
        "PDCONNECT_CONNECT_BASE_URL": sandbox.url,
        "PDCONNECT_INSTALL_BASE_URL": sandbox.url,
    }
    environ.update(_oauth_settings(sandbox, url) if oauth else _single_account_settings(sandbox))
    if database_url:
        environ["ACME_DATABASE_URL"] = database_url
    options = {"clock": clock} if clock is not None else {}
    app = create_app({"ACME_SCHEDULER": scheduler, "ACME_WORKER": worker, **(extra or {})}, environ=environ, **options)
    deferred.app = app
    thread = threading.Thread(target=server.serve_forever, name="acme", daemon=True)
    thread.start()
    client_id = environ.get("PDCONNECT_OAUTH_CLIENT_ID")
    return RunningDemo(url=url, app=app, server=server, thread=thread, oauth_client_id=client_id)


def _oauth_settings(sandbox: SandboxServer, url: str) -> dict[str, str]:
    """Per-account OAuth: Acme's OAuth app in the sandbox, a token key, each region's hosts.

    A Classic app (Scoped ones are private to the account that registers them), so users of
    every sandbox account can connect theirs. The token-encryption key is made for this run
    only: a real deployment keeps its keys in a secret store.
    """
    registered = sandbox.sandbox.identity.register_app(
        DEMO_ACCOUNT, name="Acme Monitoring", redirect_urls=[f"{url}/pagerduty/oauth/callback"], kind="classic"
    )
    eu = f"{sandbox.url}/eu"
    return {
        "PDCONNECT_OAUTH_CLIENT_ID": registered.client_id,
        "PDCONNECT_OAUTH_CLIENT_SECRET": registered.client_secret or "",
        "PDCONNECT_OAUTH_KIND": "classic",
        "PDCONNECT_OAUTH_SCOPES": "write",
        "PDCONNECT_OAUTH_IDENTITY_URL": sandbox.url,
        "PDCONNECT_OAUTH_REDIRECT_URL": f"{url}/pagerduty/oauth/callback",
        # The sandbox serves an EU account's REST and events API under /eu, as PagerDuty does
        # on its own EU hosts: the ID token's aud names the base, which names the region.
        "PDCONNECT_OAUTH_REST_BASES": f"{sandbox.url}=us,{eu}=eu",
        "PDCONNECT_OAUTH_EVENTS_BASES": f"us={sandbox.url},eu={eu}",
        "PDCONNECT_TOKEN_KEYS": TokenCipher.generate_key(),
    }


def _single_account_settings(sandbox: SandboxServer) -> dict[str, str]:
    """Single-account mode: a REST API key of the sandbox's "acme" account, made for this run.

    Connecting a service subscribes Acme's webhook endpoint to it with this key, so
    acknowledgements and resolves show up in Acme; only services of "acme" can be subscribed.
    """
    key = sandbox.sandbox.create_api_key(DEMO_ACCOUNT, description="Acme Monitoring demo")
    return {
        "PDCONNECT_EVENTS_BASE_URL": sandbox.url,
        "PDCONNECT_REST_API_TOKEN": key.id,
        "PDCONNECT_REST_API_URL": sandbox.url,
    }


def _free(port: int) -> int:
    with socket.socket() as probe:
        return port if probe.connect_ex(("127.0.0.1", port)) != 0 else 0


def _stop_like_ctrl_c(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the PagerDuty sandbox and Acme Monitoring together.")
    parser.add_argument("--port", type=int, default=5000, help="Acme's port (another if taken)")
    parser.add_argument("--sandbox-port", type=int, default=8787, help="the sandbox's port (another if taken)")
    parser.add_argument("--check", action="store_true", help="start, check both answer, and stop")
    parser.add_argument(
        "--single-account",
        action="store_true",
        help="no OAuth: one REST API key of the sandbox's acme account for every user (single-account mode)",
    )
    args = parser.parse_args()

    # SIGTERM (a service manager, `kill`) stops the demo as Ctrl-C does: through the cleanup below.
    signal.signal(signal.SIGTERM, _stop_like_ctrl_c)
    with contextlib.suppress(KeyboardInterrupt):  # at any point: what started is stopped, the folder removed
        _run(args)
    print("Stopped; demo data removed.", flush=True)


def _run(args: argparse.Namespace) -> None:
    with contextlib.ExitStack() as cleanup:
        data = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="acme-demo-", ignore_cleanup_errors=True)))
        sandbox = SandboxServer(Sandbox(db_path=str(data / "sandbox.db")), port=_free(args.sandbox_port)).start()
        cleanup.callback(sandbox.stop)
        acme = start_acme(
            sandbox,
            port=_free(args.port),
            database_url=f"sqlite:///{data / 'acme.db'}",
            oauth=not args.single_account,
        )
        cleanup.callback(acme.stop)
        # Callbacks run last-in first-out: once stopping, a second Ctrl-C or SIGTERM is ignored,
        # so it cannot cut short the stops and the folder's removal.
        cleanup.callback(_ignore_stop_signals)
        print(f"PagerDuty sandbox:  {sandbox.url}")
        print(f"Acme Monitoring:    {acme.url}   <- open this, sign in with any name")
        if acme.oauth_client_id is not None:
            print("Connect PagerDuty as Kim Manager of acme (a manager: allowed to subscribe to webhooks).")
        print(f"(demo data in {data}, removed when the demo stops)", flush=True)
        if args.check:
            for url in (acme.url + "/signin", sandbox.url + "/"):
                response = requests.get(url, timeout=10)
                print(f"{url} -> HTTP {response.status_code}")
                response.raise_for_status()
        else:
            print("Press Ctrl-C to stop.", flush=True)
            sandbox.wait()


def _ignore_stop_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


if __name__ == "__main__":
    main()
