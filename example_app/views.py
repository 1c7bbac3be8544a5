"""Acme Monitoring's pages: sign-in, dashboard, monitors, incidents and PagerDuty settings."""

from __future__ import annotations

import functools
import math
import unicodedata
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from werkzeug.routing import IntegerConverter, Map

from example_app import db, http_check
from example_app.alertmanager import issue_token, token_created_at
from example_app.monitoring import OPERATORS, Monitoring
from pdconnect.flask import current_pagerduty
from pdconnect.monitors import Action, MonitorState
from pdconnect.urls import safe_local_redirect

bp = Blueprint("acme", __name__)


class RowIdConverter(IntegerConverter):
    """``<id:...>``: a row id, 1 to 2**63 - 1; anything else is no route (404), not a database error.

    SQLite and PostgreSQL keep 64-bit integers: ``/monitors/99999999999999999999`` was an
    ``OverflowError`` (a 500) before it reached a query.
    """

    def __init__(self, url_map: Map) -> None:
        super().__init__(url_map, min=1, max=2**63 - 1)


F = TypeVar("F", bound=Callable[..., Any])


def engine() -> sa.Engine:
    return cast(sa.Engine, current_app.extensions["acme_engine"])


def monitoring() -> Monitoring:
    return cast(Monitoring, current_app.extensions["acme_monitoring"])


def current_owner() -> str | None:
    """The signed-in user's id, as pdconnect's owner id (each user is a tenant)."""
    user_id = session.get("user_id")
    return None if user_id is None else str(user_id)


@bp.before_app_request
def load_user() -> None:
    g.user = None
    owner = current_owner()
    if owner is not None:
        with engine().connect() as conn:
            g.user = conn.execute(sa.select(db.users).where(db.users.c.id == int(owner))).one_or_none()
        if g.user is None:
            session.pop("user_id", None)


def signed_in(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.user is None:
            return redirect(url_for("acme.signin", next=request.path))
        return view(*args, **kwargs)

    return cast(F, wrapper)


@bp.route("/signin", methods=["GET", "POST"])
def signin() -> ResponseReturnValue:
    if request.method == "POST":
        name = request.form.get("name", "").strip()
        if not name or len(name) > 80 or not printable(name):
            flash("Type a name of 1 to 80 characters, without control characters.", "error")
            return render_template("signin.html"), 400
        user_id = db.user_id_for(engine(), name, on_create=_seed_monitors)
        session.clear()
        session["user_id"] = user_id
        return redirect(safe_local_redirect(request.args.get("next"), default=url_for("acme.dashboard")))
    return render_template("signin.html")


@bp.route("/signout", methods=["POST"])
def signout() -> ResponseReturnValue:
    session.clear()
    return redirect(url_for("acme.signin"))


def _seed_monitors(conn: sa.Connection, owner: str) -> None:
    """Two monitors for a new user to play with: an HTTP check and a metric threshold."""
    base = current_app.config["ACME_BASE_URL"]
    region = current_app.config["ACME_REGION"]
    conn.execute(
        sa.insert(db.monitors),
        [
            {
                "owner": owner,
                "name": "Checkout API",
                "kind": "http",
                "target": f"{base}/demo/checkout",
                "region": region,
                "interval_seconds": 30,
                "confirm_after": 1,
                "resolve_after": 1,
                "operator": "at_or_above",
                "threshold": 0,
                "metric_value": 0,
                "state": "{}",
                "last_checked_at": 0,
            },
            {
                "owner": owner,
                "name": "Error rate",
                "kind": "metric",
                "target": "checkout.errors_per_minute",
                "region": region,
                "interval_seconds": 30,
                "confirm_after": 1,
                "resolve_after": 1,
                "operator": "at_or_above",
                "threshold": 5,
                "metric_value": 0.5,
                "state": "{}",
                "last_checked_at": 0,
            },
        ],
    )


@bp.route("/demo/checkout")
def demo_checkout() -> ResponseReturnValue:
    """A healthy endpoint for the seeded HTTP monitor to check."""
    return {"status": "ok"}


@bp.route("/")
@signed_in
def dashboard() -> ResponseReturnValue:
    owner = cast(str, current_owner())
    with engine().connect() as conn:
        monitors = db.owner_monitors(conn, owner)
        recent = conn.execute(db.owner_alerts(owner).limit(5)).all()
    states = {m.id: MonitorState.from_dict(m.state) for m in monitors}
    return render_template(
        "dashboard.html",
        monitors=monitors,
        states=states,
        recent=recent,
        pagerduty=pagerduty_states(recent),
        integrations=current_pagerduty().integrations(owner),
    )


@bp.route("/settings/pagerduty")
@signed_in
def pagerduty_settings(new_token: str | None = None) -> ResponseReturnValue:
    owner = cast(str, current_owner())
    page = render_template(
        "settings.html",
        integrations=current_pagerduty().integrations(),
        oauth=current_pagerduty().connections is not None,
        token_created_at=token_created_at(engine(), owner),
        new_token=new_token,
    )
    return page, {"Cache-Control": "no-store"}


@bp.route("/settings/pagerduty/<integration_id>/disconnect")
@signed_in
def confirm_disconnect(integration_id: str) -> ResponseReturnValue:
    """Ask before disconnecting (pdconnect's POST route does it); only the owner's own services."""
    integration = current_pagerduty().store.get(cast(str, current_owner()), integration_id)
    if integration is None:
        abort(404)
    with engine().connect() as conn:
        names = conn.execute(
            sa.select(db.monitors.c.name)
            .join(db.monitor_targets, db.monitor_targets.c.monitor_id == db.monitors.c.id)
            .where(db.monitor_targets.c.integration_id == integration.id, db.monitors.c.owner == current_owner())
            .order_by(db.monitors.c.name)
        ).scalars()
        monitors = list(names)
    return render_template("confirm_disconnect.html", integration=integration, monitors=monitors)


@bp.route("/settings/alertmanager-token", methods=["POST"])
@signed_in
def rotate_alertmanager_token() -> ResponseReturnValue:
    """Make a new Alertmanager token (the old one stops working now) and show it, this once."""
    return pagerduty_settings(new_token=issue_token(engine(), cast(str, current_owner())))


# -- monitors --------------------------------------------------------------------------------


def _owned_monitor(monitor_id: int) -> db.Monitor:
    with engine().connect() as conn:
        monitor = db.load_monitor(conn, current_owner(), monitor_id)
    if monitor is None:
        abort(404)
    return monitor


def _finite(text: str | int) -> float:
    """A number from a form; ValueError for text, and for NaN and infinities (SQLite stores NaN as NULL)."""
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {text!r}")
    return number


def printable(text: str) -> bool:
    """No control characters and no lone surrogates (PostgreSQL refuses NUL; neither is a name)."""
    return not any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)


