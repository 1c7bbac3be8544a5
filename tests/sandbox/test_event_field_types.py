"""String fields of the events APIs refuse other types (issue 9: the sandbox is the stricter one)."""

from __future__ import annotations

import copy
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


def _key(sandbox: Sandbox) -> str:
    return sandbox.keys_of(sandbox.services()[0].id)[0].id


def _events(key: str) -> dict[str, dict[str, Any]]:
    return {
        "v2": {
            "routing_key": key,
            "event_action": "trigger",
            "dedup_key": "t",
            "client": "Acme",
            "client_url": "https://acme.example/",
            "links": [{"href": "https://acme.example/l", "text": "l"}],
            "images": [{"src": "https://acme.example/i.png", "href": "https://acme.example/", "alt": "i"}],
            "payload": {"summary": "s", "source": "h", "severity": "info", "component": "c", "group": "g",
                        "class": "k"},
        },
        "change": {"routing_key": key, "payload": {"summary": "Deployed", "source": "ci"},
                   "links": [{"href": "https://acme.example/", "text": "t"}]},
        "v1": {"service_key": key, "event_type": "trigger", "incident_key": "t", "description": "d",
               "client": "Acme", "client_url": "https://acme.example/",
               "contexts": [{"type": "link", "href": "https://acme.example/", "text": "t"},
                            {"type": "image", "src": "https://acme.example/i.png", "alt": "a"}]},
    }  # fmt: skip


#: (api, path to the field, the error's field name)
STRING_FIELDS = [
    ("v2", ("client",), "client"),
    ("v2", ("client_url",), "client_url"),
    ("v2", ("payload", "component"), "payload.component"),
    ("v2", ("payload", "group"), "payload.group"),
    ("v2", ("payload", "class"), "payload.class"),
    ("v2", ("links", 0, "text"), "links[0].text"),
    ("v2", ("images", 0, "href"), "images[0].href"),
    ("v2", ("images", 0, "alt"), "images[0].alt"),
    ("change", ("payload", "source"), "payload.source"),
    ("change", ("links", 0, "text"), "links[0].text"),
    ("v1", ("client",), "client"),
    ("v1", ("client_url",), "client_url"),
    ("v1", ("contexts", 0, "text"), "contexts[0].text"),
    ("v1", ("contexts", 1, "alt"), "contexts[1].alt"),
]
WRONG = [0, 1.5, True, False, [], ["https://acme.example/"], {}, {"href": "x"}]


def _post(sandbox: Sandbox, api: str, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    handle = {"v2": sandbox.handle_alert, "change": sandbox.handle_change, "v1": sandbox.handle_legacy}[api]
    answer = handle(json.dumps(event).encode())
    assert answer.body is not None
    return answer.status, answer.body


def _with(event: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(event)
    target: Any = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


def test_the_valid_events_are_accepted(sandbox: Sandbox) -> None:
    for api, event in _events(_key(sandbox)).items():
        assert _post(sandbox, api, event)[0] in (200, 202), api


@pytest.mark.parametrize("value", WRONG, ids=repr)
@pytest.mark.parametrize(("api", "path", "name"), STRING_FIELDS, ids=[f[2] + "@" + f[0] for f in STRING_FIELDS])
def test_a_string_field_of_another_type_is_a_400(
    sandbox: Sandbox, api: str, path: tuple[str | int, ...], name: str, value: Any
) -> None:
    event = _with(_events(_key(sandbox))[api], path, value)
    status, body = _post(sandbox, api, event)
    assert status == 400
    assert body["status"] == "invalid event"
    assert f"'{name}' must be a string" in body["errors"]


@pytest.mark.parametrize(("api", "path", "name"), STRING_FIELDS, ids=[f[2] + "@" + f[0] for f in STRING_FIELDS])
def test_null_is_read_as_missing(sandbox: Sandbox, api: str, path: tuple[str | int, ...], name: str) -> None:
    event = _with(_events(_key(sandbox))[api], path, None)
    assert _post(sandbox, api, event)[0] in (200, 202)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)


@settings(max_examples=200)
@given(field=st.sampled_from(STRING_FIELDS), value=JSONISH)
def test_only_strings_or_null_get_through(
    sandbox: Sandbox, field: tuple[str, tuple[Any, ...], str], value: Any
) -> None:
    api, path, name = field
    status, body = _post(sandbox, api, _with(_events(_key(sandbox))[api], path, value))
    if value is not None and not isinstance(value, str):
        assert status == 400
        assert f"'{name}' must be a string" in body["errors"]
    else:
        assert status in (200, 202, 400)
        assert f"'{name}' must be a string" not in body.get("errors", [])
