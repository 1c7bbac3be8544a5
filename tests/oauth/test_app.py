"""OAuthApp: a setting that cannot work is refused when the app is made, and its repr keeps the secret."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect import MemoryNonceStore
from pdconnect.oauth import PagerDutyOAuth
from pdconnect.oauth.app import normalize_base
from tests.conftest import SECRET
from tests.oauth.conftest import make_app
from tests.oauth.fake_identity import CLIENT_SECRET

HOSTILE: list[Any] = [
    pytest.param({"client_id": ""}, "client_id", id="blank-client-id"),
    pytest.param({"client_id": "a b"}, "client_id", id="client-id-space"),
    pytest.param({"client_id": "é"}, "client_id", id="client-id-non-ascii"),
    pytest.param({"client_id": 5}, "client_id", id="client-id-number"),
    pytest.param({"client_secret": ""}, "client_secret", id="blank-secret"),
    pytest.param({"client_secret": "x\n"}, "client_secret", id="secret-newline"),
    pytest.param({"kind": "Classic"}, "kind", id="kind-case"),
    pytest.param({"scopes": "write"}, "sequence", id="scopes-one-string"),
    pytest.param({"scopes": ("services.read",)}, "Classic", id="classic-with-resource-scope"),
    pytest.param({"scopes": ("wr ite",)}, "scope", id="scope-space"),
    pytest.param({"kind": "scoped", "scopes": ('a"b',)}, "scope", id="scope-quote"),
    pytest.param({"redirect_uri": "http://vendor.example/cb"}, "https", id="redirect-http"),
    pytest.param({"redirect_uri": "https://vendor.example/cb#x"}, "fragment", id="redirect-fragment"),
    pytest.param({"redirect_uri": "https://user:pw@vendor.example/cb"}, "credentials", id="redirect-credentials"),
    pytest.param({"redirect_uri": "/cb"}, "absolute", id="redirect-relative"),
    pytest.param({"identity_url": "ftp://identity.pagerduty.com"}, "http", id="identity-ftp"),
    pytest.param({"identity_url": "https://identity.pagerduty.com?x=1"}, "query", id="identity-query"),
    pytest.param({"identity_url": "https://u:p@identity.pagerduty.com"}, "credentials", id="identity-credentials"),
    pytest.param({"identity_url": "https://identity.pagerduty.com:99999"}, "valid", id="identity-bad-port"),
    pytest.param({"issuers": ()}, "issuers", id="no-issuers"),
    pytest.param({"issuers": ("",)}, "issuers", id="blank-issuer"),
    pytest.param({"rest_bases": {}}, "rest_bases", id="no-rest-bases"),
    pytest.param({"rest_bases": {"https://api.pagerduty.com": "apac"}}, "region", id="unknown-region"),
    pytest.param({"rest_bases": {"not a url": "us"}}, "URL", id="rest-base-not-url"),
    pytest.param({"events_bases": {"us": "https://events.pagerduty.com"}}, "events_bases", id="no-eu-events-base"),
]


@pytest.mark.parametrize(("changes", "message"), HOSTILE)
def test_a_setting_that_cannot_work_is_refused(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        make_app(**changes)
    assert CLIENT_SECRET not in str(caught.value)


def test_the_repr_hides_the_client_secret() -> None:
    app = make_app()
    assert CLIENT_SECRET not in repr(app)
    assert CLIENT_SECRET[-4:] not in repr(app)
    assert "client_secret='<hidden>'" in repr(app)
    assert CLIENT_SECRET not in repr(PagerDutyOAuth(app, secret=SECRET, nonces=MemoryNonceStore()))


def test_bases_are_compared_as_urls() -> None:
    app = make_app(rest_bases={"HTTPS://API.PagerDuty.com:443/": "us", "https://api.eu.pagerduty.com": "eu"})
    assert dict(app.rest_bases) == {"https://api.pagerduty.com": "us", "https://api.eu.pagerduty.com": "eu"}
    assert normalize_base("http://127.0.0.1:8080/eu/") == "http://127.0.0.1:8080/eu"
    assert normalize_base("http://[::1]:80") == "http://[::1]"


def test_a_transport_that_cannot_get_is_refused() -> None:
    class PostOnly:
        def post(self, *args: Any) -> Any: ...

        def close(self) -> None: ...

    with pytest.raises(ValueError, match="get"):
        PagerDutyOAuth(make_app(), secret=SECRET, nonces=MemoryNonceStore(), transport=PostOnly())  # type: ignore[arg-type]


@pytest.mark.parametrize("secret", ["short", b"", [], ["a-vendor-secret-of-decent-length", "short"]])
def test_a_short_state_secret_is_refused(secret: Any) -> None:
    with pytest.raises(ValueError, match="secret"):
        PagerDutyOAuth(make_app(), secret=secret, nonces=MemoryNonceStore())


@pytest.mark.parametrize(
    "options",
    [
        {"jwks_ttl": float("nan")},
        {"jwks_ttl": -1},
        {"jwks_refetch_interval": float("inf")},
        {"max_age": 0},
        {"max_age": True},
    ],
)
def test_bad_numbers_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        PagerDutyOAuth(make_app(), secret=SECRET, nonces=MemoryNonceStore(), **options)


@given(st.text(max_size=80))
def test_any_base_url_is_normalized_or_refused(url: str) -> None:
    try:
        normalized = normalize_base(url)
    except ValueError:
        return
    assert normalize_base(normalized) == normalized
