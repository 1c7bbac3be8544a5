"""Every public type's ``repr()`` hides the secrets it carries (issue 9).

Walks every name exported by :mod:`pdconnect`, :mod:`pdconnect.flask`, :mod:`pdconnect.webhooks`,
:mod:`pdconnect.sandbox`, :mod:`pdconnect.oauth` and :mod:`pdconnect.sandbox.identity`, plus the
public types defined in the outbox, the worker, every module of :mod:`pdconnect.oauth` and
:mod:`pdconnect.rest` and the sandbox identity server's records (issue 10), and builds each one
carrying secrets (integration keys, webhook secrets, REST and OAuth tokens, client secrets,
authorization codes, PKCE verifiers, Fernet keys, signing keys, database passwords, lease
tokens). The errors of the OAuth and REST modules are built too, from what they carry, and
their ``str()`` and ``repr()`` checked the same way. ``repr()`` may show a secret's last four characters, as
python-pagerduty does, and nothing more of it. A public type without a builder here fails
the walk, so a new one cannot slip by.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import pkgutil
import re
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import example, given
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
REFRESH_TOKEN = "pdus+_1Kq7Wd3Mz9Tb5Nc"
ID_TOKEN = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJQVTEifQ.c2lnbmF0dXJlLXNlY3JldA"
CLIENT_SECRET = "cs-Yp4Ru8Ie2Wo6Qa0Zx"
AUTH_CODE = "code-Fv3Gb7Hn1Jm5Kl9"
VERIFIER = "pkce-Tg6Yh2Uj8Ik4Ol0Pz"
STATE = "state-Bw5Nq1Mx7Lc3Kv9Jd"
SECRETS = [
    KEY,
    WEBHOOK_SECRET,
    REST_TOKEN,
    OAUTH_TOKEN,
    SIGNING_KEY,
    FLASK_SECRET,
    PASSWORD,
    LEASE_TOKEN,
    BEARER,
    REFRESH_TOKEN,
    ID_TOKEN,
    CLIENT_SECRET,
    AUTH_CODE,
    VERIFIER,
    STATE,
]
# Two real Fernet keys (what PDCONNECT_TOKEN_KEYS holds), fixed so a leak is reproducible.
FERNET_KEYS = ["KNtZbHuOlCFNJefq_HLCF-SdBKuKD808eult5kNCMM0=", "ywI4Uc7yeN4uwi6HT7E4TIVD2g9p-qMlroJOUER91uE="]
SECRETS += FERNET_KEYS

#: Modules whose every exported name is walked, wherever it is defined.
EXPORTING = [
    "pdconnect",
    "pdconnect.flask",
    "pdconnect.webhooks",
    "pdconnect.sandbox",
    "pdconnect.oauth",
    "pdconnect.sandbox.identity",
]


def _submodules(package: str) -> list[str]:
    path = importlib.import_module(package).__path__
    return sorted(f"{package}.{info.name}" for info in pkgutil.iter_modules(path))


#: Modules whose public types defined in them are walked (new modules of these packages too).
DEFINING = [
    "pdconnect.outbox",
    "pdconnect.worker",
    "pdconnect.alertmanager_bridge",
    *_submodules("pdconnect.oauth"),
    *_submodules("pdconnect.rest"),
    "pdconnect.sandbox.identity.model",
    "pdconnect.sandbox.identity.keys",
    "pdconnect.sandbox.identity.core",
]
MODULES = [*EXPORTING, *DEFINING]


def _public_classes(*, errors: bool) -> Iterator[tuple[str, type]]:
    """``(dotted name, class)`` of every public class (or every error class), each class once."""
    seen: set[type] = set()
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
        for name in names:
            value = getattr(module, name)
            defined_here = module_name in EXPORTING or getattr(value, "__module__", None) == module_name
            if not (inspect.isclass(value) and defined_here) or value in seen:
                continue
            if issubclass(value, BaseException) == errors:
                seen.add(value)
                yield f"{module_name}.{name}", value


def _public_types() -> Iterator[tuple[str, type]]:
    return _public_classes(errors=False)


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


# -- OAuth, credentials and the per-account REST client (issue 10) ---------------------------


def _oauth_app() -> Any:
    from pdconnect.oauth import OAuthApp

    return OAuthApp(
        client_id="cid-1",
        client_secret=CLIENT_SECRET,
        redirect_uri="https://vendor.example/pagerduty/oauth/callback",
        kind="classic",
        scopes=("read", "write"),
    )


def _oauth() -> Any:
    from pdconnect import MemoryNonceStore
    from pdconnect.oauth import PagerDutyOAuth

    return PagerDutyOAuth(_oauth_app(), secret=SIGNING_KEY, nonces=MemoryNonceStore())


def _tokens() -> Any:
    from pdconnect.oauth import TokenSet

    return TokenSet(
        access_token=OAUTH_TOKEN,
        refresh_token=REFRESH_TOKEN,
        expires_at=9e9,
        scopes=frozenset({"openid", "read", "write"}),
        id_token=ID_TOKEN,
    )


def _account() -> Any:
    from pdconnect.oauth import AccountIdentity

    return AccountIdentity(
        subdomain="acme",
        account_id="PACC001",
        user_id="PUSR001",
        delegation_id="PDEL001",
        region="us",
        rest_base_url="https://api.pagerduty.com",
        events_base_url="https://events.pagerduty.com",
    )


def _credential(**changes: Any) -> Any:
    from pdconnect.oauth.credentials import new_credential

    credential = new_credential("org-1", _account(), _tokens())
    return dataclasses.replace(credential, **changes) if changes else credential


def _memory_credentials() -> Any:
    from pdconnect.oauth import MemoryCredentialStore

    store = MemoryCredentialStore()
    store.save("org-1", _account(), _tokens())
    return store


def _refresher() -> Any:
    from pdconnect.oauth import TokenRefresher

    return TokenRefresher(_memory_credentials(), _oauth())


@builder("pdconnect.oauth.OAuthApp")
def _b_oauth_app() -> Any:
    return [_oauth_app(), dataclasses.replace(_oauth_app(), client_secret=None)]


@builder("pdconnect.oauth.PagerDutyOAuth")
def _b_oauth() -> Any:
    return _oauth()


@builder("pdconnect.oauth.TokenSet")
def _b_tokens() -> Any:
    return [_tokens(), dataclasses.replace(_tokens(), refresh_token=None, id_token=None)]


@builder("pdconnect.oauth.AuthorizeRequest")
def _b_authorize_request() -> Any:
    from pdconnect.oauth import AuthorizeRequest

    made = _oauth().authorize(owner_id="org-1", session_binding=SIGNING_KEY[::-1])
    return [made, AuthorizeRequest(url=f"https://identity.pagerduty.com/oauth/authorize?state={STATE}", state=STATE)]


@builder("pdconnect.oauth.authorize.Callback")
def _b_callback() -> Any:
    from pdconnect.oauth.authorize import Callback

    return Callback(code=AUTH_CODE, state=STATE)


@builder("pdconnect.oauth.Authorized")
def _b_authorized() -> Any:
    from pdconnect.oauth import Authorized

    return Authorized(owner_id="org-1", tokens=_tokens(), account=_account(), return_to="/settings")


@builder("pdconnect.oauth.TokenCipher")
def _b_cipher() -> Any:
    from pdconnect.oauth import TokenCipher

    return [TokenCipher(FERNET_KEYS), TokenCipher([key.encode() for key in FERNET_KEYS[:1]])]


@builder("pdconnect.oauth.Credential")
def _b_credential() -> Any:
    from datetime import UTC, datetime

    marked = _credential(
        needs_reauthorization_since=datetime.now(UTC),
        needs_reauthorization_reason="PagerDuty refused the refresh token (invalid_grant)",
    )
    return [_credential(), marked, str(marked)]


@builder("pdconnect.oauth.credentials.CredentialLock")
def _b_lock() -> Any:
    from pdconnect.oauth.credentials import CredentialLock

    return [CredentialLock(_credential(), lambda c, t: None, lambda c, r: None), CredentialLock(None, print, print)]


@builder("pdconnect.oauth.MemoryCredentialStore")
def _b_memory_credentials() -> Any:
    return _memory_credentials()


@builder("pdconnect.oauth.SqlCredentialStore")
def _b_sql_credentials() -> Any:
    from pdconnect.oauth import SqlCredentialStore, TokenCipher

    return [
        SqlCredentialStore(URL, cipher=TokenCipher(FERNET_KEYS), create_tables=False),
        SqlCredentialStore(URL, insecure_plaintext=True, create_tables=False),
    ]


@builder("pdconnect.oauth.TokenRefresher")
def _b_refresher() -> Any:
    return _refresher()


@builder("pdconnect.oauth.state.OpenedState")
def _b_opened_state() -> Any:
    from pdconnect.oauth.state import OpenedState

    return OpenedState(nonce=STATE, owner_id="org-1", verifier=VERIFIER, return_to="/settings", issued_at=0.0)


@builder("pdconnect.oauth.state.OAuthStates")
def _b_states() -> Any:
    from pdconnect import MemoryNonceStore
    from pdconnect.oauth.state import OAuthStates

    return OAuthStates([SIGNING_KEY, FLASK_SECRET], nonces=MemoryNonceStore())


@builder("pdconnect.oauth.tokens.TokenRequest")
def _b_token_request() -> Any:
    from pdconnect.oauth.tokens import TokenRequest

    form = {"grant_type": "authorization_code", "code": AUTH_CODE, "code_verifier": VERIFIER}
    form |= {"client_secret": CLIENT_SECRET, "refresh_token": REFRESH_TOKEN}
    return TokenRequest(grant_type="authorization_code", form=form, requested=frozenset({"read"}))


@builder("pdconnect.oauth.http.Requester", "pdconnect.oauth.jwks.JwksCache")
def _b_requester() -> Any:
    oauth = _oauth()
    return [oauth._requester, oauth.keys]


@builder("pdconnect.rest.client.AccountRestClient")
def _b_rest_client() -> Any:
    from pdconnect.rest.client import AccountRestClient

    return AccountRestClient(_refresher(), "org-1", "PACC001")


@builder("pdconnect.rest.subscriptions.NewSubscription")
def _b_new_subscription() -> Any:
    from pdconnect.rest.subscriptions import NewSubscription, WebhookSubscription

    made = NewSubscription(WebhookSubscription(id="PSUB1", url="https://vendor.example/hook"), WEBHOOK_SECRET)
    return [made, str(made)]


@builder("pdconnect.oauth.connection.AccountConnections")
def _b_connections() -> Any:
    from pdconnect import MemoryIntegrationStore
    from pdconnect.oauth.connection import AccountConnections
    from pdconnect.webhooks import MemoryWebhookSecretStore

    refresher = _refresher()
    secrets = MemoryWebhookSecretStore()
    secrets.register("PSUB1", WEBHOOK_SECRET)
    return AccountConnections(
        _oauth(),
        refresher.store,
        refresher,
        secrets,
        MemoryIntegrationStore(),
        webhook_url=f"https://vendor.example/pagerduty/webhooks?token={BEARER}",
    )


@builder("pdconnect.sandbox.identity.Identity", "pdconnect.sandbox.identity.core.Core")
def _b_identity() -> Any:
    from pdconnect.sandbox.identity import AccountInfo, Identity

    identity = Identity(base_url=lambda: "http://127.0.0.1:1", accounts=lambda s: AccountInfo(id=s, region="us"))
    _seed_identity(identity.core.registry)
    return [identity, identity.core]


def _seed_identity(registry: Any) -> Any:
    """A registry holding an app with its secret, a code, an authorisation and its two tokens."""
    from pdconnect.sandbox.identity.model import Authorization, Code, IdentityUser, OAuthApp, Token

    app = OAuthApp(
        client_id="cid-1",
        client_secret=CLIENT_SECRET,
        account_id="acme",
        name="Acme",
        kind="classic",
        redirect_urls=("https://vendor.example/cb",),
        scopes=frozenset({"read", "write"}),
        access_token_seconds=3600,
        refresh_token_seconds=86400,
        window_seconds=86400,
    )
    registry.apps[app.client_id] = app
    registry.users["PUSR001"] = IdentityUser(id="PUSR001", account_id="acme", name="Ann", email="a@x", role="admin")
    registry.codes[AUTH_CODE] = Code(
        value=AUTH_CODE,
        client_id="cid-1",
        redirect_uri="https://vendor.example/cb",
        account_id="acme",
        user_id="PUSR001",
        scopes=frozenset({"read"}),
        challenge=VERIFIER,
        nonce=None,
        expires_at=9e9,
    )
    registry.authorizations["PDEL001"] = Authorization(
        delegation_id="PDEL001",
        client_id="cid-1",
        account_id="acme",
        user_id="PUSR001",
        scopes=frozenset(),
        created_at=0,
    )
    for value, kind in ((OAUTH_TOKEN, "access"), (REFRESH_TOKEN, "refresh")):
        registry.tokens[value] = Token(
            value=value, kind=kind, delegation_id="PDEL001", scopes=frozenset(), expires_at=9e9
        )
    return registry


@builder("pdconnect.sandbox.identity.model.Registry")
def _b_registry() -> Any:
    from pdconnect.sandbox.identity.model import Registry

    registry = _seed_identity(Registry())
    return [registry, *registry.apps.values(), *registry.codes.values(), *registry.tokens.values()]


@builder("pdconnect.sandbox.identity.OAuthApp")
def _b_sandbox_app() -> Any:
    from pdconnect.sandbox.identity.model import Registry

    return list(_seed_identity(Registry()).apps.values())


@builder("pdconnect.sandbox.identity.model.Code")
def _b_sandbox_code() -> Any:
    from pdconnect.sandbox.identity.model import Registry

    return list(_seed_identity(Registry()).codes.values())


@builder("pdconnect.sandbox.identity.model.Token")
def _b_sandbox_token() -> Any:
    from pdconnect.sandbox.identity.model import Registry

    return list(_seed_identity(Registry()).tokens.values())


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
    "pdconnect.oauth.AccountIdentity": lambda: _account(),
    "pdconnect.rest.subscriptions.WebhookSubscription": lambda: __import__(
        "pdconnect.rest.subscriptions"
    ).rest.subscriptions.WebhookSubscription(id="PSUB1", url="https://vendor.example/hook"),
    # Reviewed, nothing secret: counts, file paths, and what PagerDuty's webhooks tell.
    "pdconnect.outbox.OutboxStats": None,
    "pdconnect.sandbox.TlsFiles": None,
    "pdconnect.webhooks.IncidentInfo": None,
    "pdconnect.webhooks.IncidentState": None,
    "pdconnect.webhooks.Reference": None,
    "pdconnect.oauth.connection.Disconnected": None,
    "pdconnect.sandbox.identity.AccountInfo": None,
    "pdconnect.sandbox.identity.Grant": None,
    "pdconnect.sandbox.identity.UserInfo": None,
    "pdconnect.sandbox.identity.model.IdentityUser": None,
    "pdconnect.sandbox.identity.model.Authorization": None,
    "pdconnect.sandbox.identity.keys.SigningKeys": None,
}


def _known(table: dict[str, Any], name: str, cls: type) -> str | None:
    """The key of ``table`` for ``cls``: its exported name, or where it is defined (a package may
    start re-exporting a name after its builder was written under the module's)."""
    for key in (name, f"{cls.__module__}.{cls.__qualname__}"):
        if key in table:
            return key
    return None


def _instances(name: str, cls: type) -> list[Any]:
    built, plain = _known(BUILDERS, name, cls), _known(NO_SECRETS, name, cls)
    build = BUILDERS[built] if built is not None else NO_SECRETS[plain] if plain is not None else None
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
        if _known(BUILDERS, name, cls) is not None or _known(NO_SECRETS, name, cls) is not None:
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


# -- the OAuth and REST errors: built from what they carry, as the code raises them -----------------

ERROR_MODULES = ("pdconnect.oauth", "pdconnect.rest")


def _raised(call: Callable[[], object]) -> BaseException:
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError(f"{call} raised nothing")


def _response(status: int, message: str, *, token: str = OAUTH_TOKEN) -> Any:
    from pdconnect.transport import HttpResponse

    echoed = {"error": {"message": message, "code": 2010, "errors": [f"{message} (again)", token]}}
    return HttpResponse(status=status, body=json.dumps(echoed).encode())


def _rest_error(status: int) -> BaseException:
    from pdconnect.rest.answers import error_for

    said = f"token {OAUTH_TOKEN} refresh {REFRESH_TOKEN} is not allowed"
    return error_for(_response(status, said), "GET", "/services", scope="services.read", credential=_credential())


def _token_answer(status: int, body: bytes) -> BaseException:
    from pdconnect.oauth.tokens import read_token_answer

    hide = [AUTH_CODE, VERIFIER, CLIENT_SECRET, REFRESH_TOKEN]
    return _raised(lambda: read_token_answer(status, body, now=0.0, requested=frozenset(), hide=hide))


def _e_oauth_refused() -> list[BaseException]:
    echo = f"code {AUTH_CODE} verifier {VERIFIER} secret {CLIENT_SECRET} refresh {REFRESH_TOKEN}"
    body = json.dumps({"error": "invalid_grant", "error_description": echo}).encode()
    return [_token_answer(400, body), _token_answer(401, body.replace(b"invalid_grant", b"invalid_client"))]


def _e_token_endpoint() -> list[BaseException]:
    return [
        _token_answer(500, f'{{"access_token": "{OAUTH_TOKEN}", "refresh_token": "{REFRESH_TOKEN}"}}'.encode()),
        _token_answer(200, f'{{"access_token": "{OAUTH_TOKEN}", "token_type": "mac"}}'.encode()),
        _token_answer(200, f'{{"access_token": "{OAUTH_TOKEN}", "token_type": "bearer", "expires_in": "x"}}'.encode()),
        _token_answer(
            200,
            f'{{"access_token": "{OAUTH_TOKEN}", "token_type": "bearer", "expires_in": 60, "id_token": "{VERIFIER}"}}'.encode(),
        ),
        _token_answer(200, f'{{"access_token": "{OAUTH_TOKEN}\\n{REFRESH_TOKEN}", "token_type": "bearer"}}'.encode()),
        _token_answer(200, OAUTH_TOKEN.encode()),
    ]


def _e_id_token() -> list[BaseException]:
    from pdconnect.oauth.id_token import verify_id_token

    oauth = _oauth()
    return [
        _raised(lambda token=token: verify_id_token(token, app=oauth.app, keys=oauth.keys, now=0.0))
        for token in (ID_TOKEN, OAUTH_TOKEN, f"{ID_TOKEN}.{REFRESH_TOKEN}")
    ]


def _e_reauthorization() -> list[BaseException]:
    from pdconnect.oauth import NeedsReauthorization

    store = _memory_credentials()
    marked = store.mark_needs_reauthorization(
        "org-1", "PACC001", f"PagerDuty refused {REFRESH_TOKEN} and {OAUTH_TOKEN} (invalid_grant)"
    )
    return [NeedsReauthorization(marked)]


def _e_decryption() -> list[BaseException]:
    from pdconnect.oauth import TokenCipher

    sealed = TokenCipher(FERNET_KEYS[:1]).encrypt(OAUTH_TOKEN)
    return [
        _raised(lambda: TokenCipher(FERNET_KEYS[1:]).decrypt(sealed)),
        _raised(lambda: TokenCipher(FERNET_KEYS).decrypt(OAUTH_TOKEN)),
    ]


def _e_unsafe_rest_url() -> list[BaseException]:
    from pdconnect.rest.paths import rest_url

    return [
        _raised(lambda path=path: rest_url(_credential(), path))
        for path in (f"https://evil.example/?token={OAUTH_TOKEN}", f"/services?{REFRESH_TOKEN}", f"//{BEARER}")
    ]


def _e_webhook_setup() -> list[BaseException]:
    from pdconnect.oauth.connection import WebhookSetupFailed

    cause = _rest_error(403)
    assert isinstance(cause, Exception)
    return [WebhookSetupFailed(_credential(), cause)]  # type: ignore[arg-type]


ERROR_BUILDERS: dict[str, Callable[[], list[BaseException]]] = {
    "pdconnect.oauth.OAuthError": lambda: [_e_oauth_refused()[0]],
    "pdconnect.oauth.OAuthCancelled": lambda: [__import__("pdconnect.oauth").oauth.OAuthCancelled(STATE)],
    "pdconnect.oauth.OAuthRefused": _e_oauth_refused,
    "pdconnect.oauth.TokenEndpointError": _e_token_endpoint,
    "pdconnect.oauth.IdTokenInvalid": _e_id_token,
    "pdconnect.oauth.JwksUnavailable": lambda: [__import__("pdconnect.oauth").oauth.JwksUnavailable("no keys")],
    "pdconnect.oauth.MissingScopes": lambda: [
        __import__("pdconnect.oauth").oauth.MissingScopes(missing=["write"], granted=["openid"])
    ],
    "pdconnect.oauth.CredentialNotFound": lambda: [_raised(lambda: _refresher().fresh_token("org-2", "PACC001"))],
    "pdconnect.oauth.NeedsReauthorization": _e_reauthorization,
    "pdconnect.oauth.cipher.TokenDecryptionError": _e_decryption,
    "pdconnect.rest.errors.RestError": lambda: [_rest_error(400), _rest_error(302)],
    "pdconnect.rest.errors.RestUnavailable": lambda: [_rest_error(429), _rest_error(503)],
    "pdconnect.rest.errors.NotFound": lambda: [_rest_error(404)],
    "pdconnect.rest.errors.Forbidden": lambda: [_rest_error(403)],
    "pdconnect.rest.errors.UnsafeRestURL": _e_unsafe_rest_url,
    "pdconnect.oauth.connection.WebhookSetupFailed": _e_webhook_setup,
    "pdconnect.oauth.connection.InstallAccountMismatch": lambda: [
        __import__("pdconnect.oauth.connection").oauth.connection.InstallAccountMismatch("other", ["acme"])
    ],
}

ERRORS = sorted(
    (name, cls) for name, cls in _public_classes(errors=True) if name.startswith(tuple(f"{m}." for m in ERROR_MODULES))
)


@pytest.mark.parametrize(("name", "cls"), ERRORS, ids=[name for name, _ in ERRORS])
def test_errors_hide_every_secret(name: str, cls: type) -> None:
    """``str``, ``repr``, ``args`` and the traceback of each error, as the code raises it."""
    known = _known(ERROR_BUILDERS, name, cls)
    assert known is not None, f"build {name} from what it carries in test_repr_secrets.py"
    for error in ERROR_BUILDERS[known]():
        assert isinstance(error, cls), f"{name}: the builder made {error!r}"
        said = "\n".join([str(error), repr(error), repr(error.args), *traceback.format_exception(error)])
        for secret in SECRETS:
            assert leaked(secret, said) is None, f"{name}: {said}"


@pytest.mark.parametrize(
    "keys",
    [
        [FERNET_KEYS[0][:-2] + "!="],  # one character off
        [FERNET_KEYS[0], FERNET_KEYS[1][1:]],  # the second one cut
        [FERNET_KEYS[0] + FERNET_KEYS[1]],  # two run together
        [f" {FERNET_KEYS[0]}\x00"],
        [FERNET_KEYS[0].encode() + b"\xff"],
    ],
)
def test_a_wrong_token_key_is_refused_without_quoting_it(keys: list[Any]) -> None:
    from pdconnect.errors import ConfigError
    from pdconnect.oauth import TokenCipher

    with pytest.raises(ConfigError) as raised:
        TokenCipher(keys)
    said = "\n".join([str(raised.value), repr(raised.value), *traceback.format_exception(raised.value)])
    for key in FERNET_KEYS:
        assert leaked(key, said) is None, said


TOKENS = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=12, max_size=200)


