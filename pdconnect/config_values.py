"""Settings read from configuration or the environment, checked once where they are read.

Each function takes the real Python type (``True``, ``600``, ``["a", "b"]``) or the string an
environment variable holds (``"true"``, ``"600"``, ``"a,b"``), and returns the real type.
Anything else raises :class:`~pdconnect.errors.ConfigError`, whose message names the setting
and says what was expected. The message never repeats the value: a setting may hold a secret.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from pdconnect.errors import ConfigError

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
# ASCII digits only: int() and float() also take "1_000", "١٢" and "infinity", which no
# environment variable means.
_INT = re.compile(r"[+-]?[0-9]{1,30}", re.ASCII)
_FLOAT = re.compile(r"[+-]?(?:[0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})(?:[eE][+-]?[0-9]{1,4})?", re.ASCII)


def _kind(value: object) -> str:
    return type(value).__name__


def _range(minimum: float | None, maximum: float | None) -> str:
    if minimum is not None and maximum is not None:
        return f" between {minimum} and {maximum}"
    if minimum is not None:
        return f" of at least {minimum}"
    if maximum is not None:
        return f" of at most {maximum}"
    return ""


def parse_bool(value: Any, *, name: str) -> bool:
    """``value`` as a boolean: ``True``/``False``, or one of true/false/1/0/yes/no/on/off (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise ConfigError(f"{name} must be true or false (or yes/no, on/off, 1/0)", setting=name)
    raise ConfigError(f"{name} must be true or false, not a {_kind(value)}", setting=name)


def _number(
    value: Any,
    *,
    name: str,
    expected: str,
    pattern: re.Pattern[str],
    kinds: type | tuple[type, ...],
    convert: Callable[[Any], float],
    minimum: float | None,
    maximum: float | None,
) -> Any:
    """``value`` converted, if it is one of ``kinds`` or text matching ``pattern``, finite and in range."""
    if isinstance(value, bool):  # True is an int to Python, never a number of seconds to a person
        raise ConfigError(f"{expected}, not a bool", setting=name)
    if isinstance(value, str):
        value = value.strip()
        if not pattern.fullmatch(value):
            raise ConfigError(expected, setting=name)
    elif not isinstance(value, kinds):
        raise ConfigError(f"{expected}, not a {_kind(value)}", setting=name)
    try:
        number = convert(value)
        finite = not isinstance(number, float) or math.isfinite(number)
    except OverflowError:  # an int too large for a float
        raise ConfigError(expected, setting=name) from None
    if not finite:
        raise ConfigError(expected, setting=name)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ConfigError(expected, setting=name)
    return number


def parse_int(value: Any, *, name: str, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a whole number within ``minimum``..``maximum`` (inclusive, when given)."""
    expected = f"{name} must be a whole number{_range(minimum, maximum)}"
    number: int = _number(
        value, name=name, expected=expected, pattern=_INT, kinds=int, convert=int, minimum=minimum, maximum=maximum
    )
    return number


def parse_float(value: Any, *, name: str, minimum: float | None = None, maximum: float | None = None) -> float:
    """``value`` as a finite number within ``minimum``..``maximum``; NaN and infinity are refused."""
    expected = f"{name} must be a finite number{_range(minimum, maximum)}"
    number: float = _number(
        value,
        name=name,
        expected=expected,
        pattern=_FLOAT,
        kinds=(int, float),
        convert=float,
        minimum=minimum,
        maximum=maximum,
    )
    return number


def parse_list(value: Any, *, name: str) -> tuple[str, ...]:
    """``value`` as strings: a list or tuple of str, or one comma-separated string.

    Items are stripped and empty ones dropped; ``None`` and ``""`` are the empty tuple.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ConfigError(
            f"{name} must be a list of strings or one comma-separated string, not a {_kind(value)}", setting=name
        )
    result = []
    for position, item in enumerate(items):
        if not isinstance(item, str):
            raise ConfigError(f"{name}[{position}] must be a string, not a {_kind(item)}", setting=name)
        if item.strip():
            result.append(item.strip())
    return tuple(result)