def _form_monitor(form: Any, owner: str) -> dict[str, Any]:
    """Validate the monitor form; raises ValueError with a message for the user."""
    name = form.get("name", "").strip()
    kind = form.get("kind", "http")
    target = form.get("target", "").strip()
    region = (form.get("region") or current_app.config["ACME_REGION"]).strip()
    if not all(printable(text) for text in (name, target, region)):
        raise ValueError("Names, targets and regions cannot hold control characters.")
    if not name or len(name) > 120:
        raise ValueError("Give the monitor a name (at most 120 characters).")
    if kind not in ("http", "metric"):
        raise ValueError("Choose an HTTP check or a metric.")
    if kind == "http" and not target.startswith(("http://", "https://")):
        raise ValueError("An HTTP check needs a URL starting with http:// or https://.")
    if kind == "http":
        try:
            http_check.check_url(target, networks=current_app.config["ACME_MONITOR_ALLOWED_NETWORKS"])
        except http_check.TargetRefused as exc:
            raise ValueError(f"Acme cannot check this URL: {exc}.") from None
    if not target or len(target) > 500:
        raise ValueError("Say what to check (a URL, or the metric's name).")
    try:
        threshold = _finite(form.get("threshold") or 0)
        value = _finite(form.get("metric_value") or 0)
        interval = int(form.get("interval_seconds") or 30)
        confirm = int(form.get("confirm_after") or 1)
        resolve = int(form.get("resolve_after") or 1)
    except ValueError as exc:
        raise ValueError("Threshold, value, interval and counts must be numbers.") from exc
    if not 5 <= interval <= 86400 or not 1 <= confirm <= 10 or not 1 <= resolve <= 10:
        raise ValueError("The interval is 5 s to a day; confirmation and recovery counts 1 to 10.")
    operator = form.get("operator", "at_or_above")
    if operator not in OPERATORS:
        raise ValueError("Choose at or above, above, at or below, or below.")
    valid = {i.id for i in current_pagerduty().store.list(owner)}
    chosen = [t for t in form.getlist("targets") if t in valid]
    return {
        "name": name,
        "kind": kind,
        "target": target,
        "operator": operator,
        "threshold": threshold,
        "metric_value": value,
        "interval_seconds": interval,
        "confirm_after": confirm,
        "resolve_after": resolve,
        "region": region[:40],
        "targets": chosen,
    }


