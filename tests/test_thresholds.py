"""Threshold rules: operators, windows, aggregations, no data, confirmation, parsing."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.monitors import Action
from pdconnect.thresholds import (
    Aggregation,
    NoData,
    Operator,
    Point,
    RuleInvalid,
    RuleState,
    ThresholdRule,
    parse_duration,
    series_from_posthog_trend,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def minutes_ago(*values: float, step: int = 10) -> list[Point]:
    """Points ``step`` minutes apart, the last one a minute before NOW."""
    count = len(values)
    return [Point(NOW - timedelta(minutes=1 + step * (count - 1 - i)), v) for i, v in enumerate(values)]


def rule(**changes: Any) -> ThresholdRule:
    base: dict[str, Any] = {
        "id": "r1",
        "name": "Billing errors",
        "metric": "$billing_error",
        "operator": Operator.AT_OR_ABOVE,
        "threshold": 10,
    }
    return ThresholdRule(**{**base, **changes})


@pytest.mark.parametrize(
    ("operator", "value", "breached"),
    [
        (Operator.AT_OR_ABOVE, 10, True),
        (Operator.AT_OR_ABOVE, 9.99, False),
        (Operator.ABOVE, 10, False),
        (Operator.ABOVE, 10.01, True),
        (Operator.AT_OR_BELOW, 10, True),
        (Operator.AT_OR_BELOW, 10.01, False),
        (Operator.BELOW, 10, False),
        (Operator.BELOW, 9.99, True),
    ],
)
def test_operators(operator: Operator, value: float, breached: bool) -> None:
    result = rule(operator=operator).evaluate(minutes_ago(value), now=NOW)
    assert result.breaching is breached
    assert result.action is (Action.TRIGGER if breached else Action.NONE)


def test_trigger_once_then_resolve_once() -> None:
    r = rule()
    first = r.evaluate(minutes_ago(3, 12), now=NOW)
    assert first.action is Action.TRIGGER and first.event is not None
    body = first.event
    assert body.dedup_key == "threshold/r1" == r.dedup_key
    assert body.summary == "Billing errors: $billing_error is 12 (at or above 10) over the last hour"
    assert body.custom_details["value"] == 12 and body.custom_details["points_in_window"] == 2
    assert first.state.firing and first.state.firing_since == NOW
    again = r.evaluate(minutes_ago(3, 15), first.state, now=NOW + timedelta(minutes=1))
    assert again.action is Action.NONE and again.event is None, "still breaching: no second incident"
    assert again.state.firing_since == NOW
    recovered = r.evaluate(minutes_ago(15, 2), again.state, now=NOW + timedelta(minutes=2))
    assert recovered.action is Action.RESOLVE
    assert recovered.event is not None and recovered.event.action == "resolve"
    assert recovered.event.dedup_key == "threshold/r1"
    assert not recovered.state.firing
    calm = r.evaluate(minutes_ago(2), recovered.state, now=NOW + timedelta(minutes=3))
    assert calm.action is Action.NONE


def test_the_seeds_no_pageviews_in_the_past_hour() -> None:
    """PostHog: "alert when there is no $pageviews captured on my site the past hour"."""
    r = rule(
        id="no-pageviews",
        name="No pageviews",
        metric="$pageview",
        operator=Operator.AT_OR_BELOW,
        threshold=0,
        window=timedelta(hours=1),
        aggregation=Aggregation.SUM,
        no_data=NoData.ZERO,
    )
    old_traffic = [Point(NOW - timedelta(hours=2), 120)]
    silent = r.evaluate(old_traffic, now=NOW)
    assert silent.action is Action.TRIGGER and silent.no_data and silent.value == 0
    assert silent.event is not None
    assert silent.event.summary == "No pageviews: sum of $pageview is 0 (at or below 0) over the last hour"
    back = r.evaluate([*old_traffic, Point(NOW - timedelta(minutes=5), 3)], silent.state, now=NOW)
    assert back.action is Action.RESOLVE and back.value == 3


@pytest.mark.parametrize(
    ("no_data", "firing", "action", "breaching"),
    [
        (NoData.KEEP, False, Action.NONE, False),
        (NoData.KEEP, True, Action.NONE, True),
        (NoData.BREACHING, False, Action.TRIGGER, True),
        (NoData.OK, True, Action.RESOLVE, False),
        (NoData.ZERO, False, Action.NONE, False),  # 0 is not at or above 10
    ],
)
def test_no_data(no_data: NoData, firing: bool, action: Action, breaching: bool) -> None:
    result = rule(no_data=no_data).evaluate([], RuleState(firing=firing), now=NOW)
    assert (result.action, result.breaching, result.no_data) == (action, breaching, True)


def test_no_data_trigger_says_so() -> None:
    result = rule(no_data=NoData.BREACHING).evaluate([], now=NOW)
    assert result.event is not None
    assert result.event.summary == "Billing errors: no data for $billing_error in the last hour"


@pytest.mark.parametrize(
    ("aggregation", "expected"),
    [
        (Aggregation.LAST, 4),
        (Aggregation.SUM, 14),
        (Aggregation.MEAN, 14 / 3),
        (Aggregation.MIN, 2),
        (Aggregation.MAX, 8),
        (Aggregation.COUNT, 3),
    ],
)
def test_aggregations(aggregation: Aggregation, expected: float) -> None:
    result = rule(aggregation=aggregation, threshold=1000).evaluate(minutes_ago(2, 8, 4), now=NOW)
    assert result.value == pytest.approx(expected)


def test_only_the_window_counts() -> None:
    series = [
        Point(NOW - timedelta(minutes=90), 100),  # too old
        Point(NOW - timedelta(minutes=30), 1),
        Point(NOW + timedelta(minutes=1), 100),  # from the future
        Point(NOW - timedelta(minutes=10), float("nan")),  # a gap
    ]
    result = rule(aggregation=Aggregation.SUM).evaluate(series, now=NOW)
    assert (result.value, result.points) == (1, 1)


def test_points_may_come_in_any_order_and_as_tuples() -> None:
    series = [(NOW - timedelta(minutes=1), 11.0), (NOW - timedelta(minutes=30), 1.0)]
    assert rule().evaluate(series, now=NOW).value == 11


def test_confirmation_like_posthogs_plugin() -> None:
    """PostHog's plugin pages only when the two most recent points both breach."""
    r = rule(confirm_points=2)
    assert r.evaluate(minutes_ago(3, 12), now=NOW).action is Action.NONE
    assert r.evaluate(minutes_ago(12), now=NOW).action is Action.NONE, "one point cannot confirm"
    assert r.evaluate(minutes_ago(12, 15), now=NOW).action is Action.TRIGGER


