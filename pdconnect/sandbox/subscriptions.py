"""Webhook subscriptions as PagerDuty's REST API has them: owned by one account, checked strictly.

What is modelled (``pagerduty-oauth.md`` section 6, ``pagerduty-protocols.md`` section 5):
creating answers with the secret once (64 characters of base64, with ``+`` and ``/``);
filters by service, team or account, each of the owner's own account only; at most
:data:`MAX_PER_SERVICE` subscriptions per service; ``custom_headers`` sent on every delivery;
updates, re-enabling, a ping, and the secret rotation during which deliveries carry two
signatures. The functions here take a :class:`~pdconnect.sandbox.store.SandboxStore` and
hold its lock through :meth:`~pdconnect.sandbox.store.SandboxStore.transaction`.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable

from pdconnect.sandbox.model import Account, Service, Subscription, Team
from pdconnect.sandbox.store import SandboxStore

#: PagerDuty: "a maximum of 10 webhook subscriptions per service" (``pagerduty-oauth.md`` section 6).
MAX_PER_SERVICE = 10
#: UNCONFIRMED: PagerDuty documents no bound on custom headers; these are the stricter guess.
MAX_CUSTOM_HEADERS = 10
MAX_HEADER_NAME = 64
MAX_HEADER_VALUE = 1024
MAX_DESCRIPTION = 1024
FILTER_TYPES = ("account_reference", "service_reference", "team_reference")
#: RFC 9110 ``token``: what a header name may be made of.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: Headers the sandbox sets itself on deliveries; a custom header may not replace them.
#: UNCONFIRMED: PagerDuty's list of reserved names is not documented.
RESERVED_HEADERS = frozenset(
    {
        "accept",
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "host",
        "transfer-encoding",
        "user-agent",
        "x-pagerduty-signature",
        "x-webhook-id",
        "x-webhook-subscription",
    }
)


class SubscriptionRefused(ValueError):
    """A subscription request PagerDuty would refuse (a 400), with the message to answer.

    ``status`` is 404 when the subscription is not the caller's (or does not exist).
    """

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def new_secret() -> str:
    """A subscription secret: 48 random bytes as 64 characters of standard base64 (``+`` and ``/``)."""
    return base64.b64encode(secrets.token_bytes(48)).decode("ascii")


def check_custom_headers(value: object) -> list[dict[str, str]]:
    """``value`` as a list of ``{"name", "value"}`` headers that are safe to send, or :class:`SubscriptionRefused`.

    Names are RFC 9110 tokens of at most :data:`MAX_HEADER_NAME` characters and not one the
    sandbox sets itself; values are printable ASCII of at most :data:`MAX_HEADER_VALUE`
    characters (no CR, LF or other control characters: they would split the request).
    """
    if value is None:
        return []
    if not isinstance(value, list):
        raise SubscriptionRefused("custom_headers must be a list of {name, value} objects.")
    if len(value) > MAX_CUSTOM_HEADERS:
        raise SubscriptionRefused(f"At most {MAX_CUSTOM_HEADERS} custom headers.")
    headers: list[dict[str, str]] = []
    seen: set[str] = set()
    for entry in value:
        if not isinstance(entry, dict) or set(entry) - {"name", "value"}:
            raise SubscriptionRefused("Each custom header is an object with a name and a value.")
        name, text = entry.get("name"), entry.get("value")
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name) or len(name) > MAX_HEADER_NAME:
            raise SubscriptionRefused(f"A custom header name is 1 to {MAX_HEADER_NAME} token characters.")
        if name.lower() in RESERVED_HEADERS:
            raise SubscriptionRefused(f"The header {name} is set by PagerDuty and cannot be a custom header.")
        if name.lower() in seen:
            raise SubscriptionRefused(f"The custom header {name} is given twice.")
        if not isinstance(text, str) or len(text) > MAX_HEADER_VALUE:
            raise SubscriptionRefused(f"A custom header value is a string of at most {MAX_HEADER_VALUE} characters.")
        if any(not 0x20 <= ord(ch) < 0x7F for ch in text):
            raise SubscriptionRefused("A custom header value is printable ASCII, without CR, LF or tabs.")
        seen.add(name.lower())
        headers.append({"name": name, "value": text})
    return headers


def check_filter(store: SandboxStore, account: str, filter_type: object, filter_id: object) -> tuple[str, str | None]:
    """The filter as ``(type, id)`` if it names something of ``account``, else :class:`SubscriptionRefused`.

    A service or team of another account is refused with the same words as one that does
    not exist, so the answer does not tell whether it exists elsewhere.
    """
    if filter_type not in FILTER_TYPES:
        raise SubscriptionRefused("filter type must be account_reference, service_reference or team_reference.")
    if filter_id is not None and not isinstance(filter_id, str):
        raise SubscriptionRefused("filter id must be a string.")
    if filter_type == "account_reference":
        # The owner's own account only; an omitted id means it (UNCONFIRMED: PagerDuty may require the id).
        if filter_id not in (None, account):
            raise SubscriptionRefused("An account_reference filter can only name your own account.")
        return "account_reference", account
    record_type: type[Service] | type[Team] = Service if filter_type == "service_reference" else Team
    record = store.get(record_type, filter_id)
    if record is None or record.account != account:
        what = "service" if filter_type == "service_reference" else "team"
        raise SubscriptionRefused(f"A {filter_type} filter needs the id of a {what} in your account.")
    assert isinstance(filter_id, str)
    return str(filter_type), filter_id


def check_room(store: SandboxStore, filter_type: str, filter_id: str | None, *, moving: str | None = None) -> None:
    """Refuse an 11th subscription on one service (``moving``: the id of one being updated onto it)."""
    if filter_type != "service_reference":
        return
    taken = [
        s
        for s in store.all(Subscription)
        if s.filter_type == "service_reference" and s.filter_id == filter_id and s.id != moving
    ]
    if len(taken) >= MAX_PER_SERVICE:
        raise SubscriptionRefused(
            f"This service already has {MAX_PER_SERVICE} webhook subscriptions, the most PagerDuty allows."
        )


def owned(store: SandboxStore, subscription_id: str, account: str) -> Subscription:
    """The subscription if ``account`` owns it; a 404 :class:`SubscriptionRefused` otherwise.

    Another account's subscription answers exactly as a missing one: whether PagerDuty says
    403 or 404 is UNCONFIRMED, and a 404 does not reveal that the id exists.
    """
    subscription = store.get(Subscription, subscription_id)
    if subscription is None or subscription.account != account:
        raise SubscriptionRefused("Not Found", status=404)
    assert isinstance(subscription, Subscription)
    return subscription


def account_of(store: SandboxStore, account: str) -> Account:
    found = store.get(Account, account)
    if found is None:
        raise SubscriptionRefused(f"No account {account[:64]!r}.", status=404)
    assert isinstance(found, Account)
    return found


def rotation_headers(subscription: Subscription, signature: Callable[[str, bytes], str], body: bytes) -> str:
    """``X-PagerDuty-Signature`` for ``body``: the current secret's ``v1=``, then the previous one's while rotating."""
    header = signature(subscription.secret, body)
    if subscription.previous_secret:
        header += "," + signature(subscription.previous_secret, body)
    return header
