"""PKCE S256: verifier syntax (RFC 7636 4.1) and challenge matching."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.sandbox.identity import pkce

UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
GOOD = "a" * 43


def test_rfc7636_appendix_b_example() -> None:
    assert (
        pkce.challenge_of("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


@pytest.mark.parametrize(
    "verifier",
    [
        "",
        "a" * 42,  # one too short
        "a" * 129,  # one too long
        "a" * 42 + " ",
        "a" * 42 + "+",  # base64, not base64url
        "a" * 42 + "/",
        "a" * 42 + "=",
        "a" * 42 + "é",
        "a" * 42 + "\x00",
        "a" * 42 + "\n",
        "ａ" * 43,  # fullwidth letters: \w would take them
        "a" * 42 + "%",
    ],
)
def test_malformed_verifiers_never_match(verifier: str) -> None:
    assert not pkce.is_verifier(verifier)
    # Even with the challenge computed from it, a malformed verifier is refused.
    assert not pkce.matches(verifier, pkce.challenge_of(verifier))


@pytest.mark.parametrize(
    "challenge", ["", "a" * 42, "a" * 44, "a" * 42 + "=", "a" * 42 + "+", "a" * 42 + ".", "ａ" * 43]
)
def test_malformed_challenges(challenge: str) -> None:
    assert not pkce.is_challenge(challenge)


@given(st.text(alphabet=UNRESERVED, min_size=43, max_size=128))
def test_every_well_formed_verifier_matches_its_own_challenge_only(verifier: str) -> None:
    challenge = pkce.challenge_of(verifier)
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert challenge == expected and pkce.is_challenge(challenge)
    assert pkce.matches(verifier, challenge)
    assert not pkce.matches(verifier[:-1] + ("b" if verifier[-1] != "b" else "c"), challenge)
    assert not pkce.matches(verifier, challenge[:-1] + ("A" if challenge[-1] != "A" else "B"))


@given(st.text(max_size=200))
def test_any_text_is_judged_without_raising(text: str) -> None:
    assert pkce.is_verifier(text) == (43 <= len(text) <= 128 and all(ch in UNRESERVED for ch in text))
    if not pkce.is_verifier(text):
        assert not pkce.matches(text, GOOD)
