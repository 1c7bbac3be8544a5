"""Someone who can write the credentials table, but has no key, can neither steer, plant nor swap tokens.

Attack report "oauth", finding 2: the REST base was read from a clear column and only checked
to be a URL, ``plain:`` tokens were read although a cipher was configured, and ciphertexts
could be copied between rows. Each row of the tables below is such an edit.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect.oauth.cipher import TokenCipher, TokenDecryptionError
from pdconnect.oauth.credentials import MemoryCredentialStore, SqlCredentialStore
from pdconnect.oauth.refresh import TokenRefresher
from pdconnect.rest.client import AccountRestClient
from pdconnect.rest.errors import UnsafeRestURL
from pdconnect.transport import HttpResponse
from tests.conftest import unique_table
from tests.oauth.credentials_helpers import ACCOUNT, NOW, FakeOAuth, account, token_set

CIPHER = TokenCipher([TokenCipher.generate_key()])
EVIL = "https://attacker.example"


class Capture:
    """A transport that records what it is asked to send and answers an empty page."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def request(
        self, method: str, url: str, body: bytes, headers: Mapping[str, str], timeout: tuple[float, float]
    ) -> HttpResponse:
        self.sent.append((url, headers["Authorization"]))
        return HttpResponse(status=200, body=b'{"services":[],"more":false}', headers={})


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "postgres":
        yield request.getfixturevalue("postgres_engine")
        return
    made = sa.create_engine(f"sqlite:///{tmp_path / 'creds.db'}")
    yield made
    made.dispose()


def _store(engine: sa.Engine, *, cipher: TokenCipher | None = CIPHER) -> SqlCredentialStore:
    return SqlCredentialStore(
        engine, cipher=cipher, insecure_plaintext=cipher is None, table_name=unique_table("pdc_tamper")
    )


def _edit(store: SqlCredentialStore, owner: str, **values: Any) -> None:
    table = store.table
    with store.engine.begin() as conn:
        conn.execute(sa.update(table).where(table.c.owner_id == owner).values(**values))


def _column(store: SqlCredentialStore, owner_id: str, name: str) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(store.table.c[name]).where(store.table.c.owner_id == owner_id)).scalar_one()


def _two_rows(store: SqlCredentialStore) -> None:
    store.save("victim", ACCOUNT, token_set())
    store.save("attacker", account(account_id="PEVIL01", subdomain="evil"), token_set())


# -- (a) the REST base a row names ------------------------------------------------------------


@pytest.mark.parametrize(
    "base",
    [
        EVIL,
        "https://api.pagerduty.com.attacker.example",
        "https://api.pagerduty.com:8443",
        "http://api.pagerduty.com",
        "https://api.eu.pagerduty.com",  # a real base, but the other region's
        "https://127.0.0.1",
    ],
)
def test_a_rest_base_not_configured_for_the_region_never_gets_the_token(base: str) -> None:
    store = MemoryCredentialStore()
    store.save("o", account(rest_base_url=base), token_set())
    transport = Capture()
    client = AccountRestClient(
        TokenRefresher(store, FakeOAuth(), clock=lambda: NOW), "o", "PACME01", transport=transport
    )
    with pytest.raises(UnsafeRestURL, match="not a configured PagerDuty REST base"):
        client.list_services()
    assert transport.sent == []


def test_an_edited_rest_base_in_a_plaintext_table_never_gets_the_token(engine: sa.Engine) -> None:
    store = _store(engine, cipher=None)
    store.save("o", ACCOUNT, token_set())
    _edit(store, "o", rest_base_url=EVIL)
    transport = Capture()
    client = AccountRestClient(
        TokenRefresher(store, FakeOAuth(), clock=lambda: NOW), "o", "PACME01", transport=transport
    )
    with pytest.raises(UnsafeRestURL):
        client.list_services()
    assert transport.sent == []


def test_configured_bases_are_honoured_and_the_default_is_pagerdutys() -> None:
    store = MemoryCredentialStore()
    store.save("o", account(rest_base_url="http://127.0.0.1:9"), token_set())
    refresher = TokenRefresher(store, FakeOAuth(), clock=lambda: NOW)
    transport = Capture()
    client = AccountRestClient(
        refresher, "o", "PACME01", transport=transport, allowed_bases={"http://127.0.0.1:9/": "us"}
    )
    assert client.list_services() == []
    assert [url for url, _ in transport.sent] == ["http://127.0.0.1:9/services?limit=100&offset=0"]
    assert dict(AccountRestClient(refresher, "o", "PACME01").allowed_bases) == {
        "https://api.pagerduty.com": "us",
        "https://api.eu.pagerduty.com": "eu",
    }


