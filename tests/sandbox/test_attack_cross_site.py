"""A page on another site must not change the sandbox's state (issue 9, outside review).

The sandbox's pages need no login, so a cross-site form post (or a ``no-cors`` fetch with a
``text/plain`` JSON body) from any web page the developer visits could delete webhook
subscriptions, register an app with the attacker's redirect URL, or reset everything.
Browsers send ``Origin`` (and ``Sec-Fetch-Site``) on such posts: a request that says it came
from another origin is refused with 403 and changes nothing. The Events API paths are left
open, as PagerDuty's are.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from pdconnect.sandbox import Sandbox, SandboxSettings
from pdconnect.sandbox.app import SandboxApp
from pdconnect.sandbox.model import App, Service, Subscription

HOST = "127.0.0.1:8765"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(SandboxSettings())
    box.subscribe("http://127.0.0.1:9/hook")
    yield box
    box.close()


def _client(sandbox: Sandbox) -> Client:
    return Client(SandboxApp(sandbox))


def _counts(sandbox: Sandbox) -> tuple[int, int, int]:
    return sandbox.store.count(Subscription), sandbox.store.count(App), sandbox.store.count(Service)


def _state_changing(sandbox: Sandbox) -> list[tuple[str, dict[str, object]]]:
    subscription = sandbox.store.all(Subscription)[0]
    return [
        (f"/webhooks/{subscription.id}/delete", {}),
        ("/apps", {"data": {"app_id": "PEVIL01", "redirect_urls": "https://evil.example/cb"}}),
        ("/services", {"data": {"account": "acme", "name": "Planted"}}),
        ("/_sandbox/api/reset", {"data": '{"seed": false}', "content_type": "text/plain"}),
        ("/_sandbox/api/apps", {"data": '{"app_id": "PEVIL02", "redirect_urls": []}', "content_type": "text/plain"}),
    ]


CROSS_SITE = [
    {"Origin": "https://evil.example"},
    {"Origin": "http://127.0.0.1:9999"},  # another port is another origin
    {"Origin": "https://127.0.0.1:8765"},  # another scheme too
    {"Origin": "null"},  # a sandboxed iframe or a data: URL
    {"Origin": "http://127.0.0.1:8765.evil.example"},
    {"Origin": "http://[::1"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},  # another port of localhost
    {"Origin": f"http://{HOST}", "Sec-Fetch-Site": "cross-site"},
]


@pytest.mark.parametrize("headers", CROSS_SITE)
def test_a_cross_site_post_changes_nothing(sandbox: Sandbox, headers: dict[str, str]) -> None:
    client, before = _client(sandbox), _counts(sandbox)
    for path, kwargs in _state_changing(sandbox):
        response = client.post(path, headers=headers, base_url=f"http://{HOST}", **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 403, path
        assert b"Traceback" not in response.data
    assert _counts(sandbox) == before


@pytest.mark.parametrize(
    "headers",
    [{}, {"Origin": f"http://{HOST}"}, {"Sec-Fetch-Site": "same-origin"}, {"Sec-Fetch-Site": "none"}],
)
def test_the_sandbox_s_own_pages_and_tools_still_post(sandbox: Sandbox, headers: dict[str, str]) -> None:
    response = _client(sandbox).post(
        "/services", data={"account": "acme", "name": "Mine"}, headers=headers, base_url=f"http://{HOST}"
    )
    assert response.status_code == 303


def test_events_stay_open_to_other_origins(sandbox: Sandbox) -> None:
    response = _client(sandbox).post(
        "/v2/enqueue", data="{}", headers={"Origin": "https://evil.example"}, base_url=f"http://{HOST}"
    )
    assert response.status_code == 400  # validated, not refused as cross-site


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(origin=st.text(max_size=60))
def test_any_other_origin_is_refused(sandbox: Sandbox, origin: str) -> None:
    if origin.strip() in ("", f"http://{HOST}"):
        return  # an empty header is not sent at all; the own origin is allowed
    before = _counts(sandbox)
    try:
        response = _client(sandbox).post(
            "/services",
            data={"account": "acme", "name": "Planted"},
            headers={"Origin": origin},
            base_url=f"http://{HOST}",
        )
    except ValueError:  # werkzeug refuses to send a header with a newline
        return
    assert response.status_code == 403
    assert _counts(sandbox) == before
