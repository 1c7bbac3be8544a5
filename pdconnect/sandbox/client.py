"""Drive a running sandbox over HTTP: click through the handshake pages without a browser,
act as a responder, and read back what the sandbox received.

Works with an in-process sandbox (the pytest fixture) and with one started by
``pdconnect sandbox`` in another process alike.
"""

from __future__ import annotations

import functools
import html
import re
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import requests


def _page_message(response: requests.Response) -> str:
    """The message of a sandbox error page, or the start of any other answer."""
    found = re.search(r"<p data-error>(.*?)</p>", response.text, re.S)
    return html.unescape(found.group(1)) if found else response.text[:300]


class SandboxClientError(AssertionError):
    """The sandbox did not answer as a test expected (an ``AssertionError``, so pytest shows it plainly)."""


class SandboxClient:
    """A browser-less user of the sandbox's pages and control API at ``url``."""

    def __init__(self, url: str, *, verify: bool | str = True) -> None:
        self.url = url.rstrip("/")
        self.verify = verify
        self.http = requests.Session()
        #: The default REST API key of each account, made on first use (see :meth:`api_key`).
        self._api_keys: dict[str, str] = {}
        # Passed on every request: requests lets REQUESTS_CA_BUNDLE override a session's own ``verify``.
        self.http.request = functools.partial(self.http.request, verify=verify)  # type: ignore[method-assign]
        #: The account the session's (signed, opaque) sign-in cookie is for, if any.
        self._signed_in_as: str | None = None

    def close(self) -> None:
        self.http.close()

    # -- plumbing ----------------------------------------------------------------------------

    def _api(self, method: str, path: str, json: Any = None, *, shown: str | None = None, **params: Any) -> Any:
        """Call the control API; ``shown`` is the path to name in an error (without a key in it)."""
        response = self.http.request(method, self.url + path, json=json, params=params or None, timeout=10)
        if response.status_code >= 400:
            where = shown if shown is not None else path
            raise SandboxClientError(f"{method} {where} answered {response.status_code}: {response.text[:300]}")
        return response.json() if response.content else None

    def _follow_to_vendor(self, response: requests.Response) -> str:
        """Follow the sandbox's own redirects; return the first URL that leaves the sandbox."""
        for _ in range(10):
            if response.status_code not in (301, 302, 303, 307, 308):
                raise SandboxClientError(f"expected a redirect, got {response.status_code}: {_page_message(response)}")
            location = response.headers["Location"]
            absolute = requests.compat.urljoin(response.url, location)
            if not self._is_sandbox(absolute):
                return str(absolute)
            response = self.http.get(absolute, allow_redirects=False, timeout=10)
        raise SandboxClientError("too many redirects inside the sandbox")

    def _is_sandbox(self, url: str) -> bool:
        """True if ``url`` is on this sandbox: the same scheme, host and port, parsed (not a prefix)."""
        try:
            here, there = urlsplit(self.url), urlsplit(url)
            return (here.scheme, here.hostname, here.port) == (there.scheme, there.hostname, there.port)
        except ValueError:  # a port that is not a number
            return False

    def _on_sandbox(self, url: str) -> str:
        if not self._is_sandbox(url):
            raise SandboxClientError(f"{url} is not on this sandbox ({self.url}); point the vendor's base URL here")
        return url

    # -- state -------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Accounts, services with their keys, rulesets, apps, subscriptions, settings, faults."""
        result: dict[str, Any] = self._api("GET", "/_sandbox/api/state")
        return result

    def service(self, name: str, *, account: str = "acme") -> dict[str, Any]:
        for service in self.state()["services"]:
            if service["name"] == name and service["account"] == account:
                return dict(service)
        raise SandboxClientError(f"no service named {name!r} in account {account!r}")

    def service_key(self, name: str = "Checkout API", *, account: str = "acme") -> str:
        """The first enabled Events API v2 key of the named service (the seed has "Checkout API" and "Database")."""
        for key in self.service(name, account=account)["integration_keys"]:
            if key["kind"] == "events_api_v2" and not key.get("disabled"):
                return str(key["id"])
        raise SandboxClientError(f"service {name!r} has no Events API v2 key")

    def _key_api(self, method: str, key: str, change: str = "") -> Any:
        path = f"/_sandbox/api/keys/{quote(key, safe='')}" + (f"/{change}" if change else "")
        shown = f"/_sandbox/api/keys/…{key[-4:]}" + (f"/{change}" if change else "")
        return self._api(method, path, shown=shown)

    def disable_key(self, key: str) -> dict[str, Any]:
        """Disable an integration key: the events APIs then refuse it with 400, as an unknown key."""
        return dict(self._key_api("POST", key, "disable")["integration_key"])

    def enable_key(self, key: str) -> dict[str, Any]:
        """Enable a disabled integration key again."""
        return dict(self._key_api("POST", key, "enable")["integration_key"])

    def delete_key(self, key: str) -> None:
        """Delete an integration key for good (its incidents stay)."""
        self._key_api("DELETE", key)

    def ruleset_key(self, name: str = "Global Event Rules") -> str:
        for ruleset in self.state()["rulesets"]:
            if ruleset["name"] == name:
                return str(ruleset["key"])
        raise SandboxClientError(f"no ruleset named {name!r}")

    def create_account(self, subdomain: str, *, name: str | None = None, region: str | None = None) -> dict[str, Any]:
        """Make an account (three responders, a team, two escalation policies) in ``region`` (``us`` or ``eu``).

        An existing account is kept (asking for it in the other region is refused).
        """
        body: dict[str, Any] = {"subdomain": subdomain, "name": name}
        if region is not None:
            body["region"] = region
        result: dict[str, Any] = self._api("POST", "/_sandbox/api/accounts", json=body)
        return dict(result["account"])

    def new_api_key(self, account: str = "acme", *, read_only: bool = False) -> str:
        """A new REST API key of ``account`` (``read_only`` ones may only GET)."""
        result = self._api(
            "POST",
            f"/_sandbox/api/accounts/{quote(account, safe='')}/api_keys",
            json={"read_only": read_only},
        )
        return str(result["api_key"]["key"])

    def api_key(self, account: str = "acme") -> str:
        """The account's default full-access REST API key (made once per reset and kept)."""
        key = self._api_keys.get(account)
        if key is None:
            key = self._api_keys[account] = self.new_api_key(account)
        return key

    def create_user(
        self, account: str = "acme", *, name: str = "Test User", role: str = "responder", email: str | None = None
    ) -> dict[str, Any]:
        """Add a user with ``role`` (observer, responder, manager, admin or owner) to the identity server."""
        address = email if email is not None else f"{name.split()[0].lower()}.{role}@{account}.example"
        body = {"account": account, "name": name, "email": address, "role": role}
        return dict(self._api("POST", "/_sandbox/api/oauth/users", json=body)["user"])

    def set_role(self, user_id: str, role: str) -> dict[str, Any]:
        """Change a user's role; their tokens act with the new role at once."""
        return dict(
            self._api("PUT", f"/_sandbox/api/oauth/users/{quote(user_id, safe='')}", json={"role": role})["user"]
        )

    def rest_base(self, account: str = "acme") -> str:
        """The REST (and events) base URL of ``account``'s region: the sandbox's, or ``<sandbox>/eu``."""
        for found in self.state()["accounts"]:
            if found["id"] == account:
                return self.url + ("/eu" if found.get("region") == "eu" else "")
        raise SandboxClientError(f"no account {account!r}")

    def rest(
        self, method: str, path: str, *, account: str = "acme", token: str | None = None, json: Any = None
    ) -> requests.Response:
        """A REST call at ``account``'s regional base, with its default API key (or ``token`` as given).

        ``token`` is the whole credential: ``"Token token=..."`` or ``"Bearer ..."``. The
        response is returned whatever its status.
        """
        authorization = token if token is not None else f"Token token={self.api_key(account)}"
        headers = {"Authorization": authorization, "Accept": "application/vnd.pagerduty+json;version=2"}
        response: requests.Response = self.http.request(
            method, self.rest_base(account) + path, json=json, headers=headers, timeout=10
        )
        return response

    def create_service(self, name: str, *, account: str = "acme") -> tuple[str, str]:
        """Make a service; returns its id and its Events API v2 key."""
        created = self._api("POST", "/_sandbox/api/services", json={"account": account, "name": name})
        return created["service"]["id"], created["integration_key"]

    def register_app(self, app_id: str, redirect_urls: list[str], name: str | None = None) -> None:
        """Allow the install flow for ``app_id`` with these redirect URLs."""
        self._api("POST", "/_sandbox/api/apps", json={"app_id": app_id, "redirect_urls": redirect_urls, "name": name})

    def reset(self, *, seed: bool = True) -> None:
        self.http.cookies.clear()
        self._api_keys.clear()
        self._api("POST", "/_sandbox/api/reset", json={"seed": seed})

    def set_faults(self, spec: str | None = None, **plan: Any) -> dict[str, Any]:
        """Inject faults: a spec like ``"429=0.1,503=0.1,retry-after=1"`` or plan fields."""
        body = {"spec": spec} if spec is not None else plan
        result: dict[str, Any] = self._api("PUT", "/_sandbox/api/faults", json=body)
        return result

    def set_settings(self, **settings: Any) -> dict[str, Any]:
        """Change ``rate_limit`` (``None`` turns it off) or ``account_name_field``."""
        result: dict[str, Any] = self._api("PUT", "/_sandbox/api/settings", json=settings)
        return result

    # -- the handshakes, without a browser ---------------------------------------------------

    def _walk(self, flow: str, url: str, carry: dict[str, str], account: str, cancel: bool) -> bool:
        """Open a handshake page and log in (or prepare to cancel); True when the form is next."""
        page = self.http.get(url, timeout=10)
        if page.status_code != 200:
            raise SandboxClientError(f"the {flow} page answered {page.status_code}: {_page_message(page)}")
        if self._signed_in_as != account:
            self.http.cookies.clear()
            self._signed_in_as = None
        if cancel:
            return False
        response = self.http.post(
            self.url + "/login",
            data={"flow": flow, **carry, "subdomain": account, "decision": "login"},
            allow_redirects=False,
        )
        if response.status_code != 303:
            raise SandboxClientError(f"logging in answered {response.status_code}: {_page_message(response)}")
        self._signed_in_as = account
        return True

    def _submit(self, path: str, form: dict[str, str] | list[tuple[str, str]]) -> str:
        return self._follow_to_vendor(self.http.post(self.url + path, data=form, allow_redirects=False))

    def connect(
        self,
        connect_url: str,
        *,
        account: str = "acme",
        service: str | None = "Checkout API",
        new_service: str | None = None,
        cancel: bool = False,
    ) -> str:
        """Walk the Connect pages as a user would; return the callback URL the browser is sent to.

        Picks the existing ``service`` by name, or creates ``new_service``; with ``cancel``
        the user presses Cancel instead.
        """
        query = parse_qs(urlsplit(self._on_sandbox(connect_url)).query)
        carry = {"vendor": query.get("vendor", [""])[0], "callback": query.get("callback", [""])[0]}
        if not self._walk("connect", connect_url, carry, account, cancel):
            return self._submit("/connect", {**carry, "decision": "cancel"})
        form = {**carry, "decision": "connect"}
        if new_service:
            form["new_service"] = new_service
        elif service:
            form["service_id"] = self.service(service, account=account)["id"]
        return self._submit("/connect", form)

    def install(
        self,
        install_url: str,
        *,
        account: str = "acme",
        services: list[str] | tuple[str, ...] = ("Checkout API",),
        new_service: str | None = None,
        rulesets: list[str] | tuple[str, ...] = (),
        cancel: bool = False,
    ) -> str:
        """Walk the install-flow pages; return the redirect URL (with ``config``) the browser is sent to."""
        query = parse_qs(urlsplit(self._on_sandbox(install_url)).query)
        carry = {
            "app_id": query.get("app_id", [""])[0],
            "redirect_url": query.get("redirect_url", [""])[0],
            "version": "2",
        }
        if not self._walk("install", install_url, carry, account, cancel):
            return self._submit("/install/integration", {**carry, "decision": "cancel"})
        state = self.state()
        by_name = {s["name"]: s["id"] for s in state["services"] if s["account"] == account}
        rules = {r["name"]: r["id"] for r in state["rulesets"] if r["account"] == account}
        form: list[tuple[str, str]] = [*carry.items(), ("decision", "connect")]
        form += [("service_ids", by_name[name]) for name in services]
        form += [("ruleset_ids", rules[name]) for name in rulesets]
        if new_service:
            form.append(("new_service", new_service))
        return self._submit("/install/integration", form)

    # -- incidents, events, webhooks ---------------------------------------------------------

    def received(self, *, routing_key: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        """Every request the events endpoints received (body, answer and outcome), oldest first."""
        params: dict[str, Any] = {"since": since}
        if routing_key:
            params["routing_key"] = routing_key
        result: list[dict[str, Any]] = self._api("GET", "/_sandbox/api/received", **params)["received"]
        return result

    def incidents(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._api("GET", "/_sandbox/api/incidents")["incidents"]
        return result

    def incidents_for(self, dedup_key: str) -> list[dict[str, Any]]:
        """Incidents opened with ``dedup_key``, oldest first."""
        return [i for i in self.incidents() if i["incident_key"] == dedup_key]

    def incident_for(self, dedup_key: str) -> dict[str, Any]:
        """The latest incident with ``dedup_key``."""
        found = self.incidents_for(dedup_key)
        if not found:
            raise SandboxClientError(f"no incident with dedup key {dedup_key!r}")
        return found[-1]

    def act(self, incident_id: str, action: str, **options: str) -> dict[str, Any]:
        """Act as a responder: acknowledge, unacknowledge, resolve, reassign, escalate, delegate,
        annotate (``note=``) or priority (``priority=``)."""
        result: dict[str, Any] = self._api(
            "POST", f"/_sandbox/api/incidents/{incident_id}/actions", json={"action": action, **options}
        )["incident"]
        return result

    def subscribe(
        self, url: str, *, account: str = "acme", custom_headers: list[dict[str, str]] | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Create a webhook subscription of ``account`` through the REST API; the answer holds the secret.

        Made with the account's default API key. ``fields`` may hold ``events``, ``filter``
        (``{"type": ..., "id": ...}``), ``version`` (``v3`` or ``v2``) and ``description``.
        """
        delivery: dict[str, Any] = {"type": "http_delivery_method", "url": url}
        if custom_headers is not None:
            delivery["custom_headers"] = custom_headers
        body = {"webhook_subscription": {"delivery_method": delivery, **fields}}
        response = self.rest("POST", "/webhook_subscriptions", account=account, json=body)
        if response.status_code >= 400:
            raise SandboxClientError(
                f"POST /webhook_subscriptions answered {response.status_code}: {response.text[:300]}"
            )
        result: dict[str, Any] = response.json()["webhook_subscription"]
        return result

    def rotate_secret(self, subscription_id: str) -> str:
        """Start rotating a subscription's secret; returns the new one (both sign until :meth:`finish_rotation`)."""
        path = f"/_sandbox/api/webhook_subscriptions/{quote(subscription_id, safe='')}/rotate_secret"
        return str(self._api("POST", path)["secret"])

    def finish_rotation(self, subscription_id: str) -> None:
        """End a rotation: only the new secret signs from now on."""
        self._api("POST", f"/_sandbox/api/webhook_subscriptions/{quote(subscription_id, safe='')}/finish_rotation")

    def deliveries(self) -> list[dict[str, Any]]:
        """Every webhook queued, with its attempts and state, oldest first."""
        result: list[dict[str, Any]] = self._api("GET", "/_sandbox/api/deliveries")["deliveries"]
        return result
