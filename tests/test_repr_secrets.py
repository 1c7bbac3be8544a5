"""Every public type's ``repr()`` hides the secrets it carries (issue 9).

Walks every name exported by :mod:`pdconnect`, :mod:`pdconnect.flask`, :mod:`pdconnect.webhooks`
and :mod:`pdconnect.sandbox`, plus the outbox's and worker's public types, and builds each one
carrying secrets (integration keys, webhook secrets, REST and OAuth tokens, signing keys,
database passwords, lease tokens). ``repr()`` may show a secret's last four characters, as
python-pagerduty does, and nothing more of it. A public type without a builder here fails
the walk, so a new one cannot slip by.
"""

from __future__ import annotations

import importlib
import inspect
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

KEY = "e93facc04764012d7bfb002500d5d1a6"
WEBHOOK_SECRET = "QvT9mZrK2pLxN8bJ4dHfY7cW3gAq"
REST_TOKEN = "u+Zq8Wm3Kp9LxTy4Rs"
OAUTH_TOKEN = "pdus+Vb7Nc2Xs5QjHw3Ez"
SIGNING_KEY = "Hx4Jk8Lm2Pq6Ws1Ed5Rf"
FLASK_SECRET = "Rt5Yu9Io3Pw7Zs2Xd"
PASSWORD = "Mn6Bv2Cx8Lk4Jh"
LEASE_TOKEN = "Zx9Cv4Bn8Mq2Wq7Et"
BEARER = "Gh5Jk1Lz7Qa3Sw9De"
VENDOR_KEY = "2fc7c9f3c8030e74aae6"
URL = f"postgresql+psycopg://pdc:{PASSWORD}@127.0.0.1:1/db"  # never connected to
SECRETS = [KEY, WEBHOOK_SECRET, REST_TOKEN, OAUTH_TOKEN, SIGNING_KEY, FLASK_SECRET, PASSWORD, LEASE_TOKEN, BEARER]

MODULES = [
    "pdconnect",
    "pdconnect.flask",
    "pdconnect.webhooks",
    "pdconnect.sandbox",
    "pdconnect.outbox",
    "pdconnect.worker",
    "pdconnect.alertmanager_bridge",
]


def _public_types() -> Iterator[tuple[str, type]]:
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
        for name in names:
            value = getattr(module, name)
            defined_here = module_name in MODULES[:4] or getattr(value, "__module__", None) == module_name
            if inspect.isclass(value) and defined_here and not issubclass(value, BaseException):
                yield f"{module_name}.{name}", value


def leaked(secret: str, text: str) -> str | None:
    """A part of ``secret`` in ``text`` beyond its last four characters, if any."""
    for start in range(len(secret) - 5):
        window = secret[start : start + 6]  # six characters: at least two before the last four
        if window in text:
            return window
    return None


# -- builders: one instance per public type, carrying every secret it can hold --------------


def _integration() -> Any:
    from pdconnect import integration_from_key

    return integration_from_key(KEY, owner_id="org-1", service_name="Billing")


def _stored() -> Any:
    from pdconnect import MemoryIntegrationStore

    return MemoryIntegrationStore().save(_integration())


def _event() -> Any:
    from pdconnect import AlertEvent

    return AlertEvent(action="trigger", summary="disk full", source="db-1", severity="error")


def _prepared() -> Any:
    from pdconnect import Sender

    return Sender(vendor_key=VENDOR_KEY).prepare(_integration(), _event())


def _outbox_event() -> Any:
    from pdconnect.outbox import OutboxEvent

    return OutboxEvent(
        id=1,
        prepared=_prepared(),
        lease_token=LEASE_TOKEN,
        lease_until=9e9,
        attempts=0,
        created_at=0.0,
        owner_id="org-1",
        integration_id="i1",
    )


