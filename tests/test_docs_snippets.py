"""Every Python snippet in the docs runs as written, so a broken snippet fails CI.

One test per page (``docs/*.md`` and ``README.md``). A page's ```` ```python ```` (or ``py``)
blocks run in order in one fresh namespace, as a reader would paste them in turn, in a fresh
temporary working directory; ```` ```pycon ```` blocks run as doctests in the same namespace,
and their output is checked (``ELLIPSIS`` and ``NORMALIZE_WHITESPACE`` on). Console and other
blocks are not run. A traceback points at the page's own line.

Conventions for writers (HTML comments, invisible on the rendered page):

``<!-- snippet-setup: names, sandbox -->``, anywhere on the page, asks for setups (the
sandbox first, then the names):

- ``names``: placeholders a reader has anyway, each a harmless local value:

  =================== =====================================================================
  ``SECRET_KEY``      a 40-character secret; also the environment variable ``SECRET_KEY``
  ``DATABASE_URL``    a SQLite file in the working directory; also ``$DATABASE_URL``
  ``engine``          an engine on ``DATABASE_URL`` (``pdconnect.database.create_engine``)
  ``org_id``          ``"org-1"``, and ``owner_id`` the same
  ``integration``     an :class:`~pdconnect.Integration` of ``org-1`` (with ``sandbox``: a
                      key of the sandbox's "Checkout API" service, so events reach it)
  =================== =====================================================================

- ``sandbox``: the pdconnect sandbox on loopback (the ``pagerduty_sandbox`` fixture of the
  pytest plugin pdconnect installs), as ``pagerduty_sandbox`` and ``PAGERDUTY_SANDBOX_URL``
  (also an environment variable). PagerDuty's default URLs are pointed at it while the page
  runs: ``Handshake``, ``build_connect_url``, ``build_install_url``, ``Sender``,
  ``SubscriptionClient`` and the Flask extension's ``PDCONNECT_*_URL`` defaults, so a snippet
  that leaves them out talks to the sandbox. Without this setup, a snippet that tries to reach
  PagerDuty fails: no test may reach anything but loopback (``_loopback_only`` in conftest).
- Every page: a Python subprocess it starts (``python``, ``pdconnect``) inherits a
  ``PYTHONPATH`` led by ``tests/docs_guard``, whose ``sitecustomize`` holds it to loopback
  too (:class:`NetworkRefused` from ``socket``). A page that starts a process the guard
  cannot reach (``python -I``, ``-E`` or ``-S``, ``env -i``, an ``env=`` or ``PYTHONPATH=``
  without the guard's folder) fails, whether or not the snippet caught the refusal.
- ``sandbox-explicit``: the same sandbox and names, but PagerDuty's defaults stay as they are,
  for a page that teaches pointing pdconnect at the sandbox (a test snippet): if its
  configuration does not take effect, the snippet tries PagerDuty and fails.

``<!-- snippet: hidden`` ... ``-->``, the code on the lines between and ``-->`` on a line of its
own, runs in place, unseen by readers: the setup one page needs (``monitor = ...``), or checks
after a snippet (``assert app.test_client().get("/pagerduty/install").status_code == 302``).

``<!-- snippet: skip reason="..." -->`` right before a block: the block is not run. The reason
is required, and ``test_skipped_snippets_stay_few`` lists every skip and fails beyond
:data:`MAX_SKIPS`: prefer making a snippet run (a hidden setup) to skipping it.

After a page's snippets, as pytest would: every function named ``test_*`` that the page
defined is called, its arguments taken from the namespace by name (``pagerduty_sandbox`` with
the ``sandbox`` setup, ``app``, ...). Then, if the page left an ``app`` that is a Flask app or
a WSGI function, its test client asks for ``/``, which must not answer with a 5xx.

A malformed or unknown directive fails the page's test. The environment, the working
directory and ``sys.modules`` are restored after each page.

To work on a page: ``pytest -q tests/test_docs_snippets.py -k flask.md --runxfail`` (the
``--runxfail`` shows the failure while the page is still listed in :data:`KNOWN_BROKEN`).
The harness's own tests are in ``tests/test_docs_snippets_harness.py``.
"""

from __future__ import annotations

