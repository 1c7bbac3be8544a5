"""The webhook sender checks the target again when it sends (issue 9, outside review).

A subscription to another machine can be made only with ``allow_remote_webhooks``; a sandbox
reopened from its database file without that setting must not go on delivering to it. The
HTTP session is a recorder here: no test sends a request anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pdconnect.sandbox import Sandbox, SandboxSettings
from pdconnect.sandbox.model import Delivery, IntegrationKey


class RecordingSession:
    def __init__(self) -> None:
        self.urls: list[str] = []

    def post(self, url: str, **kwargs: Any) -> Any:
        self.urls.append(url)
        raise AssertionError("no request may leave the test")

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "url",
    ["http://203.0.113.7/hook", "https://hooks.example/pd", "http://127.0.0.1.nip.io/hook", "http://[2001:db8::1]/h"],
)
def test_a_remote_subscription_from_an_old_database_is_not_delivered(tmp_path: Path, url: str) -> None:
    db = str(tmp_path / "sandbox.db")
    first = Sandbox(SandboxSettings(allow_remote_webhooks=True), db_path=db)
    first.subscribe(url)
    first.close()
    box = Sandbox(SandboxSettings(allow_remote_webhooks=False), db_path=db)
    session = RecordingSession()
    box.webhooks.session = session  # type: ignore[assignment]
    try:
        key = next(k for k in box.store.all(IntegrationKey) if k.kind == "events_api_v2")
        event = {"routing_key": key.id, "event_action": "trigger",
                 "payload": {"summary": "s", "source": "h", "severity": "info"}}  # fmt: skip
        assert box.handle_alert(json.dumps(event).encode()).status == 202
        (delivery,) = box.store.all(Delivery)
        box.webhooks._attempt(delivery.id)
        assert session.urls == []
        assert delivery.state == "dropped"
        assert delivery.attempts[-1]["error"] == "remote delivery refused"
    finally:
        box.close()
