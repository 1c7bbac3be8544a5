"""Stored XSS: hostile values kept by the sandbox never become markup on its pages (issue 9).

Every value an event, the control API or a handshake can store (summary, source, component,
group, class, custom details' keys and values, links, images, client and client_url, dedup
key; service, app, account and vendor names) is set to a payload, every page is rendered and
parsed with :mod:`html.parser`, and the page may hold no tag, attribute, script, event
handler, comment or URL that the same page rendered from harmless values does not.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from pdconnect.sandbox import Sandbox, SandboxSettings
from pdconnect.sandbox.app import LOGIN_COOKIE, SandboxApp

PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(1)>",
    "javascript:alert(1)",
    "</textarea><script>alert(1)</script>",
    "</title><script>alert(1)</script>",
    "</style><script>alert(1)</script>",
    "<!-- comment --><b>bold</b>",
    "<![CDATA[<script>alert(1)</script>]]>",
    "{{7*7}}${7*7}<%= 7*7 %>",
    "\uff1cscript\uff1ealert(1)\uff1c/script\uff1e",  # full-width angle brackets
    "\u202e>tpircs<",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;script&#62;",
    '" autofocus onfocus="alert(1)',
    "' onmouseover='alert(1)",
    '<a href="javascript:alert(1)">x</a>',
    "<iframe src=//evil.example></iframe>",
    "<form action=//evil.example><button>go</button></form>",
    "<meta http-equiv=refresh content='0;url=//evil.example'>",
    "<base href=//evil.example/>",
    "<math><mi xlink:href=javascript:alert(1)>x</mi></math>",
]
APP_ID = "PXSS001"
CALLBACK = "http://localhost:5000/cb"


class _Markup(HTMLParser):
    """What a page's markup is made of: tags, attribute names, URLs, comments and scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attributes: set[tuple[str, str]] = set()
        self.urls: list[str] = []
        self.others: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        for name, value in attrs:
            self.attributes.add((tag, name))
            if name in ("href", "src", "action", "formaction", "xlink:href"):
                self.urls.append(value or "")

    handle_startendtag = handle_starttag

    def handle_comment(self, data: str) -> None:
        self.others.append("comment " + data)

    def handle_pi(self, data: str) -> None:
        self.others.append("pi " + data)

    def handle_decl(self, decl: str) -> None:
        if decl.lower() != "doctype html":
            self.others.append("decl " + decl)

    def unknown_decl(self, data: str) -> None:
        self.others.append("unknown " + data)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(page: str) -> _Markup:
    parser = _Markup()
    parser.feed(page)
    parser.close()
    return parser


def _event(key: str, value: str, dedup: str) -> dict[str, Any]:
    return {
        "routing_key": key,
        "event_action": "trigger",
        "dedup_key": dedup,
        "client": value,
        "client_url": value,
        "links": [{"href": value, "text": value}, {"href": "https://ok.example/", "text": value}],
        "images": [{"src": value, "alt": value, "href": value}],
        "payload": {"summary": value or "-", "source": value or "-", "severity": "critical", "component": value,
                    "group": value, "class": value, "custom_details": {value: value, "nested": {value: [value]}}},
    }  # fmt: skip


def _change(key: str, value: str) -> dict[str, Any]:
    return {"routing_key": key, "payload": {"summary": value or "-", "source": value, "custom_details": {value: value}},
            "links": [{"href": value, "text": value}]}  # fmt: skip


def _v1(key: str, value: str, dedup: str) -> dict[str, Any]:
    return {"service_key": key, "event_type": "trigger", "incident_key": dedup + "-v1", "description": value or "-",
            "client": value, "client_url": value, "details": {value: value},
            "contexts": [{"type": "link", "href": value, "text": value}, {"type": "image", "src": value, "alt": value}]}  # fmt: skip


def _name(value: str) -> str:
    return "".join(c for c in value if c.isprintable() or c == " ").strip()[:255] or "-"


