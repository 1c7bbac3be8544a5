"""Disabled and deleted integration keys (issue 9): refused exactly like keys PagerDuty does not know."""

from __future__ import annotations

import json
import secrets
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from pdconnect.sandbox import Sandbox, SandboxSettings
from pdconnect.sandbox.client import SandboxClientError
from pdconnect.sandbox.model import Incident
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox

V2 = "/v2/enqueue"
CHANGE = "/v2/change/enqueue"
V1 = "/generic/2010-04-15/create_event.json"


def _event(kind: str, key: str) -> tuple[str, dict[str, Any]]:
    payload = {"summary": "CPU high", "source": "web-1", "severity": "critical"}
    return {
        "trigger": (V2, {"routing_key": key, "event_action": "trigger", "dedup_key": "d1", "payload": payload}),
        "acknowledge": (V2, {"routing_key": key, "event_action": "acknowledge", "dedup_key": "d1"}),
        "resolve": (V2, {"routing_key": key, "event_action": "resolve", "dedup_key": "d1"}),
        "change": (CHANGE, {"routing_key": key, "payload": {"summary": "Deployed v42", "source": "ci"}}),
        "v1-trigger": (V1, {"service_key": key, "event_type": "trigger", "incident_key": "d1", "description": "x"}),
        "v1-resolve": (V1, {"service_key": key, "event_type": "resolve", "incident_key": "d1"}),
    }[kind]


def _send(sandbox: PagerDutySandbox, kind: str, key: str) -> requests.Response:
    path, body = _event(kind, key)
    return requests.post(sandbox.url + path, json=body, timeout=10)


KINDS = ("trigger", "acknowledge", "resolve", "change", "v1-trigger", "v1-resolve")


@pytest.mark.parametrize("state", ["disabled", "deleted"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_disabled_or_deleted_key_is_answered_as_an_unknown_key(
    pagerduty_sandbox: PagerDutySandbox, kind: str, state: str
) -> None:
    key = pagerduty_sandbox.service_key()
    assert _send(pagerduty_sandbox, "trigger", key).status_code == 202
    unknown = _send(pagerduty_sandbox, kind, secrets.token_hex(16))
    if state == "disabled":
        assert pagerduty_sandbox.disable_key(key)["disabled"] is True
    else:
        pagerduty_sandbox.delete_key(key)
    refused = _send(pagerduty_sandbox, kind, key)
    assert (refused.status_code, refused.json()) == (unknown.status_code, unknown.json())
    assert refused.status_code == 400
    assert refused.json()["errors"] == ["Invalid service key" if kind.startswith("v1") else "Invalid routing key"]
    # Nothing happened to the incident the key opened before.
    (incident,) = pagerduty_sandbox.incidents()
    assert incident["status"] == "triggered"
    assert len(incident["timeline"]) == 1
    assert (
        pagerduty_sandbox.received()[-1]["outcome"]
        == f"rejected: {'disabled' if state == 'disabled' else 'unknown'} key"
    )


def test_an_enabled_key_works_again(pagerduty_sandbox: PagerDutySandbox) -> None:
    key = pagerduty_sandbox.service_key()
    pagerduty_sandbox.disable_key(key)
    assert _send(pagerduty_sandbox, "trigger", key).status_code == 400
    assert pagerduty_sandbox.enable_key(key)["disabled"] is False
    assert _send(pagerduty_sandbox, "trigger", key).status_code == 202
    assert _send(pagerduty_sandbox, "v1-resolve", key).status_code == 200


def test_a_deleted_key_is_gone_from_the_state(pagerduty_sandbox: PagerDutySandbox) -> None:
    key = pagerduty_sandbox.service_key()
    pagerduty_sandbox.delete_key(key)
    keys = [k["id"] for s in pagerduty_sandbox.state()["services"] for k in s["integration_keys"]]
    assert key not in keys
    with pytest.raises(SandboxClientError, match="404"):
        pagerduty_sandbox.enable_key(key)
    with pytest.raises(SandboxClientError, match="404"):
        pagerduty_sandbox.delete_key(key)


def test_service_key_skips_a_disabled_key(pagerduty_sandbox: PagerDutySandbox) -> None:
    first = pagerduty_sandbox.service_key()
    pagerduty_sandbox.disable_key(first)
    with pytest.raises(SandboxClientError, match="no Events API v2 key"):
        pagerduty_sandbox.service_key()


HOSTILE_KEY_IDS = [
    "nope",
    "0" * 32,
    "%00",
    "..",
    "%2e%2e",
    "%0d%0aSet-Cookie:%20x=1",
    "\u00e9t\u00e9",
    "%ff%fe",
    "a" * 5000,
    "R0212P1QXGEIQE2NMTQ7L7WXD00DWHIN",
]


@pytest.mark.parametrize("key_id", HOSTILE_KEY_IDS)
@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("DELETE", ""), ("POST", "/disable"), ("POST", "/enable")])
def test_the_control_api_answers_404_json_to_unknown_keys(
    pagerduty_sandbox: PagerDutySandbox, key_id: str, method: str, suffix: str
) -> None:
    response = requests.request(method, f"{pagerduty_sandbox.url}/_sandbox/api/keys/{key_id}{suffix}", timeout=10)
    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/json")
    assert "message" in response.json()["error"]
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("change", ["frobnicate", "delete", "DISABLE", ""])
def test_the_control_api_refuses_other_changes(pagerduty_sandbox: PagerDutySandbox, change: str) -> None:
    key = pagerduty_sandbox.service_key()
    response = requests.post(f"{pagerduty_sandbox.url}/_sandbox/api/keys/{key}/{change}", timeout=10)
    assert response.status_code in (404, 405)
    assert _send(pagerduty_sandbox, "trigger", key).status_code == 202, "the key is untouched"


