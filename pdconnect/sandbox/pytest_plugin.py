"""pytest plugin: a local PagerDuty in every test that asks for one. Installed with pdconnect.

Use the ``pagerduty_sandbox`` fixture: a sandbox started once per test session on a free
loopback port and reset before each test. It is a
:class:`~pdconnect.sandbox.client.SandboxClient` (so it can click through the handshake
pages, act as a responder and list received events) with the running server attached::

    def test_alert_reaches_pagerduty(pagerduty_sandbox):
        sender = Sender(events_base_url=pagerduty_sandbox.url)
        key = pagerduty_sandbox.service_key()
        sender.trigger(key, "Disk full", source="db-1", severity="critical", dedup_key="db-1/disk")
        assert pagerduty_sandbox.incident_for("db-1/disk")["status"] == "triggered"

The sandbox's REST API takes an account's own credentials only:
``pagerduty_sandbox.api_key("acme")`` is that account's default REST API key (made on first
use after each reset), ``pagerduty_sandbox.subscribe(url, account=...)`` creates a webhook
subscription with it, and ``create_account(..., region="eu")``, ``new_api_key(read_only=True)``
and ``create_user(role=...)`` make the rest::

    def test_subscribe(pagerduty_sandbox):
        client = SubscriptionClient(pagerduty_sandbox.api_key(), base_url=pagerduty_sandbox.url)

Disable it with ``-p no:pdconnect``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pdconnect.sandbox import SandboxServer

from pdconnect.sandbox.client import SandboxClient


class PagerDutySandbox(SandboxClient):
    """The fixture's value: a client of the sandbox, with the in-process server at hand."""

    def __init__(self, server: SandboxServer) -> None:
        super().__init__(server.url, verify=str(server.ca_path) if server.ca_path else True)
        self.server = server

    @property
    def sandbox(self) -> Any:
        """The :class:`~pdconnect.sandbox.engine.Sandbox` itself, for direct inspection."""
        return self.server.sandbox

    def wait_for(self, predicate: Callable[[], bool], *, timeout: float = 10.0, what: str = "the condition") -> None:
        """Wait, without polling sleeps, until ``predicate()`` holds after some change in the sandbox."""
        if not self.server.sandbox.wait_for(predicate, timeout):
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def wait_for_deliveries(self, count: int, *, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until ``count`` webhooks are finished (delivered or dropped); returns all deliveries."""
        sandbox = self.server.sandbox

        def finished() -> bool:
            return sum(1 for d in sandbox.deliveries() if d.state != "pending") >= count

        self.wait_for(finished, timeout=timeout, what=f"{count} finished webhook deliveries")
        return self.deliveries()


@pytest.fixture(scope="session")
def pagerduty_sandbox_server() -> Iterator[SandboxServer]:
    """One sandbox server for the whole test session (webhook retries scaled down further)."""
    from pdconnect.sandbox import RetrySchedule, Sandbox, SandboxServer, SandboxSettings

    settings = SandboxSettings(webhook_schedule=RetrySchedule(delays=(0.05, 0.1, 0.2, 0.4), disabled_for=2.0))
    server = SandboxServer(Sandbox(settings)).start()
    yield server
    server.stop()


@pytest.fixture
def pagerduty_sandbox(pagerduty_sandbox_server: SandboxServer) -> Iterator[PagerDutySandbox]:
    """A freshly reset sandbox for this test."""
    pagerduty_sandbox_server.sandbox.reset()
    fixture = PagerDutySandbox(pagerduty_sandbox_server)
    yield fixture
    fixture.close()
