"""The OAuth client against the real sandbox identity server, over loopback HTTP.

Everything here goes through the sandbox's pages and endpoints as a browser and PagerDuty
would: the authorize page (sign in, consent), the token endpoint, the JWKS document, the
control API to register apps and users, rotate keys and revoke tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from pdconnect import MemoryNonceStore, new_session_binding
from pdconnect.oauth import (
    IdTokenInvalid,
    MissingScopes,
    OAuthApp,
    OAuthCancelled,
    OAuthRefused,
    PagerDutyOAuth,
    TokenEndpointError,
)
from pdconnect.retry import RetryPolicy
from pdconnect.sandbox.identity import walk
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.transport import RequestsTransport
from tests.conftest import SECRET

REDIRECT = "https://vendor.example/pagerduty/oauth/callback"
OAUTH_API = "/_sandbox/api/oauth"
NO_WAIT = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0, deadline=30.0, rate_limit_delay=0.0)


@dataclass
class Vendor:
    """A vendor's OAuth app registered in one sandbox account, and a client for it."""

    sandbox: PagerDutySandbox
    client_id: str
    client_secret: str | None
    oauth: PagerDutyOAuth

    def browser(self) -> requests.Session:
        session = requests.Session()
        session.verify = self.sandbox.verify
        return session

    def walk(self, url: str, user_id: str, decision: str = "approve") -> str:
        """Sign in as ``user_id`` on the authorize page and decide; the callback's query string."""
        callback = walk.approve(self.sandbox.url, url, user_id=user_id, decision=decision, verify=self.sandbox.verify)
        assert callback.startswith(REDIRECT)
        return urlsplit(callback).query


def make_client(
    sandbox: PagerDutySandbox, app: dict[str, Any], *, scopes: tuple[str, ...], **options: Any
) -> PagerDutyOAuth:
    session = requests.Session()
    session.verify = sandbox.verify
    oauth_app = OAuthApp(
        client_id=app["client_id"],
        client_secret=app.get("client_secret"),
        redirect_uri=REDIRECT,
        kind=app["kind"],
        scopes=scopes,
        identity_url=sandbox.url,
        rest_bases={sandbox.url: "us", sandbox.url + "/eu": "eu"},
        events_bases={"us": sandbox.url, "eu": sandbox.url + "/eu"},
    )
    options.setdefault("retry", NO_WAIT)
    return PagerDutyOAuth(
        oauth_app, secret=SECRET, nonces=MemoryNonceStore(), transport=RequestsTransport(session), **options
    )


def register(
    sandbox: PagerDutySandbox, *, account: str = "acme", kind: str = "classic", **fields: Any
) -> dict[str, Any]:
    body = {"account": account, "name": "Acme Monitoring", "kind": kind, "redirect_urls": [REDIRECT], **fields}
    app: dict[str, Any] = sandbox._api("POST", f"{OAUTH_API}/apps", json=body)["app"]
    return app


def add_user(sandbox: PagerDutySandbox, account: str, name: str, role: str = "manager") -> str:
    body = {"account": account, "name": name, "email": f"{name.lower()}@{account}.example", "role": role}
    user_id: str = sandbox._api("POST", f"{OAUTH_API}/users", json=body)["user"]["id"]
    return user_id


@pytest.fixture
def vendor(pagerduty_sandbox: PagerDutySandbox) -> Iterator[Vendor]:
    app = register(pagerduty_sandbox)
    oauth = make_client(pagerduty_sandbox, app, scopes=("write",))
    yield Vendor(pagerduty_sandbox, app["client_id"], app.get("client_secret"), oauth)
    pagerduty_sandbox.set_faults(spec="")


def connect(vendor: Vendor, user_id: str, *, owner: str = "owner-1") -> Any:
    binding = new_session_binding()
    start = vendor.oauth.authorize(owner_id=owner, session_binding=binding, return_to="/pagerduty")
    return vendor.oauth.finish(vendor.walk(start.url, user_id), owner_id=owner, session_binding=binding)


