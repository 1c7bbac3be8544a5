"""The integration record: one PagerDuty target a vendor's user connected."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum

from pdconnect.keys import KeyType, classify_key, normalize_key, redact


class Region(StrEnum):
    """PagerDuty service region; it picks the Events API host."""

    US = "us"
    EU = "eu"


class EventsApi(StrEnum):
    """Which events API an integration key speaks."""

    #: The legacy Integration API (Events API v1, ``create_event.json``): keys from PagerDuty Connect.
    V1 = "v1"
    #: Events API v2 (``/v2/enqueue``): keys from the install flow or pasted by the user.
    V2 = "v2"


class Origin(StrEnum):
    """How an integration was made."""

    CONNECT = "connect"
    INSTALL = "install"
    PASTED = "pasted"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, repr=False)
class Integration:
    """A PagerDuty service (or ruleset) that a vendor's user connected.

    ``owner_id`` is the vendor's own opaque id for the user or organisation that connected
    it. ``account`` is the PagerDuty account's subdomain and ``account_name`` its display
    name, when PagerDuty said them. ``service_id`` and ``target_type`` come from the install
    flow (``id`` and ``type`` of each ``integration_keys`` entry). The ``repr`` shows only
    the last four characters of the key.
    """

    owner_id: str
    integration_key: str
    origin: Origin
    events_api: EventsApi
    key_type: KeyType
    region: Region = Region.US
    account: str | None = None
    account_name: str | None = None
    service_name: str | None = None
    service_id: str | None = None
    target_type: str | None = None
    connected_at: datetime = field(default_factory=_now)

    def __repr__(self) -> str:
        shown = [
            f"owner_id={self.owner_id!r}",
            f"key={redact(self.integration_key)!r}",
            f"origin={self.origin.value}",
            f"events_api={self.events_api.value}",
            f"key_type={self.key_type.value}",
            f"region={self.region.value}",
        ]
        for name in ("account", "account_name", "service_name", "service_id", "target_type"):
            value = getattr(self, name)
            if value is not None:
                shown.append(f"{name}={value!r}")
        shown.append(f"connected_at={self.connected_at.isoformat()}")
        return f"Integration({', '.join(shown)})"

    __str__ = __repr__

    @property
    def accepts_change_events(self) -> bool:
        """Ruleset keys take alert events only (PagerDuty docs, "Change Events")."""
        return self.key_type is not KeyType.RULESET

    def with_region(self, region: Region) -> Integration:
        """A copy of this integration in another service region."""
        return replace(self, region=region)


def integration_from_key(
    raw_key: str,
    *,
    owner_id: str,
    region: Region = Region.US,
    events_api: EventsApi = EventsApi.V2,
    service_name: str | None = None,
    account: str | None = None,
) -> Integration:
    """Make an integration from a key the user pasted (the fallback when there is no handshake).

    The key is trimmed and checked (32 ASCII letters and digits) and classified as a service
    or ruleset key. Raises :class:`~pdconnect.errors.InvalidIntegrationKey` otherwise.
    """
    key = normalize_key(raw_key)
    return Integration(
        owner_id=owner_id,
        integration_key=key,
        origin=Origin.PASTED,
        events_api=events_api,
        key_type=classify_key(key),
        region=region,
        account=account,
        service_name=service_name,
    )
