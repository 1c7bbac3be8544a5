"""Signed but hostile webhooks reach the incident states (issue 9): nothing a field holds is a 5xx.

A tenant who registered its own secret can sign anything. Values PostgreSQL refuses (NUL,
over-long text, numbers beyond its integers) once failed the request with a 503 that
PagerDuty retried for two days; now they are cleaned, cut or left out.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdconnect.errors import ReceiveError
from pdconnect.webhooks import IncidentStateStore, WebhookReceiver, sign
from tests.conftest import unique_table
from tests.webhooks import samples
from tests.webhooks.samples import SECRET


@pytest.fixture(params=["sqlite", "postgresql"])
def states(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IncidentStateStore]:
    if request.param == "sqlite":
        made = IncidentStateStore(f"sqlite:///{tmp_path / 'states.db'}")
        yield made
        made.engine.dispose()
    else:
        made = IncidentStateStore(request.getfixturevalue("postgres_engine"), table_name=unique_table("pdc_inc"))
        yield made
        made.drop_tables()


counter = iter(range(10**9))


def deliver(receiver: WebhookReceiver, data_changes: dict[str, Any], **event_changes: Any) -> int:
    body = samples.v3(event_id=f"evt-{next(counter)}")
    body["event"]["data"].update(data_changes)
    body["event"].update(event_changes)
    raw = json.dumps(body).encode()
    try:
        return receiver.receive(
            raw, {"X-PagerDuty-Signature": sign(SECRET, raw), "X-Webhook-Subscription": "PSUB1"}
        ).status
    except ReceiveError as exc:
        return exc.status


HOSTILE_FIELDS = [
    ({"title": "Checkout\x00 is down"}, {}, "Checkout is down"),
    ({"id": "PINC\x00001"}, {}, None),
    ({"urgency": "u" * 100}, {}, None),
    ({"incident_key": "k" * 300}, {}, None),
    ({"incident_key": "monitor/42\x00"}, {}, None),
    ({"service": {"id": "S" * 100, "summary": "n" * 1000}}, {}, None),
    ({"html_url": "https://acme.pagerduty.com/" + "x" * 2000}, {}, None),
    ({"number": 10**4000}, {}, None),
    ({"number": 2**31}, {}, None),
    ({"number": -(2**63)}, {}, None),
    ({"assignees": [{"summary": "\x00" * 300}, {"summary": "a" * 1000}]}, {}, None),
    ({"id": "I" * 65}, {}, None),  # too long to be PagerDuty's: not folded in, still accepted
    ({"title": "t" * 100_000}, {}, None),
    ({}, {"event_type": "incident." + "x" * 500}, None),
    ({}, {"agent": {"summary": "\x00A\x00", "type": "t" * 500}}, None),
]


@pytest.mark.parametrize(("data_changes", "event_changes", "title"), HOSTILE_FIELDS)
def test_hostile_fields_are_stored_or_left_out(
    states: IncidentStateStore, data_changes: dict[str, Any], event_changes: dict[str, Any], title: str | None
) -> None:
    receiver = WebhookReceiver(secrets=[SECRET], incidents=states)
    assert deliver(receiver, data_changes, **event_changes) == 202
    state = states.get("PINC001")
    if title is not None:
        assert state is not None and state.title == title
    if state is not None:
        assert state.incident_key is None or len(state.incident_key) <= 255
        assert all("\x00" not in name for name in state.assignees)


field_values = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
field_values |= st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300)
field_values |= st.dictionaries(st.sampled_from(["id", "summary", "type", "name"]), st.text(max_size=80), max_size=3)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=st.dictionaries(
        st.sampled_from(
            ["id", "title", "urgency", "incident_key", "html_url", "number", "service", "status", "assignees"]
        ),
        field_values,
        max_size=4,
    ),
    agent=field_values,
)
def test_any_field_value_is_stored_or_refused_never_a_5xx(
    states: IncidentStateStore, changes: dict[str, Any], agent: Any
) -> None:
    receiver = WebhookReceiver(secrets=[SECRET], incidents=states)
    assert deliver(receiver, changes, agent=agent) in (202, 400)


@pytest.mark.parametrize(
    "lookup",
    ["monitor/42\x00", "k" * 256, "\x00", "monitor/\ud800"],
    ids=["nul", "long", "only-nul", "surrogate"],
)
def test_lookups_of_keys_that_cannot_be_stored_find_nothing(states: IncidentStateStore, lookup: str) -> None:
    """A vendor page looking up a key from a URL: PostgreSQL refused NUL with a DataError (a 500)."""
    receiver = WebhookReceiver(secrets=[SECRET], incidents=states)
    assert deliver(receiver, {}) == 202
    assert states.by_dedup_key(lookup) is None
    assert states.by_dedup_keys([lookup, "monitor/42"]).keys() == {"monitor/42"}
    assert states.get(lookup) is None and states.get("PINC001", owner_id=lookup) is None
    assert states.by_dedup_key("monitor/42", owner_id=lookup) is None
