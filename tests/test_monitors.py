from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.monitors import (
    Action,
    CheckResult,
    MonitorInfo,
    MonitorInvalid,
    MonitorPolicy,
    MonitorState,
    MonitorStatus,
    dedup_key,
    incident_event,
    observe,
    recovery_event,
)
from pdconnect.payloads import alert_body
from tests.conftest import SERVICE_KEY
from tests.openapi import assert_valid_request

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def check(ok: bool, minute: int = 0, **extra: object) -> CheckResult:
    status = "HTTP 200" if ok else "HTTP 503"
    return CheckResult(ok=ok, status=status, checked_at=T0 + timedelta(minutes=minute), **extra)  # type: ignore[arg-type]


def walk(results: list[bool], policy: MonitorPolicy) -> tuple[MonitorState, list[Action]]:
    state, actions = MonitorState(), []
    for minute, ok in enumerate(results):
        state, action = observe(state, check(ok, minute), policy)
        actions.append(action)
    return state, actions


def test_fail_confirm_trigger_recover_resolve() -> None:
    policy = MonitorPolicy(confirm_after=3, resolve_after=2)
    state, actions = walk([True, False, False, False, False, True, True, True], policy)
    assert actions == [
        Action.NONE,  # up
        Action.NONE,  # failing 1
        Action.NONE,  # failing 2
        Action.TRIGGER,  # confirmed on the third
        Action.NONE,  # still down: no second trigger
        Action.NONE,  # one success is not enough
        Action.RESOLVE,  # second success
        Action.NONE,
    ]
    assert state.status is MonitorStatus.UP
    assert not state.incident_open
    assert state.failing_since is None


def test_statuses_along_the_way() -> None:
    policy = MonitorPolicy(confirm_after=2)
    state = MonitorState()
    assert state.status is MonitorStatus.UNKNOWN
    state, _ = observe(state, check(False, 0), policy)
    assert state.status is MonitorStatus.FAILING
    assert state.failing_since == T0
    state, _ = observe(state, check(False, 1), policy)
    assert state.status is MonitorStatus.DOWN
    assert state.failing_since == T0, "the outage started with the first failure"


def test_a_blip_below_confirmation_never_pages() -> None:
    _, actions = walk(
        [False, True, False, True, False, True], MonitorPolicy(confirm_after=2, flap_changes=20, flap_window=20)
    )
    assert set(actions) == {Action.NONE}


def test_flapping_keeps_the_incident_open_until_it_settles() -> None:
    policy = MonitorPolicy(confirm_after=1, resolve_after=1, flap_window=6, flap_changes=3)
    state, actions = walk([False, True, False, True], policy)
    # First failure pages; the flip back resolves (only one change so far); the next failure pages again;
    # by the next success the last checks flipped three times: flapping, so the incident stays open.
    assert actions == [Action.TRIGGER, Action.RESOLVE, Action.TRIGGER, Action.NONE]
    assert state.flapping
    assert state.incident_open
    for minute in range(4, 9):
        state, action = observe(state, check(True, minute), policy)
        if action is Action.RESOLVE:
            break
    assert action is Action.RESOLVE
    assert not state.flapping


def test_state_round_trips_through_a_dict() -> None:
    state, _ = walk([True, False, False], MonitorPolicy(confirm_after=2))
    state, _ = observe(state, check(False, 3, response_time_ms=812.5, error="timeout"), MonitorPolicy(confirm_after=2))
    assert MonitorState.from_dict(state.to_dict()) == state
    assert MonitorState.from_dict(None) == MonitorState()
    assert MonitorState.from_dict({}) == MonitorState()


def test_incident_event_carries_what_a_responder_needs() -> None:
    policy = MonitorPolicy(confirm_after=2)
    state, _ = observe(MonitorState(), check(False, 0), policy)
    state, action = observe(state, check(False, 5, response_time_ms=4012.7, error="upstream timed out"), policy)
    assert action is Action.TRIGGER
    monitor = MonitorInfo(id="42", name="Checkout", target="https://shop.example/health",
                          link="https://acme.example/monitors/42", region="eu-west-1")  # fmt: skip
    event = incident_event(monitor, state)
    assert event.summary == "Checkout is down: HTTP 503 (eu-west-1)"
    assert event.dedup_key == dedup_key(monitor) == "monitor/42"
    assert event.client_url == "https://acme.example/monitors/42"
    assert event.custom_details == {
        "monitor": "Checkout",
        "target": "https://shop.example/health",
        "status": "HTTP 503",
        "failing_for_seconds": 300,
        "failing_since": T0.isoformat(),
        "consecutive_failures": 2,
        "region": "eu-west-1",
        "response_time_ms": 4013,
        "error": "upstream timed out",
        "checked_at": (T0 + timedelta(minutes=5)).isoformat(),
    }
    assert_valid_request("alert", alert_body(event, routing_key=SERVICE_KEY))


