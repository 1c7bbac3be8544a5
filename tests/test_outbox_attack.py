"""The outbox and worker under an outside attacker's findings (issue 9): races forced by hand,
rows this pdconnect cannot read, secrets in errors, values the database cannot store."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from pdconnect import AlertEvent, Sender, integration_from_key
from pdconnect.cli import main
from pdconnect.errors import ConfigError, EventValidationError
from pdconnect.outbox import DEAD, DELIVERED, PENDING, REQUEUED, Outbox, _check_outcome, outcome_for
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.storage import StoredIntegration
from pdconnect.worker import MAX_LIMITER_WAIT, KeyRateLimiter, Worker, _recordable
from tests.conftest import POSTGRES_URL, SERVICE_KEY, unique_table


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A database URL and a table prefix no other test uses."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'outbox.db'}", "pdconnect_outbox"
    else:
        request.getfixturevalue("postgres_engine")
        prefix = unique_table("pdc_attack")
        yield POSTGRES_URL, prefix
        with Outbox(POSTGRES_URL, table_prefix=prefix) as made:
            made.drop_tables()


@pytest.fixture
def outbox(backend: tuple[str, str]) -> Iterator[Outbox]:
    url, prefix = backend
    with Outbox(url, table_prefix=prefix) as made:
        yield made


def stored(owner_id: str, integration_id: str) -> StoredIntegration:
    """An integration as a store hands it out, with its id."""
    made = integration_from_key(SERVICE_KEY, owner_id=owner_id)
    fields = {f.name: getattr(made, f.name) for f in dataclasses.fields(made)}
    return StoredIntegration(**fields, id=integration_id)


def trigger(key: str = "inc", summary: str = "down") -> AlertEvent:
    return AlertEvent.trigger(summary, source="h", severity="critical", dedup_key=key)


def kill(outbox: Outbox, worker: str = "w") -> list[int]:
    """Claim what is due and dead-letter it; returns the ids."""
    claimed = outbox.claim(worker, 50, lease=60)
    outbox.record([outcome_for(e, DEAD, status=400, error="refused") for e in claimed])
    return [e.id for e in claimed]


def unfinished_actions(outbox: Outbox) -> list[str]:
    table = outbox.events
    with outbox.engine.connect() as conn:
        query = sa.select(table.c.action).where(table.c.state.in_((PENDING, "leased"))).order_by(table.c.id)
        return list(conn.execute(query).scalars())


# -- finding 1: two requeues at once ----------------------------------------------------------


@pytest.mark.parametrize(
    ("second", "superseded"),
    [(None, True), (None, False), ("trigger", False)],
    ids=["all-and-all-superseded-too", "all-and-all", "all-and-the-trigger"],
)
def test_two_requeues_at_once_requeue_each_dead_event_once(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch, second: str | None, superseded: bool
) -> None:
    """Both operators read the dead rows before either writes (forced by a barrier): each dead
    event is queued again once, and never a trigger after its resolve.

    With ``superseded=True`` nothing else stands between the read and the copy, so the
    interleaving that copied every row twice is forced every time."""
    outbox.enqueue_many([(SERVICE_KEY, trigger()), (SERVICE_KEY, AlertEvent.resolve("inc"))])
    (trigger_id,) = kill(outbox)
    (resolve_id,) = kill(outbox)
    both_read = threading.Barrier(2, timeout=30)
    original = Outbox._each_chunk

    def read_then_wait(self: Outbox, *args: Any, **kwargs: Any) -> list[Any]:
        rows = original(self, *args, **kwargs)
        both_read.wait()
        return rows

    monkeypatch.setattr(Outbox, "_each_chunk", read_then_wait)
    counts: dict[str, int] = {}
    errors: list[BaseException] = []

    def run(name: str, ids: list[int] | None) -> None:
        try:
            counts[name] = outbox.requeue(ids, superseded=superseded)
        except BaseException as exc:  # reported below, with the thread's name
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=("a", None)),
        threading.Thread(target=run, args=("b", None if second is None else [trigger_id])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    queued = unfinished_actions(outbox)
    requeued = [i for i, state in outbox.states([trigger_id, resolve_id]).items() if state == REQUEUED]
    assert sum(counts.values()) == len(queued) == len(requeued), f"each dead event is requeued once, not {counts}"
    # Whichever took the rows first: both queued again in order, or (the trigger alone taken
    # first) the trigger, with the resolve left dead as superseded. Never a trigger after it.
    assert queued == (["trigger", "resolve"] if second is None else queued)
    assert queued in (["trigger", "resolve"], ["trigger"])


def test_a_superseded_event_found_after_taking_the_rows_stays_dead(outbox: Outbox) -> None:
    """The superseded check runs on what is committed once the rows are taken: the resolve is
    left dead, as it was, when the trigger was requeued after it."""
    outbox.enqueue_many([(SERVICE_KEY, trigger()), (SERVICE_KEY, AlertEvent.resolve("inc"))])
    (trigger_id,) = kill(outbox)
    (resolve_id,) = kill(outbox)
    assert outbox.requeue([trigger_id]) == 1
    before = {d.id: d for d in outbox.dead()}
    assert outbox.requeue() == 0
    after = {d.id: d for d in outbox.dead()}
    assert after[resolve_id] == before[resolve_id], "left exactly as it was"
    assert unfinished_actions(outbox) == ["trigger"]


# -- finding 2: one head per group on PostgreSQL ------------------------------------------------


def test_an_event_committed_late_waits_behind_the_head_of_its_group(postgres_engine: sa.Engine) -> None:
    """Request 1 gets the lower id but commits after request 2's event was claimed: it must
    wait for that head to finish, not become a second head (nor be made one by the repair)."""
    with Outbox(postgres_engine, table_prefix=unique_table("pdc_heads")) as outbox:
        try:
            with outbox.engine.connect() as slow:
                transaction = slow.begin()
                early = outbox.enqueue(SERVICE_KEY, trigger(), connection=slow)
                late = outbox.enqueue(SERVICE_KEY, AlertEvent.resolve("inc"))
                (head,) = outbox.claim("w1", 10, lease=60)
                assert head.id == late.id > early.id
                transaction.commit()
            assert outbox.claim("w2", 10, lease=60) == [], "a second event of the group in flight"
            assert outbox.repair_heads() == 0
            assert outbox.claim("w2", 10, lease=60) == []
            outbox.record([outcome_for(head, DELIVERED, status=202)])
            assert [e.id for e in outbox.claim("w2", 10, lease=60)] == [early.id], "its turn comes"
        finally:
            outbox.drop_tables()


# -- finding 3: the caller's connection hides the parameters too -------------------------------


def test_an_insert_failing_on_the_callers_connection_shows_no_key(backend: tuple[str, str]) -> None:
    url, prefix = backend
    vendor = sa.create_engine(url)  # the vendor's own engine: parameters not hidden
    try:
        outbox = Outbox(vendor, table_prefix=prefix)
        with vendor.begin() as conn:
            if vendor.dialect.name == "sqlite":
                conn.execute(
                    sa.text(
                        f"CREATE TRIGGER refuse_{prefix} BEFORE INSERT ON {prefix} BEGIN SELECT RAISE(ABORT, 'no'); END"
                    )
                )
        with vendor.connect() as conn, conn.begin():
            if vendor.dialect.name != "sqlite":
                with pytest.raises(sa.exc.DBAPIError):
                    conn.execute(sa.text("SELECT 1/0"))  # the vendor's own statement fails; caught
            with pytest.raises(sa.exc.DBAPIError) as caught:
                outbox.enqueue(SERVICE_KEY, trigger(), connection=conn)
        shown = [str(caught.value), repr(caught.value), str(caught.value.__cause__), str(caught.value.orig)]
        assert not any(SERVICE_KEY in text for text in shown), shown
        assert not any(SERVICE_KEY[-20:] in text for text in shown)
    finally:
        vendor.dispose()


# -- finding 6: a row this pdconnect cannot read ----------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("kind", "future", "unreadable row: kind 'future'"),
        ("kind", "", "unreadable row: kind ''"),
        ("api", "v9", "unreadable row: api 'v9'"),
    ],
)
def test_an_unreadable_row_is_dead_lettered_and_the_rest_delivered(
    outbox: Outbox, column: str, value: str, reason: str
) -> None:
    poison, healthy = outbox.enqueue_many([(SERVICE_KEY, trigger("a")), (SERVICE_KEY, trigger("b"))])
    with outbox.engine.begin() as conn:
        conn.execute(sa.update(outbox.events).where(outbox.events.c.id == poison.id).values({column: value}))
    claimed = outbox.claim("w", 10, lease=60)
    assert [e.id for e in claimed] == [healthy.id]
    assert outbox.states([poison.id]) == {poison.id: DEAD}
    (dead,) = outbox.dead()
    assert dead.reason == reason
    assert outbox.record([outcome_for(claimed[0], DELIVERED, status=202)]) == 1


# -- finding 9: values PostgreSQL cannot store --------------------------------------------------


@pytest.mark.parametrize(
    ("owner_id", "integration_id"),
    [("a\x00b", "i1"), ("x" * 256, "i1"), ("o", "i\x00"), ("o", "i" * 65)],
    ids=["nul-owner", "long-owner", "nul-integration", "long-integration"],
)
def test_an_owner_or_integration_id_the_column_cannot_hold_is_refused(
    outbox: Outbox, owner_id: str, integration_id: str
) -> None:
    target = stored(owner_id, integration_id)
    with pytest.raises(ConfigError):
        outbox.enqueue(target, trigger())
    assert outbox.stats().depth == 0


def test_the_longest_owner_id_is_stored(outbox: Outbox) -> None:
    target = stored("é" * 255, "i" * 64)
    outbox.enqueue(target, trigger())
    (claimed,) = outbox.claim("w", 1, lease=60)
    assert claimed.owner_id == "é" * 255


@pytest.mark.parametrize("dedup_key", ["a\x00b", "\x00"])
def test_a_dedup_key_with_nul_is_refused_on_every_backend(outbox: Outbox, dedup_key: str) -> None:
    with pytest.raises(EventValidationError):
        outbox.enqueue(SERVICE_KEY, trigger(dedup_key))
    with pytest.raises(EventValidationError):
        outbox.enqueue(SERVICE_KEY, AlertEvent.resolve(dedup_key))
    assert outbox.stats().depth == 0


@settings(max_examples=50, deadline=None)
@given(owner=st.text(max_size=300))
def test_any_owner_id_is_stored_or_refused_cleanly(tmp_path_factory: pytest.TempPathFactory, owner: str) -> None:
    with Outbox(f"sqlite:///{tmp_path_factory.mktemp('own') / 'o.db'}") as outbox:
        try:
            target = integration_from_key(SERVICE_KEY, owner_id=owner)
        except (ConfigError, ValueError):
            return
        try:
            outbox.enqueue(target, trigger())
        except ConfigError:
            assert len(owner) > 255 or "\x00" in owner or any("\ud800" <= c <= "\udfff" for c in owner)
            return
        assert len(owner) <= 255 and "\x00" not in owner


# -- finding 5: a tiny rate limit ---------------------------------------------------------------


@pytest.mark.parametrize("per_minute", [1e-12, 5e-324, 1e-6, 0.001])
def test_the_limiters_wait_is_capped(per_minute: float) -> None:
    limiter = KeyRateLimiter(per_minute, burst=1, clock=lambda: 100.0)
    assert limiter.take("k") == 0.0
    wait = limiter.take("k")
    assert 0 < wait <= MAX_LIMITER_WAIT


@settings(max_examples=200)
@given(
    value=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**20), 10**20)),
    pause=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
)
def test_any_outcome_time_is_made_storable(value: float | None, pause: float | None) -> None:
    outcome = outcome_for(_claimed_stub(), PENDING, next_attempt_at=value, pause_key_until=pause)
    _check_outcome(_recordable(outcome, 300.0))


def _claimed_stub() -> Any:
    from pdconnect.outbox import OutboxEvent
    from pdconnect.sender import EventKind, EventsApi, PreparedEvent

    prepared = PreparedEvent(
        kind=EventKind.ALERT,
        api=EventsApi.V2,
        url="https://events.pagerduty.com/v2/enqueue",
        body=b"{}",
        routing_key=SERVICE_KEY,
        action="trigger",
        dedup_key="k",
    )
    return OutboxEvent(
        id=1,
        prepared=prepared,
        lease_token="t",
        lease_until=0.0,
        attempts=0,
        created_at=0.0,
        owner_id=None,
        integration_id=None,
    )


def test_a_tiny_rate_limit_records_the_batch_and_keeps_the_rest(
    backend: tuple[str, str], pagerduty_sandbox: PagerDutySandbox
) -> None:
    url, prefix = backend
    with Outbox(url, table_prefix=prefix, sender=Sender(events_base_url=pagerduty_sandbox.url)) as outbox:
        key = pagerduty_sandbox.service_key()
        entries = outbox.enqueue_many([(key, trigger(f"k{i}")) for i in range(12)])
        worker = Worker(outbox, rate_limit_per_key=1e-12, concurrency=12)
        assert worker.run_once() == 12
        states = outbox.states([e.id for e in entries])
        assert sorted(states.values()).count(DELIVERED) == 10, "the burst went out and was recorded"
        assert sorted(states.values()).count(PENDING) == 2, "the rest wait, storable"


@pytest.mark.parametrize("value", ["1e-12", "0.001", "0", "-1", "nan", "5e-324"])
def test_the_rate_limit_option_has_a_minimum(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    Outbox(url).close()
    assert main(["worker", "--database", url, "--rate-limit", value, "--until-empty", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--rate-limit" in err and "Traceback" not in err


# -- finding 11: a table that is not an outbox -------------------------------------------------


def _not_an_outbox(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE pdconnect_integrations (id INTEGER PRIMARY KEY, name TEXT)"))
    engine.dispose()
    return url


@pytest.mark.parametrize("command", [["worker", "--until-empty", "--quiet"], ["outbox", "status"]])
def test_commands_refuse_a_table_that_is_not_an_outbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    url = _not_an_outbox(tmp_path)
    args = [*command, "--database", url, "--table-prefix", "pdconnect_integrations"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "not a pdconnect outbox" in err, err


def test_a_worker_stops_on_a_schema_error_instead_of_retrying(tmp_path: Path) -> None:
    url = _not_an_outbox(tmp_path)
    with Outbox(url, table_prefix="pdconnect_integrations", create_tables=False) as outbox:
        worker = Worker(outbox, rate_limit_per_key=None, database_retry_max=0.01)
        failures: list[BaseException] = []

        def run() -> None:
            try:
                worker.run(until_empty=True)
            except BaseException as exc:  # what the loop raised, checked below
                failures.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(timeout=60)  # a guard against a hang, not a timing check
        if thread.is_alive():
            worker.stop()
            thread.join()
        assert failures and isinstance(failures[0], sa.exc.OperationalError), "it retried instead"
        assert worker.counters.database_errors == 0


# -- finding 10: the Alertmanager bridge's token -------------------------------------------------


@pytest.mark.parametrize(
    "token",
    [
        "a",
        " ",
        "short-token-15c",
        "tok\udcffen-long-enough-123456",
        "token with spaces inside",
        "tab\tseparated-token-123",
        "x" * 4097,
        "ünïcödé-token-long-enough",
    ],
    ids=["one-char", "blank", "fifteen", "not-utf8", "spaces", "tab", "too-long", "non-ascii"],
)
def test_the_bridge_refuses_an_unusable_token_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], token: str
) -> None:
    monkeypatch.setenv("PDCONNECT_ROUTING_KEYS", SERVICE_KEY)
    monkeypatch.setenv("PDCONNECT_ALERTMANAGER_TOKEN", token)
    assert main(["alertmanager", "--database", f"sqlite:///{tmp_path / 'o.db'}", "--listen", "127.0.0.1:0"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "PDCONNECT_ALERTMANAGER_TOKEN must be" in err
    assert len(token) < 8 or token not in err


@settings(max_examples=200)
@given(token=st.text(max_size=40))
def test_a_token_the_bridge_takes_can_be_sent_and_compared(token: str) -> None:
    from pdconnect.alertmanager_cli import _usable_token

    if _usable_token(token):
        token.encode("ascii")
        assert len(token) >= 16 and token == token.strip() and " " not in token


# -- finding 7: passwords in URLs -----------------------------------------------------------------


SECRET = "S3cretPW"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://app@127.0.0.1:1/db?password={SECRET}",
        f"postgresql+psycopg://app:{SECRET}@127.0.0.1:1/db",
        f"postgresql+psycopg://app@127.0.0.1:1/db?sslpassword={SECRET}&application_name=x",
        f"postgresql+psycopg://app@127.0.0.1:1/db?PASSWORD={SECRET}",
        f"sqlite:///q.db?key={SECRET}",
        f"sqlite:///q.db?password={SECRET}&password={SECRET}",
    ],
)
def test_a_database_url_is_shown_without_its_password(url: str) -> None:
    from pdconnect.database import shown_url

    assert SECRET not in shown_url(url)
    assert "127.0.0.1" in shown_url(url) or "q.db" in shown_url(url)


def test_the_outbox_repr_hides_a_password_in_the_query() -> None:
    url = f"postgresql+psycopg://app@127.0.0.1:1/db?password={SECRET}"
    with Outbox(url, create_tables=False) as outbox:  # never connects
        assert SECRET not in repr(outbox)
        assert "127.0.0.1:1/db" in repr(outbox)


@pytest.mark.parametrize(
    "base",
    [
        f"https://relay:{SECRET}@127.0.0.1:9",
        f"https://{SECRET}:{SECRET}@127.0.0.1:9",
        f"https://relay:{SECRET}@127.0.0.1:9/path",
        f"https://:{SECRET}@127.0.0.1:9",
    ],
)
def test_the_sender_repr_hides_credentials_in_its_base_url(base: str) -> None:
    sender = Sender(events_base_url=base)
    try:
        assert f":{SECRET}@" not in repr(sender) and f"={SECRET}" not in repr(sender)
        assert "127.0.0.1:9" in repr(sender)
    finally:
        sender.close()


@settings(max_examples=200)
@given(password=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=6, max_size=20))
def test_a_masked_url_never_shows_the_password(password: str) -> None:
    from urllib.parse import quote

    from pdconnect.urls import masked_url

    quoted = quote(password, safe="")
    for url in (f"https://u:{quoted}@h.example/p", f"https://h.example/p?password={quoted}"):
        shown = masked_url(url)
        assert quoted not in shown or quoted in "https://u:***@h.example/p?password=***"


# -- finding 8: processes creating the tables at once on PostgreSQL ------------------------------


def _waiting_on_a_lock(admin: sa.Engine, application: str) -> bool:
    with admin.connect() as conn:
        query = sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = :a AND wait_event_type = 'Lock'"
        )
        return bool(conn.execute(query, {"a": application}).scalar_one())


@pytest.mark.parametrize("store", ["outbox", "integrations"])
def test_a_second_process_creating_the_tables_waits_and_finds_them(postgres_engine: sa.Engine, store: str) -> None:
    """Process A is creating the tables (its transaction not yet committed) when B starts: B
    waits for A, then finds the tables instead of failing on "already exists". The
    interleaving is forced: A commits only once PostgreSQL shows B waiting on a lock."""
    from pdconnect.database import DDL_LOCK
    from pdconnect.storage import SqlIntegrationStore

    prefix, application = unique_table("pdc_ddl"), unique_table("pdc_b")

    def make(engine: sa.Engine) -> Any:
        if store == "outbox":
            return Outbox(engine, table_prefix=prefix, create_tables=False)
        return SqlIntegrationStore(engine, table_name=prefix, create_tables=False)

    engine_b = sa.create_engine(POSTGRES_URL, connect_args={"application_name": application})
    a, b = make(postgres_engine), make(engine_b)
    failures: list[BaseException] = []

    def start_b() -> None:
        try:
            b.create_tables()
        except BaseException as exc:  # checked below
            failures.append(exc)

    try:
        with postgres_engine.connect() as conn:
            transaction = conn.begin()
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": DDL_LOCK})
            a.metadata.create_all(conn, checkfirst=True)
            thread = threading.Thread(target=start_b)
            thread.start()
            ready = threading.Event()
            while thread.is_alive() and not _waiting_on_a_lock(postgres_engine, application):
                ready.wait(0.01)  # polling PostgreSQL's view of B, not a timed handover
            transaction.commit()
        thread.join()
        assert not failures, failures
    finally:
        a.metadata.drop_all(postgres_engine, checkfirst=True)
        engine_b.dispose()


# -- finding 4 (part): what is kept of an integration's events ----------------------------------


def test_forget_deletes_every_event_and_the_pause_of_a_key(outbox: Outbox) -> None:
    from tests.conftest import OTHER_SERVICE_KEY

    outbox.enqueue_many([(SERVICE_KEY, trigger("a")), (SERVICE_KEY, trigger("b")), (OTHER_SERVICE_KEY, trigger("a"))])
    first, second, other = outbox.claim("w", 10, lease=60)
    outbox.record(
        [
            outcome_for(first, DEAD, status=400, error="refused"),
            outcome_for(second, PENDING, status=429, next_attempt_at=1e10, pause_key_until=1e10),
            outcome_for(other, DELIVERED, status=202),
        ]
    )
    assert outbox.forget(SERVICE_KEY) == 2
    table = outbox.events
    with outbox.engine.connect() as conn:
        keys = list(conn.execute(sa.select(table.c.routing_key)).scalars())
        paused = list(conn.execute(sa.select(outbox.pauses.c.routing_key)).scalars())
        bodies = b"".join(conn.execute(sa.select(table.c.body)).scalars())
    assert keys == [OTHER_SERVICE_KEY] and paused == [] and SERVICE_KEY.encode() not in bodies


@pytest.mark.parametrize("key", ["", None, 5, b"R0"])
def test_forget_refuses_what_is_not_a_key(outbox: Outbox, key: Any) -> None:
    with pytest.raises(ConfigError):
        outbox.forget(key)


def test_old_dead_events_are_purged_and_recent_ones_kept(outbox: Outbox, tmp_path: Path) -> None:
    outbox.enqueue_many([(SERVICE_KEY, trigger("a")), (SERVICE_KEY, trigger("b"))])
    old, recent = outbox.claim("w", 10, lease=60)
    outbox.record([outcome_for(old, DEAD, status=400, error="refused")], now=1000.0)
    outbox.record([outcome_for(recent, DEAD, status=400, error="refused")], now=5000.0)
    assert outbox.purge_dead(3600, now=5000.0) == 1
    assert [d.id for d in outbox.dead()] == [recent.id]


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e11", "x", ""])
def test_the_purge_command_refuses_bad_ages(tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    Outbox(url).close()
    assert main(["outbox", "purge", "--database", url, "--dead-older-than", value]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_purge_command_deletes_old_dead_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    with Outbox(url) as outbox:
        outbox.enqueue(SERVICE_KEY, trigger())
        kill(outbox)
    assert main(["outbox", "purge", "--database", url, "--dead-older-than", "0"]) == 0
    assert "deleted 1 dead event(s)" in capsys.readouterr().out


def test_forget_for_one_owner_keeps_the_other_owners_events_and_the_pause(outbox: Outbox) -> None:
    mine, theirs = stored("me", "i1"), stored("them", "i2")
    outbox.enqueue_many([(mine, trigger("a")), (theirs, trigger("b"))])
    first, second = outbox.claim("w", 10, lease=60)
    outbox.record([outcome_for(first, PENDING, status=429, next_attempt_at=1e10, pause_key_until=1e10)])
    assert outbox.forget(SERVICE_KEY, owner_id="me") == 1
    assert outbox.states([first.id, second.id]) == {second.id: "leased"}
    assert outbox.stats().paused_keys == 1, "the other owner's events still use the key"
    assert outbox.forget(SERVICE_KEY, owner_id="them") == 1
    assert outbox.stats().paused_keys == 0
