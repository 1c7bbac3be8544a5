"""Every JSON endpoint of the sandbox under hostile bodies, and every fault option (issue 9).

Deep nesting, NaN/Infinity, huge numbers, non-UTF-8, non-object top levels, duplicate keys
and wrong types at every field are a 400 with a JSON error, never a 500.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.test import Client, TestResponse

from pdconnect.sandbox import Sandbox, SandboxSettings
from pdconnect.sandbox.app import SandboxApp
from pdconnect.sandbox.engine import MAX_TIMELINE_BODIES, TIMELINE_BODY_DROPPED
from pdconnect.sandbox.faults import FaultPlan, Faults, FaultSpecError
from pdconnect.sandbox.model import Account, ApiKey
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.sandbox.validation import JsonBodyError, parse_json
from pdconnect.sandbox.webhooks import RetrySchedule

EVENTS = ["/v2/enqueue", "/v2/change/enqueue", "/generic/2010-04-15/create_event.json"]
CONTROL = [
    ("POST", "/_sandbox/api/incidents/{incident}/actions"),
    ("POST", "/_sandbox/api/reset"),
    ("PUT", "/_sandbox/api/faults"),
    ("PUT", "/_sandbox/api/settings"),
    ("POST", "/_sandbox/api/apps"),
    ("POST", "/_sandbox/api/accounts"),
    ("POST", "/_sandbox/api/services"),
    ("POST", "/webhook_subscriptions"),
]
ROUTES = CONTROL + [("POST", path) for path in EVENTS]

HOSTILE_BODIES = {
    "deep arrays": b"[" * 100_000 + b"]" * 100_000,
    "deep objects": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "just too deep": b'{"a":' * 64 + b"1" + b"}" * 64,
    "NaN": b'{"rate_429": NaN, "routing_key": NaN}',
    "Infinity": b'{"latency_ms": Infinity, "seed": -Infinity}',
    "1e400": b'{"latency_ms": 1e400, "rate_limit": 1e400}',
    "huge integer": b'{"seed": ' + b"9" * 5000 + b"}",
    "not UTF-8": b'{"a": "\xff\xfe"}',
    "latin-1": '{"name": "caf\u00e9"}'.encode("latin-1"),
    "UTF-16": '{"seed": true}'.encode("utf-16"),
    "BOM": b'\xef\xbb\xbf{"seed": true}',
    "array": b"[]",
    "string": b'"hello"',
    "number": b"1",
    "null": b"null",
    "true": b"true",
    "duplicate keys": b'{"seed": true, "seed": false, "routing_key": "a", "routing_key": "b"}',
    "truncated": b'{"seed": tr',
    "NUL": b"\x00",
    "garbage": b"\x80\x81\x82",
}


@pytest.fixture(scope="module")
def local() -> Iterator[tuple[Sandbox, Client, str]]:
    sandbox = Sandbox(SandboxSettings())
    key = sandbox.keys_of(sandbox.services()[0].id)[0].id
    trigger = {"routing_key": key, "event_action": "trigger", "dedup_key": "x",
               "payload": {"summary": "s", "source": "h", "severity": "info"}}  # fmt: skip
    sandbox.handle_alert(json.dumps(trigger).encode())
    # The REST routes need the account's own API key (issue 10); a made-up one is a 401.
    sandbox.create_api_key("acme")
    yield sandbox, Client(SandboxApp(sandbox)), sandbox.incidents()[0].id
    sandbox.close()


def _send(local: tuple[Sandbox, Client, str], method: str, path: str, raw: bytes) -> TestResponse:
    sandbox, client, incident = local
    sandbox.faults.set(FaultPlan())  # an earlier example may have injected 5xx on purpose
    # An earlier example may have reset the sandbox (and so its keys).
    keys = sandbox.store.all(ApiKey)
    key = keys[0].id if keys else sandbox.create_api_key(sandbox.store.all(Account)[0].id).id
    headers = {"Authorization": f"Token token={key}", "Content-Type": "application/json"}
    return client.open(path.format(incident=incident), method=method, data=raw, headers=headers)


def _assert_json_error(response: TestResponse, path: str) -> None:
    assert response.status_code == 400, (path, response.status_code, response.get_data()[:200])
    body = response.get_json()
    if path in EVENTS:
        assert set(body) == {"status", "message", "errors"}
    else:
        assert isinstance(body["error"]["message"], str) and body["error"]["message"]


@pytest.mark.parametrize("name", sorted(HOSTILE_BODIES))
@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_hostile_bodies_are_a_400(local: tuple[Sandbox, Client, str], method: str, path: str, name: str) -> None:
    raw = HOSTILE_BODIES[name]
    response = _send(local, method, path, raw)
    _assert_json_error(response, path)


@pytest.mark.parametrize("name", ["deep arrays", "NaN", "duplicate keys", "not UTF-8", "array", "1e400"])
@pytest.mark.parametrize("path", EVENTS)
def test_hostile_events_over_the_real_server(pagerduty_sandbox: PagerDutySandbox, path: str, name: str) -> None:
    response = requests.post(pagerduty_sandbox.url + path, data=HOSTILE_BODIES[name], timeout=10)
    assert response.status_code == 400
    assert response.json()["status"].lower() == "unrecognized object"
    assert pagerduty_sandbox.received()[-1]["outcome"] == "rejected: not JSON"


WRONG = [None, 0, -1, 1.5, True, [], ["x"], {}, {"a": 1}, "", "x" * 10_000, "\ud800", 10**30]
FIELDS: dict[str, list[str]] = {
    "/_sandbox/api/incidents/{incident}/actions": ["action", "user", "assignee", "escalation_policy", "note",
                                                   "priority"],
    "/_sandbox/api/reset": ["seed"],
    "/_sandbox/api/faults": ["spec", "rate_429", "latency_ms", "retry_after", "down_for", "seed", "rate_drop"],
    "/_sandbox/api/settings": ["rate_limit", "account_name_field"],
    "/_sandbox/api/apps": ["app_id", "redirect_urls", "name"],
    "/_sandbox/api/accounts": ["subdomain", "name"],
    "/_sandbox/api/services": ["account", "name"],
}  # fmt: skip
VALID: dict[str, dict[str, Any]] = {
    "/_sandbox/api/incidents/{incident}/actions": {"action": "priority", "priority": "P2"},
    "/_sandbox/api/reset": {"seed": True},
    "/_sandbox/api/faults": {},
    "/_sandbox/api/settings": {"rate_limit": 120},
    "/_sandbox/api/apps": {"app_id": "PAPP009", "redirect_urls": ["http://localhost:9/cb"]},
    "/_sandbox/api/accounts": {"subdomain": "other"},
    "/_sandbox/api/services": {"account": "acme", "name": "New"},
}


@pytest.mark.parametrize("value", WRONG, ids=repr)
@pytest.mark.parametrize(("path", "field"), [(p, f) for p, fields in FIELDS.items() for f in fields])
def test_wrong_types_at_every_control_field(
    local: tuple[Sandbox, Client, str], path: str, field: str, value: Any
) -> None:
    method = "PUT" if path in ("/_sandbox/api/faults", "/_sandbox/api/settings") else "POST"
    body = {**VALID[path], field: value}
    if path == "/_sandbox/api/faults" and field != "spec":
        body.pop("spec", None)
    response = _send(local, method, path, json.dumps(body).encode())
    assert response.status_code < 500, response.get_data()[:300]
    assert response.is_json
    if response.status_code >= 400:
        assert response.get_json()["error"]["message"]
    local[0].faults.set(FaultPlan())
    local[0].settings.rate_limit = 120
    local[0].limiter.limit = 120


REST_BODIES: list[Any] = [
    {"webhook_subscription": []},
    {"webhook_subscription": {"delivery_method": []}},
    {"webhook_subscription": {"delivery_method": {"url": ["http://127.0.0.1/"]}}},
    {"webhook_subscription": {"delivery_method": {"url": "http://127.0.0.1/"}, "events": "incident.triggered"}},
    {"webhook_subscription": {"delivery_method": {"url": "http://127.0.0.1/"}, "events": [{}]}},
    {"webhook_subscription": {"delivery_method": {"url": "http://127.0.0.1/"}, "events": [["x"]]}},
    {"webhook_subscription": {"delivery_method": {"url": "http://127.0.0.1/"}, "filter": "account"}},
    {"webhook_subscription": {"delivery_method": {"url": "http://127.0.0.1/"}, "filter": {"type": {}}}},
    {"webhook_subscription": {"delivery_method": {"url": "http://127.0.0.1/"},
                              "filter": {"type": "service_reference", "id": {"a": 1}}}},
    {"webhook_subscription": {"delivery_method": {"url": "http://127.0.0.1/"}, "version": 3}},
    {"webhook_subscription": {"delivery_method": {"url": "http://127.0.0.1/"}, "description": {}}},
]  # fmt: skip


@pytest.mark.parametrize("body", REST_BODIES, ids=lambda b: json.dumps(b)[:60])
def test_wrong_types_in_a_subscription(local: tuple[Sandbox, Client, str], body: Any) -> None:
    response = _send(local, "POST", "/webhook_subscriptions", json.dumps(body).encode())
    _assert_json_error(response, "/webhook_subscriptions")


def test_a_lone_surrogate_in_a_name_is_refused(local: tuple[Sandbox, Client, str]) -> None:
    # Names are bounded and printable since issue 9 (test_attack_names.py); events may still carry one.
    response = _send(local, "POST", "/_sandbox/api/services", b'{"account": "acme", "name": "Ca\\ud800fe"}')
    assert response.status_code == 400
    assert "error" in response.get_json()


# -- numbers in fault plans and settings ----------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("latency=nan", "finite"),
        ("latency=inf", "finite"),
        ("latency=-inf", "finite"),
        ("429=nan", "finite"),
        ("retry-after=NaN", "finite"),
        ("down=infinity", "finite"),
        ("seed=nan", "finite"),
        ("seed=inf", "finite"),
        ("seed=1.5", "whole number"),
        ("latency=-1", "negative"),
        ("retry-after=-0.5", "negative"),
        ("down=-1s", "negative"),
        ("latency=60001", "at most"),
        ("retry-after=1e9", "at most"),
        ("down=1e12", "at most"),
        ("429=-0.1", "between 0 and 1"),
        ("drop=1.01", "between 0 and 1"),
        ("5xx=4.1", "between 0 and 1"),
        ("latency=1e400", "finite"),
        ("x" * 5000 + "=1", "unknown fault"),
    ],
)
def test_fault_specs_refused(spec: str, message: str) -> None:
    with pytest.raises(FaultSpecError, match=message) as info:
        FaultPlan.parse(spec)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("field", ["rate_429", "rate_drop", "latency_ms", "retry_after", "down_for"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, -1.0, 1e12, True, "0.5", None, [0.1]], ids=repr)
def test_fault_plan_fields_refused(field: str, value: Any) -> None:
    with pytest.raises(FaultSpecError, match=field):
        FaultPlan.from_dict({field: value})


def test_a_nan_latency_no_longer_drops_every_request() -> None:
    """It was accepted, and then every request failed in time.sleep(nan)."""
    with pytest.raises(FaultSpecError):
        FaultPlan.parse("latency=nan")
    with pytest.raises(FaultSpecError):
        Faults(FaultPlan(latency_ms=math.nan))


@pytest.mark.parametrize("value", ["nan", "NaN", "Infinity", "-1", "0", "1.5", "true", '"5"', "1e400", "10000000"])
def test_rate_limit_refused(local: tuple[Sandbox, Client, str], value: str) -> None:
    raw = b'{"rate_limit": ' + value.encode() + b"}"
    response = _send(local, "PUT", "/_sandbox/api/settings", raw)
    assert response.status_code == 400
    assert local[0].settings.rate_limit == 120


def test_unknown_settings_refused(local: tuple[Sandbox, Client, str]) -> None:
    response = _send(local, "PUT", "/_sandbox/api/settings", b'{"rate_limt": 5}')
    assert response.status_code == 400
    assert "rate_limt" in response.get_json()["error"]["message"]


@pytest.mark.parametrize(
    "raw", [b'{"a":1,"a":2}', b"NaN", b"[Infinity]", b"1e400", b"\xff", b"[" * 65 + b"]" * 65, b"", b"01"]
)
def test_parse_json_refuses(raw: bytes) -> None:
    with pytest.raises(JsonBodyError):
        parse_json(raw)


def test_parse_json_takes_64_levels() -> None:
    assert parse_json(b"[" * 64 + b"]" * 64) is not None


# -- properties -----------------------------------------------------------------------------

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELD_NAMES = sorted({f for fields in FIELDS.values() for f in fields} | {"routing_key", "event_action", "payload"})
OBJECTS = st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), JSONISH, max_size=6)


@settings(max_examples=300)
@given(
    route=st.sampled_from(ROUTES),
    raw=st.binary(max_size=200)
    | JSONISH.map(lambda v: json.dumps(v).encode())
    | OBJECTS.map(lambda v: json.dumps(v).encode()),
)
def test_nothing_posted_is_a_500(local: tuple[Sandbox, Client, str], route: tuple[str, str], raw: bytes) -> None:
    method, path = route
    response = _send(local, method, path, raw)
    assert response.status_code < 500, (path, raw[:200], response.get_data()[:300])
    assert response.is_json
    local[0].settings.rate_limit = 120
    local[0].limiter.limit = 120


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("429=2", "429 must be between 0 and 1"),
        ("429-retry-after=2", "429-retry-after must be between 0 and 1"),
        ("down=1e12", "down must be at most 86400"),
        ("latency=70000", "latency must be at most 60000"),
        ("retry-after=-1", "retry-after must not be negative"),
    ],
)
def test_spec_errors_use_the_specs_words(spec: str, message: str) -> None:
    """``pdconnect sandbox --faults`` users wrote ``429``, not ``rate_429``."""
    with pytest.raises(FaultSpecError) as info:
        FaultPlan.parse(spec)
    assert str(info.value) == message


# -- the Python-side settings check their numbers too -------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"delays": (math.nan,)},
        {"delays": (0.1, math.inf)},
        {"delays": (-1.0,)},
        {"delays": (True,)},
        {"delays": ("1",)},
        {"timeout": 0},
        {"timeout": math.nan},
        {"timeout": -1},
        {"disabled_for": math.inf},
        {"disable_after_drops": 0},
        {"disable_after_drops": 1.5},
        {"disable_after_drops": True},
    ],
    ids=repr,
)
def test_retry_schedule_refuses(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetrySchedule(**fields)


@pytest.mark.parametrize(
    "fields",
    [
        {"rate_limit": 0},
        {"rate_limit": -5},
        {"rate_limit": True},
        {"rate_limit": 1.5},
        {"rate_limit": math.nan},
        {"max_received": 0},
        {"max_received": math.inf},
        {"account_name_field": "NAME"},
    ],
    ids=repr,
)
def test_sandbox_settings_refuse(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        SandboxSettings(**fields)


@given(
    delays=st.lists(st.floats() | st.integers(), max_size=4),
    timeout=st.floats() | st.integers(),
    disabled_for=st.floats(),
)
def test_retry_schedule_holds_only_sane_numbers(delays: list[float], timeout: float, disabled_for: float) -> None:
    try:
        schedule = RetrySchedule(delays=tuple(delays), timeout=timeout, disabled_for=disabled_for)
    except ValueError:
        return
    for value in (*schedule.delays, schedule.timeout, schedule.disabled_for):
        assert math.isfinite(value) and 0 <= value <= 86_400
    assert schedule.timeout > 0


# -- a flood of big bodies cannot fill the memory --------------------------------------------


def _flood(sandbox: Sandbox, sizes: list[int]) -> None:
    key = sandbox.keys_of(sandbox.services()[0].id)[0].id
    sandbox.handle_alert(b"x" * 600_000)  # too large: refused, and kept only as its first 2 KB
    for n, size in enumerate(sizes):
        event = {"routing_key": key, "event_action": "trigger", "dedup_key": f"d{n}",
                 "payload": {"summary": "s", "source": "h", "severity": "info", "custom_details": {"x": "y" * size}}}  # fmt: skip
        sandbox.handle_alert(json.dumps(event).encode())


@pytest.mark.parametrize(("count", "size"), [(40, 10_000), (5, 300_000), (200, 100)])
def test_the_received_log_is_bounded_by_bytes(count: int, size: int) -> None:
    sandbox = Sandbox(SandboxSettings(rate_limit=None, max_received_bytes=100_000))
    _flood(sandbox, [size] * count)
    kept = sandbox.received()
    assert kept[-1].seq == count + 1, "the newest is always kept"
    assert len(kept) > 1 or size > 100_000
    assert sum(len(json.dumps(r.request)) for r in kept) <= max(100_000, len(json.dumps(kept[-1].request)))
    assert [r.seq for r in kept] == list(range(kept[0].seq, count + 2)), "the oldest went first"
    assert len(kept) < count + 1 or count * size < 100_000
    sandbox.close()


@settings(max_examples=40)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=30_000), max_size=25),
    limit=st.integers(min_value=1, max_value=60_000),
    count=st.integers(min_value=1, max_value=10),
)
def test_the_received_log_never_holds_more_than_its_bounds(sizes: list[int], limit: int, count: int) -> None:
    sandbox = Sandbox(SandboxSettings(rate_limit=None, max_received_bytes=limit, max_received=count))
    _flood(sandbox, sizes)
    kept = sandbox.received()
    assert 1 <= len(kept) <= count
    if len(kept) > 1:
        assert sandbox._received_bytes <= limit
    assert sandbox._received_bytes == sum(size for _, size in sandbox._received_sizes)
    assert {r.id for r in kept} == {record_id for record_id, _ in sandbox._received_sizes}
    sandbox.close()


@pytest.mark.parametrize("triggers", [1, 100, 101, 250])
def test_a_noisy_alert_keeps_only_the_latest_bodies(triggers: int) -> None:
    sandbox = Sandbox(SandboxSettings(rate_limit=None))
    key = sandbox.keys_of(sandbox.services()[0].id)[0].id
    for n in range(triggers):
        event = {"routing_key": key, "event_action": "trigger", "dedup_key": "noisy",
                 "payload": {"summary": f"s{n}", "source": "h", "severity": "info"}}  # fmt: skip
        assert sandbox.handle_alert(json.dumps(event).encode()).status == 202
    (incident,) = sandbox.incidents()
    raws = [entry["channel"]["raw"] for entry in incident.timeline]
    assert len(raws) == triggers
    kept = [raw for raw in raws if isinstance(raw, dict)]
    assert len(kept) == min(triggers, MAX_TIMELINE_BODIES)
    assert raws[-1]["payload"]["summary"] == f"s{triggers - 1}"
    assert all(raw == TIMELINE_BODY_DROPPED for raw in raws[: triggers - len(kept)])
    assert len(sandbox.received()) == triggers, "the received log still has every body"
    assert Client(SandboxApp(sandbox)).get(f"/incidents/{incident.id}").status_code == 200
    sandbox.close()
