"""The REST API's ``Authorization`` and ``Accept`` headers, and the control API's API keys (issue 10).

Every malformed credential is a 401 in PagerDuty's error shape that never repeats what was
sent; ``Accept`` takes PagerDuty's versioned type and plain JSON; API keys are made per
account, shown once, and never in the state dump or a repr.
"""

from __future__ import annotations

import http.client
import json

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.sandbox.model import ApiKey
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.sandbox.tenancy import RestError, check_accept, credentials

HOSTILE_AUTHORIZATION = [
    "",
    " ",
    "Token",
    "Token ",
    "Token token",
    "Token token=",
    "Token token= ",
    "Token tokens=abc",
    "Token key=abc",
    "Tokentoken=abc",
    "Token token=a b",
    "Bearer",
    "Bearer ",
    "Bearer a b",
    "Basic dXNlcjpwYXNz",
    "Digest x",
    "token=abc",
    "Bearer " + "a" * 600,
    "Token token=caf\u00e9",
    "Bearer \x00abc",
    "Bearer abc\x7f",
]


@pytest.mark.parametrize("header", HOSTILE_AUTHORIZATION, ids=repr)
def test_a_malformed_authorization_is_a_401(header: str) -> None:
    with pytest.raises(RestError) as raised:
        credentials(header)
    assert raised.value.status == 401 and raised.value.code == 2006


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Token token=abc", ("token", "abc")),
        ("token TOKEN=abc", ("token", "abc")),
        ("Bearer pdus+_0abc", ("bearer", "pdus+_0abc")),
        ("bearer  pdus+_0abc ", ("bearer", "pdus+_0abc")),
    ],
)
def test_well_formed_credentials_are_read(header: str, expected: tuple[str, str]) -> None:
    assert credentials(header) == expected


@given(st.text(max_size=80))
def test_any_authorization_is_read_or_a_401_that_never_holds_it(header: str) -> None:
    refused: RestError | None = None
    try:
        kind, value = credentials(header)
    except RestError as exc:
        refused = exc
    if refused is not None:
        assert refused.status == 401
        # A short header may be a word of the fixed message itself ("then" in "Authentication"):
        # the message must be the same whatever was sent, so compare it with a distinct header's.
        with pytest.raises(RestError) as other:
            credentials("\x01distinct-marker")
        shown = header.strip()
        assert len(shown) < 4 or refused.message == other.value.message or shown not in refused.message
        return
    assert kind in ("token", "bearer") and value and value in header and not any(c.isspace() for c in value)


def test_a_hostile_authorization_over_http_is_a_401_not_a_500(pagerduty_sandbox: PagerDutySandbox) -> None:
    host, port = pagerduty_sandbox.url.removeprefix("http://").split(":")
    for raw in [b"Token token=\xff\xfe", b"Bearer \xc3\x28", b"Token token=" + b"x" * 4000]:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.putrequest("GET", "/webhook_subscriptions")
        conn.putheader("Authorization", raw)
        conn.endheaders()
        answer = conn.getresponse()
        assert answer.status == 401
        assert json.loads(answer.read())["error"]["code"] == 2006
        conn.close()


@pytest.mark.parametrize(
    "accept",
    [None, "", "application/vnd.pagerduty+json;version=2", "application/json", "*/*", "text/html, application/json"],
)
def test_json_accept_headers_are_taken(accept: str | None) -> None:
    check_accept(accept)


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "image/png, text/plain"])
def test_other_accept_headers_are_a_406(pagerduty_sandbox: PagerDutySandbox, accept: str) -> None:
    response = requests.get(
        pagerduty_sandbox.url + "/webhook_subscriptions",
        headers={"Authorization": f"Token token={pagerduty_sandbox.api_key()}", "Accept": accept},
        timeout=10,
    )
    assert response.status_code == 406 and response.json()["error"]["message"]


def test_a_browser_still_gets_the_sandboxs_own_pages(pagerduty_sandbox: PagerDutySandbox) -> None:
    service = pagerduty_sandbox.service("Checkout API")["id"]
    page = requests.get(f"{pagerduty_sandbox.url}/services/{service}", headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    rest = requests.get(
        f"{pagerduty_sandbox.url}/services/{service}", headers={"Accept": "application/json"}, timeout=10
    )
    assert rest.status_code == 401


@pytest.mark.parametrize(
    ("account", "body", "status"),
    [
        ("acme", {}, 201),
        ("acme", {"read_only": True}, 201),
        ("acme", {"read_only": "yes"}, 400),
        ("acme", {"read_only": 1}, 400),
        ("acme", {"description": "\u202eevil"}, 400),
        ("acme", {"description": 5}, 400),
        ("nobody", {}, 404),
        ("ACME", {}, 404),
        ("acme%2F..", {}, 404),
    ],
)
def test_api_keys_in_the_control_api(
    pagerduty_sandbox: PagerDutySandbox, account: str, body: dict[str, object], status: int
) -> None:
    response = requests.post(f"{pagerduty_sandbox.url}/_sandbox/api/accounts/{account}/api_keys", json=body, timeout=10)
    assert response.status_code == status, response.text
    if status == 201:
        key = response.json()["api_key"]["key"]
        assert len(key) == 20
        state = json.dumps(pagerduty_sandbox.state(), ensure_ascii=False)
        assert key not in state and f"…{key[-4:]}" in state
        found = pagerduty_sandbox.sandbox.store.get(ApiKey, key)
        assert key not in repr(found)
    else:
        assert response.json()["error"]["message"]


def test_a_read_only_key_reads_but_cannot_write(pagerduty_sandbox: PagerDutySandbox) -> None:
    key = pagerduty_sandbox.new_api_key(read_only=True)
    token = f"Token token={key}"
    assert pagerduty_sandbox.rest("GET", "/services", token=token).status_code == 200
    body = {"webhook_subscription": {"delivery_method": {"url": "http://127.0.0.1:9/h"}}}
    refused = pagerduty_sandbox.rest("POST", "/webhook_subscriptions", token=token, json=body)
    assert refused.status_code == 403 and "read-only" in refused.json()["error"]["message"]
