"""Every command-line option under hostile input: one line and a status, never a traceback (issue 9).

Numeric options refuse NaN, infinity, out-of-range and non-numbers at parse time (status 2);
failures while working (a missing driver, a busy port, a missing optional package) are one
line and status 1. Nothing here starts a long-running command: a refusal comes first.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.cli import ArgumentParser, build_parser, main, number, numbers
from tests.conftest import SERVICE_KEY

TOKEN = "am-token-Qw8Er4Ty6Ui2"

# (command words, option, a value it accepts, what the accepted value must be)
OPTIONS: list[tuple[str, str, str, Any]] = [
    ("worker", "--concurrency", "8", 8),
    ("worker", "--lease", "30", 30.0),
    ("worker", "--rate-limit", "60", 60.0),
    ("worker", "--max-age", "3600", 3600.0),
    ("worker", "--timeout", "2.5", 2.5),
    ("worker", "--max-backoff", "60", 60.0),
    ("outbox dead", "--limit", "10", 10),
    ("outbox purge", "--dead-older-than", "86400", 86400.0),
    ("sandbox", "--port", "0", 0),
    ("sandbox", "--rate-limit", "30", 30),
    ("sandbox", "--read-timeout", "2.5", 2.5),
    ("sandbox", "--read-timeout", "2.5", 2.5),
    ("sandbox", "--webhook-retry-delays", "0,1.5", (0.0, 1.5)),
    ("alertmanager", "--listen", "127.0.0.1:0", ("127.0.0.1", 0)),
]

HOSTILE = [
    "nan",
    "NaN",
    "-nan",
    "inf",
    "-inf",
    "Infinity",
    "1e999",
    "-1",
    "-0.5",
    "99999999999999999999999",
    "",
    " ",
    "abc",
    "1" * 5000,
    "\x00",
    "1\x00",
    "\x1b[31m1",
    "\ud800",
    "\udcff",
    "٣",  # an Arabic-Indic digit: int() takes it, an operator did not mean it
    "0x10",
    "1,2" * 100,
]

REQUIRED = {
    "worker": ["--database", "sqlite:///never-made.db"],
    "outbox dead": ["--database", "sqlite:///never-made.db"],
    "outbox purge": ["--database", "sqlite:///never-made.db"],
    "sandbox": [],
    "alertmanager": ["--database", "sqlite:///never-made.db"],
}


def _argv(command: str, option: str, value: str) -> list[str]:
    return [*command.split(), *REQUIRED[command], f"{option}={value}"]


def _refused(argv: list[str]) -> tuple[int, str, str]:
    """Parse only first (a command the parser accepted would run, a sandbox forever), then run."""
    with contextlib.redirect_stderr(io.StringIO()), pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    return _run(argv)


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    assert not (tmp_path / "never-made.db").exists(), "a refused command made no database"


def _accepted(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


@pytest.mark.parametrize(("command", "option", "good", "expected"), OPTIONS, ids=[f"{c} {o}" for c, o, _, _ in OPTIONS])
def test_a_good_value_is_read_as_its_type(command: str, option: str, good: str, expected: Any) -> None:
    args = _accepted(_argv(command, option, good))
    assert getattr(args, option.lstrip("-").replace("-", "_")) == expected


@pytest.mark.parametrize("value", HOSTILE, ids=[ascii(v)[:20] for v in HOSTILE])
@pytest.mark.parametrize(("command", "option", "good", "expected"), OPTIONS, ids=[f"{c} {o}" for c, o, _, _ in OPTIONS])
def test_a_hostile_value_is_one_line_and_status_2(
    command: str, option: str, good: str, expected: Any, value: str
) -> None:
    if value in ("0",) and option in ("--port",):
        pytest.skip("0 is a port")
    status, out, err = _refused(_argv(command, option, value))
    assert status == 2, err
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"argument {option}" in err
    assert len(err) < 400, "a long value is cut in the message"


@pytest.mark.parametrize(
    ("command", "option", "value"),
    [
        ("worker", "--concurrency", "0"),
        ("worker", "--concurrency", "1025"),
        ("worker", "--concurrency", "1.5"),
        ("worker", "--lease", "0"),
        ("worker", "--lease", "0.5"),  # a lease shorter than a request hands an event to two workers
        ("worker", "--lease", "86401"),
        ("worker", "--rate-limit", "0"),
        ("worker", "--rate-limit", "-5"),
        ("worker", "--timeout", "0"),
        ("worker", "--timeout", "601"),
        ("worker", "--max-age", "0"),
        ("worker", "--max-backoff", "0"),
        ("outbox dead", "--limit", "0"),
        ("outbox dead", "--limit", "10001"),
        ("sandbox", "--port", "65536"),
        ("sandbox", "--rate-limit", "0"),
        ("sandbox", "--rate-limit", "1.5"),
        ("sandbox", "--webhook-retry-delays", "1,-1"),
        ("sandbox", "--webhook-retry-delays", "1,nan"),
        ("sandbox", "--webhook-retry-delays", ",".join(["1"] * 21)),
        ("sandbox", "--faults", "429=nan"),
        ("sandbox", "--faults", "latency=inf"),
        ("sandbox", "--faults", "seed=1.5"),
        ("sandbox", "--faults", "teapot=1"),
        ("sandbox", "--faults", "429"),
        ("alertmanager", "--listen", "127.0.0.1:65536"),
        ("alertmanager", "--listen", "127.0.0.1"),
        ("alertmanager", "--listen", ":9095"),
        ("alertmanager", "--listen", "127.0.0.1:-1"),
        ("alertmanager", "--listen", "127.0.0.1:٣"),
        ("alertmanager", "--listen", "bad host:1"),
    ],
)
def test_out_of_range(command: str, option: str, value: str) -> None:
    status, _, err = _refused(_argv(command, option, value))
    assert status == 2 and len(err.strip().splitlines()) == 1 and f"argument {option}" in err, err


@pytest.mark.parametrize("value", ["0", "-1", "1.5", "nan", "9223372036854775808", "x"])
def test_requeue_ids_are_positive_whole_numbers(value: str) -> None:
    status, _, err = _refused(["outbox", "requeue", "--database", "sqlite:///never-made.db", "--", value])
    assert status == 2 and "argument ID" in err and len(err.strip().splitlines()) == 1, err


def _numeric_actions(parser: argparse.ArgumentParser, words: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _numeric_actions(sub, (*words, name))
        elif action.type is not None:
            yield " ".join(words), action


def test_no_option_is_a_bare_int_or_float_and_every_numeric_one_is_in_the_table() -> None:
    covered = {(c, o) for c, o, _, _ in OPTIONS} | {("outbox requeue", "ids"), ("sandbox", "--faults")}
    for command, action in _numeric_actions(build_parser()):
        assert action.type not in (int, float), f"{command} {action.option_strings}: use pdconnect.cli.number"
        name = action.option_strings[-1] if action.option_strings else action.dest
        if getattr(action.type, "__name__", "") in ("a number", "a whole number", "list of numbers"):
            assert (command, name) in covered, f"add {command} {name} to OPTIONS"


# -- the shared type, as a property ----------------------------------------------------------


@given(text=st.text(max_size=30), kind=st.sampled_from([int, float]))
def test_number_accepts_only_finite_values_in_range(text: str, kind: type[int] | type[float]) -> None:
    parse = number(kind, minimum=-10, maximum=10)
    try:
        value = parse(text)
    except argparse.ArgumentTypeError as exc:
        message = str(exc)
    else:
        message = ""
    if message:
        assert "\n" not in message and len(message) < 200
        return
    assert type(value) is kind and math.isfinite(value) and -10 <= value <= 10


@given(value=st.floats(allow_nan=True, allow_infinity=True))
def test_number_on_any_float(value: float) -> None:
    parse = number(float, above=0, maximum=100)
    try:
        parsed = parse(repr(value))
    except argparse.ArgumentTypeError:
        assert not (math.isfinite(value) and 0 < value <= 100)
        return
    assert parsed == value and 0 < parsed <= 100


@given(text=st.text(max_size=60))
def test_numbers_is_all_or_nothing(text: str) -> None:
    parse = numbers(number(float, minimum=0, maximum=5), most=4)
    try:
        values = parse(text)
    except argparse.ArgumentTypeError:
        return
    assert len(values) <= 4 and all(0 <= v <= 5 for v in values)


@given(text=st.text(max_size=40))
def test_any_lease_text_from_the_command_line(text: str) -> None:
    """The worker's lease: NaN or infinity once made a dead worker's events unclaimable forever."""
    if text.startswith("-"):
        text = " " + text  # argparse would read it as an option
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            args = build_parser().parse_args(["worker", "--database", "sqlite:///never-made.db", "--lease", text])
        except SystemExit as exc:
            code = exc.code
        else:
            code = None
    if code is not None:
        assert code == 2
        return
    assert math.isfinite(args.lease) and 1 <= args.lease <= 86400


def test_usage_errors_are_one_line() -> None:
    parser = ArgumentParser(prog="pdconnect demo")
    parser.add_argument("--n", type=number(int, minimum=1, maximum=3), required=True)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as raised:
        parser.parse_args(["--n", "nan"])
    assert raised.value.code == 2
    assert (
        err.getvalue()
        == "pdconnect demo: argument --n: expected a whole number from 1 to 3, got 'nan' (see pdconnect demo --help)\n"
    )


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["nonsense"],
        ["worker"],
        ["outbox"],
        ["db"],
        ["db", "init"],
        ["outbox", "requeue", "--database", "sqlite://"],
    ],
)
def test_missing_arguments_are_one_line_and_status_2(argv: list[str]) -> None:
    status, _, err = _run(argv)
    assert status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


@pytest.mark.parametrize("command", ["", "snippet", "check-key", "db init", "sandbox", "worker", "outbox status",
                                     "outbox dead", "outbox requeue", "outbox purge", "alertmanager"])  # fmt: skip
def test_every_help_is_status_0(command: str) -> None:
    status, out, _ = _run([*command.split(), "--help"])
    assert status == 0 and "usage:" in out


# -- failures while working: one line, status 1 -------------------------------------------------


@pytest.mark.parametrize("url", ["postgresql+psycopg://acme:hunter2-pw@127.0.0.1:1/db"])
@pytest.mark.parametrize("command", ["db init", "worker", "outbox status", "alertmanager"])
def test_a_postgres_url_without_psycopg_names_the_extra(
    command: str, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # "import psycopg" now fails, as if not installed
    monkeypatch.setenv("PDCONNECT_ROUTING_KEYS", SERVICE_KEY)
    monkeypatch.setenv("PDCONNECT_ALERTMANAGER_TOKEN", TOKEN)
    status, _, err = _run([*command.split(), "--database", url])
    assert status == 1, err
    assert "pip install 'pdconnect[postgres]'" in err and "psycopg" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "hunter2-pw" not in err


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port something already listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        yield blocker.getsockname()[1]


def test_the_alertmanager_bridge_on_a_busy_port(
    busy_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PDCONNECT_ROUTING_KEYS", SERVICE_KEY)
    monkeypatch.setenv("PDCONNECT_ALERTMANAGER_TOKEN", TOKEN)
    url = f"sqlite:///{tmp_path / 'am.db'}"
    status, _, err = _run(["alertmanager", "--database", url, "--create", "--listen", f"127.0.0.1:{busy_port}"])
    assert status == 1, err
    assert f"cannot listen on 127.0.0.1:{busy_port}" in err and "in use" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and TOKEN not in err


def test_the_sandbox_on_a_busy_port(busy_port: int) -> None:
    status, out, err = _run(["sandbox", "--port", str(busy_port), "--no-seed"])
    assert status == 1, err
    assert f"cannot listen on 127.0.0.1:{busy_port}" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and "PagerDuty sandbox on" not in out


def test_the_sandbox_tls_without_trustme(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "trustme", None)
    status, _, err = _run(["sandbox", "--port", "0", "--tls", "--tls-dir", str(tmp_path / "tls"), "--no-seed"])
    assert status == 1, err
    assert "trustme" in err and "pip install 'pdconnect[tls]'" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_sandbox_app_flag_refusal_is_status_2() -> None:
    status, _, err = _run(["sandbox", "--port", "0", "--app", "P1=not-a-url"])
    assert status == 2 and "--app" in err and len(err.strip().splitlines()) == 1, err


def test_an_unexpected_error_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import pdconnect.cli

    def broken(_args: argparse.Namespace) -> int:
        raise RuntimeError("something odd\nsecond line")

    monkeypatch.setattr(pdconnect.cli, "_snippet", broken)
    status, _, err = _run(["snippet"])
    assert status == 1 and err == "pdconnect snippet: failed: RuntimeError: something odd\n"


# -- a worker never makes an outbox ------------------------------------------------------------


def test_a_worker_refuses_a_database_without_an_outbox(tmp_path: Path) -> None:
    typo = tmp_path / "typo.db"
    status, out, err = _run(["worker", "--database", f"sqlite:///{typo}", "--until-empty"])
    assert status == 2 and "no such SQLite file" in err and "pdconnect db init" in err, err
    assert out == "" and not typo.exists(), "no empty database left behind"

    relative = _run(["worker", "--database", "sqlite:///never-made.db", "--until-empty"])
    assert relative[0] == 2

    from pdconnect.outbox import Outbox

    Outbox(f"sqlite:///{tmp_path / 'real.db'}").close()
    status, _, err = _run(["worker", "--database", f"sqlite:///{tmp_path / 'real.db'}", "--table-prefix", "typo"])
    assert status == 2 and "no outbox table 'typo'" in err


def test_db_init_then_a_worker_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'made.db'}"
    assert _run(["db", "init", "--database", url])[0] == 0
    status, out, err = _run(["worker", "--database", url, "--until-empty", "--quiet"])
    assert status == 0, err
    assert "stopped: delivered 0" in out


# -- the Alertmanager bridge and a SQLite file that does not exist ------------------------------

TYPOS = [
    "sqlite:///typo.db",
    "sqlite:///./outbx.db",
    "sqlite:///no/such/folder/outbox.db",
    "sqlite:///typo.db?timeout=5",
    "sqlite+pysqlite:///typo.db",
    "sqlite:///.",  # a folder, not a database file
    "sqlite:///outbox.db ",
    "sqlite:///%E2%80%8Boutbox.db",
]


@pytest.fixture
def bridge_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PDCONNECT_ROUTING_KEYS", SERVICE_KEY)
    monkeypatch.setenv("PDCONNECT_ALERTMANAGER_TOKEN", TOKEN)


def _listing(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


@pytest.mark.usefixtures("bridge_env")
@pytest.mark.parametrize("url", TYPOS)
def test_the_bridge_refuses_a_sqlite_file_that_does_not_exist(url: str, tmp_path: Path, busy_port: int) -> None:
    (tmp_path / "outbox.db").touch()  # the file the operator meant; a typo must not reach it either
    before = _listing(tmp_path)
    status, out, err = _run(["alertmanager", "--database", url, "--listen", f"127.0.0.1:{busy_port}"])
    assert status == 2, err
    assert out == "" and "no such SQLite file" in err and "--create" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and TOKEN not in err
    assert _listing(tmp_path) == before, "nothing was created"


@given(name=st.text(st.characters(categories=["L", "N"], max_codepoint=0x2FF), min_size=1, max_size=30))
def test_the_bridge_refuses_any_missing_sqlite_file(name: str) -> None:
    import tempfile

    # A busy port, so that a command that got past the check fails fast instead of serving.
    with (
        tempfile.TemporaryDirectory() as folder,
        pytest.MonkeyPatch.context() as patch,
        socket.create_server(("127.0.0.1", 0)) as blocker,
    ):
        patch.setenv("PDCONNECT_ROUTING_KEYS", SERVICE_KEY)
        patch.setenv("PDCONNECT_ALERTMANAGER_TOKEN", TOKEN)
        path = Path(folder) / f"{name}.db"
        listen = f"127.0.0.1:{blocker.getsockname()[1]}"
        status, _, err = _run(["alertmanager", "--database", f"sqlite:///{path}", "--listen", listen])
        assert status == 2 and "no such SQLite file" in err, err
        assert not any(Path(folder).iterdir())


@pytest.mark.usefixtures("bridge_env")
def test_the_bridge_creates_a_missing_sqlite_file_with_create(tmp_path: Path, busy_port: int) -> None:
    path = tmp_path / "new.db"
    status, _, err = _run(
        ["alertmanager", "--database", f"sqlite:///{path}", "--create", "--listen", f"127.0.0.1:{busy_port}"]
    )
    assert status == 1 and "cannot listen" in err, "it got past the database check, to the busy port"
    assert path.is_file()


@pytest.mark.usefixtures("bridge_env")
@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_the_bridge_takes_an_existing_sqlite_file_or_memory(url: str, tmp_path: Path, busy_port: int) -> None:
    existing = tmp_path / "outbox.db"
    existing.touch()
    for each in (url, f"sqlite:///{existing}"):
        status, _, err = _run(["alertmanager", "--database", each, "--listen", f"127.0.0.1:{busy_port}"])
        assert status == 1 and "cannot listen" in err, err