def _render_all(value: str) -> dict[str, str]:
    """Store ``value`` everywhere a visitor can put it, then render every page; path -> page."""
    sandbox = Sandbox(SandboxSettings(rate_limit=None, seed=False))
    try:
        app = SandboxApp(sandbox)
        client = Client(app)
        name = _name(value)  # names refuse what is not printable (test_attack_names.py)
        account = sandbox.create_account("victim", name)
        service, key = sandbox.create_service(account.id, name)
        assert key is not None
        sandbox.register_app(APP_ID, [CALLBACK], name)
        sandbox.create_ruleset(account.id, value, service.id)
        dedup = "k" + str(abs(hash(value)))
        for body, handle in ((_event(key.id, value, dedup), sandbox.handle_alert),
                             (_change(key.id, value), sandbox.handle_change),
                             (_v1(key.id, value, dedup), sandbox.handle_legacy)):  # fmt: skip
            answer = handle(json.dumps(body).encode())
            assert answer.status in (200, 202), answer.body
        sandbox.complete_connect(vendor=name, callback=CALLBACK, account=account.id, service_id=service.id,
                                 new_service=None)  # fmt: skip
        incident = sandbox.incidents()[0]
        sandbox.act(incident.id, "annotate", note=value)
        pages: dict[str, str] = {}
        connect = {"vendor": name, "callback": CALLBACK}
        install = {"app_id": APP_ID, "redirect_url": CALLBACK, "version": "2"}
        anonymous = {
            "/connect (signed out)": ("/connect", connect),
            "/install (signed out)": ("/install/integration", install),
        }
        for name, (path, query) in anonymous.items():
            pages[name] = client.get(path, query_string=query).get_data(as_text=True)
        client.set_cookie(LOGIN_COOKIE, app.login_cookie(account.id))
        paths: dict[str, tuple[str, dict[str, str]]] = {
            "/": ("/", {}), "/incidents": ("/incidents", {}), "/incident": (f"/incidents/{incident.id}", {}),
            "/service": (f"/services/{service.id}", {}), "/apps": ("/apps", {}), "/received": ("/received", {}),
            "/webhooks": ("/webhooks", {}), "/connect": ("/connect", connect), "/install": ("/install/integration", install),
            "/error": ("/install/integration", {"app_id": APP_ID, "redirect_url": "http://x.example/" + value}),
        }  # fmt: skip
        for name, (path, query) in paths.items():
            response = client.get(path, query_string=query)
            assert response.status_code in (200, 400, 404), (name, response.status_code)
            pages[name] = response.get_data(as_text=True)
        return pages
    finally:
        sandbox.close()


BENIGN = "plain value"


@pytest.fixture(scope="module")
def benign() -> dict[str, _Markup]:
    return {name: _parse(page) for name, page in _render_all(BENIGN).items()}


def _assert_no_injection(pages: dict[str, str], benign: dict[str, _Markup]) -> None:
    for name, page in pages.items():
        seen, base = _parse(page), benign[name]
        assert "script" not in seen.tags, name
        assert seen.tags <= base.tags | {"a", "span"}, (name, seen.tags - base.tags)
        assert seen.attributes <= base.attributes | {("a", "href"), ("a", "rel"), ("a", "data-client-link"),
                                                     ("span", "data-unsafe-link"), ("span", "data-client-link")}, (
            name, seen.attributes - base.attributes)  # fmt: skip
        assert not [a for a in seen.attributes if a[1].startswith("on")], name
        assert seen.others == base.others, name
        for url in seen.urls:
            parts = urlsplit(url)
            if parts.scheme or parts.netloc:
                assert parts.scheme in ("http", "https") and parts.netloc, (name, url)
            else:
                assert url.startswith(("/", "#", "?")) and not url.startswith("//"), (name, url)
            assert not url.lower().lstrip().startswith(("javascript:", "data:", "vbscript:")), (name, url)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_hostile_values_stay_text_on_every_page(benign: dict[str, _Markup], payload: str) -> None:
    pages = _render_all(payload)
    _assert_no_injection(pages, benign)
    incident_text = "".join(_parse(pages["/incident"]).text)
    assert payload.strip() in incident_text or payload in incident_text, "shown as text, not dropped"


def test_template_syntax_is_not_evaluated(benign: dict[str, _Markup]) -> None:
    pages = _render_all("{{7*7}}")
    for name in ("/", "/incidents", "/incident", "/service", "/apps", "/connect", "/install"):
        assert "{{7*7}}" in "".join(_parse(pages[name]).text), name


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Cf", "Co", "Cn", "Zl", "Zp")),
                     min_size=1, max_size=40).filter(lambda v: v.strip() == v and v.strip()))  # fmt: skip
def test_property_no_text_becomes_markup(benign: dict[str, _Markup], value: str) -> None:
    _assert_no_injection(_render_all(value), benign)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    parts=st.lists(
        st.sampled_from(["<", ">", '"', "'", "&", "/", "=", "script", "img", " on", "error", "javascript:", "`", "!--"]),
        min_size=1, max_size=12,
    )
)  # fmt: skip
def test_property_markup_fragments_stay_text(benign: dict[str, _Markup], parts: list[str]) -> None:
    value = "x" + "".join(parts)
    _assert_no_injection(_render_all(value), benign)
