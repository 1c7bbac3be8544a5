"""EU accounts: their REST and events endpoints live under ``<sandbox>/eu`` and nowhere else (issue 10).

An EU account's credentials or routing key at the US base are refused as ones that do not
exist there (401 for REST, the events API's 400 "Invalid routing key"), and the reverse.
What PagerDuty answers across regions is UNCONFIRMED; the sandbox takes the stricter reading.
"""

from __future__ import annotations

import json

import pytest
import requests

from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.sandbox.grants import bearer

EVENT_PATHS = ["/v2/enqueue", "/v2/change/enqueue", "/generic/2010-04-15/create_event.json"]


def _event(path: str, key: str) -> dict[str, object]:
    if path.startswith("/generic"):
        return {"service_key": key, "event_type": "trigger", "description": "down"}
    if "change" in path:
        return {"routing_key": key, "payload": {"summary": "deploy", "source": "ci"}}
    return {
        "routing_key": key,
        "event_action": "trigger",
        "payload": {"summary": "d", "source": "h", "severity": "info"},
    }


@pytest.fixture
def euro(pagerduty_sandbox: PagerDutySandbox) -> str:
    pagerduty_sandbox.create_account("euro", region="eu")
    return pagerduty_sandbox.create_service("Euro API", account="euro")[1]


@pytest.mark.parametrize("path", EVENT_PATHS)
def test_an_eu_key_is_taken_at_the_eu_events_path_only(
    pagerduty_sandbox: PagerDutySandbox, euro: str, path: str
) -> None:
    at_us = requests.post(pagerduty_sandbox.url + path, json=_event(path, euro), timeout=10)
    assert at_us.status_code == 400 and "Invalid" in json.dumps(at_us.json())
    at_eu = requests.post(pagerduty_sandbox.url + "/eu" + path, json=_event(path, euro), timeout=10)
    assert at_eu.status_code in (200, 202), at_eu.text
    records = pagerduty_sandbox.received(routing_key=euro)
    assert [r["path"] for r in records] == [path, "/eu" + path]
    assert records[0]["outcome"] == "rejected: key of another region"


@pytest.mark.parametrize("path", EVENT_PATHS)
def test_a_us_key_is_refused_at_the_eu_events_path(pagerduty_sandbox: PagerDutySandbox, path: str) -> None:
    key = pagerduty_sandbox.service_key()
    response = requests.post(pagerduty_sandbox.url + "/eu" + path, json=_event(path, key), timeout=10)
    assert response.status_code == 400
    assert pagerduty_sandbox.incidents() == []


def test_rest_credentials_work_in_their_own_region_only(pagerduty_sandbox: PagerDutySandbox, euro: str) -> None:
    sandbox = pagerduty_sandbox.sandbox
    eu_key, us_key = pagerduty_sandbox.api_key("euro"), pagerduty_sandbox.api_key("acme")
    eu_bearer = bearer(sandbox, "euro", scopes=["write"])
    us_bearer = bearer(sandbox, "acme", scopes=["write"])
    cases = [
        ("/eu", f"Token token={eu_key}", 200),
        ("/eu", f"Bearer {eu_bearer}", 200),
        ("", f"Token token={eu_key}", 401),
        ("", f"Bearer {eu_bearer}", 401),
        ("/eu", f"Token token={us_key}", 401),
        ("/eu", f"Bearer {us_bearer}", 401),
        ("", f"Token token={us_key}", 200),
    ]
    for prefix, authorization, status in cases:
        response = requests.get(
            pagerduty_sandbox.url + prefix + "/services",
            headers={"Authorization": authorization, "Accept": "application/json"},
            timeout=10,
        )
        assert response.status_code == status, (prefix, authorization[:12], response.text[:200])
    eu_services = pagerduty_sandbox.rest("GET", "/services", account="euro").json()["services"]
    assert [s["name"] for s in eu_services] == ["Euro API"]
    assert eu_services[0]["self"].startswith(pagerduty_sandbox.url + "/eu/services/")


def test_an_eu_subscription_is_made_and_read_under_eu(pagerduty_sandbox: PagerDutySandbox, euro: str) -> None:
    created = pagerduty_sandbox.subscribe("http://127.0.0.1:9/hook", account="euro")
    assert pagerduty_sandbox.rest_base("euro") == pagerduty_sandbox.url + "/eu"
    assert pagerduty_sandbox.rest("GET", f"/webhook_subscriptions/{created['id']}", account="euro").status_code == 200
    at_us = requests.get(
        f"{pagerduty_sandbox.url}/webhook_subscriptions/{created['id']}",
        headers={"Authorization": f"Token token={pagerduty_sandbox.api_key('acme')}"},
        timeout=10,
    )
    assert at_us.status_code == 404


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"subdomain": "eu-one", "region": "eu"}, 201),
        ({"subdomain": "us-one", "region": "us"}, 201),
        ({"subdomain": "x", "region": "EU"}, 400),
        ({"subdomain": "x", "region": "apac"}, 400),
        ({"subdomain": "x", "region": 1}, 400),
        ({"subdomain": "x", "region": ["eu"]}, 400),
        ({"subdomain": "acme", "region": "eu"}, 409),
    ],
)
def test_account_regions_in_the_control_api(
    pagerduty_sandbox: PagerDutySandbox, body: dict[str, object], status: int
) -> None:
    response = requests.post(pagerduty_sandbox.url + "/_sandbox/api/accounts", json=body, timeout=10)
    assert response.status_code == status, response.text
    if status == 201:
        assert response.json()["account"]["region"] == body["region"]


def test_eu_paths_that_do_not_exist_answer_json_404(pagerduty_sandbox: PagerDutySandbox) -> None:
    for path in ("/eu", "/eu/", "/eu/nothing", "/eu/connect", "/eu/_sandbox/api/state"):
        response = requests.get(pagerduty_sandbox.url + path, timeout=10)
        assert response.status_code in (401, 404), path
        assert response.json()["error"]["message"]
