"""The credential stores: one credential per owner and account, owner-scoped reads, compare-and-swap.

Every test runs on memory, SQLite and PostgreSQL. Hostile values are refused with
:class:`~pdconnect.errors.InvalidData` naming the field and never the value.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect.errors import ConfigError, InvalidData
from pdconnect.oauth.cipher import TokenCipher, TokenDecryptionError
from pdconnect.oauth.credentials import CredentialStore, SqlCredentialStore, parse_scopes
from tests.oauth.credentials_helpers import ACCOUNT, EU_ACCOUNT, KEY, STORE_KINDS, account, make_store, token_set


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CredentialStore]:
    yield from make_store(request.param, tmp_path, request)


def test_save_get_list_delete(store: CredentialStore) -> None:
    tokens = token_set(scopes=frozenset({"openid", "services.read", "webhook_subscriptions.write"}))
    saved = store.save("owner-1", ACCOUNT, tokens)
    assert saved.version == 1 and not saved.needs_reauthorization
    got = store.get("owner-1", ACCOUNT.account_id)
    assert got is not None
    assert got.account == ACCOUNT
    assert (got.access_token, got.refresh_token, got.expires_at, got.scopes) == (
        tokens.access_token,
        tokens.refresh_token,
        tokens.expires_at,
        tokens.scopes,
    )
    store.save("owner-1", EU_ACCOUNT, token_set())
    assert [c.account_id for c in store.list_for_owner("owner-1")] == [ACCOUNT.account_id, EU_ACCOUNT.account_id]
    assert store.delete("owner-1", ACCOUNT.account_id) is True
    assert store.delete("owner-1", ACCOUNT.account_id) is False
    assert store.get("owner-1", ACCOUNT.account_id) is None


def test_every_read_is_scoped_by_owner(store: CredentialStore) -> None:
    store.save("alice", ACCOUNT, token_set())
    assert store.get("mallory", ACCOUNT.account_id) is None
    assert store.list_for_owner("mallory") == []
    assert store.delete("mallory", ACCOUNT.account_id) is False
    assert store.mark_needs_reauthorization("mallory", ACCOUNT.account_id, "x") is None
    assert store.get("alice", ACCOUNT.account_id) is not None
    with store.locked("mallory", ACCOUNT.account_id) as held:
        assert held.current is None


def test_two_owners_connecting_one_account_get_a_credential_each(store: CredentialStore) -> None:
    a = store.save("alice", ACCOUNT, token_set())
    b = store.save("bob", ACCOUNT, token_set())
    assert store.get("alice", ACCOUNT.account_id) == a
    assert store.get("bob", ACCOUNT.account_id) == b
    assert a.access_token != b.access_token


def test_reconnect_replaces_tokens_bumps_version_and_clears_the_mark(store: CredentialStore) -> None:
    first = store.save("o", ACCOUNT, token_set())
    assert store.mark_needs_reauthorization("o", ACCOUNT.account_id, "revoked") is not None
    again = store.save("o", ACCOUNT, token_set())
    assert again.version == first.version + 1
    assert not again.needs_reauthorization
    assert store.get("o", ACCOUNT.account_id) == again
    assert len(store.list_for_owner("o")) == 1


def test_replace_is_compare_and_swap(store: CredentialStore) -> None:
    saved = store.save("o", ACCOUNT, token_set())
    newer = store.replace(saved, token_set(), saved.version)
    assert newer is not None and newer.version == saved.version + 1
    assert store.replace(saved, token_set(), saved.version) is None  # the stale version loses
    assert store.get("o", ACCOUNT.account_id) == newer


def test_replace_without_a_refresh_token_or_scopes_keeps_the_stored_ones(store: CredentialStore) -> None:
    saved = store.save("o", ACCOUNT, token_set())
    newer = store.replace(saved, token_set(refresh=None, scopes=frozenset()), saved.version)
    assert newer is not None
    assert newer.refresh_token == saved.refresh_token and newer.scopes == saved.scopes


def test_mark_needs_reauthorization_marks_once_and_cleans_the_reason(store: CredentialStore) -> None:
    saved = store.save("o", ACCOUNT, token_set())
    reason = f"refused {saved.refresh_token}\nwith\x00control {'A' * 40}"
    marked = store.mark_needs_reauthorization("o", ACCOUNT.account_id, reason)
    assert marked is not None and marked.needs_reauthorization
    assert marked.needs_reauthorization_reason is not None
    assert saved.refresh_token not in marked.needs_reauthorization_reason
    assert "A" * 40 not in marked.needs_reauthorization_reason
    assert "\n" not in marked.needs_reauthorization_reason
    assert store.mark_needs_reauthorization("o", ACCOUNT.account_id, "again") is None
    assert store.get("o", ACCOUNT.account_id) == marked


def test_mark_with_a_stale_version_does_nothing(store: CredentialStore) -> None:
    saved = store.save("o", ACCOUNT, token_set())
    store.replace(saved, token_set(), saved.version)
    assert store.mark_needs_reauthorization("o", ACCOUNT.account_id, "x", expected_version=saved.version) is None


def test_locked_replace_and_mark(store: CredentialStore) -> None:
    saved = store.save("o", ACCOUNT, token_set())
    with store.locked("o", ACCOUNT.account_id) as held:
        assert held.current == saved
        newer = held.replace(token_set())
    assert store.get("o", ACCOUNT.account_id) == newer
    with store.locked("o", ACCOUNT.account_id) as held:
        assert held.mark_needs_reauthorization("gone") is not None
    stored = store.get("o", ACCOUNT.account_id)
    assert stored is not None and stored.needs_reauthorization


def test_an_error_inside_the_lock_changes_nothing_in_sql(store: CredentialStore) -> None:
    saved = store.save("o", ACCOUNT, token_set())

    def replace_then_fail() -> None:
        with store.locked("o", ACCOUNT.account_id) as held:
            held.replace(token_set())
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        replace_then_fail()
    if isinstance(store, SqlCredentialStore):
        assert store.get("o", ACCOUNT.account_id) == saved


def test_repr_hides_tokens(store: CredentialStore) -> None:
    saved = store.save("o", ACCOUNT, token_set())
    for text in (repr(saved), str(saved), repr(store)):
        assert saved.access_token not in text
        assert saved.refresh_token is not None and saved.refresh_token not in text
        assert saved.access_token[-8:] not in text


LONG = "x" * 300
HOSTILE_SAVES = [
    ("owner_id", {"owner": ""}),
    ("owner_id", {"owner": " "}),
    ("owner_id", {"owner": "a\x00b"}),
    ("owner_id", {"owner": "a\nb"}),
    ("owner_id", {"owner": "\ud800"}),
    ("owner_id", {"owner": LONG}),
    ("owner_id", {"owner": 7}),
    ("account_id", {"account": {"account_id": ""}}),
    ("account_id", {"account": {"account_id": "P\x00"}}),
    ("account_id", {"account": {"account_id": LONG}}),
    ("subdomain", {"account": {"subdomain": "a\rb"}}),
    ("user_id", {"account": {"user_id": None}}),
    ("delegation_id", {"account": {"delegation_id": 5}}),
    ("region", {"account": {"region": "US"}}),
    ("region", {"account": {"region": "mars"}}),
    ("region", {"account": {"region": None}}),
    ("rest_base_url", {"account": {"rest_base_url": "javascript:alert(1)"}}),
    ("rest_base_url", {"account": {"rest_base_url": "api.pagerduty.com"}}),
    ("rest_base_url", {"account": {"rest_base_url": "https://api.pagerduty.com/?x=1"}}),
    ("rest_base_url", {"account": {"rest_base_url": "https://" + "a" * 300 + ".com"}}),
    ("events_base_url", {"account": {"events_base_url": "ftp://events.pagerduty.com"}}),
    ("access_token", {"tokens": {"access": ""}}),
    ("access_token", {"tokens": {"access": "has space"}}),
    ("access_token", {"tokens": {"access": "line\r\nX-Evil: 1"}}),
    ("access_token", {"tokens": {"access": "é" * 10}}),
    ("access_token", {"tokens": {"access": "a" * 9000}}),
    ("refresh_token", {"tokens": {"refresh": ""}}),
    ("refresh_token", {"tokens": {"refresh": "a\tb"}}),
    ("expires_at", {"tokens": {"expires_at": math.nan}}),
    ("expires_at", {"tokens": {"expires_at": math.inf}}),
    ("expires_at", {"tokens": {"expires_at": -1.0}}),
    ("expires_at", {"tokens": {"expires_at": 1e300}}),
    ("expires_at", {"tokens": {"expires_at": True}}),
    ("expires_at", {"tokens": {"expires_at": "2000000000"}}),
    ("scopes", {"tokens": {"scopes": "read write"}}),
    ("scopes", {"tokens": {"scopes": frozenset({"has space"})}}),
    ("scopes", {"tokens": {"scopes": frozenset({'quo"te'})}}),
    ("scopes", {"tokens": {"scopes": frozenset({"back\\slash"})}}),
    ("scopes", {"tokens": {"scopes": frozenset({""})}}),
    ("scopes", {"tokens": {"scopes": frozenset({"é"})}}),
    ("scopes", {"tokens": {"scopes": frozenset({3})}}),
    ("scopes", {"tokens": {"scopes": frozenset(f"s{i}" for i in range(201))}}),
]


@pytest.mark.parametrize(("field", "change"), HOSTILE_SAVES, ids=[f"{f}-{i}" for i, (f, _) in enumerate(HOSTILE_SAVES)])
def test_hostile_values_are_refused_naming_the_field(store: CredentialStore, field: str, change: dict) -> None:
    owner = change.get("owner", "o")
    acct = account(**change.get("account", {}))
    tokens = token_set(**change.get("tokens", {}))
    with pytest.raises(InvalidData) as caught:
        store.save(owner, acct, tokens)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert tokens.access_token not in str(caught.value) or not tokens.access_token
    assert store.list_for_owner("o") == []


@pytest.mark.parametrize("owner", ["", "\x00", "\ud800", 5, None, "x" * 1000])
@pytest.mark.parametrize("account_id", ["", "\x00", "\udfff", 5, None, "' OR 1=1 --"])
def test_hostile_ids_find_nothing_and_never_raise(store: CredentialStore, owner: object, account_id: object) -> None:
    store.save("o", ACCOUNT, token_set())
    assert store.get(owner, account_id) is None  # type: ignore[arg-type]
    assert store.delete(owner, account_id) is False  # type: ignore[arg-type]
    assert store.mark_needs_reauthorization(owner, account_id, "x") is None  # type: ignore[arg-type]
    assert store.list_for_owner(owner) == []  # type: ignore[arg-type]


def test_sql_store_refuses_to_start_without_a_cipher(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        SqlCredentialStore(f"sqlite:///{tmp_path / 'x.db'}")
    assert "PDCONNECT_TOKEN_KEYS" in str(caught.value)
    for truthy_but_not_true in (1, "yes", "true"):
        with pytest.raises(ConfigError):
            SqlCredentialStore(f"sqlite:///{tmp_path / 'x.db'}", insecure_plaintext=truthy_but_not_true)  # type: ignore[arg-type]
    plain = SqlCredentialStore(f"sqlite:///{tmp_path / 'x.db'}", insecure_plaintext=True)
    saved = plain.save("o", ACCOUNT, token_set())
    assert plain.get("o", ACCOUNT.account_id) == saved


def test_encrypted_rows_are_refused_by_a_store_without_the_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    SqlCredentialStore(url, cipher=TokenCipher([KEY])).save("o", ACCOUNT, token_set())
    with pytest.raises(TokenDecryptionError):
        SqlCredentialStore(url, insecure_plaintext=True).get("o", ACCOUNT.account_id)
    with pytest.raises(TokenDecryptionError):
        SqlCredentialStore(url, cipher=TokenCipher([TokenCipher.generate_key()])).get("o", ACCOUNT.account_id)


def test_rotate_keys_moves_every_row_to_the_new_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    old_store = SqlCredentialStore(url, cipher=TokenCipher([KEY]))
    saved = [old_store.save(f"o{i}", ACCOUNT, token_set()) for i in range(3)]
    new_key = TokenCipher.generate_key()
    assert SqlCredentialStore(url, cipher=TokenCipher([new_key, KEY])).rotate_keys() == 3
    only_new = SqlCredentialStore(url, cipher=TokenCipher([new_key]))
    assert [only_new.get(f"o{i}", ACCOUNT.account_id) for i in range(3)] == saved


def _every_cell(store: SqlCredentialStore) -> list[str]:
    with store.engine.connect() as conn:
        return [str(cell) for row in conn.execute(sa.select(store.table)) for cell in row]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_no_token_in_clear_in_any_cell(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    for store in make_store(kind, tmp_path, request):
        assert isinstance(store, SqlCredentialStore)
        saved = store.save("o", ACCOUNT, token_set())
        newer = store.replace(saved, token_set(), saved.version)
        assert newer is not None
        for cell in _every_cell(store):
            for secret in (saved.access_token, saved.refresh_token, newer.access_token, newer.refresh_token):
                assert secret is not None
                assert secret not in cell
                assert secret[6:] not in cell  # nor its random part


_visible = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=300)
_scope = st.text(
    alphabet=st.sampled_from([chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"\\']), min_size=1, max_size=40
)
_text = st.text(min_size=1, max_size=255).filter(
    lambda s: s.strip() and not any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 for c in s)
)


@pytest.fixture(params=["sqlite", "postgres"])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[CredentialStore]:
    yield from make_store(request.param, tmp_path, request)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])
@given(
    owner=_text,
    account_id=_text,
    access=_visible,
    refresh=st.none() | _visible,
    expires=st.floats(min_value=0, max_value=1e11),
    scopes=st.frozensets(_scope, max_size=10),
)
def test_stored_values_come_back_exactly_or_are_refused(
    sql_store: SqlCredentialStore,
    owner: str,
    account_id: str,
    access: str,
    refresh: str | None,
    expires: float,
    scopes: frozenset[str],
) -> None:
    store = sql_store
    try:
        saved = store.save(
            owner,
            account(account_id=account_id),
            token_set(access=access, refresh=refresh, expires_at=expires, scopes=scopes),
        )
    except InvalidData:
        return  # e.g. a surrogate
    assert store.get(owner, account_id) == saved
    assert store.delete(owner, account_id)


@given(st.text(max_size=300))
def test_parse_scopes_is_a_frozenset_or_invalid_data(text: str) -> None:
    try:
        scopes = parse_scopes(text)
    except InvalidData:
        return
    assert all(s and " " not in s for s in scopes)


def test_a_stores_repr_hides_the_database_password() -> None:
    store = SqlCredentialStore(
        "postgresql+psycopg://pdc:Mn6Bv2Cx8Lk4Jh@127.0.0.1:1/db", cipher=TokenCipher([KEY]), create_tables=False
    )
    assert "Mn6Bv2Cx8Lk4Jh" not in repr(store) and KEY not in repr(store)
    assert "encrypted=True" in repr(store)
