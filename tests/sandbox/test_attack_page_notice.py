"""The incident page's notice says only what the sandbox did (issue 9, outside review).

``/incidents/<id>?done=…`` used to show any text in the page's notice box: escaped, but a link
could still make the sandbox itself say "your key leaked, paste it at evil.example". Only the
sandbox's own "Done: <action>." notices are shown now.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from pdconnect.sandbox import Sandbox, SandboxSettings
from pdconnect.sandbox.app import SandboxApp
from pdconnect.sandbox.engine import RESPONDER_ACTIONS
from pdconnect.sandbox.model import Incident, IntegrationKey


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(SandboxSettings())
    key = next(k for k in box.store.all(IntegrationKey) if k.kind == "events_api_v2")
    event = {"routing_key": key.id, "event_action": "trigger",
             "payload": {"summary": "disk full", "source": "h", "severity": "info"}}  # fmt: skip
    box.handle_alert(json.dumps(event).encode())
    yield box
    box.close()


def _notice(sandbox: Sandbox, done: str) -> bool:
    (incident,) = sandbox.store.all(Incident)
    page = Client(SandboxApp(sandbox)).get(f"/incidents/{incident.id}", query_string={"done": done})
    assert page.status_code == 200
    return 'class="notice"' in page.get_data(as_text=True)


@pytest.mark.parametrize(
    "done",
    ["Your integration key leaked: paste it at https://evil.example", "Done: pwned.", "Done: acknowledge", "x" * 5000,
     "Done: acknowledge.\n<script>", "Done: \u0430cknowledge.", ""],
)  # fmt: skip
def test_an_outside_notice_is_not_shown(sandbox: Sandbox, done: str) -> None:
    assert not _notice(sandbox, done)


@pytest.mark.parametrize("action", RESPONDER_ACTIONS)
def test_the_sandbox_s_own_notices_are_shown(sandbox: Sandbox, action: str) -> None:
    assert _notice(sandbox, f"Done: {action}.")


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(done=st.text(max_size=80))
def test_no_other_text_becomes_a_notice(sandbox: Sandbox, done: str) -> None:
    if done in {f"Done: {a}." for a in RESPONDER_ACTIONS}:
        return
    assert not _notice(sandbox, done)
