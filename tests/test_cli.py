from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pdconnect.cli import main
from tests.conftest import RULESET_KEY, SERVICE_KEY

ROOT = Path(__file__).resolve().parent.parent


def test_snippet(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["snippet", "--href", "https://v.example/pagerduty/connect", "--theme", "dark", "--size", "large"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<!-- Alert with PagerDuty button")
    assert 'href="https://v.example/pagerduty/connect"' in out
    assert "pdconnect-button--dark" in out
    assert "pdconnect-button--large" in out


def test_snippet_refuses_a_javascript_link(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["snippet", "--href", "javascript:alert(1)"]) == 2
    assert capsys.readouterr().err.startswith("pdconnect snippet: ")


def test_check_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-key", SERVICE_KEY]) == 0
    out = capsys.readouterr().out
    assert out == "valid service key ending in d1a6\n"


def test_check_key_from_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(RULESET_KEY + "\n"))
    assert main(["check-key", "-"]) == 0
    assert capsys.readouterr().out == "valid ruleset key ending in WHIN\n"


def test_check_key_refuses_without_echoing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-key", SERVICE_KEY + "zz"]) == 2
    err = capsys.readouterr().err
    assert "34" in err
    assert SERVICE_KEY not in err


def test_console_script_is_installed() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "pdconnect"), "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("pdconnect ")


def test_the_readme_demo_command_starts_both_servers() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "example_app.demo", "--check", "--port", "0", "--sandbox-port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"Acme Monitoring: +http://127\.0\.0\.1:\d+/signin -> HTTP 200|/signin -> HTTP 200", result.stdout)
    assert re.search(r"http://127\.0\.0\.1:\d+/ -> HTTP 200", result.stdout)


def test_the_sandbox_tour_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "sandbox_demo.py"), "--exit", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "PagerDuty sandbox running at http://127.0.0.1:" in out
    assert "StateReplayed" in out
    assert out.count("trigger via") == 3
    assert "trigger via v1 -> HTTP 200" in out
    assert out.count("trigger via v2 -> HTTP 202") == 2
    assert "is acknowledged" in out
    assert out.count(": resolved") == 3


def test_the_core_only_tour_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quick_tour.py")], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "StateReplayed" in out
    assert out.count("trigger -> HTTP") == 2
    assert "trigger -> HTTP 200" in out, "the Connect-era integration used the legacy API"
    assert "trigger -> HTTP 202" in out
    assert SERVICE_KEY not in out


def test_the_core_imports_no_web_framework() -> None:
    code = "import sys, pdconnect, pdconnect.cli; bad = {'flask', 'werkzeug', 'jinja2'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_db_init_creates_the_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'vendor.db'}"
    assert main(["db", "init", "--database", url]) == 0
    assert main(["db", "init", "--database", url]) == 0, "running it again is harmless"
    tables = set(sa.inspect(sa.create_engine(url)).get_table_names())
    assert {"pdconnect_integrations", "pdconnect_used_nonces", "pdconnect_outbox"} <= tables
    assert {"pdconnect_webhook_secrets", "pdconnect_webhook_deliveries", "pdconnect_incident_states"} <= tables
    assert "pdconnect tables ready" in capsys.readouterr().out


def test_tests_cannot_reach_real_hosts() -> None:
    import requests

    with pytest.raises(requests.ConnectionError, match="only loopback is allowed"):
        requests.post("https://events.pagerduty.com/v2/enqueue", json={}, timeout=5)
