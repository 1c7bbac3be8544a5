"""Every sandbox REST call made with another account's credentials is refused (issue 10).

A table over every REST route and every kind of credential an attacker can hold: none,
garbage, another account's API key or Bearer token, an expired token, a read-only key used
for a write, a scoped token without the route's scope, a classic ``read`` token used for a
write, an observer's ``write`` token, and credentials of the other region. Then a property:
no answer to account B's credentials, for any route, id or query, holds an id of account A.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect.sandbox import RetrySchedule, Sandbox, SandboxServer, SandboxSettings
from pdconnect.sandbox.client import SandboxClient
from pdconnect.sandbox.model import KINDS, Subscription
from tests.sandbox.grants import bearer

HOOK = "http://127.0.0.1:9/hook"
ACCEPT = "application/vnd.pagerduty+json;version=2"


@dataclass
class World:
    """Two US accounts (A ``acme``, B ``beta``) and one EU account, each with its own things."""

    server: SandboxServer
    client: SandboxClient
    ids: dict[str, dict[str, str]]  # account -> {"service", "incident", "subscription"}
    a_ids: frozenset[str]
    creds: dict[str, str | None]  # credential kind -> Authorization header value

    @property
    def sandbox(self) -> Sandbox:
        return self.server.sandbox

    def call(self, method: str, path: str, authorization: str | None, body: object = None) -> requests.Response:
        headers = {"Accept": ACCEPT}
        if authorization is not None:
            headers["Authorization"] = authorization
        return requests.request(method, self.server.url + path, headers=headers, json=body, timeout=10)


def _things_of(client: SandboxClient, sandbox: Sandbox, account: str) -> dict[str, str]:
    service_id, key = client.create_service(f"{account} checkout", account=account)
    trigger = {"routing_key": key, "event_action": "trigger", "dedup_key": f"{account}-1",
               "payload": {"summary": f"{account} down", "source": "h", "severity": "critical"}}  # fmt: skip
    prefix = "/eu" if account == "euro" else ""
    assert requests.post(client.url + prefix + "/v2/enqueue", json=trigger, timeout=10).status_code == 202
    incident = next(i for i in sandbox.incidents() if i.account == account)
    created = client.rest(
        "POST",
        "/webhook_subscriptions",
        account=account,
        json={"webhook_subscription": {"delivery_method": {"url": HOOK},
                                       "filter": {"type": "service_reference", "id": service_id}}},
    )  # fmt: skip
    assert created.status_code == 200, created.text
    return {
        "service": service_id,
        "incident": incident.id,
        "subscription": created.json()["webhook_subscription"]["id"],
    }


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    settings_ = SandboxSettings(webhook_schedule=RetrySchedule(delays=(), disabled_for=1.0))
    server = SandboxServer(Sandbox(settings_)).start()
    client = SandboxClient(server.url)
    sandbox = server.sandbox
    client.create_account("beta")
    client.create_account("euro", region="eu")
    ids = {account: _things_of(client, sandbox, account) for account in ("acme", "beta", "euro")}
    with sandbox.store.lock:
        records = [r for cls in KINDS.values() for r in sandbox.store.all(cls)]
    a_ids = {r.id for r in records if getattr(r, "account", None) == "acme"} | {"acme", *ids["acme"].values()}
    expired = bearer(sandbox, "acme", scopes=["write"])
    client._api("POST", "/_sandbox/api/oauth/tokens/expire", json={"token": expired})
    creds: dict[str, str | None] = {
        "none": None,
        "garbage key": "Token token=garbage",
        "garbage bearer": "Bearer pdus+_0garbage",
        "other account's key": f"Token token={client.api_key('beta')}",
        "other account's bearer": f"Bearer {bearer(sandbox, 'beta', scopes=['write'])}",
        "expired bearer": f"Bearer {expired}",
        "read-only key": f"Token token={client.new_api_key('acme', read_only=True)}",
        "classic read token": f"Bearer {bearer(sandbox, 'acme', scopes=['read'])}",
        "scoped token missing the scope": f"Bearer {bearer(sandbox, 'acme', scopes=['users.read'], kind='scoped')}",
        "observer with write": f"Bearer {bearer(sandbox, 'acme', scopes=['write'], role='observer')}",
        "responder with write": f"Bearer {bearer(sandbox, 'acme', scopes=['write'], role='responder')}",
        "EU account's key at the US base": f"Token token={client.api_key('euro')}",
        "EU account's bearer at the US base": f"Bearer {bearer(sandbox, 'euro', scopes=['write'])}",
        "own key": f"Token token={client.api_key('acme')}",
    }
    yield World(server, client, ids, frozenset(a_ids), creds)
    client.close()
    server.stop()


#: Every REST route, with A's ids filled in, and whether it changes something.
ROUTES = [
    ("GET", "/services", False),
    ("GET", "/services/{service}", False),
    ("GET", "/incidents/{incident}", False),
    ("GET", "/webhook_subscriptions", False),
    ("POST", "/webhook_subscriptions", True),
    ("GET", "/webhook_subscriptions/{subscription}", False),
    ("PUT", "/webhook_subscriptions/{subscription}", True),
    ("DELETE", "/webhook_subscriptions/{subscription}", True),
    ("POST", "/webhook_subscriptions/{subscription}/ping", True),
    ("POST", "/webhook_subscriptions/{subscription}/enable", True),
]
LISTS = {"/services", "/webhook_subscriptions"}
UNAUTHENTICATED = ["none", "garbage key", "garbage bearer", "expired bearer",
                   "EU account's key at the US base", "EU account's bearer at the US base"]  # fmt: skip
OTHER_ACCOUNT = ["other account's key", "other account's bearer"]
#: Credentials that may read but not change (or not change subscriptions): tried on writes only.
WRITES_ONLY = ["read-only key", "classic read token", "observer with write", "responder with write"]
#: Credentials that may read but not change (or not change subscriptions): tried on writes only.
WRITES_ONLY = ["read-only key", "classic read token", "observer with write", "responder with write"]


def _body(world: World, method: str, path: str) -> object:
    if method == "POST" and path == "/webhook_subscriptions":
        service = world.ids["acme"]["service"]
        return {"webhook_subscription": {"delivery_method": {"url": HOOK},
                                         "filter": {"type": "service_reference", "id": service}}}  # fmt: skip
    if method == "PUT":
        return {"webhook_subscription": {"description": "taken over", "active": False}}
    return None


def _expected(kind: str, method: str, path: str, write: bool) -> int:
    """The status PagerDuty's rules give ``kind`` on this route of account A."""
    if kind in UNAUTHENTICATED:
        return 401
    if kind in OTHER_ACCOUNT:
        if path in LISTS and method == "GET":
            return 200  # its own (empty of A) list
        return 400 if path == "/webhook_subscriptions" else 404  # A's service is no service of B's
    if kind == "read-only key" or kind == "classic read token":
        return 403 if write else 200
    if kind == "scoped token missing the scope":
        return 403
    if kind in ("observer with write", "responder with write"):
        return 403 if write and "webhook_subscriptions" in path else 200
    raise AssertionError(kind)


