"""The `signing:` block of conveyor.yaml: the Ed25519 public keys whose artifact signatures Conveyor trusts.

A key is written as a PEM block (`-----BEGIN PUBLIC KEY-----`), as the 32-byte key in base64 (what
`conveyor artifact keygen` prints) or as an OpenSSH `ssh-ed25519` line; the canonical document keeps
the base64 form, so the three spellings of one key mean the same file. `artifacts/signatures.py`
verifies signatures against these keys.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import AfterValidator, Field

from conveyor.spec.fields import KeyName, Label, SpecModel, invalid

KEY_HINT = (
    "paste the PEM block (-----BEGIN PUBLIC KEY-----) or the 32-byte key in base64; "
    "`conveyor artifact keygen` prints one"
)
_RAW_KEY_BYTES = 32


class PublicKeyError(ValueError):
    """Text that is not an Ed25519 public key; the message says why."""


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM, OpenSSH or raw base64 text; PublicKeyError says what is wrong."""
    value = text.strip()
    if "PRIVATE KEY" in value:
        raise PublicKeyError("this is a private key; it must never be shared, let alone put in conveyor.yaml")
    if value.startswith("-----BEGIN"):
        return _from_pem(value)
    if value.startswith("ssh-"):
        return _from_openssh(value)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PublicKeyError("it is neither a PEM block nor base64") from None
    if len(raw) != _RAW_KEY_BYTES:
        raise PublicKeyError(f"it decodes to {len(raw)} bytes; an Ed25519 public key has 32")
    return Ed25519PublicKey.from_public_bytes(raw)


def _from_pem(value: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(value.encode())
    except (ValueError, UnsupportedAlgorithm):
        raise PublicKeyError("the PEM block cannot be read as a public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise PublicKeyError(f"the PEM block holds a key of type {_kind(key)}, not Ed25519")
    return key


def _from_openssh(value: str) -> Ed25519PublicKey:
    try:
        key = serialization.load_ssh_public_key(value.encode())
    except (ValueError, UnsupportedAlgorithm):
        raise PublicKeyError("the OpenSSH line cannot be read as a public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise PublicKeyError(f"the OpenSSH line holds a key of type {_kind(key)}, not Ed25519")
    return key


def _kind(key: object) -> str:
    return type(key).__name__.removeprefix("_").replace("PublicKey", "")


def public_key_text(key: Ed25519PublicKey) -> str:
    """The canonical spelling of a public key: its 32 raw bytes in base64."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def _canonical_public_key(value: str) -> str:
    try:
        return public_key_text(public_key_from_text(value))
    except PublicKeyError as exc:
        raise invalid(f"not an Ed25519 public key: {exc}", KEY_HINT) from None


PublicKey = Annotated[str, AfterValidator(_canonical_public_key), Label("Ed25519 public key")]


class Signing(SpecModel):
    """Artifact signatures: the keys whose Ed25519 signatures of an artifact's digest are trusted."""

    trusted_keys: dict[KeyName, PublicKey] = Field(default_factory=dict)
    """Public keys by name: a PEM block or the 32-byte key in base64 (from `conveyor artifact keygen`)."""
