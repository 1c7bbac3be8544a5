"""``pdconnect sandbox``: run the local PagerDuty until stopped."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from pdconnect.urls import is_loopback_host

if TYPE_CHECKING:
    from pdconnect.sandbox.server import SandboxServer

DEFAULT_PORT = 8787


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "sandbox",
        help="run a local PagerDuty (Connect and install pages, Events APIs, incidents, webhooks)",
        description="Run a local stand-in for PagerDuty on loopback until stopped (Ctrl-C).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port, 0 for any free one (default: %(default)s)"
    )
    parser.add_argument("--db", type=Path, help="keep state in this SQLite file, so it survives a restart")
    parser.add_argument(
        "--faults",
        default="",
        help='inject faults on the events endpoints, e.g. "429=0.05,429-retry-after=0.05,retry-after=1,503=0.05,'
        'latency=50,drop=0.01,down=30,seed=7"',
    )
    parser.add_argument(
        "--rate-limit", default="120", help="events a minute per integration key, or 'off' (default: %(default)s)"
    )
    parser.add_argument(
        "--app",
        action="append",
        default=[],
        metavar="APP_ID=URL[,URL...]",
        help="register an app for the install flow with its redirect URLs (repeatable)",
    )
    parser.add_argument(
        "--account-name-field",
        choices=["name", "Name", "both"],
        default="name",
        help="how the install flow's config names the account (default: %(default)s)",
    )
    parser.add_argument("--tls", action="store_true", help="serve https with a generated certificate (needs trustme)")
    parser.add_argument("--tls-dir", type=Path, help="where to write the certificate authority (default: a temp dir)")
    parser.add_argument(
        "--allow-remote-webhooks", action="store_true", help="let webhook subscriptions point off this machine"
    )
    parser.add_argument(
        "--webhook-retry-delays",
        default="0.2,0.5,1,2,4",
        metavar="SECONDS,...",
        help="waits between webhook attempts; PagerDuty's hours scaled down (default: %(default)s)",
    )
    parser.add_argument("--no-seed", action="store_true", help="start empty instead of with the demo account")
    parser.set_defaults(handler=run)


def build_server(args: argparse.Namespace) -> SandboxServer:
    """Make the server the arguments describe (without starting it)."""
    # Imported here so that ``pdconnect --help`` and the core CLI load no web framework.
    from pdconnect.sandbox.engine import Sandbox, SandboxError, SandboxSettings
    from pdconnect.sandbox.faults import FaultPlan, FaultSpecError
    from pdconnect.sandbox.server import SandboxServer
    from pdconnect.sandbox.tls import make_certificates
    from pdconnect.sandbox.webhooks import RetrySchedule

    try:
        faults = FaultPlan.parse(args.faults)
    except FaultSpecError as exc:
        raise SystemExit(f"pdconnect sandbox: --faults: {exc}") from exc
    if args.rate_limit == "off":
        rate_limit = None
    elif args.rate_limit.isdigit() and int(args.rate_limit) > 0:
        rate_limit = int(args.rate_limit)
    else:
        raise SystemExit("pdconnect sandbox: --rate-limit must be a positive number or 'off'")
    try:
        delays = tuple(float(d) for d in args.webhook_retry_delays.split(",") if d.strip())
    except ValueError as exc:
        raise SystemExit("pdconnect sandbox: --webhook-retry-delays must be numbers separated by commas") from exc
    if any(d < 0 for d in delays):
        raise SystemExit("pdconnect sandbox: --webhook-retry-delays must not be negative")
    settings = SandboxSettings(
        webhook_schedule=RetrySchedule(delays=delays),
        rate_limit=rate_limit,
        account_name_field=args.account_name_field,
        allow_remote_webhooks=args.allow_remote_webhooks,
        seed=not args.no_seed,
    )
    sandbox = Sandbox(settings, db_path=str(args.db) if args.db else None, faults=faults)
    for spec in args.app:
        app_id, sep, urls = spec.partition("=")
        if not sep or not app_id:
            raise SystemExit(f"pdconnect sandbox: --app expects APP_ID=URL[,URL...], got {spec!r}")
        try:
            sandbox.register_app(app_id, [u for u in urls.split(",") if u])
        except SandboxError as exc:
            raise SystemExit(f"pdconnect sandbox: --app: {exc.message}") from exc
    tls = None
    if args.tls:
        tls = make_certificates(args.tls_dir or Path(tempfile.mkdtemp(prefix="pdconnect-sandbox-tls-")))
    return SandboxServer(sandbox, host=args.host, port=args.port, tls=tls)


def run(args: argparse.Namespace) -> int:
    server = build_server(args)
    if not is_loopback_host(args.host):
        print(f"warning: serving on {args.host}, reachable from other machines", file=sys.stderr)
    print(f"PagerDuty sandbox on {server.url}  (Ctrl-C to stop)")
    if server.ca_path:
        print(f"TLS certificate authority: {server.ca_path}")
    for service in server.sandbox.services():
        keys = ", ".join(k.id for k in server.sandbox.keys_of(service.id))
        print(f"  {service.account} / {service.name}: {keys}")
    sys.stdout.flush()
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()  # returns on Ctrl-C (Werkzeug catches KeyboardInterrupt itself)
    print("stopped")
    return 0
