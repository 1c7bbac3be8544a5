"""Threshold rules on a metric series: PostHog's connector, as a few lines for any vendor.

A :class:`ThresholdRule` looks at one series over a window ("pageviews in the past hour"),
reduces it to one value (the last point, a sum, a mean...), and compares it with a threshold.
:meth:`ThresholdRule.evaluate` takes the series and the rule's :class:`RuleState` and says
what to send: trigger when the rule starts breaching, resolve when it stops, nothing while
it stays the same, so evaluating every minute never opens a second incident. Every event
carries the rule's stable dedup key.

What "no data" means is the rule's choice (:class:`NoData`): for "alert when there are no
pageviews in the past hour", missing points count as zero (``NoData.ZERO``) and the rule is
``sum at_or_below 0``. PostHog's own plugin waits for two consecutive breaching points before
paging; ``confirm_points=2`` does the same.

Rules are plain data: :meth:`ThresholdRule.from_dict` reads one from JSON-like input (a
form, an API, a config file) and raises :class:`RuleInvalid` naming the field at fault.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeGuard

from pdconnect.errors import InvalidData
from pdconnect.events import AlertEvent, Link, Severity
from pdconnect.monitors import Action
from pdconnect.timestamps import parse_timestamp


class RuleInvalid(InvalidData):
    """A threshold rule (or a series handed to one) is not valid; ``field`` names what."""


class Operator(StrEnum):
    AT_OR_ABOVE = "at_or_above"
    AT_OR_BELOW = "at_or_below"
    ABOVE = "above"
    BELOW = "below"

    @property
    def words(self) -> str:
        return self.value.replace("_", " ")

    def breached(self, value: float, threshold: float) -> bool:
        if self is Operator.AT_OR_ABOVE:
            return value >= threshold
        if self is Operator.AT_OR_BELOW:
            return value <= threshold
        if self is Operator.ABOVE:
            return value > threshold
        return value < threshold


class Aggregation(StrEnum):
    """How the points in the window become one value."""

    LAST = "last"
    SUM = "sum"
    MEAN = "mean"
    MIN = "min"
    MAX = "max"
    COUNT = "count"


class NoData(StrEnum):
    """What an empty window means."""

    KEEP = "keep"  # nothing is known: send nothing, keep the state (PostHog's plugin does this)
    ZERO = "zero"  # nothing happened: the value is 0 ("no pageviews in the past hour")
    BREACHING = "breaching"  # silence is itself a problem: page
    OK = "ok"  # silence is fine: resolve if open


@dataclass(frozen=True)
class Point:
    """One point of a series."""

    at: datetime
    value: float


@dataclass(frozen=True)
class RuleState:
    """What a rule remembers between evaluations (store :meth:`to_dict`, load :meth:`from_dict`)."""

    firing: bool = False
    firing_since: datetime | None = None
    last_value: float | None = None
    evaluated_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "firing": self.firing,
            "firing_since": self.firing_since.isoformat() if self.firing_since else None,
            "last_value": self.last_value,
            "evaluated_at": self.evaluated_at.isoformat() if self.evaluated_at else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RuleState:
        """Read a stored state; anything unreadable reads as "not firing" rather than failing."""
        if not isinstance(data, Mapping):
            return cls()
        value = data.get("last_value")
        return cls(
            firing=data.get("firing") is True,
            firing_since=parse_timestamp(data.get("firing_since")),
            last_value=float(value) if _number(value) else None,
            evaluated_at=parse_timestamp(data.get("evaluated_at")),
        )


@dataclass(frozen=True)
class Evaluation:
    """The outcome of one evaluation: what to send (``event`` is ``None`` for nothing) and the new state."""

    action: Action
    state: RuleState
    value: float | None
    breaching: bool
    no_data: bool
    points: int
    event: AlertEvent | None = None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WINDOW = timedelta(days=90)


def parse_duration(value: object, *, field: str = "window") -> timedelta:
    """``"1h"``, ``"15m"``, ``"30s"``, ``"7d"``, a number of seconds, or a ``timedelta``."""
    if isinstance(value, timedelta):
        duration = value
    elif _number(value):
        duration = timedelta(seconds=float(value))
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        duration = timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    else:
        raise RuleInvalid(f"{field} must be a duration such as '1h', '15m' or a number of seconds", field=field)
    if not timedelta(seconds=1) <= duration <= MAX_WINDOW:
        raise RuleInvalid(f"{field} must be between 1 second and 90 days", field=field)
    return duration


@dataclass(frozen=True)
class ThresholdRule:
    """Page when ``aggregation`` of ``metric`` over ``window`` is ``operator`` ``threshold``.

    ``id`` makes the dedup key (``threshold/<id>``), so keep it stable for the rule's life.
    ``confirm_points`` (with ``aggregation=last``) asks the last N points each to breach.
    ``link`` points back to the chart in the vendor's product.
    """

    id: str
    name: str
    metric: str
    operator: Operator
    threshold: float
    window: timedelta = timedelta(hours=1)
    aggregation: Aggregation = Aggregation.LAST
    no_data: NoData = NoData.KEEP
    confirm_points: int = 1
    severity: Severity = Severity.ERROR
    source: str | None = None
    link: str | None = None
    extra_details: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for name in ("id", "name", "metric"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip() or len(value) > 255:
                raise RuleInvalid(f"{name} must be a non-empty string of at most 255 characters", field=name)
        if not _number(self.threshold):
            raise RuleInvalid("threshold must be a finite number", field="threshold")
        if not isinstance(self.confirm_points, int) or not 1 <= self.confirm_points <= 100:
            raise RuleInvalid("confirm_points must be a whole number from 1 to 100", field="confirm_points")
        # Strings are accepted where enums and durations are expected ("at_or_above", "1h").
        object.__setattr__(self, "window", parse_duration(self.window))
        for name, kind in (
            ("operator", Operator),
            ("aggregation", Aggregation),
            ("no_data", NoData),
            ("severity", Severity),
        ):
            object.__setattr__(self, name, _choice(kind, getattr(self, name), name))
        if self.confirm_points > 1 and self.aggregation is not Aggregation.LAST:
            raise RuleInvalid("confirm_points needs aggregation 'last'", field="confirm_points")

    @property
    def dedup_key(self) -> str:
        return f"threshold/{self.id}"

    # -- reading rules -----------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ThresholdRule:
        """A rule from JSON-like data; unknown keys are refused (a typo must not go unnoticed)."""
        if not isinstance(data, Mapping):
            raise RuleInvalid("a rule must be an object")
        known = {
            "id",
            "name",
            "metric",
            "operator",
            "threshold",
            "window",
            "aggregation",
            "no_data",
            "confirm_points",
            "severity",
            "source",
            "link",
        }
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise RuleInvalid(f"unknown fields: {', '.join(unknown)}", field=unknown[0])
        for required in ("id", "name", "metric", "operator", "threshold"):
            if required not in data:
                raise RuleInvalid(f"{required} is required", field=required)
        threshold = data["threshold"]
        if isinstance(threshold, str):
            try:
                threshold = float(threshold)
            except ValueError:
                raise RuleInvalid("threshold must be a number", field="threshold") from None
        confirm = data.get("confirm_points", 1)
        if isinstance(confirm, bool) or not isinstance(confirm, int):
            raise RuleInvalid("confirm_points must be a whole number", field="confirm_points")
        for optional in ("source", "link"):
            if data.get(optional) is not None and not isinstance(data[optional], str):
                raise RuleInvalid(f"{optional} must be a string", field=optional)
        return cls(
            id=data["id"],
            name=data["name"],
            metric=data["metric"],
            operator=_choice(Operator, data["operator"], "operator"),
            threshold=threshold,
            window=parse_duration(data.get("window", "1h")),
            aggregation=_choice(Aggregation, data.get("aggregation", "last"), "aggregation"),
            no_data=_choice(NoData, data.get("no_data", "keep"), "no_data"),
            confirm_points=confirm,
            severity=_choice(Severity, data.get("severity", "error"), "severity"),
            source=data.get("source"),
            link=data.get("link"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "metric": self.metric,
            "operator": self.operator.value,
            "threshold": self.threshold,
            "window": f"{int(self.window.total_seconds())}s",
            "aggregation": self.aggregation.value,
            "no_data": self.no_data.value,
            "confirm_points": self.confirm_points,
            "severity": self.severity.value,
            "source": self.source,
            "link": self.link,
        }

    # -- evaluating --------------------------------------------------------------------------

    def evaluate(
        self,
        series: Iterable[Point | tuple[datetime, float]],
        state: RuleState | None = None,
        *,
        now: datetime | None = None,
    ) -> Evaluation:
        """Compare the window's value with the threshold and say what to send."""
        state = state if state is not None else RuleState()
        now = now or datetime.now(UTC)
        if now.tzinfo is None:
            raise RuleInvalid("now must be timezone-aware", field="now")
        points = self._window(series, now)
        value, breaching, no_data = self._judge(points)
        next_state = replace(state, evaluated_at=now, last_value=value if value is not None else state.last_value)
        if breaching is None:  # no data, and the rule says to keep what it knew
            return Evaluation(Action.NONE, next_state, None, state.firing, True, 0)
        if breaching and not state.firing:
            fired = replace(next_state, firing=True, firing_since=now)
            return Evaluation(
                Action.TRIGGER, fired, value, True, no_data, len(points), self._trigger(value, len(points), now)
            )
        if not breaching and state.firing:
            cleared = replace(next_state, firing=False, firing_since=None)
            return Evaluation(
                Action.RESOLVE, cleared, value, False, no_data, len(points), AlertEvent.resolve(self.dedup_key)
            )
        return Evaluation(Action.NONE, next_state, value, breaching, no_data, len(points))

    def _window(self, series: Iterable[Point | tuple[datetime, float]], now: datetime) -> list[Point]:
        start = now - self.window
        points = []
        for index, item in enumerate(series):
            point = item if isinstance(item, Point) else _point(item, index)
            if point.at.tzinfo is None:
                raise RuleInvalid(f"point {index} has a naive timestamp", field=f"series[{index}]")
            if start < point.at <= now and math.isfinite(point.value):
                points.append(point)
        points.sort(key=lambda p: p.at)
        return points

    def _judge(self, points: list[Point]) -> tuple[float | None, bool | None, bool]:
        """The window's value, whether it breaches (``None``: unknown), and whether it was empty."""
        if not points and self.aggregation is not Aggregation.COUNT:
            if self.no_data is NoData.KEEP:
                return None, None, True
            if self.no_data is NoData.BREACHING:
                return None, True, True
            if self.no_data is NoData.OK:
                return None, False, True
            value = 0.0
            return value, self.operator.breached(value, self.threshold), True
        values = [p.value for p in points]
        if self.aggregation is Aggregation.LAST:
            recent = values[-self.confirm_points :]
            if len(recent) < self.confirm_points:
                return values[-1], False, False  # not enough points yet to confirm
            return values[-1], all(self.operator.breached(v, self.threshold) for v in recent), False
        value = {
            Aggregation.SUM: lambda: math.fsum(values),
            Aggregation.MEAN: lambda: math.fsum(values) / len(values),
            Aggregation.MIN: lambda: min(values),
            Aggregation.MAX: lambda: max(values),
            Aggregation.COUNT: lambda: float(len(values)),
        }[self.aggregation]()
        return value, self.operator.breached(value, self.threshold), not points

    def _trigger(self, value: float | None, points: int, now: datetime) -> AlertEvent:
        window = _words(self.window)
        if value is None:
            summary = f"{self.name}: no data for {self.metric} in the last {window}"
        else:
            what = self.metric if self.aggregation is Aggregation.LAST else f"{self.aggregation.value} of {self.metric}"
            summary = (
                f"{self.name}: {what} is {_number_words(value)} "
                f"({self.operator.words} {_number_words(self.threshold)}) over the last {window}"
            )
        details: dict[str, Any] = {
            "rule": self.name,
            "metric": self.metric,
            "value": value,
            "operator": self.operator.words,
            "threshold": self.threshold,
            "aggregation": self.aggregation.value,
            "window_seconds": int(self.window.total_seconds()),
            "points_in_window": points,
            "no_data": self.no_data.value,
            "evaluated_at": now.isoformat(),
            **dict(self.extra_details),
        }
        return AlertEvent.trigger(
            summary[:1024],
            source=self.source or self.metric,
            severity=self.severity,
            dedup_key=self.dedup_key,
            timestamp=now,
            component=self.metric[:255],
            event_class="threshold",
            custom_details={k: v for k, v in details.items() if v is not None},
            links=[Link(self.link, f"Open {self.name}")] if self.link else [],
            client_url=self.link,
        )


