"""Acme Monitoring beside the PagerDuty sandbox, for every test of the example app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from example_app.demo import RunningDemo, start_acme
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox


@pytest.fixture
def acme(pagerduty_sandbox: PagerDutySandbox, tmp_path: Path) -> Iterator[RunningDemo]:
    """Acme in single-account mode (the install flow needs no OAuth first); test_app_oauth.py covers OAuth."""
    running = start_acme(
        pagerduty_sandbox.server,
        database_url=f"sqlite:///{tmp_path / 'acme.db'}",
        scheduler=False,
        worker=False,
        oauth=False,
    )
    yield running
    running.stop()