@example(access=OAUTH_TOKEN, refresh=f"Secret-{OAUTH_TOKEN}")  # one token inside the other:
@example(access=f"Secret-{REFRESH_TOKEN}", refresh=REFRESH_TOKEN)  # the longer one is cut first
@given(access=TOKENS, refresh=TOKENS)
def test_reprs_and_rest_errors_do_not_depend_on_the_tokens(access: str, refresh: str) -> None:
    """Whatever the tokens, the reprs and a REST error echoing them read the same as for fixed ones."""
    from pdconnect.oauth import MemoryCredentialStore, NeedsReauthorization
    from pdconnect.rest.answers import error_for

    def said(access: str, refresh: str) -> list[str]:
        tokens = dataclasses.replace(_tokens(), access_token=access, refresh_token=refresh)
        store = MemoryCredentialStore()
        credential = store.save("org-1", _account(), tokens)
        marked = store.mark_needs_reauthorization("org-1", "PACC001", f"refused {refresh} / {access}")
        assert marked is not None
        echo = f"the token {access} (refresh {refresh}) is not allowed"
        shown = [repr(tokens), repr(credential), repr(marked), str(NeedsReauthorization(marked))]
        for status in (400, 403, 404, 503):
            error = error_for(
                _response(status, echo, token=access), "GET", "/services", scope="services.read", credential=credential
            )
            shown += [str(error), repr(error.errors)]
        return [re.sub(r"\d{4}-\d\d-\d\dT[\d:.+]+", "<time>", text) for text in shown]

    assert said(access, refresh) == said(OAUTH_TOKEN, REFRESH_TOKEN)
