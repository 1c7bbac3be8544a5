#!/usr/bin/env python3
"""Set up and run pdconnect's demo and checks on a fresh machine.

    python3 dev.py demo    # build a virtual environment if needed, then run the demo
    python3 dev.py test    # the same, then lint, type-check, build the docs and run every test
    python3 dev.py bench   # the same, then run the benchmarks (a few minutes; see docs/benchmarks.md)

Anything after ``test`` is passed to pytest (``python3 dev.py test -k sender``), and anything
after ``demo`` to the demo (``--check`` to start, check and stop). Only Python 3.11+ and access
to the package registries are needed (plus Debian's Chromium and Alertmanager, which the
test command installs for the browser and Alertmanager tests). One virtual environment,
``.venv``, serves every command: ``demo`` installs only what the demo needs (Flask), ``test``
everything, and it is refreshed when ``setup.cfg`` changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
#: The extras each command needs: the demo only Flask (the sandbox needs nothing more), the
#: checks everything. One ``.venv`` serves all; its stamp records what is installed, so
#: ``test`` after ``demo`` adds the rest.
DEMO_EXTRAS = frozenset({"flask"})
TEST_EXTRAS = frozenset({"flask", "tls", "test", "docs", "bench"})
BENCH_EXTRAS = frozenset({"flask", "bench"})
STAMP = VENV / ".pdconnect-installed"


def run(*command: str | Path, env: dict[str, str] | None = None) -> None:
    """Run a command from the repository root; stop with its status if it fails."""
    printable = " ".join(str(part) for part in command)
    print(f"\n$ {printable}", flush=True)
    result = subprocess.run([str(part) for part in command], cwd=ROOT, env=env)
    if result.returncode != 0:
        print(f"\nFAILED ({result.returncode}): {printable}", file=sys.stderr)
        sys.exit(result.returncode)


def _setup_digest() -> str:
    return hashlib.sha256((ROOT / "setup.cfg").read_bytes()).hexdigest()


def read_stamp() -> tuple[str | None, frozenset[str]]:
    """The ``setup.cfg`` digest and the extras ``.venv`` was last installed with (``None``, none)."""
    try:
        text = STAMP.read_text().strip()
    except OSError:
        return None, frozenset()
    if len(text) == 64 and all(ch in "0123456789abcdef" for ch in text):
        # The stamp before extras were recorded: a digest of setup.cfg and every extra.
        legacy = hashlib.sha256((ROOT / "setup.cfg").read_bytes() + b"flask,tls,test,docs,bench").hexdigest()
        return (_setup_digest() if text == legacy else None), TEST_EXTRAS
    try:
        stamp = json.loads(text)
    except ValueError:
        return None, frozenset()
    if not isinstance(stamp, dict) or not isinstance(stamp.get("extras"), list):
        return None, frozenset()
    return stamp.get("setup.cfg"), frozenset(e for e in stamp["extras"] if isinstance(e, str))


def ensure_environment(extras: frozenset[str]) -> None:
    """Create ``.venv`` and install pdconnect with ``extras``, unless it already has them.

    What was installed before is kept: after a change to ``setup.cfg`` the recorded extras
    are installed again with the new ones, so a ``demo`` never strips what a ``test`` added.
    """
    digest, recorded = read_stamp()
    if PYTHON.exists() and digest == _setup_digest() and extras <= recorded:
        return
    wanted = extras | recorded if PYTHON.exists() else extras
    if not PYTHON.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", f".[{','.join(sorted(wanted))}]")
    STAMP.write_text(json.dumps({"setup.cfg": _setup_digest(), "extras": sorted(wanted)}))


#: Programs the tests drive, the Debian packages that provide them, and the variable that can
#: point at one installed elsewhere.
TEST_PROGRAMS = [
    ("chromium", ["chromium", "fonts-dejavu-core"], "PDCONNECT_CHROMIUM"),  # browser tests, through Playwright
    ("prometheus-alertmanager", ["prometheus-alertmanager"], "PDCONNECT_ALERTMANAGER"),  # the Alertmanager bridge
]


def ensure_test_programs() -> None:
    """Install Debian's Chromium and Alertmanager for the tests, when they are missing."""
    packages = [
        package
        for program, names, variable in TEST_PROGRAMS
        if not shutil.which(program) and not os.environ.get(variable)
        for package in names
    ]
    if not packages:
        return
    apt = shutil.which("apt-get")
    if apt is None:
        sys.exit(f"The tests need these Debian packages (or the PDCONNECT_* variables naming them): {packages}")
    prefix = [] if os.geteuid() == 0 else ["sudo"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(*prefix, apt, "update", "-qq", env=env)
    run(*prefix, apt, "install", "-y", "-qq", "--no-install-recommends", *packages, env=env)


def demo(args: list[str]) -> None:
    ensure_environment(DEMO_EXTRAS)
    sys.exit(run_in_foreground(PYTHON, "-m", "example_app.demo", *args))


def run_in_foreground(*command: str | Path) -> int:
    """Run a long-lived command that stops on Ctrl-C or SIGTERM and cleans up after itself.

    Ctrl-C reaches the command directly (one process group), so this process ignores it and
    waits: ``subprocess.run`` would kill the command a quarter of a second later, before its
    cleanup. A SIGTERM sent to this process is passed on.
    """
    process = subprocess.Popen([str(part) for part in command], cwd=ROOT)
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    previous_term = signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signum))
    try:
        return process.wait()
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)


def test(pytest_args: list[str]) -> None:
    ensure_environment(TEST_EXTRAS)
    ensure_test_programs()
    run(PYTHON, "-m", "ruff", "check", ".")
    run(PYTHON, "-m", "ruff", "format", "--check", ".")
    run(PYTHON, "-m", "mypy")
    run(PYTHON, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "docs", "build/docs")
    run(PYTHON, "-m", "pytest", *pytest_args)


def bench() -> None:
    ensure_environment(BENCH_EXTRAS)
    run(PYTHON, "-m", "benchmarks.run_all")


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("demo", "test", "bench"):
        sys.exit(__doc__)
    if argv[0] == "demo":
        demo(argv[1:])
    elif argv[0] == "bench":
        bench()
    else:
        test(argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
