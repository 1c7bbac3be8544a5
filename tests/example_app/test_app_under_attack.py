"""Acme Monitoring against hostile input: redirects, route parameters, tokens and monitor URLs."""

from __future__ import annotations

import itertools
import re
import threading
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from example_app import db
from example_app.demo import RunningDemo
from pdconnect.flask import alertmanager_token
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.example_app.test_app import owner_id, paste, signed_in, token

_users = itertools.count()

# -- sign-in's ?next= ------------------------------------------------------------------------


def _sign_in_with_next(acme: RunningDemo, query: bytes) -> str:
    client = acme.app.test_client()
    form = {"name": f"next-{next(_users)}", "pdconnect_csrf": token(client)}
    # The raw query string, as a browser or a script could send it (bytes WSGI hands on as latin-1).
    response = client.post("/signin", data=form, environ_overrides={"QUERY_STRING": query.decode("latin-1")})
    assert response.status_code == 302, response.status_code
    return response.headers["Location"]


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "/\\evil.example/",
        "\\\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/ok\r\nSet-Cookie: session=stolen",
        "/ok\nLocation: https://evil.example/",
        "/\tevil",
        "/\x00",
        "/\x7f",
        "/ /evil.example",
        " /evil",
        "evil",
        "/" + "a" * 10_000,
        "/\u2028evil",
        "/\ufeff/evil.example",
    ],
)
def test_sign_in_never_redirects_off_site_or_into_headers(acme: RunningDemo, target: str) -> None:
    assert _sign_in_with_next(acme, b"next=" + quote(target, safe="").encode()) == "/"


@pytest.mark.parametrize(
    "query",
    [b"next=%ED%A0%80", b"next=%FF%FE", b"next=%C0%AF%C0%AFevil.example", b"next=%00", b"next", b"next=&next=//x"],
)
def test_sign_in_with_undecodable_next_goes_to_the_dashboard(acme: RunningDemo, query: bytes) -> None:
    assert _sign_in_with_next(acme, query) == "/"


def test_sign_in_keeps_a_local_next(acme: RunningDemo) -> None:
    assert _sign_in_with_next(acme, b"next=/monitors/new?x=1") == "/monitors/new?x=1"


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    target=st.one_of(st.text(max_size=40), st.text(alphabet="/\\:.@%?#\r\n\t x\x00\x7f", max_size=12).map("/".__add__))
)
def test_sign_in_redirects_only_to_local_paths(acme: RunningDemo, target: str) -> None:
    location = _sign_in_with_next(acme, b"next=" + quote(target, safe="", errors="surrogatepass").encode())
    assert location.startswith("/") and not location.startswith("//")
    assert "\\" not in location and all(0x20 < ord(ch) < 0x7F for ch in location)


@pytest.mark.parametrize("name", ["a\x00b", "\x1b[2J", "line\nbreak", "x" * 81, "   ", "\u0085", "bell\x07"])
def test_sign_in_refuses_names_no_one_has(acme: RunningDemo, name: str) -> None:
    client = acme.app.test_client()
    response = client.post("/signin", data={"name": name, "pdconnect_csrf": token(client)})
    assert response.status_code == 400
    assert "1 to 80 characters" in response.get_data(as_text=True)


# -- the Alertmanager token ------------------------------------------------------------------

FIRING = (Path(__file__).parent.parent / "data" / "alertmanager" / "firing.json").read_bytes()
_TOKEN = re.compile(r"data-alertmanager-token>([^<]+)</code>")


def _rotate(client: FlaskClient) -> str:
    response = client.post("/settings/alertmanager-token", data={"pdconnect_csrf": token(client, "/")})
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    found = _TOKEN.search(response.get_data(as_text=True))
    assert found
    return found.group(1)


def _send(acme: RunningDemo, authorization: str | bytes | None) -> int:
    headers = {} if authorization is None else {"Authorization": authorization}
    environ = {"HTTP_AUTHORIZATION": authorization.decode("latin-1")} if isinstance(authorization, bytes) else {}
    response = acme.app.test_client().post(
        "/pagerduty/alertmanager",
        data=FIRING,
        headers=headers if not environ else {},
        environ_overrides=environ,
    )
    return response.status_code


def _queued(acme: RunningDemo) -> int:
    engine: sa.Engine = acme.app.extensions["acme_engine"]
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM pdconnect_outbox")).scalar_one())


