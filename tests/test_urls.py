from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.errors import UnsafeURLError
from pdconnect.urls import (
    add_path_segment,
    add_query_params,
    check_base_url,
    check_callback_url,
    is_loopback_host,
    safe_link_href,
    safe_local_redirect,
)


@pytest.mark.parametrize(
    "url",
    [
        "https://vendor.example/pagerduty/callback",
        "https://vendor.example:8443/cb?tenant=4",
        "http://localhost:5000/pagerduty/callback",
        "http://127.0.0.1:5000/cb",
        "http://[::1]:5000/cb",
    ],
)
def test_safe_callback_urls(url: str) -> None:
    assert check_callback_url(url) == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "non-empty"),
        ("/pagerduty/callback", "absolute https"),
        ("vendor.example/cb", "absolute https"),
        ("//vendor.example/cb", "absolute https"),
        ("http://vendor.example/cb", "https"),
        ("http://localhost.evil.example/cb", "https"),
        ("javascript:alert(1)", "absolute https"),
        ("ftp://vendor.example/cb", "absolute https"),
        ("https://vendor.example/cb#frag", "fragment"),
        ("https://vendor.example/cb#", "fragment"),
        ("https://user:pw@vendor.example/cb", "credentials"),
        ("https://vendor.example/c b", "spaces or control"),
        ("https://vendor.example/cb\n", "spaces or control"),
        ("https://vendor.example:99999/cb", "valid URL"),
        ("https://[::1/cb", "valid URL"),
        ("http://127.evil.example/cb", "https"),
        ("http://127.0.0.1.evil.example/cb", "https"),
        ("http://app.localhost/cb", "https"),
        ("http://localhost./cb", "https"),
        ("https://vendor.example\\@evil.example/cb", "backslash"),
        ("https://vendor.example/cb\\..\\x", "backslash"),
    ],
)
def test_unsafe_callback_urls(url: str, reason: str) -> None:
    with pytest.raises(UnsafeURLError, match=reason):
        check_callback_url(url)


@pytest.mark.parametrize(
    "host", ["localhost", "LOCALHOST", "127.0.0.1", "127.0.0.2", "127.255.255.254", "::1", "[::1]", "::ffff:127.0.0.1"]
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        "127.evil.example",
        "127.0.0.1.evil.example",
        "127.0.0.1.nip.io",
        "localhost.example",
        "app.localhost",
        "localhost.",
        "0.0.0.0",  # noqa: S104 -- a host under test, nothing binds to it
        "::",
        "10.0.0.1",
        "::ffff:10.0.0.1",
        "2130706433",  # 127.0.0.1 as one integer: some resolvers accept it, ipaddress does not
        "0x7f.1",
        "127.1",
        "[::1",
        "127.0.0.1\x00",
        12,
        b"127.0.0.1",
    ],
)
def test_not_loopback_hosts(host: object) -> None:
    assert not is_loopback_host(host)  # type: ignore[arg-type]


@given(st.text())
def test_loopback_is_an_address_or_localhost(host: str) -> None:
    if is_loopback_host(host):
        assert host.lower() == "localhost" or ipaddress.ip_address(host.strip("[]"))


@pytest.mark.parametrize("target", ["/", "/monitors/4", "/settings?tab=pagerduty", "/a/b#frag", "/%2F%2Fevil.example"])
def test_local_redirect_targets_are_kept(target: str) -> None:
    assert safe_local_redirect(target) == target


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        7,
        ["/x"],
        b"/x",
        "//evil.example",
        "///evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\nSet-Cookie: a=b",
        "/x\x00y",
        "/x\x7fy",
        "/ /evil.example",
        "/\u2028/evil.example",
        "/caf\u00e9",
        "/\ud800",
        "https://evil.example/",
        "javascript:alert(1)",
        "evil.example",
        "/" + "a" * 3000,
    ],
)
def test_hostile_redirect_targets_give_the_default(target: object) -> None:
    assert safe_local_redirect(target, default="/home") == "/home"


@given(st.one_of(st.text(), st.binary(), st.none(), st.integers(), st.floats()))
def test_a_redirect_target_never_leaves_the_site(target: object) -> None:
    result = safe_local_redirect(target)
    assert result.startswith("/") and not result.startswith("//")
    assert all("\x21" <= ch <= "\x7e" and ch != "\\" for ch in result)
    assert not urlsplit(result).netloc and not urlsplit(result).scheme


@pytest.mark.parametrize("url", ["https://acme.example/monitors/4", "http://127.0.0.1:5000/x", "https://acme.example"])
def test_http_links_are_links(url: str) -> None:
    assert safe_link_href(url) == url


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        3.5,
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "\tjavascript:alert(1)",
        "java\nscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "/relative",
        "//evil.example/x",
        "https:/\\evil.example",
        "https://acme.example\\@evil.example",
        "https://acme.example@evil.example/",
        "https://[::1/x",
        "https://acme.example:99999/",
        "ftp://acme.example/",
        "https:///nohost",
    ],
)
def test_dangerous_links_are_not_links(url: object) -> None:
    assert safe_link_href(url) is None


@given(st.text())
def test_a_link_is_always_http_or_https(url: str) -> None:
    result = safe_link_href(url)
    if result is not None:
        assert urlsplit(result).scheme in ("http", "https") and urlsplit(result).hostname


def test_query_and_path_helpers_keep_what_is_there() -> None:
    assert add_query_params("https://v.example/cb?a=1", {"state": "x y"}) == "https://v.example/cb?a=1&state=x+y"
    assert add_path_segment("https://v.example/cb?a=1", "tok") == "https://v.example/cb/tok?a=1"
    assert add_path_segment("https://v.example/cb/", "tok") == "https://v.example/cb/tok"


@pytest.mark.parametrize("url", ["events.pagerduty.com", "https://x.example/?q=1", "https://x.example/#f", "mailto:x"])
def test_bad_base_urls(url: str) -> None:
    with pytest.raises(UnsafeURLError):
        check_base_url(url)


def test_base_url_loses_trailing_slash() -> None:
    assert check_base_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
