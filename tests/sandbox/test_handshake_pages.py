"""The sandbox's Connect and install-flow pages, driven without a browser."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect import Cancelled, Connected, EventsApi, Handshake, KeyType, new_session_binding
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox

VENDOR_KEY = "2fc7c9f3c8030e74aae6"
APP_ID = "PSANDB1"
CALLBACK = "https://vendor.example/pagerduty/callback"


@pytest.fixture
def handshake(pagerduty_sandbox: PagerDutySandbox) -> Handshake:
    pagerduty_sandbox.register_app(APP_ID, [CALLBACK])
    return Handshake(
        secret="x" * 32,
        vendor_key=VENDOR_KEY,
        app_id=APP_ID,
        connect_base_url=pagerduty_sandbox.url,
        install_base_url=pagerduty_sandbox.url,
    )


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


# -- Connect ---------------------------------------------------------------------------------


def test_connect_to_an_existing_service(pagerduty_sandbox: PagerDutySandbox, handshake: Handshake) -> None:
    binding = new_session_binding()
    url = handshake.connect_url(CALLBACK, owner_id="org-1", session_binding=binding)
    callback = pagerduty_sandbox.connect(url, service="Database")
    assert callback.startswith(CALLBACK + "/")
    params = _query(callback)
    assert params["account"] == ["acme"]
    assert params["service_name"] == ["Database"]
    state = urlsplit(callback).path.rsplit("/", 1)[1]
    outcome = handshake.complete(urlsplit(callback).query, session_binding=binding, state=state)
    assert isinstance(outcome, Connected)
    integration = outcome.integration
    assert integration.events_api is EventsApi.V1
    assert integration.key_type is KeyType.SERVICE
    keys = pagerduty_sandbox.service("Database")["integration_keys"]
    made = [k for k in keys if k["id"] == integration.integration_key]
    assert made and made[0]["kind"] == "connect" and made[0]["vendor"] == VENDOR_KEY


def test_connect_creates_a_new_service_and_keeps_the_callback_query(
    pagerduty_sandbox: PagerDutySandbox, handshake: Handshake
) -> None:
    url = handshake.connect_url(
        CALLBACK + "?tenant=7", owner_id="o", session_binding=new_session_binding(), state_in_path=False
    )
    callback = pagerduty_sandbox.connect(url, new_service="Acme Monitoring alerts")
    params = _query(callback)
    assert params["tenant"] == ["7"]
    assert "state" in params
    assert params["service_name"] == ["Acme Monitoring alerts"]
    assert pagerduty_sandbox.service("Acme Monitoring alerts")["integration_keys"][0]["id"] == params["service_key"][0]


def test_connect_cancel(pagerduty_sandbox: PagerDutySandbox, handshake: Handshake) -> None:
    binding = new_session_binding()
    url = handshake.connect_url(CALLBACK, owner_id="o", session_binding=binding)
    callback = pagerduty_sandbox.connect(url, cancel=True)
    assert _query(callback) == {"error": ["cancelled"]}
    state = urlsplit(callback).path.rsplit("/", 1)[1]
    assert isinstance(handshake.complete(urlsplit(callback).query, session_binding=binding, state=state), Cancelled)


def test_connect_into_another_account(pagerduty_sandbox: PagerDutySandbox, handshake: Handshake) -> None:
    url = handshake.connect_url(CALLBACK, owner_id="o", session_binding=new_session_binding())
    callback = pagerduty_sandbox.connect(url, account="globex", service=None, new_service="Globex alerts")
    assert _query(callback)["account"] == ["globex"]


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"callback": CALLBACK}, "vendor parameter is missing"),
        ({"vendor": VENDOR_KEY}, "callback parameter must be an absolute URL"),
        ({"vendor": VENDOR_KEY, "callback": "/relative/path"}, "callback parameter must be an absolute URL"),
        ({"vendor": VENDOR_KEY, "callback": "javascript:alert(1)"}, "callback parameter must be an absolute URL"),
        ({"vendor": VENDOR_KEY, "callback": "http://[::1"}, "callback parameter must be an absolute URL"),
    ],
)
def test_connect_error_pages_never_redirect(
    pagerduty_sandbox: PagerDutySandbox, query: dict[str, str], message: str
) -> None:
    response = requests.get(pagerduty_sandbox.url + "/connect?" + urlencode(query), allow_redirects=False, timeout=10)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert message in response.text


# -- the install flow ------------------------------------------------------------------------


def test_install_two_services_and_a_ruleset(pagerduty_sandbox: PagerDutySandbox, handshake: Handshake) -> None:
    binding = new_session_binding()
    url = handshake.install_url(CALLBACK + "?workspace=acme-prod", owner_id="org-1", session_binding=binding)
    redirect = pagerduty_sandbox.install(url, services=["Checkout API", "Database"], rulesets=["Global Event Rules"])
    params = _query(redirect)
    assert params["workspace"] == ["acme-prod"], "the vendor's own query parameters survive"
    config = json.loads(params["config"][0])
    assert [entry["type"] for entry in config["integration_keys"]] == ["service", "service", "global_rule_set"]
    assert config["account"] == {"subdomain": "acme", "name": "Acme Corp"}
    outcome = handshake.complete(urlsplit(redirect).query, session_binding=binding)
    assert isinstance(outcome, Connected)
    assert [i.service_name for i in outcome.integrations] == ["Checkout API", "Database", "Global Event Rules"]
    assert [i.key_type for i in outcome.integrations] == [KeyType.SERVICE, KeyType.SERVICE, KeyType.RULESET]
    assert all(i.events_api is EventsApi.V2 for i in outcome.integrations)


@pytest.mark.parametrize(("field", "expected"), [("Name", {"Name"}), ("both", {"name", "Name"})])
def test_install_account_name_spelling(
    pagerduty_sandbox: PagerDutySandbox, handshake: Handshake, field: str, expected: set[str]
) -> None:
    pagerduty_sandbox.set_settings(account_name_field=field)
    url = handshake.install_url(CALLBACK, owner_id="o", session_binding=new_session_binding())
    config = json.loads(_query(pagerduty_sandbox.install(url))["config"][0])
    assert set(config["account"]) - {"subdomain"} == expected


def test_install_new_service(pagerduty_sandbox: PagerDutySandbox, handshake: Handshake) -> None:
    url = handshake.install_url(CALLBACK, owner_id="o", session_binding=new_session_binding())
    config = json.loads(_query(pagerduty_sandbox.install(url, services=[], new_service="Fresh"))["config"][0])
    assert [e["name"] for e in config["integration_keys"]] == ["Fresh"]


def test_install_cancel(pagerduty_sandbox: PagerDutySandbox, handshake: Handshake) -> None:
    url = handshake.install_url(CALLBACK, owner_id="o", session_binding=new_session_binding())
    assert _query(pagerduty_sandbox.install(url, cancel=True))["error"] == ["cancelled"]


def test_install_with_nothing_picked_stays_on_pagerduty(
    pagerduty_sandbox: PagerDutySandbox, handshake: Handshake
) -> None:
    url = handshake.install_url(CALLBACK, owner_id="o", session_binding=new_session_binding())
    with pytest.raises(AssertionError, match="Pick at least one service"):
        pagerduty_sandbox.install(url, services=[])


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ({"redirect_url": CALLBACK, "version": "2"}, 404, "App not found."),
        ({"app_id": "PNOPE00", "redirect_url": CALLBACK, "version": "2"}, 404, "App not found."),
        (
            {"app_id": APP_ID, "redirect_url": "https://evil.example/steal", "version": "2"},
            400,
            "The supplied redirect URL does not match a redirect URL configured by this app.",
        ),
        ({"app_id": APP_ID, "version": "2"}, 400, "does not match a redirect URL"),
        ({"app_id": APP_ID, "redirect_url": "http://[::1", "version": "2"}, 400, "does not match a redirect URL"),
        ({"app_id": APP_ID, "redirect_url": "http://h:port/", "version": "2"}, 400, "does not match a redirect URL"),
    ],
)
def test_install_error_pages(
    pagerduty_sandbox: PagerDutySandbox, handshake: Handshake, query: dict[str, str], status: int, message: str
) -> None:
    response = requests.get(
        pagerduty_sandbox.url + "/install/integration?" + urlencode(query), allow_redirects=False, timeout=10
    )
    assert response.status_code == status
    assert message in response.text
    assert "Location" not in response.headers


def test_redirect_url_matching_ignores_the_query(pagerduty_sandbox: PagerDutySandbox, handshake: Handshake) -> None:
    url = handshake.install_url(CALLBACK + "?a=1", owner_id="o", session_binding=new_session_binding())
    assert "config" in _query(pagerduty_sandbox.install(url))


def test_keys_from_the_install_flow_send_events(pagerduty_sandbox: PagerDutySandbox, handshake: Handshake) -> None:
    from pdconnect import Sender

    binding = new_session_binding()
    redirect = pagerduty_sandbox.install(handshake.install_url(CALLBACK, owner_id="o", session_binding=binding))
    integration = handshake.complete(urlsplit(redirect).query, session_binding=binding).integrations[0]  # type: ignore[union-attr]
    with Sender(events_base_url=pagerduty_sandbox.url) as sender:
        sender.trigger(integration, "It broke", source="app", severity="error", dedup_key="broke")
    assert pagerduty_sandbox.incident_for("broke")["status"] == "triggered"


_params = st.lists(
    st.tuples(
        st.sampled_from(["vendor", "callback", "app_id", "redirect_url", "version", "x"]),
        st.one_of(st.text(max_size=40), st.just(CALLBACK), st.just(APP_ID), st.just("http://[::1")),
    ),
    max_size=5,
)


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(params=_params, path=st.sampled_from(["/connect", "/install/integration"]))
def test_any_handshake_query_gets_a_page_never_a_server_error(
    pagerduty_sandbox: PagerDutySandbox, handshake: Handshake, params: list[tuple[str, str]], path: str
) -> None:
    response = requests.get(pagerduty_sandbox.url + path + "?" + urlencode(params), allow_redirects=False, timeout=10)
    assert response.status_code in (200, 400, 404)
    assert "Location" not in response.headers


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(
        ["/_sandbox/api/apps", "/_sandbox/api/accounts", "/_sandbox/api/services", "/webhook_subscriptions"]
    ),
    body=st.one_of(
        st.binary(max_size=40),
        st.dictionaries(
            st.sampled_from(["app_id", "redirect_urls", "subdomain", "name", "account", "webhook_subscription"]),
            st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.text(max_size=10), max_size=2)),
            max_size=4,
        ).map(lambda d: json.dumps(d).encode()),
    ),
)
def test_control_api_answers_bad_bodies_with_a_4xx_json_reason(
    pagerduty_sandbox: PagerDutySandbox, handshake: Handshake, path: str, body: bytes
) -> None:
    response = requests.post(
        pagerduty_sandbox.url + path,
        data=body,
        headers={"Authorization": f"Token token={pagerduty_sandbox.api_key()}"},
        timeout=10,
    )
    # A REST create answers 200 as PagerDuty's does, the control API 201.
    assert response.status_code in (200, 201, 400, 404), response.text[:200]
    if response.status_code >= 400:
        assert response.json()["error"]["message"]


@pytest.mark.parametrize("redirect_url", ["/relative", "ftp://host/cb", "http://[::1", "https://"])
def test_registering_an_app_refuses_a_redirect_url_that_is_not_absolute(
    pagerduty_sandbox: PagerDutySandbox, redirect_url: str
) -> None:
    response = requests.post(
        pagerduty_sandbox.url + "/_sandbox/api/apps",
        json={"app_id": "PBAD001", "redirect_urls": [redirect_url]},
        timeout=10,
    )
    assert response.status_code == 400
    assert "is not an absolute URL" in response.json()["error"]["message"]
