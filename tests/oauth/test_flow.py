"""The authorization-code flow end to end against the fake identity host: the happy paths."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from pdconnect.oauth import OAuthApp, PagerDutyOAuth
from pdconnect.oauth.pkce import challenge
from tests.conftest import FakeClock
from tests.oauth.conftest import make_app
from tests.oauth.fake_identity import CLIENT_ID, EU_REST, REDIRECT_URI, FakeIdentity


def test_authorize_url_carries_pkce_state_and_scopes(oauth: PagerDutyOAuth, binding: str) -> None:
    start = oauth.authorize(owner_id="user-1", session_binding=binding)
    parts = urlsplit(start.url)
    query = parse_qs(parts.query)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "identity.pagerduty.com", "/oauth/authorize")
    assert query["client_id"] == [CLIENT_ID]
    assert query["redirect_uri"] == [REDIRECT_URI]
    assert query["response_type"] == ["code"]
    assert query["scope"] == ["openid write"]
    assert query["code_challenge_method"] == ["S256"]
    assert query["state"] == [start.state]
    assert len(query["code_challenge"][0]) == 43
    assert "code_verifier" not in query


def test_finish_returns_tokens_account_and_return_to(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, clock: FakeClock
) -> None:
    start = oauth.authorize(owner_id="user-1", session_binding=binding, return_to="/settings?tab=pd")
    done = oauth.finish(identity.approve(start.url), owner_id="user-1", session_binding=binding)
    assert done.owner_id == "user-1"
    assert done.return_to == "/settings?tab=pd"
    assert done.tokens.access_token.startswith("pdus+_0")
    assert done.tokens.refresh_token is not None
    assert done.tokens.scopes == frozenset({"openid", "write"})
    assert done.tokens.expires_at == clock.now + 86_400
    account = done.account
    assert (account.subdomain, account.account_id, account.user_id, account.delegation_id) == (
        "acme",
        "PACME01",
        "PUSER01",
        "PDELEG1",
    )
    assert (account.region, account.rest_base_url, account.events_base_url) == (
        "us",
        "https://api.pagerduty.com",
        "https://events.pagerduty.com",
    )
    sent = identity.token_calls[-1]
    assert sent["grant_type"] == "authorization_code"
    assert sent["redirect_uri"] == REDIRECT_URI
    assert challenge(sent["code_verifier"]) == parse_qs(urlsplit(start.url).query)["code_challenge"][0]


def test_eu_account_region_comes_from_the_audience(oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str) -> None:
    identity.rest_base = EU_REST
    start = oauth.authorize(owner_id="user-1", session_binding=binding)
    done = oauth.finish(identity.approve(start.url), owner_id="user-1", session_binding=binding)
    assert done.account.region == "eu"
    assert done.account.rest_base_url == EU_REST
    assert done.account.events_base_url == "https://events.eu.pagerduty.com"


def test_two_tabs_run_two_authorizations_at_once(oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str) -> None:
    first = oauth.authorize(owner_id="user-1", session_binding=binding, return_to="/one")
    second = oauth.authorize(owner_id="user-1", session_binding=binding, return_to="/two")
    second_done = oauth.finish(identity.approve(second.url), owner_id="user-1", session_binding=binding)
    first_done = oauth.finish(identity.approve(first.url), owner_id="user-1", session_binding=binding)
    assert (first_done.return_to, second_done.return_to) == ("/one", "/two")


def test_state_kept_in_the_session_works_when_pagerduty_does_not_echo_it(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str
) -> None:
    start = oauth.authorize(owner_id="user-1", session_binding=binding)
    query = identity.approve(start.url).split("&state=")[0]
    done = oauth.finish(query, owner_id="user-1", session_binding=binding, state=start.state)
    assert done.account.subdomain == "acme"


def test_refresh_rotates_the_refresh_token(oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str) -> None:
    start = oauth.authorize(owner_id="user-1", session_binding=binding)
    done = oauth.finish(identity.approve(start.url), owner_id="user-1", session_binding=binding)
    assert done.tokens.refresh_token is not None
    fresh = oauth.refresh(done.tokens.refresh_token)
    assert fresh.access_token != done.tokens.access_token
    assert fresh.refresh_token not in (None, done.tokens.refresh_token)
    assert fresh.scopes == frozenset({"openid", "write"})
    assert identity.token_calls[-1]["grant_type"] == "refresh_token"


def test_client_credentials_for_a_scoped_app(identity: FakeIdentity, clock: FakeClock) -> None:
    from pdconnect import MemoryNonceStore
    from tests.conftest import SECRET

    app = make_app(kind="scoped", scopes=("services.read", "webhook_subscriptions.write"))
    oauth = PagerDutyOAuth(app, secret=SECRET, nonces=MemoryNonceStore(clock=clock), clock=clock)
    tokens = oauth.client_credentials(region="eu", subdomain="acme", scopes=["services.read"])
    assert tokens.refresh_token is None
    assert identity.token_calls[-1]["scope"] == "as_account-eu.acme services.read"
    assert "as_account-eu.acme" in tokens.scopes


def test_client_credentials_refused_for_a_classic_app(oauth: PagerDutyOAuth) -> None:
    with pytest.raises(ValueError, match="Scoped"):
        oauth.client_credentials(region="us", subdomain="acme", scopes=["read"])


def test_public_client_sends_no_secret(identity: FakeIdentity, clock: FakeClock, binding: str) -> None:
    from pdconnect import MemoryNonceStore
    from tests.conftest import SECRET

    app: OAuthApp = make_app(client_secret=None)
    oauth = PagerDutyOAuth(app, secret=SECRET, nonces=MemoryNonceStore(clock=clock), clock=clock)
    start = oauth.authorize(owner_id="u", session_binding=binding)
    identity.token_override = lambda form: None if "client_secret" not in form else (500, {}, b"")
    with pytest.raises(Exception, match="invalid_client"):
        oauth.finish(identity.approve(start.url), owner_id="u", session_binding=binding)
    assert "client_secret" not in identity.token_calls[-1]


def test_the_longest_return_to_fits_in_the_state(oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str) -> None:
    longest = "/" + "a" * 2047
    start = oauth.authorize(owner_id="u" * 255, session_binding=binding, return_to=longest)
    done = oauth.finish(identity.approve(start.url), owner_id="u" * 255, session_binding=binding)
    assert done.return_to == longest


def test_a_frameworks_multi_value_query_is_read(oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str) -> None:
    from werkzeug.datastructures import MultiDict

    from pdconnect.errors import CallbackError

    start = oauth.authorize(owner_id="u", session_binding=binding)
    query = parse_qs(identity.approve(start.url))
    repeated = MultiDict([("code", query["code"][0]), ("code", "other"), ("state", start.state)])
    with pytest.raises(CallbackError, match="repeats"):
        oauth.finish(repeated, owner_id="u", session_binding=binding)
    again = oauth.authorize(owner_id="u", session_binding=binding)
    args = MultiDict(parse_qs(identity.approve(again.url)))
    assert oauth.finish(args, owner_id="u", session_binding=binding).owner_id == "u"
