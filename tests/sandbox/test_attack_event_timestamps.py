"""``payload.timestamp`` is an RFC 3339 date-time, as the Events API's schema says (issue 9).

The schema types it ``format: date-time`` (its example: ``2015-07-17T08:42:58.315+0000``).
Python's ``fromisoformat`` also takes a bare date, an ISO week and a time without a zone,
which the sandbox used to accept; pdconnect's own payload builder refuses a timestamp without
a timezone, so the sandbox now does too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect.sandbox import Sandbox, SandboxSettings
from pdconnect.sandbox.model import IntegrationKey


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(SandboxSettings(rate_limit=None))
    yield box
    box.close()


def _send(sandbox: Sandbox, timestamp: object, *, change: bool = False) -> int:
    key = next(k for k in sandbox.store.all(IntegrationKey) if k.kind == "events_api_v2")
    payload = {"summary": "s", "source": "h", "severity": "info", "timestamp": timestamp}
    if change:
        return sandbox.handle_change(json.dumps({"routing_key": key.id, "payload": payload}).encode()).status
    event = {"routing_key": key.id, "event_action": "trigger", "payload": payload}
    return sandbox.handle_alert(json.dumps(event).encode()).status


REFUSED = [
    "2015-07-17",
    "2015-W29-5",
    "20150717",
    "2015-07-17T08",
    "2015-07-17T08:42:58",  # no timezone
    "2015-07-17T08:42:58.315",
    "2015-13-17T08:42:58Z",
    "2015-07-17T25:42:58Z",
    "",
    " ",
    "2015-07-17T08:42:58Z\n",
    "now",
    "１２０１５-07-17T08:42:58Z",
    "\ud800",
    1437122578,
    1437122578.5,
    True,
    ["2015-07-17T08:42:58Z"],
    {"at": "2015-07-17T08:42:58Z"},
]
ACCEPTED = [
    "2015-07-17T08:42:58.315+0000",
    "2015-07-17T08:42:58.315+00:00",
    "2015-07-17T08:42:58Z",
    "2015-07-17T08:42:58-05:00",
    "2015-07-17 08:42:58Z",
]


@pytest.mark.parametrize("change", [False, True])
@pytest.mark.parametrize("timestamp", REFUSED)
def test_a_timestamp_that_is_no_date_time_with_a_zone_is_refused(
    sandbox: Sandbox, timestamp: object, change: bool
) -> None:
    assert _send(sandbox, timestamp, change=change) == 400


@pytest.mark.parametrize("change", [False, True])
@pytest.mark.parametrize("timestamp", ACCEPTED)
def test_an_rfc_3339_timestamp_is_accepted(sandbox: Sandbox, timestamp: str, change: bool) -> None:
    assert _send(sandbox, timestamp, change=change) == 202


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(moment=st.datetimes(timezones=st.timezones()))
def test_every_aware_datetime_is_accepted(sandbox: Sandbox, moment: datetime) -> None:
    # An offset with seconds (old local mean times, +00:19:32) is no RFC 3339 date-time.
    offset = moment.utcoffset()
    assert offset is not None
    status = _send(sandbox, moment.isoformat())
    assert status == (202 if offset % timedelta(minutes=1) == timedelta(0) else 400)


@settings(max_examples=80, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(moment=st.datetimes())
def test_every_naive_datetime_is_refused(sandbox: Sandbox, moment: object) -> None:
    assert _send(sandbox, moment.isoformat()) == 400  # type: ignore[attr-defined]
