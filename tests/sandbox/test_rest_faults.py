"""Fault injection reaches the REST and identity endpoints when a plan targets them (issue 10).

A plan without ``target`` hits the events endpoints only, as before; ``target=rest``,
``target=identity`` or ``target=all`` add the other families: 429 with ``Retry-After``, 5xx
in each family's error shape, and dropped connections.
"""

from __future__ import annotations

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.sandbox.faults import FAMILIES, FaultPlan, Faults, FaultSpecError
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox

DISCOVERY = "/global/oauth/anonymous/.well-known/openid-configuration"


def _rest(sandbox: PagerDutySandbox) -> requests.Response:
    return sandbox.rest("GET", "/services")


def test_a_plan_without_a_target_leaves_rest_and_identity_alone(pagerduty_sandbox: PagerDutySandbox) -> None:
    pagerduty_sandbox.set_faults("429=1")
    assert _rest(pagerduty_sandbox).status_code == 200
    assert requests.get(pagerduty_sandbox.url + DISCOVERY, timeout=10).status_code == 200
    event = {"routing_key": pagerduty_sandbox.service_key(), "event_action": "trigger",
             "payload": {"summary": "s", "source": "h", "severity": "info"}}  # fmt: skip
    assert requests.post(pagerduty_sandbox.url + "/v2/enqueue", json=event, timeout=10).status_code == 429


def test_rest_429_carries_retry_after_in_pagerdutys_error_shape(pagerduty_sandbox: PagerDutySandbox) -> None:
    key = pagerduty_sandbox.api_key()
    pagerduty_sandbox.set_faults("429-retry-after=1,retry-after=7,target=rest")
    response = requests.get(
        pagerduty_sandbox.url + "/services", headers={"Authorization": f"Token token={key}"}, timeout=10
    )
    assert response.status_code == 429 and response.headers["Retry-After"] == "7"
    assert response.json()["error"]["code"] == 2020
    assert requests.get(pagerduty_sandbox.url + DISCOVERY, timeout=10).status_code == 200


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_identity_5xx_in_oauths_error_shape(pagerduty_sandbox: PagerDutySandbox, status: int) -> None:
    pagerduty_sandbox.set_faults(f"{status}=1,target=identity")
    response = requests.post(pagerduty_sandbox.url + "/oauth/token", data={"grant_type": "x"}, timeout=10)
    assert response.status_code == status
    assert set(response.json()) == {"error", "error_description"}
    assert _rest(pagerduty_sandbox).status_code == 200


@pytest.mark.parametrize("path", ["/services", DISCOVERY])
def test_a_dropped_connection_has_no_answer(pagerduty_sandbox: PagerDutySandbox, path: str) -> None:
    key = pagerduty_sandbox.api_key()
    pagerduty_sandbox.set_faults("drop=1,target=all")
    with pytest.raises(requests.ConnectionError):
        requests.get(
            pagerduty_sandbox.url + path,
            headers={"Authorization": f"Token token={key}", "Accept": "application/json"},
            timeout=10,
        )
    pagerduty_sandbox.set_faults("")
    assert _rest(pagerduty_sandbox).status_code == 200


def test_the_control_api_is_never_faulted(pagerduty_sandbox: PagerDutySandbox) -> None:
    pagerduty_sandbox.set_faults("500=1,target=all")
    assert pagerduty_sandbox.state()["faults"]["targets"] == list(FAMILIES)
    assert requests.get(pagerduty_sandbox.url + "/_sandbox/api/oauth/users", timeout=10).status_code == 200


@pytest.mark.parametrize(
    "spec",
    ["target=", "target=api", "target=rest+nothing", "target=REST+", "targets=events,target=x", "target=all+rest"],
)
def test_hostile_targets_are_refused(spec: str) -> None:
    with pytest.raises(FaultSpecError):
        FaultPlan.parse(spec)


@pytest.mark.parametrize("targets", [[], "rest", ["rest", 1], None, {"rest": True}, ["events", "x"]])
def test_hostile_targets_through_the_control_api_are_a_400(
    pagerduty_sandbox: PagerDutySandbox, targets: object
) -> None:
    response = requests.put(pagerduty_sandbox.url + "/_sandbox/api/faults", json={"targets": targets}, timeout=10)
    assert response.status_code == 400 and response.json()["error"]["message"]


@given(st.lists(st.sampled_from(FAMILIES), min_size=1), st.sampled_from(FAMILIES))
def test_a_plan_hits_exactly_the_families_it_targets(targets: list[str], family: str) -> None:
    faults = Faults(FaultPlan.parse("500=1,target=" + "+".join(targets)))
    decision = faults.decide(family)
    assert (decision.status == 500) == (family in targets)
    assert FaultPlan.from_dict(faults.plan.to_dict()) == faults.plan
