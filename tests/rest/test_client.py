"""AccountRestClient against ``responses``: headers, region, pagination, 401/403/429/5xx, hostile answers."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect.errors import InvalidData, UnsafeURLError
from pdconnect.oauth.credentials import Credential, MemoryCredentialStore
from pdconnect.oauth.refresh import TokenRefresher
from pdconnect.rest.answers import covers
from pdconnect.rest.client import AccountRestClient
from pdconnect.rest.errors import (
    CredentialNotFound,
    Forbidden,
    NeedsReauthorization,
    NotFound,
    RestError,
    RestUnavailable,
    UnsafeRestURL,
)
from pdconnect.rest.paths import rest_url
from pdconnect.rest.subscriptions import NewSubscription
from pdconnect.retry import RetryPolicy
from tests.oauth.credentials_helpers import ACCOUNT, EU_ACCOUNT, NOW, FakeOAuth, token_set

API = ACCOUNT.rest_base_url
NO_WAIT = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0, deadline=60.0, rate_limit_delay=0.0)
SECRET = "Qm9ndXNTZWNyZXQ+K/8xMjM0NTY3ODkwYWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eQ=="


class Env:
    def __init__(self, mock: responses.RequestsMock, scopes: frozenset[str] = frozenset({"openid", "write"})) -> None:
        self.mock = mock
        self.store = MemoryCredentialStore()
        self.oauth = FakeOAuth()
        self.hooked: list[Credential] = []
        self.sleeps: list[float] = []
        tokens = self.oauth.issue(scopes=scopes)
        self.saved = self.store.save("o", ACCOUNT, tokens)
        self.refresher = TokenRefresher(
            self.store, self.oauth, on_needs_reauthorization=self.hooked.append, clock=lambda: NOW
        )
        self.client = AccountRestClient(
            self.refresher, "o", ACCOUNT.account_id, retry=NO_WAIT, sleep=self.sleeps.append
        )

    def tokens_seen(self) -> list[str]:
        return [str(call.request.headers["Authorization"]).removeprefix("Bearer ") for call in self.mock.calls]

    def secrets(self) -> list[str]:
        stored = self.store.get("o", ACCOUNT.account_id)
        values = [self.saved.access_token, self.saved.refresh_token]
        if stored is not None:
            values += [stored.access_token, stored.refresh_token]
        return [v for v in values if v]


@pytest.fixture
def env() -> Iterator[Env]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield Env(mock)


def test_headers_and_the_accounts_own_base(env: Env) -> None:
    env.mock.get(f"{API}/incidents/P1", json={"incident": {"id": "P1", "status": "triggered"}})
    assert env.client.get_incident("P1") == {"id": "P1", "status": "triggered"}
    request = env.mock.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {env.saved.access_token}"
    assert request.headers["Accept"] == "application/vnd.pagerduty+json;version=2"


def test_an_eu_account_is_called_at_the_eu_base() -> None:
    with responses.RequestsMock() as mock:
        store, oauth = MemoryCredentialStore(), FakeOAuth()
        store.save("o", EU_ACCOUNT, oauth.issue())
        client = AccountRestClient(TokenRefresher(store, oauth, clock=lambda: NOW), "o", EU_ACCOUNT.account_id)
        mock.get("https://api.eu.pagerduty.com/services", json={"services": [], "more": False})
        assert client.list_services() == []


def test_services_are_read_page_by_page(env: Env) -> None:
    pages = [[{"id": f"S{i}"} for i in range(start, start + n)] for start, n in ((0, 100), (100, 100), (200, 7))]
    for number, page in enumerate(pages):
        env.mock.get(
            f"{API}/services",
            json={"services": page, "more": number < 2, "offset": 999, "limit": 100},
            match=[responses.matchers.query_param_matcher({"limit": "100", "offset": str(number * 100)})],
        )
    assert [s["id"] for s in env.client.list_services()] == [f"S{i}" for i in range(207)]


@pytest.mark.parametrize(
    "answer",
    [
        {"services": [{"id": "S"}], "more": "false"},  # truthy text is not "more"
        {"services": [{"id": "S"}], "more": 1},
        {"services": [{"id": "S"}], "more": None},
        {"services": [{"id": "S"}]},
        {"services": [{"id": "S"}], "more": [True]},
        {"services": [], "more": True},  # an empty page ends it
        {"services": [{"id": "S"}], "more": False, "offset": -50},
    ],
    ids=repr,
)
def test_hostile_more_never_loops(env: Env, answer: dict[str, Any]) -> None:
    env.mock.get(f"{API}/services", json=answer)
    assert len(env.client.list_services()) == len(answer["services"])
    assert len(env.mock.calls) == 1


def test_more_forever_stops_at_max_items(env: Env) -> None:
    env.mock.get(f"{API}/services", json={"services": [{"id": "S"}] * 100, "more": True, "offset": 0})
    assert len(env.client.list_services(max_items=350)) == 350
    assert len(env.mock.calls) == 4


def test_a_page_longer_than_asked_is_cut(env: Env) -> None:
    env.mock.get(f"{API}/services", json={"services": [{"id": "S"}] * 5000, "more": True})
    assert len(env.client.list_services(max_items=30)) == 30


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'"text"',
        b'{"services": {"id": "S"}}',
        b'{"services": ["S"]}',
        b'{"services": null}',
        b"[" * 100_000,
    ],
    ids=lambda b: repr(b[:20]),
)
def test_unreadable_pages_are_rest_errors(env: Env, body: bytes) -> None:
    env.mock.get(f"{API}/services", body=body)
    with pytest.raises(RestError):
        env.client.list_services()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pages=st.lists(
        st.fixed_dictionaries(
            {"services": st.lists(st.dictionaries(st.text(max_size=3), _json, max_size=2), max_size=120) | _json},
            optional={"more": _json | st.just(True), "offset": _json, "limit": _json},
        ),
        min_size=1,
        max_size=5,
    ),
    max_items=st.integers(min_value=1, max_value=400),
)
def test_any_pagination_answers_end_bounded_or_as_rest_error(pages: list[dict[str, Any]], max_items: int) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        env = Env(mock)
        for page in pages:
            mock.get(f"{API}/services", json=page)
        try:
            found = env.client.list_services(max_items=max_items)
        except RestError:
            return
        assert len(found) <= max_items
        assert all(isinstance(item, dict) for item in found)
        assert len(mock.calls) <= max_items


def test_a_401_refreshes_once_and_retries_once(env: Env) -> None:
    env.mock.get(f"{API}/incidents/P1", status=401, json={"error": {"message": "Unauthorized", "code": 2006}})
    env.mock.get(f"{API}/incidents/P1", json={"incident": {"id": "P1"}})
    assert env.client.get_incident("P1") == {"id": "P1"}
    first, second = env.tokens_seen()
    assert first == env.saved.access_token and second != first
    assert len(env.oauth.calls) == 1 and env.hooked == []


def test_a_second_401_marks_needs_reauthorization_and_fires_the_hook_once(env: Env) -> None:
    env.mock.get(f"{API}/incidents/P1", status=401, json={"error": {"message": "Unauthorized"}})
    with pytest.raises(NeedsReauthorization) as caught:
        env.client.get_incident("P1")
    assert len(env.mock.calls) == 2 and len(env.oauth.calls) == 1
    assert len(env.hooked) == 1
    stored = env.store.get("o", ACCOUNT.account_id)
    assert stored is not None and stored.needs_reauthorization
    for secret in env.secrets():
        assert secret not in str(caught.value)
    with pytest.raises(NeedsReauthorization):
        env.client.get_incident("P1")
    assert len(env.mock.calls) == 2 and len(env.hooked) == 1  # no request, no second hook


def test_a_dead_refresh_token_after_a_401_is_needs_reauthorization(env: Env) -> None:
    env.oauth.valid.clear()
    env.mock.get(f"{API}/incidents/P1", status=401, json={})
    with pytest.raises(NeedsReauthorization):
        env.client.get_incident("P1")
    assert len(env.mock.calls) == 1 and len(env.hooked) == 1


FORBIDDEN = [
    # granted, PagerDuty's body, call, missing
    ({"openid", "read"}, {"error": {"message": "Access Denied", "code": 2010}}, "create", "scope"),
    ({"openid", "write"}, {"error": {"message": "Access Denied", "code": 2010}}, "create", "role"),
    (
        {"openid", "write"},
        {"error": {"message": "Insufficient scope", "errors": ["needs webhook_subscriptions.write"]}},
        "create",
        "scope",
    ),
    ({"openid", "webhook_subscriptions.read"}, {"error": {"message": "Forbidden"}}, "create", "scope"),
    ({"openid", "webhook_subscriptions.write"}, {"error": {"message": "Forbidden"}}, "create", "role"),
    ({"openid", "services.write"}, {}, "services", "role"),
    ({"openid", "incidents.read"}, b"<html>nope</html>", "services", "scope"),
    ({"openid", "read"}, None, "services", "role"),
]


@pytest.mark.parametrize(("granted", "body", "call", "missing"), FORBIDDEN)
def test_403_says_whether_scope_or_role_is_missing(granted: set[str], body: Any, call: str, missing: str) -> None:
    with responses.RequestsMock() as mock:
        env = Env(mock, scopes=frozenset(granted))
        kwargs: dict[str, Any] = (
            {"body": body} if isinstance(body, bytes) else {"json": body} if body is not None else {}
        )
        if call == "create":
            mock.post(f"{API}/webhook_subscriptions", status=403, **kwargs)
        else:
            mock.get(f"{API}/services", status=403, **kwargs)

        def call_it() -> object:
            if call == "create":
                return env.client.create_webhook_subscription("https://acme.example/hook", service_id="PSVC")
            return env.client.list_services()

        with pytest.raises(Forbidden) as caught:
            call_it()
    assert caught.value.missing == missing
    assert caught.value.status == 403
    if missing == "role":
        assert "needs a Manager, Admin or Owner role" in str(caught.value)
    else:
        assert "scope" in str(caught.value)
    assert len(env.oauth.calls) == 0  # a 403 is not an expired token


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=300) | _json.map(lambda v: json.dumps(v).encode()), message=st.text(max_size=400))
def test_any_403_body_is_a_one_line_forbidden_without_a_token(body: bytes, message: str) -> None:
    with responses.RequestsMock() as mock:
        env = Env(mock)
        echoed = json.dumps({"error": {"message": f"{message} {env.saved.access_token}", "errors": [message]}}).encode()
        mock.get(f"{API}/services", status=403, body=body)
        mock.get(f"{API}/services", status=403, body=echoed)
        for _ in range(2):
            with pytest.raises(Forbidden) as caught:
                env.client.list_services()
            text = str(caught.value)
            assert "\n" not in text and "\r" not in text
            for secret in env.secrets():
                assert secret not in text
                assert secret not in repr(caught.value.errors) and secret not in str(caught.value.pagerduty_message)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_temporary_answers_are_retried_for_reads(env: Env, status: int) -> None:
    env.mock.get(f"{API}/incidents/P1", status=status, headers={"Retry-After": "7"})
    env.mock.get(f"{API}/incidents/P1", json={"incident": {"id": "P1"}})
    assert env.client.get_incident("P1") == {"id": "P1"}
    assert env.sleeps == [7.0]


def test_temporary_answers_to_the_end_are_rest_unavailable(env: Env) -> None:
    env.mock.get(f"{API}/incidents/P1", status=503)
    with pytest.raises(RestUnavailable) as caught:
        env.client.get_incident("P1")
    assert caught.value.status == 503 and len(env.mock.calls) == 3


def test_creating_a_subscription_is_not_retried_after_a_5xx_but_is_after_a_429(env: Env) -> None:
    env.mock.post(f"{API}/webhook_subscriptions", status=502)
    with pytest.raises(RestUnavailable):
        env.client.create_webhook_subscription("https://acme.example/hook")
    assert len(env.mock.calls) == 1
    env.mock.replace(responses.POST, f"{API}/webhook_subscriptions", status=429, headers={"Retry-After": "2"})
    with pytest.raises(RestUnavailable):
        env.client.create_webhook_subscription("https://acme.example/hook")
    assert len(env.mock.calls) == 1 + 3


@pytest.mark.parametrize(("status", "error"), [(400, RestError), (404, NotFound), (409, RestError), (302, None)])
def test_final_statuses(env: Env, status: int, error: type[Exception] | None) -> None:
    env.mock.get(
        f"{API}/incidents/P1",
        status=status,
        json={"error": {"message": "Nope"}},
        headers={"Location": "https://evil.example/"},
    )
    if error is None:
        with pytest.raises(RestError):  # a redirect is not followed, and holds no incident
            env.client.get_incident("P1")
    else:
        with pytest.raises(error) as caught:
            env.client.get_incident("P1")
        assert "Nope" in str(caught.value)
    assert len(env.mock.calls) == 1


def test_create_webhook_subscription_returns_it_and_its_secret(env: Env) -> None:
    answer = {
        "webhook_subscription": {
            "id": "PSUB1",
            "type": "webhook_subscription",
            "active": True,
            "delivery_method": {"type": "http_delivery_method", "url": "https://acme.example/hook", "secret": SECRET},
            "events": ["incident.triggered"],
            "filter": {"type": "team_reference", "id": "PTEAM"},
            "description": "pdconnect",
        }
    }
    env.mock.post(f"{API}/webhook_subscriptions", json=answer)
    created = env.client.create_webhook_subscription(
        "https://acme.example/hook", team_id="PTEAM", events=["incident.triggered"], custom_headers={"X-Acme": "1"}
    )
    assert isinstance(created, NewSubscription)
    subscription, secret = created
    assert secret == SECRET and subscription.id == "PSUB1" and subscription.filter_type == "team_reference"
    assert SECRET not in repr(created)
    sent = json.loads(env.mock.calls[0].request.body)["webhook_subscription"]
    assert sent["filter"] == {"type": "team_reference", "id": "PTEAM"}
    assert sent["delivery_method"]["custom_headers"] == [{"name": "X-Acme", "value": "1"}]


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"webhook_subscription": {"id": "P"}},
        {"webhook_subscription": {"id": "P", "delivery_method": {"secret": ""}}},
        {"webhook_subscription": {"delivery_method": {"secret": "s"}}},
    ],
)
def test_a_create_answer_without_id_or_secret_is_a_rest_error(env: Env, answer: dict[str, Any]) -> None:
    env.mock.post(f"{API}/webhook_subscriptions", json=answer)
    with pytest.raises(RestError):
        env.client.create_webhook_subscription("https://acme.example/hook")


def test_ping_enable_update_list_delete(env: Env) -> None:
    sub = {"id": "PSUB1", "delivery_method": {"url": "https://acme.example/hook"}, "active": True}
    env.mock.post(f"{API}/webhook_subscriptions/PSUB1/ping", status=202)
    env.mock.post(f"{API}/webhook_subscriptions/PSUB1/enable", json={"webhook_subscription": sub})
    env.mock.put(f"{API}/webhook_subscriptions/PSUB1", json={"webhook_subscription": {**sub, "active": False}})
    env.mock.get(f"{API}/webhook_subscriptions", json={"webhook_subscriptions": [sub], "more": False})
    env.mock.delete(f"{API}/webhook_subscriptions/PSUB1", status=204)
    env.mock.delete(f"{API}/webhook_subscriptions/PGONE", status=404)
    env.client.ping_webhook_subscription("PSUB1")
    assert env.client.enable_webhook_subscription("PSUB1").active is True
    assert env.client.update_webhook_subscription("PSUB1", active=False, events=["incident.resolved"]).active is False
    assert json.loads(env.mock.calls[2].request.body) == {
        "webhook_subscription": {"events": ["incident.resolved"], "active": False}
    }
    assert [s.id for s in env.client.list_webhook_subscriptions()] == ["PSUB1"]
    assert env.client.delete_webhook_subscription("PSUB1") is True
    assert env.client.delete_webhook_subscription("PGONE") is False


@pytest.mark.parametrize("good", ["PABC123", "Q1-2_3.4:5~6", "12345"])
def test_pagerduty_ids_are_one_path_segment(env: Env, good: str) -> None:
    env.mock.get(f"{API}/incidents/{good}", json={"incident": {"id": good}})
    assert env.client.get_incident(good) == {"id": good}


@pytest.mark.parametrize(
    "hostile",
    [
        "",
        " ",
        "a\nb",
        "a\x00",
        "\ud800",
        "x" * 300,
        None,
        5,
        "../../users",
        "a/b",
        "..",
        ".",
        "...",
        "%2e%2e",
        "P1?x=1",
        "P1#f",
        "P 1",
        "é",
    ],
)
def test_hostile_ids_are_refused_before_any_request(env: Env, hostile: object) -> None:
    with pytest.raises(InvalidData):
        env.client.get_incident(hostile)  # type: ignore[arg-type]
    assert len(env.mock.calls) == 0


@pytest.mark.parametrize(
    "path",
    [
        "https://evil.example/services",
        "//evil.example/services",
        "http://api.pagerduty.com/x",
        "/a/../../x",
        "services",
        "/a\\b",
        "/a b",
        "/x?y",
        "https:evil.example",
    ],
)
def test_the_token_never_leaves_the_rest_base(env: Env, path: str) -> None:
    with pytest.raises(UnsafeRestURL):
        rest_url(env.saved, path)


@pytest.mark.parametrize(
    "url", ["javascript:x", "https://api.pagerduty.com/?q=1", "not a url", "https://api.pagerduty.com#f"]
)
def test_a_stored_base_that_is_not_a_base_url_is_refused(env: Env, url: str) -> None:
    from dataclasses import replace

    bad = replace(env.saved, account=replace(ACCOUNT, rest_base_url=url))
    with pytest.raises(UnsafeRestURL):
        rest_url(bad, "/services")


@pytest.mark.parametrize(
    "url", ["http://acme.example/hook", "javascript:alert(1)", "https://user:pw@acme.example/h", ""]
)
def test_create_refuses_unsafe_webhook_urls(env: Env, url: str) -> None:
    with pytest.raises(UnsafeURLError):
        env.client.create_webhook_subscription(url)
    assert len(env.mock.calls) == 0


def test_unknown_owner_is_credential_not_found(env: Env) -> None:
    client = AccountRestClient(env.refresher, "mallory", ACCOUNT.account_id)
    with pytest.raises(CredentialNotFound):
        client.list_services()
    assert len(env.mock.calls) == 0


def test_no_token_in_any_log_record_or_repr(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    env.mock.get(f"{API}/incidents/P1", status=401, json={"error": {"message": "bad"}})
    env.mock.get(f"{API}/incidents/P1", status=503)
    env.mock.get(f"{API}/incidents/P1", json={"incident": {"id": "P1"}})
    env.mock.get(f"{API}/services", status=403, json={"error": {"message": "nope"}})
    with caplog.at_level(logging.DEBUG):
        env.client.get_incident("P1")
        with pytest.raises(Forbidden):
            env.client.list_services()
    assert caplog.records
    text = "\n".join(f"{r.getMessage()} {r.args!r}" for r in caplog.records) + repr(env.client) + repr(env.refresher)
    for secret in env.secrets():
        assert secret not in text


@pytest.mark.parametrize(
    ("granted", "needed", "expected"),
    [
        ({"write"}, "webhook_subscriptions.write", True),
        ({"read"}, "services.read", True),
        ({"read"}, "webhook_subscriptions.write", False),
        ({"services.write"}, "services.read", True),
        ({"services.read"}, "services.write", False),
        ({"incidents.read"}, "services.read", False),
        (set(), "services.read", False),
    ],
)
def test_covers(granted: set[str], needed: str, expected: bool) -> None:
    assert covers(frozenset(granted), needed) is expected


def test_the_transport_must_send_any_method() -> None:
    class PostOnly:
        def post(self, *args: object) -> None: ...

    store, oauth = MemoryCredentialStore(), FakeOAuth()
    store.save("o", ACCOUNT, token_set())
    with pytest.raises(ValueError, match="request"):
        AccountRestClient(TokenRefresher(store, oauth), "o", ACCOUNT.account_id, transport=PostOnly())


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308, 304, 100])
def test_a_redirect_or_other_non_2xx_is_never_success(env: Env, status: int) -> None:
    env.mock.delete(f"{API}/webhook_subscriptions/PSUB1", status=status, headers={"Location": "https://evil.example/"})
    env.mock.post(
        f"{API}/webhook_subscriptions/PSUB1/ping", status=status, headers={"Location": "https://evil.example/"}
    )
    with pytest.raises(RestError) as caught:
        env.client.delete_webhook_subscription("PSUB1")
    assert caught.value.status == status
    with pytest.raises(RestError):
        env.client.ping_webhook_subscription("PSUB1")
    assert [call.request.url for call in env.mock.calls] == [
        f"{API}/webhook_subscriptions/PSUB1",
        f"{API}/webhook_subscriptions/PSUB1/ping",
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"events": "incident.triggered"},  # a string is not a list of event names
        {"events": ["incident.triggered", 5]},
        {"events": ["incident\ntriggered"]},
        {"events": []},
        {"description": 5},
        {"description": None},
        {"custom_headers": {"X-A": 5}},
        {"custom_headers": {"X-A\r\nX-B": "1"}},
        {"custom_headers": ["X-A", "1"]},
        {"service_id": "PSVC", "team_id": "PTEAM"},
        {"service_id": "../x"},
        {"team_id": ""},
    ],
    ids=repr,
)
def test_create_refuses_hostile_arguments_before_any_request(env: Env, kwargs: dict[str, Any]) -> None:
    with pytest.raises((InvalidData, ValueError)):
        env.client.create_webhook_subscription("https://acme.example/hook", **kwargs)
    assert len(env.mock.calls) == 0


@pytest.mark.parametrize("kwargs", [{"events": "incident.resolved"}, {"description": 3}, {"active": "no"}, {"url": 5}])
def test_update_refuses_hostile_arguments_before_any_request(env: Env, kwargs: dict[str, Any]) -> None:
    with pytest.raises((InvalidData, ValueError)):
        env.client.update_webhook_subscription("PSUB1", **kwargs)
    assert len(env.mock.calls) == 0


@pytest.mark.parametrize("max_items", [0, -1, True, 1.5, "10", None, 10_001])
def test_hostile_max_items_are_refused(env: Env, max_items: object) -> None:
    with pytest.raises(ValueError, match="max_items"):
        env.client.list_services(max_items=max_items)  # type: ignore[arg-type]
    assert len(env.mock.calls) == 0
