from __future__ import annotations

import contextlib
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect import (
    Cancelled,
    Connected,
    EventsApi,
    KeyType,
    Origin,
    Region,
    build_connect_url,
    parse_connect_callback,
)
from pdconnect.errors import CallbackError, HandshakeFailed, PdConnectError, UnsafeURLError
from tests.conftest import CALLBACK_URL, SERVICE_KEY, VENDOR_KEY

GOOD = {"account": "acme", "service_key": SERVICE_KEY, "service_name": "Production web"}


def test_build_url_escapes_the_callback() -> None:
    url = build_connect_url(vendor_key=VENDOR_KEY, callback_url=CALLBACK_URL + "?tenant=4&x=y")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "connect.pagerduty.com", "/connect")
    assert parse_qs(parts.query) == {"vendor": [VENDOR_KEY], "callback": [CALLBACK_URL + "?tenant=4&x=y"]}
    assert "tenant%3D4%26x%3Dy" in url


def test_build_url_with_another_base() -> None:
    url = build_connect_url(vendor_key=VENDOR_KEY, callback_url=CALLBACK_URL, base_url="http://127.0.0.1:9000/")
    assert url.startswith("http://127.0.0.1:9000/connect?vendor=")


@pytest.mark.parametrize("callback", ["http://evil.example/cb", "/relative", "https://v.example/cb#x"])
def test_build_url_refuses_unsafe_callbacks(callback: str) -> None:
    with pytest.raises(UnsafeURLError):
        build_connect_url(vendor_key=VENDOR_KEY, callback_url=callback)


def test_build_url_refuses_a_bad_vendor_key() -> None:
    with pytest.raises(ValueError, match="vendor_key"):
        build_connect_url(vendor_key="", callback_url=CALLBACK_URL)


def test_parse_success() -> None:
    outcome = parse_connect_callback(urlencode(GOOD), owner_id="user-1", region=Region.EU)
    assert isinstance(outcome, Connected)
    assert outcome.flow is Origin.CONNECT
    integration = outcome.integration
    assert outcome.integrations == (integration,)
    assert integration.integration_key == SERVICE_KEY
    assert integration.account == "acme"
    assert integration.service_name == "Production web"
    assert integration.events_api is EventsApi.V1
    assert integration.key_type is KeyType.SERVICE
    assert integration.origin is Origin.CONNECT
    assert integration.region is Region.EU
    assert integration.owner_id == "user-1"


def test_unknown_parameters_are_ignored() -> None:
    outcome = parse_connect_callback({**GOOD, "utm_source": "x"}, owner_id="u")
    assert isinstance(outcome, Connected)


def test_cancel_is_an_outcome_not_an_error() -> None:
    outcome = parse_connect_callback("error=cancelled", owner_id="u")
    assert outcome == Cancelled(owner_id="u", flow=Origin.CONNECT)


def test_cancel_wins_over_partial_parameters() -> None:
    assert isinstance(parse_connect_callback({"error": "cancelled", "account": "acme"}, owner_id="u"), Cancelled)


def test_other_errors_carry_the_value() -> None:
    with pytest.raises(HandshakeFailed) as info:
        parse_connect_callback("error=access_denied", owner_id="u")
    assert info.value.error == "access_denied"
    assert "access_denied" in str(info.value)


def _without(name: str) -> dict[str, str]:
    return {k: v for k, v in GOOD.items() if k != name}


BAD_CALLBACKS = [
    pytest.param("", "missing the 'service_key'", id="empty query"),
    pytest.param(_without("service_key"), "missing the 'service_key'", id="no key"),
    pytest.param(_without("account"), "missing the 'account'", id="no account"),
    pytest.param(_without("service_name"), "missing the 'service_name'", id="no service name"),
    pytest.param({**GOOD, "service_key": ""}, "'service_key' parameter is empty", id="empty key"),
    pytest.param({**GOOD, "account": ""}, "'account' parameter is empty", id="empty account"),
    pytest.param({**GOOD, "service_name": " "}, "'service_name' parameter is empty", id="blank name"),
    pytest.param(urlencode(GOOD) + "&service_key=" + SERVICE_KEY, "repeats the 'service_key'", id="repeated key"),
    pytest.param(urlencode(GOOD) + "&account=evil", "repeats the 'account'", id="repeated account"),
    pytest.param({**GOOD, "service_key": "abc"}, "32 characters long", id="short key"),
    pytest.param({**GOOD, "service_key": SERVICE_KEY[:-1] + "!"}, "letters and digits", id="bad key chars"),
    pytest.param({**GOOD, "service_name": "x" * 300}, "longer than 255", id="over-long name"),
    pytest.param({**GOOD, "account": "a" * 256}, "longer than 255", id="over-long account"),
    pytest.param({**GOOD, "service_name": "web\r\nSet-Cookie: x"}, "control characters", id="CRLF in name"),
    pytest.param({**GOOD, "account": "acme\x00"}, "control characters", id="NUL in account"),
    pytest.param("error=", "'error' parameter is empty", id="empty error"),
    pytest.param("error=cancelled&error=cancelled", "repeats the 'error'", id="repeated error"),
    pytest.param(b"account=\xff", "UTF-8", id="bad bytes"),
]


