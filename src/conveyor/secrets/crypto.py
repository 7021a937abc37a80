"""Envelope encryption of secret values (ADR 0010); pure apart from drawing random bytes.

Each value is sealed with AES-256-GCM under its own random data key; the data key is sealed
(wrapped) with AES-256-GCM under the key-encryption key (KEK). Both seals bind associated data
naming the environment, the secret and the version, so a sealed value copied onto another row
does not open. Rotating the KEK re-wraps data keys and leaves every value's ciphertext as it is.

A keyring holds the current KEK first and older ones after it, so rows wrapped under an older
key still open until they are re-wrapped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
_FORMAT = "v1"


class MasterKeyError(Exception):
    """A master key is malformed or missing."""


class OpenFailed(Exception):
    """A sealed value did not open: the wrong key, or the data was changed."""


@dataclass(frozen=True)
class MasterKey:
    """One key-encryption key and its public id (never the key itself)."""

    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != KEY_BYTES:
            raise MasterKeyError(f"a master key is {KEY_BYTES} bytes, this one is {len(self.key)}")

    @property
    def id(self) -> str:
        """A short id derived one-way from the key, stored beside every wrapped data key."""
        return hmac.new(self.key, b"conveyor master key id", hashlib.sha256).hexdigest()[:16]

    def encoded(self) -> str:
        """The key as stored in a key file or CONVEYOR_MASTER_KEY (URL-safe base64)."""
        return base64.urlsafe_b64encode(self.key).decode()

    @classmethod
    def generate(cls) -> MasterKey:
        return cls(os.urandom(KEY_BYTES))

    @classmethod
    def parse(cls, text: str) -> MasterKey:
        """A key from its base64 form; MasterKeyError says what is wrong with it."""
        cleaned = text.strip()
        try:
            raw = base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))
        except (ValueError, TypeError):
            raise MasterKeyError("a master key is 32 bytes in base64; this is not base64") from None
        if len(raw) != KEY_BYTES:
            raise MasterKeyError(f"a master key is 32 bytes in base64; this one decodes to {len(raw)} bytes")
        return cls(raw)


@dataclass(frozen=True)
class Keyring:
    """The current master key first, then older ones that may still wrap some data keys."""

    keys: tuple[MasterKey, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise MasterKeyError("a keyring needs at least one master key")

    @property
    def current(self) -> MasterKey:
        return self.keys[0]

    def find(self, key_id: str) -> MasterKey | None:
        return next((k for k in self.keys if k.id == key_id), None)


@dataclass(frozen=True)
class Sealed:
    """A value sealed under its data key, and the data key wrapped under a master key."""

    ciphertext: str
    wrapped_key: str
    key_id: str


def _pack(nonce: bytes, data: bytes) -> str:
    return f"{_FORMAT}:{base64.b64encode(nonce + data).decode()}"


def _unpack(text: str) -> tuple[bytes, bytes]:
    fmt, _, body = text.partition(":")
    if fmt != _FORMAT:
        raise OpenFailed(f"unknown sealed format '{fmt}'")
    try:
        raw = base64.b64decode(body, validate=True)
    except ValueError:
        raise OpenFailed("the sealed data is not valid base64") from None
    if len(raw) < NONCE_BYTES + 16:
        raise OpenFailed("the sealed data is too short")
    return raw[:NONCE_BYTES], raw[NONCE_BYTES:]


def _wrap_aad(key_id: str, aad: bytes) -> bytes:
    return b"conveyor data key\x00" + key_id.encode() + b"\x00" + aad


def seal(keyring: Keyring, plaintext: bytes, aad: bytes) -> Sealed:
    """Seal `plaintext` under a new data key wrapped by the current master key."""
    data_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, b"conveyor value\x00" + aad)
    master = keyring.current
    wrap_nonce = os.urandom(NONCE_BYTES)
    wrapped = AESGCM(master.key).encrypt(wrap_nonce, data_key, _wrap_aad(master.id, aad))
    return Sealed(_pack(nonce, ciphertext), _pack(wrap_nonce, wrapped), master.id)


def _data_key(keyring: Keyring, sealed: Sealed, aad: bytes) -> bytes:
    master = keyring.find(sealed.key_id)
    if master is None:
        raise OpenFailed(
            f"it was sealed under master key {sealed.key_id}, which is not in the keyring "
            f"(keys present: {', '.join(k.id for k in keyring.keys)})"
        )
    nonce, wrapped = _unpack(sealed.wrapped_key)
    try:
        return AESGCM(master.key).decrypt(nonce, wrapped, _wrap_aad(master.id, aad))
    except InvalidTag:
        raise OpenFailed("its data key does not unwrap: the stored row was changed") from None


def open_sealed(keyring: Keyring, sealed: Sealed, aad: bytes) -> bytes:
    """The plaintext of `sealed`; OpenFailed when the key is wrong or anything was changed."""
    data_key = _data_key(keyring, sealed, aad)
    nonce, ciphertext = _unpack(sealed.ciphertext)
    try:
        return AESGCM(data_key).decrypt(nonce, ciphertext, b"conveyor value\x00" + aad)
    except InvalidTag:
        raise OpenFailed("the value does not decrypt: the stored row was changed") from None


def rewrap(keyring: Keyring, sealed: Sealed, aad: bytes) -> Sealed:
    """The same ciphertext with its data key wrapped under the current master key."""
    data_key = _data_key(keyring, sealed, aad)
    master = keyring.current
    nonce = os.urandom(NONCE_BYTES)
    wrapped = AESGCM(master.key).encrypt(nonce, data_key, _wrap_aad(master.id, aad))
    return Sealed(sealed.ciphertext, _pack(nonce, wrapped), master.id)


def row_aad(environment: str, name: str, version: int) -> bytes:
    """What a sealed value is bound to: its environment, name and version."""
    return f"{environment}\x00{name}\x00{version}".encode()
