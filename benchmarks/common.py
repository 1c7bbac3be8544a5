"""Helpers shared by the benchmarks: servers in their own processes, machine facts, tables."""

from __future__ import annotations

import os
import platform
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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


@contextmanager
def process(command: list[str], pattern: str) -> Iterator[str]:
    """Run ``command`` until the block ends; yield what ``pattern`` found on its first line."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        found = re.search(pattern, line)
        if not found:
            raise SystemExit(f"could not start {command}: {line!r}")
        yield found.group(1)
    finally:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        if child.stdout:
            child.stdout.close()


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
