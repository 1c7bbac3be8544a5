"""How the sandbox's events endpoints read a request, and the errors PagerDuty answers with.

The 400 bodies follow PagerDuty's documented shape (``status``, ``message``, ``errors``).
The error strings PagerDuty is known to send are used as they are: "Length of
'routing_key' is incorrect (should be 32 characters)", "'routing_key' cannot contain
non-alphanumeric characters.", "'event_action' is missing or blank" (client issue
reports and go-pagerduty's tests), and the v1 "event_type is invalid (must be one of:
trigger acknowledge resolve)" (PagerDuty developer docs). The others are written in the same
style; which exact words PagerDuty uses for them is not documented.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

#: "Events API payloads are limited to 512 KB."
MAX_BODY_BYTES = 512 * 1024
MAX_DEDUP_KEY = 255
MAX_SUMMARY = 1024
#: How deep a request's JSON may nest (UNCONFIRMED: PagerDuty documents no limit; the
#: sandbox's pages and JSON answers stay well inside Python's recursion limit with it).
MAX_DEPTH = 64
ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")
_ALNUM = re.compile(r"[A-Za-z0-9]*")
# UNCONFIRMED: whether real PagerDuty refuses an offset with seconds, or reads it some way.
#: RFC 3339's date-time (a space for the ``T`` too, and ``+0000`` as in the schema's example).
#: The offset is hours and minutes only, as RFC 3339 has it: Python writes an offset with
#: seconds (``+00:19:32``, Amsterdam before 1937), which is no ``date-time``.
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})"
)

INVALID_EVENT = {"status": "invalid event", "message": "Event object is invalid"}


def unrecognized(v1: bool) -> dict[str, Any]:
    """The answer to a body that is not a JSON object (SCHEMA-E2 ``Error`` example)."""
    status = "unrecognized object" if v1 else "Unrecognized object"
    return {"status": status, "message": "Event object format is unrecognized", "errors": ["JSON parse error"]}


def invalid(errors: list[str]) -> dict[str, Any]:
    return {**INVALID_EVENT, "errors": errors}


class JsonBodyError(ValueError):
    """A request body the sandbox will not read as JSON; the message says why, in one line."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise JsonBodyError(f"duplicate key {name[:40]!r}")
        seen.add(name)
    return dict(pairs)


def _no_constant(name: str) -> Any:
    raise JsonBodyError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonBodyError("a number is too large")
    return value


def parse_json(raw: bytes) -> Any:
    """Read ``raw`` as strict JSON: UTF-8, no NaN or Infinity, finite numbers, no duplicate
    keys, nested at most :data:`MAX_DEPTH` deep. Raises :class:`JsonBodyError`.

    PagerDuty's own parser is stricter than Python's ``json`` in ways that are not documented
    (UNCONFIRMED); where it is unknown the sandbox refuses.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonBodyError("the body is not UTF-8") from exc
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant, parse_float=_finite)
    except JsonBodyError:
        raise
    except RecursionError as exc:
        raise JsonBodyError(f"the JSON is nested more than {MAX_DEPTH} deep") from exc
    except json.JSONDecodeError as exc:
        raise JsonBodyError(f"not JSON ({exc.msg} at character {exc.pos})") from exc
    except ValueError as exc:  # an integer of more than 4,300 digits
        raise JsonBodyError("a number is too large") from exc
    _check_depth(doc)
    return doc


def _check_depth(doc: Any) -> None:
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        if children and depth >= MAX_DEPTH:
            raise JsonBodyError(f"the JSON is nested more than {MAX_DEPTH} deep")
        stack.extend((child, depth + 1) for child in children)


def parse_object(raw: bytes) -> dict[str, Any] | None:
    """The request body as a JSON object (read by :func:`parse_json`), or ``None`` if it is not one."""
    try:
        doc = parse_json(raw)
    except JsonBodyError:
        return None
    return doc if isinstance(doc, dict) else None


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _no_text(value: object) -> bool:
    """Missing, blank, or not a string at all."""
    return not isinstance(value, str) or not value.strip()


def check_key(value: object, name: str) -> list[str]:
    """PagerDuty's two key checks: length and characters."""
    if _blank(value):
        return [f"'{name}' cannot be blank"]
    if not isinstance(value, str):
        return [f"'{name}' must be a string"]
    errors = []
    if len(value) != 32:
        errors.append(f"Length of '{name}' is incorrect (should be 32 characters)")
    if not _ALNUM.fullmatch(value):
        errors.append(f"'{name}' cannot contain non-alphanumeric characters.")
    return errors


def check_alert(doc: dict[str, Any]) -> list[str]:
    """Problems with an Events API v2 alert event (``/v2/enqueue``)."""
    errors = check_key(doc.get("routing_key"), "routing_key")
    action = doc.get("event_action")
    if _blank(action):
        errors.append("'event_action' is missing or blank")
    elif action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of: trigger acknowledge resolve)")
    errors += _check_dedup_key(doc.get("dedup_key"), "dedup_key", required=action in ("acknowledge", "resolve"))
    if action == "trigger":
        payload = doc.get("payload")
        if not isinstance(payload, dict):
            errors.append("'payload' is missing or blank")
        else:
            if _no_text(payload.get("summary")):
                errors.append("'payload.summary' is missing or blank")
            if _no_text(payload.get("source")):
                errors.append("'payload.source' is missing or blank")
            severity = payload.get("severity")
            if _blank(severity):
                errors.append("'payload.severity' is missing or blank")
            elif severity not in SEVERITIES:
                errors.append("'payload.severity' is invalid (must be one of: critical error warning info)")
            errors += _details(payload, "custom_details", "payload.")
            if "timestamp" in payload and not _timestamp_ok(payload["timestamp"]):
                errors.append("'payload.timestamp' is not a valid ISO 8601 timestamp")
            errors += _strings(payload, ("component", "group", "class"), "payload.")
    errors += _strings(doc, ("client", "client_url"))
    errors += _check_context(doc)
    return errors


