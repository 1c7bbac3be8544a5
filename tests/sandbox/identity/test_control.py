"""The control API under ``/_sandbox/api/oauth/``: registering apps and users, refusing bad input
with a JSON 4xx, and showing a client secret once."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.sandbox.identity.harness import REDIRECT, Harness

APPS = "/_sandbox/api/oauth/apps"
USERS = "/_sandbox/api/oauth/users"
GOOD_APP = {"account": "acme", "name": "Acme Monitoring", "redirect_urls": [REDIRECT]}


def test_registering_an_app_shows_its_secret_once(harness: Harness) -> None:
    answer = harness.client().post(APPS, json=GOOD_APP | {"kind": "scoped", "scopes": ["services.read"]})
    assert answer.status_code == 201
    app = answer.get_json()["app"]
    assert app["client_secret"] and app["kind"] == "scoped" and app["scopes"] == ["services.read"]
    assert app["access_token_seconds"] == 86400 and app["refresh_token_seconds"] == 30 * 86400
    listed = harness.client().get(APPS).get_json()["apps"]
    assert [a["client_id"] for a in listed] == [app["client_id"]]
    assert "client_secret" not in listed[0] and app["client_secret"] not in str(listed)
    one = harness.client().get(f"{APPS}/{app['client_id']}").get_json()["app"]
    assert "client_secret" not in one


@pytest.mark.parametrize("url", ["http://localhost:5000/cb", "http://127.0.0.1:5000/cb", "http://[::1]:5000/cb"])
def test_plain_http_redirects_are_for_loopback(harness: Harness, url: str) -> None:
    assert harness.client().post(APPS, json=GOOD_APP | {"redirect_urls": [url]}).status_code == 201


def test_classic_defaults(harness: Harness) -> None:
    app = harness.client().post(APPS, json=GOOD_APP).get_json()["app"]
    assert app["kind"] == "classic" and app["scopes"] == ["read", "write"] and app["confidential"]
    assert app["access_token_seconds"] == 30 * 86400 and app["refresh_token_seconds"] == 210 * 86400
    assert app["code_seconds"] == 30 and app["app_token_seconds"] == 86400


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({"account": "nosuch"}, 404),
        ({"account": None}, 404),
        ({"account": ["acme"]}, 404),
        ({"name": ""}, 400),
        ({"name": "x" * 500}, 400),
        ({"name": "Evil\u202eCorp"}, 400),
        ({"name": "line\nbreak"}, 400),
        ({"name": 7}, 400),
        ({"kind": "Classic"}, 400),
        ({"kind": None}, 400),
        ({"redirect_urls": []}, 400),
        ({"redirect_urls": REDIRECT}, 400),
        ({"redirect_urls": [REDIRECT] * 11}, 400),
        ({"redirect_urls": ["javascript:alert(1)"]}, 400),
        ({"redirect_urls": ["/relative"]}, 400),
        ({"redirect_urls": ["https://user:pw@vendor.example/cb"]}, 400),
        ({"redirect_urls": ["https://vendor.example/cb#frag"]}, 400),
        ({"redirect_urls": ["https://vendor.example/c b"]}, 400),
        ({"redirect_urls": ["https://vendor.example/\r\nSet-Cookie:x"]}, 400),
        ({"redirect_urls": [42]}, 400),
        ({"redirect_urls": ["http://vendor.example/cb"]}, 400),  # https, or http on loopback only
        ({"redirect_urls": ["http://127.evil.example/cb"]}, 400),
        ({"redirect_urls": ["ftp://vendor.example/cb"]}, 400),
        ({"scopes": ["admin"]}, 400),
        ({"scopes": []}, 400),
        ({"scopes": "read"}, 400),
        ({"kind": "scoped", "scopes": ["read"]}, 400),
        ({"kind": "scoped", "scopes": ["Services.Read"]}, 400),
        ({"confidential": "yes"}, 400),
        ({"access_token_seconds": 0}, 400),
        ({"access_token_seconds": -1}, 400),
        ({"access_token_seconds": True}, 400),
        ({"access_token_seconds": 1.5}, 400),
        ({"access_token_seconds": "60"}, 400),
        ({"access_token_seconds": 10**12}, 400),
        ({"code_seconds": None}, 400),
        ({"client_secret": "chosen"}, 400),  # unknown field
    ],
)
def test_bad_app_registrations_are_refused(harness: Harness, changes: dict[str, Any], status: int) -> None:
    answer = harness.client().post(APPS, json=GOOD_APP | changes)
    assert answer.status_code == status
    assert answer.get_json()["error"]["message"]
    assert harness.client().get(APPS).get_json()["apps"] == []


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{", "application/json"),
        (b"[]", "application/json"),
        (b'{"account": "acme", "account": "acme"}', "application/json"),
        (b'{"x": NaN}', "application/json"),
        (b"\xff\xfe", "application/json"),
        (b'{"a":' * 100 + b"1" + b"}" * 100, "application/json"),
        (b"x" * (64 * 1024 + 1), "application/json"),
    ],
)
def test_bad_json_is_a_json_4xx(harness: Harness, body: bytes, content_type: str) -> None:
    answer = harness.client().post(APPS, data=body, headers={"Content-Type": content_type})
    assert answer.status_code in (400, 413) and answer.get_json()["error"]["message"]


@pytest.mark.parametrize(
    "headers", [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}]
)
def test_cross_site_control_requests_are_refused(harness: Harness, headers: dict[str, str]) -> None:
    answer = harness.client().post(APPS, json=GOOD_APP, headers=headers)
    assert answer.status_code == 403
    assert harness.client().get(APPS).get_json()["apps"] == []


def test_same_origin_control_requests_work(harness: Harness) -> None:
    answer = harness.client().post(APPS, json=GOOD_APP, headers={"Origin": "http://localhost"})
    assert answer.status_code == 201


def test_users(harness: Harness) -> None:
    answer = harness.client().post(
        USERS, json={"account": "initech", "name": "Ira", "email": "ira@initech.example", "role": "owner"}
    )
    assert answer.status_code == 201
    user = answer.get_json()["user"]
    assert user["role"] == "owner" and user["account_id"] == "initech" and user["id"].startswith("P")
    listed = harness.client().get(f"{USERS}?account=initech").get_json()["users"]
    assert listed == [user]
    assert [u.id for u in harness.identity.users("initech")] == [user["id"]]


@pytest.mark.parametrize(
    "changes",
    [
        {"account": "nosuch"},
        {"role": "superuser"},
        {"role": "Admin"},
        {"role": None},
        {"email": "no-at-sign"},
        {"email": "a@b@c"},
        {"email": "a b@c"},
        {"email": "x" * 300 + "@a"},
        {"name": ""},
        {"name": "\x00"},
        {"password": "x"},
        {"id": "lower"},
        {"id": ""},
        {"id": "P" * 21},
        {"id": 7},
        {"id": "TAKEN"},
    ],
)
def test_bad_users_are_refused(harness: Harness, changes: dict[str, Any]) -> None:
    harness.identity.add_user("acme", name="Taken", email="t@acme.example", user_id="TAKEN")
    body = {"account": "acme", "name": "Ann", "email": "ann@acme.example", "role": "admin"} | changes
    answer = harness.client().post(USERS, json=body)
    assert answer.status_code in (400, 404, 409) and answer.get_json()["error"]["message"]
    assert [u.name for u in harness.identity.users("acme")].count("Ann") == 0


def test_a_user_can_reuse_the_sandboxs_responder_id(harness: Harness) -> None:
    body = {"account": "acme", "name": "Ann", "email": "ann@acme.example", "role": "admin", "id": "PABC123"}
    answer = harness.client().post(USERS, json=body)
    assert answer.status_code == 201 and answer.get_json()["user"]["id"] == "PABC123"
    assert harness.identity.role_of("acme", "PABC123") == "admin"


@pytest.mark.parametrize("body", [{}, {"role": "root"}, {"role": "admin", "name": "x"}, {"name": "x"}])
def test_bad_role_changes_are_refused(harness: Harness, body: dict[str, Any]) -> None:
    answer = harness.client().put(f"{USERS}/{harness.alex.id}", json=body)
    assert answer.status_code == 400
    assert harness.identity.role_of("acme", harness.alex.id) == "manager"


def test_unknown_things_are_404(harness: Harness) -> None:
    client = harness.client()
    assert client.put(f"{USERS}/PNOSUCH", json={"role": "admin"}).status_code == 404
    assert client.post(f"{APPS}/nosuch/revoke").status_code == 404
    assert client.put(f"{APPS}/nosuch", json={"code_seconds": 1}).status_code == 404
    assert client.post("/_sandbox/api/oauth/tokens/expire", json={"token": "pdus+_0x"}).status_code == 404
    assert client.post("/_sandbox/api/oauth/tokens/expire", json={"token": 5}).status_code == 400
    assert client.get("/_sandbox/api/oauth/nothing").status_code == 404
    assert client.get("/oauth/revoke").get_json()["error"] == "invalid_request"  # no such endpoint is documented
    assert client.delete(APPS).status_code == 405


def test_other_paths_are_not_the_identity_servers(harness: Harness) -> None:
    for path in ("/", "/oauthx", "/_sandbox/api/state", "/global/oauth", "/webhook_subscriptions"):
        assert harness.identity.core is not None
        from werkzeug.test import EnvironBuilder
        from werkzeug.wrappers import Request

        request = Request(EnvironBuilder(path=path).get_environ())
        assert harness.identity.handle(request) is None, path


_SHARED = Harness()


@given(
    st.dictionaries(
        st.sampled_from(["account", "name", "kind", "redirect_urls", "scopes", "confidential", "code_seconds", "x"]),
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=30)
        | st.lists(st.text(max_size=30), max_size=3),
    )
)
def test_any_registration_is_a_201_or_a_json_4xx(body: dict[str, Any]) -> None:
    answer = _SHARED.client().post(APPS, json=body)
    assert answer.status_code in (201, 400, 404)
    data = answer.get_json()
    assert ("app" in data) if answer.status_code == 201 else isinstance(data["error"]["message"], str)
