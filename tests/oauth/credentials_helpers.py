"""Shared pieces of the credential, refresh and REST tests: accounts, token sets, stores on every backend."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pdconnect.oauth import AccountIdentity, OAuthRefused, TokenSet
from pdconnect.oauth.cipher import TokenCipher
from pdconnect.oauth.credentials import CredentialStore, MemoryCredentialStore, SqlCredentialStore
from tests.conftest import unique_table

ACCOUNT = AccountIdentity(
    subdomain="acme",
    account_id="PACME01",
    user_id="PUSER01",
    delegation_id="PDELEG1",
    region="us",
    rest_base_url="https://api.pagerduty.com",
    events_base_url="https://events.pagerduty.com",
)
EU_ACCOUNT = AccountIdentity(
    subdomain="euro",
    account_id="PEURO01",
    user_id="PUSER02",
    delegation_id="PDELEG2",
    region="eu",
    rest_base_url="https://api.eu.pagerduty.com",
    events_base_url="https://events.eu.pagerduty.com",
)
KEY = TokenCipher.generate_key()
#: The tests' "now", for refreshers and fake endpoints.
NOW = 1_800_000_000.0


def token(kind: str = "0") -> str:
    """A distinctive token shaped like PagerDuty's (``pdus+_0...``), never seen twice."""
    return f"pdus+_{kind}{secrets.token_urlsafe(24)}"


def token_set(
    *,
    access: str | None = None,
    refresh: str | None = "new",
    expires_at: float = 2e9,
    scopes: frozenset[str] | None = None,
) -> TokenSet:
    return TokenSet(
        access_token=access if access is not None else token("0"),
        refresh_token=token("1") if refresh == "new" else refresh,
        expires_at=expires_at,
        scopes=scopes if scopes is not None else frozenset({"openid", "write"}),
        id_token=None,
    )


def account(**changes: Any) -> AccountIdentity:
    return replace(ACCOUNT, **changes)


def make_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[CredentialStore]:
    """A store of ``kind`` (memory, sqlite, postgres), emptied afterwards."""
    if kind == "memory":
        yield MemoryCredentialStore()
        return
    if kind == "sqlite":
        engine = sa.create_engine(f"sqlite:///{tmp_path / 'credentials.db'}")
        yield SqlCredentialStore(engine, cipher=TokenCipher([KEY]))
        engine.dispose()
        return
    engine = request.getfixturevalue("postgres_engine")
    store = SqlCredentialStore(engine, cipher=TokenCipher([KEY]), table_name=unique_table("pdc_creds"))
    yield store
    store.table.drop(store.engine)


STORE_KINDS = ["memory", "sqlite", "postgres"]


class FakeOAuth:
    """A token endpoint that rotates: each refresh token works once."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.valid: set[str] = set()
        self.fail: Exception | None = None

    def issue(self, **kwargs: object) -> TokenSet:
        tokens = token_set(expires_at=NOW + 3600, **kwargs)  # type: ignore[arg-type]
        assert tokens.refresh_token is not None
        self.valid.add(tokens.refresh_token)
        return tokens

    def refresh(self, refresh_token: str) -> TokenSet:
        self.calls.append(refresh_token)
        if self.fail is not None:
            raise self.fail
        if refresh_token not in self.valid:
            raise OAuthRefused("invalid_grant", "the refresh token was used already", status=400)
        self.valid.discard(refresh_token)
        return self.issue()
