"""The OAuth settings of the Flask extension: every wrong value is a ConfigError at start-up, naming the setting."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from pdconnect.errors import ConfigError
from pdconnect.flask import PagerDutyConnect
from pdconnect.flask.oauth_config import OAUTH_DEFAULTS, OAuthSettings, read_oauth_settings
from pdconnect.oauth.cipher import TokenCipher

KEY = TokenCipher.generate_key()
SECRET_VALUE = "s3cr3t-client-secret with a space"
GOOD: dict[str, Any] = {
    "PDCONNECT_OAUTH_CLIENT_ID": "client-1",
    "PDCONNECT_OAUTH_CLIENT_SECRET": "client-secret-1",
    "PDCONNECT_OAUTH_REDIRECT_URL": "https://vendor.example/pagerduty/oauth/callback",
    "PDCONNECT_TOKEN_KEYS": [KEY],
}


def config(**changes: Any) -> dict[str, Any]:
    result = {**OAUTH_DEFAULTS, **GOOD, **changes}
    return {name: value for name, value in result.items() if value is not _MISSING}


_MISSING = object()
NAN = math.nan


def test_a_good_config_reads() -> None:
    read = read_oauth_settings(config())
    assert isinstance(read, OAuthSettings)
    assert read.app.scopes == ("write",) and read.app.kind == "classic"
    assert read.cipher is not None and not read.insecure_plaintext
    assert "client-secret-1" not in repr(read)


def test_without_a_client_id_oauth_is_off() -> None:
    assert read_oauth_settings(dict(OAUTH_DEFAULTS)) is None


@pytest.mark.parametrize(
    ("changes", "setting"),
    [
        ({"PDCONNECT_OAUTH_CLIENT_ID": 123}, "PDCONNECT_OAUTH_CLIENT_ID"),
        ({"PDCONNECT_OAUTH_CLIENT_ID": NAN}, "PDCONNECT_OAUTH_CLIENT_ID"),
        ({"PDCONNECT_OAUTH_CLIENT_ID": b"client"}, "PDCONNECT_OAUTH_CLIENT_ID"),
        ({"PDCONNECT_OAUTH_CLIENT_ID": ["client"]}, "PDCONNECT_OAUTH_CLIENT_ID"),
        ({"PDCONNECT_OAUTH_CLIENT_ID": "client\n2"}, "PDCONNECT_OAUTH_CLIENT_ID"),
        ({"PDCONNECT_OAUTH_CLIENT_ID": "client 2"}, "PDCONNECT_OAUTH"),
        ({"PDCONNECT_OAUTH_CLIENT_ID": "", "PDCONNECT_OAUTH_SCOPES": "write"}, "PDCONNECT_OAUTH_CLIENT_SECRET"),
        ({"PDCONNECT_OAUTH_CLIENT_ID": None, "PDCONNECT_OAUTH_CLIENT_SECRET": "x"}, "PDCONNECT_OAUTH_CLIENT_SECRET"),
        ({"PDCONNECT_OAUTH_CLIENT_SECRET": NAN}, "PDCONNECT_OAUTH_CLIENT_SECRET"),
        ({"PDCONNECT_OAUTH_CLIENT_SECRET": 5}, "PDCONNECT_OAUTH_CLIENT_SECRET"),
        ({"PDCONNECT_OAUTH_KIND": "other"}, "PDCONNECT_OAUTH_KIND"),
        ({"PDCONNECT_OAUTH_KIND": None}, "PDCONNECT_OAUTH_KIND"),
        ({"PDCONNECT_OAUTH_KIND": NAN}, "PDCONNECT_OAUTH_KIND"),
        ({"PDCONNECT_OAUTH_KIND": 1}, "PDCONNECT_OAUTH_KIND"),
        ({"PDCONNECT_OAUTH_SCOPES": ""}, "PDCONNECT_OAUTH_SCOPES"),
        ({"PDCONNECT_OAUTH_SCOPES": []}, "PDCONNECT_OAUTH_SCOPES"),
        ({"PDCONNECT_OAUTH_SCOPES": [1]}, "PDCONNECT_OAUTH_SCOPES"),
        ({"PDCONNECT_OAUTH_SCOPES": NAN}, "PDCONNECT_OAUTH_SCOPES"),
        ({"PDCONNECT_OAUTH_SCOPES": {"write"}}, "PDCONNECT_OAUTH_SCOPES"),
        ({"PDCONNECT_OAUTH_SCOPES": "write services.read"}, "PDCONNECT_OAUTH"),  # not a Classic scope
        ({"PDCONNECT_OAUTH_SCOPES": 'wri"te'}, "PDCONNECT_OAUTH"),
        ({"PDCONNECT_OAUTH_IDENTITY_URL": ""}, "PDCONNECT_OAUTH_IDENTITY_URL"),
        ({"PDCONNECT_OAUTH_IDENTITY_URL": None}, "PDCONNECT_OAUTH_IDENTITY_URL"),
        ({"PDCONNECT_OAUTH_IDENTITY_URL": NAN}, "PDCONNECT_OAUTH_IDENTITY_URL"),
        ({"PDCONNECT_OAUTH_IDENTITY_URL": "ftp://identity.example"}, "PDCONNECT_OAUTH"),
        ({"PDCONNECT_OAUTH_IDENTITY_URL": "https://u:p@identity.example"}, "PDCONNECT_OAUTH"),
        ({"PDCONNECT_OAUTH_IDENTITY_URL": "https://identity.example/?q=1"}, "PDCONNECT_OAUTH"),
        ({"PDCONNECT_OAUTH_REDIRECT_URL": "http://vendor.example/cb"}, "PDCONNECT_OAUTH"),  # http off loopback
        ({"PDCONNECT_OAUTH_REDIRECT_URL": "javascript:alert(1)"}, "PDCONNECT_OAUTH"),
        ({"PDCONNECT_OAUTH_REDIRECT_URL": "https://vendor.example/cb#frag"}, "PDCONNECT_OAUTH"),
        ({"PDCONNECT_OAUTH_REDIRECT_URL": NAN}, "PDCONNECT_OAUTH_REDIRECT_URL"),
        ({"PDCONNECT_OAUTH_REDIRECT_URL": None}, "PDCONNECT_OAUTH_REDIRECT_URL"),  # and no PDCONNECT_CALLBACK_URL
        ({"PDCONNECT_OAUTH_REST_BASES": {"https://api.example": "mars"}}, "PDCONNECT_OAUTH_REST_BASES"),
        ({"PDCONNECT_OAUTH_REST_BASES": "https://api.example=mars"}, "PDCONNECT_OAUTH_REST_BASES"),
        ({"PDCONNECT_OAUTH_REST_BASES": "https://api.example"}, "PDCONNECT_OAUTH_REST_BASES"),
        ({"PDCONNECT_OAUTH_REST_BASES": 5}, "PDCONNECT_OAUTH_REST_BASES"),
        ({"PDCONNECT_OAUTH_REST_BASES": NAN}, "PDCONNECT_OAUTH_REST_BASES"),
        ({"PDCONNECT_OAUTH_REST_BASES": {"https://api.example": 1}}, "PDCONNECT_OAUTH_REST_BASES"),
        ({"PDCONNECT_OAUTH_REST_BASES": {"ftp://api.example": "us"}}, "PDCONNECT_OAUTH"),
        (
            {
                "PDCONNECT_OAUTH_REST_BASES": "https://api.example=eu",
                "PDCONNECT_OAUTH_EVENTS_BASES": "us=https://e.example",
            },
            "PDCONNECT_OAUTH",  # no Events API base for the eu region
        ),
        ({"PDCONNECT_OAUTH_EVENTS_BASES": {"mars": "https://events.example"}}, "PDCONNECT_OAUTH_EVENTS_BASES"),
        ({"PDCONNECT_OAUTH_EVENTS_BASES": {"us": "ftp://events.example"}}, "PDCONNECT_OAUTH"),
        ({"PDCONNECT_OAUTH_EVENTS_BASES": ["us"]}, "PDCONNECT_OAUTH_EVENTS_BASES"),
        ({"PDCONNECT_OAUTH_ISSUERS": 5}, "PDCONNECT_OAUTH_ISSUERS"),
        ({"PDCONNECT_OAUTH_ISSUERS": []}, "PDCONNECT_OAUTH"),
        ({"PDCONNECT_TOKEN_KEYS": None}, "PDCONNECT_TOKEN_KEYS"),  # production without keys
        ({"PDCONNECT_TOKEN_KEYS": ""}, "PDCONNECT_TOKEN_KEYS"),
        ({"PDCONNECT_TOKEN_KEYS": []}, "PDCONNECT_TOKEN_KEYS"),
        ({"PDCONNECT_TOKEN_KEYS": "not-a-fernet-key"}, "PDCONNECT_TOKEN_KEYS"),
        ({"PDCONNECT_TOKEN_KEYS": [1]}, "PDCONNECT_TOKEN_KEYS"),
        ({"PDCONNECT_TOKEN_KEYS": NAN}, "PDCONNECT_TOKEN_KEYS"),
        ({"PDCONNECT_INSECURE_PLAINTEXT_TOKENS": "maybe"}, "PDCONNECT_INSECURE_PLAINTEXT_TOKENS"),
        ({"PDCONNECT_INSECURE_PLAINTEXT_TOKENS": NAN}, "PDCONNECT_INSECURE_PLAINTEXT_TOKENS"),
        ({"PDCONNECT_INSECURE_PLAINTEXT_TOKENS": 2}, "PDCONNECT_INSECURE_PLAINTEXT_TOKENS"),
        ({"PDCONNECT_REST_API_TOKEN": "vendor-wide-token"}, "PDCONNECT_REST_API_TOKEN"),
        (
            {
                "PDCONNECT_EVENTS_BASE_URL": "https://events.example",
                "PDCONNECT_OAUTH_EVENTS_BASES": "us=https://e.example",
            },
            "PDCONNECT_EVENTS_BASE_URL",
        ),
        # One host for both regions: an EU account's events would go to the US host.
        ({"PDCONNECT_EVENTS_BASE_URL": "https://events.example"}, "PDCONNECT_EVENTS_BASE_URL"),
    ],
)
def test_hostile_settings_are_a_config_error_naming_the_setting(changes: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError) as caught:
        read_oauth_settings(config(**changes))
    assert caught.value.setting == setting
    assert "\n" not in str(caught.value)


def test_a_secret_is_never_repeated_in_the_error() -> None:
    with pytest.raises(ConfigError) as caught:
        read_oauth_settings(config(PDCONNECT_OAUTH_CLIENT_SECRET=SECRET_VALUE))
    assert SECRET_VALUE not in str(caught.value) and "s3cr3t" not in str(caught.value)
    with pytest.raises(ConfigError) as keys:
        read_oauth_settings(config(PDCONNECT_TOKEN_KEYS=[KEY[:-2] + "!="]))
    assert KEY[:20] not in str(keys.value)


def test_plaintext_tokens_need_the_explicit_demo_switch() -> None:
    read = read_oauth_settings(config(PDCONNECT_TOKEN_KEYS=None, PDCONNECT_INSECURE_PLAINTEXT_TOKENS="true"))
    assert read is not None and read.cipher is None and read.insecure_plaintext
    with_keys = read_oauth_settings(config(PDCONNECT_INSECURE_PLAINTEXT_TOKENS=True))
    assert with_keys is not None and with_keys.cipher is not None and not with_keys.insecure_plaintext


def test_text_forms_of_the_mappings_and_scopes() -> None:
    read = read_oauth_settings(
        config(
            PDCONNECT_OAUTH_KIND=" Scoped ",
            PDCONNECT_OAUTH_SCOPES="services.read, webhook_subscriptions.write incidents.read",
            PDCONNECT_OAUTH_REST_BASES="http://127.0.0.1:8080=us, http://127.0.0.1:8080/eu=eu",
            PDCONNECT_OAUTH_EVENTS_BASES="us=http://127.0.0.1:8080,eu=http://127.0.0.1:8080/eu",
        )
    )
    assert read is not None and read.app.kind == "scoped"
    assert set(read.app.scopes) == {"services.read", "webhook_subscriptions.write", "incidents.read"}
    assert dict(read.app.rest_bases) == {"http://127.0.0.1:8080": "us", "http://127.0.0.1:8080/eu": "eu"}
    assert dict(read.app.events_bases) == {"us": "http://127.0.0.1:8080", "eu": "http://127.0.0.1:8080/eu"}


def test_the_redirect_url_defaults_to_the_callback_url_s_origin() -> None:
    read = read_oauth_settings(
        config(
            PDCONNECT_OAUTH_REDIRECT_URL=None,
            PDCONNECT_CALLBACK_URL="https://monitoring.acme.example/pagerduty/callback",
            PDCONNECT_URL_PREFIX="/pagerduty",
        )
    )
    assert read is not None
    assert read.app.redirect_uri == "https://monitoring.acme.example/pagerduty/oauth/callback"


def test_the_extension_refuses_to_start(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(SECRET_KEY="x" * 32, **{**GOOD, "PDCONNECT_TOKEN_KEYS": None})
    with pytest.raises(ConfigError, match="PDCONNECT_TOKEN_KEYS"):
        PagerDutyConnect(app)


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=10),
    st.lists(st.one_of(st.text(max_size=20), st.integers()), max_size=3),
    st.dictionaries(st.text(max_size=20), st.one_of(st.text(max_size=20), st.integers()), max_size=3),
    st.sampled_from(["us", "eu", "classic", "scoped", "write", "https://x.example", "http://127.0.0.1", KEY]),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted({*OAUTH_DEFAULTS, "PDCONNECT_REST_API_TOKEN"})), _VALUES, max_size=4))
def test_any_values_read_or_are_a_config_error(changes: dict[str, Any]) -> None:
    error: ConfigError | None = None
    try:
        read = read_oauth_settings(config(**changes))
    except ConfigError as exc:
        error, read = exc, None
    if error is not None:
        assert error.setting.startswith("PDCONNECT_")
        assert "\n" not in str(error)
    else:
        assert read is None or isinstance(read, OAuthSettings)


@given(st.lists(st.sampled_from(["read", "write"]), min_size=1, max_size=4), st.sampled_from([",", " ", ", ", " ,  "]))
def test_a_scope_string_reads_as_its_scopes_whatever_the_separators(scopes: list[str], separator: str) -> None:
    read = read_oauth_settings(config(PDCONNECT_OAUTH_SCOPES=separator.join(scopes)))
    assert read is not None and set(read.app.scopes) == set(scopes)