def test_details_and_link() -> None:
    r = rule(link="https://acme.example/insights/abc", source="posthog.acme.example", severity="critical")
    event = r.evaluate(minutes_ago(50), now=NOW).event
    assert event is not None
    assert event.source == "posthog.acme.example" and event.severity == "critical"
    assert event.client_url == "https://acme.example/insights/abc"
    assert [link.href for link in event.links] == ["https://acme.example/insights/abc"]


def test_state_round_trip_and_damaged_state() -> None:
    state = rule().evaluate(minutes_ago(50), now=NOW).state
    assert RuleState.from_dict(state.to_dict()) == state
    for damaged in (None, {}, {"firing": "yes"}, {"last_value": "x", "firing_since": 5}, [1, 2]):
        assert RuleState.from_dict(damaged).firing is False  # type: ignore[arg-type]


def test_rules_round_trip_through_dicts() -> None:
    r = rule(window=timedelta(minutes=15), aggregation=Aggregation.MEAN, no_data=NoData.OK, link="https://a.example")
    assert ThresholdRule.from_dict(r.to_dict()) == r


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({}, "id"),
        ({"id": "r", "name": "n", "metric": "m", "operator": "at_or_above"}, "threshold"),
        ({"id": "", "name": "n", "metric": "m", "operator": "above", "threshold": 1}, "id"),
        ({"id": "r", "name": "n" * 256, "metric": "m", "operator": "above", "threshold": 1}, "name"),
        ({"id": "r", "name": "n", "metric": 5, "operator": "above", "threshold": 1}, "metric"),
        ({"id": "r", "name": "n", "metric": "m", "operator": ">=", "threshold": 1}, "operator"),
        ({"id": "r", "name": "n", "metric": "m", "operator": "above", "threshold": "lots"}, "threshold"),
        ({"id": "r", "name": "n", "metric": "m", "operator": "above", "threshold": float("inf")}, "threshold"),
        ({"id": "r", "name": "n", "metric": "m", "operator": "above", "threshold": True}, "threshold"),
        ({"id": "r", "name": "n", "metric": "m", "operator": "above", "threshold": 1, "window": "1 week"}, "window"),
        ({"id": "r", "name": "n", "metric": "m", "operator": "above", "threshold": 1, "window": 0}, "window"),
        ({"id": "r", "name": "n", "metric": "m", "operator": "above", "threshold": 1, "window": "91d"}, "window"),
        (
            {"id": "r", "name": "n", "metric": "m", "operator": "above", "threshold": 1, "aggregation": "p99"},
            "aggregation",
        ),
        ({"id": "r", "name": "n", "metric": "m", "operator": "above", "threshold": 1, "no_data": "panic"}, "no_data"),
        (
            {"id": "r", "name": "n", "metric": "m", "operator": "above", "threshold": 1, "confirm_points": 0},
            "confirm_points",
        ),
        (
            {"id": "r", "name": "n", "metric": "m", "operator": "above", "threshold": 1, "confirm_points": "2"},
            "confirm_points",
        ),
        (
            {
                "id": "r",
                "name": "n",
                "metric": "m",
                "operator": "above",
                "threshold": 1,
                "confirm_points": 2,
                "aggregation": "sum",
            },
            "confirm_points",
        ),
        ({"id": "r", "name": "n", "metric": "m", "operator": "above", "threshold": 1, "severity": "sev1"}, "severity"),
        ({"id": "r", "name": "n", "metric": "m", "operator": "above", "threshold": 1, "link": 5}, "link"),
        ({"id": "r", "name": "n", "metric": "m", "operator": "above", "threshold": 1, "treshold": 2}, "treshold"),
    ],
)
def test_bad_rules(data: dict[str, Any], field: str) -> None:
    with pytest.raises(RuleInvalid) as raised:
        ThresholdRule.from_dict(data)
    assert raised.value.field == field