def _strings(doc: dict[str, Any], names: tuple[str, ...], prefix: str = "") -> list[str]:
    """Fields the schemas type as strings: any other type (null aside, read as missing) is refused.

    UNCONFIRMED: what PagerDuty answers to, say, a number as ``client_url`` is not documented;
    the sandbox takes the stricter side, in the style of its other errors.
    """
    return [
        f"'{prefix}{name}' must be a string"
        for name in names
        if doc.get(name) is not None and not isinstance(doc[name], str)
    ]


def _details(doc: dict[str, Any], name: str, prefix: str = "") -> list[str]:
    """``custom_details`` (v2) or ``details`` (v1): a JSON object, or absent / null.

    Both schemas type the field ``"type": "object"`` (events-v2.json, ``AlertEventPayload``
    and ``ChangeEventPayload``; events-v1.json, the trigger's ``details``), so a string, a
    number or an array is refused. UNCONFIRMED: whether the live API refuses a string there, or
    keeps it as text, is not documented; the sandbox follows the schema, the stricter side.
    """
    value = doc.get(name)
    return [] if value is None or isinstance(value, dict) else [f"'{prefix}{name}' must be an object"]


def check_change(doc: dict[str, Any]) -> list[str]:
    """Problems with a change event (``/v2/change/enqueue``)."""
    errors = check_key(doc.get("routing_key"), "routing_key")
    payload = doc.get("payload")
    if not isinstance(payload, dict):
        errors.append("'payload' is missing or blank")
    elif _no_text(payload.get("summary")):
        errors.append("'payload.summary' is missing or blank")
    elif "timestamp" in payload and not _timestamp_ok(payload["timestamp"]):
        errors.append("'payload.timestamp' is not a valid ISO 8601 timestamp")
    if isinstance(payload, dict):
        errors += _strings(payload, ("source",), "payload.")
        errors += _details(payload, "custom_details", "payload.")
    errors += _check_context(doc)
    return errors


def check_legacy(doc: dict[str, Any]) -> list[str]:
    """Problems with a legacy Integration API event (``create_event.json``)."""
    errors = check_key(doc.get("service_key"), "service_key")
    event_type = doc.get("event_type")
    if event_type not in ACTIONS:
        errors.append("event_type is invalid (must be one of: trigger acknowledge resolve)")
    errors += _check_dedup_key(
        doc.get("incident_key"), "incident_key", required=event_type in ("acknowledge", "resolve")
    )
    if event_type == "trigger" and _no_text(doc.get("description")):
        errors.append("'description' is missing or blank")
    errors += _details(doc, "details")
    errors += _strings(doc, ("description", "client", "client_url"))
    contexts = doc.get("contexts")
    if contexts is not None:
        if not isinstance(contexts, list):
            errors.append("'contexts' must be an array")
        else:
            for index, context in enumerate(contexts):
                kind = context.get("type") if isinstance(context, dict) else None
                if kind == "link" and _blank(context.get("href")):
                    errors.append(f"'contexts[{index}].href' is missing or blank")
                elif kind == "image" and _blank(context.get("src")):
                    errors.append(f"'contexts[{index}].src' is missing or blank")
                elif kind not in ("link", "image"):
                    errors.append(f"'contexts[{index}].type' is invalid (must be one of: link image)")
                else:
                    errors += _strings(context, ("href", "src", "text", "alt"), f"contexts[{index}].")
    return errors


def _check_dedup_key(value: object, name: str, *, required: bool) -> list[str]:
    if value is None:
        return [f"'{name}' is missing or blank"] if required else []
    if not isinstance(value, str) or (required and not value.strip()):
        return [f"'{name}' is missing or blank"]
    if len(value) > MAX_DEDUP_KEY:
        return [f"'{name}' is too long (maximum is {MAX_DEDUP_KEY} characters)"]
    return []


def _check_context(doc: dict[str, Any]) -> list[str]:
    errors = []
    for name, required in (("links", "href"), ("images", "src")):
        items = doc.get(name)
        if items is None:
            continue
        if not isinstance(items, list):
            errors.append(f"'{name}' must be an array")
            continue
        for index, item in enumerate(items):
            if not isinstance(item, dict) or _blank(item.get(required)):
                errors.append(f"'{name}[{index}].{required}' is missing or blank")
            else:
                errors += _strings(item, ("href", "src", "text", "alt"), f"{name}[{index}].")
    return errors


def _timestamp_ok(value: object) -> bool:
    """A date, a time and a zone: the schema's ``format: date-time``.

    Python's ``fromisoformat`` alone would take a bare date, an ISO week or a time without a
    zone. UNCONFIRMED: whether PagerDuty refuses those or reads them some way is not
    documented; the sandbox refuses them, as pdconnect's own payload builder does.
    """
    if not isinstance(value, str) or not _DATE_TIME.fullmatch(value):
        return False
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return False
    return parsed.utcoffset() is not None


def urgency(severity: str) -> str:
    """PagerDuty's default mapping: critical and error page with high urgency."""
    return "high" if severity in ("critical", "error") else "low"
