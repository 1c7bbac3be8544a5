"""SandboxClient tells its own sandbox's URLs from others by parsing them, not by prefix."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.sandbox.client import SandboxClient, SandboxClientError

BASE = "http://127.0.0.1:8787"


@pytest.mark.parametrize(
    ("url", "ours"),
    [
        (BASE + "/connect", True),
        (BASE, True),
        ("HTTP://127.0.0.1:8787/x", True),
        ("http://127.0.0.1:87870/connect", False),
        ("http://127.0.0.1:8787@evil.example/connect", False),
        ("http://127.0.0.1:8787.evil.example/connect", False),
        ("https://127.0.0.1:8787/connect", False),
        ("http://127.0.0.1/connect", False),
        ("http://localhost:8787/connect", False),
        ("http://[::1/connect", False),
        ("http://127.0.0.1:99999/connect", False),
        ("//127.0.0.1:8787/connect", False),
        ("", False),
    ],
)
def test_is_sandbox(url: str, ours: bool) -> None:
    client = SandboxClient(BASE)
    assert client._is_sandbox(url) is ours
    if not ours:
        with pytest.raises(SandboxClientError, match="not on this sandbox"):
            client.connect(url)
    client.close()


@given(st.text(max_size=40).map(lambda tail: BASE + tail) | st.text(max_size=60))
def test_only_the_sandboxs_host_and_port_are_ours(url: str) -> None:
    client = SandboxClient(BASE)
    if client._is_sandbox(url):
        parts = urlsplit(url)
        assert (parts.hostname, parts.port) == ("127.0.0.1", 8787)
    client.close()