@bp.route("/monitors/new", methods=["GET", "POST"])
@signed_in
def new_monitor() -> ResponseReturnValue:
    owner = cast(str, current_owner())
    integrations = current_pagerduty().integrations()
    if request.method == "POST":
        try:
            values = _form_monitor(request.form, owner)
        except ValueError as exc:
            flash(str(exc), "error")
            chosen = request.form.getlist("targets")
            return render_template(
                "monitor_form.html", integrations=integrations, form=request.form, chosen=chosen
            ), 400
        targets = values.pop("targets")
        with engine().begin() as conn:
            monitor_id = _new_id(
                conn.execute(sa.insert(db.monitors).values(owner=owner, state="{}", last_checked_at=0, **values))
            )
            for integration_id in targets:
                conn.execute(sa.insert(db.monitor_targets).values(monitor_id=monitor_id, integration_id=integration_id))
        flash(f"Monitor {values['name']} created.", "success")
        return redirect(url_for("acme.monitor", monitor_id=monitor_id))
    chosen = [i.id for i in integrations]  # a new monitor alerts every service, unless unticked
    return render_template("monitor_form.html", integrations=integrations, form={}, chosen=chosen)


@bp.route("/monitors/<id:monitor_id>")
@signed_in
def monitor(monitor_id: int) -> ResponseReturnValue:
    found = _owned_monitor(monitor_id)
    with engine().connect() as conn:
        alerts = conn.execute(db.owner_alerts(found.owner, monitor_id=found.id)).all()
    return render_template(
        "monitor.html",
        monitor=found,
        state=MonitorState.from_dict(found.state),
        alerts=alerts,
        pagerduty=pagerduty_states(alerts),
        integrations=current_pagerduty().integrations(),
        operators=OPERATORS,
    )


@bp.route("/monitors/<id:monitor_id>/targets", methods=["POST"])
@signed_in
def monitor_targets(monitor_id: int) -> ResponseReturnValue:
    found = _owned_monitor(monitor_id)
    valid = {i.id for i in current_pagerduty().integrations()}
    chosen = [t for t in request.form.getlist("targets") if t in valid]
    with engine().begin() as conn:
        conn.execute(sa.delete(db.monitor_targets).where(db.monitor_targets.c.monitor_id == found.id))
        for integration_id in chosen:
            conn.execute(sa.insert(db.monitor_targets).values(monitor_id=found.id, integration_id=integration_id))
    flash(f"{found.name} now alerts {len(chosen)} PagerDuty service(s).", "success")
    return redirect(url_for("acme.monitor", monitor_id=found.id))


@bp.route("/monitors/<id:monitor_id>/simulate", methods=["POST"])
@signed_in
def simulate(monitor_id: int) -> ResponseReturnValue:
    """The demo control: force failure or recovery (or go back to real checks), then check at once."""
    found = _owned_monitor(monitor_id)
    mode = request.form.get("mode")
    forced = {"fail": "fail", "recover": "ok", "real": None}.get(mode or "", "invalid")
    if forced == "invalid":
        abort(400)
    values: dict[str, Any] = {"forced": forced}
    if found.kind == "metric" and request.form.get("metric_value"):
        try:
            values = {"metric_value": _finite(request.form["metric_value"]), "forced": None}
        except ValueError:
            flash("The value must be a number.", "error")
            return redirect(url_for("acme.monitor", monitor_id=found.id))
    with engine().begin() as conn:
        conn.execute(sa.update(db.monitors).where(db.monitors.c.id == found.id).values(**values))
    action = monitoring().check(found.id)
    flash(_checked_message(found, action), "info")
    return redirect(url_for("acme.monitor", monitor_id=found.id))


def _checked_message(found: db.Monitor, action: Action) -> str:
    """What a check did, in words: a trigger for no service sent nothing, and says so."""
    connected = {i.id for i in current_pagerduty().integrations()}
    services = len([t for t in found.targets if t in connected])
    if action is Action.NONE:
        return f"Checked {found.name}: no change to send to PagerDuty."
    verb = "down" if action is Action.TRIGGER else "up again"
    if services == 0:
        return f"Checked {found.name}: {verb}, but it alerts no PagerDuty service, so nothing was sent."
    sent = "an incident opened" if action is Action.TRIGGER else "its incident resolved"
    return f"Checked {found.name}: {verb}; {sent} on {services} PagerDuty service(s)."


