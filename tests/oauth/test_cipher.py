"""Token encryption at rest: Fernet keys, rotation, configuration refused without echoing a key."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pdconnect.errors import ConfigError
from pdconnect.oauth.cipher import TOKEN_KEYS_SETTING, TokenCipher, TokenDecryptionError, token_cipher_from_config


def test_roundtrip_and_a_fresh_ciphertext_each_time() -> None:
    cipher = TokenCipher([TokenCipher.generate_key()])
    first, second = cipher.encrypt("pdus+_0secret"), cipher.encrypt("pdus+_0secret")
    assert first != second
    assert "secret" not in first
    assert cipher.decrypt(first) == cipher.decrypt(second) == "pdus+_0secret"


def test_rotation_new_key_first_old_still_decrypts_and_rotate_moves_to_the_new_key() -> None:
    old, new = TokenCipher.generate_key(), TokenCipher.generate_key()
    before = TokenCipher([old]).encrypt("pdus+_1refresh")
    both = TokenCipher([new, old])
    assert both.decrypt(before) == "pdus+_1refresh"
    rotated = both.rotate(before)
    assert TokenCipher([new]).decrypt(rotated) == "pdus+_1refresh"
    with pytest.raises(TokenDecryptionError):
        TokenCipher([old]).decrypt(rotated)


def test_a_token_under_a_removed_key_is_a_typed_error_without_the_ciphertext() -> None:
    ciphertext = TokenCipher([TokenCipher.generate_key()]).encrypt("pdus+_0gone")
    with pytest.raises(TokenDecryptionError) as caught:
        TokenCipher([TokenCipher.generate_key()]).decrypt(ciphertext)
    assert ciphertext not in str(caught.value)
    assert TOKEN_KEYS_SETTING in str(caught.value)


def test_repr_shows_no_key() -> None:
    key = TokenCipher.generate_key()
    cipher = TokenCipher([key, TokenCipher.generate_key()])
    assert repr(cipher) == "TokenCipher(2 keys)"
    assert key not in repr(cipher) and key not in str(cipher)


def test_bytes_keys_are_taken() -> None:
    key = TokenCipher.generate_key()
    assert TokenCipher([key.encode()]).decrypt(TokenCipher([key]).encrypt("x")) == "x"


VALID = TokenCipher.generate_key()


@pytest.mark.parametrize(
    "keys",
    [
        [],
        [""],
        ["not-a-key"],
        [VALID[:-1]],  # 43 characters: no padding
        [VALID[:-2] + "=="],
        [VALID + "A"],
        [VALID.replace(VALID[0], "+", 1)],  # standard base64 alphabet, not URL-safe
        [VALID[:20] + "\n" + VALID[21:]],
        [VALID, "secret-looking-garbage-0123456789"],
        [None],
        [12345],
        [b"\xff" * 44],
        VALID,  # a bare string is not a list of keys
        b"bytes",
        None,
        {"key": VALID},
    ],
    ids=repr,
)
def test_hostile_keys_are_refused_with_config_error_naming_the_setting_not_the_value(keys: object) -> None:
    with pytest.raises(ConfigError) as caught:
        TokenCipher(keys)  # type: ignore[arg-type]
    assert caught.value.setting == TOKEN_KEYS_SETTING
    for key in keys if isinstance(keys, list) else [keys]:
        if isinstance(key, str) and key:
            assert key not in str(caught.value)


def test_from_config_reads_the_environment_comma_separated_newest_first() -> None:
    new, old = TokenCipher.generate_key(), TokenCipher.generate_key()
    ciphertext = TokenCipher([old]).encrypt("t")
    cipher = token_cipher_from_config(environ={TOKEN_KEYS_SETTING: f" {new} , {old} ,"})
    assert cipher is not None and cipher.decrypt(ciphertext) == "t"
    assert TokenCipher([new]).decrypt(cipher.encrypt("t")) == "t"


@pytest.mark.parametrize("value", [None, "", " , ", [], ()])
def test_from_config_without_keys_is_none(value: object) -> None:
    assert token_cipher_from_config(value, environ={}) is None


@pytest.mark.parametrize("value", ["nope", f"{VALID},nope", ["nope"], [VALID, 3], 42, {"a": 1}])
def test_from_config_refuses_bad_values_without_repeating_them(value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        token_cipher_from_config(value, environ={})
    assert "nope" not in str(caught.value)


@given(st.text())
def test_any_text_roundtrips(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return  # a lone surrogate is not a token anyone has
    cipher = TokenCipher([VALID])
    assert cipher.decrypt(cipher.encrypt(text)) == text


@given(st.text(max_size=200))
def test_any_garbage_ciphertext_is_a_typed_error(garbage: str) -> None:
    with pytest.raises(TokenDecryptionError):
        TokenCipher([VALID]).decrypt(garbage)


@given(st.one_of(st.text(max_size=60), st.binary(max_size=60)))
def test_any_key_text_is_a_cipher_or_a_config_error(key: str | bytes) -> None:
    message = ""
    try:
        TokenCipher([key])
    except ConfigError as exc:
        message = str(exc)
    text = (key if isinstance(key, str) else key.decode("ascii", "replace")).strip()
    assert len(text) < 8 or text not in message
