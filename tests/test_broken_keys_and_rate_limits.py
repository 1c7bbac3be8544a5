"""Issue 9, sending: rate limits and keys PagerDuty no longer knows, against the real sandbox."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from pdconnect import AlertEvent, EventsApi, RetryPolicy, Sender, integration_from_key
from pdconnect.errors import EventRejected, InvalidRoutingKey, RateLimited
from pdconnect.flask.signals import broken_announcer, integration_broken
from pdconnect.outbox import Outbox
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.storage import IntegrationStore, MemoryIntegrationStore, SqlIntegrationStore, StoredIntegration
from pdconnect.worker import Worker
from tests.conftest import unique_table

#: The Flask extension's inline policy: a web request cannot wait a minute.
INLINE = RetryPolicy(max_attempts=3, deadline=20.0)


class Waits:
    """Records the waits a sender asks for instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def waits() -> Waits:
    return Waits()


def _trigger(dedup_key: str = "web-1/cpu") -> AlertEvent:
    return AlertEvent.trigger("CPU high on web-1", source="web-1", severity="critical", dedup_key=dedup_key)


# -- rate limits, inline ---------------------------------------------------------------------


def test_a_real_429_without_retry_after_fails_fast_with_retry_at(
    pagerduty_sandbox: PagerDutySandbox, waits: Waits
) -> None:
    pagerduty_sandbox.set_settings(rate_limit=1)
    key = pagerduty_sandbox.service_key()
    sender = Sender(events_base_url=pagerduty_sandbox.url, retry=INLINE, sleep=waits)
    sender.send(key, _trigger("first"))
    before = datetime.now(UTC)
    with pytest.raises(RateLimited) as info:
        sender.send(key, _trigger("second"))
    assert info.value.status == 429
    assert info.value.attempts == 1, "no retry a second later: PagerDuty asks for tens of seconds"
    assert waits.waits == []
    assert 30.0 <= info.value.retry_after <= 36.0
    assert info.value.retry_at >= before + timedelta(seconds=30)
    assert key not in str(info.value)
    assert [r["status"] for r in pagerduty_sandbox.received(routing_key=key)] == [202, 429]


def test_the_legacy_apis_rate_limit_is_a_rate_limit_too(pagerduty_sandbox: PagerDutySandbox, waits: Waits) -> None:
    pagerduty_sandbox.set_settings(rate_limit=1)
    legacy = integration_from_key(pagerduty_sandbox.service_key(), owner_id="o", events_api=EventsApi.V1)
    sender = Sender(events_base_url=pagerduty_sandbox.url, retry=INLINE, sleep=waits)
    sender.send(legacy, _trigger("first"))
    with pytest.raises(RateLimited) as info:
        sender.send(legacy, _trigger("second"))
    assert info.value.status == 403


def test_a_long_retry_after_fails_fast_and_a_short_one_is_waited(
    pagerduty_sandbox: PagerDutySandbox, waits: Waits
) -> None:
    key = pagerduty_sandbox.service_key()
    sender = Sender(events_base_url=pagerduty_sandbox.url, retry=INLINE, sleep=waits)
    pagerduty_sandbox.set_faults(rate_429_retry_after=1.0, retry_after=45)
    with pytest.raises(RateLimited) as info:
        sender.send(key, _trigger())
    assert (info.value.retry_after, info.value.attempts) == (45.0, 1)
    pagerduty_sandbox.set_faults(rate_429_retry_after=1.0, retry_after=0.25)
    with pytest.raises(RateLimited, match="deadline") as info:
        sender.send(key, _trigger())
    assert info.value.attempts == 1, "a Retry-After shorter than the 30 s floor never hurries a retry"
    assert info.value.retry_after >= 30.0
    quick = Sender(events_base_url=pagerduty_sandbox.url, retry=replace(INLINE, rate_limit_delay=0.1), sleep=waits)
    with pytest.raises(RateLimited, match="3 attempts"):
        quick.send(key, _trigger())
    assert waits.waits == [0.25, 0.25], "Retry-After above the floor honoured as the sandbox sent it"
    pagerduty_sandbox.set_faults()
    assert sender.send(key, _trigger()).status == 202


