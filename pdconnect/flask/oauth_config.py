"""The extension's OAuth settings (``PDCONNECT_OAUTH_*``, ``PDCONNECT_TOKEN_KEYS``), read once at start-up.

:func:`read_oauth_settings` checks every key and returns ``None`` when OAuth is not
configured (no ``PDCONNECT_OAUTH_CLIENT_ID``) or an :class:`OAuthSettings`; anything wrong is a
:class:`~pdconnect.errors.ConfigError` naming the setting, never repeating its value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pdconnect.config_values import parse_bool, parse_list
from pdconnect.errors import ConfigError
from pdconnect.oauth.app import IDENTITY_URL, ISSUERS, OAuthApp, RegionName
from pdconnect.oauth.cipher import TOKEN_KEYS_SETTING, TokenCipher, token_cipher_from_config

#: The OAuth keys of ``app.config`` and their defaults.
OAUTH_DEFAULTS: dict[str, Any] = {
    "PDCONNECT_OAUTH_CLIENT_ID": None,
    "PDCONNECT_OAUTH_CLIENT_SECRET": None,
    "PDCONNECT_OAUTH_KIND": "classic",
    "PDCONNECT_OAUTH_SCOPES": None,
    "PDCONNECT_OAUTH_IDENTITY_URL": IDENTITY_URL,
    "PDCONNECT_OAUTH_ISSUERS": None,
    "PDCONNECT_OAUTH_REDIRECT_URL": None,
    "PDCONNECT_OAUTH_REST_BASES": None,
    "PDCONNECT_OAUTH_EVENTS_BASES": None,
    TOKEN_KEYS_SETTING: None,
    "PDCONNECT_INSECURE_PLAINTEXT_TOKENS": False,
}

#: What each kind of app asks for when ``PDCONNECT_OAUTH_SCOPES`` is not set: enough to manage
#: webhook subscriptions and read services and incidents (``06-OAuth-Functionality.md``).
DEFAULT_SCOPES: Mapping[str, tuple[str, ...]] = {
    "classic": ("write",),
    "scoped": ("services.read", "incidents.read", "webhook_subscriptions.read", "webhook_subscriptions.write"),
}

_TEXT = (
    "PDCONNECT_OAUTH_CLIENT_ID",
    "PDCONNECT_OAUTH_CLIENT_SECRET",
    "PDCONNECT_OAUTH_REDIRECT_URL",
)
_MAX_TEXT = 2048


@dataclass(frozen=True)
class OAuthSettings:
    """The checked OAuth settings: the app to register, the token cipher, and plaintext consent."""

    app: OAuthApp
    cipher: TokenCipher | None = field(repr=False)
    insecure_plaintext: bool = False


def _text(config: Mapping[str, Any], name: str) -> str | None:
    value = config.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a string, not a {type(value).__name__}", setting=name)
    value = value.strip()
    if len(value) > _MAX_TEXT or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ConfigError(f"{name} must be one line of at most {_MAX_TEXT} characters", setting=name)
    return value or None


def _kind(value: Any) -> str:
    name = "PDCONNECT_OAUTH_KIND"
    if isinstance(value, str) and value.strip().lower() in ("classic", "scoped"):
        return value.strip().lower()
    raise ConfigError(f"{name} must be 'classic' or 'scoped'", setting=name)


def _scopes(value: Any, kind: str) -> tuple[str, ...]:
    name = "PDCONNECT_OAUTH_SCOPES"
    if value is None:
        return DEFAULT_SCOPES[kind]
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    scopes = parse_list(value, name=name)
    if not scopes:
        raise ConfigError(f"{name} must name at least one scope", setting=name)
    return scopes


def _pairs(value: Any, name: str) -> dict[str, str]:
    """A mapping from config: a dict of strings, or ``"key=value,key=value"`` text; ``{}`` for ``None``."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        result: dict[str, str] = {}
        for position, item in enumerate(parse_list(value, name=name)):
            # A URL holds no "=" here (no query is allowed), so either side may be split on.
            key, sep, rest = item.partition("=") if not item.startswith("http") else item.rpartition("=")
            if not sep or not key.strip() or not rest.strip():
                raise ConfigError(f"{name}[{position}] must be written key=value", setting=name)
            result[key.strip()] = rest.strip()
        return result
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{name} must be a mapping or 'key=value,...' text, not a {type(value).__name__}", setting=name
        )
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise ConfigError(f"{name} must map strings to strings", setting=name)
    return dict(value)


