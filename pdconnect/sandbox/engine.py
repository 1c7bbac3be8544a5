"""The sandbox's behaviour: PagerDuty's events semantics, incidents, handshakes and webhooks.

:class:`Sandbox` holds the state and does everything the pages and endpoints offer; the WSGI
layer (:mod:`pdconnect.sandbox.app`) only turns HTTP into calls on it. Semantics follow
``pagerduty-protocols.md``:

- a trigger opens an alert (and an incident) for its ``(routing key, dedup key)``, or adds
  to the open one; acknowledge and resolve act on the open alert and are dropped, still
  with 202, when none is open; a trigger after a resolve opens a new incident; events sent
  through another key never touch it;
- keys are limited to ``rate_limit`` events a minute (429 on v2, 403 on the legacy API);
- every incident change is sent to the matching webhook subscriptions.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from pdconnect.sandbox import subscriptions as subs
from pdconnect.sandbox import validation
from pdconnect.sandbox.faults import Decision, FaultPlan, Faults, RateLimiter
from pdconnect.sandbox.model import (
    REGIONS,
    Account,
    Alert,
    ApiKey,
    App,
    ChangeEvent,
    Delivery,
    EscalationPolicy,
    Incident,
    IntegrationKey,
    Received,
    Ruleset,
    Service,
    Subscription,
    Team,
    User,
    new_api_key,
    new_id,
    new_ruleset_key,
    new_service_key,
    now_iso,
)
from pdconnect.sandbox.store import SandboxStore
from pdconnect.sandbox.webhooks import (
    SUBSCRIBABLE_EVENT_TYPES,
    V3_EVENT_TYPES,
    RetrySchedule,
    WebhookBuilder,
    WebhookDispatcher,
    matching_subscriptions,
)
from pdconnect.urls import add_query_params, is_loopback_host, safe_link_href

if TYPE_CHECKING:  # the identity package imports this module: only its names, for types
    from pdconnect.sandbox.identity import AccountInfo, Identity

#: The answer to a request PagerDuty rate-limits (UNCONFIRMED: the body PagerDuty sends is
#: not documented; this is the shape go-pagerduty's tests use).
THROTTLED = {
    "status": "throttle exceeded",
    "message": "Requests for this service are arriving too quickly.  Please retry later.",
    "errors": ["Enhance Your Calm."],
}
#: What an injected server error answers.
SERVER_ERROR = {"status": "error", "message": "Internal server error (injected by the sandbox)", "errors": []}
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
#: How many of an incident's latest timeline entries keep the event body they came with.
MAX_TIMELINE_BODIES = 100
TIMELINE_BODY_DROPPED = "(body dropped: only the latest 100 entries keep theirs)"
#: ASCII letters, digits and hyphens (``str.isalnum`` would let any script's letters in).
_SUBDOMAIN = re.compile(r"[a-z0-9-]{1,63}")
#: An app id: PagerDuty's look like ``P6LEX1U``. UNCONFIRMED: their exact alphabet and length
#: are not documented; the sandbox takes letters, digits, ``_`` and ``-``, at most 64.
_APP_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: The longest display name (account, service, app, vendor) the sandbox keeps.
#: UNCONFIRMED: PagerDuty documents 255 for service names only; the same bound serves all.
MAX_NAME = 255


def check_name(value: object, what: str, *, maximum: int = MAX_NAME) -> str:
    """``value`` stripped, if it is a usable display name; else :class:`SandboxError` (a 400).

    A name is shown on the sandbox's pages and sent back in handshakes: it must be a string
    of 1 to ``maximum`` characters after stripping, with no control characters, lone
    surrogates, line separators or bidirectional overrides.
    """
    if not isinstance(value, str):
        raise SandboxError(f"{what} must be a string.")
    name = value.strip()
    if not name:
        raise SandboxError(f"{what} cannot be empty.")
    if len(name) > maximum:
        raise SandboxError(f"{what} is longer than {maximum} characters.")
    # Not printable: control and format characters (bidirectional overrides, zero-width
    # spaces), lone surrogates, line separators and unassigned code points.
    if any(not ch.isprintable() and ch != " " for ch in name):
        raise SandboxError(f"{what} cannot contain control or invisible characters.")
    return name


#: The responders every new account starts with, and their roles: two who can act on
#: incidents, one manager who may also create webhook subscriptions through OAuth.
SEED_USERS = (("Alex Responder", "responder"), ("Sam Oncall", "responder"), ("Kim Manager", "manager"))

RESPONDER_ACTIONS = (
    "acknowledge",
    "unacknowledge",
    "resolve",
    "reassign",
    "escalate",
    "delegate",
    "annotate",
    "priority",
)


class SandboxError(Exception):
    """A request the sandbox refuses, with the message its page or JSON answer shows."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Answer:
    """An events endpoint's answer."""

    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class SandboxSettings:
    """How the sandbox behaves; every field can be changed while it runs.

    ``rate_limit`` is events a minute per key (``None``: off). ``account_name_field`` is the
    key of the account name in the install flow's ``config``: PagerDuty's docs show ``Name``,
    the public implementations read ``name`` (UNCONFIRMED which PagerDuty sends); ``both``
    sends both. ``allow_remote_webhooks`` lets subscriptions point off this machine.
    ``max_received`` and ``max_received_bytes`` bound the log of received requests (by count
    and by the bodies' total size; the oldest go first), so a flood cannot fill the memory.
    """

    rate_limit: int | None = 120
    account_name_field: str = "name"
    allow_remote_webhooks: bool = False
    webhook_schedule: RetrySchedule = field(default_factory=RetrySchedule)
    max_received: int = 200_000
    max_received_bytes: int = 256 * 1024 * 1024
    seed: bool = True

    def __post_init__(self) -> None:
        limit = self.rate_limit
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"rate_limit must be a whole number of at least 1, or None; got {limit!r:.40}")
        for name in ("max_received", "max_received_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number of at least 1; got {value!r:.40}")
        if self.account_name_field not in ("name", "Name", "both"):
            raise ValueError("account_name_field must be name, Name or both")


