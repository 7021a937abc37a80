"""Envelope encryption: values open only under the right key, bound to their row; re-wrapping keeps them."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conveyor.secrets.crypto import (
    Keyring,
    MasterKey,
    MasterKeyError,
    OpenFailed,
    Sealed,
    open_sealed,
    rewrap,
    row_aad,
    seal,
)

KEY = MasterKey(bytes(range(32)))
RING = Keyring((KEY,))
AAD = row_aad("production", "API_KEY", 3)


@given(st.binary(max_size=2048), st.text(min_size=1, max_size=20), st.integers(1, 10_000))
def test_a_sealed_value_opens_to_itself(value: bytes, name: str, version: int) -> None:
    aad = row_aad("staging", name, version)
    sealed = seal(RING, value, aad)
    assert open_sealed(RING, sealed, aad) == value
    assert sealed.key_id == KEY.id
    if len(value) >= 8:  # shorter byte strings turn up in random bytes by chance
        assert value not in base64.b64decode(sealed.ciphertext[3:])


def test_every_value_gets_its_own_data_key_and_nonce() -> None:
    first, second = seal(RING, b"same", AAD), seal(RING, b"same", AAD)
    assert first.ciphertext != second.ciphertext and first.wrapped_key != second.wrapped_key


@given(st.data())
def test_any_changed_byte_is_detected(data: st.DataObject) -> None:
    sealed = seal(RING, b"hunter2-but-longer", AAD)
    field = data.draw(st.sampled_from(["ciphertext", "wrapped_key"]))
    raw = bytearray(base64.b64decode(getattr(sealed, field)[3:]))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    changed = Sealed(**{**sealed.__dict__, field: "v1:" + base64.b64encode(bytes(raw)).decode()})
    with pytest.raises(OpenFailed):
        open_sealed(RING, changed, AAD)


def test_a_value_moved_to_another_row_does_not_open() -> None:
    sealed = seal(RING, b"value", AAD)
    for other in (
        row_aad("staging", "API_KEY", 3),
        row_aad("production", "JWT", 3),
        row_aad("production", "API_KEY", 2),
    ):
        with pytest.raises(OpenFailed, match="changed"):
            open_sealed(RING, sealed, other)


def test_the_wrong_master_key_opens_nothing_and_says_which_key_is_needed() -> None:
    sealed = seal(RING, b"value", AAD)
    other = Keyring((MasterKey.generate(),))
    with pytest.raises(OpenFailed, match=f"sealed under master key {KEY.id}, which is not in the keyring"):
        open_sealed(other, sealed, AAD)


def test_rewrapping_keeps_the_ciphertext_and_needs_only_the_new_key_afterwards() -> None:
    sealed = seal(RING, b"value", AAD)
    new = MasterKey.generate()
    moved = rewrap(Keyring((new, KEY)), sealed, AAD)
    assert moved.ciphertext == sealed.ciphertext and moved.key_id == new.id
    assert open_sealed(Keyring((new,)), moved, AAD) == b"value"


@pytest.mark.parametrize(
    ("text", "message"),
    [("not base64!", "not base64|decodes to"), ("c2hvcnQ", "decodes to 5 bytes"), ("", "decodes to 0 bytes")],
)
def test_a_malformed_master_key_is_refused(text: str, message: str) -> None:
    with pytest.raises(MasterKeyError, match=message):
        MasterKey.parse(text)


def test_a_key_round_trips_through_its_text_form_and_its_id_reveals_nothing() -> None:
    key = MasterKey.generate()
    assert MasterKey.parse(key.encoded()) == key
    assert key.encoded() not in key.id and len(key.id) == 16
