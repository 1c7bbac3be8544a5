"""The pytest plugin works in a new project with nothing but pdconnect installed."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

VENDOR_TEST = """
import json
from urllib.parse import parse_qs, urlsplit

from pdconnect import Handshake, Sender, new_session_binding


def test_connect_then_alert(pagerduty_sandbox):
    handshake = Handshake(secret="s" * 32, vendor_key="v" * 20, connect_base_url=pagerduty_sandbox.url)
    binding = new_session_binding()
    url = handshake.connect_url("https://vendor.example/cb", owner_id="org", session_binding=binding)
    callback = pagerduty_sandbox.connect(url, new_service="Vendor alerts")
    state = urlsplit(callback).path.rsplit("/", 1)[1]
    integration = handshake.complete(urlsplit(callback).query, session_binding=binding, state=state).integration
    with Sender(events_base_url=pagerduty_sandbox.url, vendor_key="v" * 20) as sender:
        sender.trigger(integration, "Down", source="h", severity="critical", dedup_key="d1")
    assert pagerduty_sandbox.incident_for("d1")["status"] == "triggered"
    assert pagerduty_sandbox.received()[-1]["request"]["vendor"] == "v" * 20


def test_each_test_starts_clean(pagerduty_sandbox):
    assert pagerduty_sandbox.incidents() == []
    assert pagerduty_sandbox.received() == []
"""


def test_the_fixture_in_a_new_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_vendor=VENDOR_TEST)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_the_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_vendor="def test_x(pagerduty_sandbox):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:pdconnect")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'pagerduty_sandbox' not found*"])
