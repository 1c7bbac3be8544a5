"""dev.py installs what each command needs, once; the demo leaves nothing behind when it stops."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, list[list[str]]]:
    """dev.py with its .venv in ``tmp_path`` and every command recorded, never run."""
    spec = importlib.util.spec_from_file_location("dev_under_test", ROOT / "dev.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    venv_dir = tmp_path / ".venv"
    python = venv_dir / "bin" / "python"
    commands: list[list[str]] = []

    def create(self: Any, path: Path) -> None:
        python.parent.mkdir(parents=True)
        python.touch()

    monkeypatch.setattr(module, "VENV", venv_dir)
    monkeypatch.setattr(module, "PYTHON", python)
    monkeypatch.setattr(module, "STAMP", venv_dir / ".pdconnect-installed")
    monkeypatch.setattr(module, "run", lambda *command, env=None: commands.append([str(c) for c in command]))
    monkeypatch.setattr(module.venv.EnvBuilder, "create", create)
    return module, commands


def _installs(commands: list[list[str]]) -> list[str]:
    return [c[-1] for c in commands if c[-2:-1] == ["-e"]]


def test_the_demo_installs_only_flask_and_test_adds_the_rest(dev: tuple[ModuleType, list[list[str]]]) -> None:
    module, commands = dev
    module.ensure_environment(module.DEMO_EXTRAS)
    assert _installs(commands) == [".[flask]"]
    module.ensure_environment(module.DEMO_EXTRAS)
    assert _installs(commands) == [".[flask]"], "nothing to do the second time"
    module.ensure_environment(module.TEST_EXTRAS)
    assert _installs(commands)[-1] == ".[bench,docs,flask,test,tls]"
    module.ensure_environment(module.DEMO_EXTRAS)
    module.ensure_environment(module.TEST_EXTRAS)
    assert len(_installs(commands)) == 2, "the stamp remembers every extra installed"
    assert json.loads(module.STAMP.read_text())["extras"] == ["bench", "docs", "flask", "test", "tls"]


def test_a_changed_setup_cfg_reinstalls_what_was_there(dev: tuple[ModuleType, list[list[str]]]) -> None:
    module, commands = dev
    module.ensure_environment(module.TEST_EXTRAS)
    stamp = json.loads(module.STAMP.read_text())
    module.STAMP.write_text(json.dumps({**stamp, "setup.cfg": "an older setup.cfg"}))
    module.ensure_environment(module.DEMO_EXTRAS)
    assert _installs(commands) == [".[bench,docs,flask,test,tls]"] * 2, "a demo never strips the test tools"


@pytest.mark.parametrize(
    "stamp", ["", "not json {", "[]", '{"extras": "flask"}', '{"setup.cfg": 1, "extras": [1]}', "\x00"]
)
def test_a_damaged_stamp_means_install_again(dev: tuple[ModuleType, list[list[str]]], stamp: str) -> None:
    module, commands = dev
    module.PYTHON.parent.mkdir(parents=True)
    module.PYTHON.touch()
    module.STAMP.write_text(stamp)
    module.ensure_environment(module.DEMO_EXTRAS)
    assert _installs(commands) == [".[flask]"]


def test_the_stamp_before_extras_were_recorded_counts_as_everything(dev: tuple[ModuleType, list[list[str]]]) -> None:
    module, commands = dev
    module.PYTHON.parent.mkdir(parents=True)
    module.PYTHON.touch()
    legacy = module.hashlib.sha256((ROOT / "setup.cfg").read_bytes() + b"flask,tls,test,docs,bench").hexdigest()
    module.STAMP.write_text(legacy)
    module.ensure_environment(module.TEST_EXTRAS)
    assert commands == []


# -- the demo cleans up ------------------------------------------------------------------------


def _demo(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    environ = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "example_app.demo", "--port", "0", "--sandbox-port", "0", *args]
    return subprocess.Popen(command, cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _leftovers(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("acme-demo-"))


def test_the_demo_check_removes_its_folder(tmp_path: Path) -> None:
    process = _demo(tmp_path, "--check")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "-> HTTP 200" in out and "demo data removed" in out
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_demo_removes_its_folder(tmp_path: Path, stop: signal.Signals) -> None:
    process = _demo(tmp_path)
    assert process.stdout is not None
    lines = []
    for line in process.stdout:  # wait for the demo to say it is up: output, not a sleep
        lines.append(line)
        if "Press Ctrl-C" in line:
            break
    assert _leftovers(tmp_path), "the demo keeps its data in a temporary folder while it runs"
    process.send_signal(stop)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Traceback" not in err and "demo data removed" in out
    assert _leftovers(tmp_path) == []
