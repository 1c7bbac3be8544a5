"""Legacy PagerDuty Connect: the redirect to PagerDuty and the callback it sends back.

Per the PagerDuty Connect guide (seed ``004``): the vendor redirects the browser to
``https://connect.pagerduty.com/connect?vendor={vendor key}&callback={callback URL}``; the
user logs in and creates or picks a service; PagerDuty then sends the browser back to the
callback URL with ``account``, ``service_key`` and ``service_name``, or ``error=cancelled``.

PagerDuty retired Connect in 2021 (deprecated, then removed) in favour of the install flow
(:mod:`pdconnect.install`): do not build a new integration on it. It is kept for vendors who
still hold a vendor key, for migrations and for tests; keys made by Connect speak the legacy
Integration API (Events API v1).
"""

from __future__ import annotations

from urllib.parse import urlencode

from pdconnect.errors import CallbackError, InvalidIntegrationKey
from pdconnect.integration import EventsApi, Integration, Origin, Region
from pdconnect.keys import classify_key, normalize_key
from pdconnect.outcomes import Connected, Outcome, check_error_parameter
from pdconnect.query import QueryInput, normalize_query, single_value
from pdconnect.text import check_text
from pdconnect.urls import CONNECT_BASE_URL, check_base_url, check_callback_url

_MAX_NAME = 255


def build_connect_url(
    *,
    vendor_key: str,
    callback_url: str,
    base_url: str = CONNECT_BASE_URL,
) -> str:
    """Return the PagerDuty Connect URL to redirect the user's browser to.

    ``callback_url`` comes from the vendor's configuration (never from a request) and is
    checked by :func:`~pdconnect.urls.check_callback_url`. ``base_url`` points elsewhere for
    the sandbox.
    """
    check_text(vendor_key, name="vendor_key", max_length=255)
    check_callback_url(callback_url)
    query = urlencode({"vendor": vendor_key, "callback": callback_url})
    return f"{check_base_url(base_url)}/connect?{query}"


def parse_connect_callback(
    query: QueryInput,
    *,
    owner_id: str,
    region: Region = Region.US,
) -> Outcome:
    """Parse a Connect callback into :class:`Connected` or :class:`Cancelled`.

    ``account``, ``service_key`` and ``service_name`` must each appear exactly once, not
    empty, without control characters; the key must be 32 letters and digits. ``error=cancelled``
    gives :class:`Cancelled`; any other ``error`` raises
    :class:`~pdconnect.errors.HandshakeFailed` carrying the value. Anything else wrong raises
    :class:`~pdconnect.errors.CallbackError`. This does not check the handshake state; use
    :class:`~pdconnect.handshake.Handshake` for that.
    """
    params = normalize_query(query)
    cancelled = check_error_parameter(params, owner_id=owner_id, flow=Origin.CONNECT)
    if cancelled is not None:
        return cancelled
    raw_key = single_value(params, "service_key", max_length=255)
    account = single_value(params, "account", max_length=_MAX_NAME)
    service_name = single_value(params, "service_name", max_length=_MAX_NAME)
    try:
        key = normalize_key(raw_key, name="service_key")
    except InvalidIntegrationKey as exc:
        raise CallbackError(f"the callback's {exc}", parameter="service_key") from exc
    integration = Integration(
        owner_id=owner_id,
        integration_key=key,
        origin=Origin.CONNECT,
        events_api=EventsApi.V1,
        key_type=classify_key(key),
        region=region,
        account=account,
        service_name=service_name,
    )
    return Connected(owner_id=owner_id, flow=Origin.CONNECT, integrations=(integration,))
