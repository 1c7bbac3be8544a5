"""Two first sign-ins with one new name (a double click) both sign in, as one user.

Sign-in looked the name up, found nobody and inserted: when another sign-in inserted the
same name in between, the UNIQUE name made it a 500. The interleaving is made by hand: the
other sign-in's row is committed on a second connection just before this one's insert.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
import sqlalchemy as sa
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from example_app import db
from example_app.demo import RunningDemo
from tests.example_app.test_app import token
from tests.example_app.test_app_postgres import acme_postgres  # noqa: F401 -- the fixture

_rounds = itertools.count()

NAMES = ["alice", "Zoë", "名前", "a" * 80, "o'brien; drop table acme_users", "  padded  ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "x y"]


@contextmanager
def _insert_first(engine: sa.Engine, name: str) -> Iterator[None]:
    """Until the context ends, commit a user called ``name`` just before the next insert of one."""
    fired: list[bool] = []

    def before(conn: sa.Connection, cursor: object, statement: str, *args: object) -> None:
        if fired or not statement.lstrip().upper().startswith("INSERT INTO") or "acme_users" not in statement:
            return
        fired.append(True)
        with engine.begin() as other:  # another sign-in, on another connection, wins the race
            other.execute(sa.insert(db.users).values(name=name.strip(), created_at=0.0))

    sa.event.listen(engine, "before_cursor_execute", before)
    try:
        yield
    finally:
        sa.event.remove(engine, "before_cursor_execute", before)
    assert fired, "the race was not made"


def _user_ids(engine: sa.Engine, name: str) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(db.users.c.id).where(db.users.c.name == name)).scalars())


@pytest.mark.parametrize("name", NAMES)
def test_a_sign_in_that_loses_the_race_signs_in_as_the_winner(acme: RunningDemo, name: str) -> None:
    engine: sa.Engine = acme.app.extensions["acme_engine"]
    client = acme.app.test_client()
    form = {"name": name, "pdconnect_csrf": token(client)}
    with _insert_first(engine, name):
        response = client.post("/signin", data=form)
    assert response.status_code == 302, response.get_data(as_text=True)[:300]
    [winner] = _user_ids(engine, name.strip())
    with client.session_transaction() as session:
        assert session["user_id"] == winner
    with engine.connect() as conn:
        # Seeding is the winner's job (this test's winner is a bare row): the loser seeded nothing.
        assert db.owner_monitors(conn, str(winner)) == []


def test_racing_sign_ins_over_http_all_sign_in(acme: RunningDemo) -> None:
    """Eight browsers released at once by a barrier, over real sockets: one user, all signed in."""
    engine: sa.Engine = acme.app.extensions["acme_engine"]
    for round_ in range(3):
        name = f"racer-{round_}"
        start = threading.Barrier(8)
        codes: list[int] = []

        def sign_in(name: str = name, start: threading.Barrier = start, codes: list[int] = codes) -> None:
            with requests.Session() as browser:
                found = browser.get(f"{acme.url}/signin", timeout=30).text
                csrf = found.split('name="pdconnect_csrf" value="', 1)[1].split('"', 1)[0]
                start.wait()
                answer = browser.post(
                    f"{acme.url}/signin", data={"name": name, "pdconnect_csrf": csrf}, allow_redirects=False, timeout=30
                )
                codes.append(answer.status_code)

        threads = [threading.Thread(target=sign_in) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert codes == [302] * 8
        [user] = _user_ids(engine, name)
        with engine.connect() as conn:
            assert len(db.owner_monitors(conn, str(user))) == 2, "seeded once"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=70))
def test_losing_the_race_never_fails_a_sign_in(acme: RunningDemo, name: str) -> None:
    name = f"{next(_rounds)}-{name}"[:80]  # digits, then a dash: no two rounds share a name
    engine: sa.Engine = acme.app.extensions["acme_engine"]
    client: FlaskClient = acme.app.test_client()
    form = {"name": name, "pdconnect_csrf": token(client)}
    with _insert_first(engine, name):
        assert client.post("/signin", data=form).status_code == 302
    assert len(_user_ids(engine, name.strip())) == 1


# -- PostgreSQL ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_losing_the_race_on_postgres(acme_postgres: sa.Engine, name: str) -> None:  # noqa: F811
    seeded: list[str] = []

    def seed(conn: sa.Connection, owner: str) -> None:
        seeded.append(owner)

    with _insert_first(acme_postgres, name):
        user = db.user_id_for(acme_postgres, name.strip(), on_create=seed)
    assert _user_ids(acme_postgres, name.strip()) == [user]
    assert seeded == [], "the winner seeds; the loser's insert failed first"
    assert db.user_id_for(acme_postgres, "new " + name.strip()[:70], on_create=seed) != user and len(seeded) == 1
