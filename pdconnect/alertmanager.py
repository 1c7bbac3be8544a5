"""Prometheus Alertmanager's webhook payload (version 4) as Events API v2 events.

The CubeAPM pattern (seed ``003``): Alertmanager groups alerts and posts each group to a
webhook; every group becomes **one** PagerDuty alert:

- **trigger** while any alert of the group fires, **resolve** when all are resolved;
- **dedup key**: the SHA-256 of the group key, as Alertmanager's own PagerDuty notifier
  computes it, so moving a receiver from Alertmanager's notifier to pdconnect keeps its
  incidents;
- **severity** from the common ``severity`` label, mapped onto PagerDuty's four values
  (:data:`SEVERITY_ALIASES`, with a default for anything else);
- **summary** like ``[CRITICAL] [FIRING:3] prod HighLatency``;
- **details**: labels, annotations, start and end times, generator URLs and fingerprints of
  every alert, plus the group's and common labels. A group too large for PagerDuty's 512 KB
  keeps as many alerts as fit and says how many it left out;
- ``client`` and ``client_url`` name the Alertmanager (its ``externalURL``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pdconnect.errors import PayloadInvalid
from pdconnect.events import AlertEvent, Link, Severity
from pdconnect.timestamps import parse_timestamp
from pdconnect.webhooks.parsing import load_json

#: Common ``severity`` label values and the PagerDuty severity each becomes (lowercased first).
SEVERITY_ALIASES: Mapping[str, Severity] = {
    "critical": Severity.CRITICAL,
    "crit": Severity.CRITICAL,
    "fatal": Severity.CRITICAL,
    "page": Severity.CRITICAL,
    "p1": Severity.CRITICAL,
    "error": Severity.ERROR,
    "err": Severity.ERROR,
    "high": Severity.ERROR,
    "major": Severity.ERROR,
    "p2": Severity.ERROR,
    "warning": Severity.WARNING,
    "warn": Severity.WARNING,
    "medium": Severity.WARNING,
    "minor": Severity.WARNING,
    "p3": Severity.WARNING,
    "info": Severity.INFO,
    "informational": Severity.INFO,
    "low": Severity.INFO,
    "none": Severity.INFO,
    "p4": Severity.INFO,
    "p5": Severity.INFO,
}
#: Room for the custom details: PagerDuty's limit is 512 KB for the whole event.
DETAILS_BUDGET = 400 * 1024
MAX_LINKS = 10
#: Alertmanager counts dropped alerts in a uint64.
MAX_TRUNCATED = 2**64 - 1


@dataclass(frozen=True)
class PromAlert:
    """One alert of a group."""

    status: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: datetime | None
    ends_at: datetime | None
    generator_url: str | None
    fingerprint: str | None

    @property
    def firing(self) -> bool:
        return self.status == "firing"

    def to_details(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "labels": dict(self.labels),
            "annotations": dict(self.annotations),
            "startsAt": self.starts_at.isoformat() if self.starts_at else None,
            "endsAt": self.ends_at.isoformat() if self.ends_at else None,
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint,
        }


@dataclass(frozen=True)
class AlertGroup:
    """An Alertmanager notification: one group of alerts."""

    group_key: str
    status: str
    receiver: str
    alerts: tuple[PromAlert, ...]
    group_labels: Mapping[str, str] = field(default_factory=dict)
    common_labels: Mapping[str, str] = field(default_factory=dict)
    common_annotations: Mapping[str, str] = field(default_factory=dict)
    external_url: str | None = None
    truncated_alerts: int = 0

    @property
    def firing(self) -> tuple[PromAlert, ...]:
        return tuple(a for a in self.alerts if a.firing)

    @property
    def resolved(self) -> bool:
        """Every alert of the group is resolved (then the incident is resolved)."""
        return not self.firing

    @property
    def dedup_key(self) -> str:
        return hashlib.sha256(self.group_key.encode("utf-8")).hexdigest()


# -- parsing -------------------------------------------------------------------------------------


def parse_alertmanager(body: bytes | Mapping[str, Any]) -> AlertGroup:
    """Read Alertmanager's webhook payload; raises :class:`~pdconnect.errors.PayloadInvalid` naming the field."""
    data = load_json(body) if isinstance(body, bytes | bytearray) else body
    if not isinstance(data, Mapping):
        raise PayloadInvalid("the payload must be a JSON object")
    version = data.get("version")
    if version != "4":
        shown = repr(version) if isinstance(version, str | int | float | None) else type(version).__name__
        raise PayloadInvalid(f"only version 4 of the webhook payload is understood, not {shown[:40]}", field="version")
    group_key = data.get("groupKey")
    if not isinstance(group_key, str) or not group_key:
        raise PayloadInvalid("groupKey must be a non-empty string", field="groupKey")
    status = _status(data.get("status"), "status")
    alerts = data.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        raise PayloadInvalid("alerts must be a non-empty list", field="alerts")
    truncated = data.get("truncatedAlerts", 0)
    if isinstance(truncated, bool) or not isinstance(truncated, int) or not 0 <= truncated <= MAX_TRUNCATED:
        raise PayloadInvalid(
            "truncatedAlerts must be a whole number (Alertmanager's is 64-bit)", field="truncatedAlerts"
        )
    receiver = data.get("receiver", "")
    external = data.get("externalURL")
    return AlertGroup(
        group_key=group_key,
        status=status,
        receiver=receiver if isinstance(receiver, str) else "",
        alerts=tuple(_alert(alert, f"alerts[{index}]") for index, alert in enumerate(alerts)),
        group_labels=_labels(data.get("groupLabels"), "groupLabels"),
        common_labels=_labels(data.get("commonLabels"), "commonLabels"),
        common_annotations=_labels(data.get("commonAnnotations"), "commonAnnotations"),
        external_url=external if isinstance(external, str) and _web_url(external) else None,
        truncated_alerts=truncated,
    )


