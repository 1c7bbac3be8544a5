"""Webhook subscriptions as the REST client reads and writes them.

The request shapes are PagerDuty's (REST API reference, "Webhook Subscriptions"): a
``webhook_subscription`` with an ``http_delivery_method``, ``events`` and a ``filter``. What a
caller passes is checked before any request; what PagerDuty answers is read leniently, each
field typed or ``None``, except the id (and on create the secret), without which the answer is
useless.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pdconnect.errors import InvalidData
from pdconnect.rest.errors import RestError
from pdconnect.rest.paths import check_text


@dataclass(frozen=True)
class WebhookSubscription:
    """A V3 webhook subscription as PagerDuty describes it (never with its secret)."""

    id: str
    url: str | None
    events: tuple[str, ...] = ()
    filter_type: str | None = None
    filter_id: str | None = None
    active: bool | None = None
    description: str | None = None


@dataclass(frozen=True)
class NewSubscription:
    """A subscription just created and its secret, which PagerDuty shows this once.

    Unpacks as ``subscription, secret = ...``; ``repr`` hides the secret.
    """

    subscription: WebhookSubscription
    secret: str = field(repr=False)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.subscription, self.secret))


def check_events(events: object) -> list[str]:
    """Event names to subscribe to: a non-empty list of strings, never one string read letter by letter."""
    if isinstance(events, str | bytes) or not isinstance(events, Sequence) or not events:
        raise InvalidData("events must be a non-empty list of event names", field="events")
    return [check_text(event, "events") for event in events]


def check_description(description: object) -> str:
    if not isinstance(description, str):
        raise InvalidData("description must be a string", field="description")
    return description[:1024]


def check_custom_headers(headers: object) -> list[dict[str, str]]:
    """``{name: value}`` as PagerDuty's list of ``{"name", "value"}``; one line each, no control characters."""
    if not isinstance(headers, Mapping):
        raise InvalidData("custom_headers must map header names to values", field="custom_headers")
    checked = []
    for name, value in headers.items():
        if not isinstance(name, str) or not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}", name, re.ASCII):
            raise InvalidData("custom_headers names must be HTTP header names", field="custom_headers")
        checked.append({"name": name, "value": check_text(value, "custom_headers")})
    return checked


def read_subscription(raw: dict[str, Any], method: str, path: str) -> WebhookSubscription:
    subscription_id = raw.get("id")
    if not isinstance(subscription_id, str) or not subscription_id:
        raise RestError("PagerDuty's answer holds a subscription without an id", status=200, method=method, path=path)
    delivery = raw.get("delivery_method")
    url = delivery.get("url") if isinstance(delivery, dict) else None
    raw_filter, raw_events = raw.get("filter"), raw.get("events")
    filter_: dict[str, Any] = raw_filter if isinstance(raw_filter, dict) else {}
    events: list[Any] = raw_events if isinstance(raw_events, list) else []
    description = raw.get("description")
    active = raw.get("active")
    return WebhookSubscription(
        id=subscription_id,
        url=url if isinstance(url, str) else None,
        events=tuple(e for e in events if isinstance(e, str)),
        filter_type=filter_.get("type") if isinstance(filter_.get("type"), str) else None,
        filter_id=filter_.get("id") if isinstance(filter_.get("id"), str) else None,
        active=active if isinstance(active, bool) else None,
        description=description if isinstance(description, str) else None,
    )
