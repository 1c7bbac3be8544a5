"""Scope parsing (RFC 6749 3.3) and what an authorize request is granted (pagerduty-oauth.md 2.4)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.sandbox.identity import scopes

CLASSIC = frozenset({"read", "write"})


@pytest.mark.parametrize(
    "text",
    [" read", "read ", "read  write", "read\twrite", "read\nwrite", 're"ad', "re\\ad", "réad", "x" * 3000, "\x00"],
)
def test_malformed_scope_text(text: str) -> None:
    assert scopes.split(text) is None
    assert scopes.granted(text, CLASSIC) == {"openid"}


@pytest.mark.parametrize(
    ("text", "granted"),
    [
        (None, {"openid"}),
        ("", {"openid"}),
        ("read", {"openid", "read"}),
        ("write read", {"openid", "read", "write"}),
        ("openid", {"openid"}),
        ("read READ", {"openid"}),
        ("read admin", {"openid"}),
        ("read read", {"openid", "read"}),
    ],
)
def test_granted(text: str | None, granted: set[str]) -> None:
    assert scopes.granted(text, CLASSIC) == granted


@pytest.mark.parametrize(
    ("scope", "ok"),
    [
        ("services.read", True),
        ("webhook_subscriptions.write", True),
        ("users:contact_methods.read", True),
        ("services.delete", False),
        ("Services.read", False),
        ("services", False),
        (".read", False),
        ("services.read.write", False),
    ],
)
def test_resource_scope_syntax(scope: str, ok: bool) -> None:
    assert (scopes.RESOURCE_SCOPE.fullmatch(scope) is not None) == ok


@given(st.text(max_size=120), st.frozensets(st.sampled_from(["read", "write", "services.read", "incidents.read"])))
def test_the_grant_is_always_openid_and_never_more_than_allowed(text: str, allowed: frozenset[str]) -> None:
    granted = scopes.granted(text, allowed)
    assert "openid" in granted and granted <= allowed | {"openid"}
    tokens = scopes.split(text)
    if tokens is not None and set(tokens) <= allowed | {"openid"}:
        assert granted == set(tokens) | {"openid"}
    else:
        assert granted == {"openid"}


@given(st.frozensets(st.sampled_from(["openid", "read", "write", "services.read"]), min_size=1))
def test_text_round_trips_with_openid_first(granted: frozenset[str]) -> None:
    text = scopes.text(granted)
    assert frozenset(scopes.split(text) or []) == granted
    if "openid" in granted:
        assert text.startswith("openid")
