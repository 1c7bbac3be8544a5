"""Events PagerDuty would refuse are refused before sending (issue 9, attack findings 6, 7, 8).

- A blank (whitespace-only) dedup or incident key passed pdconnect, then PagerDuty answered
  "'dedup_key' is missing or blank": in the outbox that event was dead-lettered and marked a
  working integration failing. The schema (``events-v2.json``) says the key "Identifies the
  alert to trigger, acknowledge, or resolve": a key that cannot identify the alert on
  acknowledge or resolve cannot on a trigger either (pdconnect already refused ``""`` there).
- ``custom_details`` keys that are not strings became JSON with duplicate keys
  (``{1: "a", "1": "b"}``), which PagerDuty cannot parse.
- Timestamps with an offset in seconds (``+00:19:32``) are no RFC 3339 ``date-time``, the
  schema's format; every timestamp is now sent in UTC.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from pdconnect import AlertEvent, ChangeEvent, LegacyEvent, Sender
from pdconnect.errors import EventValidationError
from pdconnect.payloads import alert_body, change_body, encode_body, legacy_body
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.conftest import SERVICE_KEY
from tests.openapi import assert_valid_request

#: RFC 3339 section 5.6 ``date-time``: the offset is ``Z`` or hours and minutes.
RFC_3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})", re.ASCII
)

BLANK_KEYS = ["", " ", "   ", "\t", "\n", "\r\n", " \t \n ", "\u00a0", "\u2003", "\u3000", "\x0b\x0c", "\u2028"]


def _trigger(**changes: Any) -> AlertEvent:
    fields: dict[str, Any] = {"summary": "s", "source": "h", "severity": "error"}
    fields.update(changes)
    return AlertEvent(action="trigger", **fields)


# -- blank dedup keys ------------------------------------------------------------------------


@pytest.mark.parametrize("key", BLANK_KEYS)
@pytest.mark.parametrize(
    "event",
    [
        pytest.param(lambda key: AlertEvent.acknowledge(key), id="acknowledge"),
        pytest.param(lambda key: AlertEvent.resolve(key), id="resolve"),
        pytest.param(lambda key: _trigger(dedup_key=key), id="trigger"),
    ],
)
def test_a_blank_dedup_key_is_refused(event: Any, key: str) -> None:
    with pytest.raises(EventValidationError, match="dedup_key must be a non-empty string"):
        alert_body(event(key), routing_key=SERVICE_KEY)


@pytest.mark.parametrize("key", BLANK_KEYS)
@pytest.mark.parametrize("action", ["trigger", "acknowledge", "resolve"])
def test_a_blank_incident_key_is_refused(action: str, key: str) -> None:
    event = LegacyEvent(event_type=action, incident_key=key, description="d")
    with pytest.raises(EventValidationError, match="incident_key must be a non-empty string"):
        legacy_body(event, service_key=SERVICE_KEY)


@pytest.mark.parametrize("key", [" k", "k ", "a b", "\tk\t", "srv01/mysql", "x" * 255])
def test_keys_with_something_besides_whitespace_are_sent_as_given(key: str) -> None:
    assert alert_body(AlertEvent.resolve(key), routing_key=SERVICE_KEY)["dedup_key"] == key


@given(st.text(alphabet=st.characters(categories=["Zs", "Zl", "Zp", "Cc"]), max_size=20))
def test_any_key_strip_empties_is_refused(key: str) -> None:
    if key.strip():
        return
    with pytest.raises(EventValidationError):
        alert_body(AlertEvent.resolve(key), routing_key=SERVICE_KEY)


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_the_sandbox_is_never_sent_a_blank_key(pagerduty_sandbox: PagerDutySandbox, action: str) -> None:
    # The attacker's p7: prepare passed, then "400 ... 'dedup_key' is missing or blank".
    key = pagerduty_sandbox.service_key()
    sender = Sender(events_base_url=pagerduty_sandbox.url)
    with pytest.raises(EventValidationError, match="dedup_key"):
        getattr(sender, action)(key, "   ")
    assert pagerduty_sandbox.received(routing_key=key) == []


# -- keys of custom details ------------------------------------------------------------------

NON_STRING_KEYS: list[tuple[object, str]] = [
    ({1: "a", "1": "b"}, "custom_details"),
    ({1: "a"}, "custom_details"),
    ({True: "a", "true": "b"}, "custom_details"),
    ({None: "a", "null": "b"}, "custom_details"),
    ({1.5: "a"}, "custom_details"),
    ({(1, 2): "a"}, "custom_details"),
    ({b"k": "a"}, "custom_details"),
    ({1j: "a"}, "custom_details"),
    ({"a": {2: "x", "2": "y"}}, "custom_details['a']"),
    ({"a": [{"b": {False: 1}}]}, "custom_details['a'][0]['b']"),
    ({"a": ({"b": 1}, {3: 3})}, "custom_details['a'][1]"),
    ({"a": [[[{0: 0}]]]}, "custom_details['a'][0][0][0]"),
]


@pytest.mark.parametrize(("details", "path"), NON_STRING_KEYS)
def test_a_key_that_is_not_a_string_is_refused_naming_its_path(details: dict[Any, Any], path: str) -> None:
    with pytest.raises(EventValidationError) as info:
        alert_body(_trigger(custom_details=details), routing_key=SERVICE_KEY)
    assert any(problem.startswith(f"{path} has a key that is not a string") for problem in info.value.problems)
    with pytest.raises(EventValidationError, match=re.escape(path)):
        change_body(ChangeEvent(summary="s", custom_details=details), routing_key=SERVICE_KEY)
    with pytest.raises(EventValidationError, match=re.escape(path.replace("custom_details", "details"))):
        legacy_body(LegacyEvent.trigger("d", details=details), service_key=SERVICE_KEY)


def test_many_bad_keys_are_named_a_few_at_a_time() -> None:
    with pytest.raises(EventValidationError) as info:
        alert_body(_trigger(custom_details={i: i for i in range(10_000)}), routing_key=SERVICE_KEY)
    assert len(info.value.problems) == 5


def test_a_hostile_key_repr_is_cut_short() -> None:
    class Loud:
        def __repr__(self) -> str:
            return "x" * 10_000

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    with pytest.raises(EventValidationError) as info:
        alert_body(_trigger(custom_details={Loud(): 1, Broken(): 2}), routing_key=SERVICE_KEY)
    assert all(len(problem) < 200 for problem in info.value.problems)
    assert "<unprintable>" in str(info.value)


def test_deep_and_cyclic_details_end_the_walk() -> None:
    deep: dict[Any, Any] = {}
    cursor = deep
    for _ in range(50_000):
        cursor["k"] = {}
        cursor = cursor["k"]
    cursor[7] = "x"
    with pytest.raises(EventValidationError, match="has a key that is not a string: 7") as info:
        alert_body(_trigger(custom_details=deep), routing_key=SERVICE_KEY)
    assert len(str(info.value)) < 400
    cyclic: dict[str, Any] = {"a": []}
    cyclic["a"].append(cyclic)
    body = alert_body(_trigger(custom_details=cyclic), routing_key=SERVICE_KEY)
    with pytest.raises(EventValidationError, match="not JSON-serialisable"):
        encode_body(body)


_JSON_KEYS = st.one_of(st.text(max_size=5), st.integers(), st.booleans(), st.none(), st.floats(allow_nan=False))
_DETAILS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_JSON_KEYS, children, max_size=3),
    max_leaves=12,
)


def _has_non_string_key(value: object) -> bool:
    if isinstance(value, dict):
        return any(not isinstance(k, str) or _has_non_string_key(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_non_string_key(item) for item in value)
    return False


@given(details=st.dictionaries(_JSON_KEYS, _DETAILS, max_size=4))
def test_details_are_refused_exactly_when_a_key_is_no_string(details: dict[Any, Any]) -> None:
    if _has_non_string_key(details):
        with pytest.raises(EventValidationError) as info:
            alert_body(_trigger(custom_details=details), routing_key=SERVICE_KEY)
        assert all("has a key that is not a string" in problem for problem in info.value.problems)
        return
    data = encode_body(alert_body(_trigger(custom_details=details), routing_key=SERVICE_KEY))
    pairs: list[list[tuple[str, Any]]] = []
    json.loads(data, object_pairs_hook=lambda items: pairs.append(items) or dict(items))
    assert all(len({k for k, _ in items}) == len(items) for items in pairs), "no duplicate keys"


def test_the_sandbox_is_never_sent_duplicate_keys(pagerduty_sandbox: PagerDutySandbox) -> None:
    key = pagerduty_sandbox.service_key()
    sender = Sender(events_base_url=pagerduty_sandbox.url)
    with pytest.raises(EventValidationError, match="not a string"):
        sender.trigger(key, "x", source="h", severity="info", custom_details={1: "a", "1": "b"})
    assert pagerduty_sandbox.received(routing_key=key) == []


# -- timestamps ------------------------------------------------------------------------------

AMSTERDAM = ZoneInfo("Europe/Amsterdam")

TIMESTAMPS: list[tuple[object, str]] = [
    (datetime(1900, 1, 1, tzinfo=AMSTERDAM), "1899-12-31T23:40:28+00:00"),  # +00:19:32
    ("2024-01-01T00:00:00+05:30:15", "2023-12-31T18:29:45+00:00"),
    ("2024-01-01T00:00:00.5+00:00:01", "2023-12-31T23:59:59.500000+00:00"),
    ("2024-01-01T00:00:00-00:00:30", "2024-01-01T00:00:30+00:00"),
    (datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=5, minutes=30))), "2026-01-01T06:30:00+00:00"),
    (datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=23, minutes=59))), "2025-12-31T12:01:00+00:00"),
    (datetime(2026, 6, 1, 12, tzinfo=AMSTERDAM), "2026-06-01T10:00:00+00:00"),
    ("2015-07-17T08:42:58.315+0000", "2015-07-17T08:42:58.315000+00:00"),
    ("2015-07-17T08:42:58Z", "2015-07-17T08:42:58+00:00"),
    ("20150717T084258Z", "2015-07-17T08:42:58+00:00"),  # ISO 8601's basic form, sent as RFC 3339
    ("2015-W29-5T08:42:58+02:00", "2015-07-17T06:42:58+00:00"),  # an ISO week date too
    (datetime(9999, 12, 31, 23, 59, tzinfo=UTC), "9999-12-31T23:59:00+00:00"),
    (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=-1))), "0001-01-01T01:00:00+00:00"),
]


@pytest.mark.parametrize(("timestamp", "sent"), TIMESTAMPS)
def test_every_timestamp_is_sent_in_utc(timestamp: object, sent: str) -> None:
    body = alert_body(_trigger(timestamp=timestamp), routing_key=SERVICE_KEY)
    assert body["payload"]["timestamp"] == sent
    assert RFC_3339.fullmatch(sent)
    change = change_body(ChangeEvent(summary="s", timestamp=timestamp), routing_key=SERVICE_KEY)
    assert change["payload"]["timestamp"] == sent


class _Raising(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        raise ValueError("no offset today")


class _TooFar(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=30)


@pytest.mark.parametrize(
    ("timestamp", "message"),
    [
        (datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1))), "exists in UTC"),  # before year 1 in UTC
        (datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-2))), "exists in UTC"),
        ("0001-01-01T00:00:00+01:00", "exists in UTC"),
        (datetime(2026, 1, 1, tzinfo=_Raising()), "exists in UTC"),
        (datetime(2026, 1, 1, tzinfo=_TooFar()), "exists in UTC"),
        ("2024-01-01T00:00:00", "carry a timezone"),
        ("2024-01-01T00:00:00+24:00", "ISO 8601"),
    ],
)
def test_a_timestamp_that_has_no_utc_time_is_refused(timestamp: object, message: str) -> None:
    with pytest.raises(EventValidationError, match=message):
        alert_body(_trigger(timestamp=timestamp), routing_key=SERVICE_KEY)


#: Whole seconds, as local mean times have (Python's own ``fromisoformat`` drops an offset's
#: microseconds, so a text offset with them is not one instant in Python either).
_OFFSETS = st.integers(min_value=-86_399, max_value=86_399).map(lambda seconds: timedelta(seconds=seconds))


@given(
    moment=st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31)),
    offset=_OFFSETS,
    as_text=st.booleans(),
)
def test_any_aware_timestamp_is_sent_as_the_same_instant_in_rfc_3339(
    moment: datetime, offset: timedelta, as_text: bool
) -> None:
    aware = moment.replace(tzinfo=timezone(offset))
    body = alert_body(_trigger(timestamp=aware.isoformat() if as_text else aware), routing_key=SERVICE_KEY)
    sent = body["payload"]["timestamp"]
    assert RFC_3339.fullmatch(sent), sent
    assert datetime.fromisoformat(sent) == aware
    assert_valid_request("alert", body)


def test_a_legacy_conversion_writes_the_timestamp_in_utc() -> None:
    event = _trigger(timestamp=datetime(1900, 1, 1, tzinfo=AMSTERDAM))
    assert LegacyEvent.from_alert(event).details == {
        "source": "h",
        "severity": "error",
        "timestamp": "1899-12-31T23:40:28+00:00",
    }


def test_the_sandbox_accepts_what_pdconnect_sends_for_amsterdam_in_1900(pagerduty_sandbox: PagerDutySandbox) -> None:
    key = pagerduty_sandbox.service_key()
    sender = Sender(events_base_url=pagerduty_sandbox.url)
    sender.trigger(
        key, "x", source="h", severity="info", dedup_key="old", timestamp=datetime(1900, 1, 1, tzinfo=AMSTERDAM)
    )
    (received,) = pagerduty_sandbox.received(routing_key=key)
    assert received["status"] == 202
    assert received["request"]["payload"]["timestamp"] == "1899-12-31T23:40:28+00:00"


@pytest.mark.parametrize(
    ("timestamp", "status"),
    [
        ("1900-01-01T00:00:00+00:19:32", 400),
        ("2024-01-01T00:00:00+05:30:15", 400),
        ("2024-01-01T00:00:00+05:30:15.5", 400),
        ("2024-01-01T00:00:00-00:00:30", 400),
        ("2024-01-01T00:00:00+05:30", 202),
        ("2024-01-01T00:00:00+0530", 202),
        ("1899-12-31T23:40:28+00:00", 202),
    ],
)
def test_the_sandbox_refuses_an_offset_with_seconds(
    pagerduty_sandbox: PagerDutySandbox, timestamp: str, status: int
) -> None:
    # UNCONFIRMED what real PagerDuty does; RFC 3339's date-time has no such offset.
    event = {
        "routing_key": pagerduty_sandbox.service_key(),
        "event_action": "trigger",
        "payload": {"summary": "s", "source": "h", "severity": "info", "timestamp": timestamp},
    }
    answer = requests.post(pagerduty_sandbox.url + "/v2/enqueue", json=event, timeout=10)
    assert answer.status_code == status
    if status == 400:
        assert "'payload.timestamp' is not a valid ISO 8601 timestamp" in answer.json()["errors"]
