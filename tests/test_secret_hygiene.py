"""No secret in logs or errors when the database fails (issue 9).

Every store that writes a secret (an integration key, a webhook secret, a routing key, a
handshake's nonce, a customer's OAuth access and refresh tokens) is made to fail mid-write, on SQLite (its table dropped) and on
PostgreSQL (a constraint refusing every row, whose ``DETAIL:`` line quotes the row). All log
records at DEBUG, SQLAlchemy's own statement log included, and ``str()``/``repr()``/the
traceback of the raised error and its whole cause chain must not contain the secret.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pdconnect import AlertEvent, SqlIntegrationStore, SqlNonceStore, integration_from_key
from pdconnect.database import DatabaseURLError, create_engine, engine_for, parse_url, shown_url
from pdconnect.oauth import AccountIdentity, SqlCredentialStore, TokenCipher, TokenSet
from pdconnect.outbox import Outbox, outcome_for
from pdconnect.webhooks import SqlWebhookSecretStore
from tests.conftest import unique_table

KEY = "e93facc04764012d7bfb002500d5d1a6"
WEBHOOK_SECRET = "whsec-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
NONCE = "nonce-4b1d0c0ffee0ddba11fa11ab1e5eed5"
PASSWORD = "Pw-d0nt-sh0w-me-8c1e"
ACCESS_TOKEN = "pdus+_0XsHmA9v1Yk4QbWc7Rn2Jt"
REFRESH_TOKEN = "pdus+_1ZpLq8Uf3Ge6Td0Sa5Vx9Mh"
ROTATED_REFRESH_TOKEN = "pdus+_1Rr2Oo4Tt6Aa8Tt0Ee2Dd4Qw"
TOKEN_KEY = TokenCipher.generate_key()
ACCOUNT = AccountIdentity(
    subdomain="acme",
    account_id="PACC001",
    user_id="PUSR001",
    delegation_id="PDEL001",
    region="us",
    rest_base_url="https://api.pagerduty.com",
    events_base_url="https://events.pagerduty.com",
)


@dataclass(frozen=True)
class Case:
    """A store, the table a failure is injected into, and a write that carries ``secret``."""

    name: str
    secret: str
    make: Callable[[sa.Engine, str], Any]
    tables: Callable[[Any], list[str]]
    write: Callable[[Any], object]


def _event() -> AlertEvent:
    return AlertEvent(action="trigger", summary="disk full", source="db-1", severity="error")


def _paused(outbox: Outbox) -> object:
    (claimed,) = outbox.claim("w1", 1, lease=30)
    return outbox.record([outcome_for(claimed, "pending", next_attempt_at=0.0, pause_key_until=9e9)])


CASES = [
    Case(
        "pasted key",
        KEY,
        lambda engine, t: SqlIntegrationStore(engine, table_name=t),
        lambda store: [store.table.name],
        lambda store: store.save(integration_from_key(KEY, owner_id="org-1")),
    ),
    Case(
        "webhook secret",
        WEBHOOK_SECRET,
        lambda engine, t: SqlWebhookSecretStore(engine, table_name=t),
        lambda store: [store.table.name],
        lambda store: store.register("PSUB1", WEBHOOK_SECRET, owner_id="org-1", integration_id="i1"),
    ),
    Case(
        "handshake nonce",
        NONCE,
        lambda engine, t: SqlNonceStore(engine, table_name=t),
        lambda store: [store.table.name],
        lambda store: store.consume(NONCE, expires_at=9e9),
    ),
    Case(
        "outbox enqueue",
        KEY,
        lambda engine, t: Outbox(engine, table_prefix=t),
        lambda outbox: [outbox.events.name],
        lambda outbox: outbox.enqueue(KEY, _event()),
    ),
    Case(
        "outbox pause after a 429",
        KEY,
        lambda engine, t: _seeded(Outbox(engine, table_prefix=t)),
        lambda outbox: [outbox.pauses.name],
        _paused,
    ),
]


def _tokens(access: str = ACCESS_TOKEN, refresh: str = REFRESH_TOKEN) -> TokenSet:
    return TokenSet(
        access_token=access, refresh_token=refresh, expires_at=9e9, scopes=frozenset({"write"}), id_token=None
    )


def _credentials(engine: sa.Engine | str, table: str, *, encrypted: bool) -> SqlCredentialStore:
    if encrypted:
        return SqlCredentialStore(engine, cipher=TokenCipher([TOKEN_KEY]), table_name=table)
    return SqlCredentialStore(engine, insecure_plaintext=True, table_name=table)


def _connected(store: SqlCredentialStore) -> SqlCredentialStore:
    store.save("org-1", ACCOUNT, _tokens())
    return store


def _refreshed_under_the_lock(store: SqlCredentialStore) -> object:
    """What a refresh does: the rotated tokens stored while the row is held."""
    with store.locked("org-1", ACCOUNT.account_id) as held:
        return held.replace(_tokens(refresh=ROTATED_REFRESH_TOKEN))


def _compare_and_swap(store: SqlCredentialStore) -> object:
    # The credential as read before the table broke: the write itself must fail, not the read.
    return store.replace(_SEEN[store.table.name], _tokens(refresh=ROTATED_REFRESH_TOKEN), 1)


_SEEN: dict[str, Any] = {}


def _seen(store: SqlCredentialStore) -> SqlCredentialStore:
    _SEEN[store.table.name] = _connected(store).get("org-1", ACCOUNT.account_id)
    return store


for _encrypted in (True, False):
    _how = "encrypted" if _encrypted else "in plaintext"
    CASES += [
        Case(
            f"oauth access token, {_how}",
            ACCESS_TOKEN,
            lambda engine, t, e=_encrypted: _credentials(engine, t, encrypted=e),
            lambda store: [store.table.name],
            lambda store: store.save("org-1", ACCOUNT, _tokens()),
        ),
        Case(
            f"oauth refresh token, {_how}",
            REFRESH_TOKEN,
            lambda engine, t, e=_encrypted: _credentials(engine, t, encrypted=e),
            lambda store: [store.table.name],
            lambda store: store.save("org-1", ACCOUNT, _tokens()),
        ),
        Case(
            f"oauth reconnect, {_how}",
            REFRESH_TOKEN,
            lambda engine, t, e=_encrypted: _connected(_credentials(engine, t, encrypted=e)),
            lambda store: [store.table.name],
            lambda store: store.save("org-1", ACCOUNT, _tokens()),
        ),
        Case(
            f"oauth rotated refresh token under the lock, {_how}",
            ROTATED_REFRESH_TOKEN,
            lambda engine, t, e=_encrypted: _connected(_credentials(engine, t, encrypted=e)),
            lambda store: [store.table.name],
            _refreshed_under_the_lock,
        ),
        Case(
            f"oauth rotated refresh token by compare-and-swap, {_how}",
            ROTATED_REFRESH_TOKEN,
            lambda engine, t, e=_encrypted: _seen(_credentials(engine, t, encrypted=e)),
            lambda store: [store.table.name],
            _compare_and_swap,
        ),
        Case(
            f"oauth needs re-authorisation, its reason naming the token, {_how}",
            REFRESH_TOKEN,
            lambda engine, t, e=_encrypted: _connected(_credentials(engine, t, encrypted=e)),
            lambda store: [store.table.name],
            lambda store: store.mark_needs_reauthorization(
                "org-1", ACCOUNT.account_id, f"PagerDuty refused {REFRESH_TOKEN} (invalid_grant)"
            ),
        ),
    ]


def _seeded(outbox: Outbox) -> Outbox:
    outbox.enqueue(KEY, _event())
    return outbox


def _everything_said(caplog: pytest.LogCaptureFixture, error: BaseException) -> str:
    """All records' messages and tracebacks, and the error's str/repr/traceback down its chain."""
    said = [record.getMessage() for record in caplog.records]
    said += [caplog.text]
    said += traceback.format_exception(error)
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        said += [str(link), repr(link), repr(link.args)]
        link = link.__cause__ or link.__context__
    return "\n".join(said)


def _assert_hidden(secret: str, text: str) -> None:
    assert secret not in text
    assert secret[4:-4] not in text, "not even a middle part of the secret"


@pytest.fixture
def capture_all(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record of every logger at DEBUG, SQLAlchemy's too (it sets its own to WARNING).

    SQLAlchemy then logs each statement and its parameters, as for a vendor who turned on
    SQL logging to debug something.
    """
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    return caplog


