"""The ``pdconnect`` command: small tools for vendors' engineers.

``pdconnect snippet`` prints the embeddable button; ``pdconnect check-key`` checks an
integration key; ``pdconnect sandbox`` runs a local PagerDuty; ``pdconnect worker`` delivers the
outbox and ``pdconnect outbox`` looks after it; ``pdconnect alertmanager`` receives Prometheus
Alertmanager's webhooks; ``pdconnect db init`` creates the tables.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pdconnect.button import DEFAULT_LABEL, ButtonSize, ButtonTheme, embed_snippet
from pdconnect.errors import PdConnectError
from pdconnect.keys import classify_key, normalize_key
from pdconnect.version import __version__


def _snippet(args: argparse.Namespace) -> int:
    sys.stdout.write(embed_snippet(args.href, label=args.label, size=args.size, theme=args.theme))
    return 0


def _check_key(args: argparse.Namespace) -> int:
    raw = sys.stdin.readline() if args.key == "-" else args.key
    key = normalize_key(raw)
    print(f"valid {classify_key(key).value} key ending in {key[-4:]}")
    return 0


def _db_init(args: argparse.Namespace) -> int:
    """Create every table pdconnect uses, as the Flask extension and a worker would."""
    # SQLAlchemy is a core dependency; importing the stores here keeps the CLI's start-up light.
    from pdconnect.nonces import SqlNonceStore
    from pdconnect.outbox import Outbox
    from pdconnect.storage import SqlIntegrationStore
    from pdconnect.webhooks import IncidentStateStore, SqlDeliveryLog, SqlWebhookSecretStore

    store = SqlIntegrationStore(args.database, create_tables=False)
    store.create_tables()
    SqlNonceStore(store.engine)
    SqlWebhookSecretStore(store.engine)
    SqlDeliveryLog(store.engine)
    IncidentStateStore(store.engine)
    Outbox(store.engine, table_prefix=args.outbox_table_prefix)
    print(f"pdconnect tables ready in {store.engine.url.render_as_string(hide_password=True)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pdconnect", description="Vendor-side PagerDuty tools.")
    parser.add_argument("--version", action="version", version=f"pdconnect {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    snippet = commands.add_parser(
        "snippet",
        help="print the self-contained 'Alert with PagerDuty' button HTML",
        description="Print one block of HTML (no scripts, no external files) to paste into a page.",
    )
    snippet.add_argument("--href", default="/pagerduty/connect", help="where the button links (default: %(default)s)")
    snippet.add_argument("--label", default=DEFAULT_LABEL, help="button text (default: %(default)s)")
    snippet.add_argument("--size", choices=[s.value for s in ButtonSize], default=ButtonSize.MEDIUM.value)
    snippet.add_argument("--theme", choices=[t.value for t in ButtonTheme], default=ButtonTheme.LIGHT.value)
    snippet.set_defaults(handler=_snippet)

    check = commands.add_parser(
        "check-key",
        help="check an integration key's format (use '-' to read it from stdin)",
        description="Check that a key is 32 letters and digits and say whether it is a service or ruleset key.",
    )
    check.add_argument("key", help="the key, or '-' to read one line from stdin (keeps it out of the process list)")
    check.set_defaults(handler=_check_key)

    database = commands.add_parser("db", help="manage pdconnect's tables in your database")
    database_commands = database.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    init = database_commands.add_parser(
        "init",
        help="create pdconnect's tables (integrations, nonces, webhooks, outbox) if missing",
        description="Create pdconnect's tables if they do not exist; safe to run again.",
    )
    init.add_argument("--database", required=True, help="a SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db")
    init.add_argument(
        "--outbox-table-prefix", default="pdconnect_outbox", help="the outbox's table name (default: %(default)s)"
    )
    init.set_defaults(handler=_db_init)

    from pdconnect.alertmanager_cli import add_parser as add_alertmanager
    from pdconnect.outbox_cli import add_parsers as add_outbox
    from pdconnect.sandbox.cli import add_parser as add_sandbox

    add_sandbox(commands)
    add_outbox(commands)
    add_alertmanager(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for bad input, 1 for a database failure)."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except PdConnectError as exc:
        print(f"pdconnect: {exc}", file=sys.stderr)
        return 2
    except (ArgumentError, NoSuchModuleError) as exc:
        print(f"pdconnect: --database is not a SQLAlchemy URL this installation can use ({exc})", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        from pdconnect.database import driver_message

        print(f"pdconnect: the database {_database_shown(args)} cannot be used: {driver_message(exc)}", file=sys.stderr)
        return 1
    return status


def _database_shown(args: argparse.Namespace) -> str:
    """The command's ``--database`` URL with its password hidden, or the sandbox's ``--db`` file."""
    from sqlalchemy.engine import make_url

    url = getattr(args, "database", None)
    if not url:
        return str(getattr(args, "db", None) or "(none given)")
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # only for a message: an unreadable URL was refused before this
        return "(unreadable URL)"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
