"""Settings from config or the environment: the real type or its string, else one ConfigError."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.config_values import parse_bool, parse_float, parse_int, parse_list
from pdconnect.errors import ConfigError, PdConnectError

SECRET_LOOKING = "s3cr3t-R0UTING-key-0123456789abcd"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("true", True),
        ("TRUE", True),
        (" yes ", True),
        ("On", True),
        ("1", True),
        ("false", False),
        ("No", False),
        ("off\n", False),
        ("0", False),
    ],
)
def test_parse_bool_accepts(value: Any, expected: bool) -> None:
    assert parse_bool(value, name="PDCONNECT_X") is expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        " ",
        "2",
        2,
        -1,
        1.0,
        math.nan,
        "truee",
        "y",
        "t",
        "nope",
        "\ud800",
        "tru\x00e",
        b"true",
        [],
        {},
        object(),
    ],
)
def test_parse_bool_refuses(value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_bool(value, name="PDCONNECT_X")
    assert caught.value.setting == "PDCONNECT_X"
    assert "PDCONNECT_X" in str(caught.value)
    assert "true or false" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(600, 600), ("600", 600), (" 600\n", 600), ("+5", 5), ("-3", -3), ("0", 0), (10**20, 10**20)],
)
def test_parse_int_accepts(value: Any, expected: int) -> None:
    assert parse_int(value, name="PDCONNECT_N") == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        "",
        "  ",
        "6.0",
        6.0,
        math.nan,
        math.inf,
        "nan",
        "inf",
        "1e3",
        "1_000",
        "١٢",  # Arabic-Indic digits: int() takes them, no environment variable means them
        "0x10",
        "9" * 5000,
        "\ud800",
        "60\x00",
        b"600",
        [600],
    ],
)
def test_parse_int_refuses(value: Any) -> None:
    with pytest.raises(ConfigError, match="PDCONNECT_N must be a whole number"):
        parse_int(value, name="PDCONNECT_N")


@pytest.mark.parametrize(("value", "minimum", "maximum"), [(0, 1, None), ("86401", 1, 86400), (-1, 0, 10)])
def test_parse_int_refuses_out_of_range(value: Any, minimum: int | None, maximum: int | None) -> None:
    with pytest.raises(ConfigError, match=r"between|at least|at most"):
        parse_int(value, name="PDCONNECT_N", minimum=minimum, maximum=maximum)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1.5, 1.5), (2, 2.0), ("2.5", 2.5), (" .5 ", 0.5), ("1e3", 1000.0), ("-0", 0.0), ("3.", 3.0)],
)
def test_parse_float_accepts(value: Any, expected: float) -> None:
    assert parse_float(value, name="PDCONNECT_F") == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        "",
        math.nan,
        math.inf,
        -math.inf,
        "nan",
        "NaN",
        "inf",
        "infinity",
        "1e999",
        10**400,
        "1_0",
        "0x1p3",
        "\ud800",
        "1.5\x07",
        b"1.5",
        (1.5,),
    ],
)
def test_parse_float_refuses(value: Any) -> None:
    with pytest.raises(ConfigError, match="PDCONNECT_F must be a finite number"):
        parse_float(value, name="PDCONNECT_F")


def test_parse_float_range() -> None:
    assert parse_float("0.5", name="F", minimum=0, maximum=1) == 0.5
    with pytest.raises(ConfigError, match="between 0 and 1"):
        parse_float("1.5", name="F", minimum=0, maximum=1)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ()),
        ("", ()),
        ("a", ("a",)),
        ("a, b,,c ", ("a", "b", "c")),
        (["a", " b "], ("a", "b")),
        (("a", ""), ("a",)),
        ([], ()),
    ],
)
def test_parse_list_accepts(value: Any, expected: tuple[str, ...]) -> None:
    assert parse_list(value, name="PDCONNECT_L") == expected


@pytest.mark.parametrize("value", [b"a,b", 5, {"a": 1}, {"a"}, ["a", 5], ["a", None], [b"a"], object()])
def test_parse_list_refuses(value: Any) -> None:
    with pytest.raises(ConfigError, match="PDCONNECT_L"):
        parse_list(value, name="PDCONNECT_L")


@pytest.mark.parametrize("parse", [parse_bool, parse_int, parse_float])
def test_a_refused_value_is_never_repeated(parse: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(SECRET_LOOKING, name="PDCONNECT_WEBHOOK_SECRETS")
    assert SECRET_LOOKING not in str(caught.value)
    assert SECRET_LOOKING not in repr(caught.value)


def test_config_error_is_a_pdconnect_error_and_a_value_error() -> None:
    assert issubclass(ConfigError, PdConnectError)
    assert issubclass(ConfigError, ValueError)


_anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(),
    st.lists(st.one_of(st.text(), st.integers(), st.none()), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@given(_anything)
def test_bool_is_a_bool_or_a_config_error(value: Any) -> None:
    try:
        result = parse_bool(value, name="B")
    except ConfigError:
        return
    assert isinstance(result, bool)


@given(_anything, st.one_of(st.none(), st.integers(-100, 100)), st.one_of(st.none(), st.integers(-100, 100)))
def test_int_is_in_range_or_a_config_error(value: Any, minimum: int | None, maximum: int | None) -> None:
    try:
        number = parse_int(value, name="N", minimum=minimum, maximum=maximum)
    except ConfigError:
        return
    assert type(number) is int
    assert minimum is None or number >= minimum
    assert maximum is None or number <= maximum


@given(_anything)
def test_float_is_finite_or_a_config_error(value: Any) -> None:
    try:
        number = parse_float(value, name="F")
    except ConfigError:
        return
    assert type(number) is float
    assert math.isfinite(number)


@given(st.integers(-(10**12), 10**12))
def test_int_round_trips_through_the_environment(number: int) -> None:
    assert parse_int(str(number), name="N") == number


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_round_trips_through_the_environment(number: float) -> None:
    assert parse_float(repr(number), name="F") == number


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters=",")).filter(str.strip), max_size=5))
def test_list_round_trips_through_the_environment(items: list[str]) -> None:
    stripped = tuple(item.strip() for item in items)
    assert parse_list(",".join(items), name="L") == stripped
    assert parse_list(items, name="L") == stripped


@given(_anything)
def test_list_is_strings_or_a_config_error(value: Any) -> None:
    try:
        items = parse_list(value, name="L")
    except ConfigError:
        return
    assert all(isinstance(item, str) and item and item == item.strip() for item in items)


@given(number=st.integers(min_value=-(10**15), max_value=10**15), padding=st.sampled_from(["", " ", "\t"]))
def test_int_and_float_read_the_same_whole_numbers(number: int, padding: str) -> None:
    """parse_int and parse_float share one reader: a whole number is read alike by both."""
    text = f"{padding}{number}{padding}"
    assert parse_int(text, name="n") == parse_int(number, name="n") == number
    assert parse_float(text, name="n") == parse_float(number, name="n") == float(number)
    low, high = sorted((number, number + 1))
    assert parse_int(number, name="n", minimum=low, maximum=high) == number
    with pytest.raises(ConfigError):
        parse_int(number, name="n", minimum=number + 1)
    with pytest.raises(ConfigError):
        parse_float(text, name="n", maximum=number - 1)
