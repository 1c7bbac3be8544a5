"""``pdconnect sandbox``: run the local PagerDuty until stopped."""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pdconnect.cli import CommandFailed, UsageError, number, numbers
from pdconnect.urls import is_loopback_host

if TYPE_CHECKING:
    from pdconnect.sandbox.engine import Sandbox
    from pdconnect.sandbox.server import SandboxServer

DEFAULT_PORT = 8787
#: Mirrors :data:`pdconnect.sandbox.server.READ_TIMEOUT` (not imported: that loads Werkzeug).
READ_TIMEOUT = 30.0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "sandbox",
        help="run a local PagerDuty (Connect and install pages, Events APIs, incidents, webhooks)",
        description="Run a local stand-in for PagerDuty on loopback until stopped (Ctrl-C).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument(
        "--port",
        type=number(int, minimum=0, maximum=65535),
        default=DEFAULT_PORT,
        help="port, 0 for any free one (default: %(default)s)",
    )
    parser.add_argument("--db", type=Path, help="keep state in this SQLite file, so it survives a restart")
    parser.add_argument(
        "--faults",
        type=fault_plan,
        default="",
        help="inject faults on the events endpoints (target=rest+identity or target=all for more), e.g. "
        '"429=0.05,429-retry-after=0.05,retry-after=1,503=0.05,latency=50,drop=0.01,down=30,seed=7"',
    )
    parser.add_argument(
        "--rate-limit",
        type=number(int, minimum=1, maximum=1_000_000, words=("off",)),
        default="120",
        help="events a minute per integration key, or 'off' (default: %(default)s)",
    )
    parser.add_argument(
        "--app",
        action="append",
        default=[],
        type=app_spec,
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
        type=numbers(number(float, minimum=0, maximum=3600), most=20),
        default="0.2,0.5,1,2,4",
        metavar="SECONDS,...",
        help="waits between webhook attempts; PagerDuty's hours scaled down (default: %(default)s)",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        type=allowed_host,
        metavar="NAME",
        help="also answer requests whose Host is NAME (repeatable); loopback names always work, others get a 421",
    )
    parser.add_argument(
        "--read-timeout",
        type=number(float, above=0, maximum=3600),
        default=READ_TIMEOUT,
        metavar="SECONDS",
        help="close a connection that takes longer to send its request (default: %(default)s)",
    )
    parser.add_argument("--no-seed", action="store_true", help="start empty instead of with the demo account")
    parser.set_defaults(handler=run)


def fault_plan(spec: str) -> Any:
    """An argparse ``type=`` for ``--faults``: a :class:`~pdconnect.sandbox.faults.FaultPlan`."""
    from pdconnect.sandbox.faults import FaultPlan

    try:
        return FaultPlan.parse(spec)
    except ValueError as exc:  # FaultSpecError is one
        raise argparse.ArgumentTypeError(str(exc)) from None


def allowed_host(text: str) -> str:
    """An argparse ``type=`` for ``--allowed-host``: a host name or address, without a port."""
    from pdconnect.sandbox.hosts import HostError, normalise_host

    try:
        return normalise_host(text)
    except HostError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def app_spec(spec: str) -> tuple[str, list[str]]:
    """An argparse ``type=`` for ``--app APP_ID=URL[,URL...]``."""
    app_id, sep, urls = spec.partition("=")
    if not sep or not app_id.strip():
        raise argparse.ArgumentTypeError(f"expected APP_ID=URL[,URL...], got {spec[:60]!r}")
    return app_id.strip(), [u.strip() for u in urls.split(",") if u.strip()]


def build_server(args: argparse.Namespace) -> SandboxServer:
    """Make the server the arguments (as :func:`add_parser`'s options parse them) describe, without starting it."""
    # Imported here so that ``pdconnect --help`` and the core CLI load no web framework.
    from pdconnect.sandbox.engine import Sandbox, SandboxSettings
    from pdconnect.sandbox.webhooks import RetrySchedule

    settings = SandboxSettings(
        webhook_schedule=RetrySchedule(delays=args.webhook_retry_delays),
        rate_limit=None if args.rate_limit == "off" else args.rate_limit,
        account_name_field=args.account_name_field,
        allow_remote_webhooks=args.allow_remote_webhooks,
        seed=not args.no_seed,
    )
    sandbox = Sandbox(settings, db_path=str(args.db) if args.db else None, faults=args.faults)
    try:
        return _serve(sandbox, args)
    except BaseException:
        sandbox.close()
        raise


def _serve(sandbox: Sandbox, args: argparse.Namespace) -> SandboxServer:
    from pdconnect.sandbox.engine import SandboxError
    from pdconnect.sandbox.server import SandboxServer
    from pdconnect.sandbox.tls import make_certificates

    for app_id, urls in args.app:
        try:
            sandbox.register_app(app_id, urls)
        except SandboxError as exc:
            raise UsageError(f"--app: {exc.message}") from None
    tls = None
    if args.tls:
        try:
            tls = make_certificates(args.tls_dir or Path(tempfile.mkdtemp(prefix="pdconnect-sandbox-tls-")))
        except RuntimeError as exc:  # trustme is not installed
            raise CommandFailed(str(exc)) from None
        except OSError as exc:
            raise CommandFailed(f"--tls-dir: cannot write the certificates: {exc.strerror or exc}") from None
    # Werkzeug prints its own lines and exits when it cannot bind: keep them for one line of ours.
    said = io.StringIO()
    try:
        with contextlib.redirect_stderr(said):
            return SandboxServer(
                sandbox,
                host=args.host,
                port=args.port,
                tls=tls,
                allowed_hosts=args.allowed_host,
                read_timeout=args.read_timeout,
            )
    except (OSError, SystemExit) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else (said.getvalue().strip().splitlines() or ["?"])[0]
        raise CommandFailed(f"cannot listen on {args.host}:{args.port}: {reason}") from None


def run(args: argparse.Namespace) -> int:
    server = build_server(args)
    if not is_loopback_host(args.host):
        print(
            f"warning: serving on {args.host}, reachable from other machines"
            "; other names for this machine need --allowed-host",
            file=sys.stderr,
        )
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