# -- (b) and (c): tokens planted, copied or unbound ---------------------------------------------


def _copied(column: str) -> Any:
    return lambda store: _column(store, "attacker", column)


EDITS: list[tuple[str, dict[str, Any]]] = [
    ("rest base", {"rest_base_url": EVIL}),
    ("events base", {"events_base_url": EVIL}),
    ("region", {"region": "eu"}),
    ("planted access token", {"access_token": "plain:pdus+_0ATTACKERS"}),
    ("planted refresh token", {"refresh_token": "plain:pdus+_1ATTACKERS"}),
    ("another row's access token", {"access_token": _copied("access_token")}),
    ("another row's refresh token", {"refresh_token": _copied("refresh_token")}),
    ("another row's tokens", {"access_token": _copied("access_token"), "refresh_token": _copied("refresh_token")}),
    ("garbage", {"access_token": "fernet2:bm90IGEgdG9rZW4="}),
]


@pytest.mark.parametrize(("what", "values"), EDITS, ids=[what for what, _ in EDITS])
def test_an_edited_row_is_a_decryption_error_and_sends_nothing(
    engine: sa.Engine, what: str, values: dict[str, Any]
) -> None:
    store = _store(engine)
    _two_rows(store)
    _edit(store, "victim", **{name: v(store) if callable(v) else v for name, v in values.items()})
    with pytest.raises(TokenDecryptionError) as raised:
        store.get("victim", "PACME01")
    assert "pdus+_" not in str(raised.value)
    transport = Capture()
    refresher = TokenRefresher(store, FakeOAuth(), clock=lambda: NOW)
    with pytest.raises(TokenDecryptionError):
        AccountRestClient(refresher, "victim", "PACME01", transport=transport).list_services()
    assert transport.sent == []
    assert store.get("attacker", "PEVIL01") is not None  # the untouched row still reads


def test_a_row_moved_to_another_owner_or_account_does_not_read(engine: sa.Engine) -> None:
    store = _store(engine)
    store.save("victim", ACCOUNT, token_set())
    _edit(store, "victim", owner_id="attacker")
    with pytest.raises(TokenDecryptionError):
        store.get("attacker", "PACME01")
    _edit(store, "attacker", owner_id="victim", account_id="PEVIL01")
    with pytest.raises(TokenDecryptionError):
        store.get("victim", "PEVIL01")


def test_plaintext_rows_still_read_without_a_cipher(engine: sa.Engine) -> None:
    store = _store(engine, cipher=None)
    saved = store.save("o", ACCOUNT, token_set())
    assert _column(store, "o", "access_token") == "plain:" + saved.access_token
    assert store.get("o", "PACME01") == saved


def test_first_format_rows_still_read_and_rotate_keys_binds_them(engine: sa.Engine) -> None:
    store = _store(engine)
    saved = store.save("o", ACCOUNT, token_set())
    assert str(_column(store, "o", "access_token")).startswith("fernet2:")
    _edit(
        store,
        "o",
        access_token="fernet:" + CIPHER.encrypt(saved.access_token),
        refresh_token="fernet:" + CIPHER.encrypt(str(saved.refresh_token)),
    )
    assert store.get("o", "PACME01") == saved
    assert store.rotate_keys() == 1
    assert str(_column(store, "o", "access_token")).startswith("fernet2:")
    sealed = json.loads(CIPHER.decrypt(str(_column(store, "o", "access_token")).removeprefix("fernet2:")))
    assert sealed["owner_id"] == "o" and sealed["account_id"] == "PACME01"
    assert store.get("o", "PACME01") == saved


_IDS = st.text(alphabet=string.ascii_letters + string.digits + "-_.", min_size=1, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=_IDS, second=_IDS, account_id=_IDS)
def test_property_a_token_reads_only_in_the_row_it_was_saved_in(
    tmp_path: Path, first: str, second: str, account_id: str
) -> None:
    if first == second:
        return
    made = sa.create_engine(f"sqlite:///{tmp_path / 'prop.db'}")
    try:
        store = _store(made)
        one = store.save(first, account(account_id=account_id), token_set())
        store.save(second, account(account_id=account_id), token_set())
        assert store.get(first, account_id) == one
        _edit(store, first, access_token=_column(store, second, "access_token"))
        with pytest.raises(TokenDecryptionError):
            store.get(first, account_id)
    finally:
        made.dispose()
