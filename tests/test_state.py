from __future__ import annotations

import base64
import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from itsdangerous import URLSafeTimedSerializer

from pdconnect import MemoryNonceStore, Origin, new_session_binding
from pdconnect.errors import (
    StateError,
    StateExpired,
    StateInvalid,
    StateOwnerMismatch,
    StateReplayed,
    StateSessionMismatch,
)
from pdconnect.state import STATE_SALT, StateManager
from tests.conftest import SECRET, FakeClock


@pytest.fixture
def states(clock: FakeClock) -> StateManager:
    return StateManager(SECRET, nonce_store=MemoryNonceStore(clock=clock), clock=clock)


def test_round_trip(states: StateManager, binding: str, clock: FakeClock) -> None:
    token = states.issue(owner_id="org-1", session_binding=binding, flow=Origin.INSTALL)
    verified = states.verify(token, session_binding=binding, owner_id="org-1", flow=Origin.INSTALL)
    assert verified.owner_id == "org-1"
    assert verified.flow is Origin.INSTALL
    assert verified.issued_at == int(clock.now)


def test_token_is_url_safe_and_does_not_contain_the_binding(states: StateManager, binding: str) -> None:
    token = states.issue(owner_id="org-1", session_binding=binding, flow=Origin.CONNECT)
    assert all(ch.isalnum() or ch in "-_." for ch in token)
    payload = token.split(".")[0]
    decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    assert binding.encode() not in decoded


def test_single_use(states: StateManager, binding: str) -> None:
    token = states.issue(owner_id="o", session_binding=binding, flow=Origin.CONNECT)
    states.verify(token, session_binding=binding)
    with pytest.raises(StateReplayed):
        states.verify(token, session_binding=binding)


def test_expires_after_max_age(states: StateManager, binding: str, clock: FakeClock) -> None:
    token = states.issue(owner_id="o", session_binding=binding, flow=Origin.CONNECT)
    clock.advance(states.max_age + 1)
    with pytest.raises(StateExpired):
        states.verify(token, session_binding=binding)


def test_accepted_just_before_max_age(states: StateManager, binding: str, clock: FakeClock) -> None:
    token = states.issue(owner_id="o", session_binding=binding, flow=Origin.CONNECT)
    clock.advance(states.max_age - 1)
    assert states.verify(token, session_binding=binding).owner_id == "o"


def test_other_session_is_refused_and_does_not_burn_the_state(states: StateManager, binding: str) -> None:
    token = states.issue(owner_id="o", session_binding=binding, flow=Origin.CONNECT)
    with pytest.raises(StateSessionMismatch):
        states.verify(token, session_binding=new_session_binding())
    assert states.verify(token, session_binding=binding).owner_id == "o"


@pytest.mark.parametrize("bad_binding", ["", "short", None])
def test_session_without_binding_is_a_mismatch(states: StateManager, binding: str, bad_binding: object) -> None:
    token = states.issue(owner_id="o", session_binding=binding, flow=Origin.CONNECT)
    with pytest.raises(StateSessionMismatch):
        states.verify(token, session_binding=bad_binding)  # type: ignore[arg-type]


def test_other_owner_is_refused(states: StateManager, binding: str) -> None:
    token = states.issue(owner_id="org-1", session_binding=binding, flow=Origin.CONNECT)
    with pytest.raises(StateOwnerMismatch):
        states.verify(token, session_binding=binding, owner_id="org-2")


def test_other_flow_is_refused(states: StateManager, binding: str) -> None:
    token = states.issue(owner_id="o", session_binding=binding, flow=Origin.CONNECT)
    with pytest.raises(StateInvalid, match="connect flow"):
        states.verify(token, session_binding=binding, flow=Origin.INSTALL)


def test_several_handshakes_in_flight_for_one_session(states: StateManager, binding: str) -> None:
    tokens = [states.issue(owner_id="o", session_binding=binding, flow=Origin.INSTALL) for _ in range(5)]
    assert len(set(tokens)) == 5
    for token in reversed(tokens):
        states.verify(token, session_binding=binding)


def test_tampered_token_is_invalid(states: StateManager, binding: str) -> None:
    token = states.issue(owner_id="o", session_binding=binding, flow=Origin.CONNECT)
    payload, timestamp, signature = token.split(".")
    forged = json.dumps({"v": 1, "f": "connect", "n": "x", "o": "admin", "b": "y"}).encode()
    forged_payload = base64.urlsafe_b64encode(forged).decode().rstrip("=")
    for bad in (
        f"{forged_payload}.{timestamp}.{signature}",
        f"{payload}.{timestamp}.{signature[:-2]}AA",
        token + "x",
        token[:-1],
    ):
        with pytest.raises(StateInvalid):
            states.verify(bad, session_binding=binding)


def test_token_signed_with_another_secret_or_salt_is_invalid(states: StateManager, binding: str) -> None:
    foreign = StateManager("another-secret-of-good-length").issue(
        owner_id="o", session_binding=binding, flow=Origin.CONNECT
    )
    with pytest.raises(StateInvalid):
        states.verify(foreign, session_binding=binding)
    other_salt = URLSafeTimedSerializer(SECRET, salt="something-else").dumps({"v": 1})
    with pytest.raises(StateInvalid):
        states.verify(other_salt, session_binding=binding)


