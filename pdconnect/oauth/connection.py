"""Connecting and disconnecting a customer's PagerDuty account, with that account's own token.

:class:`AccountConnections` is what a web framework calls around the OAuth flow, with no
framework of its own: :meth:`~AccountConnections.connected` stores a finished authorization
(encrypted, by the credential store) and subscribes the vendor's webhook URL to the account
with the account's token; :meth:`~AccountConnections.disconnect` deletes that subscription
with the same token first, then forgets the secrets and the tokens (PagerDuty documents no
per-token revocation, ``06-OAuth-Functionality.md``); :meth:`~AccountConnections.check_install`
accepts an install flow's unsigned ``config`` only for an account the owner connected through
OAuth, and :meth:`~AccountConnections.install_integrations` gives its integrations that
account's region, so the Sender sends an EU account's events to the EU events host.

One subscription per owner, account and webhook URL, filtered to the whole account
(``account_reference``): a reconnect reuses it, and one whose secret was lost is replaced.
Its secret is registered for the owner under :func:`subscription_key`, so the receiver knows
whose each webhook is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pdconnect.errors import PdConnectError
from pdconnect.install import check_subdomain
from pdconnect.integration import Integration, Region
from pdconnect.oauth.cipher import TokenDecryptionError
from pdconnect.oauth.client import Authorized
from pdconnect.oauth.credentials import Credential, CredentialStore
from pdconnect.oauth.refresh import NeedsReauthorization, TokenRefresher
from pdconnect.rest.client import AccountRestClient
from pdconnect.rest.errors import RestError
from pdconnect.retry import RetryPolicy
from pdconnect.storage import IntegrationStore, StoredIntegration
from pdconnect.urls import check_callback_url
from pdconnect.webhooks.secrets import WebhookSecretStore
from pdconnect.webhooks.subscriptions import DEFAULT_EVENTS

logger = logging.getLogger("pdconnect.oauth")

#: The ``filter.type`` of a subscription to every service of an account (REST API reference).
ACCOUNT_FILTER = "account_reference"


def subscription_key(account_id: str) -> str:
    """The ``integration_id`` under which an account's subscription secrets are registered."""
    return f"pagerduty-account:{account_id}"


def _description(owner_id: str) -> str:
    return f"pdconnect: {owner_id}"


class InstallAccountMismatch(PdConnectError):
    """An install flow's ``config`` names an account the owner has not connected through OAuth.

    The install flow's ``config`` is an unsigned query parameter; only the ID token says, signed,
    which account a user authorized. ``subdomain`` is what the install callback claimed (``None``
    when it named none), ``connected`` the subdomains of the owner's OAuth connections.
    """

    def __init__(self, subdomain: str | None, connected: Iterable[str]) -> None:
        self.subdomain = subdomain
        self.connected = tuple(sorted(connected))
        if not self.connected:
            message = "connect PagerDuty (sign in and authorize) before installing: no account is connected"
        elif subdomain is None:
            message = "PagerDuty's install answer names no account, so it cannot be matched to your connection"
        else:
            shown = ", ".join(self.connected)
            message = (
                f"the install was made in the PagerDuty account {subdomain!r}, "
                f"but the account you connected is {shown}: install in that account, or connect this one first"
            )
        super().__init__(message)


class WebhookSetupFailed(PdConnectError):
    """The account is connected, but its webhook subscription could not be made.

    Raised by :meth:`AccountConnections.connected` *after* the credential was stored:
    ``credential`` is the stored connection (alerts work; incident updates will not arrive),
    ``cause`` the REST client's error (a :class:`~pdconnect.rest.errors.Forbidden` says
    whether the scope or the user's role is missing).
    """

    def __init__(self, credential: Credential, cause: PdConnectError) -> None:
        self.credential = credential
        self.cause = cause
        super().__init__(f"incident updates from {credential.account.subdomain!r} could not be set up: {cause}")


@dataclass(frozen=True)
class Disconnected:
    """What :meth:`AccountConnections.disconnect` did.

    ``removed`` are the subscription ids deleted at PagerDuty; ``left_at_pagerduty`` the ones
    that could not be (``reason`` says why: the grant was revoked, PagerDuty was down); delete
    those in PagerDuty's web UI. ``forgotten`` is whether a credential was forgotten.
    """

    owner_id: str
    account_id: str
    subdomain: str | None
    removed: tuple[str, ...] = ()
    left_at_pagerduty: tuple[str, ...] = ()
    reason: str | None = None
    forgotten: bool = False

    @property
    def complete(self) -> bool:
        """Whether nothing was left at PagerDuty."""
        return not self.left_at_pagerduty


