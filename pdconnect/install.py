"""PagerDuty's install flow (the "Simple Install Flow" of an app with Events Integration).

The vendor sends the browser to
``https://app.pagerduty.com/install/integration?app_id=...&redirect_url=...&version=2``;
PagerDuty lets the user pick one or more services or rulesets and then sends the browser to
``redirect_url`` with a ``config`` parameter holding URL-encoded JSON (PagerDuty developer
docs, "Events Integration"; ``pagerduty-protocols.md`` section 2)::

    {"integration_keys": [{"integration_key": "...", "name": "...", "id": "...", "type": "service"}],
     "account": {"subdomain": "dev-acme", "Name": "Acme Monitoring"}}

The docs spell the account name ``Name``; every public implementation reads ``name``; both
are accepted. Keys from this flow speak Events API v2.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from pdconnect.errors import CallbackError, InvalidIntegrationKey, UnsafeURLError
from pdconnect.integration import EventsApi, Integration, Origin, Region
from pdconnect.keys import classify_key, normalize_key
from pdconnect.outcomes import Connected, Outcome, RejectedEntry, check_error_parameter
from pdconnect.query import QueryInput, normalize_query
from pdconnect.text import check_text, text_problem
from pdconnect.urls import INSTALL_BASE_URL, check_base_url, check_callback_url

#: ``version=2`` is what every implementation sends since 2020 (its meaning is undocumented).
INSTALL_FLOW_VERSION = "2"
#: A ``config`` longer than this is refused before JSON parsing.
MAX_CONFIG_LENGTH = 64 * 1024
#: More targets than this in one install is not a person clicking.
MAX_TARGETS = 100
_MAX_NAME = 255
_SUBDOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


def check_subdomain(subdomain: object) -> str:
    """Return ``subdomain`` if it can be a PagerDuty account subdomain (a DNS label), else raise.

    Raises :class:`~pdconnect.errors.UnsafeURLError`: the value becomes part of a host name,
    so nothing that could name another host gets through.
    """
    if not isinstance(subdomain, str) or not _SUBDOMAIN.fullmatch(subdomain):
        raise UnsafeURLError("subdomain must be lowercase letters, digits and hyphens")
    return subdomain


def build_install_url(
    *,
    app_id: str,
    redirect_url: str,
    base_url: str = INSTALL_BASE_URL,
    subdomain: str | None = None,
) -> str:
    """Return the install-flow URL to send the user's browser to.

    ``subdomain`` (an account subdomain such as ``acme``) sends the user straight to
    ``https://acme.pagerduty.com``, as Sentry does when it knows the account; otherwise
    ``base_url`` is used (``app.pagerduty.com``, or the sandbox). ``redirect_url`` must be
    registered on the app and comes from the vendor's configuration.
    """
    check_text(app_id, name="app_id", max_length=64)
    check_callback_url(redirect_url, name="redirect URL")
    if subdomain is not None:
        if base_url != INSTALL_BASE_URL:
            raise ValueError("give either base_url or subdomain, not both")
        check_subdomain(subdomain)
        base_url = f"https://{subdomain}.pagerduty.com"
    query = urlencode({"app_id": app_id, "redirect_url": redirect_url, "version": INSTALL_FLOW_VERSION})
    return f"{check_base_url(base_url)}/install/integration?{query}"


def parse_install_callback(
    query: QueryInput,
    *,
    owner_id: str,
    region: Region = Region.US,
) -> Outcome:
    """Parse an install-flow callback into :class:`~pdconnect.outcomes.Connected`.

    Every entry of ``integration_keys`` becomes one :class:`~pdconnect.integration.Integration`
    (speaking Events API v2) keeping its ``name``, ``id`` and ``type`` and the account's
    subdomain and name. An ``error`` parameter is handled as on the Connect callback
    (PagerDuty does not document one here).

    A malformed entry (a bad or repeated key, a bad name) is left out and listed in
    :attr:`~pdconnect.outcomes.Connected.rejected`, so one bad target does not lose the
    others. Anything else malformed, or every entry bad, raises
    :class:`~pdconnect.errors.CallbackError` naming the JSON path at fault. This does not
    check the handshake state; use :class:`~pdconnect.handshake.Handshake` for that.
    """
    params = normalize_query(query)
    cancelled = check_error_parameter(params, owner_id=owner_id, flow=Origin.INSTALL)
    if cancelled is not None:
        return cancelled
    doc = _load_config(params.get("config"))
    account = _object(doc.get("account"), "config.account")
    subdomain = _string(account.get("subdomain"), "config.account.subdomain", required=True)
    account_name = _account_name(account)
    entries = doc.get("integration_keys")
    if not isinstance(entries, list):
        raise CallbackError("config.integration_keys must be a list", parameter="config.integration_keys")
    if not entries:
        raise CallbackError(
            "config.integration_keys is empty: no service was picked", parameter="config.integration_keys"
        )
    if len(entries) > MAX_TARGETS:
        raise CallbackError(
            f"config.integration_keys has more than {MAX_TARGETS} entries", parameter="config.integration_keys"
        )
    integrations: list[Integration] = []
    rejected: list[RejectedEntry] = []
    first_problem: CallbackError | None = None
    seen: set[str] = set()
    for index, raw_entry in enumerate(entries):
        path = f"config.integration_keys[{index}]"
        try:
            entry = _object(raw_entry, path)
            key = _integration_key(entry.get("integration_key"), f"{path}.integration_key")
            if key in seen:
                raise CallbackError(
                    f"{path}.integration_key repeats an earlier key", parameter=f"{path}.integration_key"
                )
            integration = Integration(
                owner_id=owner_id,
                integration_key=key,
                origin=Origin.INSTALL,
                events_api=EventsApi.V2,
                key_type=classify_key(key),
                region=region,
                account=subdomain,
                account_name=account_name,
                service_name=_string(entry.get("name"), f"{path}.name"),
                service_id=_string(entry.get("id"), f"{path}.id"),
                target_type=_string(entry.get("type"), f"{path}.type"),
            )
        except CallbackError as exc:
            first_problem = first_problem if first_problem is not None else exc
            rejected.append(RejectedEntry(index=index, service_name=_readable_name(raw_entry), reason=str(exc)))
            continue
        seen.add(key)
        integrations.append(integration)
    if not integrations:
        assert first_problem is not None
        raise first_problem
    return Connected(owner_id=owner_id, flow=Origin.INSTALL, integrations=tuple(integrations), rejected=tuple(rejected))


def _readable_name(entry: object) -> str | None:
    """A refused entry's ``name``, if it is sane text, to tell the user which service it was."""
    name = entry.get("name") if isinstance(entry, dict) else None
    return name if text_problem(name, max_length=_MAX_NAME) is None else None


