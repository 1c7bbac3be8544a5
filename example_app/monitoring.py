"""Running Acme's monitors: check, feed pdconnect's monitor lifecycle, page or resolve.

A check is an HTTP request (up when it answers below 400 in time) or a metric compared with
a threshold. ``forced`` (the demo's "simulate" control) overrides the real check. Each result
goes through :func:`pdconnect.monitors.observe`; a trigger or resolve for every PagerDuty
service the monitor is connected to goes into pdconnect's outbox, in the same transaction as
Acme's own record of the alert, and a worker delivers it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from flask import Flask

from example_app import db, http_check
from pdconnect import AlertEvent
from pdconnect.errors import EventValidationError
from pdconnect.flask import PagerDutyState
from pdconnect.monitors import Action, CheckResult, MonitorInfo, MonitorPolicy, MonitorState, incident_event, observe
from pdconnect.thresholds import Operator

logger = logging.getLogger("example_app")

OPERATORS = {op.value: op.words for op in Operator}


def run_check(monitor: db.Monitor, *, networks: Sequence[http_check.Network] = ()) -> CheckResult:
    """Check the monitor's target once (or apply the simulated outcome).

    An HTTP check reaches only public addresses and ``networks`` (see :mod:`example_app.http_check`).
    """
    if monitor.forced == "fail":
        return CheckResult(ok=False, status="simulated failure", error="Simulated outage (demo control)")
    if monitor.forced == "ok":
        return CheckResult(ok=True, status="simulated recovery", response_time_ms=42.0)
    if monitor.kind == "metric":
        value = monitor.metric_value
        operator = Operator(monitor.operator)
        breached = operator.breached(value, monitor.threshold)
        words = operator.words
        status = f"{monitor.target} = {value:g} ({'' if breached else 'not '}{words} {monitor.threshold:g})"
        return CheckResult(ok=not breached, status=status, value=value)
    outcome = http_check.fetch(monitor.target, networks=networks)
    if outcome.status is None:
        return CheckResult(ok=False, status=outcome.reason, response_time_ms=outcome.elapsed_ms, error=outcome.error)
    ok = outcome.status < 400
    return CheckResult(
        ok=ok,
        status=f"HTTP {outcome.status}",
        response_time_ms=outcome.elapsed_ms,
        error=None if ok else f"{monitor.target} answered {outcome.status} {outcome.reason}",
    )


class Monitoring:
    """Checks monitors and talks to PagerDuty through pdconnect; one per app."""

    def __init__(self, app: Flask, engine: sa.Engine) -> None:
        self.app = app
        self.engine = engine
        self._lock = threading.Lock()
        self._monitor_locks: dict[int, threading.Lock] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pagerduty(self) -> PagerDutyState:
        state: PagerDutyState = self.app.extensions["pdconnect"]
        return state

    def info(self, monitor: db.Monitor) -> MonitorInfo:
        base = self.app.config["ACME_BASE_URL"]
        return MonitorInfo(
            id=f"acme-{monitor.id}",
            name=monitor.name,
            target=monitor.target,
            link=f"{base}/monitors/{monitor.id}",
            region=monitor.region,
        )

    def check(self, monitor_id: int) -> Action:
        """Check one monitor now and act on the result; returns what was sent.

        One check of a monitor at a time (the schedule and a "simulate" click can meet): two
        checks reading the same state would both trigger, or one's state would be lost.
        """
        with self._lock:
            monitor_lock = self._monitor_locks.setdefault(monitor_id, threading.Lock())
        with monitor_lock:
            return self._check(monitor_id)

    def _check(self, monitor_id: int) -> Action:
        with self.engine.connect() as conn:
            monitor = db.load_monitor(conn, None, monitor_id)
        if monitor is None:
            return Action.NONE
        result = run_check(monitor, networks=self.app.config["ACME_MONITOR_ALLOWED_NETWORKS"])
        policy = MonitorPolicy(confirm_after=monitor.confirm_after, resolve_after=monitor.resolve_after)
        state, action = observe(MonitorState.from_dict(monitor.state), result, policy)
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(db.monitors)
                .where(db.monitors.c.id == monitor.id)
                .values(state=json.dumps(state.to_dict()), last_checked_at=time.time())
            )
        if action is Action.TRIGGER:
            self._trigger(monitor, state)
        elif action is Action.RESOLVE:
            self._resolve(monitor)
        return action

    def _trigger(self, monitor: db.Monitor, state: MonitorState) -> None:
        """Queue the incident for every connected service; the outbox's worker delivers it."""
        event = incident_event(self.info(monitor), state, source=monitor.target)
        store = self.pagerduty.store
        for integration_id in monitor.targets:
            integration = store.get(monitor.owner, integration_id)
            if integration is None:
                continue
            row: dict[str, Any] = {
                "owner": monitor.owner,
                "monitor_id": monitor.id,
                "integration_id": integration.id,
                "service_name": integration.service_name,
                "dedup_key": event.dedup_key,
                "summary": event.summary,
                "opened_at": time.time(),
                "status": "triggered",
                "pagerduty_status": "triggered",
            }
            with self.engine.begin() as conn:
                try:
                    # In the same transaction as Acme's own record: both are stored, or neither.
                    queued = self.pagerduty.outbox.enqueue(integration, event, connection=conn)
                except EventValidationError as exc:
                    row.update(status="failed", pagerduty_status="not sent", last_error=str(exc)[:500])
                else:
                    row["trigger_outbox_id"] = queued.id
                conn.execute(sa.insert(db.alerts).values(**row))

    def _resolve(self, monitor: db.Monitor) -> None:
        with self.engine.connect() as conn:
            # By owner too: an alert of another user's monitor that once had this id is not ours to resolve.
            open_alerts = conn.execute(
                db.owner_alerts(monitor.owner, monitor_id=monitor.id).where(db.alerts.c.status == "triggered")
            ).all()
        for alert in open_alerts:
            integration = self.pagerduty.store.get(monitor.owner, alert.integration_id)
            values: dict[str, Any] = {"status": "resolved", "resolved_at": time.time(), "pagerduty_status": "resolved"}
            with self.engine.begin() as conn:
                if integration is not None:
                    queued = self.pagerduty.outbox.enqueue(
                        integration, AlertEvent.resolve(alert.dedup_key), connection=conn
                    )
                    values["resolve_outbox_id"] = queued.id
                conn.execute(sa.update(db.alerts).where(db.alerts.c.id == alert.id).values(**values))

    # -- the schedule ------------------------------------------------------------------------

    def due(self, now: float) -> list[int]:
        query = sa.select(db.monitors.c.id).where(db.monitors.c.last_checked_at + db.monitors.c.interval_seconds <= now)
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())

    def run_due(self, now: float | None = None) -> int:
        """Check every monitor whose interval has passed; returns how many were checked."""
        ids = self.due(time.time() if now is None else now)
        for monitor_id in ids:
            try:
                self.check(monitor_id)
            except Exception:  # one broken monitor must not stop the others
                logger.exception("monitor %s failed to run", monitor_id)
        return len(ids)

    def start(self) -> None:
        """Run due checks every second in a background thread, until :meth:`stop`."""
        if self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(1.0):  # the schedule's tick, not a synchronisation
                self.run_due()

        self._thread = threading.Thread(target=loop, name="acme-monitors", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