class Sandbox:
    """A local PagerDuty: state, events semantics, responder actions, handshakes, webhooks."""

    def __init__(
        self,
        settings: SandboxSettings | None = None,
        *,
        db_path: str | None = None,
        faults: FaultPlan | None = None,
        clock: Callable[[], float] = time.monotonic,
        identity: Identity | None = None,
    ) -> None:
        self.settings = settings if settings is not None else SandboxSettings()
        self._initial_settings = dataclasses.replace(self.settings)
        self.store = SandboxStore(db_path)
        self.faults = Faults(faults if faults is not None else FaultPlan(), clock=clock)
        self.limiter = RateLimiter(self.settings.rate_limit, clock=clock)
        self.base_url = "http://127.0.0.1"
        self.webhooks = WebhookDispatcher(
            self.store,
            schedule=self.settings.webhook_schedule,
            clock=clock,
            allow_remote=lambda: self.settings.allow_remote_webhooks,
        )
        self.builder = WebhookBuilder(self.store, lambda: self.base_url)
        self._open_alerts: dict[tuple[str, str], str] = {}
        self._numbers: dict[str, int] = {}
        self._received_seq = 0
        self._received_sizes: deque[tuple[str, int]] = deque()  # (record id, body bytes), oldest first
        self._received_bytes = 0
        self._rebuild_indexes()
        #: The identity server (OAuth apps, users and roles, tokens): ``identity.bearer(token)``
        #: resolves the REST API's Bearer tokens. Tests may pass their own.
        self.identity: Identity = identity if identity is not None else _default_identity(self)
        with self.store.lock:
            for user in self.store.all(User):  # users loaded from a database file
                self._mirror_user(user)
        if self.settings.seed and not self.store.count(Account):
            with self.store.transaction():
                self.seed()

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start delivering webhooks."""
        self.webhooks.start()

    def close(self) -> None:
        self.webhooks.stop()
        self.store.close()

    def _rebuild_indexes(self) -> None:
        with self.store.lock:
            self._open_alerts = {
                (a.routing_key, a.dedup_key): a.id for a in self.store.all(Alert) if a.status == "triggered"
            }
            self._numbers = {}
            for incident in self.store.all(Incident):
                self._numbers[incident.account] = max(self._numbers.get(incident.account, 0), incident.number)
            received = self.store.all(Received)
            self._received_seq = max((r.seq for r in received), default=0)
            self._received_sizes = deque(
                (r.id, len(json.dumps(r.request, default=str))) for r in sorted(received, key=lambda r: r.seq)
            )
            self._received_bytes = sum(size for _, size in self._received_sizes)

    def reset(self, *, seed: bool = True) -> None:
        """Forget everything (faults, rate limits and changed settings too); with ``seed``, start over."""
        with self.store.transaction():
            self.store.clear()
            for name, value in dataclasses.asdict(self._initial_settings).items():
                if name != "webhook_schedule":
                    setattr(self.settings, name, value)
            self.limiter.limit = self.settings.rate_limit
            self.limiter.reset()
            self.faults.set(FaultPlan())
            self._rebuild_indexes()
            self.identity.reset()
            if seed:
                self.seed()
        self.webhooks.reload()

    def seed(self) -> None:
        """The demo account: ``acme`` with three responders, two services, keys and a ruleset."""
        account = self.create_account("acme", "Acme Corp")
        checkout, _ = self.create_service(account.id, "Checkout API")
        self.create_service(account.id, "Database")
        self.create_ruleset(account.id, "Global Event Rules", checkout.id)

    # -- accounts, services, keys, apps ------------------------------------------------------

    def create_account(self, subdomain: str, name: str | None = None, *, region: str | None = None) -> Account:
        """Make an account (in ``region``, ``us`` by default) with three responders, a team and two policies.

        An existing account is returned as it is; asking for it in the other region is a 409.
        """
        subdomain = subdomain.strip().lower() if isinstance(subdomain, str) and subdomain.isascii() else ""
        if not _SUBDOMAIN.fullmatch(subdomain):
            raise SandboxError("A subdomain is letters, digits and hyphens, at most 63 characters.")
        if name is not None:
            name = check_name(name, "An account name")
        if region is not None and region not in REGIONS:
            raise SandboxError("region must be us or eu.")
        with self.store.transaction():
            existing = self.store.get(Account, subdomain)
            if existing is not None:
                if region is not None and existing.region != region:
                    raise SandboxError(f"The account {subdomain} exists in the {existing.region} region.", status=409)
                return existing
            account = Account(id=subdomain, name=name or subdomain.replace("-", " ").title(), region=region or "us")
            self.store.put(account)
            self.store.put(Team(id=new_id(), account=subdomain, name="Operations"))
            users = []
            for display, role in SEED_USERS:
                user = User(
                    id=new_id(),
                    account=subdomain,
                    name=display,
                    email=f"{display.split()[0].lower()}@{subdomain}.example",
                    role=role,
                )
                self.store.put(user)
                users.append(user)
                self._mirror_user(user)
            self.store.put(
                EscalationPolicy(id=new_id(), account=subdomain, name="Default", levels=[users[0].id, users[1].id])
            )
            self.store.put(
                EscalationPolicy(id=new_id(), account=subdomain, name="Management", levels=[users[2].id, users[0].id])
            )
            return account

    def _mirror_user(self, user: User) -> None:
        """Make ``user`` a user of the identity server too, under the same id and with its role.

        So an OAuth sign-in as a seeded responder acts with that responder's role, and the
        ID token's ``user_id`` names the user the incident pages show.
        """
        if self.identity.role_of(user.account, user.id) is not None:
            return
        self.identity.add_user(user.account, name=user.name, email=user.email, role=user.role, user_id=user.id)

    def account_info(self, subdomain: str) -> AccountInfo | None:
        """What the identity server needs to know of an account (its id and region), or ``None``."""
        from pdconnect.sandbox.identity import AccountInfo

        account = self.store.get(Account, subdomain)
        return AccountInfo(id=account.id, region=account.region) if account is not None else None

    def create_api_key(self, account: str, *, read_only: bool = False, description: str = "") -> ApiKey:
        """A new REST API key of ``account`` (full access, or GET only with ``read_only``)."""
        if not isinstance(read_only, bool):
            raise SandboxError("read_only must be true or false.")
        description = check_name(description, "A key description") if description else ""
        with self.store.transaction():
            if self.store.get(Account, account) is None:
                raise SandboxError(f"No account {account[:64]!r}.", status=404)
            key = ApiKey(id=new_api_key(), account=account, read_only=read_only, description=description)
            self.store.put(key)
            return key

    def teams(self, account: str) -> list[Team]:
        return [t for t in self.store.all(Team) if t.account == account]

    def users(self, account: str) -> list[User]:
        return [u for u in self.store.all(User) if u.account == account]

    def policies(self, account: str) -> list[EscalationPolicy]:
        return [p for p in self.store.all(EscalationPolicy) if p.account == account]

    def create_service(
        self, account: str, name: str, *, with_key: bool = True
    ) -> tuple[Service, IntegrationKey | None]:
        """Make a service (with an Events API v2 integration key unless told not to)."""
        name = check_name(name, "A service name")
        with self.store.transaction():
            if self.store.get(Account, account) is None:
                raise SandboxError(f"No account {account!r}.", status=404)
            policy = self.policies(account)[0]
            teams = self.teams(account)
            service = Service(
                id=new_id(),
                account=account,
                name=name,
                escalation_policy=policy.id,
                team=teams[0].id if teams else None,
            )
            self.store.put(service)
            key = self.add_integration(service.id, "events_api_v2", "Events API V2") if with_key else None
            return service, key

    def add_integration(
        self, service_id: str, kind: str, name: str, *, vendor: str | None = None, app_id: str | None = None
    ) -> IntegrationKey:
        with self.store.transaction():
            service = self.store.get(Service, service_id)
            if service is None:
                raise SandboxError(f"No service {service_id!r}.", status=404)
            key = IntegrationKey(
                id=new_service_key(),
                account=service.account,
                service=service.id,
                ruleset=None,
                kind=kind,
                name=name,
                vendor=vendor,
                app_id=app_id,
            )
            self.store.put(key)
            return key

    def set_key_disabled(self, key_id: str, disabled: bool) -> IntegrationKey:
        """Disable (or enable again) an integration key; events sent with a disabled key are refused."""
        with self.store.transaction():
            key = self.store.get(IntegrationKey, key_id)
            if key is None:
                raise SandboxError("No such integration key.", status=404)
            key.disabled = disabled
            self.store.put(key)
            return key

    def delete_key(self, key_id: str) -> IntegrationKey:
        """Delete an integration key for good; its incidents stay, as at PagerDuty."""
        with self.store.transaction():
            key = self.store.get(IntegrationKey, key_id)
            if key is None:
                raise SandboxError("No such integration key.", status=404)
            self.store.delete(IntegrationKey, key_id)
            return key

    def create_ruleset(self, account: str, name: str, target_service: str) -> Ruleset:
        with self.store.transaction():
            ruleset = Ruleset(
                id=new_id(), account=account, name=name, key=new_ruleset_key(), target_service=target_service
            )
            self.store.put(ruleset)
            self.store.put(
                IntegrationKey(
                    id=ruleset.key, account=account, service=None, ruleset=ruleset.id, kind="ruleset", name=name
                )
            )
            return ruleset

    def ruleset_usable(self, ruleset: Ruleset) -> bool:
        """True while the ruleset's routing key exists and is enabled (events sent with it arrive)."""
        key = self.store.get(IntegrationKey, ruleset.key)
        return key is not None and not key.disabled

    def rulesets(self, account: str) -> list[Ruleset]:
        """The account's rulesets whose routing key still takes events."""
        return [r for r in self.store.all(Ruleset) if r.account == account and self.ruleset_usable(r)]

    def services(self, account: str | None = None) -> list[Service]:
        return [s for s in self.store.all(Service) if account is None or s.account == account]

    def keys_of(self, service_id: str) -> list[IntegrationKey]:
        return [k for k in self.store.all(IntegrationKey) if k.service == service_id]

    def register_app(self, app_id: str, redirect_urls: list[str], name: str | None = None) -> App:
        """Register (or replace) an app that may use the install flow with these redirect URLs."""
        if not isinstance(app_id, str) or not _APP_ID.fullmatch(app_id):
            raise SandboxError("An app id is 1 to 64 letters, digits, '_' or '-'.")
        if name is not None:
            name = check_name(name, "An app name")
        for url in redirect_urls:
            if not _is_absolute_http_url(url):
                raise SandboxError(f"Redirect URL {url!r} is not an absolute URL.")
        with self.store.transaction():
            app = App(id=app_id, name=name or f"App {app_id}", redirect_urls=list(redirect_urls))
            self.store.put(app)
            return app

    # -- webhook subscriptions ---------------------------------------------------------------

    def subscribe(
        self,
        url: str,
        *,
        account: str | None = None,
        events: list[str] | None = None,
        filter_type: str = "account_reference",
        filter_id: str | None = None,
        version: str = "v3",
        description: str = "",
        custom_headers: object = None,
    ) -> Subscription:
        """Create a subscription of ``account``; its ``secret`` is shown only in this answer, as at PagerDuty.

        Without ``account`` (the sandbox's own page) the owner is the filtered service's or
        team's account, or the account an ``account_reference`` names, or the first account.
        """
        with self.store.transaction():
            owner = account if account is not None else self._owner_for(filter_type, filter_id)
            try:
                subs.account_of(self.store, owner)
                chosen = self._check_subscription(url, events, version, description)
                kind, target = subs.check_filter(self.store, owner, filter_type, filter_id)
                headers = subs.check_custom_headers(custom_headers)
                subs.check_room(self.store, kind, target)
            except subs.SubscriptionRefused as exc:
                raise SandboxError(exc.message, status=exc.status) from exc
            subscription = Subscription(
                id=new_id(),
                url=url,
                secret=subs.new_secret(),
                events=chosen,
                filter_type=kind,
                filter_id=target,
                version=version,
                description=description,
                account=owner,
                custom_headers=headers,
            )
            self.store.put(subscription)
            return subscription

    def _owner_for(self, filter_type: str, filter_id: str | None) -> str:
        record = self.store.get(Service, filter_id) or self.store.get(Team, filter_id)
        if filter_type in ("service_reference", "team_reference") and record is not None:
            return record.account
        if filter_type == "account_reference" and filter_id is not None:
            return filter_id
        accounts = self.store.all(Account)
        return accounts[0].id if accounts else ""

    def _check_subscription(self, url: str, events: list[str] | None, version: str, description: str) -> list[str]:
        if not isinstance(url, str) or not _is_absolute_http_url(url):
            raise SandboxError("The delivery URL must be an absolute http(s) URL.")
        hostname = urlsplit(url).hostname or ""
        if not self.settings.allow_remote_webhooks and not is_loopback_host(hostname):
            raise SandboxError("The sandbox only delivers webhooks to this machine (localhost or 127.0.0.1).")
        chosen = list(events or V3_EVENT_TYPES)
        unknown = [e for e in chosen if e not in SUBSCRIBABLE_EVENT_TYPES]
        if unknown or not chosen:
            raise SandboxError(f"Unknown event types: {unknown}" if unknown else "Choose at least one event type.")
        if version not in ("v3", "v2"):
            raise SandboxError("version must be v3 or v2")
        if not isinstance(description, str) or len(description) > subs.MAX_DESCRIPTION:
            raise SandboxError(f"description must be a string of at most {subs.MAX_DESCRIPTION} characters.")
        return chosen

    def subscription_of(self, subscription_id: str, account: str) -> Subscription:
        """``account``'s subscription; a 404 for one that is missing or another account's."""
        try:
            return subs.owned(self.store, subscription_id, account)
        except subs.SubscriptionRefused as exc:
            raise SandboxError(exc.message, status=exc.status) from exc

    def update_subscription(self, subscription_id: str, account: str, changes: dict[str, Any]) -> Subscription:
        """``PUT /webhook_subscriptions/{id}``: change description, events, filter, active or custom headers."""
        unknown = set(changes) - {"description", "events", "filter", "active", "custom_headers", "type"}
        if unknown:
            raise SandboxError(f"These fields cannot be updated: {sorted(str(n)[:40] for n in unknown)}")
        with self.store.transaction():
            subscription = self.subscription_of(subscription_id, account)
            events = changes.get("events", subscription.events)
            if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
                raise SandboxError("events must be a list of event types.")
            description = changes.get("description", subscription.description)
            chosen = self._check_subscription(subscription.url, events, subscription.version, description)
            active = changes.get("active", subscription.active)
            if not isinstance(active, bool):
                raise SandboxError("active must be true or false.")
            kind, target = subscription.filter_type, subscription.filter_id
            headers = subscription.custom_headers
            try:
                if "filter" in changes:
                    filter_ = changes["filter"]
                    if not isinstance(filter_, dict):
                        raise SandboxError("filter must be an object.")
                    kind, target = subs.check_filter(self.store, account, filter_.get("type"), filter_.get("id"))
                    subs.check_room(self.store, kind, target, moving=subscription.id)
                if "custom_headers" in changes:
                    headers = subs.check_custom_headers(changes["custom_headers"])
            except subs.SubscriptionRefused as exc:
                raise SandboxError(exc.message, status=exc.status) from exc
            subscription.events, subscription.description, subscription.active = chosen, description, active
            subscription.filter_type, subscription.filter_id, subscription.custom_headers = kind, target, headers
            self.store.put(subscription)
            return subscription

    def enable_subscription(self, subscription_id: str, account: str) -> Subscription:
        """``POST /webhook_subscriptions/{id}/enable``: active again, and no longer temporarily disabled."""
        with self.store.transaction():
            subscription = self.subscription_of(subscription_id, account)
            subscription.active = True
            subscription.disabled_until = None
            subscription.consecutive_drops = 0
            self.store.put(subscription)
            return subscription

    def ping_subscription(self, subscription_id: str, account: str) -> Subscription:
        """``POST /webhook_subscriptions/{id}/ping``: queue one ``pagey.ping`` delivery."""
        with self.store.transaction():
            subscription = self.subscription_of(subscription_id, account)
            body = {
                "event": {
                    "id": str(uuid.uuid4()),
                    "event_type": "pagey.ping",
                    "resource_type": "pagey",
                    "occurred_at": now_iso(),
                    "agent": None,
                    "client": None,
                    "data": {"message": "Hello from your friend Pagey!", "type": "ping"},
                }
            }
            self.webhooks.enqueue(subscription, None, "pagey.ping", body)
            return subscription

    def rotate_secret(self, subscription_id: str) -> Subscription:
        """Start a secret rotation: a new secret signs beside the old one until :meth:`finish_rotation`."""
        with self.store.transaction():
            subscription = self.store.get(Subscription, subscription_id)
            if subscription is None:
                raise SandboxError("No such subscription.", status=404)
            subscription.previous_secret = subscription.previous_secret or subscription.secret
            subscription.secret = subs.new_secret()
            self.store.put(subscription)
            return subscription

    def finish_rotation(self, subscription_id: str) -> Subscription:
        """End a secret rotation: only the new secret signs from now on."""
        with self.store.transaction():
            subscription = self.store.get(Subscription, subscription_id)
            if subscription is None:
                raise SandboxError("No such subscription.", status=404)
            subscription.previous_secret = None
            self.store.put(subscription)
            return subscription

    def unsubscribe(self, subscription_id: str, account: str | None = None) -> None:
        """Delete a subscription (of ``account`` only, when given: another's is a 404)."""
        with self.store.transaction():
            if account is not None:
                self.subscription_of(subscription_id, account)
            elif self.store.get(Subscription, subscription_id) is None:
                raise SandboxError("No such subscription.", status=404)
            self.store.delete(Subscription, subscription_id)

    def _emit(
        self,
        incident: Incident,
        event_type: str,
        *,
        agent: dict[str, Any] | None,
        client: str | None = None,
        note: dict[str, Any] | None = None,
    ) -> None:
        service = self.store.get(Service, incident.service)
        team = service.team if service is not None else None
        for subscription in matching_subscriptions(
            self.store.all(Subscription), incident, event_type, incident.account, team=team
        ):
            if subscription.version == "v3":
                body = self.builder.v3_body(event_type, incident, agent=agent, client=client, note=note)
            else:
                body = self.builder.v2_body(event_type, incident, subscription, agent=agent, note=note)
            self.webhooks.enqueue(subscription, incident, event_type, body)

    # -- the events endpoints ----------------------------------------------------------------

    def fault(self) -> Decision:
        """The injected fault (if any) for the next events request."""
        return self.faults.decide()

    def faulted(self, api: str, path: str, raw: bytes, decision: Decision) -> Answer:
        """Answer a request with the injected status, recording it."""
        assert decision.status is not None
        status = decision.status
        if status == 429 and api == "v1":
            status = 403  # the legacy API rate-limits with 403
        body = THROTTLED if decision.status == 429 else SERVER_ERROR
        headers = {"Retry-After": f"{decision.retry_after:g}"} if decision.retry_after is not None else {}
        with self.store.transaction():
            self._record(path, api, status, raw, None, body, outcome=f"fault: injected {status}")
        return Answer(status, body, headers)

    def handle_alert(self, raw: bytes, *, region: str = "us") -> Answer:
        """``POST /v2/enqueue`` (``/eu/v2/enqueue`` for the EU region)."""
        path = _regional("/v2/enqueue", region)
        return self._handle("v2", path, raw, validation.check_alert, self._apply_alert, region)

    def handle_change(self, raw: bytes, *, region: str = "us") -> Answer:
        """``POST /v2/change/enqueue``."""
        path = _regional("/v2/change/enqueue", region)
        return self._handle("change", path, raw, validation.check_change, self._apply_change, region)

    def handle_legacy(self, raw: bytes, *, region: str = "us") -> Answer:
        """``POST /generic/2010-04-15/create_event.json``."""
        path = _regional("/generic/2010-04-15/create_event.json", region)
        return self._handle("v1", path, raw, validation.check_legacy, self._apply_legacy, region)

    def _in_region(self, key: IntegrationKey, region: str) -> bool:
        account = self.store.get(Account, key.account)
        return account is not None and account.region == region

    def _handle(
        self,
        api: str,
        path: str,
        raw: bytes,
        check: Callable[[dict[str, Any]], list[str]],
        apply: Callable[[dict[str, Any], IntegrationKey], tuple[int, dict[str, Any], str]],
        region: str = "us",
    ) -> Answer:
        with self.store.transaction():
            if len(raw) > validation.MAX_BODY_BYTES:
                body = validation.invalid(["Event object is too large (maximum is 512 KB)"])
                return self._answer(path, api, 400, raw, None, body, "rejected: too large")
            doc = validation.parse_object(raw)
            if doc is None:
                return self._answer(
                    path, api, 400, raw, None, validation.unrecognized(api == "v1"), "rejected: not JSON"
                )
            errors = check(doc)
            if errors:
                return self._answer(path, api, 400, raw, doc, validation.invalid(errors), "rejected: invalid")
            key_name = "service_key" if api == "v1" else "routing_key"
            key = self.store.get(IntegrationKey, doc[key_name])
            if key is not None and not self._in_region(key, region):
                # UNCONFIRMED: what PagerDuty's US events host answers to an EU account's key (and
                # the reverse) is not documented. The regions are separate systems, so the key is
                # unknown there: the same 400 as an unknown key, and nothing gets through.
                body = validation.invalid([f"Invalid {key_name.replace('_', ' ')}"])
                return self._answer(path, api, 400, raw, doc, body, "rejected: key of another region")
            if key is None or key.disabled:
                # UNCONFIRMED: client logs show 400 "Invalid routing key" for keys PagerDuty does not
                # know. A deleted key is one it no longer knows; that a disabled key gets the very
                # same answer is UNCONFIRMED too, and the stricter choice (no event gets through).
                body = validation.invalid([f"Invalid {key_name.replace('_', ' ')}"])
                outcome = "rejected: disabled key" if key is not None else "rejected: unknown key"
                return self._answer(path, api, 400, raw, doc, body, outcome)
            if not self.limiter.allow(key.id):
                status = 403 if api == "v1" else 429
                return self._answer(path, api, status, raw, doc, THROTTLED, "rate limited")
            status, body, outcome = apply(doc, key)
            return self._answer(path, api, status, raw, doc, body, outcome)

    def _answer(
        self,
        path: str,
        api: str,
        status: int,
        raw: bytes,
        doc: dict[str, Any] | None,
        body: dict[str, Any],
        outcome: str,
    ) -> Answer:
        self._record(path, api, status, raw, doc, body, outcome=outcome)
        return Answer(status, body)

    def _record(
        self,
        path: str,
        api: str,
        status: int,
        raw: bytes,
        doc: dict[str, Any] | None,
        response: dict[str, Any] | None,
        *,
        outcome: str,
    ) -> None:
        if doc is None:
            doc = validation.parse_object(raw)
        self._received_seq += 1
        seq = self._received_seq
        key = doc.get("service_key" if api == "v1" else "routing_key") if doc else None
        dedup = doc.get("incident_key" if api == "v1" else "dedup_key") if doc else None
        action = doc.get("event_type" if api == "v1" else "event_action") if doc else None
        record = Received(
            id=f"{seq:012d}",
            seq=seq,
            at=now_iso(),
            path=path,
            api=api,
            status=status,
            routing_key=key if isinstance(key, str) else None,
            dedup_key=dedup if isinstance(dedup, str) else None,
            action="change" if api == "change" else (action if isinstance(action, str) else None),
            outcome=outcome,
            request=doc if doc is not None else raw[:2048].decode("utf-8", errors="replace"),
            response=response,
        )
        self.store.put(record)
        size = len(raw) if doc is not None else min(len(raw), 2048)  # what the record holds
        self._received_sizes.append((record.id, size))
        self._received_bytes += size
        while len(self._received_sizes) > 1 and (
            len(self._received_sizes) > self.settings.max_received
            or self._received_bytes > self.settings.max_received_bytes
        ):
            oldest, size = self._received_sizes.popleft()
            self._received_bytes -= size
            self.store.delete(Received, oldest)

    def _target_service(self, key: IntegrationKey) -> Service:
        service_id = key.service
        if key.ruleset is not None:
            ruleset = self.store.get(Ruleset, key.ruleset)
            service_id = ruleset.target_service if ruleset else None
        service: Service | None = self.store.get(Service, service_id)
        if service is None:
            raise SandboxError("the key's service was deleted", status=400)
        return service

    def _apply_alert(self, doc: dict[str, Any], key: IntegrationKey) -> tuple[int, dict[str, Any], str]:
        action = doc["event_action"]
        dedup_key = doc.get("dedup_key") or uuid.uuid4().hex
        payload = doc.get("payload") or {}
        channel = {
            "type": "events_api_v2",
            "raw": doc,
            "client": doc.get("client"),
            "client_url": doc.get("client_url"),
        }
        outcome = self._apply(
            action,
            key,
            dedup_key,
            summary=payload.get("summary"),
            severity=payload.get("severity"),
            source=payload.get("source"),
            details=_object_or_empty(payload.get("custom_details")),
            client=doc.get("client"),
            client_url=doc.get("client_url"),
            channel=channel,
        )
        return 202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key}, outcome

    def _apply_legacy(self, doc: dict[str, Any], key: IntegrationKey) -> tuple[int, dict[str, Any], str]:
        action = doc["event_type"]
        incident_key = doc.get("incident_key") or uuid.uuid4().hex
        channel = {
            "type": "generic_events_api_v1",
            "raw": doc,
            "client": doc.get("client"),
            "client_url": doc.get("client_url"),
            "vendor": doc.get("vendor"),
        }
        outcome = self._apply(
            action,
            key,
            incident_key,
            summary=doc.get("description"),
            severity="error",
            source=None,
            details=_object_or_empty(doc.get("details")),
            client=doc.get("client"),
            client_url=doc.get("client_url"),
            channel=channel,
        )
        return 200, {"status": "success", "message": "Event processed", "incident_key": incident_key}, outcome

    def _apply_change(self, doc: dict[str, Any], key: IntegrationKey) -> tuple[int, dict[str, Any], str]:
        if key.ruleset is not None:
            body = validation.invalid(["Change events cannot be sent to a ruleset routing key"])
            return 400, body, "rejected: ruleset key"
        service = self._target_service(key)
        change = ChangeEvent(
            id=new_id("C", 12),
            service=service.id,
            routing_key=key.id,
            summary=doc["payload"]["summary"],
            received_at=now_iso(),
            raw=doc,
        )
        self.store.put(change)
        return 202, {"status": "success", "message": "Change event processed"}, f"change event on {service.id}"

    def _apply(
        self,
        action: str,
        key: IntegrationKey,
        dedup_key: str,
        *,
        summary: str | None,
        severity: str | None,
        source: str | None,
        details: dict[str, Any],
        client: str | None,
        client_url: str | None,
        channel: dict[str, Any],
    ) -> str:
        open_id = self._open_alerts.get((key.id, dedup_key))
        alert = self.store.get(Alert, open_id)
        service = self._target_service(key)
        agent = self.builder.service_ref(service.id)
        if action == "trigger":
            if alert is not None:
                incident = self.store.get(Incident, alert.incident)
                assert incident is not None
                self._log(incident, "trigger_log_entry", f"Trigger event deduplicated: {summary}", channel)
                return f"deduplicated into {incident.id}"
            incident = self._open_incident(key, service, dedup_key, summary or "", severity or "error", source, channel)
            alert = Alert(
                id=new_id("A", 13),
                incident=incident.id,
                routing_key=key.id,
                dedup_key=dedup_key,
                status="triggered",
                summary=(summary or "")[: validation.MAX_SUMMARY],
                severity=severity or "error",
                source=source,
                created_at=now_iso(),
                details=details,
                client=client,
                client_url=client_url,
            )
            incident.alerts.append(alert.id)
            self.store.put(alert)
            self.store.put(incident)
            self._open_alerts[(key.id, dedup_key)] = alert.id
            self._emit(incident, "incident.triggered", agent=agent, client=client)
            return f"created {incident.id}"
        if alert is None:
            return "dropped: no open alert with this key"
        incident = self.store.get(Incident, alert.incident)
        assert incident is not None
        if action == "acknowledge":
            self._log(incident, "acknowledge_log_entry", "Acknowledged through the API", channel)
            if incident.status == "triggered":
                self._set_status(incident, "acknowledged")
                self._emit(incident, "incident.acknowledged", agent=agent)
            return f"acknowledged {incident.id}"
        self._resolve_alert(alert)
        self._log(incident, "resolve_log_entry", "Resolved through the API", channel)
        if all(self._alert_resolved(a) for a in incident.alerts) and incident.status != "resolved":
            self._set_status(incident, "resolved")
            self._emit(incident, "incident.resolved", agent=agent)
        return f"resolved {incident.id}"

    def _alert_resolved(self, alert_id: str) -> bool:
        alert = self.store.get(Alert, alert_id)
        return alert is None or alert.status == "resolved"

    def _resolve_alert(self, alert: Alert) -> None:
        alert.status = "resolved"
        alert.resolved_at = now_iso()
        self._open_alerts.pop((alert.routing_key, alert.dedup_key), None)
        self.store.put(alert)

    def _open_incident(
        self,
        key: IntegrationKey,
        service: Service,
        dedup_key: str,
        summary: str,
        severity: str,
        source: str | None,
        channel: dict[str, Any],
    ) -> Incident:
        policy = self.store.get(EscalationPolicy, service.escalation_policy)
        assert policy is not None
        number = self._numbers.get(service.account, 0) + 1
        self._numbers[service.account] = number
        stamp = now_iso()
        incident = Incident(
            id=new_id("Q", 13),
            number=number,
            account=service.account,
            service=service.id,
            title=summary[: validation.MAX_SUMMARY],
            status="triggered",
            urgency=validation.urgency(severity),
            incident_key=dedup_key,
            escalation_policy=policy.id,
            escalation_level=1,
            assignees=[policy.levels[0]],
            created_at=stamp,
            updated_at=stamp,
        )
        detail = f"Triggered through the API by {channel.get('client') or 'an unnamed client'}"
        if source:
            detail += f" (source {source})"
        self._log(incident, "trigger_log_entry", detail, channel)
        return incident

    def _log(
        self, incident: Incident, kind: str, summary: str, channel: dict[str, Any] | None, agent: str | None = None
    ) -> None:
        incident.timeline.append(
            {"at": now_iso(), "type": kind, "summary": summary, "agent": agent, "channel": channel}
        )
        # Each deduplicated trigger adds an entry with its body (up to 512 KB): only the latest
        # keep theirs, or one noisy alert would grow its incident without bound.
        if len(incident.timeline) > MAX_TIMELINE_BODIES:
            older = incident.timeline[-MAX_TIMELINE_BODIES - 1].get("channel")
            if isinstance(older, dict) and "raw" in older:
                older["raw"] = TIMELINE_BODY_DROPPED
        incident.updated_at = now_iso()
        self.store.put(incident)

    def _set_status(self, incident: Incident, status: str) -> None:
        incident.status = status
        incident.updated_at = now_iso()
        if status == "resolved":
            incident.resolved_at = incident.updated_at
        if status != "acknowledged":
            incident.acknowledgers = []
        self.store.put(incident)

    # -- responder actions -------------------------------------------------------------------

    def act(self, incident_id: str, action: str, *, user_id: str | None = None, **options: str) -> Incident:
        """Do what a responder does in PagerDuty's web app.

        ``action`` is one of :data:`RESPONDER_ACTIONS`; ``reassign`` takes ``assignee``
        (a user id), ``delegate`` takes ``escalation_policy``, ``annotate`` takes ``note``
        and ``priority`` takes ``priority`` (``P1`` to ``P5``).
        """
        if action not in RESPONDER_ACTIONS:
            raise SandboxError(f"Unknown action {action!r}.")
        with self.store.transaction():
            incident = self.store.get(Incident, incident_id)
            if incident is None:
                raise SandboxError("No such incident.", status=404)
            users = self.users(incident.account)
            actor = self.store.get(User, user_id) if user_id else (users[0] if users else None)
            if actor is None or actor.account != incident.account:
                raise SandboxError("Unknown responder.")
            agent = self.builder.user_ref(actor.id)
            getattr(self, f"_do_{action}")(incident, actor, agent, options)
            return incident

    def _require_open(self, incident: Incident) -> None:
        if incident.status == "resolved":
            raise SandboxError("The incident is already resolved.", status=409)

    def _do_acknowledge(self, incident: Incident, actor: User, agent: dict[str, Any], options: dict[str, str]) -> None:
        self._require_open(incident)
        self._set_status(incident, "acknowledged")
        if actor.id not in incident.acknowledgers:
            incident.acknowledgers.append(actor.id)
        self._log(incident, "acknowledge_log_entry", f"Acknowledged by {actor.name}", None, actor.id)
        self._emit(incident, "incident.acknowledged", agent=agent)

    def _do_unacknowledge(
        self, incident: Incident, actor: User, agent: dict[str, Any], options: dict[str, str]
    ) -> None:
        if incident.status != "acknowledged":
            raise SandboxError("Only an acknowledged incident can be unacknowledged.", status=409)
        self._set_status(incident, "triggered")
        self._log(incident, "unacknowledge_log_entry", f"Unacknowledged by {actor.name}", None, actor.id)
        self._emit(incident, "incident.unacknowledged", agent=agent)

    def _do_resolve(self, incident: Incident, actor: User, agent: dict[str, Any], options: dict[str, str]) -> None:
        self._require_open(incident)
        for alert_id in incident.alerts:
            alert = self.store.get(Alert, alert_id)
            if alert is not None and alert.status != "resolved":
                self._resolve_alert(alert)
        self._set_status(incident, "resolved")
        self._log(incident, "resolve_log_entry", f"Resolved by {actor.name}", None, actor.id)
        self._emit(incident, "incident.resolved", agent=agent)

    def _do_reassign(self, incident: Incident, actor: User, agent: dict[str, Any], options: dict[str, str]) -> None:
        self._require_open(incident)
        assignee = self.store.get(User, options.get("assignee"))
        if assignee is None or assignee.account != incident.account:
            raise SandboxError("Choose a responder to reassign to.")
        incident.assignees = [assignee.id]
        self._log(incident, "assign_log_entry", f"Reassigned to {assignee.name} by {actor.name}", None, actor.id)
        self._emit(incident, "incident.reassigned", agent=agent)

    def _do_escalate(self, incident: Incident, actor: User, agent: dict[str, Any], options: dict[str, str]) -> None:
        self._require_open(incident)
        policy = self.store.get(EscalationPolicy, incident.escalation_policy)
        assert policy is not None
        level = min(incident.escalation_level + 1, len(policy.levels))
        incident.escalation_level = level
        incident.assignees = [policy.levels[level - 1]]
        if incident.status == "acknowledged":
            self._set_status(incident, "triggered")
        self._log(incident, "escalate_log_entry", f"Escalated to level {level} by {actor.name}", None, actor.id)
        self._emit(incident, "incident.escalated", agent=agent)

    def _do_delegate(self, incident: Incident, actor: User, agent: dict[str, Any], options: dict[str, str]) -> None:
        self._require_open(incident)
        policy = self.store.get(EscalationPolicy, options.get("escalation_policy"))
        if policy is None or policy.account != incident.account:
            raise SandboxError("Choose an escalation policy to delegate to.")
        incident.escalation_policy = policy.id
        incident.escalation_level = 1
        incident.assignees = [policy.levels[0]]
        self._log(incident, "delegate_log_entry", f"Delegated to {policy.name} by {actor.name}", None, actor.id)
        self._emit(incident, "incident.delegated", agent=agent)

    def _do_annotate(self, incident: Incident, actor: User, agent: dict[str, Any], options: dict[str, str]) -> None:
        content = (options.get("note") or "").strip()
        if not content:
            raise SandboxError("A note needs some text.")
        note = {"id": new_id(), "content": content[:25_000]}
        self._log(incident, "annotate_log_entry", f"Note by {actor.name}: {note['content']}", None, actor.id)
        self._emit(incident, "incident.annotated", agent=agent, note=note)

    def _do_priority(self, incident: Incident, actor: User, agent: dict[str, Any], options: dict[str, str]) -> None:
        priority = options.get("priority")
        if priority not in PRIORITIES:
            raise SandboxError("Priority must be one of P1 to P5.")
        incident.priority = priority
        self._log(incident, "priority_change_log_entry", f"Priority set to {priority} by {actor.name}", None, actor.id)
        self._emit(incident, "incident.priority_updated", agent=agent)

    # -- the handshakes ----------------------------------------------------------------------

    def login(self, subdomain: str, name: str | None = None) -> Account:
        """Log in to (or create) the account with ``subdomain``."""
        return self.create_account(subdomain, name)

    def _chosen_service(self, account: str, service_id: str | None, new_service: str | None) -> Service:
        if new_service and new_service.strip():
            created, _ = self.create_service(account, new_service, with_key=False)
            return created
        service = self.store.get(Service, service_id)
        if service is None or service.account != account:
            raise SandboxError("Pick a service, or give a name for a new one.")
        return service

    def complete_connect(
        self, *, vendor: str, callback: str, account: str, service_id: str | None, new_service: str | None
    ) -> str:
        """Make a Connect integration and return the callback URL to redirect the browser to."""
        vendor = check_name(vendor, "The vendor name")
        with self.store.transaction():
            service = self._chosen_service(account, service_id, new_service)
            key = self.add_integration(service.id, "connect", f"Connect ({vendor})", vendor=vendor)
            return add_query_params(callback, {"account": account, "service_key": key.id, "service_name": service.name})

    def app_for(self, app_id: str | None, redirect_url: str | None) -> App:
        """The app, if ``redirect_url`` is one of its redirect URLs (query string ignored)."""
        app = self.store.get(App, app_id) if app_id else None
        if app is None:
            raise SandboxError("App not found.", status=404)
        given = (
            _without_query(redirect_url)
            if isinstance(redirect_url, str) and _is_absolute_http_url(redirect_url)
            else None
        )
        if given is None or given not in {_without_query(u) for u in app.redirect_urls}:
            raise SandboxError("The supplied redirect URL does not match a redirect URL configured by this app.")
        return app

    def complete_install(
        self,
        *,
        app_id: str,
        redirect_url: str,
        account: str,
        service_ids: list[str],
        new_service: str | None,
        ruleset_ids: list[str],
    ) -> str:
        """Make one app integration per picked service and return the redirect with ``config``."""
        with self.store.transaction():
            app = self.app_for(app_id, redirect_url)
            entries: list[dict[str, str]] = []
            services = [self._chosen_service(account, sid, None) for sid in service_ids]
            if new_service and new_service.strip():
                services.append(self._chosen_service(account, None, new_service))
            for service in services:
                key = self.add_integration(service.id, "app", app.name, app_id=app.id)
                entries.append({"integration_key": key.id, "name": service.name, "id": service.id, "type": "service"})
            for ruleset_id in ruleset_ids:
                ruleset = self.store.get(Ruleset, ruleset_id)
                if ruleset is None or ruleset.account != account:
                    raise SandboxError("Unknown ruleset.")
                if not self.ruleset_usable(ruleset):
                    raise SandboxError("That ruleset's routing key was deleted or disabled.")
                entries.append(
                    {"integration_key": ruleset.key, "name": ruleset.name, "id": ruleset.id, "type": ruleset.type}
                )
            if not entries:
                raise SandboxError("Pick at least one service or ruleset.")
            owner = self.store.get(Account, account)
            assert owner is not None
            account_doc: dict[str, str] = {"subdomain": owner.id}
            field_name = self.settings.account_name_field
            for name in ("name", "Name") if field_name == "both" else (field_name,):
                account_doc[name] = owner.name
            config = {"integration_keys": entries, "account": account_doc}
            return add_query_params(redirect_url, {"config": json.dumps(config, separators=(",", ":"))})

    # -- views for tests ---------------------------------------------------------------------

    def received(self, *, since: int = 0, routing_key: str | None = None) -> list[Received]:
        """Requests to the events endpoints after sequence number ``since``, oldest first."""
        with self.store.lock:
            return [
                r
                for r in self.store.all(Received)
                if r.seq > since and (routing_key is None or r.routing_key == routing_key)
            ]

    def deliveries(self) -> list[Delivery]:
        with self.store.lock:
            return sorted(self.store.all(Delivery), key=lambda d: d.seq)

    def incidents(self) -> list[Incident]:
        with self.store.lock:
            return sorted(self.store.all(Incident), key=lambda i: (i.account, i.number))

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Block until ``predicate()`` holds (checked after every change) or ``timeout`` passes."""
        with self.store.changed:
            return self.store.changed.wait_for(predicate, timeout)


def _default_identity(sandbox: Sandbox) -> Identity:
    """The sandbox's identity server, over its accounts and base URL."""
    from pdconnect.sandbox.identity import Identity  # imported here: it imports this module

    return Identity(base_url=lambda: sandbox.base_url, accounts=sandbox.account_info, clock=time.time)


def _regional(path: str, region: str) -> str:
    """``path`` as served for ``region``: the EU's under ``/eu``."""
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}")
    return path if region == "us" else "/eu" + path


def _object_or_empty(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _is_absolute_http_url(url: object) -> bool:
    """Absolute http(s) with a host, printable ASCII only, no backslash and no credentials.

    The stricter choice where PagerDuty's own rules are unknown (UNCONFIRMED): a browser
    is sent to these URLs, so nothing that Python, Werkzeug and browsers read differently.
    """
    return safe_link_href(url) is not None


def _without_query(url: str) -> str | None:
    """``url`` without its query and fragment; None when it cannot be parsed (e.g. ``http://[::1``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return urlunsplit(parts._replace(query="", fragment=""))
