"""The log filter against keys hidden by encoding (issue 9): a login redirect's ``next=``, JSON, twice-encoded.

A vendor's login page (``/login?next=...``), an error tracker or a JSON log line writes the
callback URL down percent-encoded, once or twice, or JSON-escaped. Each of those hid the key
from :class:`~pdconnect.logfilter.RedactSecrets`: ``%3D`` before a key made its first
character look like part of a longer run.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.logfilter import REDACTED, RedactSecrets
from tests.conftest import SERVICE_KEY

STATE = "eyJ2IjoxLCJmIjoiaW5zdGFsbCJ9.Z1x2aQ.c2lnbmF0dXJlLW9mLXRoZS1zdGF0ZQ"
CALLBACK = f"/pagerduty/callback/{STATE}?account=acme&service_key={SERVICE_KEY}&service_name=Web"
CONFIG = json.dumps(
    {"integration_keys": [{"integration_key": SERVICE_KEY, "name": "Web"}], "account": {"subdomain": "a"}}
)
INSTALL = f"/pagerduty/callback?state={STATE}&config={quote(CONFIG, safe='')}"


def _once(text: str) -> str:
    return quote(text, safe="")


@pytest.mark.parametrize(
    "line",
    [
        f"GET /login?next={_once(CALLBACK)} HTTP/1.1",
        f"GET /login?next={_once(_once(CALLBACK))} HTTP/1.1",
        f"GET /login?next={_once(CALLBACK).lower()} HTTP/1.1",
        f"GET /login?next={_once(INSTALL)} HTTP/1.1",
        f"GET /login?next={_once(_once(INSTALL))} HTTP/1.1",
        f"redirecting to https://acme.example/login?next={_once('https://acme.example' + CALLBACK)}",
        json.dumps({"url": CALLBACK, "next": _once(CALLBACK)}),
        json.dumps({"config": CONFIG}),  # JSON inside JSON: \"integration_key\": \"...\"
        json.dumps({"state": STATE, "service_key": SERVICE_KEY}),
        "{'state': '" + STATE + "', 'service_key': '" + SERVICE_KEY + "'}",
        f"key \\u0022{SERVICE_KEY}\\u0022",
        f"key \\x22{SERVICE_KEY}\\x22",
        f"key %22{SERVICE_KEY}%22",
        f"key %2522{SERVICE_KEY}%2522",
        f"/x/%2F{SERVICE_KEY}%2Fy",
    ],
)
def test_an_encoded_callback_url_leaves_no_secret(line: str) -> None:
    redacted = RedactSecrets().redact(line)
    assert SERVICE_KEY not in redacted, redacted
    assert STATE not in redacted, redacted
    assert REDACTED in redacted


def test_what_is_around_an_encoded_key_is_kept() -> None:
    assert RedactSecrets().redact(f"GET /login?next=%2Fhome%3Fservice_key%3D{SERVICE_KEY} HTTP/1.1") == (
        f"GET /login?next=%2Fhome%3Fservice_key%3D{REDACTED} HTTP/1.1"
    )
    assert RedactSecrets().redact("GET /pagerduty/connect?subdomain=acme HTTP/1.1") == (
        "GET /pagerduty/connect?subdomain=acme HTTP/1.1"
    )


_KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEF0123456789", min_size=32, max_size=32)


@given(
    key=_KEYS,
    name=st.sampled_from(["service_key", "routing_key", "integration_key", "other"]),
    depth=st.integers(min_value=0, max_value=3),
    as_json=st.booleans(),
    lower=st.booleans(),
    prefix=st.text(max_size=20),
)
def test_a_key_survives_no_depth_of_encoding(
    key: str, name: str, depth: int, as_json: bool, lower: bool, prefix: str
) -> None:
    text = f"https://acme.example/pagerduty/callback/{STATE}?{name}={key}&service_name=Web"
    for _ in range(depth):
        text = _once(text).lower() if lower else _once(text)
    if as_json:
        text = json.dumps({"next": text, "config": json.dumps({"integration_key": key})})
    redacted = RedactSecrets().redact(f"{prefix} GET /login?next={text} HTTP/1.1")
    assert key not in redacted
    assert STATE not in redacted
