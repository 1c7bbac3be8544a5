"""Receiving PagerDuty's webhooks, so a vendor's UI shows what responders did.

- :mod:`~pdconnect.webhooks.signatures`: V3 signature verification (constant time, several secrets);
- :mod:`~pdconnect.webhooks.parsing` and :mod:`~pdconnect.webhooks.model`: V3, V2 and V1
  bodies as typed :class:`WebhookEvent` values;
- :mod:`~pdconnect.webhooks.deliveries`: de-duplication on the signed event id, per subscription;
- :mod:`~pdconnect.webhooks.secrets`: subscription secrets per integration;
- :mod:`~pdconnect.webhooks.incidents`: the latest state of each incident, by dedup key;
- :mod:`~pdconnect.webhooks.subscriptions`: creating subscriptions through the REST API;
- :mod:`~pdconnect.webhooks.receiver`: all of it behind one call.
"""

from pdconnect.webhooks.deliveries import Claim, DeliveryLog, MemoryDeliveryLog, SqlDeliveryLog
from pdconnect.webhooks.incidents import IncidentState, IncidentStateStore
from pdconnect.webhooks.model import (
    INCIDENT_EVENT_TYPES,
    LEGACY_EVENT_TYPES,
    IncidentInfo,
    IncidentStatus,
    Reference,
    WebhookEvent,
    WebhookFormat,
)
from pdconnect.webhooks.parsing import parse_legacy, parse_v3, parse_webhook
from pdconnect.webhooks.receiver import MAX_BODY_BYTES, Receipt, WebhookReceiver
from pdconnect.webhooks.secrets import (
    MemoryWebhookSecretStore,
    RegisteredSecret,
    SqlWebhookSecretStore,
    WebhookSecretStore,
)
from pdconnect.webhooks.signatures import SIGNATURE_HEADER, matching_secret, sign, verify_signature
from pdconnect.webhooks.subscriptions import (
    DEFAULT_EVENTS,
    CreatedSubscription,
    SubscriptionClient,
    SubscriptionError,
    subscribe_integration,
    unsubscribe_integration,
)

__all__ = [
    "DEFAULT_EVENTS",
    "INCIDENT_EVENT_TYPES",
    "LEGACY_EVENT_TYPES",
    "MAX_BODY_BYTES",
    "SIGNATURE_HEADER",
    "Claim",
    "CreatedSubscription",
    "DeliveryLog",
    "IncidentInfo",
    "IncidentState",
    "IncidentStateStore",
    "IncidentStatus",
    "MemoryDeliveryLog",
    "MemoryWebhookSecretStore",
    "Receipt",
    "Reference",
    "RegisteredSecret",
    "SqlDeliveryLog",
    "SqlWebhookSecretStore",
    "SubscriptionClient",
    "SubscriptionError",
    "WebhookEvent",
    "WebhookFormat",
    "WebhookReceiver",
    "WebhookSecretStore",
    "matching_secret",
    "parse_legacy",
    "parse_v3",
    "parse_webhook",
    "sign",
    "subscribe_integration",
    "unsubscribe_integration",
    "verify_signature",
]
