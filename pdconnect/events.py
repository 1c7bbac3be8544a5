"""The events a vendor sends: alert events, change events and legacy Integration API events.

These are plain values. They are checked against PagerDuty's rules when a
:class:`~pdconnect.sender.Sender` prepares them (:mod:`pdconnect.payloads`), before any
request, so every problem is reported at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from pdconnect.errors import EventValidationError

_T = TypeVar("_T")


class Severity(StrEnum):
    """Alert severity; PagerDuty allows exactly these four (Events API v2, PD-CEF)."""

    CRITICAL = "critical"
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


class EventAction(StrEnum):
    """What an alert event does to the alert with its dedup key."""

    TRIGGER = "trigger"
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"


@dataclass(frozen=True)
class Link:
    """A link shown on the alert and incident."""

    href: str
    text: str | None = None


@dataclass(frozen=True)
class Image:
    """An image shown on the alert and incident; PagerDuty requires an https ``src``."""

    src: str
    href: str | None = None
    alt: str | None = None


LinkLike = Link | Mapping[str, Any]
ImageLike = Image | Mapping[str, Any]


def coerce_links(items: Iterable[LinkLike]) -> tuple[Link, ...]:
    """Links from :class:`Link` values or ``{"href": ..., "text": ...}`` mappings."""
    return tuple(_coerce(Link, item, "links", index) for index, item in enumerate(items))


def coerce_images(items: Iterable[ImageLike]) -> tuple[Image, ...]:
    """Images from :class:`Image` values or ``{"src": ..., "href": ..., "alt": ...}`` mappings."""
    return tuple(_coerce(Image, item, "images", index) for index, item in enumerate(items))


def _coerce(kind: type[_T], item: object, name: str, index: int) -> _T:
    if isinstance(item, kind):
        return item
    if isinstance(item, Mapping):
        try:
            return kind(**item)
        except TypeError:
            pass
    fields = ", ".join(f.name for f in dataclasses.fields(kind))  # type: ignore[arg-type]
    raise EventValidationError([f"{name}[{index}] must be a {kind.__name__} or a mapping with keys: {fields}"])


@dataclass(frozen=True)
class AlertEvent:
    """An Events API v2 alert event (``/v2/enqueue``).

    Build one with :meth:`trigger`, :meth:`acknowledge` or :meth:`resolve`. ``event_class``
    is sent as ``payload.class`` (a Python keyword). ``client`` and ``client_url`` override the
    sender's defaults for this event. Sent to a legacy integration, the event is converted
    with :meth:`LegacyEvent.from_alert`.
    """

    action: EventAction | str
    dedup_key: str | None = None
    summary: str | None = None
    source: str | None = None
    severity: Severity | str | None = None
    timestamp: datetime | str | None = None
    component: str | None = None
    group: str | None = None
    event_class: str | None = None
    custom_details: Mapping[str, Any] | None = None
    links: tuple[Link, ...] = field(default=())
    images: tuple[Image, ...] = field(default=())
    client: str | None = None
    client_url: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "links", coerce_links(self.links))
        object.__setattr__(self, "images", coerce_images(self.images))

    @classmethod
    def trigger(
        cls,
        summary: str,
        *,
        source: str,
        severity: Severity | str,
        dedup_key: str | None = None,
        timestamp: datetime | str | None = None,
        component: str | None = None,
        group: str | None = None,
        event_class: str | None = None,
        custom_details: Mapping[str, Any] | None = None,
        links: Iterable[LinkLike] = (),
        images: Iterable[ImageLike] = (),
        client: str | None = None,
        client_url: str | None = None,
    ) -> AlertEvent:
        """A trigger: opens an alert, or adds to the open one with the same ``dedup_key``.

        Without a ``dedup_key`` the sender makes one before the first attempt and returns it
        in the :class:`~pdconnect.sender.SendResult`, so retries never open a second incident.
        """
        return cls(
            action=EventAction.TRIGGER,
            dedup_key=dedup_key,
            summary=summary,
            source=source,
            severity=severity,
            timestamp=timestamp,
            component=component,
            group=group,
            event_class=event_class,
            custom_details=custom_details,
            links=coerce_links(links),
            images=coerce_images(images),
            client=client,
            client_url=client_url,
        )

    @classmethod
    def acknowledge(cls, dedup_key: str) -> AlertEvent:
        """Acknowledge the open alert with ``dedup_key`` (dropped by PagerDuty if none is open)."""
        return cls(action=EventAction.ACKNOWLEDGE, dedup_key=dedup_key)

    @classmethod
    def resolve(cls, dedup_key: str) -> AlertEvent:
        """Resolve the open alert with ``dedup_key`` (dropped by PagerDuty if none is open)."""
        return cls(action=EventAction.RESOLVE, dedup_key=dedup_key)


@dataclass(frozen=True)
class ChangeEvent:
    """A change event (``/v2/change/enqueue``): a deploy or config change, never a page.

    Ruleset keys do not accept change events.
    """

    summary: str
    source: str | None = None
    timestamp: datetime | str | None = None
    custom_details: Mapping[str, Any] | None = None
    links: tuple[Link, ...] = field(default=())
    images: tuple[Image, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "links", coerce_links(self.links))
        object.__setattr__(self, "images", coerce_images(self.images))


@dataclass(frozen=True)
class LegacyEvent:
    """A legacy Integration API event (Events API v1, ``create_event.json``).

    ``links`` and ``images`` become the ``contexts`` list. The sender adds ``vendor`` (the
    Connect guide requires it) and, on triggers, ``client`` and ``client_url``; values set
    on the event win over the sender's.
    """

    event_type: EventAction | str
    incident_key: str | None = None
    description: str | None = None
    details: Mapping[str, Any] | None = None
    links: tuple[Link, ...] = field(default=())
    images: tuple[Image, ...] = field(default=())
    client: str | None = None
    client_url: str | None = None
    vendor: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "links", coerce_links(self.links))
        object.__setattr__(self, "images", coerce_images(self.images))

    @classmethod
    def trigger(
        cls,
        description: str,
        *,
        incident_key: str | None = None,
        details: Mapping[str, Any] | None = None,
        links: Iterable[LinkLike] = (),
        images: Iterable[ImageLike] = (),
        client: str | None = None,
        client_url: str | None = None,
        vendor: str | None = None,
    ) -> LegacyEvent:
        """A trigger; without ``incident_key`` the sender makes a stable one."""
        return cls(
            event_type=EventAction.TRIGGER,
            incident_key=incident_key,
            description=description,
            details=details,
            links=coerce_links(links),
            images=coerce_images(images),
            client=client,
            client_url=client_url,
            vendor=vendor,
        )

    @classmethod
    def acknowledge(cls, incident_key: str) -> LegacyEvent:
        """Acknowledge the open incident with ``incident_key``."""
        return cls(event_type=EventAction.ACKNOWLEDGE, incident_key=incident_key)

    @classmethod
    def resolve(cls, incident_key: str) -> LegacyEvent:
        """Resolve the open incident with ``incident_key``."""
        return cls(event_type=EventAction.RESOLVE, incident_key=incident_key)

    @classmethod
    def from_alert(cls, event: AlertEvent) -> LegacyEvent:
        """Convert an alert event for a legacy integration.

        ``summary`` becomes ``description`` and ``dedup_key`` the ``incident_key``. v1 has no
        ``source``, ``severity``, ``component``, ``group`` or ``class``: they are added to
        ``details`` under those names unless ``custom_details`` already uses the name; the
        timestamp as the v2 body sends it, in UTC. Raises
        :class:`~pdconnect.errors.EventValidationError` for a timestamp ``alert_body`` refuses.
        """
        details: dict[str, Any] | None = None
        if event.action in (EventAction.TRIGGER, EventAction.TRIGGER.value):
            details = dict(event.custom_details or {})
            severity = event.severity.value if isinstance(event.severity, Severity) else event.severity
            timestamp = _checked_timestamp(event.timestamp)
            extra = {
                "source": event.source,
                "severity": severity,
                "timestamp": timestamp,
                "component": event.component,
                "group": event.group,
                "class": event.event_class,
            }
            for name, value in extra.items():
                if value is not None:
                    details.setdefault(name, value)
        return cls(
            event_type=event.action,
            incident_key=event.dedup_key,
            description=event.summary,
            details=details,
            links=event.links,
            images=event.images,
            client=event.client,
            client_url=event.client_url,
        )


Event = AlertEvent | ChangeEvent | LegacyEvent


def _checked_timestamp(value: object) -> str | None:
    """``value`` as the v2 payload sends it (ISO 8601 in UTC), or :class:`EventValidationError`.

    The legacy route must refuse what ``alert_body`` refuses (a naive or unparseable time, one
    that does not exist in UTC), so one event is never accepted on one route and refused on
    the other.
    """
    from pdconnect.payloads import _Checker  # imported here: payloads imports this module

    check = _Checker()
    text = check.timestamp(value)
    check.raise_if_any()
    return text
