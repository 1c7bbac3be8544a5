"""Checks for short strings that come from outside: ids, names, query parameters."""

from __future__ import annotations

import unicodedata


def text_problem(value: object, *, max_length: int) -> str | None:
    """Describe what is wrong with ``value`` as a short single-line string, or return ``None``.

    A good value is a non-empty ``str`` of at most ``max_length`` characters with no control
    characters (Unicode category ``Cc``) and no unpaired surrogates.
    """
    if not isinstance(value, str):
        return "must be a string"
    if not value.strip():
        return "is empty"
    if len(value) > max_length:
        return f"is longer than {max_length} characters"
    for ch in value:
        category = unicodedata.category(ch)
        if category == "Cc":
            return "contains control characters"
        if category == "Cs":
            return "contains invalid characters"
    return None


def check_text(value: object, *, name: str, max_length: int) -> str:
    """Return ``value`` if :func:`text_problem` finds nothing, else raise ``ValueError``."""
    problem = text_problem(value, max_length=max_length)
    if problem is not None:
        raise ValueError(f"{name} {problem}")
    assert isinstance(value, str)
    return value
