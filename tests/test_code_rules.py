"""Rules of the house that a reviewer would otherwise have to remember, checked on the source.

An empty store, list or config is falsy, so ``store or MemoryNonceStore()`` silently swaps a
store the vendor passed in (and that happened to be empty) for a new one: that is how a
callback became replayable. No ``x or SomeClass(...)`` in pdconnect, ever.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pdconnect"
#: Text types, whose emptiness is exactly what ``or`` means to test.
_TEXT_TYPES = {"Markup", "Path", "str"}


def _or_defaults_to_an_object(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or)):
            continue
        for operand in node.values[1:]:
            func = operand.func if isinstance(operand, ast.Call) else None
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name[:1].isupper() and name not in _TEXT_TYPES:
                lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_or_default_on_an_object(path: Path) -> None:
    offending = _or_defaults_to_an_object(ast.parse(path.read_text(encoding="utf-8")))
    assert not offending, f"use `x if x is not None else Default(...)` at lines {offending}"


def test_the_rule_catches_the_pattern_that_made_callbacks_replayable() -> None:
    source = "store = given or MemoryNonceStore(clock=clock)\nsafe = given if given is not None else Store()\n"
    assert _or_defaults_to_an_object(ast.parse(source)) == [1]
