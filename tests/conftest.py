"""Fixtures shared by the unit tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
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


#: The PostgreSQL server the storage and outbox tests use (this machine kind runs one on loopback).
POSTGRES_URL = os.environ.get("PDCONNECT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def postgres_engine() -> Iterator[sa.Engine]:
    """An engine on the test PostgreSQL server; skipped (or failed, in CI) when it is not reachable.

    ``.ci/run`` sets ``PDCONNECT_REQUIRE_POSTGRES=1``, which turns the skip into a failure so that
    CI never passes without having run the PostgreSQL tests.
    """
    engine = sa.create_engine(POSTGRES_URL, pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except Exception as exc:
        engine.dispose()
        reason = f"PostgreSQL not reachable at {POSTGRES_URL} ({type(exc).__name__}); set PDCONNECT_TEST_POSTGRES_URL"
        if os.environ.get("PDCONNECT_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason + " -- required here (PDCONNECT_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    yield engine
    engine.dispose()


def unique_table(prefix: str) -> str:
    """A table name no other test run uses, so runs sharing one database never collide."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


class NetworkRefused(OSError):
    """A test tried to reach a host other than this machine."""


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    """No test may reach anything but loopback: name lookups and connections elsewhere fail.

    A safety net under the rule that tests never contact a real PagerDuty host.
    """
    import ipaddress
    import socket

    original_getaddrinfo = socket.getaddrinfo
    original_connect = socket.socket.connect

    def local(host: object) -> bool:
        if host in (None, "localhost") or (isinstance(host, str) and host.endswith(".localhost")):
            return True
        try:
            return ipaddress.ip_address(str(host).strip("[]").split("%")[0]).is_loopback
        except ValueError:
            return False

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not local(host.decode() if isinstance(host, bytes) else host):
            raise NetworkRefused(f"tests may not look up {host!r}: only loopback is allowed")
        return original_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not local(address[0]):
            raise NetworkRefused(f"tests may not connect to {address!r}: only loopback is allowed")
        return original_connect(self, address)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.socket.connect = connect  # type: ignore[method-assign]
    yield
    socket.getaddrinfo = original_getaddrinfo
    socket.socket.connect = original_connect  # type: ignore[method-assign]
