"""A tiny WSGI wrapper around :class:`Identity` and helpers that click through its pages.

Until the sandbox application routes to the identity server, these tests drive it on its own:
in process with Werkzeug's test client, or over loopback HTTP with :class:`LoopbackServer`.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from werkzeug.serving import make_server
from werkzeug.test import Client, TestResponse
from werkzeug.wrappers import Request, Response

from pdconnect.sandbox.identity import AccountInfo, Identity, OAuthApp
from pdconnect.sandbox.tls import TlsFiles, server_context

REDIRECT = "https://vendor.example/pagerduty/oauth/callback"
BASE = "http://127.0.0.1:8787"


class FakeClock:
    """A clock that moves only when a test says so (starts at the real time, so PyJWT's checks agree)."""

    def __init__(self, start: float | None = None) -> None:
        import time

        self.now = start if start is not None else float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wsgi(identity: Identity) -> Callable[..., Iterable[bytes]]:
    """The identity server as a WSGI app; any other path is a plain 404."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = 1024 * 1024
        response = identity.handle(request)
        if response is None:
            response = Response("not an identity path", status=404)
        return response(environ, start_response)

    return app


@dataclass
class Accounts:
    """The accounts lookup the sandbox would pass: subdomain -> region."""

    regions: dict[str, str] = field(default_factory=lambda: {"acme": "us", "globex": "eu", "initech": "us"})

    def __call__(self, subdomain: str) -> AccountInfo | None:
        region = self.regions.get(subdomain)
        return AccountInfo(id=subdomain, region=region) if region is not None else None


def pkce_pair() -> tuple[str, str]:
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(48)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class Forms(HTMLParser):
    """Every form of a page: its action, method and the inputs (hidden ones with their values)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "form":
            self.forms.append({"action": attributes.get("action"), "fields": {}, "options": []})
        elif tag == "input" and self.forms and attributes.get("type") == "hidden":
            self.forms[-1]["fields"][attributes.get("name")] = attributes.get("value")
        elif tag == "option" and self.forms:
            self.forms[-1]["options"].append(attributes.get("value"))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Forms:
    parser = Forms()
    parser.feed(html)
    parser.close()
    return parser


def location_params(response: TestResponse) -> dict[str, str]:
    """The query parameters of a redirect, each once."""
    location = response.headers["Location"]
    assert location.startswith(REDIRECT) or "://" in location, location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query, keep_blank_values=True).items()}


class Harness:
    """An :class:`Identity` with a fake clock, an account lookup and a test client."""

    def __init__(self, *, base_url: str = BASE) -> None:
        self.clock = FakeClock()
        self.accounts = Accounts()
        self.base_url = base_url
        self.identity = Identity(base_url=lambda: self.base_url, accounts=self.accounts, clock=self.clock)
        self.app = wsgi(self.identity)
        self.alex = self.identity.add_user("acme", name="Alex", email="alex@acme.example", role="manager")
        self.olga = self.identity.add_user("acme", name="Olga", email="olga@acme.example", role="observer")
        self.gina = self.identity.add_user("globex", name="Gina", email="gina@globex.example", role="admin")

    def client(self) -> Client:
        return Client(self.app, use_cookies=True)

    def app_for(self, account: str = "acme", **options: Any) -> OAuthApp:
        options.setdefault("name", "Acme Monitoring")
        options.setdefault("redirect_urls", [REDIRECT])
        return self.identity.register_app(account, **options)

    def authorize_query(
        self, app: OAuthApp, *, challenge: str | None = None, scope: str | None = "write", state: str | None = "st4te"
    ) -> str:
        params = {"client_id": app.client_id, "redirect_uri": REDIRECT, "response_type": "code"}
        if scope is not None:
            params["scope"] = scope
        if challenge is not None:
            params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
        if state is not None:
            params["state"] = state
        return urlencode(params)

    def sign_in(self, client: Client, query: str, user_id: str) -> TestResponse:
        """Open the authorize page, sign in as ``user_id``; the consent page's response."""
        page = client.get(f"/oauth/authorize?{query}")
        assert page.status_code == 200, page.get_data(as_text=True)
        form = parse(page.get_data(as_text=True)).forms[0]
        signed = client.post("/oauth/authorize", data={**form["fields"], "user": user_id, "decision": "signin"})
        assert signed.status_code == 303, signed.get_data(as_text=True)
        consent = client.get(signed.headers["Location"])
        assert consent.status_code == 200, consent.get_data(as_text=True)
        return consent

    def decide(self, client: Client, consent: TestResponse, decision: str = "approve") -> TestResponse:
        form = parse(consent.get_data(as_text=True)).forms[0]
        return client.post("/oauth/authorize", data={**form["fields"], "decision": decision})

    def code(
        self,
        app: OAuthApp,
        *,
        user_id: str | None = None,
        challenge: str | None = None,
        scope: str | None = "write",
        state: str | None = "st4te",
    ) -> str:
        """Click through sign-in and consent; the code the callback receives."""
        client = self.client()
        consent = self.sign_in(
            client, self.authorize_query(app, challenge=challenge, scope=scope, state=state), user_id or self.alex.id
        )
        answer = self.decide(client, consent)
        assert answer.status_code == 302, answer.get_data(as_text=True)
        params = location_params(answer)
        if state is not None:
            assert params["state"] == state
        return params["code"]

    def token(self, form: dict[str, str], *, headers: dict[str, str] | None = None) -> TestResponse:
        return self.client().post("/oauth/token", data=form, headers=headers)

    def exchange(self, app: OAuthApp, code: str, verifier: str | None = None, **extra: str) -> TestResponse:
        form = {"grant_type": "authorization_code", "client_id": app.client_id, "code": code, "redirect_uri": REDIRECT}
        if app.client_secret is not None:
            form["client_secret"] = app.client_secret
        if verifier is not None:
            form["code_verifier"] = verifier
        return self.token(form | extra)

    def tokens(self, app: OAuthApp, **options: Any) -> dict[str, Any]:
        """A full code grant with PKCE; the token answer."""
        verifier, challenge = pkce_pair()
        code = self.code(app, challenge=challenge, **options)
        answer = self.exchange(app, code, verifier)
        assert answer.status_code == 200, answer.get_data(as_text=True)
        data: dict[str, Any] = answer.get_json()
        return data

    def refresh(self, app: OAuthApp, refresh_token: str) -> TestResponse:
        form = {"grant_type": "refresh_token", "client_id": app.client_id, "refresh_token": refresh_token}
        if app.client_secret is not None:
            form["client_secret"] = app.client_secret
        return self.token(form)


class LoopbackServer:
    """The harness's WSGI app served over HTTP on a free loopback port, in a thread."""

    def __init__(self, harness: Harness, *, tls: TlsFiles | None = None) -> None:
        context = server_context(tls) if tls is not None else None
        self._server = make_server("127.0.0.1", 0, harness.app, threaded=True, ssl_context=context)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self._server.server_port}"
        harness.base_url = self.url
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()
