"""A Flask app with per-account OAuth against the real sandbox over loopback, and helpers to click through it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask, redirect, render_template_string, session
from flask.testing import FlaskClient

from pdconnect.flask import PagerDutyConnect, current_pagerduty
from pdconnect.oauth.cipher import TokenCipher
from pdconnect.sandbox.identity import walk
from pdconnect.sandbox.identity.core import DEFAULT_ISSUER
from pdconnect.sandbox.pytest_plugin import PagerDutySandbox
from pdconnect.transport import RequestsTransport

APP_ID = "POAUTH1"
OAUTH_CALLBACK = "http://localhost/pagerduty/oauth/callback"
INSTALL_CALLBACK = "http://localhost/pagerduty/callback"
HOOK_URL = "http://127.0.0.1:9/pagerduty/webhook"  # the sandbox delivers to this machine only
OAUTH_API = "/_sandbox/api/oauth"
PAGE = """{% for category, message in get_flashed_messages(with_categories=true) %}<p class="flash {{ category }}">{{ message }}</p>{% endfor %}
{{ pagerduty_reconnect_banner() }}{{ pagerduty_button() }}
{% for a in pagerduty_accounts() %}<li class="account" data-id="{{ a.account_id }}">{{ a.subdomain }} {{ a.region }} {{ a.scopes|join(' ') }} {{ a.needs_reauthorization }}</li>{% endfor %}
<form method="post"><input name="{{ pdconnect_csrf_field() }}" value="{{ pdconnect_csrf_token() }}"></form>"""


def register_oauth_app(sandbox: PagerDutySandbox, *, account: str = "acme", **fields: Any) -> dict[str, Any]:
    body = {"account": account, "name": "Acme Monitoring", "kind": "classic", "redirect_urls": [OAUTH_CALLBACK]}
    app: dict[str, Any] = sandbox._api("POST", f"{OAUTH_API}/apps", json={**body, **fields})["app"]
    return app


def oauth_config(sandbox: PagerDutySandbox, registered: dict[str, Any], **changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "PDCONNECT_OAUTH_CLIENT_ID": registered["client_id"],
        "PDCONNECT_OAUTH_CLIENT_SECRET": registered.get("client_secret"),
        "PDCONNECT_OAUTH_IDENTITY_URL": sandbox.url,
        "PDCONNECT_OAUTH_REDIRECT_URL": OAUTH_CALLBACK,
        "PDCONNECT_OAUTH_REST_BASES": {sandbox.url: "us", sandbox.url + "/eu": "eu"},
        "PDCONNECT_OAUTH_EVENTS_BASES": {"us": sandbox.url, "eu": sandbox.url + "/eu"},
        "PDCONNECT_TOKEN_KEYS": [TokenCipher.generate_key()],
        "PDCONNECT_WEBHOOK_URL": HOOK_URL,
    }
    config.update(changes)
    return config


def make_flask(tmp_path: Path, sandbox: PagerDutySandbox, config: dict[str, Any]) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(
        SECRET_KEY="flask-oauth-test-secret-0123456789",
        PDCONNECT_CLIENT_NAME="Acme Monitoring",
        PDCONNECT_INSTALL_BASE_URL=sandbox.url,
        PDCONNECT_STORAGE_URL=f"sqlite:///{tmp_path / 'pdconnect.db'}",
        **config,
    )
    http = requests.Session()
    http.verify = sandbox.verify
    extension = PagerDutyConnect(app, transport=RequestsTransport(http))

    @extension.owner_loader
    def owner() -> str | None:
        return session.get("user")

    @app.route("/")
    def home() -> str:
        return render_template_string(PAGE)

    @app.route("/login/<name>")
    def login(name: str) -> Any:
        session["user"] = name
        return redirect("/")

    return app


@dataclass
class Site:
    """The vendor's Flask app, the sandbox it talks to, and the OAuth app registered there."""

    app: Flask
    sandbox: PagerDutySandbox
    registered: dict[str, Any]
    users: dict[str, str] = field(default_factory=dict)

    @property
    def client_id(self) -> str:
        return str(self.registered["client_id"])

    def browser(self, owner: str) -> FlaskClient:
        client = self.app.test_client()
        client.get(f"/login/{owner}")
        return client

    def user(self, account: str, name: str, role: str = "manager") -> str:
        body = {"account": account, "name": name, "email": f"{name.lower()}@{account}.example", "role": role}
        user_id: str = self.sandbox._api("POST", f"{OAUTH_API}/users", json=body)["user"]["id"]
        self.users[name] = user_id
        return user_id

    def start(self, client: FlaskClient, query: str = "") -> str:
        response = client.get("/pagerduty/oauth/start" + query)
        assert response.status_code == 302, response.get_data(as_text=True)
        location = str(response.headers["Location"])
        assert location.startswith(self.sandbox.url + "/oauth/authorize?")
        return location

    def consent(self, authorize_url: str, user_id: str, decision: str = "approve") -> str:
        """Sign in on the sandbox and decide; the callback path and query the browser would open."""
        callback = walk.approve(
            self.sandbox.url, authorize_url, user_id=user_id, decision=decision, verify=self.sandbox.verify
        )
        assert callback.startswith(OAUTH_CALLBACK)
        return local(callback)

    def connect(self, client: FlaskClient, user_id: str) -> Any:
        """The whole flow for ``client``'s owner as ``user_id``; the callback's response."""
        return client.get(self.consent(self.start(client), user_id))

    def connections(self) -> Any:
        with self.app.app_context():
            return current_pagerduty().connections

    def subscriptions(self, account: str) -> list[dict[str, Any]]:
        """The account's webhook subscriptions, as its own API key sees them."""
        response = self.sandbox.rest("GET", "/webhook_subscriptions", account=account)
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["webhook_subscriptions"]
        return found


def local(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + ("?" + parts.query if parts.query else "")


def flashes(client: FlaskClient) -> list[str]:
    return re.findall(r'<p class="flash \w+">(.*?)</p>', client.get("/").get_data(as_text=True))


def csrf(client: FlaskClient) -> str:
    found = re.search(r'name="pdconnect_csrf" value="([^"]+)"', client.get("/").get_data(as_text=True))
    assert found
    return found.group(1)


def problem_page(client: FlaskClient, response: Any) -> Any:
    """A failed callback answers 303 to a clean URL (its own carries the code); the page waits there."""
    assert response.status_code == 303, response.get_data(as_text=True)
    assert response.headers["Location"] == "/pagerduty/problem"
    return client.get("/pagerduty/problem")


@pytest.fixture
def site(tmp_path: Path, pagerduty_sandbox: PagerDutySandbox) -> Iterator[Site]:
    # A reset keeps the identity server's issuer, and another suite's test may have left a
    # foreign one set: start from the default so this suite does not depend on test order.
    pagerduty_sandbox._api("PUT", f"{OAUTH_API}/settings", json={"issuer": DEFAULT_ISSUER})
    registered = register_oauth_app(pagerduty_sandbox)
    app = make_flask(tmp_path, pagerduty_sandbox, oauth_config(pagerduty_sandbox, registered))
    yield Site(app, pagerduty_sandbox, registered)
    pagerduty_sandbox.set_faults(spec="")
