"""Integration keys: validation, classification and redaction.

An integration key (``service_key`` in the legacy Integration API, ``routing_key`` in Events
API v2) is 32 ASCII letters and digits. Service keys are lowercase hex; ruleset and event
orchestration keys start with ``R`` and are uppercase (PagerDuty developer docs, "Events API
v2 overview", and the 400 messages quoted in ``pagerduty-protocols.md`` section 6.1).
"""

from __future__ import annotations

import re
from enum import StrEnum

from pdconnect.errors import InvalidIntegrationKey

#: PagerDuty: "32 character Integration Key" (Events API v2 overview).
KEY_LENGTH = 32

_ANY_KEY = re.compile(r"[A-Za-z0-9]{32}")
_SERVICE_KEY = re.compile(r"[0-9a-f]{32}")
_RULESET_KEY = re.compile(r"R[0-9A-Z]{31}")


class KeyType(StrEnum):
    """What kind of PagerDuty object an integration key sends to."""

    #: A service's integration key: 32 lowercase hex characters.
    SERVICE = "service"
    #: A ruleset or event orchestration key: ``R`` and 31 uppercase letters or digits.
    #: Accepts alert events but not change events.
    RULESET = "ruleset"
    #: Any other 32-character alphanumeric key; PagerDuty may mint new shapes.
    OTHER = "other"


def normalize_key(raw: object, *, name: str = "integration key") -> str:
    """Return ``raw`` with surrounding whitespace removed, or raise if it is not a key.

    Raises :class:`~pdconnect.errors.InvalidIntegrationKey` with a message that says what is
    wrong (length or characters) without repeating the value.
    """
    if not isinstance(raw, str):
        raise InvalidIntegrationKey(f"{name} must be a string")
    key = raw.strip()
    if not key:
        raise InvalidIntegrationKey(f"{name} is empty")
    if len(key) != KEY_LENGTH:
        raise InvalidIntegrationKey(f"{name} must be {KEY_LENGTH} characters long, got {len(key)}")
    if not _ANY_KEY.fullmatch(key):
        raise InvalidIntegrationKey(f"{name} may contain only ASCII letters and digits")
    return key


def classify_key(key: str) -> KeyType:
    """Tell a service key from a ruleset key; ``key`` must already be normalized."""
    if _SERVICE_KEY.fullmatch(key):
        return KeyType.SERVICE
    if _RULESET_KEY.fullmatch(key):
        return KeyType.RULESET
    return KeyType.OTHER


def redact(secret: str) -> str:
    """Show at most the last four characters of a secret, as PagerDuty's own client does."""
    if len(secret) <= 8:
        return "****"
    return "*" * 4 + secret[-4:]
