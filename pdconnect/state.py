"""Handshake state: signed, expiring, single-use, and bound to one browser session.

PagerDuty Connect has no ``state`` parameter, so the state rides inside the callback URL
(in its path or query). It is an itsdangerous token signed with the vendor's secret and a
salt used for nothing else, timestamped, and carrying:

- a random nonce, recorded in a :class:`~pdconnect.nonces.NonceStore` when the handshake
  completes, so the callback URL works once;
- the vendor's opaque owner id (the user or organisation that started the handshake);
- a hash of a *session binding*: a random value the vendor keeps in the user's session
  (see :func:`new_session_binding`) and passes again on the callback. A callback opened in
  another browser does not have it and is refused. The value itself never enters the URL.

Nothing is stored when a state is issued, so one session can run several handshakes at once
(several tabs), each with its own state.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from base64 import urlsafe_b64encode
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadData, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from pdconnect.errors import (
    StateExpired,
    StateInvalid,
    StateOwnerMismatch,
    StateReplayed,
    StateSessionMismatch,
)
from pdconnect.integration import Origin
from pdconnect.nonces import MemoryNonceStore, NonceStore
from pdconnect.text import check_text

#: How long a user has between clicking the button and coming back (seconds).
DEFAULT_MAX_AGE = 600
#: Distinguishes these tokens from anything else the vendor signs with the same secret.
STATE_SALT = "pdconnect.handshake-state.v1"
#: Longer tokens are refused before any decoding work.
MAX_TOKEN_LENGTH = 2048
#: Nonces are kept this long after a state expires, to absorb clock differences between hosts.
_NONCE_GRACE = 60
_MIN_BINDING_LENGTH = 16
# What an itsdangerous URL-safe token is made of; anything else cannot be one of ours.
_TOKEN = re.compile(r"[A-Za-z0-9_.\-]+", re.ASCII)

Secret = str | bytes


def new_session_binding() -> str:
    """Return a fresh random value to keep in the user's session as the binding.

    Store it once per browser session (for example ``session["pdconnect_binding"]``) and pass
    the same value to :meth:`StateManager.issue` and :meth:`StateManager.verify`.
    """
    return secrets.token_urlsafe(32)


def binding_digest(session_binding: str) -> str:
    """What a state carries of the session binding: a truncated SHA-256, never the value."""
    if not isinstance(session_binding, str) or len(session_binding) < _MIN_BINDING_LENGTH:
        raise ValueError(
            f"session_binding must be a string of at least {_MIN_BINDING_LENGTH} characters; "
            "use pdconnect.new_session_binding()"
        )
    try:
        encoded = session_binding.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("session_binding must be text UTF-8 can encode; use pdconnect.new_session_binding()") from None
    digest = hashlib.sha256(encoded).digest()[:16]
    return urlsafe_b64encode(digest).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class VerifiedState:
    """What a verified state carried."""

    nonce: str
    owner_id: str
    flow: Origin
    issued_at: float


class StateManager:
    """Issues and verifies handshake states.

    ``secret`` is the vendor's signing secret; pass a list to rotate (the last signs, all
    verify). ``nonce_store`` defaults to a :class:`~pdconnect.nonces.MemoryNonceStore`, which
    is right only for a single process: use a :class:`~pdconnect.nonces.SqlNonceStore` when
    several processes serve callbacks.
    """

    def __init__(
        self,
        secret: Secret | Sequence[Secret],
        *,
        max_age: int = DEFAULT_MAX_AGE,
        nonce_store: NonceStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        given = [secret] if isinstance(secret, str | bytes) else list(secret)
        keys = [k.encode("utf-8") if isinstance(k, str) else k for k in given]
        if not keys or any(len(k) < 16 for k in keys):
            raise ValueError("the state secret must be at least 16 characters long")
        if max_age <= 0:
            raise ValueError("max_age must be positive")
        self.max_age = max_age
        self.nonce_store: NonceStore = nonce_store if nonce_store is not None else MemoryNonceStore(clock=clock)
        self._clock = clock

        class _ClockedSigner(TimestampSigner):
            def get_timestamp(self) -> int:
                return int(clock())

        self._serializer = URLSafeTimedSerializer(
            keys,
            salt=STATE_SALT,
            signer=_ClockedSigner,
            signer_kwargs={"digest_method": hashlib.sha256},
        )

    def __repr__(self) -> str:
        return f"StateManager(max_age={self.max_age}, nonce_store={type(self.nonce_store).__name__})"

    def issue(self, *, owner_id: str, session_binding: str, flow: Origin) -> str:
        """Return a new state token for one handshake started by ``owner_id`` in this session."""
        check_text(owner_id, name="owner_id", max_length=255)
        payload = {
            "v": 1,
            "f": flow.value,
            "n": secrets.token_urlsafe(16),
            "o": owner_id,
            "b": binding_digest(session_binding),
        }
        token = self._serializer.dumps(payload)
        assert isinstance(token, str)
        return token

    def verify(
        self,
        token: object,
        *,
        session_binding: str,
        flow: Origin | None = None,
        owner_id: str | None = None,
    ) -> VerifiedState:
        """Check a state from a callback and mark it used.

        Checks, in order: the signature, the age (at most ``max_age`` seconds), the flow it
        was issued for, the session binding, the owner (when ``owner_id`` is given), and
        finally that it was not used before. Raises a
        :class:`~pdconnect.errors.StateError` subclass naming the first check that failed; a
        state that fails any check is not consumed.
        """
        if not isinstance(token, str) or not token:
            raise StateInvalid("the handshake state is missing")
        if len(token) > MAX_TOKEN_LENGTH:
            raise StateInvalid("the handshake state is too long")
        if not _TOKEN.fullmatch(token):
            raise StateInvalid("the handshake state is not valid (tampered or not issued here)")
        try:
            payload, signed_at = self._serializer.loads(token, max_age=self.max_age, return_timestamp=True)
        except SignatureExpired as exc:
            raise StateExpired("the handshake took too long; please start again") from exc
        except BadData as exc:
            raise StateInvalid("the handshake state is not valid (tampered or not issued here)") from exc
        state = self._decode(payload, signed_at.timestamp())
        if flow is not None and state.flow is not flow:
            raise StateInvalid(f"the handshake state was issued for the {state.flow.value} flow")
        try:
            expected = binding_digest(session_binding)
        except ValueError as exc:
            raise StateSessionMismatch("this browser session has no handshake in progress") from exc
        if not hmac.compare_digest(expected, payload["b"]):
            raise StateSessionMismatch("the handshake was started in another browser session")
        if owner_id is not None and not _same_owner(owner_id, state.owner_id):
            raise StateOwnerMismatch("the handshake was started by another user")
        expires_at = state.issued_at + self.max_age + _NONCE_GRACE
        if not self.nonce_store.consume(state.nonce, expires_at=expires_at):
            raise StateReplayed("this handshake was already completed; a callback works only once")
        return state

    @staticmethod
    def _decode(payload: Any, issued_at: float) -> VerifiedState:
        # A valid signature over a payload of the wrong shape means another version or another
        # use of the same secret and salt: refuse it like any foreign token.
        if not isinstance(payload, dict) or payload.get("v") != 1:
            raise StateInvalid("the handshake state has an unknown format")
        fields = (payload.get("f"), payload.get("n"), payload.get("o"), payload.get("b"))
        if not all(isinstance(f, str) and f for f in fields):
            raise StateInvalid("the handshake state has an unknown format")
        try:
            flow = Origin(payload["f"])
        except ValueError as exc:
            raise StateInvalid("the handshake state names an unknown flow") from exc
        return VerifiedState(nonce=payload["n"], owner_id=payload["o"], flow=flow, issued_at=issued_at)


def _same_owner(given: object, issued: str) -> bool:
    # An owner id that is not text, or that UTF-8 cannot encode ("\ud800"), was never issued a
    # state: issue() checks its owner id. It is another owner, not a crash.
    if not isinstance(given, str):
        return False
    try:
        return hmac.compare_digest(given.encode("utf-8"), issued.encode("utf-8"))
    except UnicodeEncodeError:
        return False
