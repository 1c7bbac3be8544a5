"""Helpers shared by the benchmarks: servers in their own processes, machine facts, tables.

A server is started in a process group of its own and stopped with SIGTERM, then SIGKILL
after a bounded wait, for the whole group. Not SIGINT: a shell starts a background job
(``python -m benchmarks.run_all &``) with SIGINT ignored, the servers inherit that, and a
SIGINT stop once left them running after the benchmark crashed. Every server still running
when the benchmark exits (normally, on an exception, or on SIGTERM) is stopped the same way.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import platform
import re
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PDCONNECT = str(Path(sys.executable).parent / "pdconnect")


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, Python {platform.python_version()}"
    )


#: Seconds a server has to print its first line, and to exit after SIGTERM.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0

_running: set[subprocess.Popen[str]] = set()


def start_server(
    command: list[str], pattern: str, *, timeout: float = START_TIMEOUT
) -> tuple[subprocess.Popen[str], str]:
    """Start ``command`` in a process group of its own; return it and what ``pattern`` found on its first line.

    Stop it with :func:`stop_server` (it is also stopped when this process exits).
    """
    _stop_at_exit()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    _running.add(child)
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], timeout)
        line = child.stdout.readline() if ready else ""
        found = re.search(pattern, line)
        if not found:
            raise SystemExit(f"could not start {command}: {line!r}")
    except BaseException:
        stop_server(child)
        raise
    return child, found.group(1)


def stop_server(child: subprocess.Popen[str], *, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM to ``child``'s process group, SIGKILL if it has not exited after ``timeout`` seconds."""
    try:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            _signal_group(child, sig)
            try:
                child.wait(timeout=timeout)
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            child.wait()
        # Anything the server started itself, still in its group, goes too.
        _signal_group(child, signal.SIGKILL)
    finally:
        _running.discard(child)
        if child.stdout:
            child.stdout.close()


def _signal_group(child: subprocess.Popen[str], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone already
        os.killpg(child.pid, sig)  # start_new_session: the group's id is the child's pid


def stop_all_servers() -> None:
    """Stop every server this process started and has not stopped."""
    for child in list(_running):
        stop_server(child)


_registered = False


def _stop_at_exit() -> None:
    """Stop the servers at exit, and make SIGTERM an exit (its default would skip atexit)."""
    global _registered
    if _registered:
        return
    _registered = True
    atexit.register(stop_all_servers)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def terminated(signum: int, _frame: Any) -> None:
            raise SystemExit(128 + signum)

        signal.signal(signal.SIGTERM, terminated)


@contextmanager
def process(command: list[str], pattern: str) -> Iterator[str]:
    """Run ``command`` until the block ends; yield what ``pattern`` found on its first line."""
    child, found = start_server(command, pattern)
    try:
        yield found
    finally:
        stop_server(child)


@contextmanager
def fast_endpoint() -> Iterator[str]:
    with process([sys.executable, str(HERE / "fast_endpoint.py")], r"fast endpoint on (http://\S+)") as url:
        yield url


@contextmanager
def sandbox(*flags: str) -> Iterator[str]:
    with process([PDCONNECT, "sandbox", "--port", "0", *flags], r"PagerDuty sandbox on (http://\S+)") as url:
        yield url


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = [
        "| " + " | ".join(headers) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