def _load_config(values: Sequence[str] | None) -> Mapping[str, Any]:
    if not values:
        raise CallbackError("the callback is missing the 'config' parameter", parameter="config")
    if len(values) > 1:
        raise CallbackError("the callback repeats the 'config' parameter", parameter="config")
    raw = values[0]
    if not raw.strip():
        raise CallbackError("the callback's 'config' parameter is empty", parameter="config")
    if len(raw) > MAX_CONFIG_LENGTH:
        raise CallbackError(
            f"the callback's 'config' is longer than {MAX_CONFIG_LENGTH} characters", parameter="config"
        )
    try:
        doc = json.loads(raw, object_pairs_hook=_unique_keys, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        # json.JSONDecodeError is a ValueError; so are the two hooks' complaints.
        raise CallbackError(f"the callback's 'config' is not valid JSON ({_short(exc)})", parameter="config") from exc
    return _object(doc, "config")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"repeated member {key[:40]!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _short(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc).split(":")[0][:80]


def _object(value: object, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise CallbackError(f"{path} must be a JSON object", parameter=path)
    return value


def _string(value: object, path: str, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise CallbackError(f"{path} is missing", parameter=path)
        return None
    problem = text_problem(value, max_length=_MAX_NAME)
    if problem is not None:
        raise CallbackError(f"{path} {problem}", parameter=path)
    assert isinstance(value, str)
    return value


def _account_name(account: Mapping[str, Any]) -> str | None:
    # PagerDuty's docs show "Name"; Sentry, healthchecks and openstatus read "name".
    lower = _string(account.get("name"), "config.account.name")
    upper = _string(account.get("Name"), "config.account.Name")
    return lower if lower is not None else upper


def _integration_key(value: object, path: str) -> str:
    if value is None:
        raise CallbackError(f"{path} is missing", parameter=path)
    try:
        return normalize_key(value, name=path)
    except InvalidIntegrationKey as exc:
        raise CallbackError(str(exc), parameter=path) from exc