class AccountConnections:
    """Each owner's connected PagerDuty accounts: connect, subscribe, check installs, disconnect.

    ``oauth`` is the :class:`~pdconnect.oauth.PagerDutyOAuth` client (kept for callers, and
    for its app's settings); ``credentials`` the :class:`~pdconnect.oauth.credentials.CredentialStore`;
    ``refresher`` the :class:`~pdconnect.oauth.refresh.TokenRefresher` over that store;
    ``secrets_store`` where subscription secrets are registered for the receiver;
    ``integrations_store`` where installed integrations are saved. ``webhook_url`` is where
    PagerDuty delivers webhooks (https, or http on loopback); with ``subscribe=False`` none
    is made (one made before is still deleted on disconnect). ``rest_transport`` and ``rest_retry`` go to each
    :class:`~pdconnect.rest.client.AccountRestClient`.

    Functions given to :meth:`on_needs_reauthorization` are called, once per mark, when a
    credential's refresh fails for good; the refresher's own hook (if it had one) still runs
    first.
    """

    def __init__(
        self,
        oauth: object,
        credentials: CredentialStore,
        refresher: TokenRefresher,
        secrets_store: WebhookSecretStore,
        integrations_store: IntegrationStore,
        *,
        webhook_url: str | Callable[[], str] | None,
        subscribe: bool = True,
        events: Sequence[str] = DEFAULT_EVENTS,
        rest_transport: object | None = None,
        rest_retry: RetryPolicy | None = None,
    ) -> None:
        if refresher.store is not credentials:
            raise ValueError("the refresher must hand out tokens from the same credential store")
        if subscribe:
            if webhook_url is None:
                raise ValueError("webhook_url is needed to subscribe (or pass subscribe=False)")
            if isinstance(webhook_url, str):
                check_callback_url(webhook_url, name="webhook_url")
        self.oauth = oauth
        self.credentials = credentials
        self.refresher = refresher
        self.secrets = secrets_store
        self.integrations = integrations_store
        self._webhook_url = webhook_url
        self.subscribe = subscribe
        self.events = tuple(events)
        self._rest_transport = rest_transport
        self._rest_retry = rest_retry
        self._listeners: list[Callable[[Credential], object]] = []
        previous = refresher.on_needs_reauthorization

        def announce(credential: Credential) -> None:
            if previous is not None:
                previous(credential)
            for listener in list(self._listeners):
                try:
                    listener(credential)
                except Exception:
                    logger.exception("an on_needs_reauthorization listener raised; the credential stays marked")

        refresher.on_needs_reauthorization = announce

    def __repr__(self) -> str:
        return f"AccountConnections({self.credentials!r}, subscribe={self.subscribe})"

    def on_needs_reauthorization(self, listener: Callable[[Credential], object]) -> Callable[[Credential], object]:
        """Call ``listener(credential)`` when a connection needs re-authorisation (usable as a decorator)."""
        self._listeners.append(listener)
        return listener

    @property
    def webhook_url(self) -> str | None:
        """Where PagerDuty delivers webhooks (a callable is asked each time: a framework builds it per request)."""
        url = self._webhook_url() if callable(self._webhook_url) else self._webhook_url
        return None if url is None else check_callback_url(url, name="webhook_url")

    def rest_client(self, owner_id: str, account_id: str) -> AccountRestClient:
        """A REST client acting for ``owner_id`` in ``account_id`` with that account's token (close it)."""
        return AccountRestClient(
            self.refresher, owner_id, account_id, transport=self._rest_transport, retry=self._rest_retry
        )

    def accounts(self, owner_id: str) -> list[Credential]:
        """The owner's connected accounts, oldest first."""
        return self.credentials.list_for_owner(owner_id)

    # -- connecting ----------------------------------------------------------------------------

    def connected(self, authorized: Authorized) -> Credential:
        """Store a finished authorization and subscribe the webhook URL in that account.

        A reconnect (the same owner and account again) replaces the tokens, clears a "needs
        re-authorisation" mark and keeps the subscription PagerDuty still has; it also replaces
        a stored credential that no configured key decrypts. Raises
        :class:`WebhookSetupFailed` (with the stored credential) when the subscription could
        not be made; the connection itself stands.
        """
        owner, account = authorized.owner_id, authorized.account
        try:
            credential = self.credentials.save(owner, account, authorized.tokens)
        except TokenDecryptionError:
            # The stored row is under a key no longer configured, and the store reads it to
            # replace it: its tokens are useless anyway, so the new authorization takes its place.
            logger.warning("replacing account %s's credential, which no configured key decrypts", account.account_id)
            self.credentials.delete(owner, account.account_id)
            credential = self.credentials.save(owner, account, authorized.tokens)
        logger.info("connected PagerDuty account %s for owner %s", credential.account_id, credential.owner_id)
        if not self.subscribe:
            return credential
        try:
            self._ensure_subscription(credential)
        except (RestError, NeedsReauthorization, ValueError) as exc:
            cause = exc if isinstance(exc, PdConnectError) else PdConnectError(str(exc))
            logger.warning("could not subscribe to account %s's webhooks: %s", credential.account_id, cause)
            raise WebhookSetupFailed(credential, cause) from exc
        return credential

    def _ensure_subscription(self, credential: Credential) -> None:
        webhook_url = self.webhook_url
        if webhook_url is None:  # pragma: no cover - refused in __init__ when subscribing
            raise ValueError("no webhook_url to subscribe")
        owner, account = credential.owner_id, credential.account_id
        key = subscription_key(account)
        known = {s.subscription_id for s in self.secrets.for_integration(owner, key)}
        with self.rest_client(owner, account) as client:
            try:
                ours = [
                    s.id
                    for s in client.list_webhook_subscriptions()
                    if s.url == webhook_url and s.filter_type == ACCOUNT_FILTER and s.description == _description(owner)
                ]
            except RestError as exc:  # no read scope, say: trust what is registered
                logger.info("could not list account %s's subscriptions (%s); using the registered ones", account, exc)
                ours = sorted(known)
            keep = next((s for s in ours if s in known), None)
            for orphan in ours:
                if orphan != keep:  # ours, but its secret is lost: nothing could verify its webhooks
                    client.delete_webhook_subscription(orphan)
            for stale in known - {keep}:
                self.secrets.remove(stale)
            if keep is not None:
                return
            created = client.create_webhook_subscription(
                webhook_url, events=self.events, description=_description(owner)
            )
            try:
                self.secrets.register(created.subscription.id, created.secret, owner_id=owner, integration_id=key)
            except BaseException:
                client.delete_webhook_subscription(created.subscription.id)
                raise
        logger.info("subscribed to account %s's webhooks (%s)", account, created.subscription.id)

    # -- disconnecting -------------------------------------------------------------------------

    def disconnect(self, owner_id: str, account_id: str) -> Disconnected:
        """Delete the account's subscription with its own token, then forget secrets and tokens.

        A subscription that cannot be deleted (the grant was revoked: 401; PagerDuty down) is
        reported in :attr:`Disconnected.left_at_pagerduty`; the secrets and tokens are
        forgotten anyway, since the owner asked to disconnect. So is a credential whose tokens
        no configured key decrypts. ``forgotten`` is ``False`` when there was nothing to forget.
        """
        unreadable = False
        try:
            credential = self.credentials.get(owner_id, account_id)
        except TokenDecryptionError:
            # The key that encrypted it is gone: nothing can be deleted at PagerDuty with it,
            # but the owner asked to disconnect, so it is forgotten here all the same.
            credential, unreadable = None, True
        key = subscription_key(account_id)
        known = sorted({s.subscription_id for s in self.secrets.for_integration(owner_id, key)})
        removed: list[str] = []
        left: list[str] = []
        reason: str | None = None
        if known and credential is not None:
            with self.rest_client(owner_id, account_id) as client:
                for subscription_id in known:
                    try:
                        client.delete_webhook_subscription(subscription_id)
                    except (RestError, NeedsReauthorization) as exc:
                        left.append(subscription_id)
                        reason = str(exc)
                    else:
                        removed.append(subscription_id)
        elif known:
            left = list(known)
            reason = "the stored token cannot be decrypted" if unreadable else "no token to delete it with"
        for subscription_id in known:
            self.secrets.remove(subscription_id)
        forgotten = self.credentials.delete(owner_id, account_id)
        if left:
            logger.warning(
                "disconnected account %s, but %d webhook subscription(s) are left at PagerDuty: %s",
                account_id,
                len(left),
                reason,
            )
        return Disconnected(
            owner_id=owner_id,
            account_id=account_id,
            subdomain=credential.account.subdomain if credential is not None else None,
            removed=tuple(removed),
            left_at_pagerduty=tuple(left),
            reason=reason,
            forgotten=forgotten,
        )

    # -- the install flow ----------------------------------------------------------------------

    def credential_for_install(self, owner_id: str, subdomain: str | None) -> Credential:
        """The owner's OAuth connection to the account an install's ``config`` names; else raise.

        Compared with the signed ID token's ``subdomain`` of each credential the owner holds.
        Raises :class:`InstallAccountMismatch`.
        """
        held = self.credentials.list_for_owner(owner_id)
        names = [c.account.subdomain for c in held]
        if not isinstance(subdomain, str):
            raise InstallAccountMismatch(None, names)
        try:
            check_subdomain(subdomain)
        except ValueError:
            raise InstallAccountMismatch(None, names) from None
        for credential in held:
            if credential.account.subdomain == subdomain:
                return credential
        raise InstallAccountMismatch(subdomain, names)

    def check_install(self, owner_id: str, install_config_account_subdomain: str | None) -> None:
        """Accept an install's ``config`` only for an account the owner connected; else :class:`InstallAccountMismatch`.

        Compared with the signed ID token's subdomain of each credential the owner holds.
        """
        self.credential_for_install(owner_id, install_config_account_subdomain)

    def install_integrations(self, owner_id: str, integrations: Iterable[Integration]) -> list[Integration]:
        """The install's integrations, each checked against the owner's connection and given its region.

        Raises :class:`InstallAccountMismatch` if any names another account (then none is
        kept: an install is one account's).
        """
        checked = []
        for integration in integrations:
            if integration.owner_id != owner_id:
                raise ValueError("every integration of an install must be the owner's")
            credential = self.credential_for_install(owner_id, integration.account)
            checked.append(integration.with_region(Region(credential.account.region)))
        return checked

    def save_install(self, owner_id: str, integrations: Iterable[Integration]) -> list[StoredIntegration]:
        """:meth:`install_integrations`, then save each in the integrations store."""
        return [self.integrations.save(i) for i in self.install_integrations(owner_id, integrations)]