@bp.route("/monitors/<id:monitor_id>/delete", methods=["GET", "POST"])
@signed_in
def delete_monitor(monitor_id: int) -> ResponseReturnValue:
    """GET asks to confirm (no JavaScript needed); the confirmation page's POST deletes."""
    found = _owned_monitor(monitor_id)
    if request.method == "GET":
        return render_template("confirm_delete.html", monitor=found)
    with engine().begin() as conn:
        conn.execute(sa.delete(db.monitor_targets).where(db.monitor_targets.c.monitor_id == found.id))
        conn.execute(sa.delete(db.monitors).where(db.monitors.c.id == found.id))
    flash(f"Monitor {found.name} deleted.", "success")
    return redirect(url_for("acme.dashboard"))


# -- incidents -------------------------------------------------------------------------------


def _new_id(result: sa.CursorResult[Any]) -> int:
    """The primary key an INSERT made."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def pagerduty_states(alerts: Sequence[Any]) -> dict[int, str]:
    """What PagerDuty knows of each alert.

    The newest alert of each monitor and service shows what PagerDuty's webhooks last said
    ("acknowledged by Alice"), when the service sends them; otherwise, and for older alerts,
    the delivery state of the alert's events in the outbox.
    """
    ids = [a.resolve_outbox_id if a.status == "resolved" else a.trigger_outbox_id for a in alerts]
    states = current_pagerduty().outbox.states(i for i in ids if i)
    reported = _reported_by_pagerduty(alerts)
    labels = {}
    for alert, outbox_id in zip(alerts, ids, strict=True):
        if alert.id in reported:
            labels[alert.id] = reported[alert.id]
            continue
        asked = "resolved" if alert.status == "resolved" else "triggered"
        state = states.get(outbox_id, "delivered") if outbox_id else None
        if state is None:
            labels[alert.id] = alert.pagerduty_status
        elif state == "delivered":
            labels[alert.id] = asked
        elif state == "dead":
            labels[alert.id] = f"{'resolve' if asked == 'resolved' else 'trigger'} refused by PagerDuty"
        else:
            labels[alert.id] = f"{'resolve' if asked == 'resolved' else 'trigger'} queued"
    return labels


def _reported_by_pagerduty(alerts: Sequence[Any]) -> dict[int, str]:
    """For the newest alert per (dedup key, integration): the incident's state from webhooks."""
    pagerduty = current_pagerduty()
    owner = current_owner()
    if pagerduty.incidents is None or owner is None:
        return {}
    services = {i.id: i.service_id for i in pagerduty.integrations(owner) if i.service_id}
    newest: dict[tuple[str, str], Any] = {}
    for alert in sorted(alerts, key=lambda a: a.id, reverse=True):
        if alert.integration_id in services:
            newest.setdefault((alert.dedup_key, alert.integration_id), alert)
    # One query per service, however many alerts the page lists.
    keys_by_service: dict[str, set[str]] = {}
    for dedup_key, integration_id in newest:
        keys_by_service.setdefault(services[integration_id], set()).add(dedup_key)
    states = {
        (key, service_id): state
        for service_id, keys in keys_by_service.items()
        for key, state in pagerduty.incidents.by_dedup_keys(sorted(keys), owner_id=owner, service_id=service_id).items()
    }
    reported: dict[int, str] = {}
    for (dedup_key, integration_id), alert in newest.items():
        state = states.get((dedup_key, services[integration_id]))
        # Only an incident changed since this alert opened is this alert's (a minute's leeway
        # for clocks): the dedup key is reused by the monitor's next incident.
        if state is None or state.status is None or state.changed_at is None:
            continue
        if state.changed_at.timestamp() >= alert.opened_at - 60:
            who = f" by {state.changed_by_person}" if state.changed_by_person else ""
            reported[alert.id] = f"{state.status.value}{who}"
    return reported


@bp.route("/incidents")
@signed_in
def incidents() -> ResponseReturnValue:
    owner = cast(str, current_owner())
    with engine().connect() as conn:
        rows = conn.execute(
            sa.select(db.alerts, db.monitors.c.name.label("monitor_name"))
            # An alert outlives its monitor ("(deleted)"), and is never shown as another user's.
            .join(
                db.monitors,
                sa.and_(db.monitors.c.id == db.alerts.c.monitor_id, db.monitors.c.owner == db.alerts.c.owner),
                isouter=True,
            )
            .where(db.alerts.c.owner == owner)
            .order_by(db.alerts.c.id.desc())
        ).all()
    return render_template("incidents.html", alerts=rows, pagerduty=pagerduty_states(rows))
