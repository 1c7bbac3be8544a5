#!/usr/bin/env python3
"""Set up and run pdconnect's demo and checks on a fresh machine.

    python3 dev.py demo    # build a virtual environment if needed, then run the demo
    python3 dev.py test    # the same, then lint, type-check, build the docs and run every test
    python3 dev.py bench   # the same, then run the benchmarks (a few minutes; see docs/benchmarks.md)

Anything after ``test`` is passed to pytest (``python3 dev.py test -k sender``), and anything
after ``demo`` to the demo (``--check`` to start, check and stop). Only Python 3.11+ and access
to the package registries are needed (plus Debian's Chromium and Alertmanager, which the
test command installs for the browser and Alertmanager tests); the virtual environment lives in ``.venv`` and is
refreshed when ``setup.cfg`` changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
EXTRAS = "flask,tls,test,docs,bench"
STAMP = VENV / ".pdconnect-installed"


def run(*command: str | Path, env: dict[str, str] | None = None) -> None:
    """Run a command from the repository root; stop with its status if it fails."""
    printable = " ".join(str(part) for part in command)
    print(f"\n$ {printable}", flush=True)
    result = subprocess.run([str(part) for part in command], cwd=ROOT, env=env)
    if result.returncode != 0:
        print(f"\nFAILED ({result.returncode}): {printable}", file=sys.stderr)
        sys.exit(result.returncode)


def ensure_environment() -> None:
    """Create ``.venv`` and install pdconnect with its extras, unless already up to date."""
    wanted = hashlib.sha256((ROOT / "setup.cfg").read_bytes() + EXTRAS.encode()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted and PYTHON.exists():
        return
    if not PYTHON.exists():
        print(f"creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", f".[{EXTRAS}]")
    STAMP.write_text(wanted)


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
    ensure_environment()
    run(PYTHON, "-m", "example_app.demo", *args)


def test(pytest_args: list[str]) -> None:
    ensure_environment()
    ensure_test_programs()
    run(PYTHON, "-m", "ruff", "check", ".")
    run(PYTHON, "-m", "ruff", "format", "--check", ".")
    run(PYTHON, "-m", "mypy")
    run(PYTHON, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "docs", "build/docs")
    run(PYTHON, "-m", "pytest", *pytest_args)


def bench() -> None:
    ensure_environment()
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
