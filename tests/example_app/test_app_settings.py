"""Acme's settings from the environment: real types, read once, a clear error for a bad one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from example_app import create_app
from example_app.config import load_config
from pdconnect.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("false", False), ("off", False), ("0", False), ("No", False), (" true ", True), ("on", True), ("1", True)],
)
def test_booleans_are_parsed(value: str, expected: bool) -> None:
    config = load_config({"ACME_SCHEDULER": value, "ACME_WORKER": value})
    assert config["ACME_SCHEDULER"] is expected and config["ACME_WORKER"] is expected


@pytest.mark.parametrize("value", ["maybe", "", "nan", "2", "offf", "\ud800", "true\x00", "yes please"])
def test_a_bad_boolean_names_its_setting_and_not_its_value(value: str) -> None:
    with pytest.raises(ConfigError, match="ACME_WORKER must be true or false") as raised:
        load_config({"ACME_WORKER": value})
    assert raised.value.setting == "ACME_WORKER"


def test_pdconnect_settings_reach_pdconnect_as_their_real_types(tmp_path: Path) -> None:
    environ = {
        "ACME_DATABASE_URL": f"sqlite:///{tmp_path / 'acme.db'}",
        "ACME_SCHEDULER": "off",
        "ACME_WORKER": "off",
        "PDCONNECT_WEBHOOK_SUBSCRIBE": "false",
        "PDCONNECT_STATE_MAX_AGE": "300",
        "PDCONNECT_APP_ID": "0123456",  # digits, but an id: a string, leading zero kept
    }
    app = create_app(environ=environ)
    assert app.config["PDCONNECT_WEBHOOK_SUBSCRIBE"] is False
    assert app.config["PDCONNECT_STATE_MAX_AGE"] == 300
    assert app.config["PDCONNECT_APP_ID"] == "0123456"
    assert app.config["ACME_SCHEDULER"] is False


@pytest.mark.parametrize(
    ("name", "value"),
    [("ACME_SCHEDULER", "sometimes"), ("PDCONNECT_STATE_MAX_AGE", "ten"), ("ACME_MONITOR_ALLOWED_NETWORKS", "lan")],
)
def test_the_app_refuses_to_start_with_one_line(tmp_path: Path, name: str, value: str) -> None:
    environ = {**os.environ, "ACME_DATABASE_URL": f"sqlite:///{tmp_path / 'acme.db'}", name: value}
    result = subprocess.run(
        [sys.executable, "-m", "example_app", "--port", "0"], cwd=ROOT, env=environ, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("acme: ") and name in lines[0], result.stderr
    assert "Traceback" not in result.stderr and value not in lines[0].removeprefix(f"acme: {name}")


@pytest.mark.parametrize("value", ["prodution", "staging", "", "production\x00", "PRODUCTION!"])
def test_an_unknown_mode_is_refused_rather_than_run_as_development(value: str) -> None:
    with pytest.raises(ConfigError, match="ACME_ENV must be development or production"):
        load_config({"ACME_ENV": value, "ACME_SECRET_KEY": "k" * 40})


@pytest.mark.parametrize("value", [" Production ", "PROD", "dev"])
def test_modes_are_read_in_any_case(value: str) -> None:
    assert load_config({"ACME_ENV": value, "ACME_SECRET_KEY": "k" * 40})[
        "ACME_PRODUCTION"
    ] is value.strip().lower().startswith("prod")


@pytest.mark.parametrize(
    "value",
    ["javascript:alert(1)", "monitoring.example.com", "https://", "https://user:pw@acme.example", "http://a b/", "//x"],
)
def test_a_base_url_that_is_no_link_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="ACME_BASE_URL"):
        load_config({"ACME_BASE_URL": value})
