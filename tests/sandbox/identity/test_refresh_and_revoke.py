"""Refresh-token rotation, reuse, expiry and the app's rolling window; "revoke all tokens"; what
:meth:`Identity.bearer` says about a token."""

from __future__ import annotations

from typing import Any

import pytest

from tests.sandbox.identity.harness import Harness


def _error(answer: Any) -> str:
    assert answer.status_code == 400, answer.get_json()
    return str(answer.get_json()["error"])


def test_refresh_rotates_both_tokens_and_keeps_the_authorization(harness: Harness) -> None:
    app = harness.app_for()
    first = harness.tokens(app)
    second = harness.refresh(app, first["refresh_token"]).get_json()
    assert second["access_token"] != first["access_token"] and second["refresh_token"] != first["refresh_token"]
    assert second["access_token"].startswith("pdus+_0") and second["refresh_token"].startswith("pdus+_1")
    assert second["scope"] == first["scope"] and second["expires_in"] == app.access_token_seconds
    assert harness.identity.bearer(second["access_token"]) is not None
    # The old access token lives on until it expires (UNCONFIRMED: PagerDuty may revoke it).
    assert harness.identity.bearer(first["access_token"]) is not None


def test_a_used_refresh_token_is_refused_and_reuse_revokes_the_authorization(harness: Harness) -> None:
    app = harness.app_for()
    first = harness.tokens(app)
    second = harness.refresh(app, first["refresh_token"]).get_json()
    assert _error(harness.refresh(app, first["refresh_token"])) == "invalid_grant"
    assert harness.identity.bearer(second["access_token"]) is None
    assert _error(harness.refresh(app, second["refresh_token"])) == "invalid_grant"


def test_reuse_can_be_refused_without_revoking(harness: Harness) -> None:
    app = harness.app_for()
    harness.identity.core.registry.apps[app.client_id].revoke_on_refresh_reuse = False
    first = harness.tokens(app)
    second = harness.refresh(app, first["refresh_token"]).get_json()
    assert _error(harness.refresh(app, first["refresh_token"])) == "invalid_grant"
    assert harness.identity.bearer(second["access_token"]) is not None
    assert harness.refresh(app, second["refresh_token"]).status_code == 200


def test_a_chain_of_refreshes_keeps_working(harness: Harness) -> None:
    app = harness.app_for(access_token_seconds=5)
    tokens = harness.tokens(app)
    for _ in range(5):
        harness.clock.advance(6)
        assert harness.identity.bearer(tokens["access_token"]) is None
        tokens = harness.refresh(app, tokens["refresh_token"]).get_json()
        assert harness.identity.bearer(tokens["access_token"]) is not None


@pytest.mark.parametrize(
    "token",
    ["", "pdus+_1", "pdus+_1nothing", "ACCESS", "OTHER_APP"],
)
def test_unknown_or_wrong_kind_of_refresh_token(harness: Harness, token: str) -> None:
    app, other = harness.app_for(), harness.app_for(name="Other")
    tokens = harness.tokens(app)
    other_tokens = harness.tokens(other)
    sent = {"ACCESS": tokens["access_token"], "OTHER_APP": other_tokens["refresh_token"]}.get(token, token)
    answer = harness.refresh(app, sent)
    assert _error(answer) == ("invalid_request" if sent == "" else "invalid_grant")
    # Another app's attempt did not spend the other app's token.
    assert harness.refresh(other, other_tokens["refresh_token"]).status_code == 200


def test_an_expired_refresh_token_is_refused(harness: Harness) -> None:
    app = harness.app_for(refresh_token_seconds=10)
    tokens = harness.tokens(app)
    harness.clock.advance(10)
    assert _error(harness.refresh(app, tokens["refresh_token"])) == "invalid_grant"


def test_the_rolling_window_ends_every_refresh(harness: Harness) -> None:
    app = harness.app_for(refresh_token_seconds=100, window_seconds=150)
    tokens = harness.tokens(app)
    harness.clock.advance(90)
    tokens = harness.refresh(app, tokens["refresh_token"]).get_json()
    harness.clock.advance(60)  # 150 s since the user approved: the window is over
    assert _error(harness.refresh(app, tokens["refresh_token"])) == "invalid_grant"


def test_lifetimes_changed_through_the_control_api_apply_to_new_tokens(harness: Harness) -> None:
    app = harness.app_for()
    answer = harness.client().put(f"/_sandbox/api/oauth/apps/{app.client_id}", json={"access_token_seconds": 3})
    assert answer.status_code == 200 and answer.get_json()["app"]["access_token_seconds"] == 3
    tokens = harness.tokens(app)
    assert tokens["expires_in"] == 3
    harness.clock.advance(3)
    assert harness.identity.bearer(tokens["access_token"]) is None


def test_a_refresh_may_narrow_the_scopes_but_not_widen_them(harness: Harness) -> None:
    app = harness.app_for()
    tokens = harness.tokens(app, scope="read write")
    form = {
        "grant_type": "refresh_token",
        "client_id": app.client_id,
        "client_secret": app.client_secret or "",
        "refresh_token": tokens["refresh_token"],
        "scope": "read",
    }
    narrowed = harness.token(form).get_json()
    assert narrowed["scope"] == "openid read"
    wider = {**form, "refresh_token": narrowed["refresh_token"], "scope": "read write"}
    assert _error(harness.token(wider)) == "invalid_scope"


def test_refresh_needs_the_client_secret(harness: Harness) -> None:
    app = harness.app_for()
    tokens = harness.tokens(app)
    form = {"grant_type": "refresh_token", "client_id": app.client_id, "refresh_token": tokens["refresh_token"]}
    answer = harness.token(form)
    assert answer.status_code == 401 and answer.get_json()["error"] == "invalid_client"
    assert harness.refresh(app, tokens["refresh_token"]).status_code == 200  # not spent


