"""What one account does never reaches another: deliveries, state after a reset, old database files (issue 10).

Before issue 10 an account-wide subscription had no owner and matched every account's
incidents, so a subscription made with any token received every customer's incidents.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from pdconnect.sandbox import Sandbox, SandboxSettings
from pdconnect.sandbox.app import SandboxApp
from pdconnect.sandbox.model import Subscription
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from tests.sandbox.receiver import webhook_receiver


def _trigger(sandbox: PagerDutySandbox, key: str, dedup_key: str) -> None:
    event = {"routing_key": key, "event_action": "trigger", "dedup_key": dedup_key,
             "payload": {"summary": "down", "source": "h", "severity": "critical"}}  # fmt: skip
    assert requests.post(sandbox.url + "/v2/enqueue", json=event, timeout=10).status_code == 202


def test_an_account_wide_subscription_gets_its_own_accounts_incidents_only(
    pagerduty_sandbox: PagerDutySandbox,
) -> None:
    pagerduty_sandbox.create_account("beta")
    _, beta_key = pagerduty_sandbox.create_service("Beta API", account="beta")
    with webhook_receiver() as a_hooks, webhook_receiver() as b_hooks:
        pagerduty_sandbox.subscribe(a_hooks.url, account="acme", events=["incident.triggered"])
        pagerduty_sandbox.subscribe(b_hooks.url, account="beta", events=["incident.triggered"])
        _trigger(pagerduty_sandbox, pagerduty_sandbox.service_key(), "a-1")
        _trigger(pagerduty_sandbox, beta_key, "b-1")
        pagerduty_sandbox.wait_for_deliveries(2)
        keys = {
            name: [json.loads(r.body)["event"]["data"]["incident_key"] for r in hooks.requests]
            for name, hooks in (("acme", a_hooks), ("beta", b_hooks))
        }
    assert keys == {"acme": ["a-1"], "beta": ["b-1"]}


def test_the_state_dump_shows_roles_and_a_reset_forgets_identity_users(pagerduty_sandbox: PagerDutySandbox) -> None:
    roles = {u["name"]: u["role"] for u in pagerduty_sandbox.state()["users"] if u["account"] == "acme"}
    assert roles == {"Alex Responder": "responder", "Sam Oncall": "responder", "Kim Manager": "manager"}
    added = pagerduty_sandbox.create_user(name="Olive Observer", role="observer")
    kim = next(u for u in pagerduty_sandbox.state()["users"] if u["name"] == "Kim Manager")
    pagerduty_sandbox.set_role(kim["id"], "observer")
    state = pagerduty_sandbox.state()
    assert next(u for u in state["users"] if u["id"] == kim["id"])["role"] == "observer"
    assert added["id"] in {u["id"] for u in state["identity_users"]}
    pagerduty_sandbox.reset()
    state = pagerduty_sandbox.state()
    assert added["id"] not in {u["id"] for u in state["identity_users"]}
    assert {u["role"] for u in state["users"]} == {"responder", "manager"}
    assert {u["id"] for u in state["users"]} == {u["id"] for u in state["identity_users"]}


def test_records_from_a_database_older_than_tenancy_load_and_stay_private(tmp_path: Path) -> None:
    db = tmp_path / "sandbox.db"
    Sandbox(SandboxSettings(), db_path=str(db)).close()
    engine = sa.create_engine(f"sqlite:///{db}")
    old = {"id": "POLD001", "url": "http://127.0.0.1:9/h", "secret": "s" * 32, "events": ["incident.triggered"],
           "filter_type": "account_reference", "filter_id": None, "version": "v3", "description": "",
           "active": True, "consecutive_drops": 0, "disabled_until": None, "created_at": "2026-01-01T00:00:00Z"}  # fmt: skip
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO sandbox_records (kind, id, data) VALUES ('subscription', 'POLD001', :data)"),
            {"data": json.dumps(old)},
        )
        account = json.loads(conn.execute(sa.text("SELECT data FROM sandbox_records WHERE id = 'acme'")).scalar_one())
        account.pop("region")
        conn.execute(
            sa.text("UPDATE sandbox_records SET data = :data WHERE id = 'acme'"), {"data": json.dumps(account)}
        )
    engine.dispose()
    sandbox = Sandbox(SandboxSettings(), db_path=str(db))
    try:
        loaded = sandbox.store.get(Subscription, "POLD001")
        assert loaded is not None and loaded.account == "" and loaded.custom_headers == []
        key = sandbox.create_api_key("acme").id
        answer = Client(SandboxApp(sandbox)).get(
            "/webhook_subscriptions/POLD001", headers={"Authorization": f"Token token={key}"}
        )
        assert answer.status_code == 404  # owned by nobody, so shown to nobody
    finally:
        sandbox.close()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "delivery_method": st.one_of(JSON, st.fixed_dictionaries({"url": st.just("http://127.0.0.1:9/h")},
                                                                 optional={"custom_headers": JSON})),
        "filter": st.one_of(JSON, st.fixed_dictionaries({"type": st.sampled_from(
            ["account_reference", "service_reference", "team_reference", "x"]), "id": JSON})),
        "events": JSON,
        "description": JSON,
        "active": JSON,
        "version": JSON,
        "type": JSON,
    },
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=FIELDS, method=st.sampled_from(["POST", "PUT"]))
def test_any_subscription_body_is_an_answer_never_a_500_and_stays_in_its_account(
    pagerduty_sandbox: PagerDutySandbox, fields: dict[str, Any], method: str
) -> None:
    pagerduty_sandbox.create_account("beta")
    path = "/webhook_subscriptions"
    if method == "PUT":
        existing = [s for s in pagerduty_sandbox.state()["webhook_subscriptions"] if s["account"] == "beta"]
        sub_id = (
            existing[0]["id"] if existing else pagerduty_sandbox.subscribe("http://127.0.0.1:9/b", account="beta")["id"]
        )
        path += f"/{sub_id}"
    response = pagerduty_sandbox.rest(method, path, account="beta", json={"webhook_subscription": fields})
    assert response.status_code in (200, 400), response.text[:300]
    if response.status_code == 400:
        assert response.json()["error"]["message"]
    for subscription in pagerduty_sandbox.state()["webhook_subscriptions"]:
        assert subscription["account"] == "beta"
        assert subscription["filter"]["id"] == "beta" or subscription["filter"]["type"] != "account_reference"