# -- unknown keys, inline ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["disable", "delete"])
@pytest.mark.parametrize("api", [EventsApi.V2, EventsApi.V1])
def test_a_disabled_or_deleted_key_is_an_invalid_routing_key(
    pagerduty_sandbox: PagerDutySandbox, how: str, api: EventsApi
) -> None:
    key = pagerduty_sandbox.service_key()
    integration = integration_from_key(key, owner_id="o", events_api=api)
    sender = Sender(events_base_url=pagerduty_sandbox.url, retry=INLINE)
    sender.send(integration, _trigger())
    getattr(pagerduty_sandbox, f"{how}_key")(key)
    with pytest.raises(InvalidRoutingKey) as info:
        sender.send(integration, _trigger())
    assert info.value.status == 400
    assert info.value.attempts == 1
    assert key not in info.value.reason
    assert "reconnect" in info.value.reason


def test_a_change_event_to_a_disabled_key(pagerduty_sandbox: PagerDutySandbox) -> None:
    key = pagerduty_sandbox.service_key()
    pagerduty_sandbox.disable_key(key)
    with pytest.raises(InvalidRoutingKey):
        Sender(events_base_url=pagerduty_sandbox.url).change(key, "Deployed v2")


def test_an_invalid_event_is_not_an_invalid_key(pagerduty_sandbox: PagerDutySandbox) -> None:
    # A real 400 for a good key: a body the sandbox cannot read as an event.
    key = pagerduty_sandbox.service_key()
    sender = Sender(events_base_url=pagerduty_sandbox.url)
    prepared = sender.prepare(key, _trigger())
    with pytest.raises(EventRejected) as info:
        sender.deliver(replace(prepared, body=b"[1]"))
    assert info.value.status == 400
    assert not isinstance(info.value, InvalidRoutingKey)


# -- unknown keys, through the outbox and workers ----------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path, pagerduty_sandbox: PagerDutySandbox
) -> Iterator[tuple[Outbox, SqlIntegrationStore]]:
    sender = Sender(client="Acme", events_base_url=pagerduty_sandbox.url)
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'app.db'}"
        yield Outbox(url, sender=sender), SqlIntegrationStore(url)
    else:
        engine = request.getfixturevalue("postgres_engine")
        outbox = Outbox(engine, sender=sender, table_prefix=unique_table("pdc_outbox"))
        store = SqlIntegrationStore(engine, table_name=unique_table("pdc_integrations"))
        yield outbox, store
        outbox.drop_tables()
        store.table.drop(engine)


def _worker(outbox: Outbox, store: IntegrationStore, **kwargs: Any) -> Worker:
    return Worker(outbox, sender=Sender(retry=RetryPolicy.no_retries()), integrations=store,
                  rate_limit_per_key=None, poll_interval=0.05, **kwargs)  # fmt: skip