def test_a_rule_must_be_an_object() -> None:
    with pytest.raises(RuleInvalid):
        ThresholdRule.from_dict(["not", "a", "rule"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "seconds"), [("1h", 3600), ("15m", 900), ("30s", 30), ("7d", 604800), ("1.5h", 5400), (60, 60)]
)
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "series",
    [[("yesterday", 1)], [(NOW, "1")], [(NOW,)], [5], [(NOW.replace(tzinfo=None), 1.0)]],
)
def test_bad_series(series: list[Any]) -> None:
    with pytest.raises(RuleInvalid):
        rule().evaluate(series, now=NOW)


def test_now_must_be_aware() -> None:
    with pytest.raises(RuleInvalid):
        rule().evaluate([], now=NOW.replace(tzinfo=None))


def test_a_posthog_trend() -> None:
    insight = {
        "filters": {"insight": "TRENDS"},
        "result": [{"label": "$pageview", "data": [5, 0, 0], "days": ["2026-11-20", "2026-11-21", "2026-11-22"]}],
    }
    points = series_from_posthog_trend(insight)
    assert [p.value for p in points] == [5, 0, 0]
    assert points[-1].at == datetime(2026, 11, 22, tzinfo=UTC)
    daily = rule(operator=Operator.AT_OR_BELOW, threshold=0, window="2d", confirm_points=2)
    assert daily.evaluate(points, now=datetime(2026, 11, 22, 6, tzinfo=UTC)).action is Action.TRIGGER


@pytest.mark.parametrize(
    "insight",
    [
        [],
        {"result": "x"},
        {"result": []},
        {"result": [{"data": [1], "days": ["2026-11-22"]}, {"data": [2], "days": ["2026-11-22"]}]},
        {"result": [5]},
        {"result": [{"data": [1, 2], "days": ["2026-11-22"]}]},
        {"result": [{"data": [1]}]},
        {"result": [{"data": ["x"], "days": ["2026-11-22"]}]},
        {"result": [{"data": [1], "days": ["someday"]}]},
        {"filters": {"insight": "FUNNELS"}, "result": [{"data": [1], "days": ["2026-11-22"]}]},
    ],
)
def test_bad_posthog_trends(insight: Any) -> None:
    with pytest.raises(RuleInvalid):
        series_from_posthog_trend(insight)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
RULE_KEYS = ["id", "name", "metric", "operator", "threshold", "window", "aggregation", "no_data", "confirm_points"]


@given(st.dictionaries(st.sampled_from(RULE_KEYS) | st.text(max_size=8), json_values, max_size=10))
def test_any_rule_data_reads_or_is_refused(data: dict[str, Any]) -> None:
    try:
        read = ThresholdRule.from_dict(data)
    except RuleInvalid:
        return
    assert ThresholdRule.from_dict(read.to_dict()) == read


@given(json_values)
def test_any_trend_reads_or_is_refused(insight: Any) -> None:
    try:
        points = series_from_posthog_trend(insight)
    except RuleInvalid:
        return
    assert all(math.isfinite(p.value) for p in points)


@given(
    values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), max_size=20),
    operator=st.sampled_from(list(Operator)),
    aggregation=st.sampled_from(list(Aggregation)),
    no_data=st.sampled_from(list(NoData)),
    threshold=st.floats(min_value=-1e6, max_value=1e6),
)
def test_repeated_evaluations_never_trigger_twice(
    values: list[float], operator: Operator, aggregation: Aggregation, no_data: NoData, threshold: float
) -> None:
    """Feeding a series point by point: triggers and resolves alternate, starting with a trigger."""
    r = rule(operator=operator, aggregation=aggregation, no_data=no_data, threshold=threshold)
    state = RuleState()
    actions = []
    for count in range(len(values) + 1):
        result = r.evaluate(minutes_ago(*values[:count], step=1), state, now=NOW)
        state = result.state
        if result.action is not Action.NONE:
            actions.append(result.action)
    assert actions == [Action.TRIGGER, Action.RESOLVE] * (len(actions) // 2) + [Action.TRIGGER] * (len(actions) % 2)