import doctest
import inspect
import io
import logging
import os
import re
import shlex
import subprocess
import sys
import traceback
import types
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from tests.docs_snippets import Command, Page, Snippet, read_page

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted(ROOT.joinpath("docs").glob("*.md")), ROOT / "README.md"]
#: Its ``sitecustomize`` refuses non-loopback lookups and connections in a page's subprocesses.
GUARD_DIR = Path(__file__).resolve().parent / "docs_guard"

#: Blocks that may be marked ``skip``, across all pages; keep it small.
MAX_SKIPS = 6

#: Pages whose snippets do not run yet, with why: expected to fail (issue 9). Fixing a page
#: fails as XPASS(strict); then delete its line here (a one-line change anyone may make).
KNOWN_BROKEN: dict[str, str] = {}
#: Strict: a listed page that starts to pass fails its test until its line is removed.
KNOWN_BROKEN_STRICT = True

#: What ``$NAME`` in a page's ``pdconnect`` command lines stands for when they are parsed.
SHELL_VARIABLES = {"DATABASE_URL": "postgresql+psycopg://acme@db.internal/acme"}

SECRET_KEY = "docs-snippet-secret-0123456789-abcdefghij"
OFFLINE_SERVICE_KEY = "e93facc04764012d7bfb002500d5d1a6"
SESSION_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _page_id(path: Path) -> str:
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name


def _page_params() -> list[Any]:
    params = []
    for path in PAGES:
        marks = []
        if (reason := KNOWN_BROKEN.get(_page_id(path))) is not None:
            marks.append(pytest.mark.xfail(reason=reason, strict=KNOWN_BROKEN_STRICT))
        params.append(pytest.param(path, id=_page_id(path), marks=marks))
    return params


