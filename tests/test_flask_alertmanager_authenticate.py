"""``PDCONNECT_ALERTMANAGER_AUTHENTICATE``: the vendor's own tokens for the Alertmanager route.

The hook replaces pdconnect's signed-token check: only the owner it names is used, and its
mistakes (raising, answering something that is not an owner id) are a JSON 5xx, logged
without the token, never a traceback and never an enqueued event.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Request, abort
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect import integration_from_key
from pdconnect.errors import ConfigError
from pdconnect.flask import alertmanager_token, current_pagerduty
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.conftest import SERVICE_KEY
from tests.test_flask import make_app

FIRING = (Path(__file__).parent / "data" / "alertmanager" / "firing.json").read_bytes()
#: The vendor's tokens in these tests; a real vendor keeps a hash (see the example app).
TOKENS = {"vendor-token-of-alice-0123456789": "alice", "vendor-token-of-bob-9876543210": "bob"}
ALICE, BOB = list(TOKENS)
_fresh = itertools.count()


def vendor_tokens(request: Request) -> str | None:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return TOKENS.get(credentials) if scheme == "Bearer" else None


def app_with(tmp_path: Path, sandbox: PagerDutySandbox, hook: Any) -> Flask:
    app = make_app(tmp_path, sandbox, PDCONNECT_ALERTMANAGER_AUTHENTICATE=hook)
    with app.test_request_context("/"):
        current_pagerduty().store.save(integration_from_key(SERVICE_KEY, owner_id="alice", service_name="Checkout"))
    return app


@pytest.fixture
def app(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> Flask:
    return app_with(tmp_path, pagerduty_sandbox, vendor_tokens)


def post(client: FlaskClient, authorization: str | None) -> Any:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return client.post("/pagerduty/alertmanager", data=FIRING, headers=headers, content_type="application/json")


def queued(app: Flask) -> list[tuple[str | None, str]]:
    """What the outbox holds, as (owner, routing key); claimed, so call it once per test."""
    with app.test_request_context("/"):
        return [(e.owner_id, e.routing_key) for e in current_pagerduty().outbox.claim("t", 100, lease=60)]


def test_the_hook_names_the_owner(app: Flask) -> None:
    response = post(app.test_client(), f"Bearer {ALICE}")
    assert response.status_code == 202 and response.json["enqueued"] == 1
    assert queued(app) == [("alice", SERVICE_KEY)]


def test_another_owners_token_reaches_only_that_owner(app: Flask) -> None:
    response = post(app.test_client(), f"Bearer {BOB}")
    assert response.status_code == 202 and response.json["enqueued"] == 0
    assert queued(app) == []


def test_pdconnects_own_token_is_refused_once_a_hook_is_set(app: Flask) -> None:
    with app.test_request_context("/"):
        signed = alertmanager_token("alice")
    response = post(app.test_client(), f"Bearer {signed}")
    assert response.status_code == 401 and response.json["error"]["type"] == "Unauthorized"
    assert queued(app) == []


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        f"Basic {ALICE}",
        f"bearer{ALICE}",
        f"Bearer {ALICE}x",
        f"Bearer {ALICE[:-1]}",
        "Bearer " + ALICE.upper(),
        f"Bearer {ALICE}, Bearer {BOB}",
        "Bearer \x00",
        "Bearer " + "x" * 10_000,
    ],
)
def test_refused_senders_get_a_401_with_a_challenge(app: Flask, authorization: str | None) -> None:
    response = post(app.test_client(), authorization)
    assert response.status_code == 401 and response.is_json
    assert response.json["error"]["type"] == "Unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert queued(app) == []


def test_without_a_hook_a_refusal_has_a_challenge_too(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> None:
    response = post(make_app(tmp_path, pagerduty_sandbox).test_client(), "Bearer forged")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer ")


class HookDown(Exception):
    """What a vendor's hook raises when its token table is unreachable."""


def raising(request: Request) -> str | None:
    # Vendors' messages quote what they were given: the log must not.
    raise HookDown(f"could not look up {request.headers.get('Authorization')}")