def test_a_disabled_key_marks_the_integration_broken_and_fires_the_signal(
    pagerduty_sandbox: PagerDutySandbox,
    backend: tuple[Outbox, SqlIntegrationStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    outbox, store = backend
    key = pagerduty_sandbox.service_key()
    integration = store.save(integration_from_key(key, owner_id="org-1", service_name="Checkout"))
    healthy = store.save(integration_from_key(pagerduty_sandbox.service_key("Database"), owner_id="org-1"))
    app = Flask(__name__)
    heard: list[dict[str, Any]] = []

    def receiver(sender: Flask, **extra: Any) -> None:
        heard.append({"sender": sender, **extra})

    pagerduty_sandbox.disable_key(key)
    outbox.enqueue(integration, _trigger("a"))
    outbox.enqueue(integration, _trigger("b"))
    outbox.enqueue(healthy, _trigger("c"))
    with integration_broken.connected_to(receiver, app), caplog.at_level(logging.DEBUG, "pdconnect"):
        _worker(outbox, store, on_integration_broken=broken_announcer(app)).run(until_empty=True)

    broken = store.get("org-1", integration.id)
    assert broken is not None and broken.broken
    assert broken.broken_reason is not None and "Invalid routing key" in broken.broken_reason
    assert "reconnect" in broken.broken_reason
    assert [r.id for r in store.broken("org-1")] == [integration.id]
    assert len(heard) == 1, "told once, though two events were refused"
    assert heard[0]["sender"] is app
    assert heard[0]["owner_id"] == "org-1"
    assert heard[0]["integration"].id == integration.id
    dead = outbox.dead()
    assert len(dead) == 2, "never silently lost: each refused event is a dead letter with the reason"
    assert all("reconnect the integration" in (d.reason or "") for d in dead)
    assert outbox.stats().delivered == 1, "the other integration carried on"
    for text in [broken.broken_reason, *(d.reason or "" for d in dead), caplog.text, repr(broken)]:
        assert key not in text

    # The owner reconnects the same service (here: the key is enabled again, pasted again).
    pagerduty_sandbox.enable_key(key)
    again = store.save(integration_from_key(key, owner_id="org-1", service_name="Checkout"))
    assert again.id == integration.id and not again.broken
    outbox.enqueue(again, _trigger("d"))
    _worker(outbox, store).run(until_empty=True)
    assert outbox.stats().delivered == 2


def test_other_owners_are_untouched(pagerduty_sandbox: PagerDutySandbox) -> None:
    outbox = Outbox("sqlite://", sender=Sender(events_base_url=pagerduty_sandbox.url))
    store = MemoryIntegrationStore()
    key = pagerduty_sandbox.service_key()
    mine = store.save(integration_from_key(key, owner_id="org-1"))
    theirs = store.save(integration_from_key(key, owner_id="org-2"))
    pagerduty_sandbox.delete_key(key)
    outbox.enqueue(mine, _trigger())
    told: list[StoredIntegration] = []
    _worker(outbox, store, on_integration_broken=told.append).run(until_empty=True)
    assert [t.id for t in told] == [mine.id]
    assert store.broken("org-2") == []
    assert not store.get("org-2", theirs.id).broken  # type: ignore[union-attr]


def test_a_failing_hook_does_not_stop_the_worker(
    pagerduty_sandbox: PagerDutySandbox, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = Outbox("sqlite://", sender=Sender(events_base_url=pagerduty_sandbox.url))
    store = MemoryIntegrationStore()
    key = pagerduty_sandbox.service_key()
    broken = store.save(integration_from_key(key, owner_id="org-1"))
    fine = store.save(integration_from_key(pagerduty_sandbox.service_key("Database"), owner_id="org-1"))
    pagerduty_sandbox.disable_key(key)
    outbox.enqueue(broken, _trigger("a"))
    outbox.enqueue(fine, _trigger("b"))

    def hook(integration: StoredIntegration) -> None:
        raise RuntimeError("the vendor's mailer is down")

    with caplog.at_level(logging.ERROR, "pdconnect"):
        _worker(outbox, store, on_integration_broken=hook).run(until_empty=True)
    assert store.get("org-1", broken.id).broken  # type: ignore[union-attr]
    assert outbox.stats().delivered == 1
    assert "on_integration_broken failed" in caplog.text


def test_a_hook_needs_a_store() -> None:
    with pytest.raises(ValueError, match="integrations"):
        Worker(Outbox("sqlite://"), on_integration_broken=lambda integration: None)


def test_a_worker_waits_out_a_bare_429_for_pagerdutys_30_seconds(pagerduty_sandbox: PagerDutySandbox) -> None:
    outbox = Outbox("sqlite://", sender=Sender(events_base_url=pagerduty_sandbox.url))
    store = MemoryIntegrationStore()
    integration = store.save(integration_from_key(pagerduty_sandbox.service_key(), owner_id="org-1"))
    pagerduty_sandbox.set_faults(rate_429=1.0)
    outbox.enqueue(integration, _trigger())
    worker = _worker(outbox, store)
    before = time.time()
    assert worker.run_once() == 1
    after = time.time()
    assert outbox.stats().depth == 1
    # Was ~1 s (the exponential backoff's first step); PagerDuty asks for tens of seconds.
    assert outbox.stats(now=before + 29).due == 0
    assert outbox.stats(now=before + 29).paused_keys == 1, "the key is paused for every worker"
    assert outbox.stats(now=after + 37).due == 1
    assert store.broken("org-1") == []


def test_a_store_without_mark_broken_does_not_stop_the_worker(
    pagerduty_sandbox: PagerDutySandbox, caplog: pytest.LogCaptureFixture
) -> None:
    class OlderStore(MemoryIntegrationStore):
        """A vendor's store written before mark_broken existed."""

        def __getattribute__(self, name: str) -> Any:
            if name == "mark_broken":
                raise AttributeError(name)
            return super().__getattribute__(name)

    outbox = Outbox("sqlite://", sender=Sender(events_base_url=pagerduty_sandbox.url))
    store = OlderStore()
    key = pagerduty_sandbox.service_key()
    gone = store.save(integration_from_key(key, owner_id="org-1"))
    fine = store.save(integration_from_key(pagerduty_sandbox.service_key("Database"), owner_id="org-1"))
    pagerduty_sandbox.delete_key(key)
    outbox.enqueue(gone, _trigger("a"))
    outbox.enqueue(fine, _trigger("b"))
    with caplog.at_level(logging.ERROR, "pdconnect"):
        _worker(outbox, store).run(until_empty=True)
    assert (outbox.stats().delivered, outbox.stats().dead) == (1, 1)
    assert store.get("org-1", gone.id).failing  # type: ignore[union-attr]
    assert "could not mark integration" in caplog.text