@pytest.mark.parametrize("path", _page_params())
def test_page_snippets_run(path: Path, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    run_page(read_page(path), request=request, workdir=tmp_path)


@pytest.mark.parametrize("path", [pytest.param(path, id=_page_id(path)) for path in PAGES])
def test_page_commands_parse(path: Path) -> None:
    """Every ``pdconnect ...`` line in the page's shell blocks is one the command line accepts."""
    page = read_page(path)
    refused = [
        f"{_page_id(path)}:{c.line}: pdconnect {shlex.join(c.argv)}\n  {e}" for c in page.commands if (e := _refusal(c))
    ]
    assert not refused, "commands the pdconnect CLI refuses:\n" + "\n".join(refused)


def _refusal(command: Command) -> str | None:
    """Why ``pdconnect`` would refuse the command's arguments, or ``None``; nothing is run."""
    from pdconnect.cli import build_parser

    def expand(match: re.Match[str]) -> str:  # as the reader's shell would
        return SHELL_VARIABLES.get(match.group(1) or match.group(2), match.group(0))

    argv = [re.sub(r"\$(?:\{(\w+)\}|(\w+))", expand, word) for word in command.argv]
    errors = io.StringIO()
    try:
        with redirect_stderr(errors), redirect_stdout(io.StringIO()):
            build_parser().parse_args(argv)
    except SystemExit as exc:
        if exc.code not in (0, None):  # --help and --version exit 0
            return errors.getvalue().strip().splitlines()[-1]
    return None


def test_skipped_snippets_stay_few() -> None:
    skips = [f"{_page_id(p.path)}:{s.line}: {s.skip_reason}" for p in map(read_page, PAGES) for s in p.skipped]
    print(f"{len(skips)} skipped docs snippet(s):", *skips, sep="\n  ")
    assert len(skips) <= MAX_SKIPS, "too many docs snippets skipped:\n" + "\n".join(skips)


def test_the_docs_have_snippets() -> None:
    """A safety net under the collector: if it stopped finding blocks, every page would pass."""
    pages = [read_page(path) for path in PAGES]
    assert sum(len(page.runnable) for page in pages) >= 20
    assert {"flask.md", "sending.md", "README.md"} <= {p.path.name for p in pages if p.runnable}


# --- running a page ---------------------------------------------------------------------------


def run_page(page: Page, *, request: pytest.FixtureRequest, workdir: Path) -> dict[str, Any]:
    """Run ``page``'s snippets in a fresh module in ``workdir``; returns the namespace.

    Whatever the page changed is put back afterwards: the environment, the working directory,
    ``sys.modules``, the defaults the sandbox setup replaced; what it opened is closed.
    """
    name = "docs_snippet_" + "".join(ch if ch.isalnum() else "_" for ch in page.path.stem)
    module = types.ModuleType(name)
    module.__file__ = str(workdir / f"{name}.py")  # Flask(__name__) finds its root here
    namespace = module.__dict__
    with _restored_process_state(), pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(workdir)
        monkeypatch.setitem(sys.modules, name, module)  # dataclasses and pickling look it up
        # Python processes the page starts load the loopback guard too (its sitecustomize).
        paths = [str(GUARD_DIR), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
        bypasses = _refuse_unguarded_processes(monkeypatch)
        try:
            if page.setups & {"sandbox", "sandbox-explicit"}:
                sandbox = request.getfixturevalue("pagerduty_sandbox")
                _setup_sandbox(namespace, monkeypatch, sandbox, defaults="sandbox" in page.setups)
            if "names" in page.setups:
                _setup_names(namespace, monkeypatch, workdir)
            for snippet in page.runnable:
                with _reported(f"{_page_id(page.path)}, the {snippet.kind} block at line {snippet.line}"):
                    if snippet.kind == "pycon":
                        _run_session(snippet, namespace, page.path)
                    else:
                        exec(_compile(snippet, page.path), namespace)  # noqa: S102 -- running the docs is the point
            with _reported(f"{_page_id(page.path)}, after its snippets"):
                _call_tests(namespace, page.path)
                _drive_app(namespace.get("app"), page.path)
            if bypasses:
                pytest.fail(f"{_page_id(page.path)}: " + "; ".join(bypasses), pytrace=False)
        finally:
            _close_resources(namespace)
    return namespace


class GuardBypass(OSError):
    """A page started a process the loopback guard would not be loaded in."""


def _refuse_unguarded_processes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Refuse, while the page runs, to start a process that would skip ``tests/docs_guard``.

    Returns the list the refusals are recorded in: a snippet that catches the error still
    fails its page.
    """
    refusals: list[str] = []
    popen_init = subprocess.Popen.__init__
    system = os.system

    def check(args: Any, env: Any, shell: bool) -> None:
        if isinstance(args, str | bytes | os.PathLike):
            argv = shlex.split(os.fsdecode(args)) if shell or isinstance(args, str | bytes) else [os.fspath(args)]
        else:
            argv = [os.fsdecode(a) for a in args]
        if (reason := guard_bypass(argv, os.environ if env is None else env)) is not None:
            refusals.append(reason)
            raise GuardBypass(reason)

    def guarded_init(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> None:
        check(args, kwargs.get("env"), bool(kwargs.get("shell")))
        popen_init(self, args, *rest, **kwargs)

    def guarded_system(command: str) -> int:
        check(command, None, True)
        return system(command)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded_init)
    monkeypatch.setattr(os, "system", guarded_system)
    for name in ("posix_spawn", "posix_spawnp", "execv", "execve", "execvp", "execvpe", "spawnv", "spawnve"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, _forbidden(name, refusals))
    return refusals


def _forbidden(name: str, refusals: list[str]) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        reason = f"os.{name} starts a process the loopback guard cannot check; use subprocess"
        refusals.append(reason)
        raise GuardBypass(reason)

    return refuse


def guard_bypass(argv: list[str], env: Any) -> str | None:
    """Why a process started with ``argv`` and ``env`` would not load the guard, or ``None``."""
    if str(GUARD_DIR) not in str(env.get("PYTHONPATH", "")).split(os.pathsep):
        return f"{shlex.join(argv)!r} would start without {GUARD_DIR.name} on PYTHONPATH (an env= without it?)"
    for index, word in enumerate(argv):
        name = Path(word).name
        if word.startswith("PYTHONPATH=") and str(GUARD_DIR) not in word:
            return f"{shlex.join(argv)!r} sets PYTHONPATH without {GUARD_DIR.name}"
        if name == "env" and any(_drops_environment(a) for a in argv[index + 1 :]):
            return f"{shlex.join(argv)!r} empties the environment, and the guard with it"
        python = re.fullmatch(r"python[0-9.]*", name) or word == sys.executable
        if python and (flag := _unguarded_flag(argv[index + 1 :])) is not None:
            return f"{shlex.join(argv)!r} starts Python with {flag}, which skips the loopback guard"
    return None


def _drops_environment(arg: str) -> bool:
    return (
        arg in ("-", "-i", "--ignore-environment")
        or arg.startswith(("-u", "--unset"))
        or (arg.startswith("-") and not arg.startswith("--") and "i" in arg)
    )


def _unguarded_flag(args: list[str]) -> str | None:
    """The first of Python's options ``-I``, ``-E`` or ``-S`` (alone or in a cluster) in ``args``."""
    words = iter(args)
    for word in words:
        if not word.startswith("-") or word == "-" or word.startswith("--"):
            return None  # the script, stdin, or a long option (none of them skips site)
        for position, letter in enumerate(word[1:], start=1):
            if letter in "IES":
                return word
            if letter in "cm":
                return None  # the rest is the command or module
            if letter in "XW":
                if position == len(word) - 1:
                    next(words, None)  # their argument is the next word
                break
    return None


@contextmanager
def _reported(where: str) -> Iterator[None]:
    """Fail with the page's own lines in the traceback, without the harness's frames."""
    try:
        yield
    except (Exception, SystemExit) as exc:  # a snippet's sys.exit() is a failure, not the end of pytest
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__]
        lines = traceback.format_list(frames) + traceback.format_exception_only(exc)
        cause = exc.__cause__ or exc.__context__
        while cause is not None:  # the root cause too, e.g. the refused connection under a DeliveryFailed
            lines += ["caused by: ", *traceback.format_exception_only(cause)]
            cause = cause.__cause__ or cause.__context__
        raise pytest.fail.Exception(f"{where} fails:\n{''.join(lines)}", pytrace=False) from None


def _compile(snippet: Snippet, path: Path) -> types.CodeType:
    # Blank lines in front make the line numbers the page's own, so tracebacks point into it.
    return compile("\n" * (snippet.line - 1) + snippet.code, str(path), "exec", dont_inherit=True)


def _run_session(snippet: Snippet, namespace: dict[str, Any], path: Path) -> None:
    parser = doctest.DocTestParser()
    test = doctest.DocTest(
        parser.get_examples(snippet.code, name=str(path)),
        namespace,
        name=f"{path.name}:{snippet.line}",
        filename=str(path),
        lineno=snippet.line - 1,
        docstring=snippet.code,
    )
    test.globs = namespace  # DocTest keeps a copy; the session's names are the page's, as when pasted
    output = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=SESSION_FLAGS)
    result = runner.run(test, out=output.write, clear_globs=False)
    if result.failed:
        pytest.fail(f"{path.name}:{snippet.line}: the session's output differs:\n{output.getvalue()}", pytrace=False)


