from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from pdconnect.errors import CallbackError
from pdconnect.query import MAX_FIELDS, normalize_query, single_value


@pytest.mark.parametrize(
    "query",
    [
        "a=1&b=2&a=3",
        "?a=1&b=2&a=3",
        b"a=1&b=2&a=3",
        {"a": ["1", "3"], "b": "2"},
        {"a": ("1", "3"), "b": ["2"]},
        MultiDict([("a", "1"), ("b", "2"), ("a", "3")]),
    ],
)
def test_every_input_shape_keeps_repeats(query: object) -> None:
    assert normalize_query(query) == {"a": ["1", "3"], "b": ["2"]}


def test_blank_values_are_kept_so_they_can_be_refused() -> None:
    assert normalize_query("a=&b") == {"a": [""], "b": [""]}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (b"a=\xff", "not valid UTF-8"),
        ("a=%ff", "not valid UTF-8"),
        ("&".join(f"k{i}=v" for i in range(MAX_FIELDS + 1)), "too many fields"),
        ("a=" + "x" * 200_000, "too long"),
        (42, "string or a mapping"),
        ({1: "x"}, "not a string"),
        ({"a": 1}, "must be a string"),
        ({"a": [b"x"]}, "must be a string"),
    ],
)
def test_bad_queries(query: object, message: str) -> None:
    with pytest.raises(CallbackError, match=message):
        normalize_query(query)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "missing the 'x' parameter"),
        ({"x": []}, "missing the 'x' parameter"),
        ({"x": ["1", "2"]}, "repeats the 'x' parameter"),
        ({"x": [""]}, "is empty"),
        ({"x": ["  "]}, "is empty"),
        ({"x": ["a\x00b"]}, "control characters"),
        ({"x": ["a\nb"]}, "control characters"),
        ({"x": ["y" * 256]}, "longer than 255"),
    ],
)
def test_single_value_refuses(params: dict[str, list[str]], message: str) -> None:
    with pytest.raises(CallbackError, match=message) as info:
        single_value(params, "x")
    assert info.value.parameter == "x"


def test_single_value_optional() -> None:
    assert single_value({}, "x", required=False) is None
    assert single_value({"x": ["ok"]}, "x", required=False) == "ok"


@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_any_query_string_gives_a_mapping_or_our_error(raw: str | bytes) -> None:
    try:
        params = normalize_query(raw)
    except CallbackError:
        return
    assert all(isinstance(k, str) and all(isinstance(v, str) for v in vs) for k, vs in params.items())
