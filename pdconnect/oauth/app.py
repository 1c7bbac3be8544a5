"""The OAuth app a vendor registered with PagerDuty, and where each region's APIs live."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal
from urllib.parse import urlsplit

from pdconnect.errors import UnsafeURLError
from pdconnect.integration import Region
from pdconnect.oauth.scopes import AppKind, requested_scopes
from pdconnect.text import text_problem
from pdconnect.urls import EVENTS_BASE_URLS, check_base_url, check_callback_url

RegionName = Literal["us", "eu"]

#: PagerDuty's identity host (``06-OAuth-Functionality.md``).
IDENTITY_URL = "https://identity.pagerduty.com"
#: The ``iss`` of PagerDuty's ID tokens: the doc names the first, its sample tokens carry the
#: second (``07-PagerDuty-OpenId-Token.md``; which one is live is unconfirmed, so both).
ISSUERS = (
    "https://identity.pagerduty.com/global/oauth/anonymous",
    "https://app.pagerduty.com/global/oauth/anonymous",
)
#: The regional REST bases an ID token's ``aud`` names (``07-PagerDuty-OpenId-Token.md``).
REST_BASES: Mapping[str, RegionName] = MappingProxyType(
    {"https://api.pagerduty.com": "us", "https://api.eu.pagerduty.com": "eu"}
)
#: The Events API host of each region (PagerDuty support, "Service Regions").
EVENTS_BASES: Mapping[RegionName, str] = MappingProxyType(
    {"us": EVENTS_BASE_URLS[Region.US], "eu": EVENTS_BASE_URLS[Region.EU]}
)


def normalize_base(url: str) -> str:
    """``url`` as compared with configured bases: scheme and host lowercase, no default port, no trailing ``/``.

    Raises :class:`~pdconnect.errors.UnsafeURLError` for what is not an absolute http(s) URL
    without credentials, query or fragment.
    """
    check_base_url(url)
    if any(ord(ch) < 0x21 or ord(ch) > 0x7E for ch in url):
        raise UnsafeURLError("a base URL must be printable ASCII without spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURLError("a base URL is not a valid URL") from exc
    if parts.username is not None or parts.password is not None:
        raise UnsafeURLError("a base URL must not contain credentials")
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        host = f"{host}:{port}"
    return f"{scheme}://{host}{parts.path.rstrip('/')}"


def _region(value: object) -> RegionName:
    if value == "us":
        return "us"
    if value == "eu":
        return "eu"
    raise ValueError("a region is 'us' or 'eu'")


@dataclass(frozen=True)
class OAuthApp:
    """An OAuth app registered in PagerDuty: its credentials, redirect URL, kind and scopes.

    ``kind`` is ``"classic"`` (User OAuth, ``read`` or ``write``, works on any account whose
    user authorizes it) or ``"scoped"`` (per-resource scopes; other accounts only as a Public
    Scoped App). ``client_secret`` is ``None`` for a public client, which then relies on PKCE
    alone. ``redirect_uri`` must be registered with the app. ``identity_url``, ``issuers``,
    ``rest_bases`` (REST base URL -> region, read from the ID token's ``aud``) and
    ``events_bases`` (region -> Events API base) point at PagerDuty by default; tests add the
    sandbox's. The ``repr`` never shows the client secret.

    Raises ``ValueError`` (or :class:`~pdconnect.errors.UnsafeURLError`) for a setting that
    cannot work, when the app is made rather than on the first user's callback.
    """

    client_id: str
    client_secret: str | None = field(repr=False)
    redirect_uri: str
    kind: AppKind
    scopes: tuple[str, ...]
    identity_url: str = IDENTITY_URL
    issuers: tuple[str, ...] = ISSUERS
    rest_bases: Mapping[str, RegionName] = field(default_factory=lambda: REST_BASES)
    events_bases: Mapping[RegionName, str] = field(default_factory=lambda: EVENTS_BASES)

    def __post_init__(self) -> None:
        for name in ("client_id", "client_secret"):
            value = getattr(self, name)
            if value is None and name == "client_secret":
                continue
            problem = text_problem(value, max_length=512)
            if problem is None and (not value.isascii() or " " in value):
                problem = "must be printable ASCII without spaces"
            if problem is not None:
                raise ValueError(f"{name} {problem}")
        if self.kind not in ("classic", "scoped"):
            raise ValueError("kind must be 'classic' or 'scoped'")
        if isinstance(self.scopes, str):  # type: ignore[unreachable]  # a common slip from config
            raise ValueError("scopes must be a sequence of scope names, not one string")
        object.__setattr__(self, "scopes", tuple(self.scopes))
        requested_scopes(self.scopes, kind=self.kind)
        check_callback_url(self.redirect_uri, name="redirect_uri")
        object.__setattr__(self, "identity_url", normalize_base(self.identity_url))
        issuers = tuple(self.issuers)
        if not issuers or any(text_problem(i, max_length=512) for i in issuers):
            raise ValueError("issuers must be one or more non-empty strings")
        object.__setattr__(self, "issuers", issuers)
        rest = {normalize_base(url): _region(region) for url, region in self.rest_bases.items()}
        events = {_region(region): normalize_base(url) for region, url in self.events_bases.items()}
        if not rest:
            raise ValueError("rest_bases must name at least one REST base URL")
        if not set(rest.values()) <= set(events):
            raise ValueError("events_bases must name an Events API base for every region of rest_bases")
        object.__setattr__(self, "rest_bases", MappingProxyType(rest))
        object.__setattr__(self, "events_bases", MappingProxyType(events))

    def __repr__(self) -> str:
        secret = "None" if self.client_secret is None else "'<hidden>'"
        return (
            f"OAuthApp(client_id={self.client_id!r}, client_secret={secret}, redirect_uri={self.redirect_uri!r}, "
            f"kind={self.kind!r}, scopes={self.scopes!r}, identity_url={self.identity_url!r})"
        )

    @property
    def authorize_url(self) -> str:
        """Where the browser goes to authorize: ``<identity_url>/oauth/authorize``."""
        return f"{self.identity_url}/oauth/authorize"

    @property
    def token_url(self) -> str:
        """The token endpoint: ``<identity_url>/oauth/token``."""
        return f"{self.identity_url}/oauth/token"

    @property
    def jwks_url(self) -> str:
        """PagerDuty's signing keys: ``<identity_url>/global/oauth/anonymous/jwks``."""
        return f"{self.identity_url}/global/oauth/anonymous/jwks"
