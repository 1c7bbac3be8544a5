"""Rules of the house that a reviewer would otherwise have to remember, checked on the source.

An empty store, list or config is falsy, so ``store or MemoryNonceStore()`` silently swaps a
store the vendor passed in (and that happened to be empty) for a new one: that is how a
callback became replayable. No ``x or SomeClass(...)`` in pdconnect, ever.

The other rules of ``STYLE.md`` a parser can check are here too, on every module of the
package (``pdconnect/oauth`` and ``pdconnect/rest`` included, issue 10): no naive datetime,
no ``type(x) is dict``, no mutable default argument, no secret-named value handed to a log
call, and ``import pdconnect`` stays light (no JOSE or crypto library until OAuth is used).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pdconnect"
SOURCES = sorted(PACKAGE.rglob("*.py"))
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


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_or_default_on_an_object(path: Path) -> None:
    offending = _or_defaults_to_an_object(ast.parse(path.read_text(encoding="utf-8")))
    assert not offending, f"use `x if x is not None else Default(...)` at lines {offending}"


def test_the_rule_catches_the_pattern_that_made_callbacks_replayable() -> None:
    source = "store = given or MemoryNonceStore(clock=clock)\nsafe = given if given is not None else Store()\n"
    assert _or_defaults_to_an_object(ast.parse(source)) == [1]


def test_the_new_oauth_and_rest_modules_are_checked() -> None:
    checked = {str(path.relative_to(PACKAGE).parent) for path in SOURCES}
    assert {"oauth", "rest", "sandbox/identity", "flask"} <= checked


# -- naive datetimes, type() comparisons, mutable defaults, secrets handed to a logger ----------------

#: Names that hold a secret in pdconnect; never an argument of a log call (a repr that hides it is).
_SECRET_NAMES = {
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "code_verifier",
    "verifier",
    "integration_key",
    "routing_key",
    "service_key",
    "secret",
    "password",
}
_LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def _naive_datetimes(tree: ast.AST) -> list[int]:
    """``utcnow()``, ``utcfromtimestamp()``, ``datetime.now()`` and ``fromtimestamp(t)`` without a zone."""
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        name, zoned = node.func.attr, bool(node.keywords)
        if (
            name in ("utcnow", "utcfromtimestamp")
            or (name == "now" and not node.args and not zoned and ast.unparse(node.func.value).endswith("datetime"))
            or (name == "fromtimestamp" and len(node.args) < 2 and not zoned)
        ):
            lines.append(node.lineno)
    return lines


def _type_comparisons(tree: ast.AST) -> list[int]:
    """``type(x) is dict`` and ``type(x) == dict``: a subclass (a vendor's OrderedDict) is refused."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            typed = any(isinstance(s, ast.Call) and isinstance(s.func, ast.Name) and s.func.id == "type" for s in sides)
            if typed and any(isinstance(op, ast.Is | ast.IsNot | ast.Eq | ast.NotEq) for op in node.ops):
                lines.append(node.lineno)
    return lines


def _mutable_defaults(tree: ast.AST) -> list[int]:
    mutable = ast.List | ast.Dict | ast.Set | ast.ListComp | ast.DictComp | ast.SetComp
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for default in [*node.args.defaults, *(d for d in node.args.kw_defaults if d is not None)]:
                made = isinstance(default, ast.Call) and ast.unparse(default.func) in (
                    "list",
                    "dict",
                    "set",
                    "bytearray",
                )
                if isinstance(default, mutable) or made:
                    lines.append(node.lineno)
    return lines


def _secrets_logged(tree: ast.AST) -> list[int]:
    """A log call whose arguments name a secret (``logger.info("%s", credential.access_token)``).

    A secret passed through ``redact(...)`` (its last four characters) is allowed.
    """
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in _LOG_METHODS or "log" not in ast.unparse(node.func.value).lower():
            continue
        pending: list[ast.AST] = [*node.args, *(k.value for k in node.keywords)]
        while pending:
            inner = pending.pop()
            if isinstance(inner, ast.Call) and ast.unparse(inner.func).endswith("redact"):
                continue
            named = inner.id if isinstance(inner, ast.Name) else inner.attr if isinstance(inner, ast.Attribute) else ""
            if named in _SECRET_NAMES:
                lines.append(node.lineno)
            pending.extend(ast.iter_child_nodes(inner))
    return sorted(set(lines))


RULES = {
    "use an aware datetime: datetime.now(UTC), datetime.fromtimestamp(t, UTC)": _naive_datetimes,
    "use isinstance(), which a subclass passes": _type_comparisons,
    "use None and make the default in the body": _mutable_defaults,
    "log an id or redact(...) of it, never the secret": _secrets_logged,
}


@pytest.mark.parametrize("rule", list(RULES), ids=[f.__name__.strip("_") for f in RULES.values()])
@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_style_rules(path: Path, rule: str) -> None:
    offending = RULES[rule](ast.parse(path.read_text(encoding="utf-8")))
    assert not offending, f"{rule} (lines {offending})"


@pytest.mark.parametrize(
    ("rule", "bad", "good"),
    [
        (_naive_datetimes, "datetime.utcnow()", "datetime.now(UTC)"),
        (_naive_datetimes, "datetime.datetime.now()", "datetime.datetime.now(tz=UTC)"),
        (_naive_datetimes, "datetime.fromtimestamp(t)", "datetime.fromtimestamp(t, UTC)"),
        (_naive_datetimes, "datetime.utcfromtimestamp(t)", "datetime.fromtimestamp(t, tz=UTC)"),
        (_type_comparisons, "ok = type(x) is dict", "ok = isinstance(x, dict)"),
        (_type_comparisons, "ok = dict == type(x)", "ok = type(x).__name__"),
        (_mutable_defaults, "def f(x=[]): pass", "def f(x=()): pass"),
        (_mutable_defaults, "def f(*, x=dict()): pass", "def f(*, x=None): pass"),
        (_mutable_defaults, "g = lambda x={}: x", "g = lambda x=frozenset(): x"),
        (_secrets_logged, 'logger.info("%s", credential.access_token)', 'logger.info("%s", credential)'),
        (_secrets_logged, 'log.debug("t", extra={"s": app.client_secret})', 'log.debug("%s", app.client_id)'),
        (_secrets_logged, 'logger.warning(f"{refresh_token}")', 'logger.warning("%s", redact(event.routing_key))'),
    ],
)
def test_each_rule_catches_its_pattern(rule: object, bad: str, good: str) -> None:
    assert callable(rule)
    assert rule(ast.parse(bad)) == [1]
    assert rule(ast.parse(good)) == []


def test_import_pdconnect_loads_no_jose_crypto_or_web_framework() -> None:
    """The OAuth names live in :mod:`pdconnect.oauth`; ``import pdconnect`` must not pay for them."""
    code = "import sys, pdconnect; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    assert "pdconnect" in loaded
    assert not loaded & {"jwt", "cryptography", "flask", "werkzeug"}, sorted(loaded & {"jwt", "cryptography", "flask"})


@pytest.mark.parametrize("name", ["CredentialNotFound", "NeedsReauthorization"])
def test_credential_errors_are_one_class_under_every_import_path(name: str) -> None:
    """They moved to ``pdconnect.oauth.errors``; the paths vendors already import from keep working."""
    import pdconnect.oauth
    import pdconnect.oauth.errors
    import pdconnect.oauth.refresh
    import pdconnect.rest.errors

    home = getattr(pdconnect.oauth.errors, name)
    assert home.__module__ == "pdconnect.oauth.errors"
    for module in (pdconnect.oauth, pdconnect.oauth.refresh, pdconnect.rest.errors):
        assert getattr(module, name) is home