@pytest.mark.parametrize(
    "kwargs", [{"confirm_after": 0}, {"resolve_after": 0}, {"flap_window": 1}, {"flap_changes": 1}]
)
def test_bad_policies(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        MonitorPolicy(**kwargs)


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 4), st.integers(1, 4))
def test_triggers_and_resolves_alternate(results: list[bool], confirm: int, resolve: int) -> None:
    """Whatever the checks, the lifecycle never triggers twice or resolves what is not open."""
    state, actions = walk(results, MonitorPolicy(confirm_after=confirm, resolve_after=resolve))
    sent = [a for a in actions if a is not Action.NONE]
    assert sent == [Action.TRIGGER, Action.RESOLVE] * (len(sent) // 2) + [Action.TRIGGER] * (len(sent) % 2)
    assert state.incident_open == (len(sent) % 2 == 1)


def test_the_recovery_event() -> None:
    monitor = MonitorInfo(id="42", name="Checkout", target="https://shop.example/health")
    event = recovery_event(monitor)
    assert (event.action, event.dedup_key) == ("resolve", "monitor/42")


GOOD_STATE = {
    "status": "down",
    "consecutive_failures": 2,
    "consecutive_successes": 0,
    "failing_since": "2026-11-22T12:00:00+00:00",
    "incident_open": True,
    "recent": [True, False, False],
    "flapping": False,
    "last": {"ok": False, "status": "HTTP 503", "checked_at": "2026-11-22T12:05:00+00:00", "error": "x"},
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "sideways"}, "status"),
        ({"consecutive_failures": -1}, "consecutive_failures"),
        ({"consecutive_failures": "2"}, "consecutive_failures"),
        ({"consecutive_successes": True}, "consecutive_successes"),
        ({"failing_since": "yesterday"}, "failing_since"),
        ({"failing_since": 5}, "failing_since"),
        ({"incident_open": "yes"}, "incident_open"),
        ({"recent": "TFF"}, "recent"),
        ({"recent": [1, 0]}, "recent"),
        ({"flapping": None}, "flapping"),
        ({"last": "HTTP 503"}, "last"),
        ({"last": {"ok": False, "checked_at": "2026-11-22T12:05:00+00:00"}}, "last.status"),
        ({"last": {"ok": "no", "status": "s", "checked_at": "2026-11-22T12:05:00+00:00"}}, "last.ok"),
        ({"last": {"ok": False, "status": "s"}}, "last.checked_at"),
        ({"last": {"ok": False, "status": "s", "checked_at": "2026-11-22", "error": 5}}, "last.error"),
        ({"last": {"ok": False, "status": "s", "checked_at": "2026-11-22", "value": "7"}}, "last.value"),
        (
            {"last": {"ok": False, "status": "s", "checked_at": "2026-11-22", "response_time_ms": float("nan")}},
            "last.response_time_ms",
        ),
    ],
)
def test_a_damaged_state_is_refused_with_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(MonitorInvalid) as raised:
        MonitorState.from_dict({**GOOD_STATE, **change})
    assert raised.value.field == field


def test_a_state_must_be_an_object() -> None:
    assert MonitorState.from_dict(GOOD_STATE).incident_open
    with pytest.raises(MonitorInvalid):
        MonitorState.from_dict([1, 2])  # type: ignore[arg-type]


@pytest.mark.parametrize("kwargs", [{"confirm_after": True}, {"resolve_after": 1.5}, {"flap_window": 10_000}])
def test_more_bad_policies(kwargs: dict[str, object]) -> None:
    with pytest.raises(MonitorInvalid):
        MonitorPolicy(**kwargs)  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@given(st.dictionaries(st.sampled_from(sorted(GOOD_STATE)) | st.text(max_size=6), json_values, max_size=8))
def test_any_stored_state_reads_or_is_refused(data: dict[str, object]) -> None:
    try:
        state = MonitorState.from_dict(data)
    except MonitorInvalid:
        return
    assert MonitorState.from_dict(state.to_dict()) == state
