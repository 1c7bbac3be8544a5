"""``payload.custom_details`` (v2) and ``details`` (v1) must be JSON objects (issue 9).

Both OpenAPI schemas type the field ``"type": "object"``; a string, number, array or boolean
is a 400 with PagerDuty's error shape, and an object (or null / absent) is accepted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pdconnect.sandbox import Sandbox, SandboxSettings


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    sandbox = Sandbox(SandboxSettings(rate_limit=None))
    yield sandbox
    sandbox.close()


def _send(sandbox: Sandbox, api: str, details: Any) -> tuple[int, dict[str, Any] | None]:
    key = sandbox.keys_of(sandbox.services()[0].id)[0].id
    if api == "v2":
        body: dict[str, Any] = {
            "routing_key": key,
            "event_action": "trigger",
            "payload": {"summary": "s", "source": "h", "severity": "info", "custom_details": details},
        }
        answer = sandbox.handle_alert(json.dumps(body).encode())
    elif api == "change":
        body = {"routing_key": key, "payload": {"summary": "s", "custom_details": details}}
        answer = sandbox.handle_change(json.dumps(body).encode())
    else:
        body = {"service_key": key, "event_type": "trigger", "description": "d", "details": details}
        answer = sandbox.handle_legacy(json.dumps(body).encode())
    return answer.status, answer.body


FIELD = {"v2": "'payload.custom_details' must be an object", "change": "'payload.custom_details' must be an object"}
FIELD["v1"] = "'details' must be an object"
NOT_OBJECTS = ["free text", "", "{}", 0, 1.5, True, False, [], [{"a": 1}]]


@pytest.mark.parametrize("api", ["v2", "change", "v1"])
@pytest.mark.parametrize("details", NOT_OBJECTS, ids=repr)
def test_details_that_are_not_an_object_are_refused(sandbox: Sandbox, api: str, details: Any) -> None:
    status, body = _send(sandbox, api, details)
    assert status == 400
    assert body is not None
    assert body["status"] in ("invalid event",) and body["message"] == "Event object is invalid"
    assert FIELD[api] in body["errors"]


@pytest.mark.parametrize("api", ["v2", "change", "v1"])
@pytest.mark.parametrize("details", [None, {}, {"free space": "1%", "load avg": 0.75, "nested": {"a": [1]}}])
def test_an_object_or_null_is_accepted(sandbox: Sandbox, api: str, details: Any) -> None:
    status, _ = _send(sandbox, api, details)
    assert status in (200, 202)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(details=_json_values, api=st.sampled_from(["v2", "change", "v1"]))
def test_property_accepted_exactly_when_an_object(sandbox: Sandbox, details: Any, api: str) -> None:
    status, _ = _send(sandbox, api, details)
    assert (status != 400) == (details is None or isinstance(details, dict))