def _fail_and_check(case: Case, store: Any, break_table: Callable[[str], None], caplog: pytest.LogCaptureFixture):
    for table in case.tables(store):
        break_table(table)
    with pytest.raises(sa.exc.SQLAlchemyError) as raised:
        case.write(store)
    text = _everything_said(caplog, raised.value)
    assert "sqlalchemy.engine" in {r.name.rsplit(".", 1)[0] for r in caplog.records}, "the statement log was on"
    _assert_hidden(case.secret, text)
    return raised.value


@pytest.mark.parametrize("given_as", ["url", "vendor engine"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_sqlite_failure_hides_the_secret(
    case: Case, given_as: str, tmp_path: Path, capture_all: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'hygiene.db'}"
    # A vendor's own engine, made without hide_parameters: the stores must still hide them.
    engine: Any = url if given_as == "url" else sa.create_engine(url)
    store = case.make(engine, unique_table("pdc_hyg"))

    def drop(table: str) -> None:
        with store.engine.begin() as conn:
            conn.exec_driver_sql(f'DROP TABLE "{table}"')

    capture_all.clear()
    _fail_and_check(case, store, drop, capture_all)


@pytest.mark.parametrize("given_as", ["engine view", "vendor engine"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_postgres_failure_hides_the_secret_even_from_detail(
    case: Case, given_as: str, postgres_engine: sa.Engine, capture_all: pytest.LogCaptureFixture
) -> None:
    vendor = sa.create_engine(postgres_engine.url) if given_as == "vendor engine" else postgres_engine
    prefix = unique_table("pdc_hyg")
    store = case.make(vendor, prefix)
    broken: list[str] = []

    def refuse_every_row(table: str) -> None:
        # A trigger refusing every row, its DETAIL quoting the row, as PostgreSQL's own errors
        # do ("Failing row contains (...)"). Not a constraint: a check violation is an
        # IntegrityError, which some stores take for a concurrent insert and retry.
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                f'CREATE FUNCTION "{table}_refuse"() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN '
                f"RAISE EXCEPTION 'refused by a trigger' USING DETAIL = format('Failing row contains %s', NEW); "
                "END $$"
            )
            conn.exec_driver_sql(
                f'CREATE TRIGGER "{table}_refuse" BEFORE INSERT OR UPDATE ON "{table}" '
                f'FOR EACH ROW EXECUTE FUNCTION "{table}_refuse"()'
            )
        broken.append(table)

    try:
        capture_all.clear()
        error = _fail_and_check(case, store, refuse_every_row, capture_all)
        assert "refused by a trigger" in str(error), "the driver's first line is kept"
        detail = getattr(getattr(error, "orig", None), "diag", None)
        assert detail is not None and detail.message_detail, "the structured detail stays readable in code"
    finally:
        with postgres_engine.begin() as conn:
            for table in store.metadata.sorted_tables if hasattr(store, "metadata") else []:
                conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{table.name}" CASCADE')
            for table in [*broken, *case.tables(store)]:
                conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{table}" CASCADE')
            for table in broken:
                conn.exec_driver_sql(f'DROP FUNCTION IF EXISTS "{table}_refuse"()')
        if vendor is not postgres_engine:
            vendor.dispose()


def test_postgres_unique_violation_detail_is_cut(postgres_engine: sa.Engine, capture_all: pytest.LogCaptureFixture):
    """The commonest DETAIL of all: "Key (natural_key)=(key:<the key>) already exists."""
    table = unique_table("pdc_hyg_unique")
    engine = engine_for(sa.create_engine(postgres_engine.url))
    keys = sa.Table(table, sa.MetaData(), sa.Column("k", sa.Text, primary_key=True))
    keys.create(engine)
    try:
        with engine.begin() as conn:
            conn.execute(sa.insert(keys).values(k=f"key:{KEY}"))
        with pytest.raises(sa.exc.IntegrityError) as raised, engine.begin() as conn:
            conn.execute(sa.insert(keys).values(k=f"key:{KEY}"))
        _assert_hidden(KEY, _everything_said(capture_all, raised.value))
        assert raised.value.orig.diag.message_detail  # type: ignore[union-attr]
    finally:
        with postgres_engine.begin() as conn:
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{table}"')
        engine.dispose()


# -- engines ------------------------------------------------------------------------------------


def test_a_vendor_engine_is_not_changed(tmp_path: Path) -> None:
    vendor = sa.create_engine(f"sqlite:///{tmp_path / 'v.db'}")
    view = engine_for(vendor)
    assert view.hide_parameters and not vendor.hide_parameters
    assert engine_for(view) is view, "a view is not wrapped again"
    assert isinstance(vendor.logger, logging.Logger), "the vendor's engine logs as it did"
    with vendor.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x)")
    with view.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar() == 0, "the view shares the database"
    made = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    assert made.hide_parameters and engine_for(made) is made


def test_an_engine_with_only_hide_parameters_still_gets_the_detail_cut(tmp_path: Path) -> None:
    vendor = sa.create_engine(f"sqlite:///{tmp_path / 'v.db'}", hide_parameters=True)
    assert engine_for(vendor) is not vendor


# -- database URLs with passwords ------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://pdc:{PASSWORD}@127.0.0.1:1/db",  # nothing listens on port 1
        f"postgresql+psycopg://pdc:{PASSWORD}@127.0.0.1:notaport/db",
        f"postgresql+psycopg://pdc:{PASSWORD}@127.0.0.1:99999999/db",
        f"postgresql+nosuchdriver://pdc:{PASSWORD}@127.0.0.1/db",
        f"nosuchdb://pdc:{PASSWORD}@127.0.0.1/db",
        f"://pdc:{PASSWORD}@127.0.0.1/db",
        f"pdc:{PASSWORD}",
        f"postgresql+psycopg://pdc:{PASSWORD}@127.0.0.1:1/db?connect_timeout=notanumber",
    ],
)
def test_a_password_never_shows_in_errors_logs_or_reprs(url: str, capture_all: pytest.LogCaptureFixture) -> None:
    def use() -> None:
        outbox = Outbox(url)  # creates its tables: connects
        _assert_hidden(PASSWORD, repr(outbox))

    with pytest.raises((DatabaseURLError, sa.exc.SQLAlchemyError)) as raised:
        use()
    _assert_hidden(PASSWORD, _everything_said(capture_all, raised.value))
    _assert_hidden(PASSWORD, shown_url(url))


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=st.text(min_size=8, max_size=40), port=st.one_of(st.none(), st.integers(), st.text(max_size=8)))
def test_a_url_is_shown_without_its_password_or_refused_without_quoting_it(password: str, port: object) -> None:
    """Any password, any port text: shown as ``***``, or a refusal that does not quote the URL."""
    url = f"postgresql+psycopg://pdc:{quote(password, safe='')}@127.0.0.1{'' if port is None else f':{port}'}/db"
    try:
        parsed = parse_url(url)
    except DatabaseURLError as exc:
        refused: DatabaseURLError | None = exc
    else:
        refused = None
    if refused is not None:
        assume(password not in "not a database URL (expected e.g. postgresql+psycopg://user@host/db)")
        assert password not in str(refused) and url not in str(refused)
        assert refused.__suppress_context__, "the parser's own message (which may quote the URL) is dropped"
        return
    assert parsed.password == password
    assert password not in shown_url(url).replace("postgresql+psycopg://pdc:***@127.0.0.1", "")


