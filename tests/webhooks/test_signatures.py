"""V3 signature verification: the header's grammar, several secrets, constant-time compares."""

from __future__ import annotations

import contextlib
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.errors import SignatureMismatch, SignatureMissing
from pdconnect.webhooks.signatures import MAX_SIGNATURES, matching_secret, sign, signatures_in, verify_signature
from tests.webhooks.samples import OTHER_SECRET, SECRET

BODY = b'{"event":{"id":"1","event_type":"incident.triggered"}}'


def test_sign_matches_pagerdutys_algorithm() -> None:
    expected = hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, BODY) == f"v1={expected}"


def test_a_good_signature_verifies() -> None:
    verify_signature(BODY, sign(SECRET, BODY), [SECRET])


def test_any_of_several_signatures_may_match() -> None:
    """PagerDuty sends two during its secret rotation; either may be ours."""
    header = f"{sign(OTHER_SECRET, BODY)}, {sign(SECRET, BODY)}"
    assert matching_secret(BODY, header, [SECRET]) == 0


def test_several_local_secrets_say_which_matched() -> None:
    assert matching_secret(BODY, sign(SECRET, BODY), [OTHER_SECRET, SECRET]) == 1


def test_uppercase_hex_is_accepted() -> None:
    verify_signature(BODY, sign(SECRET, BODY).upper().replace("V1=", "v1="), [SECRET])


def test_unknown_versions_are_skipped() -> None:
    verify_signature(BODY, f"v2={'0' * 64},{sign(SECRET, BODY)}", [SECRET])


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (None, SignatureMissing),
        ("", SignatureMissing),
        ("   ", SignatureMissing),
        ("v1=", SignatureMissing),
        ("v1=abc", SignatureMissing),
        ("v1=" + "g" * 64, SignatureMissing),
        ("v2=" + "0" * 64, SignatureMissing),
        ("sha256=" + "0" * 64, SignatureMissing),
        ("v1 " + "0" * 64, SignatureMissing),
        (",".join(["v1=" + "0" * 64] * (MAX_SIGNATURES + 1)), SignatureMissing),
        ("v1=" + "0" * 64, SignatureMismatch),
        ("v1=" + "0" * 65, SignatureMissing),
    ],
)
def test_bad_headers(header: str | None, error: type[Exception]) -> None:
    with pytest.raises(error):
        verify_signature(BODY, header, [SECRET])


def test_a_changed_body_does_not_verify() -> None:
    header = sign(SECRET, BODY)
    with pytest.raises(SignatureMismatch):
        verify_signature(BODY + b" ", header, [SECRET])


def test_without_secrets_nothing_verifies() -> None:
    with pytest.raises(SignatureMismatch):
        verify_signature(BODY, sign(SECRET, BODY), [])


def test_errors_never_show_the_secret_or_signature() -> None:
    header = sign(OTHER_SECRET, BODY)
    with pytest.raises(SignatureMismatch) as raised:
        verify_signature(BODY, header, [SECRET])
    assert SECRET not in str(raised.value) and header[3:] not in str(raised.value)


def test_the_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every comparison goes through hmac.compare_digest."""
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("pdconnect.webhooks.signatures.hmac.compare_digest", spy)
    verify_signature(BODY, f"{sign(SECRET, BODY)},{sign(OTHER_SECRET, BODY)}", [SECRET])
    assert len(calls) == 2, "both entries compared, even after the first matched"


@given(header=st.text(max_size=300))
def test_any_header_gives_a_typed_answer(header: str) -> None:
    with contextlib.suppress(SignatureMissing, SignatureMismatch):
        verify_signature(BODY, header, [SECRET])


@given(body=st.binary(max_size=500), secret=st.text(min_size=1, max_size=64))
def test_whatever_is_signed_verifies(body: bytes, secret: str) -> None:
    verify_signature(body, sign(secret, body), [secret])
    assert signatures_in(sign(secret, body)) == [sign(secret, body)[3:]]
