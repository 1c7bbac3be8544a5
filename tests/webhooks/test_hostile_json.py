"""Hostile JSON at both parsers (issue 9): NaN, lone surrogates, deep nesting, odd bytes and types.

Whatever a parser hands on must be storable and sendable again: JSON without NaN or
infinities, text that encodes as UTF-8, nesting a loop (not the stack) can walk.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect import Sender
from pdconnect.alertmanager import parse_alertmanager, to_event
from pdconnect.errors import PayloadInvalid
from pdconnect.webhooks import parse_webhook
from pdconnect.webhooks.parsing import MAX_DEPTH, load_json
from tests.conftest import SERVICE_KEY
from tests.test_alertmanager import payload
from tests.webhooks import samples


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


HOSTILE = [
    (b"NaN", "NaN"),
    (b'{"event": {"id": "1", "event_type": "x", "data": {"number": NaN}}}', "NaN"),
    (b'{"a": Infinity}', "Infinity"),
    (b'{"a": [-Infinity]}', "-Infinity"),
    (b'{"a": "\\ud800"}', "surrogate"),
    (b'{"a": "ok \\udfff"}', "surrogate"),
    (b'{"\\ud83d": 1}', "surrogate"),  # a key, and only half of a pair
    (b'["x", {"b": ["\\ude00\\ud83d"]}]', "surrogate"),  # a pair in the wrong order is two lone halves
    (nested(MAX_DEPTH + 1), "nested"),
    (nested(100_000), "nested"),
    (b"\xff\xfe{}", "UTF-8"),
    (b"\xc0\xaf", "UTF-8"),  # an overlong encoding of "/"
    (b"\xed\xa0\x80", "UTF-8"),  # a surrogate encoded in UTF-8 bytes
    (b"\xef\xbb\xbf{}", "JSON"),  # a byte order mark
    (b'{"a": "raw\x01control"}', "JSON"),
    (b"[" + b"9" * 5000 + b"]", "JSON"),  # over Python's digit limit for int()
    (b"   ", "empty"),
    (b'{"a": 1} {"b": 2}', "JSON"),
]


@pytest.mark.parametrize(("body", "reason"), HOSTILE)
def test_hostile_json_is_refused_with_a_reason(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadInvalid) as raised:
        load_json(body)
    assert reason in str(raised.value)


@pytest.mark.parametrize(
    ("body", "value"),
    [
        (nested(MAX_DEPTH), None),
        (b'["\\ud83d\\ude00"]', ["\U0001f600"]),  # a proper pair is one character
        (b'["\\u0000"]', ["\x00"]),  # NUL is valid JSON; the stores take care of it
    ],
)
def test_the_edges_of_what_is_read(body: bytes, value: Any) -> None:
    data = load_json(body)
    if value is not None:
        assert data == value


def storable(data: Any) -> None:
    """What an outbox, a database or a JSON response does with a parsed value later."""
    json.dumps(data, allow_nan=False, ensure_ascii=False).encode("utf-8")


any_text = st.text(max_size=30)  # every code point, lone surrogates included
any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=25,
)


@given(value=any_json)
def test_any_json_value_is_read_storable_or_refused(value: Any) -> None:
    body = json.dumps(value).encode()  # NaN and infinities are written as literals, surrogates as escapes
    try:
        data = load_json(body)
    except PayloadInvalid:
        return
    storable(data)


@given(body=st.binary(max_size=400))
def test_any_bytes_are_read_storable_or_refused(body: bytes) -> None:
    try:
        data = load_json(body)
    except PayloadInvalid:
        return
    storable(data)


def test_large_floats_become_infinity_and_are_refused() -> None:
    # json reads 1e400 as inf without calling parse_constant: the walk refuses it.
    with pytest.raises(PayloadInvalid):
        parse_webhook(b'{"event": {"id": "1", "event_type": "x", "data": {"n": 1e400}}}')


@given(value=any_json, where=st.sampled_from(["id", "event_type", "occurred_at", "data", "agent", "client"]))
def test_any_value_in_a_webhook_event_gives_events_or_a_typed_error(value: Any, where: str) -> None:
    body = samples.v3()
    body["event"][where] = value
    try:
        events = parse_webhook(json.dumps(body).encode())
    except PayloadInvalid:
        return
    for event in events:
        storable([event.id, event.event_type, dict(event.data)])


ALERTMANAGER_FIELDS = ["version", "groupKey", "status", "receiver", "alerts", "groupLabels", "commonLabels",
                       "commonAnnotations", "externalURL", "truncatedAlerts"]  # fmt: skip


@given(changes=st.dictionaries(st.sampled_from(ALERTMANAGER_FIELDS), any_json, max_size=4))
def test_any_alertmanager_change_gives_a_valid_event_or_a_typed_error(changes: dict[str, Any]) -> None:
    try:
        group = parse_alertmanager(json.dumps({**payload("firing"), **changes}).encode())
    except PayloadInvalid:
        return
    Sender().prepare(SERVICE_KEY, to_event(group))  # raises if PagerDuty would refuse the event


label_values = st.sampled_from(["", " ", "\t", "\n", "\x00", "x" * 300, "crit ", "\u202e"]) | st.text(max_size=10)


@given(
    labels=st.dictionaries(
        st.sampled_from(["instance", "job", "service", "alertname", "severity", "env"]), label_values
    ),
    receiver=label_values,
    external=st.sampled_from(["http://user:pw@am:9093", "http://am:99999", "http://am\x00/", "http://a m/", "ftp://am"])
    | st.text(max_size=20),
)
def test_any_labels_give_a_valid_event(labels: dict[str, str], receiver: str, external: str) -> None:
    body = {**payload("firing"), "commonLabels": labels, "receiver": receiver, "externalURL": external}
    try:
        group = parse_alertmanager(json.dumps(body).encode())
    except PayloadInvalid:
        return
    event = to_event(group)
    Sender().prepare(SERVICE_KEY, event)
    assert event.client_url is None or "@" not in event.client_url


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"version": "x" * 100_000}, "version"),
        ({"version": {"nested": ["x" * 1000]}}, "version"),
        ({"truncatedAlerts": 2**64}, "truncatedAlerts"),
        ({"truncatedAlerts": 10**4000}, "truncatedAlerts"),
        ({"truncatedAlerts": 1.5}, "truncatedAlerts"),
        ({"groupKey": ["k"]}, "groupKey"),
        ({"commonLabels": {"a": "\ud800"}}, None),
    ],
)
def test_hostile_alertmanager_fields(changes: dict[str, Any], field: str | None) -> None:
    with pytest.raises(PayloadInvalid) as raised:
        parse_alertmanager(json.dumps({**payload("firing"), **changes}).encode())
    assert raised.value.field == field
    assert len(str(raised.value)) < 200, "the message never echoes the whole input"


@pytest.mark.parametrize(
    ("labels", "receiver", "source"),
    [
        ({"instance": " ", "job": "  "}, "", "vm"),  # the externalURL's host
        ({"instance": "\t", "job": "api "}, "pd", "api"),
        ({"service": " "}, " ", "checkout"),
    ],
)
def test_blank_labels_are_skipped_not_sent(labels: dict[str, str], receiver: str, source: str) -> None:
    """A blank label became a blank source or component, which PagerDuty refuses (was a 503)."""
    base = payload("firing")
    body = {**base, "commonLabels": {**base["commonLabels"], **labels}, "receiver": receiver}
    event = to_event(parse_alertmanager(json.dumps(body).encode()))
    Sender().prepare(SERVICE_KEY, event)
    assert (event.source == source and event.component is None) or event.component.strip()


@pytest.mark.parametrize(
    "url", ["http://admin:hunter2@am:9093", "http://admin@am:9093", "http://am:99999", "http://am\x00x/", "http://a m/"]
)
def test_an_odd_external_url_is_not_passed_on(url: str) -> None:
    group = parse_alertmanager(json.dumps({**payload("firing"), "externalURL": url}).encode())
    assert group.external_url is None
    assert b"hunter2" not in Sender().prepare(SERVICE_KEY, to_event(group)).body
