"""The no-browser walk through the authorize pages, against the real sandbox."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from pdconnect.sandbox.identity.walk import WalkError, approve
from tests.sandbox.identity.harness import REDIRECT


@pytest.fixture
def setup(pagerduty_sandbox: Any) -> tuple[str, Any, Any]:
    identity = pagerduty_sandbox.sandbox.identity
    user = identity.add_user("acme", name="Alex", email="alex@acme.example", role="manager")
    app = identity.register_app("acme", name="Acme Monitoring", redirect_urls=[REDIRECT])
    return pagerduty_sandbox.url, user, app


def _url(base: str, **params: str) -> str:
    return f"{base}/oauth/authorize?" + urlencode(params)


def test_approve_and_deny(setup: tuple[str, Any, Any]) -> None:
    base, user, app = setup
    url = _url(base, client_id=app.client_id, redirect_uri=REDIRECT, response_type="code", scope="read", state="s")
    approved = parse_qs(urlsplit(approve(base, url, user_id=user.id)).query)
    assert approved["code"] and approved["state"] == ["s"]
    denied = parse_qs(urlsplit(approve(base, url, user_id=user.id, decision="deny")).query)
    assert denied["error"] == ["access_denied"]


def test_a_request_sent_straight_back_returns_its_callback(setup: tuple[str, Any, Any]) -> None:
    base, user, app = setup
    url = _url(base, client_id=app.client_id, redirect_uri=REDIRECT, response_type="token")
    assert parse_qs(urlsplit(approve(base, url, user_id=user.id)).query)["error"] == ["unsupported_response_type"]


@pytest.mark.parametrize(
    ("params", "user", "says"),
    [
        ({"client_id": "nobody"}, None, "Unknown client"),
        ({"redirect_uri": "https://evil.example/"}, None, "redirect_uri"),
        ({}, "PNOSUCH", "No such user"),
    ],
)
def test_error_pages_raise_with_their_message(
    setup: tuple[str, Any, Any], params: dict[str, str], user: str | None, says: str
) -> None:
    base, real_user, app = setup
    query = {"client_id": app.client_id, "redirect_uri": REDIRECT, "response_type": "code", **params}
    with pytest.raises(WalkError, match=says):
        approve(base, _url(base, **query), user_id=user or real_user.id)


@pytest.mark.parametrize(
    "url", ["https://evil.example/oauth/authorize?x=1", "BASE/connect?x=1", "BASE/oauth/authorize/../x"]
)
def test_only_the_sandboxs_authorize_page_is_walked(setup: tuple[str, Any, Any], url: str) -> None:
    base, user, _ = setup
    with pytest.raises(ValueError, match="authorize_url"):
        approve(base, url.replace("BASE", base), user_id=user.id)


def test_an_unknown_decision_is_refused(setup: tuple[str, Any, Any]) -> None:
    base, user, _ = setup
    with pytest.raises(ValueError, match="decision"):
        approve(base, f"{base}/oauth/authorize", user_id=user.id, decision="maybe")