def test_valid_signature_over_a_foreign_shape_is_invalid(binding: str) -> None:
    states = StateManager(SECRET)  # the real clock, like the serializer below
    serializer = URLSafeTimedSerializer(SECRET, salt=STATE_SALT, signer_kwargs={"digest_method": hashlib.sha256})
    for payload in ([1, 2], {"v": 2}, {"v": 1, "f": "connect"}, {"v": 1, "f": "nope", "n": "n", "o": "o", "b": "b"}):
        with pytest.raises(StateInvalid, match="unknown"):
            states.verify(serializer.dumps(payload), session_binding=binding)


def test_secret_rotation(clock: FakeClock, binding: str) -> None:
    old = StateManager("old-secret-0123456789", clock=clock)
    token = old.issue(owner_id="o", session_binding=binding, flow=Origin.CONNECT)
    rotated = StateManager(["old-secret-0123456789", b"new-secret-0123456789"], clock=clock)
    assert rotated.verify(token, session_binding=binding).owner_id == "o"
    fresh = rotated.issue(owner_id="o", session_binding=binding, flow=Origin.CONNECT)
    with pytest.raises(StateInvalid):
        old.verify(fresh, session_binding=binding)


@pytest.mark.parametrize("token", [None, "", "x" * 3000, 42])
def test_missing_or_absurd_tokens(states: StateManager, binding: str, token: object) -> None:
    with pytest.raises(StateInvalid):
        states.verify(token, session_binding=binding)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"secret": "short"}, "at least 16"),
        ({"secret": []}, "at least 16"),
        ({"secret": SECRET, "max_age": 0}, "positive"),
    ],
)
def test_bad_configuration(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StateManager(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("owner", ["", "a\nb", "x" * 256])
def test_bad_owner_ids_are_refused_at_issue(states: StateManager, binding: str, owner: str) -> None:
    with pytest.raises(ValueError, match="owner_id"):
        states.issue(owner_id=owner, session_binding=binding, flow=Origin.CONNECT)


def test_repr_has_no_secret(states: StateManager) -> None:
    assert SECRET not in repr(states)


@given(st.text(max_size=400))
def test_arbitrary_tokens_only_raise_state_errors(token: str) -> None:
    states = StateManager(SECRET)
    with pytest.raises(StateError):
        states.verify(token, session_binding="b" * 20)


# -- hostile values at verify (issue 9): a typed StateError, never UnicodeEncodeError ----------

_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)


@pytest.mark.parametrize(
    "token", ["\ud800", "abc.\ud800.def", "é" * 10, "abc def", "abc\x00", "a/b", "a%2Fb", "abc\u2028"]
)
def test_tokens_with_foreign_characters_are_invalid(states: StateManager, binding: str, token: str) -> None:
    with pytest.raises(StateInvalid):
        states.verify(token, session_binding=binding)


@pytest.mark.parametrize("owner", ["\ud800", "alice\udcff", "ALICE", "alice ", "alicé", "", 5, ["alice"], b"alice"])
def test_another_or_unencodable_owner_is_a_mismatch(states: StateManager, binding: str, owner: object) -> None:
    token = states.issue(owner_id="alice", session_binding=binding, flow=Origin.INSTALL)
    with pytest.raises(StateOwnerMismatch):
        states.verify(token, session_binding=binding, owner_id=owner)  # type: ignore[arg-type]
    assert states.verify(token, session_binding=binding, owner_id="alice").owner_id == "alice", "not consumed"


@pytest.mark.parametrize("session_binding", ["\ud800" * 20, "x" * 15, b"x" * 20, None, 12345678901234567890])
def test_an_unusable_session_binding_is_a_session_mismatch(states: StateManager, session_binding: object) -> None:
    token = states.issue(owner_id="alice", session_binding="b" * 20, flow=Origin.INSTALL)
    with pytest.raises(StateSessionMismatch):
        states.verify(token, session_binding=session_binding)  # type: ignore[arg-type]


def test_a_surrogate_session_binding_at_issue_is_a_clear_value_error(states: StateManager) -> None:
    with pytest.raises(ValueError, match="session_binding"):
        states.issue(owner_id="alice", session_binding="\ud800" * 20, flow=Origin.INSTALL)


@given(token=st.text(alphabet=st.one_of(st.characters(), _SURROGATES), max_size=300))
def test_any_text_token_including_surrogates_is_a_state_error(token: str) -> None:
    with pytest.raises(StateError):
        StateManager(SECRET).verify(token, session_binding="b" * 20)


@given(owner=st.one_of(st.text(alphabet=st.one_of(st.characters(), _SURROGATES)), st.integers(), st.binary()))
def test_any_other_owner_is_a_mismatch_never_a_crash(owner: object) -> None:
    states = StateManager(SECRET)
    token = states.issue(owner_id="the-owner", session_binding="b" * 20, flow=Origin.CONNECT)
    if owner == "the-owner":
        return
    with pytest.raises(StateOwnerMismatch):
        states.verify(token, session_binding="b" * 20, owner_id=owner)  # type: ignore[arg-type]
