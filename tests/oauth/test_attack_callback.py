"""Attacks on the callback leg: the state, the code and PKCE. Each fails if the client is vulnerable."""

from __future__ import annotations

import pytest

from pdconnect import MemoryNonceStore
from pdconnect.errors import (
    CallbackError,
    StateExpired,
    StateInvalid,
    StateOwnerMismatch,
    StateReplayed,
    StateSessionMismatch,
)
from pdconnect.integration import Origin
from pdconnect.oauth import OAuthCancelled, OAuthRefused, PagerDutyOAuth
from pdconnect.state import StateManager
from tests.conftest import SECRET, FakeClock
from tests.oauth.fake_identity import FakeIdentity


def test_a_code_minted_for_another_pkce_challenge_is_refused(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, other_binding: str
) -> None:
    # The attacker starts their own authorization and slips its code into the victim's callback
    # (code injection): the victim's state carries the victim's verifier, which does not match.
    victim = oauth.authorize(owner_id="victim", session_binding=binding)
    attacker = oauth.authorize(owner_id="attacker", session_binding=other_binding)
    attackers_code = identity.approve(attacker.url).split("&")[0]
    with pytest.raises(OAuthRefused) as caught:
        oauth.finish(f"{attackers_code}&state={victim.state}", owner_id="victim", session_binding=binding)
    assert caught.value.error == "invalid_grant"
    assert caught.value.status == 400


def test_the_verifier_sent_is_the_one_whose_challenge_was_shown(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str
) -> None:
    first = oauth.authorize(owner_id="u", session_binding=binding)
    second = oauth.authorize(owner_id="u", session_binding=binding)
    first_code = identity.approve(first.url).split("&")[0]
    with pytest.raises(OAuthRefused, match="invalid_grant"):
        oauth.finish(f"{first_code}&state={second.state}", owner_id="u", session_binding=binding)


def test_a_replayed_callback_is_refused_before_the_token_endpoint(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str
) -> None:
    start = oauth.authorize(owner_id="u", session_binding=binding)
    callback = identity.approve(start.url)
    oauth.finish(callback, owner_id="u", session_binding=binding)
    calls = len(identity.token_calls)
    with pytest.raises(StateReplayed):
        oauth.finish(callback, owner_id="u", session_binding=binding)
    assert len(identity.token_calls) == calls


def test_a_used_code_with_a_fresh_state_is_refused(oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str) -> None:
    start = oauth.authorize(owner_id="u", session_binding=binding)
    callback = identity.approve(start.url)
    oauth.finish(callback, owner_id="u", session_binding=binding)
    again = oauth.authorize(owner_id="u", session_binding=binding)
    with pytest.raises(OAuthRefused, match="invalid_grant"):
        oauth.finish(callback.split("&")[0] + f"&state={again.state}", owner_id="u", session_binding=binding)


def test_an_expired_code_is_refused(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, clock: FakeClock
) -> None:
    start = oauth.authorize(owner_id="u", session_binding=binding)
    callback = identity.approve(start.url)
    clock.advance(31)
    with pytest.raises(OAuthRefused, match="invalid_grant"):
        oauth.finish(callback, owner_id="u", session_binding=binding)


def test_state_from_another_session_is_refused(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, other_binding: str
) -> None:
    start = oauth.authorize(owner_id="u", session_binding=binding)
    with pytest.raises(StateSessionMismatch):
        oauth.finish(identity.approve(start.url), owner_id="u", session_binding=other_binding)
    assert identity.token_calls == []


def test_state_from_another_owner_is_refused(oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str) -> None:
    start = oauth.authorize(owner_id="alice", session_binding=binding)
    with pytest.raises(StateOwnerMismatch):
        oauth.finish(identity.approve(start.url), owner_id="mallory", session_binding=binding)
    assert identity.token_calls == []


