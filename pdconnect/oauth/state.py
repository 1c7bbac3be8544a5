"""The OAuth state: sealed (encrypted and authenticated), expiring, single-use and session-bound.

It carries what :class:`~pdconnect.state.StateManager` carries for the handshakes (a nonce
recorded in a :class:`~pdconnect.nonces.NonceStore` when the flow completes, the owner id, a
digest of the session binding, the time it was issued) and two things more: the PKCE code
verifier and where to send the user afterwards. Why sealed and not stored server-side:

- The verifier must not travel in the clear: the state goes through the browser, PagerDuty
  and their logs, and PKCE protects a code only while its verifier stays with us. Encrypted
  under a key derived from the vendor's state secret, it can travel.
- Nothing is stored when a flow starts, so a user can run several at once (two tabs), a
  bot cannot fill a table by starting flows it never finishes, and every process of the app
  reads any state without a shared verifier store. The nonce store already shared for the
  handshakes is the only server-side record, written once the callback verifies.

The token is a Fernet token (AES-128-CBC with HMAC-SHA256, from ``cryptography``) under a key
derived with HKDF from the vendor's secret and a label used for nothing else, so a handshake
state is never an OAuth state and neither is any other token the same secret signs. A list of
secrets rotates: the last one seals, every one opens (as :class:`~pdconnect.state.StateManager`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from base64 import urlsafe_b64encode
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pdconnect.errors import StateExpired, StateInvalid, StateOwnerMismatch, StateReplayed, StateSessionMismatch
from pdconnect.nonces import NonceStore
from pdconnect.oauth.pkce import is_verifier
from pdconnect.state import DEFAULT_MAX_AGE, Secret, binding_digest
from pdconnect.text import check_text
from pdconnect.urls import MAX_REDIRECT_LENGTH, safe_local_redirect

#: Keys for OAuth states are derived under this label, so they open nothing else.
STATE_LABEL = b"pdconnect.oauth-state.v1"
#: Longer states are refused before any decryption work.
MAX_STATE_LENGTH = 4096
#: A state issued this far in the future (by this host's clock) is refused: clocks differ a little, not more.
_CLOCK_SKEW = 60
_NONCE_GRACE = 60
# Fernet tokens are URL-safe base64, padded.
_FERNET = re.compile(r"[A-Za-z0-9_\-]+={0,2}", re.ASCII)


@dataclass(frozen=True)
class OpenedState:
    """What a verified OAuth state carried; the ``repr`` hides the verifier."""

    nonce: str
    owner_id: str
    verifier: str
    return_to: str | None
    issued_at: float

    def __repr__(self) -> str:
        return f"OpenedState(owner_id={self.owner_id!r}, return_to={self.return_to!r}, issued_at={self.issued_at!r})"


def _fernet(secret: bytes) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=STATE_LABEL).derive(secret)
    return Fernet(urlsafe_b64encode(key))


class OAuthStates:
    """Seals and opens OAuth states for one vendor.

    ``secret`` is the vendor's state secret (at least 16 characters; the handshake's secret
    may be reused, the derivation keeps the two apart). ``nonces`` records used states.
    """

    def __init__(
        self,
        secret: Secret | Sequence[Secret],
        *,
        nonces: NonceStore,
        max_age: int = DEFAULT_MAX_AGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        given = [secret] if isinstance(secret, str | bytes) else list(secret)
        keys = [k.encode("utf-8") if isinstance(k, str) else k for k in given]
        if not keys or any(not isinstance(k, bytes) or len(k) < 16 for k in keys):
            raise ValueError("the state secret must be at least 16 characters long")
        if isinstance(max_age, bool) or not isinstance(max_age, int) or max_age <= 0:
            raise ValueError("max_age must be a positive whole number of seconds")
        # MultiFernet encrypts with its first key: the last secret given, as StateManager signs.
        self._fernet = MultiFernet([_fernet(k) for k in reversed(keys)])
        self.nonces = nonces
        self.max_age = max_age
        self._clock = clock

    def __repr__(self) -> str:
        return f"OAuthStates(max_age={self.max_age}, nonces={type(self.nonces).__name__})"

    def seal(self, *, owner_id: str, session_binding: str, verifier: str, return_to: str | None = None) -> str:
        """A new state for one authorization started by ``owner_id`` in this browser session.

        ``return_to`` must be a local path (see :func:`~pdconnect.urls.safe_local_redirect`);
        raises ``ValueError`` otherwise, and for a blank owner id or a short session binding.
        """
        check_text(owner_id, name="owner_id", max_length=255)
        if not is_verifier(verifier):
            raise ValueError("verifier is not a PKCE code verifier")
        if return_to is not None and safe_local_redirect(return_to, default="") != return_to:
            raise ValueError(f"return_to must be a local path of at most {MAX_REDIRECT_LENGTH} characters")
        payload = {
            "v": 1,
            "n": secrets.token_urlsafe(16),
            "o": owner_id,
            "b": binding_digest(session_binding),
            "p": verifier,
            "r": return_to,
        }
        data = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        return self._fernet.encrypt_at_time(data, int(self._clock())).decode("ascii")

    def open(self, token: object, *, owner_id: str, session_binding: str) -> OpenedState:
        """Check a state from a callback and mark it used.

        Checks, in order: the seal, the age (at most ``max_age`` seconds), the session
        binding, the owner, and that it was not used before. Raises the
        :class:`~pdconnect.errors.StateError` subclass naming the first check that failed; a
        state that fails a check is not consumed.
        """
        if not isinstance(token, str) or not token:
            raise StateInvalid("the authorization state is missing")
        if len(token) > MAX_STATE_LENGTH:
            raise StateInvalid("the authorization state is too long")
        if not _FERNET.fullmatch(token):
            raise StateInvalid("the authorization state is not valid (tampered or not issued here)")
        raw = token.encode("ascii")
        try:
            data = self._fernet.decrypt(raw)
            issued_at = self._fernet.extract_timestamp(raw)
        except (InvalidToken, ValueError, TypeError) as exc:
            raise StateInvalid("the authorization state is not valid (tampered or not issued here)") from exc
        now = self._clock()
        if issued_at - now > _CLOCK_SKEW:
            raise StateInvalid("the authorization state was issued in the future")
        if now - issued_at > self.max_age:
            raise StateExpired("the authorization took too long; please start again")
        state, digest = self._decode(data, float(issued_at))
        try:
            expected = binding_digest(session_binding)
        except ValueError as exc:
            raise StateSessionMismatch("this browser session has no authorization in progress") from exc
        if not hmac.compare_digest(expected, digest):
            raise StateSessionMismatch("the authorization was started in another browser session")
        if not _same_owner(owner_id, state.owner_id):
            raise StateOwnerMismatch("the authorization was started by another user")
        if not self.nonces.consume(state.nonce, expires_at=state.issued_at + self.max_age + _NONCE_GRACE):
            raise StateReplayed("this authorization was already completed; a callback works only once")
        return state

    @staticmethod
    def _decode(data: bytes, issued_at: float) -> tuple[OpenedState, str]:
        # A valid seal over a payload of the wrong shape is another version of this code:
        # refuse it like a foreign token.
        try:
            payload: Any = json.loads(data)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or payload.get("v") != 1:
            raise StateInvalid("the authorization state has an unknown format")
        fields = (payload.get("n"), payload.get("o"), payload.get("b"), payload.get("p"))
        return_to = payload.get("r")
        if not all(isinstance(f, str) and f for f in fields) or not (return_to is None or isinstance(return_to, str)):
            raise StateInvalid("the authorization state has an unknown format")
        state = OpenedState(
            nonce=payload["n"], owner_id=payload["o"], verifier=payload["p"], return_to=return_to, issued_at=issued_at
        )
        return state, payload["b"]


def _same_owner(given: object, issued: str) -> bool:
    # An owner id that is not text, or that UTF-8 cannot encode, was never issued a state.
    if not isinstance(given, str):
        return False
    try:
        return hmac.compare_digest(hashlib.sha256(given.encode()).digest(), hashlib.sha256(issued.encode()).digest())
    except UnicodeEncodeError:
        return False