def test_a_us_account_connects(vendor: Vendor) -> None:
    alex = add_user(vendor.sandbox, "acme", "Alex")
    done = connect(vendor, alex)
    assert done.return_to == "/pagerduty"
    assert done.account.subdomain == "acme"
    assert done.account.user_id == alex
    assert (done.account.region, done.account.rest_base_url, done.account.events_base_url) == (
        "us",
        vendor.sandbox.url,
        vendor.sandbox.url,
    )
    assert done.tokens.scopes >= {"openid", "write"}
    assert done.tokens.access_token.startswith("pdus+_0")


def test_an_eu_account_connects_with_its_region(vendor: Vendor) -> None:
    vendor.sandbox.create_account("globex", region="eu")
    gina = add_user(vendor.sandbox, "globex", "Gina", role="admin")
    done = connect(vendor, gina)
    assert (done.account.subdomain, done.account.region) == ("globex", "eu")
    assert done.account.rest_base_url == vendor.sandbox.url + "/eu"
    assert done.account.events_base_url == vendor.sandbox.url + "/eu"


def test_refresh_rotates_and_the_old_refresh_token_is_dead(vendor: Vendor) -> None:
    done = connect(vendor, add_user(vendor.sandbox, "acme", "Alex"))
    fresh = vendor.oauth.refresh(done.tokens.refresh_token)
    assert fresh.refresh_token not in (None, done.tokens.refresh_token)
    assert fresh.access_token != done.tokens.access_token
    with pytest.raises(OAuthRefused) as caught:
        vendor.oauth.refresh(done.tokens.refresh_token)
    assert caught.value.error == "invalid_grant"


def test_revoke_all_tokens_kills_the_refresh_token(vendor: Vendor) -> None:
    done = connect(vendor, add_user(vendor.sandbox, "acme", "Alex"))
    vendor.sandbox._api("POST", f"{OAUTH_API}/apps/{vendor.client_id}/revoke")
    with pytest.raises(OAuthRefused, match="invalid_grant"):
        vendor.oauth.refresh(done.tokens.refresh_token)


def test_a_denial_is_a_cancel(vendor: Vendor) -> None:
    alex = add_user(vendor.sandbox, "acme", "Alex")
    binding = new_session_binding()
    start = vendor.oauth.authorize(owner_id="o", session_binding=binding)
    with pytest.raises(OAuthCancelled):
        vendor.oauth.finish(vendor.walk(start.url, alex, decision="deny"), owner_id="o", session_binding=binding)


def test_a_code_under_another_state_fails_pkce_at_the_sandbox(vendor: Vendor) -> None:
    alex = add_user(vendor.sandbox, "acme", "Alex")
    binding = new_session_binding()
    first = vendor.oauth.authorize(owner_id="o", session_binding=binding)
    second = vendor.oauth.authorize(owner_id="o", session_binding=binding)
    code = next(p for p in vendor.walk(first.url, alex).split("&") if p.startswith("code="))
    with pytest.raises(OAuthRefused, match="invalid_grant"):
        vendor.oauth.finish(f"{code}&state={second.state}", owner_id="o", session_binding=binding)


def test_a_used_code_is_refused_by_the_sandbox(vendor: Vendor) -> None:
    alex = add_user(vendor.sandbox, "acme", "Alex")
    binding = new_session_binding()
    start = vendor.oauth.authorize(owner_id="o", session_binding=binding)
    query = vendor.walk(start.url, alex)
    vendor.oauth.finish(query, owner_id="o", session_binding=binding)
    code = next(p for p in query.split("&") if p.startswith("code="))
    again = vendor.oauth.authorize(owner_id="o", session_binding=binding)
    with pytest.raises(OAuthRefused, match="invalid_grant"):
        vendor.oauth.finish(f"{code}&state={again.state}", owner_id="o", session_binding=binding)