def test_a_refused_state_is_not_consumed(oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str) -> None:
    start = oauth.authorize(owner_id="alice", session_binding=binding)
    callback = identity.approve(start.url)
    with pytest.raises(StateOwnerMismatch):
        oauth.finish(callback, owner_id="mallory", session_binding=binding)
    assert oauth.finish(callback, owner_id="alice", session_binding=binding).owner_id == "alice"


def test_an_expired_state_is_refused(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, clock: FakeClock
) -> None:
    start = oauth.authorize(owner_id="u", session_binding=binding)
    clock.advance(oauth.states.max_age + 1)
    with pytest.raises(StateExpired):
        oauth.finish(identity.approve(start.url), owner_id="u", session_binding=binding)


def test_a_state_from_the_future_is_refused(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, clock: FakeClock
) -> None:
    start = oauth.authorize(owner_id="u", session_binding=binding)
    clock.advance(-3600)
    with pytest.raises(StateInvalid, match="future"):
        oauth.finish(identity.approve(start.url), owner_id="u", session_binding=binding)


def test_a_handshake_state_signed_with_the_same_secret_is_not_an_oauth_state(
    oauth: PagerDutyOAuth, binding: str, clock: FakeClock
) -> None:
    handshake_state = StateManager(SECRET, nonce_store=MemoryNonceStore(clock=clock), clock=clock).issue(
        owner_id="u", session_binding=binding, flow=Origin.INSTALL
    )
    with pytest.raises(StateInvalid):
        oauth.finish({"code": "abc", "state": handshake_state}, owner_id="u", session_binding=binding)


def test_a_state_sealed_with_another_secret_is_refused(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, clock: FakeClock
) -> None:
    other = PagerDutyOAuth(oauth.app, secret="another-secret-of-decent-length", nonces=MemoryNonceStore(), clock=clock)
    start = other.authorize(owner_id="u", session_binding=binding)
    with pytest.raises(StateInvalid):
        oauth.finish(identity.approve(start.url), owner_id="u", session_binding=binding)


def test_rotated_secrets_still_open_states_of_the_old_one(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, clock: FakeClock
) -> None:
    start = oauth.authorize(owner_id="u", session_binding=binding)
    rotated = PagerDutyOAuth(
        oauth.app, secret=[SECRET, "the-new-secret-of-decent-length"], nonces=MemoryNonceStore(), clock=clock
    )
    assert rotated.finish(identity.approve(start.url), owner_id="u", session_binding=binding).owner_id == "u"


def _flip(token: str, index: int) -> str:
    replacement = "A" if token[index] != "A" else "B"
    return token[:index] + replacement + token[index + 1 :]


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda s: "", id="empty"),
        pytest.param(lambda s: s[:-5], id="truncated"),
        pytest.param(lambda s: _flip(s, 40), id="bit-flipped-ciphertext"),
        pytest.param(lambda s: _flip(s, 5), id="bit-flipped-timestamp"),
        pytest.param(lambda s: s + "A", id="appended"),
        pytest.param(lambda s: s.replace("-", "+"), id="standard-base64"),
        pytest.param(lambda s: s + "\n", id="newline"),
        pytest.param(lambda s: "x" * 5000, id="huge"),
        pytest.param(lambda s: "é" * 60, id="non-ascii"),
        pytest.param(lambda s: "gAAAAA" + "A" * 100, id="fernet-shaped-junk"),
    ],
)
def test_a_tampered_state_is_refused_before_the_token_endpoint(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, mangle: object
) -> None:
    start = oauth.authorize(owner_id="u", session_binding=binding)
    assert callable(mangle)
    with pytest.raises(StateInvalid):
        oauth.finish({"code": "abc", "state": mangle(start.state)}, owner_id="u", session_binding=binding)
    assert identity.token_calls == []


def test_a_callback_without_any_state_is_refused(oauth: PagerDutyOAuth, binding: str) -> None:
    with pytest.raises(StateInvalid, match="missing"):
        oauth.finish("code=abc", owner_id="u", session_binding=binding)


