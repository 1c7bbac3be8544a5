"""The install flow never hands out a ruleset key that was deleted or disabled (issue 9).

A ruleset's routing key can be deleted or disabled through the control API; the install
flow used to go on putting that dead key in the ``config`` it sends to the vendor, who would
then send events PagerDuty refuses. It now refuses the ruleset, and the page leaves it out.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from werkzeug.test import Client

from pdconnect.sandbox import Sandbox, SandboxSettings
from pdconnect.sandbox.app import LOGIN_COOKIE, SandboxApp
from pdconnect.sandbox.engine import SandboxError
from pdconnect.sandbox.model import Ruleset

REDIRECT = "http://localhost:5000/pagerduty/install"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox(SandboxSettings())
    box.register_app("PAPP001", [REDIRECT], "Acme Monitoring")
    yield box
    box.close()


def _kill(sandbox: Sandbox, how: str) -> Ruleset:
    (ruleset,) = sandbox.store.all(Ruleset)
    if how == "delete":
        sandbox.delete_key(ruleset.key)
    else:
        sandbox.set_key_disabled(ruleset.key, True)
    return ruleset


@pytest.mark.parametrize("how", ["delete", "disable"])
def test_a_dead_ruleset_key_is_not_handed_out(sandbox: Sandbox, how: str) -> None:
    ruleset = _kill(sandbox, how)
    with pytest.raises(SandboxError):
        sandbox.complete_install(
            app_id="PAPP001",
            redirect_url=REDIRECT,
            account="acme",
            service_ids=[],
            new_service=None,
            ruleset_ids=[ruleset.id],
        )


@pytest.mark.parametrize("how", ["delete", "disable"])
def test_the_install_page_leaves_a_dead_ruleset_out(sandbox: Sandbox, how: str) -> None:
    ruleset = _kill(sandbox, how)
    app = SandboxApp(sandbox)
    client = Client(app)
    client.set_cookie(LOGIN_COOKIE, app.login_cookie("acme"))
    page = client.get("/install/integration", query_string={"app_id": "PAPP001", "redirect_url": REDIRECT})
    assert page.status_code == 200
    assert ruleset.id not in page.get_data(as_text=True)


def test_a_re_enabled_ruleset_key_is_handed_out_again(sandbox: Sandbox) -> None:
    ruleset = _kill(sandbox, "disable")
    sandbox.set_key_disabled(ruleset.key, False)
    location = sandbox.complete_install(
        app_id="PAPP001", redirect_url=REDIRECT, account="acme", service_ids=[], new_service=None,
        ruleset_ids=[ruleset.id],
    )  # fmt: skip
    assert ruleset.key in location