def test_scopes_the_app_lacks_are_named(pagerduty_sandbox: PagerDutySandbox) -> None:
    app = register(pagerduty_sandbox, scopes=["read"])
    oauth = make_client(pagerduty_sandbox, app, scopes=("write",))
    vendor = Vendor(pagerduty_sandbox, app["client_id"], app.get("client_secret"), oauth)
    binding = new_session_binding()
    start = oauth.authorize(owner_id="o", session_binding=binding)
    query = vendor.walk(start.url, add_user(pagerduty_sandbox, "acme", "Alex"))
    with pytest.raises(MissingScopes) as caught:
        oauth.finish(query, owner_id="o", session_binding=binding)
    assert "write" in caught.value.missing


def test_a_rotated_signing_key_is_fetched(pagerduty_sandbox: PagerDutySandbox) -> None:
    app = register(pagerduty_sandbox)
    oauth = make_client(pagerduty_sandbox, app, scopes=("write",), jwks_refetch_interval=0)
    vendor = Vendor(pagerduty_sandbox, app["client_id"], app.get("client_secret"), oauth)
    alex = add_user(pagerduty_sandbox, "acme", "Alex")
    connect(vendor, alex)
    pagerduty_sandbox._api("POST", f"{OAUTH_API}/keys/rotate")
    assert connect(vendor, alex).account.subdomain == "acme"
    assert oauth.keys.fetches == 2


def test_the_sample_issuer_is_accepted_and_another_refused(vendor: Vendor) -> None:
    alex = add_user(vendor.sandbox, "acme", "Alex")
    vendor.sandbox._api(
        "PUT", f"{OAUTH_API}/settings", json={"issuer": "https://app.pagerduty.com/global/oauth/anonymous"}
    )
    assert connect(vendor, alex).account.subdomain == "acme"
    vendor.sandbox._api(
        "PUT", f"{OAUTH_API}/settings", json={"issuer": "https://identity.evil.example/global/oauth/anonymous"}
    )
    with pytest.raises(IdTokenInvalid, match="issuer"):
        connect(vendor, alex)


def test_client_credentials_of_a_scoped_app(pagerduty_sandbox: PagerDutySandbox) -> None:
    app = register(pagerduty_sandbox, kind="scoped", scopes=["services.read"])
    oauth = make_client(pagerduty_sandbox, app, scopes=("services.read",))
    tokens = oauth.client_credentials(region="us", subdomain="acme", scopes=["services.read"])
    assert tokens.refresh_token is None
    assert "services.read" in tokens.scopes


def test_another_accounts_client_credentials_are_refused(pagerduty_sandbox: PagerDutySandbox) -> None:
    pagerduty_sandbox.create_account("initech")
    app = register(pagerduty_sandbox, kind="scoped", scopes=["services.read"])
    oauth = make_client(pagerduty_sandbox, app, scopes=("services.read",))
    with pytest.raises(OAuthRefused):
        oauth.client_credentials(region="us", subdomain="initech", scopes=["services.read"])


@pytest.mark.parametrize("spec", ["503=1,target=identity", "drop=1,target=identity"])
def test_an_identity_host_that_keeps_failing_is_a_retryable_error(vendor: Vendor, spec: str) -> None:
    vendor.sandbox.set_faults(spec=spec)
    with pytest.raises(TokenEndpointError) as caught:
        vendor.oauth.refresh("pdus+_1whatever")
    assert caught.value.retryable


def test_the_default_transport_reads_every_answer_of_the_identity_host(vendor: Vendor) -> None:
    # The sandbox's identity server answers "Connection: close"; RequestsTransport's own session
    # lost about half of such bodies (ChunkedEncodingError), and a retried code exchange then
    # spends the code. The client's default transport must read every one.
    oauth = PagerDutyOAuth(vendor.oauth.app, secret=SECRET, nonces=MemoryNonceStore(), retry=RetryPolicy.no_retries())
    for _ in range(40):
        with pytest.raises(OAuthRefused, match="invalid_grant"):
            oauth.refresh("pdus+_1not-a-live-token")
