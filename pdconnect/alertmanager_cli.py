"""``pdconnect alertmanager``: receive Alertmanager's webhooks and queue them for PagerDuty.

::

    export PDCONNECT_ROUTING_KEYS=<integration key>      # one or more, comma-separated
    export PDCONNECT_ALERTMANAGER_TOKEN=<a long random token>
    pdconnect alertmanager --listen 127.0.0.1:9095 --database sqlite:///outbox.db --worker

Keys and the token come from the environment so they stay out of the process list.
``--worker`` also delivers the outbox in the same process; without it, run ``pdconnect
worker`` on the same database. SIGTERM or Ctrl-C stops both cleanly.

The bridge creates its outbox table when it is missing (it is the producer), but it refuses a
SQLite file that does not exist unless ``--create`` is given: a mistyped path would otherwise
queue every alert in a new database no worker reads.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Any

from pdconnect.cli import CommandFailed, UsageError, add_database, missing_sqlite_file
from pdconnect.urls import is_loopback_host

KEYS_VARIABLE = "PDCONNECT_ROUTING_KEYS"
TOKEN_VARIABLE = "PDCONNECT_ALERTMANAGER_TOKEN"  # noqa: S105 -- the variable's name, not a token
#: The shortest bearer token the bridge takes.
MIN_TOKEN_LENGTH = 16


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser(
        "alertmanager",
        help="receive Prometheus Alertmanager webhooks and queue them for PagerDuty",
        description=(
            "Listen for Alertmanager's webhook notifications (payload version 4), turn each group into "
            f"one PagerDuty event and put it in the outbox. Routing keys come from ${KEYS_VARIABLE} "
            f"(or --routing-key); the bearer token Alertmanager must send from ${TOKEN_VARIABLE}."
        ),
    )
    parser.add_argument(
        "--listen",
        type=listen_address,
        default=("127.0.0.1", 9095),
        metavar="HOST:PORT",
        help="where to listen, port 0 for any free one (default: 127.0.0.1:9095)",
    )
    add_database(parser)
    parser.add_argument("--table-prefix", default="pdconnect_outbox", help="outbox table name (default: %(default)s)")
    parser.add_argument(
        "--routing-key",
        action="append",
        default=[],
        help=f"an integration key to send to (repeatable; prefer ${KEYS_VARIABLE}, out of the process list)",
    )
    parser.add_argument(
        "--default-severity",
        choices=["critical", "error", "warning", "info"],
        default="error",
        help="severity when the group's 'severity' label is missing or unknown (default: %(default)s)",
    )
    parser.add_argument("--client", default="Alertmanager", help="the events' client name (default: %(default)s)")
    parser.add_argument(
        "--events-base-url",
        default=None,
        help="where events go, e.g. a local sandbox (default: PagerDuty's Events API for the key's region)",
    )
    parser.add_argument("--worker", action="store_true", help="also deliver the outbox in this process")
    parser.add_argument(
        "--create",
        action="store_true",
        help="create the SQLite file if it does not exist (without it, a missing file is refused as a likely typo)",
    )
    parser.add_argument(
        "--no-token",
        action="store_true",
        help=f"accept requests without a bearer token (only when listening on loopback; else set ${TOKEN_VARIABLE})",
    )
    parser.set_defaults(handler=_run)


def listen_address(value: str) -> tuple[str, int]:
    """An argparse ``type=`` for ``HOST:PORT`` (``[::1]:9095`` for IPv6); the port from 0 to 65535."""
    host, _, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]") if host.startswith("[") else host
    valid_host = bool(host) and host.isascii() and host.isprintable() and " " not in host and len(host) <= 253
    if not valid_host or not (port.isascii() and port.isdigit()) or len(port) > 5 or int(port) > 65535:
        shown = repr(value[:60])
        raise argparse.ArgumentTypeError(f"expected HOST:PORT with a port from 0 to 65535, got {shown}")
    return host, int(port)


def _run(args: argparse.Namespace) -> int:
    from pdconnect.alertmanager_bridge import AlertmanagerBridge, serve
    from pdconnect.errors import PdConnectError
    from pdconnect.events import Severity
    from pdconnect.keys import normalize_key
    from pdconnect.outbox import Outbox
    from pdconnect.sender import Sender
    from pdconnect.worker import Worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    host, port = args.listen
    try:
        raw_keys = [*args.routing_key, *os.environ.get(KEYS_VARIABLE, "").split(",")]
        keys = [normalize_key(k, name="routing key") for k in raw_keys if k.strip()]
    except (ValueError, PdConnectError) as exc:
        print(f"pdconnect alertmanager: {exc}", file=sys.stderr)
        return 2
    if not keys:
        print(f"pdconnect alertmanager: set ${KEYS_VARIABLE} (or --routing-key)", file=sys.stderr)
        return 2
    token = os.environ.get(TOKEN_VARIABLE) or None
    if token is None and not (args.no_token and is_loopback_host(host)):
        print(
            f"pdconnect alertmanager: set ${TOKEN_VARIABLE} (--no-token is allowed only on loopback)", file=sys.stderr
        )
        return 2
    if token is not None and not _usable_token(token):
        # Checked here, once: a token that cannot be compared (bytes that are not UTF-8) or
        # that nobody could send ("a", " ") would leave every request refused, forever.
        print(
            f"pdconnect alertmanager: ${TOKEN_VARIABLE} must be {MIN_TOKEN_LENGTH} to 4096 printable ASCII "
            "characters without spaces",
            file=sys.stderr,
        )
        return 2
    try:
        sender = Sender(client=args.client, events_base_url=args.events_base_url)
    except (ValueError, PdConnectError) as exc:
        print(f"pdconnect alertmanager: {exc}", file=sys.stderr)
        return 2
    sqlite_file = missing_sqlite_file(args.database)
    if sqlite_file is not None and not args.create:
        sender.close()
        raise UsageError(f"no such SQLite file: {sqlite_file} (check --database, or pass --create to make it)")
    outbox = Outbox(args.database, sender=sender, table_prefix=args.table_prefix)
    bridge = AlertmanagerBridge(
        outbox, keys, token=token, default_severity=Severity(args.default_severity), client=args.client
    )
    try:
        server = serve(bridge, host, port)
    except OSError as exc:  # a busy port, an address this machine does not have, a name that does not resolve
        outbox.close()
        raise CommandFailed(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    threading.Thread(target=server.serve_forever, name="alertmanager-http", daemon=True).start()
    print(
        f"pdconnect alertmanager listening on http://{host}:{server.server_address[1]} "
        f"for {len(keys)} routing key(s), outbox {outbox!r}",
        flush=True,
    )
    try:
        if args.worker:
            Worker(outbox).run(handle_signals=True)
        else:
            _wait_for_signal()
    finally:
        server.shutdown()
        server.server_close()
        outbox.close()
    print("pdconnect alertmanager stopped", flush=True)
    return 0


def _usable_token(token: str) -> bool:
    """Whether ``token`` can be sent in a header and compared: printable ASCII, long enough to guess hard."""
    return MIN_TOKEN_LENGTH <= len(token) <= 4096 and token.isascii() and token.isprintable() and " " not in token


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handle(_signum: int, _frame: Any) -> None:
        stop.set()

    previous = {each: signal.signal(each, handle) for each in (signal.SIGTERM, signal.SIGINT)}
    try:
        stop.wait()
    finally:
        for each, handler in previous.items():
            signal.signal(each, handler)
