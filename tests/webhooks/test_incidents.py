"""Incident states folded from webhook events, in the order they happened, per owner."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from pdconnect.webhooks import IncidentStateStore, IncidentStatus, WebhookEvent, parse_legacy, parse_v3
from tests.conftest import unique_table
from tests.webhooks import samples
from tests.webhooks.samples import encode


@pytest.fixture(params=["sqlite", "postgresql"])
def states(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IncidentStateStore]:
    if request.param == "sqlite":
        made = IncidentStateStore(f"sqlite:///{tmp_path / 'i.db'}")
        yield made
        made.engine.dispose()
    else:
        made = IncidentStateStore(request.getfixturevalue("postgres_engine"), table_name=unique_table("pdc_inc"))
        yield made
        made.drop_tables()


def event(
    event_type: str, at: str, *, agent: str | None = "Alice Responder", owner: str | None = "org-1"
) -> WebhookEvent:
    body = samples.v3(event_type, occurred_at=at, agent=samples.user(name=agent) if agent else None)
    if agent is None:
        body["event"]["agent"] = None
    return replace(parse_v3(encode(body)), owner_id=owner)


def test_the_lifecycle_shows_who_did_what(states: IncidentStateStore) -> None:
    triggered = states.apply(event("incident.triggered", "2026-11-22T10:00:00Z", agent=None))
    assert triggered is not None and triggered.status is IncidentStatus.TRIGGERED
    assert triggered.describe() == "Triggered"
    acked = states.apply(event("incident.acknowledged", "2026-11-22T10:05:00Z", agent="Alice Responder"))
    assert acked is not None and acked.acknowledged and acked.describe() == "Acknowledged by Alice Responder"
    resolved = states.apply(event("incident.resolved", "2026-11-22T10:09:00Z", agent="Bob Oncall"))
    assert resolved is not None and resolved.resolved and resolved.changed_by == "Bob Oncall"
    found = states.by_dedup_key("monitor/42", owner_id="org-1")
    assert found == resolved
    assert (found.number, found.title, found.urgency, found.service_name) == (
        7,
        "Checkout is down: HTTP 503",
        "high",
        "Checkout",
    )
    assert found.assignees == ("Alice Responder",)
    assert found.html_url == "https://acme.pagerduty.com/incidents/PINC001"


def test_an_older_event_never_overwrites_a_newer_state(states: IncidentStateStore) -> None:
    states.apply(event("incident.resolved", "2026-11-22T10:09:00Z"))
    assert states.apply(event("incident.acknowledged", "2026-11-22T10:05:00Z")) is None
    found = states.get("PINC001", owner_id="org-1")
    assert found is not None and found.resolved


def test_other_events_keep_the_status_change(states: IncidentStateStore) -> None:
    states.apply(event("incident.acknowledged", "2026-11-22T10:05:00Z", agent="Alice Responder"))
    note = replace(parse_v3(encode(samples.note_event())), owner_id="org-1")
    after_note = states.apply(note)
    assert after_note is not None
    assert after_note.describe() == "Acknowledged by Alice Responder"
    assert after_note.last_event_type == "incident.annotated"
    assert after_note.title == "Checkout is down: HTTP 503"


def test_owners_are_kept_apart(states: IncidentStateStore) -> None:
    states.apply(event("incident.acknowledged", "2026-11-22T10:05:00Z", owner="org-1"))
    assert states.by_dedup_key("monitor/42", owner_id="org-2") is None
    states.apply(event("incident.resolved", "2026-11-22T10:06:00Z", owner="org-2"))
    first = states.by_dedup_key("monitor/42", owner_id="org-1")
    assert first is not None and first.acknowledged


def test_the_newest_incident_for_a_reused_dedup_key(states: IncidentStateStore) -> None:
    old = samples.v3("incident.resolved", occurred_at="2026-11-22T09:00:00Z")
    new_data = samples.incident_data("triggered", number=8)
    new_data["id"] = "PINC002"
    new = samples.v3("incident.triggered", data=new_data, occurred_at="2026-11-22T11:00:00Z")
    for body in (new, old):
        states.apply(parse_v3(encode(body)))
    found = states.by_dedup_keys(["monitor/42", "monitor/none"])
    assert list(found) == ["monitor/42"]
    assert (found["monitor/42"].incident_id, found["monitor/42"].status) == ("PINC002", IncidentStatus.TRIGGERED)
    assert states.by_dedup_keys([]) == {}


def test_legacy_events_fold_in_too(states: IncidentStateStore) -> None:
    (ack,) = parse_legacy(encode({"messages": [samples.v2_message()]}))
    (resolve,) = parse_legacy(encode({"messages": [samples.v1_message()]}))
    states.apply(ack)
    final = states.apply(resolve)
    assert final is not None and final.describe() == "Resolved by Carol Lead"


def test_events_without_an_incident_are_ignored(states: IncidentStateStore) -> None:
    assert states.apply(parse_v3(encode(samples.ping()))) is None


def test_narrowed_to_one_service(states: IncidentStateStore) -> None:
    states.apply(event("incident.acknowledged", "2026-11-22T10:05:00Z"))
    assert states.by_dedup_key("monitor/42", owner_id="org-1", service_id="PSVC001") is not None
    assert states.by_dedup_key("monitor/42", owner_id="org-1", service_id="POTHER") is None


def test_a_slower_request_never_writes_back_a_stale_state(states: IncidentStateStore) -> None:
    """Two processes receive two webhooks of one incident at once: the acknowledge (10:01)
    has read the state and is about to write it when the resolve (10:02) is applied and
    committed; then the acknowledge writes. The resolve must stay: the acknowledge was computed from a state that is gone."""
    read_done, resolved = threading.Event(), threading.Event()
    table = states.table.name

    def pause_before_the_first_write(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        writing = statement.lstrip().upper().startswith(("UPDATE", "INSERT")) and table in statement
        if threading.current_thread().name == "ack" and writing and not read_done.is_set():
            read_done.set()
            assert resolved.wait(30)

    states.apply(event("incident.triggered", "2026-11-22T10:00:00Z", agent=None))
    sa.event.listen(states.engine, "before_cursor_execute", pause_before_the_first_write)
    try:
        results: list[object] = []
        ack = threading.Thread(
            name="ack",
            target=lambda: results.append(states.apply(event("incident.acknowledged", "2026-11-22T10:01:00Z"))),
        )
        ack.start()
        assert read_done.wait(30)
        states.apply(event("incident.resolved", "2026-11-22T10:02:00Z", agent="Bob Responder"))
        resolved.set()
        ack.join(30)
    finally:
        sa.event.remove(states.engine, "before_cursor_execute", pause_before_the_first_write)
    assert results == [None], "the acknowledge is older than what is stored now"
    final = states.get("PINC001", owner_id="org-1")
    assert final is not None and final.status is IncidentStatus.RESOLVED and final.changed_by == "Bob Responder"