def test_a_hook_that_raises_is_a_503_logged_without_the_token(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, caplog: pytest.LogCaptureFixture
) -> None:
    app = app_with(tmp_path, pagerduty_sandbox, raising)
    with caplog.at_level(logging.DEBUG):
        response = post(app.test_client(), f"Bearer {ALICE}")
    assert response.status_code == 503 and response.is_json and response.headers["Retry-After"] == "30"
    assert response.json["error"]["type"] == "Unavailable"
    assert "Traceback" not in response.get_data(as_text=True)
    assert any("HookDown" in record.getMessage() for record in caplog.records)
    for record in caplog.records:
        text = record.getMessage() + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        assert ALICE not in text
    assert queued(app) == []


def test_a_hook_may_answer_for_itself_with_abort(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> None:
    def forbidding(request: Request) -> str | None:
        abort(403)

    assert post(app_with(tmp_path, pagerduty_sandbox, forbidding).test_client(), f"Bearer {ALICE}").status_code == 403


NOT_OWNER_IDS = [42, b"alice", "", "   ", "ali\x00ce", "alice\n", "\x1b[2J", "\ud800", "x" * 256, ["alice"], True]


@pytest.mark.parametrize("answer", NOT_OWNER_IDS, ids=repr)
def test_a_hook_answering_no_owner_id_is_refused(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, caplog: pytest.LogCaptureFixture, answer: object
) -> None:
    app = app_with(tmp_path, pagerduty_sandbox, lambda request: answer)
    with caplog.at_level(logging.DEBUG):
        response = post(app.test_client(), f"Bearer {ALICE}")
    assert response.status_code == 500 and response.is_json
    assert response.json["error"]["type"] == "ServerError"
    assert any("PDCONNECT_ALERTMANAGER_AUTHENTICATE" in record.getMessage() for record in caplog.records)
    assert all(ALICE not in record.getMessage() for record in caplog.records)
    assert queued(app) == []


@pytest.mark.parametrize("hook", ["myapp.auth:owner", "", 42, ["x"], b"hook"], ids=repr)
def test_a_hook_that_is_not_callable_is_refused_at_start_up(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, hook: Any
) -> None:
    # An environment variable copied into the config is a string: caught by init_app, not per request.
    with pytest.raises(ConfigError, match="PDCONNECT_ALERTMANAGER_AUTHENTICATE must be a function") as caught:
        make_app(tmp_path, pagerduty_sandbox, PDCONNECT_ALERTMANAGER_AUTHENTICATE=hook)
    assert caught.value.setting == "PDCONNECT_ALERTMANAGER_AUTHENTICATE"


def test_a_hook_made_uncallable_after_start_up_is_still_a_500(
    tmp_path: Path, pagerduty_sandbox: PagerDutySandbox
) -> None:
    app = app_with(tmp_path, pagerduty_sandbox, vendor_tokens)
    app.config["PDCONNECT_ALERTMANAGER_AUTHENTICATE"] = "myapp.auth:owner"
    response = post(app.test_client(), f"Bearer {ALICE}")
    assert response.status_code == 500 and response.is_json


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answer=st.none() | st.text(max_size=300) | st.binary(max_size=10) | st.integers())
def test_only_a_clean_owner_id_is_used(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox, answer: object) -> None:
    app = app_with(tmp_path / str(next(_fresh)), pagerduty_sandbox, lambda request: answer)
    response = post(app.test_client(), f"Bearer {ALICE}")
    text = answer if isinstance(answer, str) else ""
    clean = bool(text.strip()) and len(text) <= 255
    clean = clean and all(ch >= " " and ch != "\x7f" and not 0x80 <= ord(ch) < 0xA0 for ch in text)
    clean = clean and not any(0xD800 <= ord(ch) < 0xE000 for ch in text)
    expected = 202 if clean else 401 if answer is None else 500
    assert response.status_code == expected and response.is_json
    assert queued(app) == ([("alice", SERVICE_KEY)] if answer == "alice" else [])


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(authorization=st.none() | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60))
def test_any_header_is_202_only_for_a_vendor_token(app: Flask, authorization: str | None) -> None:
    response = post(app.test_client(), authorization)
    assert response.is_json
    if authorization in (f"Bearer {ALICE}", f"Bearer {BOB}"):
        assert response.status_code == 202
    else:
        assert response.status_code == 401
