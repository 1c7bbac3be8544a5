"""The ``pdconnect`` command: small tools for vendors' engineers.

``pdconnect snippet`` prints the embeddable button; ``pdconnect check-key`` checks an
integration key; ``pdconnect sandbox`` runs a local PagerDuty; ``pdconnect worker`` delivers the
outbox and ``pdconnect outbox`` looks after it; ``pdconnect alertmanager`` receives Prometheus
Alertmanager's webhooks; ``pdconnect db init`` creates the tables.

No command prints a traceback: a bad option is one line and exit status 2 (argparse's own
convention), a failure while working (a database that does not answer, a busy port) one line
and status 1. Numeric options are read by :func:`number`, which refuses NaN, infinity and
values out of range where they are read.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from pdconnect.button import DEFAULT_LABEL, ButtonSize, ButtonTheme, embed_snippet
from pdconnect.database import shown_url
from pdconnect.errors import PdConnectError
from pdconnect.keys import classify_key, normalize_key
from pdconnect.version import __version__


class CommandFailed(PdConnectError):
    """A command could not do its work (exit status 1); the message is the one line shown."""


class UsageError(PdConnectError):
    """A command's options cannot be used as given (exit status 2), found after parsing."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``prog: message``) instead of the usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _figure(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _shown(text: str) -> str:
    """An argument as an error message quotes it: escaped, and short."""
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


def number(
    kind: type[int] | type[float],
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    words: Sequence[str] = (),
) -> Callable[[str], Any]:
    """An argparse ``type=`` for a finite number in range; ``words`` (such as ``off``) pass as they are.

    ``minimum`` and ``maximum`` are inclusive, ``above`` exclusive. NaN, infinity, a value
    out of range or one that is not a number raise :class:`argparse.ArgumentTypeError`,
    which argparse turns into one line and exit status 2.
    """
    what = "a whole number" if kind is int else "a number"
    if minimum is not None and maximum is not None:
        limits = f" from {_figure(minimum)} to {_figure(maximum)}"
    else:
        parts = [f"above {_figure(above)}"] if above is not None else []
        parts += [f"at least {_figure(minimum)}"] if minimum is not None else []
        parts += [f"at most {_figure(maximum)}"] if maximum is not None else []
        limits = (" " + " and ".join(parts)) if parts else ""
    expected = what + limits + "".join(f", or {w!r}" for w in words)

    def parse(text: str) -> Any:
        if text in words:
            return text
        try:
            value = kind(text.strip()) if text.strip().isascii() else None
        except (ValueError, OverflowError):
            value = None
        if value is None or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {_shown(text)}")
        too_low = (minimum is not None and value < minimum) or (above is not None and value <= above)
        if too_low or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {_shown(text)}")
        return value

    parse.__name__ = what  # argparse names the type in some messages
    return parse


def numbers(item: Callable[[str], Any], *, least: int = 1, most: int = 50) -> Callable[[str], tuple[Any, ...]]:
    """An argparse ``type=`` for a comma-separated list of ``least`` to ``most`` :func:`number` values."""

    def parse(text: str) -> tuple[Any, ...]:
        parts = [part for part in text.split(",") if part.strip()]
        if not least <= len(parts) <= most:
            raise argparse.ArgumentTypeError(f"expected {least} to {most} values separated by commas, got {len(parts)}")
        try:
            return tuple(item(part) for part in parts)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"each value: {exc}") from None

    parse.__name__ = "list of numbers"
    return parse


def database_url(text: str) -> str:
    """An argparse ``type=`` for ``--database``: a SQLAlchemy URL, checked but kept as text.

    The refusal never quotes the URL, which may carry a password.
    """
    from pdconnect.database import DatabaseURLError, parse_url

    try:
        parse_url(text)
    except DatabaseURLError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_database(parser: argparse.ArgumentParser, *, help: str = "SQLAlchemy URL of the outbox's database") -> None:
    parser.add_argument("--database", required=True, type=database_url, help=help)


def missing_sqlite_file(url: str) -> str | None:
    """The file a SQLite ``url`` names when no such file exists, else ``None``.

    SQLite creates a file it is asked to open, so a mistyped path would silently become a
    new, empty database. ``None`` for other databases and for SQLite in memory.
    """
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return None if Path(parsed.database).is_file() else parsed.database


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
    print(f"pdconnect tables ready in {shown_url(store.engine.url)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="pdconnect", description="Vendor-side PagerDuty tools.")
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
    add_database(init, help="a SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db")
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
    """Run the command line; returns the exit status: 2 for bad input, 1 for a failure while working."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    from pdconnect.database import DatabaseDriverMissing, DatabaseURLError

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse already printed
        return exc.code if isinstance(exc.code, int) else 2
    words = [getattr(args, name, None) for name in ("command", "outbox_command", "db_command")]
    prog = " ".join(["pdconnect", *(w for w in words if w)])
    try:
        status: int = args.handler(args)
    except (CommandFailed, DatabaseDriverMissing) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except DatabaseURLError as exc:
        print(f"{prog}: --database: {exc}", file=sys.stderr)
        return 2
    except PdConnectError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except (ArgumentError, NoSuchModuleError) as exc:
        print(f"pdconnect: --database is not a SQLAlchemy URL this installation can use ({exc})", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:
        from pdconnect.database import driver_message

        print(f"pdconnect: the database {_database_shown(args)} cannot be used: {driver_message(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last net: one line, never a traceback
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"{prog}: failed: {type(exc).__name__}: {first}", file=sys.stderr)
        return 1
    return status


def _database_shown(args: argparse.Namespace) -> str:
    """The command's ``--database`` URL with its password hidden, or the sandbox's ``--db`` file."""
    from pdconnect.database import shown_url

    url = getattr(args, "database", None)
    if not url:
        return str(getattr(args, "db", None) or "(none given)")
    return shown_url(url)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