def _flask_state(tmp: Path) -> Any:
    from itsdangerous import URLSafeTimedSerializer

    from pdconnect import Handshake, MemoryIntegrationStore, MemoryNonceStore, Region, Sender
    from pdconnect.flask import PagerDutyConnect, PagerDutyState
    from pdconnect.webhooks import WebhookReceiver

    app = Flask("repr_test", instance_path=str(tmp))
    app.config.update(
        SECRET_KEY=FLASK_SECRET,
        PDCONNECT_SECRET=SIGNING_KEY,
        PDCONNECT_VENDOR_KEY=VENDOR_KEY,
        PDCONNECT_APP_ID="PREPR01",
        PDCONNECT_WEBHOOK_SECRETS=[WEBHOOK_SECRET],
        PDCONNECT_WEBHOOK_LEGACY_TOKEN=BEARER,
        PDCONNECT_REST_API_TOKEN=REST_TOKEN,
    )
    extension = PagerDutyConnect(app, store=MemoryIntegrationStore(), nonce_store=MemoryNonceStore())
    # The state as the extension makes it for a PostgreSQL storage URL (without connecting).
    state = PagerDutyState(
        app=app,
        handshake=Handshake(secret=SIGNING_KEY, vendor_key=VENDOR_KEY, app_id="PREPR01"),
        store=MemoryIntegrationStore(),
        sender=Sender(vendor_key=VENDOR_KEY),
        owner_loader=None,
        region=Region.US,
        csrf=URLSafeTimedSerializer(FLASK_SECRET),
        storage_url=URL,
        webhooks=WebhookReceiver(secrets=[WEBHOOK_SECRET], legacy_token=BEARER),
    )
    return [extension, app.extensions["pdconnect"], state]


def _outbox() -> Any:
    from pdconnect.outbox import Outbox

    return Outbox(URL, create_tables=False)


def _no_secret(cls: type) -> Callable[[], Any]:
    """A type that holds no secret: its repr must still work."""
    return lambda: cls


BUILDERS: dict[str, Callable[[], Any]] = {}


