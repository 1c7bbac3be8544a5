"""Encryption of OAuth tokens at rest: Fernet keys, the first encrypts, all of them decrypt.

A stored access or refresh token lets anyone who reads the database act in a customer's
PagerDuty account as the user who connected it, so :class:`TokenCipher` encrypts both by
default. It is ``cryptography``'s :class:`~cryptography.fernet.MultiFernet` (AES-128-CBC with
an HMAC-SHA256 tag, a fresh IV per token): rotating keys means putting a new key first,
re-encrypting (:meth:`TokenCipher.rotate`, or the store's ``rotate_keys``), then dropping the
old key. :func:`token_cipher_from_config` reads the keys from ``PDCONNECT_TOKEN_KEYS``.
"""

from __future__ import annotations

import binascii
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from pdconnect.config_values import parse_list
from pdconnect.errors import ConfigError, PdConnectError

#: The setting (and environment variable) holding the keys, comma-separated, newest first.
TOKEN_KEYS_SETTING = "PDCONNECT_TOKEN_KEYS"  # noqa: S105 -- the setting's name, not a key

# A Fernet key is 32 bytes in URL-safe base64: 43 characters and one "=".
_FERNET_KEY = re.compile(r"[A-Za-z0-9_-]{43}=", re.ASCII)


class TokenDecryptionError(PdConnectError):
    """A stored token cannot be decrypted with any configured key.

    Usually the key that encrypted it was removed from the list before the rows were
    re-encrypted under the new one. The message never contains the ciphertext or a key.
    """


class TokenCipher:
    """Encrypts and decrypts tokens with a list of Fernet keys (the first encrypts).

    ``keys`` are Fernet keys (:meth:`generate_key` makes one), as text or bytes. Raises
    :class:`~pdconnect.errors.ConfigError` for an empty list or a value that is not a Fernet
    key, naming its position and never repeating it. ``repr`` shows how many keys there are,
    never a key.
    """

    def __init__(self, keys: Sequence[str | bytes], *, setting: str = TOKEN_KEYS_SETTING) -> None:
        if isinstance(keys, str | bytes) or not isinstance(keys, Sequence):
            raise ConfigError(f"{setting} must be a list of Fernet keys", setting=setting)
        if not keys:
            raise ConfigError(f"{setting} holds no key (make one with TokenCipher.generate_key())", setting=setting)
        fernets = [_fernet(key, position, setting) for position, key in enumerate(keys)]
        self._cipher = MultiFernet(fernets)
        self._count = len(fernets)

    @staticmethod
    def generate_key() -> str:
        """A new random Fernet key, as text to put in ``PDCONNECT_TOKEN_KEYS``."""
        return Fernet.generate_key().decode("ascii")

    def __repr__(self) -> str:
        return f"TokenCipher({self._count} key{'s' if self._count != 1 else ''})"

    def encrypt(self, plaintext: str) -> str:
        """``plaintext`` encrypted under the first key, as URL-safe text."""
        return self._cipher.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        """The text :meth:`encrypt` encrypted, under any of the keys; raises :class:`TokenDecryptionError`."""
        try:
            return self._cipher.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, binascii.Error, TypeError, AttributeError):
            raise TokenDecryptionError(
                "a stored token cannot be decrypted with any of the configured keys "
                f"(was the key that encrypted it removed from {TOKEN_KEYS_SETTING}?)"
            ) from None

    def rotate(self, ciphertext: str) -> str:
        """``ciphertext`` re-encrypted under the first key (decrypted with any of them)."""
        return self.encrypt(self.decrypt(ciphertext))


def _fernet(key: object, position: int, setting: str) -> Fernet:
    text = key.decode("ascii", "replace") if isinstance(key, bytes) else key
    if not isinstance(text, str) or not _FERNET_KEY.fullmatch(text.strip()):
        raise ConfigError(
            f"{setting}[{position}] is not a Fernet key (32 bytes in URL-safe base64; "
            "make one with TokenCipher.generate_key())",
            setting=setting,
        )
    try:
        return Fernet(text.strip())
    except ValueError:  # pragma: no cover - the pattern admits only what Fernet takes
        raise ConfigError(f"{setting}[{position}] is not a Fernet key", setting=setting) from None


def token_cipher_from_config(
    value: Any = None,
    *,
    environ: Mapping[str, str] | None = None,
    setting: str = TOKEN_KEYS_SETTING,
) -> TokenCipher | None:
    """The :class:`TokenCipher` for ``value`` (a list or a comma-separated string of keys).

    Without ``value``, reads ``environ`` (``os.environ`` by default) at ``setting``. Returns
    ``None`` when neither holds a key: the caller decides whether that is allowed (a store
    refuses to start without a cipher unless told ``insecure_plaintext=True``). A value that
    is present but wrong raises :class:`~pdconnect.errors.ConfigError`.
    """
    if value is None:
        value = (environ if environ is not None else os.environ).get(setting)
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    if isinstance(value, list | tuple) and any(isinstance(item, bytes) for item in value):
        value = [item.decode("ascii", "replace") if isinstance(item, bytes) else item for item in value]
    keys = parse_list(value, name=setting)
    if not keys:
        return None
    return TokenCipher(keys, setting=setting)
