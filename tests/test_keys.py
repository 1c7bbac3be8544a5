from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.errors import InvalidIntegrationKey
from pdconnect.keys import KeyType, classify_key, normalize_key, redact
from tests.conftest import RULESET_KEY, SERVICE_KEY


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (SERVICE_KEY, SERVICE_KEY),
        (f"  {SERVICE_KEY}\n", SERVICE_KEY),
        (f"\t{RULESET_KEY} ", RULESET_KEY),
    ],
)
def test_normalize_trims_and_accepts(raw: str, expected: str) -> None:
    assert normalize_key(raw) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        (SERVICE_KEY[:-1], "32 characters long, got 31"),
        (SERVICE_KEY + "0", "32 characters long, got 33"),
        (SERVICE_KEY[:-1] + "-", "only ASCII letters and digits"),
        (SERVICE_KEY[:-1] + "é", "only ASCII letters and digits"),
        (SERVICE_KEY[:16] + " " + SERVICE_KEY[17:], "only ASCII letters and digits"),
        (None, "must be a string"),
        (12345, "must be a string"),
    ],
)
def test_normalize_refuses_with_a_reason_and_without_the_value(raw: object, message: str) -> None:
    with pytest.raises(InvalidIntegrationKey, match=message) as info:
        normalize_key(raw)
    if isinstance(raw, str) and len(raw) > 8:
        assert raw.strip() not in str(info.value)


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        (SERVICE_KEY, KeyType.SERVICE),
        ("70ae7dccd843440fd02648fec6568610", KeyType.SERVICE),
        (RULESET_KEY, KeyType.RULESET),
        ("E93FACC04764012D7BFB002500D5D1A6", KeyType.OTHER),
        ("r0212p1qxgeiqe2nmtq7l7wxd00dwhin", KeyType.OTHER),
        ("abcdefghijklmnopqrstuvwxyzABCDEF", KeyType.OTHER),
    ],
)
def test_classify(key: str, kind: KeyType) -> None:
    assert classify_key(key) is kind


def test_redact_shows_at_most_four_characters() -> None:
    assert redact(SERVICE_KEY) == "****d1a6"
    assert redact("short") == "****"


@given(st.text(max_size=64))
def test_normalize_only_raises_its_own_error(raw: str) -> None:
    try:
        key = normalize_key(raw)
    except InvalidIntegrationKey:
        return
    assert len(key) == 32
    assert key.isascii() and key.isalnum()
