"""TokenRefresher: refresh before expiry and on a 401, once; dead grants marked once; transient ones not."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.oauth import OAuthRefused, TokenEndpointError, TokenSet
from pdconnect.oauth.credentials import Credential, CredentialStore, MemoryCredentialStore
from pdconnect.oauth.refresh import CredentialNotFound, NeedsReauthorization, TokenRefresher
from tests.oauth.credentials_helpers import ACCOUNT, NOW, STORE_KINDS, FakeOAuth, make_store, token_set


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CredentialStore]:
    yield from make_store(request.param, tmp_path, request)


@pytest.fixture
def oauth() -> FakeOAuth:
    return FakeOAuth()


@pytest.fixture
def hooked() -> list[Credential]:
    return []


@pytest.fixture
def refresher(store: CredentialStore, oauth: FakeOAuth, hooked: list[Credential]) -> TokenRefresher:
    return TokenRefresher(store, oauth, on_needs_reauthorization=hooked.append, clock=lambda: NOW)


def connect(store: CredentialStore, oauth: FakeOAuth, *, expires_in: float) -> Credential:
    tokens = oauth.issue()
    return store.save(
        "o", ACCOUNT, TokenSet(tokens.access_token, tokens.refresh_token, NOW + expires_in, tokens.scopes, None)
    )


def test_a_token_far_from_expiry_is_used_as_it_is(
    store: CredentialStore, oauth: FakeOAuth, refresher: TokenRefresher
) -> None:
    saved = connect(store, oauth, expires_in=3600)
    assert refresher.fresh_token("o", ACCOUNT.account_id) == saved.access_token
    assert oauth.calls == []


@pytest.mark.parametrize("expires_in", [-10, 0, 299])
def test_a_token_within_the_margin_is_refreshed_and_both_tokens_stored(
    store: CredentialStore, oauth: FakeOAuth, refresher: TokenRefresher, expires_in: float
) -> None:
    saved = connect(store, oauth, expires_in=expires_in)
    fresh = refresher.fresh_token("o", ACCOUNT.account_id)
    assert fresh != saved.access_token
    assert oauth.calls == [saved.refresh_token]
    stored = store.get("o", ACCOUNT.account_id)
    assert stored is not None and stored.access_token == fresh
    assert stored.refresh_token in oauth.valid and stored.version == saved.version + 1
    assert refresher.fresh_token("o", ACCOUNT.account_id) == fresh  # and not again
    assert len(oauth.calls) == 1


def test_force_refreshes_the_token_that_failed_once(
    store: CredentialStore, oauth: FakeOAuth, refresher: TokenRefresher
) -> None:
    saved = connect(store, oauth, expires_in=3600)
    first = refresher.fresh_token("o", ACCOUNT.account_id, force=True, failed_token=saved.access_token)
    assert first != saved.access_token and len(oauth.calls) == 1
    # A second caller whose request failed with the old token gets the new one, no refresh.
    second = refresher.fresh_token("o", ACCOUNT.account_id, force=True, failed_token=saved.access_token)
    assert second == first and len(oauth.calls) == 1


def test_invalid_grant_marks_once_and_fires_the_hook_once(
    store: CredentialStore, oauth: FakeOAuth, refresher: TokenRefresher, hooked: list[Credential]
) -> None:
    saved = connect(store, oauth, expires_in=-1)
    oauth.valid.clear()  # revoked
    for _ in range(3):
        with pytest.raises(NeedsReauthorization) as caught:
            refresher.fresh_token("o", ACCOUNT.account_id)
        assert saved.refresh_token not in str(caught.value)
    assert len(oauth.calls) == 1
    assert len(hooked) == 1 and hooked[0].needs_reauthorization
    stored = store.get("o", ACCOUNT.account_id)
    assert stored is not None and stored.needs_reauthorization
    assert "invalid_grant" in (stored.needs_reauthorization_reason or "")


@pytest.mark.parametrize(
    "failure",
    [
        TokenEndpointError("the token endpoint gave no usable answer (last: HTTP 503)", status=503, retryable=True),
        TokenEndpointError("the token endpoint gave no usable answer (last: HTTP 429)", status=429, retryable=True),
        TokenEndpointError("cannot reach the token endpoint: connection failed", retryable=True),
        OAuthRefused("invalid_client", status=401),
        OAuthRefused("temporarily_unavailable", status=503),
    ],
    ids=["503", "429", "network", "invalid_client", "temporarily_unavailable"],
)
def test_other_failures_propagate_and_mark_nothing(
    store: CredentialStore, oauth: FakeOAuth, refresher: TokenRefresher, hooked: list[Credential], failure: Exception
) -> None:
    saved = connect(store, oauth, expires_in=-1)
    oauth.fail = failure
    with pytest.raises(type(failure)):
        refresher.fresh_token("o", ACCOUNT.account_id)
    assert hooked == []
    assert store.get("o", ACCOUNT.account_id) == saved
    oauth.fail = None
    assert refresher.fresh_token("o", ACCOUNT.account_id) != saved.access_token  # the next call mends it


def test_no_refresh_token_marks_needs_reauthorization(
    store: CredentialStore, oauth: FakeOAuth, refresher: TokenRefresher, hooked: list[Credential]
) -> None:
    store.save("o", ACCOUNT, token_set(refresh=None, expires_at=NOW - 1))
    with pytest.raises(NeedsReauthorization):
        refresher.fresh_token("o", ACCOUNT.account_id)
    assert len(hooked) == 1 and oauth.calls == []


def test_unknown_credential_and_other_owner(
    store: CredentialStore, oauth: FakeOAuth, refresher: TokenRefresher
) -> None:
    connect(store, oauth, expires_in=-1)
    with pytest.raises(CredentialNotFound):
        refresher.fresh_token("mallory", ACCOUNT.account_id)
    assert oauth.calls == []


def test_a_hook_that_raises_is_logged_and_the_mark_stays(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    store, oauth = MemoryCredentialStore(), FakeOAuth()
    connect(store, oauth, expires_in=-1)
    oauth.valid.clear()

    def hook(_credential: Credential) -> None:
        raise RuntimeError("vendor bug")

    refresher = TokenRefresher(store, oauth, on_needs_reauthorization=hook, clock=lambda: NOW)
    with caplog.at_level(logging.ERROR, logger="pdconnect"), pytest.raises(NeedsReauthorization):
        refresher.fresh_token("o", ACCOUNT.account_id)
    assert "on_needs_reauthorization raised" in caplog.text
    stored = store.get("o", ACCOUNT.account_id)
    assert stored is not None and stored.needs_reauthorization


@pytest.mark.parametrize("margin", [-1, 86_401, float("nan"), float("inf"), True, "300", None])
def test_hostile_margins_are_refused(margin: object) -> None:
    with pytest.raises(ValueError, match="margin"):
        TokenRefresher(MemoryCredentialStore(), FakeOAuth(), margin=margin)  # type: ignore[arg-type]


def test_no_token_in_any_log_record(
    store: CredentialStore, oauth: FakeOAuth, refresher: TokenRefresher, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        logging.getLogger().setLevel(logging.DEBUG)
        saved = connect(store, oauth, expires_in=-1)
        fresh = refresher.fresh_token("o", ACCOUNT.account_id)
        oauth.valid.clear()
        store.replace(saved, token_set(expires_at=NOW - 1), saved.version + 1)
        stale = store.get("o", ACCOUNT.account_id)
        assert stale is not None
        with pytest.raises(NeedsReauthorization):
            refresher.fresh_token("o", ACCOUNT.account_id)
    text = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records)
    for secret in (saved.access_token, saved.refresh_token, fresh, stale.access_token, stale.refresh_token):
        assert secret is not None and secret not in text


@given(expires_in=st.floats(min_value=-1e6, max_value=1e6), margin=st.floats(min_value=0, max_value=86_400))
def test_refreshes_exactly_when_within_the_margin(expires_in: float, margin: float) -> None:
    store, oauth = MemoryCredentialStore(), FakeOAuth()
    saved = connect(store, oauth, expires_in=expires_in)
    refresher = TokenRefresher(store, oauth, margin=margin, clock=lambda: NOW)
    fresh = refresher.fresh_token("o", ACCOUNT.account_id)
    expected_refresh = saved.expires_at - NOW < margin
    assert (fresh != saved.access_token) == expected_refresh
    assert len(oauth.calls) == int(expected_refresh)