def _alert(raw: Any, path: str) -> PromAlert:
    if not isinstance(raw, Mapping):
        raise PayloadInvalid("each alert must be an object", field=path)
    generator = raw.get("generatorURL")
    fingerprint = raw.get("fingerprint")
    return PromAlert(
        status=_status(raw.get("status"), f"{path}.status"),
        labels=_labels(raw.get("labels"), f"{path}.labels"),
        annotations=_labels(raw.get("annotations"), f"{path}.annotations"),
        starts_at=_time(raw.get("startsAt"), f"{path}.startsAt"),
        ends_at=_time(raw.get("endsAt"), f"{path}.endsAt"),
        generator_url=generator if isinstance(generator, str) and generator else None,
        fingerprint=fingerprint if isinstance(fingerprint, str) and fingerprint else None,
    )


def _status(value: Any, path: str) -> str:
    if value not in ("firing", "resolved"):
        raise PayloadInvalid("status must be 'firing' or 'resolved'", field=path)
    return str(value)


def _labels(value: Any, path: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise PayloadInvalid("labels and annotations must map names to strings", field=path)
    return dict(value)


def _time(value: Any, path: str) -> datetime | None:
    """RFC 3339; Alertmanager's zero time (``0001-01-01T00:00:00Z``, "no end yet") reads as ``None``."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise PayloadInvalid("times must be RFC 3339 strings", field=path)
    text = value.strip()
    if "." in text:  # Go writes nanoseconds; Python reads at most microseconds
        head, _, tail = text.partition(".")
        digits = "".join(ch for ch in tail if ch.isdigit())
        text = f"{head}.{digits[:6]}{tail[len(digits) :]}"
    moment = parse_timestamp(text)
    if moment is None:
        raise PayloadInvalid("times must be RFC 3339 strings", field=path)
    return None if moment.year <= 1 else moment


def _web_url(url: str) -> bool:
    """An http(s) URL worth linking to: a host, no credentials, no whitespace or control characters."""
    if not url.isprintable() or any(ch.isspace() for ch in url):
        return False
    try:
        parts = urlsplit(url)
        hostname, port = parts.hostname, parts.port  # .port raises for a port out of range
    except ValueError:
        return False
    del port
    # A user:password in Alertmanager's URL must not travel on into PagerDuty incidents.
    no_credentials = parts.username is None and parts.password is None
    return parts.scheme in ("http", "https") and bool(hostname) and no_credentials


# -- the event -----------------------------------------------------------------------------------


def severity_of(group: AlertGroup, default: Severity = Severity.ERROR) -> Severity:
    """The group's PagerDuty severity, from its common ``severity`` label (else ``default``)."""
    label = group.common_labels.get("severity", "").strip().lower()
    return SEVERITY_ALIASES.get(label, default)


def summary_of(group: AlertGroup) -> str:
    """``[CRITICAL] [FIRING:3] prod HighLatency``: severity label, status and count, env, alert name."""
    parts = []
    if group.common_labels.get("severity"):
        parts.append(f"[{group.common_labels['severity'].upper()}]")
    firing = len(group.firing)
    parts.append(f"[FIRING:{firing}]" if firing else "[RESOLVED]")
    env = group.common_labels.get("env", "")
    if env and env != "UNSET":
        parts.append(env)
    name = group.common_annotations.get("alertname") or group.common_labels.get("alertname")
    if not name:
        name = " ".join(f"{k}={v}" for k, v in sorted(group.group_labels.items())) or group.receiver or "alerts"
    parts.append(name)
    return " ".join(parts)[:1024]


def to_event(
    group: AlertGroup,
    *,
    default_severity: Severity = Severity.ERROR,
    client: str = "Alertmanager",
) -> AlertEvent:
    """The trigger (or resolve) for a group, with everything a responder needs in its details."""
    if group.resolved:
        return AlertEvent.resolve(group.dedup_key)
    labels = {name: value.strip() for name, value in group.common_labels.items()}
    receiver = group.receiver.strip()
    source = labels.get("instance") or labels.get("job") or _host(group.external_url) or receiver or "alertmanager"
    started = [a.starts_at for a in group.firing if a.starts_at is not None]
    links = [
        Link(alert.generator_url, f"Source of {alert.labels.get('alertname', 'the alert')}")
        for alert in group.firing
        if alert.generator_url and _web_url(alert.generator_url)
    ][:MAX_LINKS]
    return AlertEvent.trigger(
        summary_of(group),
        source=source[:255],
        severity=severity_of(group, default_severity),
        dedup_key=group.dedup_key,
        timestamp=min(started) if started else None,
        component=(labels.get("service") or labels.get("instance") or "")[:255] or None,
        group=(labels.get("job") or "")[:255] or None,
        event_class=(labels.get("alertname") or "")[:255] or None,
        custom_details=details_of(group),
        links=links,
        client=client,
        client_url=group.external_url,
    )


def details_of(group: AlertGroup, budget: int = DETAILS_BUDGET) -> dict[str, Any]:
    """The custom details; alerts that do not fit in ``budget`` bytes are counted, not sent."""
    details: dict[str, Any] = {
        "receiver": group.receiver,
        "status": group.status,
        "firing": len(group.firing),
        "resolved": len(group.alerts) - len(group.firing),
        "groupLabels": dict(group.group_labels),
        "commonLabels": dict(group.common_labels),
        "commonAnnotations": dict(group.common_annotations),
        "alerts": [],
    }
    if group.truncated_alerts:
        details["truncatedAlerts"] = group.truncated_alerts
    used = _size(details)
    # Firing alerts first: if some must be left out, leave out the resolved ones.
    ordered = sorted(group.alerts, key=lambda a: not a.firing)
    kept = 0
    for alert in ordered:
        entry = alert.to_details()
        size = _size(entry) + 1
        if used + size > budget:
            break
        details["alerts"].append(entry)
        used += size
        kept += 1
    if kept < len(ordered):
        details["omitted_alerts"] = len(ordered) - kept
    return details


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _host(url: str | None) -> str | None:
    return urlsplit(url).hostname if url else None
