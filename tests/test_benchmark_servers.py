"""The benchmarks' server helper leaves no process behind, even started as a background job (issue 9).

A shell starts a background job with SIGINT ignored and its children inherit that, so a
server stopped with SIGINT kept running. Each test runs a small driver in a process with
SIGINT ignored, as ``&`` would, and checks that the servers it started are gone once it has
exited: stopped normally, after an exception, on SIGTERM, and when a server ignores SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

IGNORES_TERM = (
    "import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('stubborn on http://127.0.0.1:1', flush=True); signal.pause()"
)


def _driver(body: str) -> subprocess.Popen[str]:
    """Run ``body`` (which prints the pids of the servers it starts) with SIGINT ignored."""
    script = textwrap.dedent(
        """
        import sys
        from benchmarks import common
        """
    ) + textwrap.dedent(body)
    return subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # what a shell does for '&'
    )


def _gone(pid: int) -> bool:
    """No such process, or only a zombie nobody will reap (it holds no port)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"


def _pids(output: str) -> list[int]:
    return [int(line.split()[1]) for line in output.splitlines() if line.startswith("server ")]


def test_sigint_is_ignored_in_the_driver_as_in_a_background_job() -> None:
    driver = _driver("import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)")
    out, _ = driver.communicate(timeout=60)
    assert out.strip() == "True"


def test_a_stopped_server_is_gone() -> None:
    driver = _driver(
        """
        with common.process([sys.executable, "-m", "benchmarks.fast_endpoint"], r"fast endpoint on (http://\\S+)"):
            print("server", common._running.copy().pop().pid, flush=True)
        """
    )
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 0, err
    (pid,) = _pids(out)
    assert _gone(pid)


def test_a_crash_inside_the_block_still_stops_the_servers() -> None:
    driver = _driver(
        """
        with common.fast_endpoint():
            child = common._running.copy().pop()
            print("server", child.pid, flush=True)
            raise RuntimeError("the benchmark crashed")
        """
    )
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 1 and "the benchmark crashed" in err
    assert all(_gone(pid) for pid in _pids(out)) and _pids(out)


def test_sigterm_to_the_benchmark_stops_its_servers() -> None:
    driver = _driver(
        """
        import signal
        child, url = common.start_server([sys.executable, "-m", "benchmarks.fast_endpoint"], r"on (http://\\S+)")
        print("server", child.pid, flush=True)
        signal.pause()  # a benchmark that never stops its server itself
        """
    )
    assert driver.stdout is not None
    line = driver.stdout.readline()
    driver.send_signal(signal.SIGTERM)
    out, _ = driver.communicate(timeout=120)
    assert driver.returncode == 128 + signal.SIGTERM
    (pid,) = _pids(line + out)
    assert _gone(pid)


def test_a_server_that_ignores_sigterm_is_killed_after_the_wait() -> None:
    driver = _driver(
        f"""
        child, _ = common.start_server([sys.executable, "-c", {IGNORES_TERM!r}], r"on (http://\\S+)")
        print("server", child.pid, flush=True)
        common.stop_server(child, timeout=0.5)
        print("returncode", child.returncode, flush=True)
        """
    )
    out, err = driver.communicate(timeout=120)
    assert driver.returncode == 0, err
    assert f"returncode {-signal.SIGKILL}" in out
    assert all(_gone(pid) for pid in _pids(out))


def test_a_server_that_never_says_it_is_ready_is_stopped() -> None:
    driver = _driver(
        """
        import os
        try:
            common.start_server([sys.executable, "-c", "print('something else', flush=True); import time; "
                                 "time.sleep(3600)"], r"on (http://\\S+)")
        except SystemExit as exc:
            print("refused", exc, flush=True)
        print("left", len(common._running), flush=True)
        """
    )
    out, err = driver.communicate(timeout=120)
    assert "refused could not start" in out and "left 0" in out, err


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups")
def test_servers_run_in_a_group_of_their_own() -> None:
    driver = _driver(
        """
        import os
        child, _ = common.start_server([sys.executable, "-m", "benchmarks.fast_endpoint"], r"on (http://\\S+)")
        print("groups", os.getpgid(child.pid) == child.pid, os.getpgid(child.pid) != os.getpgrp(), flush=True)
        common.stop_server(child)
        """
    )
    out, err = driver.communicate(timeout=120)
    assert "groups True True" in out, err