def _rest_bases(value: Any) -> dict[str, RegionName] | None:
    name = "PDCONNECT_OAUTH_REST_BASES"
    pairs = _pairs(value, name)
    if not pairs:
        return None
    bases: dict[str, RegionName] = {}
    for url, region in pairs.items():
        if region not in ("us", "eu"):
            raise ConfigError(f"{name} maps REST base URLs to 'us' or 'eu'", setting=name)
        bases[url] = "us" if region == "us" else "eu"
    return bases


def _events_bases(value: Any) -> dict[RegionName, str] | None:
    name = "PDCONNECT_OAUTH_EVENTS_BASES"
    pairs = _pairs(value, name)
    if not pairs:
        return None
    bases: dict[RegionName, str] = {}
    for region, url in pairs.items():
        if region == "us":
            bases["us"] = url
        elif region == "eu":
            bases["eu"] = url
        else:
            raise ConfigError(f"{name} maps 'us' and 'eu' to Events API base URLs", setting=name)
    return bases


def _redirect_url(config: Mapping[str, Any]) -> str:
    """``PDCONNECT_OAUTH_REDIRECT_URL``, else the OAuth callback on ``PDCONNECT_CALLBACK_URL``'s origin."""
    configured = _text(config, "PDCONNECT_OAUTH_REDIRECT_URL")
    if configured is not None:
        return configured
    callback = config.get("PDCONNECT_CALLBACK_URL")
    if isinstance(callback, str) and callback:
        origin = urlsplit(callback)
        prefix = str(config.get("PDCONNECT_URL_PREFIX") or "").rstrip("/")
        return f"{origin.scheme}://{origin.netloc}{prefix}/oauth/callback"
    raise ConfigError(
        "PDCONNECT_OAUTH_REDIRECT_URL must be set (the URL of /pagerduty/oauth/callback registered with the "
        "OAuth app), or PDCONNECT_CALLBACK_URL, whose origin it is then built on",
        setting="PDCONNECT_OAUTH_REDIRECT_URL",
    )