@pytest.mark.parametrize(
    "value", [None, 3, 2.5, float("nan"), b"sqlite://", ["sqlite://"], "", "   ", "\ud800", "sqlite\x00://", ":::"]
)
def test_parse_url_refuses_what_is_not_a_url(value: Any) -> None:
    with pytest.raises(DatabaseURLError, match="not a database URL"):
        parse_url(value)


# -- the error paths that log, end to end ------------------------------------------------------


def test_a_pasted_key_the_database_refuses_is_a_503_and_never_logged(
    tmp_path: Path, capture_all: pytest.LogCaptureFixture
) -> None:
    """Flask logs the failure with its traceback (logger.exception): the key must not be in it."""
    import re

    from flask import Flask, render_template_string, session

    from pdconnect.flask import PagerDutyConnect, current_pagerduty

    app = Flask("hygiene", instance_path=str(tmp_path / "instance"))
    app.config.update(
        SECRET_KEY="flask-hygiene-secret-0123456789",
        PDCONNECT_APP_ID="PHYG001",
        PDCONNECT_STORAGE_URL=f"sqlite:///{tmp_path / 'flask.db'}",
    )
    PagerDutyConnect(app, owner_loader=lambda: session.get("user"))

    @app.route("/login")
    def login() -> str:
        session["user"] = "org-1"
        return render_template_string(
            '<input name="{{ pdconnect_csrf_field() }}" value="{{ pdconnect_csrf_token() }}">'
        )

    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'value="([^"]+)"', page)
    assert token
    with app.app_context():
        store = current_pagerduty().store
        with store.engine.begin() as conn:  # type: ignore[attr-defined]
            conn.exec_driver_sql(f'DROP TABLE "{store.table.name}"')  # type: ignore[attr-defined]
    capture_all.clear()
    response = client.post(
        "/pagerduty/integrations", json={"integration_key": KEY}, headers={"X-PDConnect-CSRF": token.group(1)}
    )
    assert response.status_code == 503
    assert any(r.levelname == "ERROR" and r.exc_info for r in capture_all.records), "the failure was logged"
    _assert_hidden(KEY, capture_all.text + response.get_data(as_text=True))