def builder(*names: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    def register(function: Callable[[], Any]) -> Callable[[], Any]:
        for name in names:
            BUILDERS[name] = function
        return function

    return register


@builder("pdconnect.Integration")
def _b_integration() -> Any:
    return _integration()


@builder("pdconnect.StoredIntegration")
def _b_stored() -> Any:
    return _stored()


@builder("pdconnect.Connected")
def _b_connected() -> Any:
    from pdconnect import Connected, Origin

    return Connected(owner_id="org-1", flow=Origin.PASTED, integrations=(_integration(),))


@builder("pdconnect.Cancelled")
def _b_cancelled() -> Any:
    from pdconnect import Cancelled, Origin

    return Cancelled(owner_id="org-1", flow=Origin.CONNECT)


@builder("pdconnect.Handshake")
def _b_handshake() -> Any:
    from pdconnect import Handshake

    return [
        Handshake(secret=SIGNING_KEY, vendor_key=VENDOR_KEY, app_id="P1"),
        Handshake(secret=[SIGNING_KEY, SIGNING_KEY[::-1]], app_id="P1"),
    ]


@builder("pdconnect.Sender")
def _b_sender() -> Any:
    from pdconnect import Sender

    return Sender(vendor_key=VENDOR_KEY, client="Acme")


@builder("pdconnect.PreparedEvent")
def _b_prepared() -> Any:
    return _prepared()


@builder("pdconnect.SendResult")
def _b_send_result() -> Any:
    from pdconnect import SendResult

    return SendResult(status=202, message="Event processed", dedup_key="d1", attempts=1)


@builder("pdconnect.MemoryIntegrationStore")
def _b_memory_store() -> Any:
    from pdconnect import MemoryIntegrationStore

    store = MemoryIntegrationStore()
    store.save(_integration())
    return store


@builder("pdconnect.SqlIntegrationStore")
def _b_sql_store() -> Any:
    from pdconnect import SqlIntegrationStore

    return SqlIntegrationStore(URL, create_tables=False)


@builder("pdconnect.SqlNonceStore")
def _b_nonce_store() -> Any:
    from pdconnect import SqlNonceStore

    return SqlNonceStore(URL, create_table=False)


@builder("pdconnect.flask.PagerDutyConnect", "pdconnect.flask.PagerDutyState")
def _b_flask() -> Any:
    return _flask_state(Path(tempfile.mkdtemp(prefix="pdconnect-repr-")))


@builder("pdconnect.webhooks.RegisteredSecret")
def _b_registered() -> Any:
    from pdconnect.webhooks import RegisteredSecret

    return RegisteredSecret(id="s1", subscription_id="PSUB1", secret=WEBHOOK_SECRET)


@builder("pdconnect.webhooks.CreatedSubscription")
def _b_created() -> Any:
    from pdconnect.webhooks import CreatedSubscription

    return CreatedSubscription(id="PSUB1", url="https://vendor.example/hook", secret=WEBHOOK_SECRET)


@builder("pdconnect.webhooks.SubscriptionClient")
def _b_subscriptions() -> Any:
    from pdconnect.webhooks import SubscriptionClient

    return [SubscriptionClient(REST_TOKEN), SubscriptionClient(OAUTH_TOKEN, oauth=True)]


@builder("pdconnect.webhooks.WebhookReceiver")
def _b_receiver() -> Any:
    from pdconnect.webhooks import MemoryWebhookSecretStore, WebhookReceiver

    store = MemoryWebhookSecretStore()
    store.register("PSUB1", WEBHOOK_SECRET[::-1])
    return WebhookReceiver(secrets=[WEBHOOK_SECRET], secret_store=store, legacy_token=BEARER)


@builder("pdconnect.webhooks.MemoryWebhookSecretStore")
def _b_memory_secrets() -> Any:
    from pdconnect.webhooks import MemoryWebhookSecretStore

    store = MemoryWebhookSecretStore()
    store.register("PSUB1", WEBHOOK_SECRET)
    return store


@builder("pdconnect.webhooks.SqlWebhookSecretStore")
def _b_sql_secrets() -> Any:
    from pdconnect.webhooks import SqlWebhookSecretStore

    return SqlWebhookSecretStore(URL, create_tables=False)


@builder("pdconnect.webhooks.SqlDeliveryLog")
def _b_deliveries() -> Any:
    from pdconnect.webhooks import SqlDeliveryLog

    return SqlDeliveryLog(URL, create_tables=False)


@builder("pdconnect.webhooks.IncidentStateStore")
def _b_incidents() -> Any:
    from pdconnect.webhooks import IncidentStateStore

    return IncidentStateStore(URL, create_tables=False)


@builder("pdconnect.outbox.Outbox")
def _b_outbox() -> Any:
    return _outbox()


@builder("pdconnect.outbox.OutboxEvent")
def _b_outbox_event() -> Any:
    return _outbox_event()


@builder("pdconnect.outbox.Outcome")
def _b_outcome() -> Any:
    from pdconnect.outbox import outcome_for

    return [
        outcome_for(_outbox_event(), "pending", status=429, error="throttled", pause_key_until=9e9),
        outcome_for(_outbox_event(), "dead", status=400, error="invalid"),
    ]


@builder("pdconnect.outbox.DeadEvent")
def _b_dead() -> Any:
    from pdconnect.outbox import DeadEvent

    fields = inspect.signature(DeadEvent).parameters
    values: dict[str, Any] = {"id": 1, "routing_key_hint": KEY[-4:]}
    for name in fields:
        values.setdefault(name, None)
    return DeadEvent(**values)


@builder("pdconnect.worker.Worker")
def _b_worker() -> Any:
    from pdconnect.outbox import Outbox
    from pdconnect.worker import Worker

    return Worker(Outbox(URL, create_tables=False), name="w1")


@builder("pdconnect.alertmanager_bridge.AlertmanagerBridge")
def _b_bridge() -> Any:
    from pdconnect.alertmanager_bridge import AlertmanagerBridge

    return AlertmanagerBridge(_outbox(), [KEY], token=BEARER)


@builder("pdconnect.alertmanager_bridge.BridgeReceipt")
def _b_receipt() -> Any:
    from pdconnect.alertmanager_bridge import BridgeReceipt

    return BridgeReceipt(action="trigger", dedup_key="g1", enqueued=(1,), firing=1)


@builder("pdconnect.sandbox.SandboxClient")
def _b_sandbox_client() -> Any:
    from pdconnect.sandbox import SandboxClient

    return SandboxClient("http://127.0.0.1:1")


# Types with nothing secret in them (values, enums, protocols, settings): their repr must work.
NO_SECRETS: dict[str, Callable[[], Any] | None] = {
    "pdconnect.AlertEvent": lambda: _event(),
    "pdconnect.ChangeEvent": lambda: __import__("pdconnect").ChangeEvent(summary="deployed"),
    "pdconnect.LegacyEvent": lambda: __import__("pdconnect").LegacyEvent(event_type="trigger", description="x"),
    "pdconnect.Image": lambda: __import__("pdconnect").Image(src="https://vendor.example/i.png"),
    "pdconnect.Link": lambda: __import__("pdconnect").Link(href="https://vendor.example/"),
    "pdconnect.RetryPolicy": lambda: __import__("pdconnect").RetryPolicy(),
    "pdconnect.MemoryNonceStore": lambda: __import__("pdconnect").MemoryNonceStore(),
    "pdconnect.webhooks.MemoryDeliveryLog": lambda: __import__("pdconnect.webhooks").webhooks.MemoryDeliveryLog(),
    "pdconnect.outbox.Enqueued": lambda: __import__("pdconnect.outbox").outbox.Enqueued(id=1, dedup_key="d1"),
    "pdconnect.worker.WorkerCounters": lambda: __import__("pdconnect.worker").worker.WorkerCounters(),
    "pdconnect.worker.KeyRateLimiter": lambda: __import__("pdconnect.worker").worker.KeyRateLimiter(60),
    "pdconnect.sandbox.Sandbox": lambda: __import__("pdconnect.sandbox").sandbox.Sandbox(),
    # Reviewed, nothing secret: counts, file paths, and what PagerDuty's webhooks tell.
    "pdconnect.outbox.OutboxStats": None,
    "pdconnect.sandbox.TlsFiles": None,
    "pdconnect.webhooks.IncidentInfo": None,
    "pdconnect.webhooks.IncidentState": None,
    "pdconnect.webhooks.Reference": None,
}


def _instances(name: str, cls: type) -> list[Any]:
    build = BUILDERS.get(name) or NO_SECRETS.get(name)
    if build is None:
        # Enums, protocols, other value types: the class itself stands in (its repr is fixed).
        return [cls]
    made = build()
    return made if isinstance(made, list) else [made]


PUBLIC = sorted(_public_types())


@pytest.mark.parametrize(("name", "cls"), PUBLIC, ids=[name for name, _ in PUBLIC])
def test_repr_hides_every_secret(name: str, cls: type) -> None:
    for instance in _instances(name, cls):
        text = repr(instance)
        for secret in SECRETS:
            assert leaked(secret, text) is None, f"{name}: {text}"


def test_types_that_carry_secrets_are_all_built() -> None:
    """A public type whose constructor takes a secret-looking argument needs a builder above."""
    secretish = ("key", "secret", "token", "url", "engine", "password")
    missing = []
    for name, cls in PUBLIC:
        if name in BUILDERS or name in NO_SECRETS:
            continue
        try:
            parameters = inspect.signature(cls).parameters
        except (TypeError, ValueError):
            continue
        if any(any(word in p for word in secretish) for p in parameters):
            missing.append(name)
    assert not missing, f"build these with their secrets in test_repr_secrets.py: {missing}"


def test_the_outbox_outcome_keeps_its_routing_key_for_the_code() -> None:
    (outcome, _) = _b_outcome()
    assert outcome.routing_key == KEY and outcome.lease_token == LEASE_TOKEN
    assert "routing_key" not in repr(outcome)


# A secret that starts with a marker no repr contains on its own (an unusual sign and a few
# letters), so that any length, even two characters, can be checked without mistaking a field
# name or a word of the repr for a leak.
_MARKER = st.builds(lambda sign, tag: sign + tag, st.sampled_from("§¤¶ǂ"), st.text("ǅǈǋǲ", max_size=3))
_ANY_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=64)
DISTINCTIVE_SECRETS = st.builds(lambda marker, rest: marker + rest, _MARKER, _ANY_TEXT).filter(lambda s: s.strip())


@given(secret=DISTINCTIVE_SECRETS)
def test_a_webhook_secret_of_any_text_stays_out_of_reprs(secret: str) -> None:
    from pdconnect.webhooks import CreatedSubscription, RegisteredSecret, WebhookReceiver

    shown = [
        repr(RegisteredSecret(id="s1", subscription_id="P1", secret=secret)),
        repr(CreatedSubscription(id="P1", url="https://vendor.example/h", secret=secret)),
        repr(WebhookReceiver(secrets=[secret], legacy_token=secret)),
    ]
    escaped = repr(secret)[1:-1]  # as a repr would quote it, control characters escaped
    for text in shown:
        assert secret not in text and escaped not in text, text