# -- PostHog's trends ----------------------------------------------------------------------------


def series_from_posthog_trend(insight: Mapping[str, Any]) -> list[Point]:
    """The points of a single-line PostHog trend (an insight, or a trend query's answer).

    Reads ``result[0].data`` (the values, as PostHog's own PagerDuty plugin does) with
    ``result[0].days`` (their dates, ``YYYY-MM-DD`` or ISO 8601, taken as UTC). A trend with
    several lines is refused, as PostHog's connector refuses it: one rule watches one line.
    """
    if not isinstance(insight, Mapping):
        raise RuleInvalid("the trend must be a JSON object", field="result")
    filters = insight.get("filters")
    if isinstance(filters, Mapping) and filters.get("insight") not in (None, "TRENDS"):
        raise RuleInvalid("the insight is not a trend", field="filters.insight")
    result = insight.get("result")
    if not isinstance(result, list):
        raise RuleInvalid("the trend has no result list", field="result")
    if len(result) != 1:
        raise RuleInvalid(f"the trend must have exactly one line, not {len(result)}", field="result")
    line = result[0]
    if not isinstance(line, Mapping):
        raise RuleInvalid("the trend's line must be an object", field="result[0]")
    data, days = line.get("data"), line.get("days")
    if not isinstance(data, list) or not isinstance(days, list) or len(data) != len(days):
        raise RuleInvalid("the line needs 'data' and 'days' lists of the same length", field="result[0].data")
    points = []
    for index, (value, day) in enumerate(zip(data, days, strict=True)):
        moment = parse_timestamp(day)
        if moment is None or not _number(value):
            raise RuleInvalid(f"point {index} is not a date and a number", field=f"result[0].data[{index}]")
        points.append(Point(moment, float(value)))
    return points


# -- small readers -------------------------------------------------------------------------------


def _number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _point(item: object, index: int) -> Point:
    if not isinstance(item, tuple) or len(item) != 2:
        raise RuleInvalid(f"point {index} must be (datetime, number)", field=f"series[{index}]")
    at, value = item
    if not isinstance(at, datetime) or not (_number(value) or (isinstance(value, float) and math.isnan(value))):
        raise RuleInvalid(f"point {index} must be (datetime, number)", field=f"series[{index}]")
    return Point(at, float(value))


def _choice(kind: Any, value: object, name: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise RuleInvalid(f"{name} must be one of: {allowed}", field=name) from None


def _words(duration: timedelta) -> str:
    seconds = int(duration.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0 and seconds >= size:
            count = seconds // size
            return unit if count == 1 else f"{count} {unit}s"
    return f"{seconds} seconds"


def _number_words(value: float) -> str:
    return f"{value:g}"
