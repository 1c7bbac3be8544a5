"""PagerDuty's own Events API schemas, as validators for the bodies pdconnect sends and receives."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

SCHEMA_DIR = Path(__file__).parent / "data" / "pagerduty-openapi"
_DOCUMENTS = {"alert": ("events-v2.json", "/enqueue"), "change": ("events-v2.json", "/change/enqueue"),
              "legacy": ("events-v1.json", "/create_event.json")}  # fmt: skip


@cache
def _document(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / name).read_text())  # type: ignore[no-any-return]


def _pointer(path: str) -> str:
    return path.replace("~", "~0").replace("/", "~1")


@cache
def request_validator(kind: str) -> Draft202012Validator:
    """A validator for the request body of ``kind`` (alert, change or legacy)."""
    name, path = _DOCUMENTS[kind]
    schema = {**_document(name), "$ref": f"#/paths/{_pointer(path)}/post/requestBody/content/application~1json/schema"}
    return Draft202012Validator(schema)


@cache
def response_validator(kind: str, status: str) -> Draft202012Validator:
    """A validator for the response body of ``kind`` with ``status`` (``202``, ``200`` or ``5XX``)."""
    name, path = _DOCUMENTS[kind]
    response = _document(name)["paths"][path]["post"]["responses"][status]
    ref = response["$ref"].removeprefix("#")
    return Draft202012Validator({**_document(name), "$ref": f"#{ref}/content/application~1json/schema"})


def request_properties(kind: str) -> set[str]:
    """The top-level fields the schema defines for ``kind``'s request."""
    name, path = _DOCUMENTS[kind]
    schema = _document(name)["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return set(schema["properties"])


def payload_properties(kind: str) -> set[str]:
    """The fields the schema defines inside ``payload`` for ``kind`` (alert or change)."""
    component = {"alert": "Payload", "change": "ChangeEventPayload"}[kind]
    return set(_document("events-v2.json")["components"]["schemas"][component]["properties"])


def assert_valid_request(kind: str, body: dict[str, Any], *, extra_fields: frozenset[str] = frozenset()) -> None:
    """Fail unless ``body`` validates and uses only fields the schema defines (plus ``extra_fields``)."""
    errors = sorted(request_validator(kind).iter_errors(body), key=str)
    assert not errors, [e.message for e in errors]
    unknown = set(body) - request_properties(kind) - extra_fields
    assert not unknown, f"fields not in PagerDuty's schema: {unknown}"
    if "payload" in body:
        unknown_payload = set(body["payload"]) - payload_properties(kind)
        assert not unknown_payload, f"payload fields not in PagerDuty's schema: {unknown_payload}"