def test_an_echoed_state_other_than_the_sessions_is_refused(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str
) -> None:
    mine = oauth.authorize(owner_id="u", session_binding=binding)
    other = oauth.authorize(owner_id="u", session_binding=binding)
    with pytest.raises(StateInvalid):
        oauth.finish(identity.approve(other.url), owner_id="u", session_binding=binding, state=mine.state)


def test_a_cancel_is_a_typed_outcome_and_uses_the_state(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str
) -> None:
    start = oauth.authorize(owner_id="u", session_binding=binding)
    query = {"error": "access_denied", "error_description": "The user denied\r\naccess", "state": start.state}
    with pytest.raises(OAuthCancelled) as caught:
        oauth.finish(query, owner_id="u", session_binding=binding)
    assert caught.value.description == "The user denied  access"
    with pytest.raises(StateReplayed):
        oauth.finish(query, owner_id="u", session_binding=binding)
    assert identity.token_calls == []


def test_a_cancel_without_a_valid_state_is_a_state_error(oauth: PagerDutyOAuth, binding: str) -> None:
    with pytest.raises(StateInvalid):
        oauth.finish("error=access_denied&state=forged", owner_id="u", session_binding=binding)


def test_another_error_is_refused_with_its_code(oauth: PagerDutyOAuth, binding: str) -> None:
    start = oauth.authorize(owner_id="u", session_binding=binding)
    with pytest.raises(OAuthRefused) as caught:
        oauth.finish({"error": "invalid_scope", "state": start.state}, owner_id="u", session_binding=binding)
    assert (caught.value.error, caught.value.status) == ("invalid_scope", None)


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param("", id="no-code"),
        pytest.param("&code=", id="empty-code"),
        pytest.param("&code=a&code=b", id="repeated-code"),
        pytest.param("&code=a%20b", id="space-in-code"),
        pytest.param("&code=a%0Ab", id="newline-in-code"),
        pytest.param("&code=" + "a" * 3000, id="huge-code"),
        pytest.param("&code=%C3%A9", id="non-ascii-code"),
        pytest.param("&error=a%22b", id="quote-in-error"),
        pytest.param("&error=x&error=y", id="repeated-error"),
    ],
)
def test_a_malformed_callback_is_a_callback_error(
    oauth: PagerDutyOAuth, identity: FakeIdentity, binding: str, extra: str
) -> None:
    start = oauth.authorize(owner_id="u", session_binding=binding)
    with pytest.raises(CallbackError):
        oauth.finish(f"state={start.state}{extra}", owner_id="u", session_binding=binding)
    assert identity.token_calls == []


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("state=a&state=b&code=c", id="repeated-state"),
        pytest.param(b"\xff\xfe", id="not-utf8-bytes"),
        pytest.param("%ff=1", id="not-utf8-escape"),
        pytest.param("&".join(f"k{i}=v" for i in range(100)), id="too-many-fields"),
        pytest.param({"state": 5}, id="non-string-value"),
        pytest.param(42, id="not-a-query"),
    ],
)
def test_a_hostile_query_is_a_callback_error(oauth: PagerDutyOAuth, binding: str, query: object) -> None:
    with pytest.raises(CallbackError):
        oauth.finish(query, owner_id="u", session_binding=binding)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"owner_id": ""}, "owner_id"),
        ({"owner_id": "x" * 300}, "owner_id"),
        ({"session_binding": "short"}, "session_binding"),
        ({"return_to": "https://evil.example/"}, "return_to"),
        ({"return_to": "//evil.example/"}, "return_to"),
        ({"return_to": "/\\evil.example"}, "return_to"),
        ({"return_to": "/" + "a" * 3000}, "return_to"),
    ],
)
def test_authorize_refuses_bad_arguments(
    oauth: PagerDutyOAuth, binding: str, kwargs: dict[str, str], message: str
) -> None:
    arguments = {"owner_id": "u", "session_binding": binding} | kwargs
    with pytest.raises(ValueError, match=message):
        oauth.authorize(**arguments)