def read_oauth_settings(config: Mapping[str, Any]) -> OAuthSettings | None:
    """The OAuth settings of ``config``, or ``None`` when ``PDCONNECT_OAUTH_CLIENT_ID`` is not set.

    Refused with :class:`~pdconnect.errors.ConfigError`: a wrong type, NaN or blank where text
    is needed, an unknown kind or scope, an unusable URL, a client secret or other OAuth
    setting without a client id, ``PDCONNECT_REST_API_TOKEN`` beside OAuth (the vendor-wide
    token is the single-account mode, OAuth the per-account one: both at once would subscribe
    with the wrong token), ``PDCONNECT_EVENTS_BASE_URL`` beside OAuth (one host for both regions),
    and no ``PDCONNECT_TOKEN_KEYS`` unless ``PDCONNECT_INSECURE_PLAINTEXT_TOKENS`` is true.
    """
    for name in _TEXT:
        _text(config, name)
    client_id = _text(config, "PDCONNECT_OAUTH_CLIENT_ID")
    insecure = parse_bool(
        config.get("PDCONNECT_INSECURE_PLAINTEXT_TOKENS", False), name="PDCONNECT_INSECURE_PLAINTEXT_TOKENS"
    )
    if client_id is None:
        token_cipher_from_config(config.get(TOKEN_KEYS_SETTING), environ={})  # a wrong key is wrong anyway
        for name, default in OAUTH_DEFAULTS.items():
            ignored = name in ("PDCONNECT_OAUTH_CLIENT_ID", TOKEN_KEYS_SETTING, "PDCONNECT_INSECURE_PLAINTEXT_TOKENS")
            if not ignored and config.get(name, default) != default:
                raise ConfigError(f"{name} is set but PDCONNECT_OAUTH_CLIENT_ID is not", setting=name)
        return None
    if config.get("PDCONNECT_REST_API_TOKEN"):
        raise ConfigError(
            "PDCONNECT_REST_API_TOKEN (single-account mode) and PDCONNECT_OAUTH_CLIENT_ID (per-account OAuth) "
            "are both set: with OAuth, webhook subscriptions are made with each account's own token; "
            "remove PDCONNECT_REST_API_TOKEN",
            setting="PDCONNECT_REST_API_TOKEN",
        )
    kind = _kind(config.get("PDCONNECT_OAUTH_KIND", "classic"))
    scopes = _scopes(config.get("PDCONNECT_OAUTH_SCOPES"), kind)
    identity = config.get("PDCONNECT_OAUTH_IDENTITY_URL", IDENTITY_URL)
    if not isinstance(identity, str) or not identity.strip():
        name = "PDCONNECT_OAUTH_IDENTITY_URL"
        raise ConfigError(f"{name} must be a non-empty string", setting=name)
    issuers_value = config.get("PDCONNECT_OAUTH_ISSUERS")
    issuers = parse_list(issuers_value, name="PDCONNECT_OAUTH_ISSUERS") if issuers_value is not None else ISSUERS
    rest_bases = _rest_bases(config.get("PDCONNECT_OAUTH_REST_BASES"))
    events_bases = _events_bases(config.get("PDCONNECT_OAUTH_EVENTS_BASES"))
    if config.get("PDCONNECT_EVENTS_BASE_URL"):
        # One host for every region would send an EU account's events to the US host, which
        # refuses its keys: with OAuth, each account's region picks its Events API host.
        raise ConfigError(
            "PDCONNECT_EVENTS_BASE_URL sends every region's events to one host; with OAuth, remove it "
            "(each account's region picks its host; point regions elsewhere with PDCONNECT_OAUTH_EVENTS_BASES)",
            setting="PDCONNECT_EVENTS_BASE_URL",
        )
    extra: dict[str, Any] = {}
    if rest_bases is not None:
        extra["rest_bases"] = rest_bases
    if events_bases is not None:
        extra["events_bases"] = events_bases
    try:
        app = OAuthApp(
            client_id=client_id,
            client_secret=_text(config, "PDCONNECT_OAUTH_CLIENT_SECRET"),
            redirect_uri=_redirect_url(config),
            kind="classic" if kind == "classic" else "scoped",
            scopes=scopes,
            identity_url=identity.strip(),
            issuers=issuers,
            **extra,
        )
    except ConfigError:
        raise
    except ValueError as exc:  # OAuthApp names the field; the value may be a secret, so not repeated
        raise ConfigError(f"the PagerDuty OAuth settings cannot work: {exc}", setting="PDCONNECT_OAUTH") from None
    cipher = token_cipher_from_config(config.get(TOKEN_KEYS_SETTING), environ={})
    if cipher is None and not insecure:
        raise ConfigError(
            f"OAuth tokens are stored encrypted: set {TOKEN_KEYS_SETTING} (a key from "
            "TokenCipher.generate_key(); a list rotates, the first encrypts), or "
            "PDCONNECT_INSECURE_PLAINTEXT_TOKENS=True for a demo",
            setting=TOKEN_KEYS_SETTING,
        )
    return OAuthSettings(app=app, cipher=cipher, insecure_plaintext=insecure and cipher is None)
