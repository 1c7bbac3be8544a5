"""The sandbox's pretend sign-in cannot be forged (issue 9).

The cookie ``/login`` sets is the account id signed and timestamped (itsdangerous) with a
key the application draws at start. A bare account id, a tampered or re-signed value, one
signed with another key or salt, or an expired one, reads as signed out: the handshake pages
show the login form and a Connect / install post is a 401.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from werkzeug.test import Client

from pdconnect.sandbox import Sandbox, SandboxSettings
from pdconnect.sandbox.app import LOGIN_COOKIE, LOGIN_MAX_AGE, LOGIN_SALT, SandboxApp

SECRET = b"k" * 32
APP_ID = "PAPP001"
REDIRECT = "http://localhost:5000/install/callback"
CALLBACK = "http://localhost:5000/connect/callback"
CONNECT = {"vendor": "Acme", "callback": CALLBACK}
INSTALL = {"app_id": APP_ID, "redirect_url": REDIRECT, "version": "2"}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    sandbox = Sandbox(SandboxSettings())
    sandbox.register_app(APP_ID, [REDIRECT])
    sandbox.create_account("victim", "Victim Inc")
    yield sandbox
    sandbox.close()


@pytest.fixture
def app(sandbox: Sandbox) -> SandboxApp:
    return SandboxApp(sandbox, login_secret=SECRET)


class _OldSigner(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - LOGIN_MAX_AGE - 60


def _forgeries(app: SandboxApp) -> dict[str, str]:
    good = app.login_cookie("victim")
    payload, _, signature = good.rpartition(".")
    other_account = URLSafeTimedSerializer(b"x" * 32, salt=LOGIN_SALT).dumps("victim")
    return {
        "bare account id": "victim",
        "bare seeded account id": "acme",
        "signed with another key": other_account,
        "signed with another salt": URLSafeTimedSerializer(SECRET, salt="other").dumps("victim"),
        "signed with no salt": URLSafeTimedSerializer(SECRET).dumps("victim"),
        "signature flipped": payload + "." + ("A" if signature[0] != "A" else "B") + signature[1:],
        "signature dropped": payload,
        "signature of another token": URLSafeTimedSerializer(SECRET, salt=LOGIN_SALT).dumps("acme").rpartition(".")[0]
        + "."
        + signature,
        "expired": URLSafeTimedSerializer(SECRET, salt=LOGIN_SALT, signer=_OldSigner).dumps("victim"),
        "not a string": URLSafeTimedSerializer(SECRET, salt=LOGIN_SALT).dumps(["victim"]),
        "empty": "",
        "dots": "...",
        "huge": "v" * 3000,
        "unicode": "vict\u00efm.\u2603.x",
    }


FORGERY_NAMES = [
    "bare account id",
    "bare seeded account id",
    "signed with another key",
    "signed with another salt",
    "signed with no salt",
    "signature flipped",
    "signature dropped",
    "signature of another token",
    "expired",
    "not a string",
    "empty",
    "dots",
    "huge",
    "unicode",
]


def _client(app: SandboxApp, cookie: str | None) -> Client:
    client = Client(app)
    if cookie is not None:
        client.set_cookie(LOGIN_COOKIE, cookie)
    return client


@pytest.mark.parametrize("name", FORGERY_NAMES)
def test_a_forged_cookie_is_signed_out(app: SandboxApp, name: str) -> None:
    client = _client(app, _forgeries(app)[name])
    for path, query in (("/connect", CONNECT), ("/install/integration", INSTALL)):
        page = client.get(path, query_string=query)
        assert page.status_code == 200
        text = page.get_data(as_text=True)
        assert "Logged in to" not in text and 'action="/login"' in text, (name, path)
    posted = client.post("/connect", data={**CONNECT, "decision": "connect", "new_service": "Stolen"})
    assert posted.status_code == 401, name
    posted = client.post("/install/integration", data={**INSTALL, "decision": "connect", "new_service": "Stolen"})
    assert posted.status_code == 401, name
    assert not [s for s in app.sandbox.services("victim") if s.name == "Stolen"]


def test_the_cookie_login_sets_is_signed_and_works(app: SandboxApp) -> None:
    client = Client(app)
    answer = client.post("/login", data={"flow": "connect", **CONNECT, "subdomain": "victim", "decision": "login"})
    assert answer.status_code == 303
    header = answer.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=Lax" in header
    cookie = client.get_cookie(LOGIN_COOKIE)
    assert cookie is not None and cookie.value != "victim" and "." in cookie.value
    page = client.get("/connect", query_string=CONNECT).get_data(as_text=True)
    assert "data-account>victim<" in page


def test_a_cookie_from_another_sandbox_is_refused(sandbox: Sandbox) -> None:
    mine, theirs = SandboxApp(sandbox), SandboxApp(sandbox)
    client = _client(mine, theirs.login_cookie("victim"))
    assert "Logged in to" not in client.get("/connect", query_string=CONNECT).get_data(as_text=True)


def test_a_fresh_cookie_within_its_age_is_accepted(app: SandboxApp) -> None:
    client = _client(app, app.login_cookie("victim"))
    assert "Logged in to" in client.get("/connect", query_string=CONNECT).get_data(as_text=True)


@pytest.mark.parametrize("age", [0, -1, True, 1.5])
def test_the_maximum_age_is_checked(sandbox: Sandbox, age: object) -> None:
    with pytest.raises(ValueError):
        SandboxApp(sandbox, login_max_age=age)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=';,"\\'), max_size=120
    )
)
def test_property_no_guessed_value_signs_in(app: SandboxApp, value: str) -> None:
    page = _client(app, value).get("/connect", query_string=CONNECT)
    assert page.status_code == 200
    assert "Logged in to" not in page.get_data(as_text=True)