def test_the_token_is_shown_once_and_stored_as_a_hash(acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox) -> None:
    client = signed_in(acme, "alice")
    paste(client, pagerduty_sandbox.service_key(), "On-call")
    assert not _TOKEN.search(client.get("/settings/pagerduty").get_data(as_text=True)), "no token before one is made"
    secret = _rotate(client)
    assert _send(acme, f"Bearer {secret}") == 202
    page = client.get("/settings/pagerduty").get_data(as_text=True)
    assert secret not in page and not _TOKEN.search(page) and "cannot show it again" in page
    engine: sa.Engine = acme.app.extensions["acme_engine"]
    with engine.connect() as conn:
        rows = [tuple(map(str, row)) for row in conn.execute(sa.select(db.alertmanager_tokens)).all()]
    assert len(rows) == 1 and not any(secret in value or secret.split(".")[1] in value for value in rows[0])


def test_rotation_refuses_the_old_token_at_once(acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox) -> None:
    client = signed_in(acme, "alice")
    paste(client, pagerduty_sandbox.service_key(), "On-call")
    old = _rotate(client)
    assert _send(acme, f"Bearer {old}") == 202
    new = _rotate(client)
    assert new != old
    assert _send(acme, f"Bearer {old}") == 401
    assert _send(acme, f"Bearer {new}") == 202


def test_pdconnects_stateless_token_is_not_accepted_from_outside(
    acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox
) -> None:
    client = signed_in(acme, "alice")
    paste(client, pagerduty_sandbox.service_key(), "On-call")
    _rotate(client)
    with acme.app.test_request_context():
        signed = alertmanager_token(owner_id(acme, "alice"))
    assert _send(acme, f"Bearer {signed}") == 401
    assert _queued(acme) == 0


def test_rotation_needs_the_form_token(acme: RunningDemo) -> None:
    client = signed_in(acme, "alice")
    assert client.post("/settings/alertmanager-token").status_code == 400
    assert client.post("/settings/alertmanager-token", data={"pdconnect_csrf": "forged"}).status_code == 400
    signed_out = acme.app.test_client()
    assert (
        signed_out.post("/settings/alertmanager-token", data={"pdconnect_csrf": token(signed_out)}).status_code == 302
    )


def test_a_token_names_its_owner_and_nobody_else(acme: RunningDemo, pagerduty_sandbox: PagerDutySandbox) -> None:
    alice = signed_in(acme, "alice")
    paste(alice, pagerduty_sandbox.service_key(), "Alice's")
    alices = _rotate(alice)
    bob = signed_in(acme, "bob")
    bobs = _rotate(bob)
    alice_id, bob_id = owner_id(acme, "alice"), owner_id(acme, "bob")
    # Bob's secret with Alice's id, and the other way round: neither is a token.
    assert _send(acme, f"Bearer {alice_id}.{bobs.split('.')[1]}") == 401
    assert _send(acme, f"Bearer {bob_id}.{alices.split('.')[1]}") == 401
    assert _send(acme, f"Bearer {bobs}") == 202  # Bob has no service: accepted, nothing queued
    assert _queued(acme) == 0


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic YWxpY2U6cGFzc3dvcmQ=",
        "Bearer 1",
        "Bearer 1.",
        "Bearer .abc",
        "Bearer 1." + "A" * 43,
        "Bearer 99999999999999999999999999999." + "A" * 43,
        "Bearer -1." + "A" * 43,
        "Bearer 1." + "A" * 10_000,
        "Bearer 1.\x00" + "A" * 42,
        "Bearer ١." + "A" * 43,
        b"Bearer 1.\xff\xfe" + b"A" * 41,
        b"Bearer \xed\xa0\x80",
        "Bearer 1." + "A" * 43 + " extra",
        "bearer\t1." + "A" * 43,
    ],
)
def test_hostile_authorization_headers_are_401(acme: RunningDemo, authorization: str | bytes | None) -> None:
    signed_in(acme, "alice")
    assert _send(acme, authorization) == 401
    assert _queued(acme) == 0


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.text(max_size=80), owner=st.sampled_from(["1", "2", "0", "01", "1" * 25]))
def test_any_guessed_token_is_refused(acme: RunningDemo, header: str, owner: str) -> None:
    for authorization in (header, f"Bearer {header}", f"Bearer {owner}.{header}"):
        encodable = authorization.encode("latin-1", "replace")
        assert _send(acme, encodable) == 401


