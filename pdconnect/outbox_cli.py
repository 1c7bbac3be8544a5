"""``pdconnect worker`` and ``pdconnect outbox``: run a worker, and look after the outbox."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pdconnect.cli import add_database, missing_sqlite_file, number
from pdconnect.errors import PdConnectError

if TYPE_CHECKING:
    from pdconnect.outbox import Outbox
    from pdconnect.worker import Worker


#: The largest id a PostgreSQL BIGSERIAL can hold.
MAX_EVENT_ID = 2**63 - 1
DAY = 86400.0
#: The lowest ``--rate-limit``, events a minute: one event every 100 minutes.
MIN_RATE = 0.01


def _add_database(parser: argparse.ArgumentParser) -> None:
    add_database(parser)
    parser.add_argument("--table-prefix", default="pdconnect_outbox", help="outbox table name (default: %(default)s)")


#: The worker's numeric options: (option, its reader, default, help).
_WORKER_NUMBERS: list[tuple[str, Callable[[str], Any], float, str]] = [
    ("--concurrency", number(int, minimum=1, maximum=1024), 8, "requests in flight at once (default: %(default)s)"),
    (
        "--lease",
        number(float, minimum=1, maximum=DAY),
        60.0,
        "seconds an event stays claimed; a dead worker's events are claimable after it (default: %(default)s)",
    ),
    (
        "--rate-limit",
        number(float, minimum=MIN_RATE, maximum=1_000_000, words=("off",)),
        120.0,
        "events a minute per routing key for this worker, or 'off' (default: 120)",
    ),
    (
        "--max-age",
        number(float, above=0, maximum=365 * DAY),
        DAY,
        "dead-letter events older than this, seconds (default: 86400)",
    ),
    (
        "--timeout",
        number(float, above=0, maximum=600),
        10.0,
        "read timeout of a request, seconds; with the connect timeout it bounds the whole answer (default: 10)",
    ),
    (
        "--max-backoff",
        number(float, above=0, maximum=DAY),
        300.0,
        "longest wait between retries, seconds (default: 300)",
    ),
]


def add_parsers(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    worker = commands.add_parser(
        "worker",
        help="deliver the outbox's events to PagerDuty until stopped (SIGTERM or Ctrl-C)",
        description="Run a worker with a live progress line. Stops cleanly on SIGTERM or Ctrl-C.",
    )
    _add_database(worker)
    for option, kind, default, text in _WORKER_NUMBERS:
        worker.add_argument(option, type=kind, default=default, help=text)
    worker.add_argument("--until-empty", action="store_true", help="stop when nothing is left to deliver")
    worker.add_argument(
        "--transport",
        choices=["auto", "requests"],
        default="auto",
        help="auto: http.client, or requests when a proxy is set in the environment (default: auto)",
    )
    worker.add_argument("--quiet", action="store_true", help="no progress line")
    worker.set_defaults(handler=_run_worker)

    outbox = commands.add_parser("outbox", help="look at the outbox: status, dead letters, requeue")
    actions = outbox.add_subparsers(dest="outbox_command", required=True, metavar="ACTION")
    status = actions.add_parser("status", help="queue depth, due events, dead letters, paused keys")
    _add_database(status)
    status.add_argument("--prometheus", action="store_true", help="print Prometheus metrics text instead")
    status.set_defaults(handler=_status)
    dead = actions.add_parser("dead", help="list dead-lettered events with their reasons")
    _add_database(dead)
    dead.add_argument(
        "--limit", type=number(int, minimum=1, maximum=10_000), default=50, help="at most this many (default: 50)"
    )
    dead.set_defaults(handler=_dead)
    requeue = actions.add_parser("requeue", help="put dead-lettered events back in the queue")
    _add_database(requeue)
    chosen = requeue.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--all", action="store_true", help="every dead event")
    chosen.add_argument(
        "ids",
        nargs="*",
        type=number(int, minimum=1, maximum=MAX_EVENT_ID),
        default=[],
        metavar="ID",
        help="these event ids",
    )
    requeue.add_argument(
        "--superseded",
        action="store_true",
        help="also events whose group has a later event delivered or queued (they would arrive after it)",
    )
    requeue.set_defaults(handler=_requeue)
    purge = actions.add_parser("purge", help="delete dead-lettered events finished long ago")
    _add_database(purge)
    purge.add_argument(
        "--dead-older-than",
        type=number(float, minimum=0, maximum=1e10),
        required=True,
        metavar="SECONDS",
        help="delete dead (and requeued) events finished more than this many seconds ago",
    )
    purge.set_defaults(handler=_purge)


def _existing_outbox(args: argparse.Namespace) -> Outbox:
    """The outbox for ``worker`` and ``outbox status|dead|requeue``, which never create one.

    A mistyped SQLite path or table prefix would otherwise show an empty, healthy outbox, or
    run a worker that delivers nothing forever (``pdconnect db init`` creates the tables).
    """
    import sqlalchemy as sa

    from pdconnect.outbox import Outbox

    sqlite_file = missing_sqlite_file(args.database)
    if sqlite_file is not None:
        raise NoOutbox(f"no such SQLite file: {sqlite_file} (create the tables with 'pdconnect db init')")
    outbox = Outbox(args.database, table_prefix=args.table_prefix, create_tables=False)
    inspector = sa.inspect(outbox.engine)
    if not inspector.has_table(args.table_prefix):
        outbox.close()
        raise NoOutbox(
            f"no outbox table {args.table_prefix!r} there (check --table-prefix, or run 'pdconnect db init')"
        )
    # A table of another kind, or of a pdconnect whose columns differ, would fail every
    # statement; a worker would take that for an outage and retry forever.
    present = {str(column["name"]) for column in inspector.get_columns(args.table_prefix)}
    missing = sorted(set(outbox.events.columns.keys()) - present)
    if missing:
        outbox.close()
        raise NoOutbox(
            f"the table {args.table_prefix!r} is not a pdconnect outbox (no column {', '.join(missing[:3])}); "
            "check --table-prefix"
        )
    return outbox


class NoOutbox(PdConnectError):
    """``pdconnect outbox`` was pointed at a database without an outbox."""


def _progress(worker: Worker) -> None:
    stats = worker.outbox.stats()
    counters = worker.counters
    line = (
        f"delivered {counters.delivered}  retrying {counters.retried}  dead {counters.dead}  "
        f"queue {stats.depth} (due {stats.due})  {counters.rate():.1f}/s"
    )
    if sys.stderr.isatty():
        sys.stderr.write("\r" + line.ljust(100))
    else:
        sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _run_worker(args: argparse.Namespace) -> int:
    from pdconnect.retry import RetryPolicy
    from pdconnect.sender import Sender
    from pdconnect.transport import RequestsTransport, default_worker_transport
    from pdconnect.worker import Worker

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    limit = None if args.rate_limit == "off" else float(args.rate_limit)
    outbox = _existing_outbox(args)
    try:
        worker = Worker(
            outbox,
            sender=Sender(
                retry=RetryPolicy.no_retries(),
                timeout=(min(3.05, args.timeout), args.timeout),
                transport=RequestsTransport() if args.transport == "requests" else default_worker_transport(),
            ),
            concurrency=args.concurrency,
            lease=args.lease,
            rate_limit_per_key=limit,
            max_age=args.max_age,
            retry=RetryPolicy(base_delay=min(1.0, args.max_backoff), max_delay=args.max_backoff),
        )
    except ValueError as exc:
        outbox.close()
        print(f"pdconnect worker: {exc}", file=sys.stderr)
        return 2
    print(f"pdconnect worker {worker.name} on {outbox!r}", flush=True)
    started = time.monotonic()
    try:
        worker.run(until_empty=args.until_empty, handle_signals=True, on_tick=None if args.quiet else _progress)
        if not args.quiet:
            _progress(worker)
            sys.stderr.write("\n")
    finally:
        outbox.close()
    counters = worker.counters
    print(
        f"stopped: delivered {counters.delivered}, retried {counters.retried}, dead {counters.dead} "
        f"in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    return 0


def _status(args: argparse.Namespace) -> int:
    from pdconnect.metrics import metrics_text

    with _existing_outbox(args) as outbox:
        stats = outbox.stats()
        text = metrics_text(outbox, stats=stats)
    if args.prometheus:
        sys.stdout.write(text)
        return 0
    print(f"pending     {stats.pending}")
    print(f"leased      {stats.leased}")
    print(f"due         {stats.due}")
    print(f"oldest due  {stats.oldest_due_age:.1f} s")
    print(f"delivered   {stats.delivered}  (kept for a while, then purged)")
    print(f"dead        {stats.dead}")
    print(f"paused keys {stats.paused_keys}")
    return 0


def _when(stamp: float | None) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S") if stamp else "-"


def _dead(args: argparse.Namespace) -> int:
    with _existing_outbox(args) as outbox:
        events = outbox.dead(limit=args.limit)
    if not events:
        print("no dead events")
        return 0
    for event in events:
        note = "  (superseded: a later event of its group was delivered or is queued)" if event.superseded else ""
        print(
            f"{event.id}  {_when(event.finished_at)}  key {event.routing_key_hint}  {event.action} "
            f"dedup={event.dedup_key!r}  attempts={event.attempts}  reason: {event.reason}{note}"
        )
    return 0


def _requeue(args: argparse.Namespace) -> int:
    ids = None if args.all else args.ids
    with _existing_outbox(args) as outbox:
        left = [] if args.superseded else outbox.superseded_dead(ids)
        count = outbox.requeue(ids, superseded=args.superseded)
    print(f"requeued {count} event(s)")
    if left:
        shown = " ".join(str(i) for i in left[:20]) + (" ..." if len(left) > 20 else "")
        print(
            f"left {len(left)} superseded event(s) dead: {shown}\n"
            "  a later event of each one's group was delivered or is queued, so it would arrive after it"
            " (a trigger after its resolve reopens the incident); --superseded requeues them anyway"
        )
    return 0


def _purge(args: argparse.Namespace) -> int:
    with _existing_outbox(args) as outbox:
        count = outbox.purge_dead(args.dead_older_than)
    print(f"deleted {count} dead event(s)")
    return 0