# -- the service page ----------------------------------------------------------------------


def _service_id(sandbox: PagerDutySandbox, name: str = "Checkout API") -> str:
    return str(sandbox.service(name)["id"])


def test_the_service_page_disables_enables_and_deletes_keys(pagerduty_sandbox: PagerDutySandbox) -> None:
    key = pagerduty_sandbox.service_key()
    service = _service_id(pagerduty_sandbox)
    page = requests.get(f"{pagerduty_sandbox.url}/services/{service}", timeout=10).text
    assert f'action="/services/{service}/integrations/{key}/disable"' in page
    assert f'action="/services/{service}/integrations/{key}/delete"' in page

    base = f"{pagerduty_sandbox.url}/services/{service}/integrations/{key}"
    answer = requests.post(base + "/disable", allow_redirects=False, timeout=10)
    assert (answer.status_code, answer.headers["Location"]) == (303, f"/services/{service}")
    page = requests.get(f"{pagerduty_sandbox.url}/services/{service}", timeout=10).text
    assert f'action="/services/{service}/integrations/{key}/enable"' in page
    assert "<td data-key-state>disabled</td>" in page
    assert _send(pagerduty_sandbox, "trigger", key).status_code == 400

    requests.post(base + "/enable", allow_redirects=False, timeout=10)
    assert _send(pagerduty_sandbox, "trigger", key).status_code == 202
    requests.post(base + "/delete", allow_redirects=False, timeout=10)
    assert key not in requests.get(f"{pagerduty_sandbox.url}/services/{service}", timeout=10).text
    assert _send(pagerduty_sandbox, "trigger", key).status_code == 400


def test_the_service_page_does_not_touch_another_services_key(pagerduty_sandbox: PagerDutySandbox) -> None:
    key = pagerduty_sandbox.service_key("Checkout API")
    pagerduty_sandbox.sandbox.create_account("other")
    other_service, _ = pagerduty_sandbox.create_service("Billing", account="other")
    for change in ("disable", "delete"):
        answer = requests.post(
            f"{pagerduty_sandbox.url}/services/{other_service}/integrations/{key}/{change}", timeout=10
        )
        assert answer.status_code == 404
        assert answer.headers["Content-Type"].startswith("text/html")
    assert _send(pagerduty_sandbox, "trigger", key).status_code == 202