def _a_is_untouched(world: World) -> None:
    mine = world.ids["acme"]["subscription"]
    subscription = world.sandbox.store.get(Subscription, mine)
    assert subscription is not None and subscription.active and subscription.description == ""
    assert [s.account for s in world.sandbox.store.all(Subscription)] == ["acme", "beta", "euro"]
    assert not [d for d in world.sandbox.deliveries() if d.subscription == mine and d.event_type == "pagey.ping"]


CASES = [
    (kind, method, path, write)
    for kind in [*UNAUTHENTICATED, *OTHER_ACCOUNT, "scoped token missing the scope", *WRITES_ONLY]
    for method, path, write in ROUTES
    if kind not in WRITES_ONLY or write
]


@pytest.mark.parametrize(("kind", "method", "path", "write"), CASES, ids=[f"{c[0]}-{c[1]} {c[2]}" for c in CASES])
def test_every_route_refuses_what_pagerduty_refuses(
    world: World, kind: str, method: str, path: str, write: bool
) -> None:
    filled = path.format(**world.ids["acme"])
    response = world.call(method, filled, world.creds[kind], _body(world, method, path))
    expected = _expected(kind, method, path, write)
    assert response.status_code == expected, (kind, method, filled, response.text[:300])
    assert not world.a_ids & set(_ids_in(response.text)) or kind not in OTHER_ACCOUNT
    if expected >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and isinstance(error["code"], int)
        assert "garbage" not in response.text and "pdus+" not in response.text  # no credential echoed
    if expected == 403 and kind == "scoped token missing the scope":
        assert "scope" in response.json()["error"]["message"]
    if expected == 403 and kind.endswith("with write"):
        assert "role" in response.json()["error"]["message"]
    _a_is_untouched(world)


def test_a_list_with_another_accounts_credentials_shows_only_that_account(world: World) -> None:
    for path in sorted(LISTS):
        for kind in OTHER_ACCOUNT:
            response = world.call("GET", path + "?total=true", world.creds[kind])
            body = response.json()
            name = path.strip("/")
            assert body["total"] == len(body[name]) == 1, body  # beta's one service, one subscription
            assert not world.a_ids & set(_ids_in(response.text))


def test_the_own_account_reads_everything_of_its_own(world: World) -> None:
    own = world.creds["own key"]
    for method, path, write in ROUTES:
        if not write:
            response = world.call(method, path.format(**world.ids["acme"]), own)
            assert response.status_code == 200, (path, response.text[:200])
            assert world.ids["acme"][path.rsplit("{", 1)[-1].rstrip("}")] in response.text if "{" in path else True


def _ids_in(text: str) -> list[str]:
    """Every string anywhere in a JSON answer (ids, but also names: a superset is fine)."""
    try:
        data = json.loads(text)
    except ValueError:
        return []
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            found.append(value)
            found.extend(part for part in value.split("/") if part)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(data)
    return found


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from(ROUTES),
    which=st.sampled_from(["acme", "beta", "made up"]),
    made_up=st.text(alphabet=string.ascii_letters + string.digits + "-_.%~+ ", min_size=1, max_size=12),
    query=st.sampled_from(["", "?total=true", "?limit=1&offset=0", "?limit=100", "?offset=1"]),
    kind=st.sampled_from(OTHER_ACCOUNT),
    region=st.sampled_from(["", "/eu"]),
)
def test_no_answer_to_b_ever_holds_an_id_of_a(
    world: World,
    route: tuple[str, str, bool],
    which: str,
    made_up: str,
    query: str,
    kind: str,
    region: str,
) -> None:
    method, path, _ = route
    values = world.ids[which] if which != "made up" else dict.fromkeys(world.ids["acme"], made_up)
    filled = region + path.format(**{k: requests.utils.quote(v, safe="") for k, v in values.items()}) + query
    body = _body(world, method, path)
    if method == "PUT" and which == "beta":
        body = {"webhook_subscription": {"description": "b's own"}}
    if method in ("DELETE", "PUT") and which == "beta":
        return  # B may change its own subscription; the table covers that A's stays untouched
    response = world.call(method, filled, world.creds[kind], body)
    assert response.status_code < 500
    assert not world.a_ids & set(_ids_in(response.text)), (method, filled, response.text[:300])
    assert "acme" not in response.text
    _a_is_untouched(world)
