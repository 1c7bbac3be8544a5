"""PagerDuty's own ``OAuthTokenClient`` (python-pagerduty), unchanged, against the identity server
over loopback TLS: a code exchange with and without PKCE, a refresh, and an app token.

It sends no ``state`` and puts ``client_id`` and ``client_secret`` in the form; for a
confidential Classic client it may leave PKCE out (pagerduty-oauth.md section 1).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import pagerduty
import pytest

from pdconnect.sandbox import make_certificates
from pdconnect.sandbox.tls import TlsFiles
from tests.sandbox.identity.harness import REDIRECT, Harness, LoopbackServer, location_params, parse


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def served(harness: Harness, tls: TlsFiles) -> Iterator[LoopbackServer]:
    with LoopbackServer(harness, tls=tls) as server:
        yield server


def _client(
    harness: Harness, served: LoopbackServer, tls: TlsFiles, **options: object
) -> tuple[pagerduty.OAuthTokenClient, str]:
    app = harness.app_for(**options)
    context = ssl.create_default_context(cafile=str(tls.ca_path))
    client = pagerduty.OAuthTokenClient(app.client_secret, app.client_id, base_url=served.url, verify=context)
    return client, app.client_id


def _approve(harness: Harness, url: str, served: LoopbackServer) -> str:
    """Follow the authorize URL the official client built, as a browser would; the code."""
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == served.url and parts.path == "/oauth/authorize"
    client = harness.client()
    consent = harness.sign_in(client, parts.query, harness.alex.id)
    answer = harness.decide(client, consent)
    params = location_params(answer)
    assert "state" not in params  # it sent none
    return params["code"]


def test_code_exchange_and_refresh_without_pkce(harness: Harness, served: LoopbackServer, tls: TlsFiles) -> None:
    # An hour: inside the client's early_refresh_buffer (a day), so refresh_client refreshes.
    client, client_id = _client(harness, served, tls, access_token_seconds=3600)
    url = client.authorize_url("write", REDIRECT)
    assert parse_qs(urlsplit(url).query)["client_id"] == [client_id]
    code = _approve(harness, url, served)
    auth = client.get_new_token_from_code(code, "write", REDIRECT)
    assert auth["access_token"].startswith("pdus+_0") and auth["scope"] == "openid write"
    assert "expiration_date" in auth
    assert harness.identity.bearer(auth["access_token"]) is not None
    refreshed = client.get_refreshed_token(auth["refresh_token"])
    assert refreshed["access_token"] != auth["access_token"]
    assert harness.identity.bearer(refreshed["access_token"]) is not None
    # Its refresh_client helper, forced to refresh, takes the new pair too.
    rest, again = client.refresh_client(
        refreshed["access_token"], refreshed["refresh_token"], refreshed["expiration_date"], base_url=served.url
    )
    assert again is not None and harness.identity.bearer(again["access_token"]) is not None
    rest.close()
    client.close()


def test_code_exchange_with_pkce(harness: Harness, served: LoopbackServer, tls: TlsFiles) -> None:
    client, _ = _client(harness, served, tls, kind="scoped")
    verifier, challenge = client.generate_s256_pkce_params()
    # python-pagerduty 7.2's get_pkce_authorize_url reads self.client_id, which the client does not
    # have (AttributeError); its plain authorize_url plus the two PKCE parameters is the same URL.
    url = (
        client.authorize_url("services.read", REDIRECT)
        + "&"
        + urlencode({"code_challenge": challenge, "code_challenge_method": "S256"})
    )
    code = _approve(harness, url, served)
    auth = client.get_new_token_from_code_with_pkce(code, "services.read", REDIRECT, verifier)
    assert auth["scope"] == "openid services.read"
    client.close()


def test_a_replayed_code_raises_in_the_official_client(harness: Harness, served: LoopbackServer, tls: TlsFiles) -> None:
    client, _ = _client(harness, served, tls)
    code = _approve(harness, client.authorize_url("read", REDIRECT), served)
    client.get_new_token_from_code(code, "read", REDIRECT)
    with pytest.raises(pagerduty.HttpError) as raised:
        client.get_new_token_from_code(code, "read", REDIRECT)
    assert raised.value.response.status_code == 400
    assert raised.value.response.json()["error"] == "invalid_grant"
    client.close()


def test_scoped_app_token(harness: Harness, served: LoopbackServer, tls: TlsFiles) -> None:
    client, _ = _client(harness, served, tls, kind="scoped")
    auth = client.get_scoped_app_token("as_account-us.acme services.read")
    assert auth["expires_in"] == 86400 and "refresh_token" not in auth
    client.close()


def test_the_signin_page_lists_users(harness: Harness, served: LoopbackServer, tls: TlsFiles) -> None:
    client, _ = _client(harness, served, tls)
    url = client.authorize_url("read", REDIRECT)
    page = harness.client().get(f"/oauth/authorize?{urlsplit(url).query}")
    assert harness.alex.id in parse(page.get_data(as_text=True)).forms[0]["options"]
    client.close()


def test_through_the_real_sandbox_over_tls(tls: TlsFiles) -> None:
    from pdconnect.sandbox import SandboxServer
    from tests.sandbox.identity.test_through_sandbox import Browser

    with SandboxServer(tls=tls) as server:
        identity = server.sandbox.identity
        user = identity.add_user("acme", name="Alex", email="alex@acme.example", role="manager")
        app = identity.register_app("acme", name="Acme Monitoring", redirect_urls=[REDIRECT], access_token_seconds=3600)
        context = ssl.create_default_context(cafile=str(tls.ca_path))
        client = pagerduty.OAuthTokenClient(app.client_secret, app.client_id, base_url=server.url, verify=context)
        browser = Browser(server.url, verify=str(tls.ca_path))
        params = browser.approve(urlsplit(client.authorize_url("read", REDIRECT)).query, user.id)
        auth = client.get_new_token_from_code(params["code"], "read", REDIRECT)
        refreshed = client.get_refreshed_token(auth["refresh_token"])
        rest = pagerduty.RestApiV2Client(refreshed["access_token"], auth_type="bearer", verify=context)
        rest.url = server.url
        services = rest.list_all("services")
        assert services and all(s["id"] for s in services)
        rest.close()
        client.close()
