"""The OAuth client for PagerDuty: authorize, finish, refresh, client credentials."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pdconnect.errors import StateInvalid
from pdconnect.install import check_subdomain
from pdconnect.nonces import NonceStore
from pdconnect.oauth.app import OAuthApp, RegionName
from pdconnect.oauth.authorize import AuthorizeRequest, build_authorize_url, read_callback, read_state
from pdconnect.oauth.errors import IdTokenInvalid, MissingScopes, OAuthError, TokenEndpointError
from pdconnect.oauth.http import DEFAULT_RETRY, DEFAULT_TIMEOUT, Requester, check_transport
from pdconnect.oauth.id_token import AccountIdentity, verify_id_token
from pdconnect.oauth.jwks import JwksCache
from pdconnect.oauth.pkce import challenge, new_verifier
from pdconnect.oauth.scopes import OPENID, check_scope, format_scopes, missing_scopes, requested_scopes
from pdconnect.oauth.state import OAuthStates
from pdconnect.oauth.tokens import FORM_HEADERS, TokenRequest, TokenSet, read_token_answer
from pdconnect.query import QueryInput
from pdconnect.retry import RetryPolicy
from pdconnect.state import DEFAULT_MAX_AGE, Secret
from pdconnect.transport import RequestsTransport, Transport

logger = logging.getLogger("pdconnect.oauth")

# What a token request sends that must never come back in a message.
_SECRET_FIELDS = frozenset({"code", "code_verifier", "refresh_token", "client_secret"})


def _default_transport() -> Transport:
    # Reads run under the attempt's total deadline, so a slow identity host cannot hold a request.
    return RequestsTransport()


@dataclass(frozen=True)
class Authorized:
    """A completed authorization: whose it is, its tokens, the account they reach, where to go next."""

    owner_id: str
    tokens: TokenSet
    account: AccountIdentity
    return_to: str | None


class PagerDutyOAuth:
    """PagerDuty's authorization-code flow with PKCE, refresh and client credentials, for one app.

    ``secret`` seals the states (a list rotates: the last seals, all open); ``nonces`` records
    used states so each callback works once (a :class:`~pdconnect.nonces.SqlNonceStore` when
    several processes serve callbacks). ``transport`` and ``retry`` are the package's: 429
    with ``Retry-After``, 5xx and network failures are retried within the policy's attempts
    and deadline, except that a code exchange or a refresh is retried only when it cannot have
    arrived (no connection) or was not processed (429, 503): its code or refresh token is
    single-use. ``jwks_ttl`` is how long PagerDuty's keys are trusted before they are
    fetched again. One instance is safe to share across threads.
    """

    def __init__(
        self,
        app: OAuthApp,
        *,
        secret: Secret | Sequence[Secret],
        nonces: NonceStore,
        transport: Transport | None = None,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        jwks_ttl: float = 300,
        jwks_refetch_interval: float = 60,
        max_age: int = DEFAULT_MAX_AGE,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not isinstance(app, OAuthApp):
            raise TypeError("app must be an OAuthApp")
        self.app = app
        self.transport: Transport = transport if transport is not None else _default_transport()
        check_transport(self.transport)
        self._requester = Requester(
            self.transport, retry=retry if retry is not None else DEFAULT_RETRY, timeout=timeout, sleep=sleep
        )
        self.states = OAuthStates(secret, nonces=nonces, max_age=max_age, clock=clock)
        self.keys = JwksCache(
            app.jwks_url, self._requester, ttl=jwks_ttl, min_refetch_interval=jwks_refetch_interval, clock=clock
        )
        self._clock = clock
        self._requested = requested_scopes(app.scopes, kind=app.kind)

    def __repr__(self) -> str:
        return f"PagerDutyOAuth(app={self.app!r})"

    def authorize(self, *, owner_id: str, session_binding: str, return_to: str | None = None) -> AuthorizeRequest:
        """Start an authorization for ``owner_id`` in this browser session: where to send the browser.

        The PKCE verifier is made here and sealed, encrypted, into the state (see
        :mod:`pdconnect.oauth.state` for why there and not in a server-side store); only its
        S256 challenge is in the URL. ``return_to`` (a local path) comes back in
        :class:`Authorized`. Raises ``ValueError`` for a blank owner id, a short session
        binding or a ``return_to`` that is not a local path.
        """
        verifier = new_verifier()
        state = self.states.seal(
            owner_id=owner_id, session_binding=session_binding, verifier=verifier, return_to=return_to
        )
        url = build_authorize_url(
            self.app.authorize_url,
            client_id=self.app.client_id,
            redirect_uri=self.app.redirect_uri,
            scope=format_scopes(self._requested),
            code_challenge=challenge(verifier),
            state=state,
        )
        return AuthorizeRequest(url=url, state=state)

    def finish(
        self,
        query: QueryInput,
        *,
        owner_id: str,
        session_binding: str,
        state: str | None = None,
    ) -> Authorized:
        """Complete an authorization from the callback's query (a string, or a framework's mapping).

        In order: the state (sealed by us, at most ``max_age`` old, this session's, this
        owner's, unused; a state PagerDuty did not echo may be passed as ``state``, from the
        session), the callback (``error=access_denied`` raises
        :class:`~pdconnect.oauth.errors.OAuthCancelled`, another error
        :class:`~pdconnect.oauth.errors.OAuthRefused`), the code exchange with the PKCE
        verifier, the ID token, and the granted scopes
        (:class:`~pdconnect.oauth.errors.MissingScopes` names what is missing). Raises a
        :class:`~pdconnect.errors.StateError`, :class:`~pdconnect.errors.CallbackError` or
        :class:`~pdconnect.oauth.errors.OAuthError`: normal outcomes to show the user.
        """
        params, echoed = read_state(query)
        if echoed is not None and state is not None and not hmac.compare_digest(echoed, state):
            raise StateInvalid("the callback's state is not the one this session started")
        opened = self.states.open(
            echoed if echoed is not None else state, owner_id=owner_id, session_binding=session_binding
        )
        callback = read_callback(params, echoed)
        request = TokenRequest(
            grant_type="authorization_code",
            form=self._form(
                grant_type="authorization_code",
                redirect_uri=self.app.redirect_uri,
                code=callback.code,
                code_verifier=opened.verifier,
            ),
            requested=self._requested,
        )
        tokens = self._token(request)
        if tokens.id_token is None:
            # Without it there is no account, user or region.
            if OPENID not in tokens.scopes:
                raise MissingScopes(
                    missing=missing_scopes(self._requested, tokens.scopes, kind=self.app.kind), granted=tokens.scopes
                )
            raise IdTokenInvalid("the token endpoint granted openid but sent no ID token")
        account = verify_id_token(tokens.id_token, app=self.app, keys=self.keys, now=self._clock())
        missing = missing_scopes(self._requested, tokens.scopes, kind=self.app.kind)
        if missing:
            raise MissingScopes(missing=missing, granted=tokens.scopes)
        logger.info("authorized PagerDuty account %s for owner %r", account.subdomain, opened.owner_id)
        return Authorized(owner_id=opened.owner_id, tokens=tokens, account=account, return_to=opened.return_to)

    def refresh(self, refresh_token: str) -> TokenSet:
        """New tokens for ``refresh_token``; PagerDuty rotates it, so store both new ones at once.

        Raises :class:`~pdconnect.oauth.errors.OAuthRefused` (``error == "invalid_grant"``: the
        refresh token is dead, the user must authorize again) or
        :class:`~pdconnect.oauth.errors.TokenEndpointError` (no usable answer: try later).
        A ``scope`` left out of the answer is read as the app's scopes (RFC 6749 5.1).
        """
        if not isinstance(refresh_token, str) or not refresh_token or len(refresh_token) > 8192:
            raise ValueError("refresh_token must be a non-empty string")
        form = self._form(grant_type="refresh_token", refresh_token=refresh_token)
        return self._token(TokenRequest(grant_type="refresh_token", form=form, requested=self._requested))

    def client_credentials(self, *, region: RegionName, subdomain: str, scopes: Sequence[str]) -> TokenSet:
        """An app token for the Scoped app's own account ``subdomain`` in ``region`` (no refresh token).

        Asks for ``as_account-{region}.{subdomain}`` and ``scopes``. Only Scoped apps have
        app tokens (``02-Private-Apps.md``); raises ``ValueError`` for a Classic app.
        """
        if self.app.kind != "scoped":
            raise ValueError("client credentials are for Scoped OAuth apps only")
        if self.app.client_secret is None:
            raise ValueError("client credentials need the app's client_secret")
        if region not in ("us", "eu"):
            raise ValueError("region must be 'us' or 'eu'")
        check_subdomain(subdomain)
        if isinstance(scopes, str):
            raise ValueError("scopes must be a sequence of scope names, not one string")
        wanted = frozenset(check_scope(s) for s in scopes) | {f"as_account-{region}.{subdomain}"}
        form = self._form(grant_type="client_credentials", scope=format_scopes(wanted))
        return self._token(TokenRequest(grant_type="client_credentials", form=form, requested=wanted))

    def _form(self, **fields: str) -> dict[str, str]:
        form = {"client_id": self.app.client_id, **fields}
        if self.app.client_secret is not None:
            form["client_secret"] = self.app.client_secret
        return form

    def _token(self, request: TokenRequest) -> TokenSet:
        started = self._clock()
        response = self._requester.request(
            "POST",
            self.app.token_url,
            what="the token endpoint",
            body=request.body(),
            headers=FORM_HEADERS,
            # A code or a refresh token is spent on first sight; client credentials can be asked again.
            replayable=request.grant_type == "client_credentials",
        )
        try:
            tokens = read_token_answer(
                response.status,
                response.body,
                now=started,
                requested=request.requested,
                hide=[v for k, v in request.form.items() if k in _SECRET_FIELDS],
            )
        except TokenEndpointError as exc:
            logger.error("the token endpoint's answer to a %s request was refused: %s", request.grant_type, exc)
            raise
        except OAuthError as exc:
            logger.warning("the token endpoint refused a %s request: %s", request.grant_type, exc)
            raise
        logger.debug("the token endpoint granted a %s request: %s", request.grant_type, tokens)
        return tokens