def test_rotations_at_once_leave_exactly_one_token(acme: RunningDemo) -> None:
    """Two tabs rotating at the same moment: both answer, and only the last stored token works."""
    clients = [signed_in(acme, "alice") for _ in range(6)]
    forms = [{"pdconnect_csrf": token(client, "/")} for client in clients]
    start = threading.Barrier(len(clients))
    statuses: list[int] = []
    tokens: list[str] = []

    def rotate(client: FlaskClient, form: dict[str, str]) -> None:
        start.wait()
        response = client.post("/settings/alertmanager-token", data=form)
        statuses.append(response.status_code)
        found = _TOKEN.search(response.get_data(as_text=True))
        if found:
            tokens.append(found.group(1))

    threads = [threading.Thread(target=rotate, args=pair) for pair in zip(clients, forms, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * len(clients) and len(set(tokens)) == len(clients)
    assert sum(_send(acme, f"Bearer {t}") == 202 for t in tokens) == 1


# -- every route, with hostile parameters ----------------------------------------------------

_PARAMETER = re.compile(r"<(?:[^:<>]+:)?[^<>]+>")
_HOSTILE_SEGMENTS = [
    "99999999999999999999",
    "9223372036854775808",
    "9223372036854775807",
    "0",
    "-1",
    "1.5",
    "1e3",
    "abc",
    "%00",
    "%ED%A0%80",
    "%FF%FE",
    "%C0%AF",
    "\u0661",
    "%20",
    "1%0A",
    "..%2F..",
    "x" * 2000,
]


def _routes(acme: RunningDemo) -> list[tuple[str, str]]:
    return sorted(
        (rule.rule, method)
        for rule in acme.app.url_map.iter_rules()
        for method in sorted((rule.methods or set()) & {"GET", "POST"})
        if rule.endpoint != "static"
    )


def _hit(client: FlaskClient, csrf: str, method: str, rule: str, segment: str, query: bytes) -> int:
    path = _PARAMETER.sub(lambda _: segment, rule).encode("utf-8", "surrogatepass")
    environ = {"PATH_INFO": path.decode("latin-1"), "QUERY_STRING": query.decode("latin-1")}
    if method == "GET":
        return client.get("/", environ_overrides=environ).status_code
    form = {"pdconnect_csrf": csrf, "name": "x\x00y", "mode": "fail", "targets": segment, "integration_key": segment}
    return client.post("/", data=form, environ_overrides=environ).status_code


@pytest.mark.parametrize("segment", _HOSTILE_SEGMENTS)
def test_no_route_answers_a_hostile_parameter_with_a_server_error(acme: RunningDemo, segment: str) -> None:
    client = signed_in(acme, f"routes-{next(_users)}")
    csrf = token(client, "/")
    for rule, method in _routes(acme):
        if "<" in rule:
            status = _hit(client, csrf, method, rule, segment, b"next=%FF&x=%ED%A0%80&\xff=\xfe")
            assert status < 500, (method, rule, segment, status)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(
    segment=st.one_of(
        st.integers(min_value=-(2**70), max_value=2**70).map(str),
        st.text(min_size=1, max_size=20).map(lambda t: quote(t, safe="", errors="surrogatepass")),
        st.sampled_from(_HOSTILE_SEGMENTS),
    ),
    query=st.binary(max_size=30),
)
def test_every_route_survives_any_parameter_and_query(acme: RunningDemo, segment: str, query: bytes) -> None:
    client = signed_in(acme, f"routes-{next(_users)}")
    csrf = token(client, "/")
    for rule, method in _routes(acme):
        status = _hit(client, csrf, method, rule, segment, query)
        assert status < 500, (method, rule, segment, query, status)


# -- pdconnect's error pages, in Acme's layout -----------------------------------------------


@pytest.mark.parametrize(
    "path", ["/pagerduty/callback?state=forged", "/pagerduty/callback?state=%00&config=x", "/pagerduty/callback"]
)
def test_a_failed_handshake_is_a_page_of_acme(acme: RunningDemo, path: str) -> None:
    client = signed_in(acme, "alice")
    first = client.get(path)
    # pdconnect answers a failed callback with a 303 to a clean URL (no state or keys in the
    # address bar or history), where the page is shown.
    assert first.status_code == 303 and first.headers["Location"] == "/pagerduty/problem"
    response = client.get(first.headers["Location"])
    page = response.get_data(as_text=True)
    assert 400 <= response.status_code < 500, response.status_code
    assert 'class="brand"' in page and "data-pdconnect-error" in page, "Acme's header, Acme's page"
    assert "Back to your PagerDuty settings" in page and 'href="/settings/pagerduty"' in page


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/signout", 405), ("GET", "/monitors/1/simulate", 405), ("POST", "/monitors/1/simulate", 400)],
)
def test_wrong_methods_and_bad_requests_are_acme_pages(acme: RunningDemo, method: str, path: str, status: int) -> None:
    client = signed_in(acme, "alice")
    response = client.open(path, method=method, data={"pdconnect_csrf": token(client, "/"), "mode": "sideways"})
    assert response.status_code == status
    assert 'class="brand"' in response.get_data(as_text=True)
