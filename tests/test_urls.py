from __future__ import annotations

import pytest

from pdconnect.errors import UnsafeURLError
from pdconnect.urls import add_path_segment, add_query_params, check_base_url, check_callback_url, is_loopback_host


@pytest.mark.parametrize(
    "url",
    [
        "https://vendor.example/pagerduty/callback",
        "https://vendor.example:8443/cb?tenant=4",
        "http://localhost:5000/pagerduty/callback",
        "http://127.0.0.1:5000/cb",
        "http://[::1]:5000/cb",
        "http://app.localhost/cb",
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
    ],
)
def test_unsafe_callback_urls(url: str, reason: str) -> None:
    with pytest.raises(UnsafeURLError, match=reason):
        check_callback_url(url)


def test_loopback_hosts() -> None:
    assert is_loopback_host("LOCALHOST")
    assert is_loopback_host("127.0.0.2")
    assert not is_loopback_host("localhost.example")
    assert not is_loopback_host(None)


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