# -- revoke all, expire now, bearer ------------------------------------------------------------


def test_revoke_all_tokens_of_an_app(harness: Harness) -> None:
    app, other = harness.app_for(), harness.app_for(name="Other")
    mine = [harness.tokens(app), harness.tokens(app, user_id=harness.olga.id)]
    theirs = harness.tokens(other)
    answer = harness.client().post(f"/_sandbox/api/oauth/apps/{app.client_id}/revoke")
    assert answer.status_code == 200 and answer.get_json() == {"revoked": 2}
    for tokens in mine:
        assert harness.identity.bearer(tokens["access_token"]) is None
        assert _error(harness.refresh(app, tokens["refresh_token"])) == "invalid_grant"
    assert harness.identity.bearer(theirs["access_token"]) is not None
    # The user can authorize again afterwards.
    assert harness.identity.bearer(harness.tokens(app)["access_token"]) is not None


def test_revoke_all_also_voids_outstanding_codes(harness: Harness) -> None:
    app = harness.app_for()
    code = harness.code(app)
    harness.client().post(f"/_sandbox/api/oauth/apps/{app.client_id}/revoke")
    answer = harness.exchange(app, code)
    assert _error(answer) == "invalid_grant" and "unknown" in answer.get_json()["error_description"]


def test_expired_tokens_and_old_codes_are_forgotten_but_a_late_replay_still_revokes(harness: Harness) -> None:
    from pdconnect.sandbox.identity.model import CODE_MEMORY

    app = harness.app_for(access_token_seconds=10)
    code = harness.code(app)
    tokens = harness.exchange(app, code).get_json()
    registry = harness.identity.core.registry
    harness.clock.advance(60)  # the code and the access token have expired
    registry.prune(harness.clock.now)
    assert tokens["access_token"] not in registry.tokens and tokens["refresh_token"] in registry.tokens
    assert _error(harness.exchange(app, code)) == "invalid_grant"  # a late replay, still recognised
    assert _error(harness.refresh(app, tokens["refresh_token"])) == "invalid_grant"  # and it revoked
    harness.clock.advance(CODE_MEMORY)
    registry.prune(harness.clock.now)
    assert code not in registry.codes


def test_pruning_runs_by_itself(harness: Harness) -> None:
    from pdconnect.sandbox.identity.model import PRUNE_EVERY

    app = harness.app_for(kind="scoped", app_token_seconds=1)
    form = {
        "grant_type": "client_credentials",
        "client_id": app.client_id,
        "client_secret": app.client_secret or "",
        "scope": "as_account-us.acme services.read",
    }
    first = harness.token(form).get_json()["access_token"]
    harness.clock.advance(2)
    registry = harness.identity.core.registry
    registry.issued = PRUNE_EVERY - 1  # the next issue prunes
    harness.token(form)
    assert first not in registry.tokens and len(registry.tokens) == 1


@pytest.mark.parametrize("kind", ["access_token", "refresh_token"])
def test_expire_a_token_now(harness: Harness, kind: str) -> None:
    app = harness.app_for()
    tokens = harness.tokens(app)
    answer = harness.client().post("/_sandbox/api/oauth/tokens/expire", json={"token": tokens[kind]})
    assert answer.status_code == 200 and answer.get_json() == {"expired": kind.split("_")[0]}
    if kind == "access_token":
        assert harness.identity.bearer(tokens["access_token"]) is None
        assert harness.refresh(app, tokens["refresh_token"]).status_code == 200
    else:
        assert harness.identity.bearer(tokens["access_token"]) is not None
        assert _error(harness.refresh(app, tokens["refresh_token"])) == "invalid_grant"


def test_bearer_reports_account_user_role_scopes_kind_and_expiry(harness: Harness) -> None:
    app = harness.app_for(access_token_seconds=60)
    tokens = harness.tokens(app, scope="read")
    grant = harness.identity.bearer(tokens["access_token"])
    assert grant is not None
    assert (grant.account_id, grant.user_id, grant.role, grant.kind) == ("acme", harness.alex.id, "manager", "classic")
    assert grant.scopes == frozenset({"openid", "read"}) and grant.expires_at == harness.clock.now + 60


def test_bearer_reads_the_role_now(harness: Harness) -> None:
    app = harness.app_for()
    tokens = harness.tokens(app)
    answer = harness.client().put(f"/_sandbox/api/oauth/users/{harness.alex.id}", json={"role": "observer"})
    assert answer.status_code == 200
    grant = harness.identity.bearer(tokens["access_token"])
    assert grant is not None and grant.role == "observer"
    assert harness.identity.role_of("acme", harness.alex.id) == "observer"
    assert harness.identity.role_of("globex", harness.alex.id) is None


@pytest.mark.parametrize("token", ["", "pdus+_0", "pdus+_0" + "A" * 43, "REFRESH", None, 42])
def test_bearer_knows_no_other_token(harness: Harness, token: Any) -> None:
    tokens = harness.tokens(harness.app_for())
    sent = tokens["refresh_token"] if token == "REFRESH" else token
    assert harness.identity.bearer(sent) is None


def test_a_token_dies_with_its_account(harness: Harness) -> None:
    tokens = harness.tokens(harness.app_for())
    del harness.accounts.regions["acme"]
    assert harness.identity.bearer(tokens["access_token"]) is None


def test_reset_forgets_everything(harness: Harness) -> None:
    app = harness.app_for()
    tokens = harness.tokens(app)
    harness.identity.reset()
    assert harness.identity.bearer(tokens["access_token"]) is None
    assert harness.identity.users("acme") == []
    assert harness.refresh(app, tokens["refresh_token"]).status_code == 401  # the app is gone too
