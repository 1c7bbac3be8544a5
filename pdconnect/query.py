"""Reading a callback's query string strictly: every value single, present and sane."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol, TypeAlias, runtime_checkable
from urllib.parse import parse_qs

from pdconnect.errors import CallbackError
from pdconnect.text import text_problem

#: More fields than this in one callback is not PagerDuty talking.
MAX_FIELDS = 64
#: A whole query string longer than this is refused before parsing.
MAX_QUERY_LENGTH = 128 * 1024


@runtime_checkable
class MultiValueMapping(Protocol):
    """A mapping that keeps repeated keys, like Werkzeug's ``MultiDict`` or Django's ``QueryDict``."""

    def getlist(self, key: str) -> list[str]: ...

    def __iter__(self) -> Iterator[str]: ...


QueryInput: TypeAlias = "str | bytes | Mapping[str, str] | Mapping[str, list[str]] | MultiValueMapping"
"""What callback parsers accept: a raw query string (with or without ``?``), a ``parse_qs``
style mapping of lists, a plain mapping of strings, or a framework's multi-value mapping."""


def normalize_query(query: object) -> dict[str, list[str]]:
    """Turn any :data:`QueryInput` into ``{name: [values]}``, keeping repeated names."""
    if isinstance(query, bytes):
        try:
            query = query.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CallbackError("the callback's query string is not valid UTF-8") from exc
    if isinstance(query, str):
        return _parse_query_string(query)
    if isinstance(query, MultiValueMapping):
        result: dict[str, list[str]] = {}
        for key in query:
            result[_check_name(key)] = [_check_value(key, v) for v in query.getlist(key)]
        return result
    if isinstance(query, Mapping):
        result = {}
        for key, value in query.items():
            name = _check_name(key)
            values = list(value) if isinstance(value, list | tuple) else [value]
            result[name] = [_check_value(name, v) for v in values]
        return result
    raise CallbackError("the callback's query must be a string or a mapping")


def _parse_query_string(query: str) -> dict[str, list[str]]:
    if len(query) > MAX_QUERY_LENGTH:
        raise CallbackError("the callback's query string is too long")
    try:
        return parse_qs(
            query.removeprefix("?"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeDecodeError as exc:
        raise CallbackError("the callback's query string is not valid UTF-8") from exc
    except ValueError as exc:
        raise CallbackError("the callback's query string has too many fields") from exc


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise CallbackError("the callback's query has a parameter name that is not a string")
    return name


def _check_value(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise CallbackError(f"parameter {name!r} must be a string", parameter=name)
    return value


def single_value(
    params: Mapping[str, list[str]],
    name: str,
    *,
    max_length: int = 255,
    required: bool = True,
) -> str | None:
    """Return the one value of ``name``, or ``None`` when it is absent and not ``required``.

    Raises :class:`~pdconnect.errors.CallbackError` for a missing required parameter, a
    repeated one, or a value that is empty, over ``max_length`` or holds control characters.
    """
    values = params.get(name)
    if not values:
        if required:
            raise CallbackError(f"the callback is missing the {name!r} parameter", parameter=name)
        return None
    if len(values) > 1:
        raise CallbackError(f"the callback repeats the {name!r} parameter", parameter=name)
    problem = text_problem(values[0], max_length=max_length)
    if problem is not None:
        raise CallbackError(f"the callback's {name!r} parameter {problem}", parameter=name)
    return values[0]
