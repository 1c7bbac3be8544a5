"""Fixtures for the OAuth client's tests: an app, a client and a strict fake PagerDuty identity host."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import responses

from pdconnect import MemoryNonceStore, new_session_binding
from pdconnect.oauth import OAuthApp, PagerDutyOAuth
from pdconnect.retry import RetryPolicy
from tests.conftest import SECRET, FakeClock
from tests.oauth.fake_identity import CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, FakeIdentity

#: Retries without waiting: the tests' clock and sleep are fake.
NO_WAIT = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0, deadline=60.0, rate_limit_delay=0.0)


def make_app(**changes: object) -> OAuthApp:
    settings: dict[str, object] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uri": REDIRECT_URI,
        "kind": "classic",
        "scopes": ("write",),
    }
    settings.update(changes)
    return OAuthApp(**settings)  # type: ignore[arg-type]


@pytest.fixture
def app() -> OAuthApp:
    return make_app()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def oauth(app: OAuthApp, clock: FakeClock, sleeps: list[float]) -> PagerDutyOAuth:
    return PagerDutyOAuth(
        app, secret=SECRET, nonces=MemoryNonceStore(clock=clock), retry=NO_WAIT, clock=clock, sleep=sleeps.append
    )


@pytest.fixture
def identity(clock: FakeClock) -> Iterator[FakeIdentity]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield FakeIdentity(mock, clock)


@pytest.fixture
def other_binding() -> str:
    return new_session_binding()