def _call_tests(namespace: dict[str, Any], path: Path) -> None:
    tests = [
        value
        for key, value in list(namespace.items())
        if key.startswith("test_") and inspect.isfunction(value) and value.__module__ == namespace["__name__"]
    ]
    for test in tests:
        parameters = inspect.signature(test).parameters
        if missing := [p for p in parameters if p not in namespace]:
            pytest.fail(f"{path.name}: {test.__name__} needs {missing}, which the page does not provide", pytrace=False)
        test(**{p: namespace[p] for p in parameters})


def _drive_app(app: object, path: Path) -> None:
    from flask import Flask
    from werkzeug.test import Client

    if isinstance(app, Flask):
        client: Client = app.test_client()
    elif inspect.isfunction(app):
        client = Client(app)
    else:
        return
    response = client.get("/")
    assert response.status_code < 500, f"{path.name}: the page's app answers GET / with {response.status}"


# --- setups -----------------------------------------------------------------------------------


def _setup_names(namespace: dict[str, Any], monkeypatch: pytest.MonkeyPatch, workdir: Path) -> None:
    from pdconnect import integration_from_key
    from pdconnect.database import create_engine

    database_url = f"sqlite:///{workdir / 'docs.db'}"
    monkeypatch.setenv("SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("DATABASE_URL", database_url)
    sandbox = namespace.get("pagerduty_sandbox")
    key = sandbox.service_key() if sandbox is not None else OFFLINE_SERVICE_KEY
    namespace.update(
        SECRET_KEY=SECRET_KEY,
        DATABASE_URL=database_url,
        engine=create_engine(database_url),
        org_id="org-1",
        owner_id="org-1",
        integration=integration_from_key(key, owner_id="org-1", service_name="Checkout API"),
    )


def _setup_sandbox(namespace: dict[str, Any], monkeypatch: pytest.MonkeyPatch, sandbox: Any, *, defaults: bool) -> None:
    url = sandbox.url
    monkeypatch.setenv("PAGERDUTY_SANDBOX_URL", url)
    namespace.update(pagerduty_sandbox=sandbox, PAGERDUTY_SANDBOX_URL=url)
    if defaults:
        _point_defaults_at(url, monkeypatch)


def _point_defaults_at(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import pdconnect.sender
    from pdconnect.connect import build_connect_url
    from pdconnect.flask.extension import DEFAULTS
    from pdconnect.handshake import Handshake
    from pdconnect.install import build_install_url
    from pdconnect.integration import Region
    from pdconnect.webhooks.subscriptions import SubscriptionClient

    # The defaults are bound when the functions are defined, so they are replaced where they
    # live; a renamed parameter fails here rather than letting a snippet reach PagerDuty.
    for function, parameter in [
        (Handshake.__init__, "connect_base_url"),
        (Handshake.__init__, "install_base_url"),
        (build_connect_url, "base_url"),
        (build_install_url, "base_url"),
        (SubscriptionClient.__init__, "base_url"),
    ]:
        defaults = function.__kwdefaults__
        assert defaults is not None and parameter in defaults, f"{function.__qualname__} has no {parameter}= default"
        monkeypatch.setitem(defaults, parameter, url)
    monkeypatch.setattr(pdconnect.sender, "EVENTS_BASE_URLS", dict.fromkeys(Region, url))
    for setting in ("PDCONNECT_CONNECT_BASE_URL", "PDCONNECT_INSTALL_BASE_URL", "PDCONNECT_EVENTS_BASE_URL"):
        monkeypatch.setitem(DEFAULTS, setting, url)
    monkeypatch.setitem(DEFAULTS, "PDCONNECT_REST_API_URL", url)


# --- isolation --------------------------------------------------------------------------------


@contextmanager
def _restored_process_state() -> Iterator[None]:
    """Put back the environment, working directory and logging, whatever the page's code changed.

    Logging too, because docs show ``addFilter`` and ``basicConfig`` calls that would otherwise
    apply to every test after the page.
    """
    environ, cwd = dict(os.environ), os.getcwd()
    manager = logging.Logger.manager
    disabled = manager.disable

    def loggers() -> list[logging.Logger]:
        return [logging.getLogger(), *(v for v in list(manager.loggerDict.values()) if isinstance(v, logging.Logger))]

    saved = {id(lg): (lg.level, lg.handlers[:], lg.filters[:], lg.propagate, lg.disabled) for lg in loggers()}
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(cwd)
        logging.disable(disabled)
        for logger in loggers():
            level, handlers, filters, propagate, off = saved.get(id(logger), (logging.NOTSET, [], [], True, False))
            logger.setLevel(level)
            logger.handlers[:], logger.filters[:] = handlers, filters
            logger.propagate, logger.disabled = propagate, off


def _close_resources(namespace: dict[str, Any]) -> None:
    """Dispose what the page opened (engines, senders, stores), so nothing leaks into later tests."""
    import sqlalchemy as sa

    for key, value in list(namespace.items()):
        if key == "pagerduty_sandbox" or isinstance(value, type | types.ModuleType | types.FunctionType):
            continue  # the fixture closes itself; classes and functions own nothing
        if isinstance(value, sa.Engine):
            value.dispose()
            continue
        if type(value).__module__.startswith("pdconnect") and callable(getattr(value, "close", None)):
            value.close()
        engine = getattr(value, "engine", None)
        if isinstance(engine, sa.Engine):
            engine.dispose()