# -- the engine, without HTTP ---------------------------------------------------------------


def _post(sandbox: Sandbox, kind: str, key: str) -> int:
    path, body = _event(kind, key)
    raw = json.dumps(body).encode()
    handle = {V2: sandbox.handle_alert, CHANGE: sandbox.handle_change, V1: sandbox.handle_legacy}[path]
    return handle(raw).status


@settings(max_examples=60)
@given(st.lists(st.sampled_from(["disable", "enable", "delete", *KINDS]), max_size=12))
def test_any_sequence_of_key_changes_matches_a_model(steps: list[str]) -> None:
    sandbox = Sandbox()
    key = sandbox.keys_of(sandbox.services()[0].id)[0].id
    state = "enabled"
    for step in steps:
        if step in ("disable", "enable"):
            if state == "deleted":
                with pytest.raises(Exception, match="No such integration key"):
                    sandbox.set_key_disabled(key, step == "disable")
            else:
                sandbox.set_key_disabled(key, step == "disable")
                state = f"{step}d"
        elif step == "delete":
            if state == "deleted":
                with pytest.raises(Exception, match="No such integration key"):
                    sandbox.delete_key(key)
            else:
                sandbox.delete_key(key)
                state = "deleted"
        else:
            status = _post(sandbox, step, key)
            if state == "enabled":
                assert status in (200, 202)
            else:
                assert status == 400
    sandbox.close()


def test_disabled_survives_a_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "sandbox.db")
    first = Sandbox(db_path=db)
    keys = first.keys_of(first.services()[0].id)
    disabled = keys[0].id
    first.set_key_disabled(disabled, True)
    deleted = first.keys_of(first.services()[1].id)[0].id
    first.delete_key(deleted)
    first.close()
    second = Sandbox(db_path=db)
    assert _post(second, "trigger", disabled) == 400
    assert _post(second, "trigger", deleted) == 400
    assert second.store.all(Incident) == []
    second.close()


# -- secrets stay out of reprs and error messages ---------------------------------------------


def test_reprs_hide_keys_and_secrets() -> None:
    sandbox = Sandbox()
    key = sandbox.keys_of(sandbox.services()[0].id)[0]
    subscription = sandbox.subscribe("http://127.0.0.1:9/hooks")
    assert key.id not in repr(key)
    assert repr(key).count(key.id[-4:]) == 1
    assert subscription.secret not in repr(subscription)
    assert key.id not in repr(sandbox.store.all(type(key)))
    sandbox.close()


@pytest.mark.parametrize("call", ["disable_key", "enable_key", "delete_key"])
def test_client_errors_do_not_show_the_key(pagerduty_sandbox: PagerDutySandbox, call: str) -> None:
    key = secrets.token_hex(16)
    with pytest.raises(SandboxClientError) as info:
        getattr(pagerduty_sandbox, call)(key)
    assert "404" in str(info.value)
    assert key not in str(info.value)
    assert key[-4:] in str(info.value)


def test_disabling_races_no_event_through() -> None:
    """Events in flight while a key is disabled: each is answered wholly before or wholly after."""
    sandbox = Sandbox(SandboxSettings(rate_limit=None))
    key = sandbox.keys_of(sandbox.services()[0].id)[0].id
    stop = threading.Event()
    started = threading.Barrier(5)

    def send() -> None:
        started.wait()
        count = 0
        while not stop.is_set() and count < 2000:
            count += 1
            _post(sandbox, "trigger" if count % 2 else "resolve", key)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    assert sandbox.wait_for(lambda: len(sandbox.received()) >= 50)
    with sandbox.store.lock:
        sandbox.set_key_disabled(key, True)
        cut = sandbox.received()[-1].seq
    assert sandbox.wait_for(lambda: sandbox.received()[-1].seq >= cut + 50)
    stop.set()
    for thread in threads:
        thread.join()
    received = sandbox.received()
    assert {r.status for r in received if r.seq <= cut} == {202}
    assert {r.status for r in received if r.seq > cut} == {400}
    assert sum(1 for r in received if r.seq > cut) >= 50
    sandbox.close()