@pytest.mark.parametrize(("query", "message"), BAD_CALLBACKS)
def test_malformed_callbacks_raise_a_typed_error_naming_the_problem(query: object, message: str) -> None:
    with pytest.raises(CallbackError, match=message) as info:
        parse_connect_callback(query, owner_id="u")  # type: ignore[arg-type]
    assert SERVICE_KEY not in str(info.value)


_fields = st.sampled_from(["account", "service_key", "service_name", "error", "state", "x"])
_values = st.one_of(st.text(max_size=40), st.just(SERVICE_KEY), st.just("cancelled"))


@given(st.lists(st.tuples(_fields, _values), max_size=6))
def test_any_parameters_give_an_outcome_or_our_error(pairs: list[tuple[str, str]]) -> None:
    try:
        outcome = parse_connect_callback(urlencode(pairs), owner_id="u")
    except PdConnectError:
        return
    assert isinstance(outcome, Connected | Cancelled)


@given(st.text(max_size=200))
def test_any_raw_query_string_gives_an_outcome_or_our_error(raw: str) -> None:
    with contextlib.suppress(PdConnectError):
        parse_connect_callback(raw, owner_id="u")


# -- surrogates, raw bytes and wrong types (issue 9) ----------------------------------------------

_SURROGATE_TEXT = st.text(
    alphabet=st.one_of(st.characters(), st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF))
)


@pytest.mark.parametrize(
    "query",
    [
        {**GOOD, "service_name": "\ud800"},
        {**GOOD, "account": "acme\udcff"},
        {**GOOD, "service_key": SERVICE_KEY[:-1] + "\ud800"},
        {**GOOD, "service_key": SERVICE_KEY.encode()},
        {**GOOD, "service_key": 12345678901234567890123456789012},
        {**GOOD, "service_key": None},
        {**GOOD, "service_key": [SERVICE_KEY, SERVICE_KEY]},
        {**GOOD, "error": ["cancelled", "cancelled"]},
        {**GOOD, "error": "\ud800"},
        b"account=%ff&service_key=" + SERVICE_KEY.encode() + b"&service_name=x",
        b"\xc3\x28",
        "service_name=%ED%A0%80",
        "account=" + "a" * 200_000,
        "&".join(f"p{i}=x" for i in range(100)),
        ["account", "acme"],
        None,
        3.5,
    ],
)
def test_hostile_values_are_a_typed_error(query: object) -> None:
    with pytest.raises(PdConnectError) as info:
        parse_connect_callback(query, owner_id="u")  # type: ignore[arg-type]
    assert SERVICE_KEY not in str(info.value)


@given(
    st.dictionaries(
        st.sampled_from(["account", "service_key", "service_name", "error"]),
        st.one_of(
            _SURROGATE_TEXT, st.binary(max_size=40), st.integers(), st.none(), st.lists(_SURROGATE_TEXT, max_size=2)
        ),
        max_size=4,
    )
)
def test_any_mapping_gives_an_outcome_or_our_error(values: dict[str, object]) -> None:
    try:
        outcome = parse_connect_callback(values, owner_id="u")  # type: ignore[arg-type]
    except PdConnectError:
        return
    assert isinstance(outcome, Connected | Cancelled)


@given(st.binary(max_size=300))
def test_any_raw_bytes_give_an_outcome_or_our_error(raw: bytes) -> None:
    with contextlib.suppress(PdConnectError):
        parse_connect_callback(raw, owner_id="u")
