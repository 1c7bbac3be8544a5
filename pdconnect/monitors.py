"""Monitors with an incident lifecycle: confirm before paging, resolve on recovery.

The StatusApp pattern (seed ``002``): a monitor's checks feed a :class:`MonitorState`;
after ``confirm_after`` consecutive failures an incident is triggered with everything a
responder needs (monitor name and URL, status, response time, how long it has been failing,
region, error message, a link back); after ``resolve_after`` consecutive successes it is
resolved. A monitor that keeps flipping (``flap_changes`` state changes within the last
``flap_window`` checks) is *flapping*: its open incident is kept open until the checks settle,
so one unstable service does not page, resolve and page again.

Everything here is pure: :func:`observe` takes a state and a check result and returns the
next state and what to send; storing the state and sending the event is the caller's job.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pdconnect.errors import InvalidData
from pdconnect.events import AlertEvent, Link, Severity
from pdconnect.timestamps import parse_timestamp


class MonitorInvalid(InvalidData):
    """A monitor policy, or a stored monitor state, is not valid; ``field`` names what."""


class MonitorStatus(StrEnum):
    """What the monitor believes about the thing it checks."""

    UNKNOWN = "unknown"
    UP = "up"
    FAILING = "failing"  # failing, but not yet confirmed: no incident yet
    DOWN = "down"  # confirmed: an incident is open


class Action(StrEnum):
    """What an observation asks the caller to send."""

    NONE = "none"
    TRIGGER = "trigger"
    RESOLVE = "resolve"


@dataclass(frozen=True)
class CheckResult:
    """One check of a monitor.

    ``status`` is a short human description ("HTTP 503", "value 97 at or above 90");
    ``response_time_ms`` and ``error`` are shown to responders when present.
    """

    ok: bool
    status: str
    checked_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    response_time_ms: float | None = None
    error: str | None = None
    value: float | None = None


@dataclass(frozen=True)
class MonitorPolicy:
    """How eager a monitor is to page and to resolve."""

    confirm_after: int = 1
    resolve_after: int = 1
    flap_window: int = 10
    flap_changes: int = 4

    def __post_init__(self) -> None:
        for name, least in (("confirm_after", 1), ("resolve_after", 1), ("flap_window", 2), ("flap_changes", 2)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= 1000:
                raise MonitorInvalid(f"{name} must be a whole number from {least} to 1000", field=name)


@dataclass(frozen=True)
class MonitorState:
    """What a monitor remembers between checks; store it as :meth:`to_dict` and load with :meth:`from_dict`."""

    status: MonitorStatus = MonitorStatus.UNKNOWN
    consecutive_failures: int = 0
    consecutive_successes: int = 0
    failing_since: datetime | None = None
    incident_open: bool = False
    recent: tuple[bool, ...] = ()  # the last checks, oldest first, True for ok
    flapping: bool = False
    last: CheckResult | None = None

    def to_dict(self) -> dict[str, Any]:
        last = self.last
        return {
            "status": self.status.value,
            "consecutive_failures": self.consecutive_failures,
            "consecutive_successes": self.consecutive_successes,
            "failing_since": self.failing_since.isoformat() if self.failing_since else None,
            "incident_open": self.incident_open,
            "recent": list(self.recent),
            "flapping": self.flapping,
            "last": None
            if last is None
            else {
                "ok": last.ok,
                "status": last.status,
                "checked_at": last.checked_at.isoformat(),
                "response_time_ms": last.response_time_ms,
                "error": last.error,
                "value": last.value,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> MonitorState:
        """Read a state written by :meth:`to_dict`; raises :class:`MonitorInvalid` naming the bad field.

        A damaged state is an error, not a fresh start: starting over could page a second time
        for an incident already open, or never resolve it.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise MonitorInvalid("a monitor state must be an object")
        last = data.get("last")
        if last is not None and not isinstance(last, Mapping):
            raise MonitorInvalid("last must be an object", field="last")
        recent = data.get("recent", [])
        if not isinstance(recent, list | tuple) or not all(isinstance(x, bool) for x in recent):
            raise MonitorInvalid("recent must be a list of true/false", field="recent")
        return cls(
            status=_enum(MonitorStatus, data.get("status", "unknown"), "status"),
            consecutive_failures=_count(data.get("consecutive_failures", 0), "consecutive_failures"),
            consecutive_successes=_count(data.get("consecutive_successes", 0), "consecutive_successes"),
            failing_since=_when(data.get("failing_since"), "failing_since", optional=True),
            incident_open=_flag(data.get("incident_open", False), "incident_open"),
            recent=tuple(recent),
            flapping=_flag(data.get("flapping", False), "flapping"),
            last=None if not last else _last_check(last),
        )