# -- OAuth tokens at rest ---------------------------------------------------------------------------


def _every_cell(store: SqlCredentialStore) -> list[str]:
    with store.engine.connect() as conn:
        return [str(cell) for row in conn.execute(sa.select(store.table)) for cell in row]


def _the_whole_life_of_a_credential(store: SqlCredentialStore, access: str, refresh: str, rotated: str) -> None:
    """Connect, refresh (both ways), reconnect, mark, rotate the key: every way tokens are written."""
    saved = store.save("org-1", ACCOUNT, _tokens(access, refresh))
    replaced = store.replace(saved, _tokens(access[::-1], rotated), saved.version)
    assert replaced is not None
    with store.locked("org-1", ACCOUNT.account_id) as held:
        held.replace(_tokens(access, refresh))
    store.save("org-1", ACCOUNT, _tokens(access, rotated))
    store.mark_needs_reauthorization("org-1", ACCOUNT.account_id, f"refused {rotated} and {access}")
    store.rotate_keys()


def _assert_sealed(store: SqlCredentialStore, said: str, *secrets: str) -> None:
    cells = _every_cell(store)
    assert any(cell.startswith(("fernet:", "fernet2:")) for cell in cells), "the tokens are stored, encrypted"
    for secret in secrets:
        _assert_hidden(secret, said)
        for cell in cells:
            _assert_hidden(secret, cell)


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_oauth_tokens_are_never_in_clear_in_a_column_or_a_record(
    database: str, tmp_path: Path, capture_all: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    if database == "sqlite":
        engine: Any = f"sqlite:///{tmp_path / 'tokens.db'}"
    else:
        engine = sa.create_engine(request.getfixturevalue("postgres_engine").url)  # a vendor's own engine
    store = _credentials(engine, unique_table("pdc_hyg_tokens"), encrypted=True)
    try:
        capture_all.clear()
        _the_whole_life_of_a_credential(store, ACCESS_TOKEN, REFRESH_TOKEN, ROTATED_REFRESH_TOKEN)
        assert "sqlalchemy.engine" in {r.name.rsplit(".", 1)[0] for r in capture_all.records}
        said = "\n".join([capture_all.text, *(repr(r.args) for r in capture_all.records)])
        _assert_sealed(store, said, ACCESS_TOKEN, ACCESS_TOKEN[::-1], REFRESH_TOKEN, ROTATED_REFRESH_TOKEN)
    finally:
        if database == "postgres":
            store.table.drop(store.engine, checkfirst=True)
            store.engine.dispose()


# PagerDuty's tokens start "pdus+"; "+" is not in a Fernet token's alphabet, so a token found in a
# cell is one stored in clear, never a coincidence of the ciphertext.
_TOKENS = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=8, max_size=400).map(
    lambda rest: "pdus+" + rest
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(access=_TOKENS, refresh=_TOKENS, rotated=_TOKENS)
def test_any_tokens_are_stored_sealed_and_never_logged(
    access: str,
    refresh: str,
    rotated: str,
    tmp_path_factory: pytest.TempPathFactory,
    capture_all: pytest.LogCaptureFixture,
) -> None:
    url = f"sqlite:///{tmp_path_factory.mktemp('tokens') / 'tokens.db'}"
    store = _credentials(url, "pdc_hyg_tokens", encrypted=True)
    capture_all.clear()
    _the_whole_life_of_a_credential(store, access, refresh, rotated)
    said = "\n".join([capture_all.text, *(repr(r.args) for r in capture_all.records)])
    cells = _every_cell(store)
    assert any(cell.startswith(("fernet:", "fernet2:")) for cell in cells)
    for secret in (access, access[::-1], refresh, rotated):
        assert secret not in said
        assert not any(secret in cell for cell in cells), "a token in clear in a column"
    store.engine.dispose()


_NEAR_TOKENS = [
    f"{ACCESS_TOKEN} x",
    f"{ACCESS_TOKEN}\n",
    f"{ACCESS_TOKEN}\r\nX-Injected: 1",
    ACCESS_TOKEN * 400,  # longer than any token PagerDuty issues
    f"{ACCESS_TOKEN}é",
    f"{ACCESS_TOKEN}\x00",
    f"{ACCESS_TOKEN}\ud800",
    "",
]


@pytest.mark.parametrize("field", ["access_token", "refresh_token"])
@pytest.mark.parametrize("value", _NEAR_TOKENS, ids=[repr(v[:40]) for v in _NEAR_TOKENS])
@pytest.mark.parametrize("encrypted", [True, False], ids=["encrypted", "plaintext"])
def test_a_token_the_store_refuses_is_not_quoted_and_not_stored(
    field: str, value: str, encrypted: bool, tmp_path: Path, capture_all: pytest.LogCaptureFixture
) -> None:
    from pdconnect.errors import InvalidData

    store = _credentials(f"sqlite:///{tmp_path / 'refused.db'}", "pdc_hyg_refused", encrypted=encrypted)
    given = {"access": ACCESS_TOKEN, "refresh": REFRESH_TOKEN} | {field.removesuffix("_token"): value}
    capture_all.clear()
    with pytest.raises(InvalidData) as raised:
        store.save("org-1", ACCOUNT, _tokens(**given))
    said = _everything_said(capture_all, raised.value)
    assert field in str(raised.value), "the message names the field"
    for secret in (ACCESS_TOKEN, REFRESH_TOKEN):
        _assert_hidden(secret, said)
    assert store.get("org-1", ACCOUNT.account_id) is None and _every_cell(store) == []
