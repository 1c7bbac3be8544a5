"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from pdconnect import Handshake, MemoryNonceStore, new_session_binding

# No timing thresholds in tests: Hypothesis' per-example deadline and its "slow input" check
# are timing judgements, and would fail on a loaded machine rather than on a real bug.
settings.register_profile("pdconnect", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("pdconnect")

SERVICE_KEY = "e93facc04764012d7bfb002500d5d1a6"
OTHER_SERVICE_KEY = "737ea619db564d41bd9824063e1f6b08"
RULESET_KEY = "R0212P1QXGEIQE2NMTQ7L7WXD00DWHIN"
VENDOR_KEY = "2fc7c9f3c8030e74aae6"
APP_ID = "P6LEX1U"
SECRET = "a-vendor-secret-of-decent-length"
CALLBACK_URL = "https://vendor.example/pagerduty/callback"
REDIRECT_URL = "https://vendor.example/pagerduty/callback"


class FakeClock:
    """A clock that moves only when a test says so."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def binding() -> str:
    return new_session_binding()


@pytest.fixture
def handshake(clock: FakeClock) -> Handshake:
    return Handshake(
        secret=SECRET,
        vendor_key=VENDOR_KEY,
        app_id=APP_ID,
        nonce_store=MemoryNonceStore(clock=clock),
        clock=clock,
    )
