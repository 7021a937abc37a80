"""Ed25519 artifact signatures: make keys, sign a digest, verify against the trusted keys; pure.

What is signed is the artifact's digest string exactly as Conveyor prints it (`sha256:<64 hex>`),
encoded as UTF-8, so a signature binds the bytes of the build and nothing else (not its version
name, which CI chooses). Called by the CLI (`artifact keygen`, `artifact sign`), by
`artifacts/attachments.py` when a signature is attached, and again when a promotion checks it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from conveyor.errors import InvalidRequest
from conveyor.spec.signing import PublicKeyError, public_key_from_text, public_key_text

SIGNATURE_BYTES = 64
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def is_digest(value: str) -> bool:
    """Whether `value` is an artifact digest, `sha256:` and 64 lowercase hex digits."""
    return _DIGEST.match(value) is not None


def file_digest(path: Path) -> str:
    """The `sha256:…` digest of a file, as the server computes it for a bundle."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def generate_key() -> tuple[bytes, str]:
    """A new Ed25519 key pair: (the private key as unencrypted PKCS#8 PEM, the public key in base64)."""
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, public_key_text(private.public_key())


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM (PKCS#8 or OpenSSH); InvalidRequest says what is wrong."""
    hint = (
        "pass the file `conveyor artifact keygen --out FILE` wrote (or `openssl genpkey -algorithm ed25519`)"
    )
    key: object
    try:
        if b"OPENSSH PRIVATE KEY" in pem:
            key = serialization.load_ssh_private_key(pem, password=None)
        else:
            key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise InvalidRequest(
            "the private key is encrypted with a passphrase",
            hint="decrypt it first (openssl pkey -in KEY -out PLAIN), or make a key without one",
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidRequest("the key file is not a PEM private key", hint=hint) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidRequest(f"the key file holds a {type(key).__name__.lstrip('_')}, not Ed25519", hint=hint)
    return key


def sign(digest: str, key: Ed25519PrivateKey) -> str:
    """The base64 Ed25519 signature of an artifact digest."""
    _require_digest(digest)
    return base64.b64encode(key.sign(digest.encode("utf-8"))).decode()


def _require_digest(digest: str) -> None:
    if not is_digest(digest):
        raise InvalidRequest(
            f"'{digest}' is not an artifact digest",
            hint="sign the digest `conveyor artifact show SERVICE VERSION` prints (sha256:<64 hex>)",
        )


def decode_signature(signature: bytes | str) -> bytes:
    """The 64 signature bytes from base64 text (or from the raw bytes); InvalidRequest otherwise."""
    data = signature.encode() if isinstance(signature, str) else signature
    try:
        decoded = base64.b64decode(b"".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if len(decoded) == SIGNATURE_BYTES:
        return decoded
    if len(data) == SIGNATURE_BYTES:
        return data
    raise InvalidRequest(
        "the signature is not an Ed25519 signature (64 bytes, or their base64)",
        hint="attach what `conveyor artifact sign --key KEY DIGEST` printed",
    )


def verify(digest: str, signature: bytes | str, trusted_keys: Mapping[str, str]) -> str:
    """The name of the trusted key that signed `digest`, or InvalidRequest naming the keys tried."""
    _require_digest(digest)
    raw = decode_signature(signature)
    if not trusted_keys:
        raise InvalidRequest(
            "no signature can be verified: conveyor.yaml lists no trusted keys",
            hint="add the public key under signing.trusted_keys and run `conveyor apply`",
        )
    message = digest.encode("utf-8")
    for name, text in trusted_keys.items():
        if _verifies(text, raw, message):
            return name
    raise InvalidRequest(
        f"the signature does not verify with any trusted key ({', '.join(trusted_keys)}) for digest {digest}",
        hint="sign exactly this digest with a private key whose public key is under "
        "signing.trusted_keys: `conveyor artifact sign --key KEY " + digest + "`",
    )


def _verifies(key_text: str, signature: bytes, message: bytes) -> bool:
    try:
        key: Ed25519PublicKey = public_key_from_text(key_text)
        key.verify(signature, message)
    except (InvalidSignature, PublicKeyError):
        return False
    return True


def encode_signature(raw: bytes) -> str:
    """The canonical text of a signature: base64 of its 64 bytes."""
    return base64.b64encode(raw).decode()
