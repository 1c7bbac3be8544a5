"""Turning events into PagerDuty's JSON bodies, within PagerDuty's documented limits.

Every limit is enforced here, before any request, because a 400 from PagerDuty loses the
alert while a local check does not:

- severity is one of ``critical``, ``error``, ``warning``, ``info``;
- each action has its required fields (a trigger needs summary, source and severity;
  acknowledge and resolve need a dedup key);
- keys are 32 ASCII letters and digits; dedup keys are at most 255 characters;
- summary and description are at most 1,024 characters: longer ones are cut, ending in an
  ellipsis, with a logged warning;
- the whole body is at most 512 KB: if it is larger, custom details are replaced by a short
  note saying they were dropped (as Prometheus Alertmanager does), with a logged warning;
- dedup keys are not blank: PagerDuty refuses an acknowledge or resolve whose key is only
  whitespace ("'dedup_key' is missing or blank"), so a trigger with one could never be resolved;
- custom details have string keys only, at every depth: ``json`` would write ``{1: "a", "1": "b"}``
  as an object with a duplicate key, which PagerDuty cannot parse;
- image sources are https URLs; timestamps carry a timezone and are sent in UTC, because RFC
  3339's ``date-time`` (the schema's format) has no offsets with seconds, such as
  Amsterdam's ``+00:19:32`` before 1937.

All problems found are reported together in one
:class:`~pdconnect.errors.EventValidationError`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from pdconnect.errors import EventValidationError, InvalidIntegrationKey
from pdconnect.events import AlertEvent, ChangeEvent, EventAction, Image, LegacyEvent, Link, Severity
from pdconnect.keys import normalize_key

logger = logging.getLogger("pdconnect")

#: Events API v2 ``payload.summary`` and v1 ``description``: "maximum of 1024 characters".
MAX_SUMMARY_LENGTH = 1024
#: ``dedup_key`` / ``incident_key``: "maximum of 255 characters".
MAX_DEDUP_KEY_LENGTH = 255
#: "Events API payloads are limited to 512 KB". Counted as 512,000 bytes, like Alertmanager,
#: so a body that fits here fits whichever way PagerDuty counts a kilobyte.
MAX_BODY_BYTES = 512_000
#: Replaces ``custom_details`` / ``details`` when the body is too large.
#: At most this many keys that are not strings are named in one error.
MAX_KEY_PROBLEMS = 5
DETAILS_DROPPED_NOTE = {
    "pdconnect": "custom details were removed because the event exceeded PagerDuty's 512 KB limit",
}
_ELLIPSIS = "…"


class _Checker:
    """Collects every problem with one event, so the caller hears about all of them at once."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, message: str) -> None:
        self.problems.append(message)

    def raise_if_any(self) -> None:
        if self.problems:
            raise EventValidationError(self.problems)

    def key(self, value: object, name: str) -> str:
        try:
            return normalize_key(value, name=name)
        except InvalidIntegrationKey as exc:
            self.fail(str(exc))
            return ""

    def optional_text(self, value: object, name: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{name} must be a non-empty string when given")
            return None
        return value

    def required_text(self, value: object, name: str, action: str) -> str | None:
        if value is None:
            self.fail(f"{name} is required for {action} events")
            return None
        return self.optional_text(value, name)

    def summary(self, value: object, name: str, action: str) -> str | None:
        text = self.required_text(value, name, action)
        if text is not None and len(text) > MAX_SUMMARY_LENGTH:
            logger.warning(
                "pdconnect: %s was %d characters, cut to PagerDuty's limit of %d",
                name,
                len(text),
                MAX_SUMMARY_LENGTH,
            )
            text = text[: MAX_SUMMARY_LENGTH - len(_ELLIPSIS)] + _ELLIPSIS
        return text

    def dedup_key(self, value: object, name: str, *, required_for: str | None) -> str | None:
        if value is None:
            if required_for is not None:
                self.fail(f"{name} is required for {required_for} events")
            return None
        if not isinstance(value, str) or not value.strip():
            self.fail(f"{name} must be a non-empty string, not blank")
            return None
        if len(value) > MAX_DEDUP_KEY_LENGTH:
            self.fail(f"{name} is {len(value)} characters long; PagerDuty allows at most {MAX_DEDUP_KEY_LENGTH}")
            return None
        if "\x00" in value:
            # UNCONFIRMED what PagerDuty does with a NUL; no database column of the outbox can hold
            # one on PostgreSQL, so the inline and the outbox path refuse it alike.
            self.fail(f"{name} must not contain a NUL character")
            return None
        return value

    def action(self, value: object, name: str) -> EventAction | None:
        try:
            return EventAction(str(value))
        except ValueError:
            self.fail(f"{name} must be one of trigger, acknowledge, resolve")
            return None

    def severity(self, value: object) -> str | None:
        if value is None:
            self.fail("severity is required for trigger events")
            return None
        try:
            return Severity(str(value)).value
        except ValueError:
            self.fail("severity must be one of critical, error, warning, info")
            return None

    def timestamp(self, value: object) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                self.fail("timestamp must be an ISO 8601 date and time")
                return None
        elif isinstance(value, datetime):
            parsed = value
        else:
            self.fail("timestamp must be a datetime or an ISO 8601 string")
            return None
        try:
            offset = parsed.utcoffset()
            in_utc = parsed.astimezone(UTC) if offset is not None else None
        except (ValueError, OverflowError, TypeError):  # a tzinfo that misbehaves, or year 1 at +01:00
            self.fail("timestamp must be a date and time that exists in UTC")
            return None
        if in_utc is None:
            self.fail("timestamp must carry a timezone (use datetime.now(timezone.utc))")
            return None
        return in_utc.isoformat()

    def url(self, value: object, name: str, *, https_only: bool = False, required: bool = False) -> str | None:
        if value is None:
            if required:
                self.fail(f"{name} is required")
            return None
        try:
            parts = urlsplit(value) if isinstance(value, str) else None
        except ValueError:
            parts = None
        schemes = ("https",) if https_only else ("http", "https")
        if parts is None or parts.scheme not in schemes or not parts.netloc:
            self.fail(f"{name} must be an absolute {'https' if https_only else 'http(s)'} URL")
            return None
        assert isinstance(value, str)
        return value

    def details(self, value: object, name: str) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.fail(f"{name} must be a mapping (a JSON object)")
            return None
        details = dict(value)
        for path, key in _non_string_keys(details, name):
            self.fail(f"{path} has a key that is not a string: {_brief(key)} ({type(key).__name__})")
        return details

    def links(self, links: tuple[Link, ...]) -> list[dict[str, str]]:
        result = []
        for index, link in enumerate(links):
            href = self.url(link.href, f"links[{index}].href", required=True)
            entry = {"href": href or ""}
            text = self.optional_text(link.text, f"links[{index}].text")
            if text is not None:
                entry["text"] = text
            result.append(entry)
        return result

    def images(self, images: tuple[Image, ...]) -> list[dict[str, str]]:
        result = []
        for index, image in enumerate(images):
            src = self.url(image.src, f"images[{index}].src", https_only=True, required=True)
            entry = {"src": src or ""}
            href = self.url(image.href, f"images[{index}].href")
            if href is not None:
                entry["href"] = href
            alt = self.optional_text(image.alt, f"images[{index}].alt")
            if alt is not None:
                entry["alt"] = alt
            result.append(entry)
        return result


def _non_string_keys(details: dict[Any, Any], name: str) -> list[tuple[str, object]]:
    """The first :data:`MAX_KEY_PROBLEMS` keys in ``details``, at any depth, that are not ``str``.

    Walked with a stack, not recursion, so deep nesting is left to :func:`encode_body` to
    refuse; each container is visited once, so a cycle ends the walk too. Paths are kept as
    links to their parent and spelled out only for a key that is reported.
    """
    found: list[tuple[str, object]] = []
    seen: set[int] = set()
    root: _Path = (None, name)
    stack: list[tuple[_Path, object]] = [(root, details)]
    while stack and len(found) < MAX_KEY_PROBLEMS:
        path, value = stack.pop()
        if id(value) in seen:
            continue
        if isinstance(value, dict):
            seen.add(id(value))
            children: list[tuple[_Path, object]] = []
            for key, child in value.items():
                if isinstance(key, str):
                    children.append(((path, f"[{_brief(key)}]"), child))
                    continue
                found.append((_spell(path), key))
                if len(found) == MAX_KEY_PROBLEMS:
                    break
            stack.extend(reversed(children))
        elif isinstance(value, list | tuple):
            seen.add(id(value))
            stack.extend(reversed([((path, f"[{index}]"), child) for index, child in enumerate(value)]))
    return found


_Path = tuple[Any, str]  # (parent path or None, this step)


def _spell(path: _Path) -> str:
    steps: list[str] = []
    node: _Path | None = path
    while node is not None:
        steps.append(node[1])
        node = node[0]
    text = "".join(reversed(steps))
    return text if len(text) <= 200 else steps[-1] + "…" + text[-150:]


def _brief(key: object) -> str:
    """A key as it appears in an error: its repr, cut short (keys are the vendor's data)."""
    try:
        text = repr(key)
    except Exception:  # a hostile __repr__ must not hide the real problem
        text = "<unprintable>"
    return text if len(text) <= 40 else text[:39] + "…"


def new_dedup_key() -> str:
    """A fresh dedup key for a trigger the caller did not name (a random UUID, as PagerDuty makes)."""
    return uuid.uuid4().hex


def alert_body(
    event: AlertEvent,
    *,
    routing_key: str,
    client: str | None = None,
    client_url: str | None = None,
) -> dict[str, Any]:
    """Return the ``/v2/enqueue`` body for ``event``, or raise listing every problem.

    ``client`` and ``client_url`` are the sender's defaults; the event's own values win. They
    are sent on triggers only, where PagerDuty uses them. A trigger without a dedup key gets
    a new one here.
    """
    check = _Checker()
    body: dict[str, Any] = {"routing_key": check.key(routing_key, "routing_key")}
    action = check.action(event.action, "action")
    body["event_action"] = action.value if action else None
    if action is EventAction.TRIGGER:
        dedup_key = check.dedup_key(event.dedup_key, "dedup_key", required_for=None) or new_dedup_key()
        payload: dict[str, Any] = {
            "summary": check.summary(event.summary, "summary", "trigger"),
            "source": check.required_text(event.source, "source", "trigger"),
            "severity": check.severity(event.severity),
        }
        optional = {
            "timestamp": check.timestamp(event.timestamp),
            "component": check.optional_text(event.component, "component"),
            "group": check.optional_text(event.group, "group"),
            "class": check.optional_text(event.event_class, "event_class"),
            "custom_details": check.details(event.custom_details, "custom_details"),
        }
        payload.update({k: v for k, v in optional.items() if v is not None})
        body["dedup_key"] = dedup_key
        body["payload"] = payload
        _add_context(body, check, event.links, event.images)
        _add_client(body, check, event.client or client, event.client_url or client_url)
    elif action is not None:
        body["dedup_key"] = check.dedup_key(event.dedup_key, "dedup_key", required_for=action.value)
    check.raise_if_any()
    return body


def change_body(event: ChangeEvent, *, routing_key: str) -> dict[str, Any]:
    """Return the ``/v2/change/enqueue`` body for ``event``, or raise listing every problem."""
    check = _Checker()
    body: dict[str, Any] = {"routing_key": check.key(routing_key, "routing_key")}
    payload: dict[str, Any] = {"summary": check.summary(event.summary, "summary", "change")}
    optional = {
        "source": check.optional_text(event.source, "source"),
        "timestamp": check.timestamp(event.timestamp),
        "custom_details": check.details(event.custom_details, "custom_details"),
    }
    payload.update({k: v for k, v in optional.items() if v is not None})
    body["payload"] = payload
    _add_context(body, check, event.links, event.images)
    check.raise_if_any()
    return body


def legacy_body(
    event: LegacyEvent,
    *,
    service_key: str,
    vendor: str | None = None,
    client: str | None = None,
    client_url: str | None = None,
) -> dict[str, Any]:
    """Return the legacy ``create_event.json`` body, or raise listing every problem.

    ``vendor`` (the vendor key) is added to every event, as the Connect guide requires;
    ``client`` and ``client_url`` to triggers. The event's own values win over these
    defaults. ``links`` and ``images`` become ``contexts``.
    """
    check = _Checker()
    body: dict[str, Any] = {"service_key": check.key(service_key, "service_key")}
    action = check.action(event.event_type, "event_type")
    body["event_type"] = action.value if action else None
    vendor = check.optional_text(event.vendor, "vendor") or vendor
    if vendor:
        body["vendor"] = vendor
    if action is EventAction.TRIGGER:
        body["incident_key"] = check.dedup_key(event.incident_key, "incident_key", required_for=None) or new_dedup_key()
        body["description"] = check.summary(event.description, "description", "trigger")
        details = check.details(event.details, "details")
        if details is not None:
            body["details"] = details
        contexts: list[dict[str, str]] = [{"type": "link", **link} for link in check.links(event.links)]
        contexts += [{"type": "image", **image} for image in check.images(event.images)]
        if contexts:
            body["contexts"] = contexts
        _add_client(body, check, event.client or client, event.client_url or client_url)
    elif action is not None:
        body["incident_key"] = check.dedup_key(event.incident_key, "incident_key", required_for=action.value)
    check.raise_if_any()
    return body


def _add_context(body: dict[str, Any], check: _Checker, links: tuple[Link, ...], images: tuple[Image, ...]) -> None:
    if links:
        body["links"] = check.links(links)
    if images:
        body["images"] = check.images(images)


def _add_client(body: dict[str, Any], check: _Checker, client: str | None, client_url: str | None) -> None:
    name = check.optional_text(client, "client")
    if name is not None:
        body["client"] = name
    url = check.url(client_url, "client_url")
    if url is not None:
        body["client_url"] = url


def check_vendor_fields(*, client: str | None, client_url: str | None) -> None:
    """Raise :class:`~pdconnect.errors.EventValidationError` if a sender's defaults are unusable."""
    check = _Checker()
    _add_client({}, check, client, client_url)
    check.raise_if_any()


def encode_body(body: dict[str, Any]) -> bytes:
    """Serialise a body as compact UTF-8 JSON that fits PagerDuty's size limit.

    When it does not fit, the custom details (``payload.custom_details`` or ``details``) are
    replaced by :data:`DETAILS_DROPPED_NOTE` and a warning is logged; if it still does not
    fit, :class:`~pdconnect.errors.EventValidationError` is raised.
    """
    data = _dumps(body)
    if len(data) <= MAX_BODY_BYTES:
        return data
    original = len(data)
    body = dict(body)
    if "payload" in body:
        holder = body["payload"] = dict(body["payload"])
        field = "custom_details"
    else:
        holder, field = body, "details"
    if field in holder:
        holder[field] = dict(DETAILS_DROPPED_NOTE)
        data = _dumps(body)
        if len(data) <= MAX_BODY_BYTES:
            logger.warning(
                "pdconnect: event body was %d bytes, over PagerDuty's 512 KB limit; %s dropped",
                original,
                field,
            )
            return data
    raise EventValidationError([f"the event is {len(data)} bytes, over PagerDuty's limit of {MAX_BODY_BYTES} bytes"])


def _dumps(body: dict[str, Any]) -> bytes:
    try:
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        # Values JSON or UTF-8 cannot express (objects, NaN, lone surrogates, cycles).
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:100]
        raise EventValidationError([f"the event is not JSON-serialisable: {reason}"]) from exc
