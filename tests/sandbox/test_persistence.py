"""State in a SQLite file survives a restart."""

from __future__ import annotations

import json
from pathlib import Path

from pdconnect.sandbox import Sandbox, SandboxSettings
from pdconnect.sandbox.model import Incident


def _trigger(sandbox: Sandbox, key: str, dedup: str) -> int:
    body = {"routing_key": key, "event_action": "trigger", "dedup_key": dedup,
            "payload": {"summary": "down", "source": "h", "severity": "critical"}}  # fmt: skip
    return sandbox.handle_alert(json.dumps(body).encode()).status


def test_everything_survives_a_restart(tmp_path: Path) -> None:
    db = str(tmp_path / "sandbox.db")
    first = Sandbox(db_path=db)
    key = first.keys_of(first.services()[0].id)[0].id
    assert _trigger(first, key, "a") == 202
    assert _trigger(first, key, "b") == 202
    first.register_app("PAPP001", ["http://localhost:5000/cb"])
    subscription = first.subscribe("http://127.0.0.1:9/hooks")
    incident_a = next(i for i in first.incidents() if i.incident_key == "a")
    first.act(incident_a.id, "acknowledge")
    first.close()

    second = Sandbox(db_path=db)
    assert [s.name for s in second.services()] == ["Checkout API", "Database"], "no second seed"
    incidents = {i.incident_key: i for i in second.incidents()}
    assert incidents["a"].status == "acknowledged"
    assert [e["type"] for e in incidents["a"].timeline] == ["trigger_log_entry", "acknowledge_log_entry"]
    assert second.app_for("PAPP001", "http://localhost:5000/cb").id == "PAPP001"
    assert second.store.get(type(subscription), subscription.id).secret == subscription.secret
    assert [r.dedup_key for r in second.received()] == ["a", "b"]
    # The open-alert index is rebuilt: a resolve after the restart finds the alert.
    resolve = {"routing_key": key, "event_action": "resolve", "dedup_key": "b"}
    second.handle_alert(json.dumps(resolve).encode())
    assert second.store.get(Incident, incidents["b"].id).status == "resolved"
    # Numbers and sequence numbers carry on.
    _trigger(second, key, "c")
    assert max(i.number for i in second.incidents()) == 3
    assert [r.seq for r in second.received()] == [1, 2, 3, 4]
    second.close()


def test_reset_empties_the_file(tmp_path: Path) -> None:
    db = str(tmp_path / "sandbox.db")
    sandbox = Sandbox(db_path=db)
    key = sandbox.keys_of(sandbox.services()[0].id)[0].id
    _trigger(sandbox, key, "a")
    sandbox.reset(seed=False)
    sandbox.close()
    again = Sandbox(SandboxSettings(seed=False), db_path=db)
    assert again.incidents() == []
    assert again.services() == []
    again.close()


def test_memory_by_default() -> None:
    sandbox = Sandbox()
    assert not sandbox.store.persistent
    sandbox.close()
