"""The handshake, start to finish: a protected redirect to PagerDuty and a verified callback.

:class:`Handshake` ties the URL builders of :mod:`pdconnect.connect` and
:mod:`pdconnect.install` to the state of :mod:`pdconnect.state`. It imports no web framework:
a view passes in the request's query and a value from the user's session, and gets back a
URL to redirect to or an :data:`~pdconnect.outcomes.Outcome`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from pdconnect.connect import build_connect_url, parse_connect_callback
from pdconnect.errors import CallbackError, StateInvalid
from pdconnect.install import build_install_url, check_subdomain, parse_install_callback
from pdconnect.integration import Origin, Region
from pdconnect.nonces import NonceStore
from pdconnect.outcomes import Outcome
from pdconnect.query import QueryInput, normalize_query
from pdconnect.state import DEFAULT_MAX_AGE, MAX_TOKEN_LENGTH, Secret, StateManager
from pdconnect.urls import CONNECT_BASE_URL, INSTALL_BASE_URL, add_path_segment, add_query_params, check_callback_url

#: The query parameter that carries the state when it is not in the path.
STATE_PARAM = "state"


class Handshake:
    """Starts and completes the Connect and install handshakes for one vendor.

    ``secret`` signs the states (keep it as secret as a session key). ``vendor_key`` is
    needed for legacy Connect and ``app_id`` for the install flow; give whichever you have.
    The base URLs point at PagerDuty by default and at the sandbox in tests.

    One instance is safe to share across threads; it holds no per-request data.
    """

    def __init__(
        self,
        *,
        secret: Secret | Sequence[Secret],
        vendor_key: str | None = None,
        app_id: str | None = None,
        nonce_store: NonceStore | None = None,
        max_age: int = DEFAULT_MAX_AGE,
        connect_base_url: str = CONNECT_BASE_URL,
        install_base_url: str = INSTALL_BASE_URL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.vendor_key = vendor_key
        self.app_id = app_id
        self.connect_base_url = connect_base_url
        self.install_base_url = install_base_url
        self.states = StateManager(secret, max_age=max_age, nonce_store=nonce_store, clock=clock)

    def __repr__(self) -> str:
        vendor = "set" if self.vendor_key else None
        return f"Handshake(app_id={self.app_id!r}, vendor_key={vendor}, states={self.states!r})"

    def connect_url(
        self,
        callback_url: str,
        *,
        owner_id: str,
        session_binding: str,
        state_in_path: bool = True,
    ) -> str:
        """Start a legacy Connect handshake: return the PagerDuty URL to redirect to.

        PagerDuty retired Connect in 2021 (deprecated, then removed, in favour of the install
        flow): do not build a new integration on it. It stays for vendors who still hold a
        Connect vendor key, for migrations and for tests; use :meth:`install_url` otherwise.

        The state is appended to ``callback_url`` as a last path segment (the default, as
        healthchecks did, because whether Connect kept a callback's query string is not
        documented) or as a ``state`` query parameter.
        """
        if not self.vendor_key:
            raise ValueError("legacy Connect needs a vendor_key")
        check_callback_url(callback_url)
        token = self.states.issue(owner_id=owner_id, session_binding=session_binding, flow=Origin.CONNECT)
        if state_in_path:
            callback = add_path_segment(callback_url, token)
        else:
            callback = add_query_params(callback_url, {STATE_PARAM: token})
        return build_connect_url(vendor_key=self.vendor_key, callback_url=callback, base_url=self.connect_base_url)

    def install_url(
        self,
        redirect_url: str,
        *,
        owner_id: str,
        session_binding: str,
        subdomain: str | None = None,
    ) -> str:
        """Start an install-flow handshake: return the PagerDuty URL to redirect to.

        The state goes into ``redirect_url``'s query; PagerDuty keeps it (healthchecks relies
        on this) while matching the registered redirect URL without it.

        ``subdomain`` (the user's account, such as ``acme``) sends the user to
        ``https://acme.pagerduty.com``. It applies to PagerDuty's own host only: with another
        ``install_base_url`` (the sandbox, say) that base URL is used and ``subdomain`` is
        ignored, so a test or demo never sends a browser to PagerDuty. A malformed subdomain
        raises :class:`~pdconnect.errors.UnsafeURLError`.
        """
        if not self.app_id:
            raise ValueError("the install flow needs an app_id")
        check_callback_url(redirect_url, name="redirect URL")
        if subdomain is not None:
            check_subdomain(subdomain)  # before a state is issued for a URL that cannot be built
        if self.install_base_url != INSTALL_BASE_URL:
            subdomain = None
        token = self.states.issue(owner_id=owner_id, session_binding=session_binding, flow=Origin.INSTALL)
        redirect = add_query_params(redirect_url, {STATE_PARAM: token})
        return build_install_url(
            app_id=self.app_id, redirect_url=redirect, base_url=self.install_base_url, subdomain=subdomain or None
        )

    def complete(
        self,
        query: QueryInput,
        *,
        session_binding: str,
        owner_id: str | None = None,
        state: str | None = None,
        region: Region = Region.US,
    ) -> Outcome:
        """Finish a handshake from the callback request.

        ``query`` is the callback's query (a string or a framework's mapping); ``state`` is
        the path segment when the state was put in the path. ``owner_id``, when given, must
        match the owner the handshake was started for. ``region`` is recorded on the new
        integrations. The state is verified first (signature, age, flow, session, owner,
        single use), then the callback is parsed for the flow the state was issued for.

        Returns :class:`~pdconnect.outcomes.Connected` or
        :class:`~pdconnect.outcomes.Cancelled`; raises a
        :class:`~pdconnect.errors.HandshakeError` subclass for anything else.
        """
        params = normalize_query(query)
        token = state if state is not None else _state_from_query(params)
        verified = self.states.verify(token, session_binding=session_binding, owner_id=owner_id)
        if verified.flow is Origin.CONNECT:
            return parse_connect_callback(params, owner_id=verified.owner_id, region=region)
        if verified.flow is Origin.INSTALL:
            return parse_install_callback(params, owner_id=verified.owner_id, region=region)
        raise StateInvalid(f"the handshake state was issued for the {verified.flow.value} flow")


def _state_from_query(params: dict[str, list[str]]) -> str:
    values = params.get(STATE_PARAM)
    if not values:
        raise StateInvalid("the handshake state is missing")
    if len(values) > 1:
        raise CallbackError("the callback repeats the 'state' parameter", parameter=STATE_PARAM)
    if len(values[0]) > MAX_TOKEN_LENGTH:
        raise StateInvalid("the handshake state is too long")
    return values[0]