def _last_check(last: Mapping[str, Any]) -> CheckResult:
    status = last.get("status")
    if not isinstance(status, str):
        raise MonitorInvalid("last.status must be a string", field="last.status")
    checked_at = _when(last.get("checked_at"), "last.checked_at", optional=False)
    assert checked_at is not None
    error = last.get("error")
    if error is not None and not isinstance(error, str):
        raise MonitorInvalid("last.error must be a string", field="last.error")
    return CheckResult(
        ok=_flag(last.get("ok"), "last.ok"),
        status=status,
        checked_at=checked_at,
        response_time_ms=_optional_number(last.get("response_time_ms"), "last.response_time_ms"),
        error=error,
        value=_optional_number(last.get("value"), "last.value"),
    )


def _enum(kind: Any, value: object, name: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise MonitorInvalid(f"{name} is not one of: {', '.join(m.value for m in kind)}", field=name) from None


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MonitorInvalid(f"{name} must be a whole number, 0 or more", field=name)
    return value


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise MonitorInvalid(f"{name} must be true or false", field=name)
    return value


def _when(value: object, name: str, *, optional: bool) -> datetime | None:
    if value is None and optional:
        return None
    moment = parse_timestamp(value)
    if moment is None:
        raise MonitorInvalid(f"{name} must be an ISO 8601 time", field=name)
    return moment


def _optional_number(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise MonitorInvalid(f"{name} must be a number", field=name)
    return float(value)


def _changes(recent: tuple[bool, ...]) -> int:
    return sum(1 for a, b in itertools.pairwise(recent) if a != b)


def observe(
    state: MonitorState, result: CheckResult, policy: MonitorPolicy = MonitorPolicy()
) -> tuple[MonitorState, Action]:
    """Fold one check result into the state; return the new state and what to send."""
    recent = (*state.recent, result.ok)[-policy.flap_window :]
    flapping = _changes(recent) >= policy.flap_changes
    if result.ok:
        successes, failures = state.consecutive_successes + 1, 0
    else:
        successes, failures = 0, state.consecutive_failures + 1
    failing_since = state.failing_since
    if not result.ok and failing_since is None:
        failing_since = result.checked_at
    next_state = replace(
        state,
        consecutive_failures=failures,
        consecutive_successes=successes,
        recent=recent,
        last=result,
        flapping=flapping,
        failing_since=failing_since,
    )
    if not result.ok:
        if state.incident_open:
            return replace(next_state, status=MonitorStatus.DOWN), Action.NONE
        if failures >= policy.confirm_after:
            return replace(next_state, status=MonitorStatus.DOWN, incident_open=True), Action.TRIGGER
        return replace(next_state, status=MonitorStatus.FAILING), Action.NONE
    # The check passed.
    if state.incident_open:
        if successes >= policy.resolve_after and not flapping:
            return replace(next_state, status=MonitorStatus.UP, incident_open=False, failing_since=None), Action.RESOLVE
        return replace(next_state, status=MonitorStatus.DOWN), Action.NONE
    return replace(next_state, status=MonitorStatus.UP, failing_since=None), Action.NONE


@dataclass(frozen=True)
class MonitorInfo:
    """What a responder should learn about the monitor itself."""

    id: str
    name: str
    target: str  # the URL checked, or the metric's name
    link: str | None = None  # back to the monitor in the vendor's product
    region: str | None = None


def dedup_key(monitor: MonitorInfo) -> str:
    """The stable dedup key of a monitor's incidents (a new incident opens after each resolve)."""
    return f"monitor/{monitor.id}"


def incident_event(
    monitor: MonitorInfo,
    state: MonitorState,
    *,
    severity: Severity | str = Severity.CRITICAL,
    source: str | None = None,
) -> AlertEvent:
    """The trigger for a monitor's incident, with the details a responder needs."""
    result = state.last
    now = result.checked_at if result else datetime.now(UTC)
    down_for = (now - state.failing_since).total_seconds() if state.failing_since else 0.0
    status = result.status if result else "down"
    details: dict[str, Any] = {
        "monitor": monitor.name,
        "target": monitor.target,
        "status": status,
        "failing_for_seconds": round(down_for),
        "failing_since": state.failing_since.isoformat() if state.failing_since else None,
        "consecutive_failures": state.consecutive_failures,
        "region": monitor.region,
        "response_time_ms": None
        if result is None or result.response_time_ms is None
        else round(result.response_time_ms),
        "error": result.error if result else None,
        "checked_at": result.checked_at.isoformat() if result else None,
    }
    summary = f"{monitor.name} is down: {status}"
    if monitor.region:
        summary += f" ({monitor.region})"
    links = [Link(monitor.link, f"Open {monitor.name}")] if monitor.link else []
    return AlertEvent.trigger(
        summary,
        source=source or monitor.target,
        severity=severity,
        dedup_key=dedup_key(monitor),
        timestamp=now,
        component=monitor.name,
        event_class="monitor",
        custom_details={k: v for k, v in details.items() if v is not None},
        links=links,
        client_url=monitor.link,
    )


def recovery_event(monitor: MonitorInfo) -> AlertEvent:
    """The resolve for a monitor's incident (PagerDuty takes only the dedup key on a resolve)."""
    return AlertEvent.resolve(dedup_key(monitor))
