"""A fresh access token for an owner's account, refreshed exactly once however many callers race.

PagerDuty rotates refresh tokens: a refresh answers a new access token *and* a new refresh
token, and the old refresh token is refused from then on. Two workers that refresh at the same
moment would each spend the same refresh token; one would store tokens PagerDuty has already
replaced, and the next refresh would fail for good. So :meth:`TokenRefresher.fresh_token`
refreshes only while holding the credential (:meth:`CredentialStore.locked
<pdconnect.oauth.credentials.CredentialStore.locked>`: a row lock across processes, a thread
lock within one), reads it again under the lock, and uses what another caller stored if the
token changed meanwhile. Only one request reaches PagerDuty's token endpoint.

A refresh PagerDuty refuses for good (``invalid_grant``: revoked, expired, reused) marks the
credential "needs re-authorisation" and calls ``on_needs_reauthorization`` once, from the one
caller that marked it. A temporary failure (a 5xx, a 429, the network) changes nothing: the
error propagates and the next call tries again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from pdconnect.oauth.credentials import Credential, CredentialStore

# CredentialNotFound and NeedsReauthorization were defined here first: re-exported, old imports work.
from pdconnect.oauth.errors import CredentialNotFound as CredentialNotFound
from pdconnect.oauth.errors import NeedsReauthorization as NeedsReauthorization
from pdconnect.oauth.errors import OAuthRefused
from pdconnect.oauth.tokens import TokenSet

logger = logging.getLogger("pdconnect.oauth")

#: Refresh an access token that expires within this many seconds.
DEFAULT_MARGIN = 300.0


class Refresher(Protocol):
    """What refreshes a token: :class:`~pdconnect.oauth.PagerDutyOAuth` or a test double."""

    def refresh(self, refresh_token: str) -> TokenSet: ...


class TokenRefresher:
    """Hands out access tokens from ``store``, refreshing them through ``oauth`` when needed.

    ``margin`` is how long before expiry a token is refreshed. ``on_needs_reauthorization``
    is called with the marked credential when a refresh fails for good, once per mark; an
    exception it raises is logged, not propagated. ``clock`` gives Unix time.
    """

    def __init__(
        self,
        store: CredentialStore,
        oauth: Refresher,
        *,
        margin: float = DEFAULT_MARGIN,
        on_needs_reauthorization: Callable[[Credential], object] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 <= margin <= 86_400:
            raise ValueError("margin must be between 0 and 86400 seconds")
        self.store = store
        self.oauth = oauth
        self.margin = float(margin)
        self.on_needs_reauthorization = on_needs_reauthorization
        self._clock = clock

    def __repr__(self) -> str:
        return f"TokenRefresher({self.store!r}, margin={self.margin:g})"

    def credential(self, owner_id: str, account_id: str) -> Credential:
        """The owner's credential for the account; raises :class:`CredentialNotFound`."""
        credential = self.store.get(owner_id, account_id)
        if credential is None:
            raise CredentialNotFound(owner_id, account_id)
        return credential

    def fresh_token(
        self, owner_id: str, account_id: str, *, force: bool = False, failed_token: str | None = None
    ) -> str:
        """An access token for the owner's account that does not expire within the margin.

        With ``force=True`` (the last call with ``failed_token`` was answered 401) the token is
        refreshed even if it has not expired, unless the stored token is no longer
        ``failed_token``: then another caller refreshed already, and its token is returned.
        Raises :class:`CredentialNotFound`, :class:`NeedsReauthorization`, or the OAuth
        client's error for a temporary failure (nothing is changed then).
        """
        seen = self.credential(owner_id, account_id)
        if seen.needs_reauthorization:
            raise NeedsReauthorization(seen)
        if not self._must_refresh(seen, seen, force=force, failed_token=failed_token):
            return seen.access_token
        marked: Credential | None = None
        with self.store.locked(owner_id, account_id) as held:
            current = held.current
            if current is None:
                raise CredentialNotFound(owner_id, account_id)
            if current.needs_reauthorization:
                raise NeedsReauthorization(current)
            if not self._must_refresh(seen, current, force=force, failed_token=failed_token):
                return current.access_token
            if current.refresh_token is None:
                marked = held.mark_needs_reauthorization("the access token expired and there is no refresh token")
            else:
                try:
                    tokens = self.oauth.refresh(current.refresh_token)
                except OAuthRefused as exc:
                    if exc.error != "invalid_grant":
                        raise
                    marked = held.mark_needs_reauthorization(f"PagerDuty refused the refresh token ({exc.error})")
                else:
                    logger.info("refreshed the PagerDuty access token of account %s", account_id)
                    return held.replace(tokens).access_token
        # Outside the lock: leaving it commits the mark, and the hook may take its time.
        if marked is not None:
            self._announce(marked)
            raise NeedsReauthorization(marked)
        raise NeedsReauthorization(self.credential(owner_id, account_id))  # another caller marked it

    def _must_refresh(self, seen: Credential, current: Credential, *, force: bool, failed_token: str | None) -> bool:
        if force:
            if failed_token is not None:
                return current.access_token == failed_token
            return current.version == seen.version
        return current.expires_within(self.margin, now=self._clock())

    def mark_needs_reauthorization(self, credential: Credential, reason: str) -> Credential | None:
        """Mark ``credential`` (if its version is still current) and call the hook once; the marked one or ``None``."""
        marked = self.store.mark_needs_reauthorization(
            credential.owner_id, credential.account_id, reason, expected_version=credential.version
        )
        if marked is not None:
            self._announce(marked)
        return marked

    def _announce(self, credential: Credential) -> None:
        logger.warning(
            "the PagerDuty connection of account %s needs re-authorisation: %s",
            credential.account_id,
            credential.needs_reauthorization_reason,
        )
        if self.on_needs_reauthorization is None:
            return
        try:
            self.on_needs_reauthorization(credential)
        except Exception:
            logger.exception("on_needs_reauthorization raised; the credential stays marked")
