"""Ed25519 signatures of artifact digests: keys, signing, verification against the trusted keys."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key
from hypothesis import given
from hypothesis import strategies as st

from conveyor.artifacts.signatures import (
    decode_signature,
    generate_key,
    is_digest,
    load_private_key,
    sign,
    verify,
)
from conveyor.errors import InvalidRequest

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
digests = st.binary(min_size=1, max_size=64).map(lambda b: "sha256:" + hashlib.sha256(b).hexdigest())


def _pair() -> tuple[Ed25519PrivateKey, str]:
    pem, public = generate_key()
    return load_private_key(pem), public


class TestRoundTrip:
    def test_keygen_writes_pkcs8_and_prints_the_raw_public_key(self) -> None:
        pem, public = generate_key()
        assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
        assert len(base64.b64decode(public)) == 32

    def test_the_key_that_signed_is_named(self) -> None:
        key, public = _pair()
        _, other = _pair()
        signature = sign(DIGEST, key)
        assert len(base64.b64decode(signature)) == 64
        assert verify(DIGEST, signature, {"release": other, "ci": public}) == "ci"

    def test_raw_and_base64_signatures_with_whitespace_are_the_same(self) -> None:
        key, public = _pair()
        raw = base64.b64decode(sign(DIGEST, key))
        assert decode_signature(raw) == raw
        assert decode_signature(base64.b64encode(raw) + b"\n") == raw
        assert verify(DIGEST, raw, {"ci": public}) == "ci"

    def test_openssl_and_openssh_private_keys_load(self) -> None:
        key = Ed25519PrivateKey.generate()
        for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.OpenSSH):
            pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
            assert load_private_key(pem).public_key() == key.public_key()

    @given(digests)
    def test_a_signature_verifies_for_its_digest_only(self, digest: str) -> None:
        key, public = _pair()
        signature = sign(digest, key)
        assert verify(digest, signature, {"ci": public}) == "ci"
        other = "sha256:" + hashlib.sha256(digest.encode()).hexdigest()
        with pytest.raises(InvalidRequest):
            verify(other, signature, {"ci": public})

    @given(digests, st.integers(0, 64 * 8 - 1))
    def test_a_flipped_bit_never_verifies(self, digest: str, bit: int) -> None:
        key, public = _pair()
        raw = bytearray(base64.b64decode(sign(digest, key)))
        raw[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(InvalidRequest):
            verify(digest, bytes(raw), {"ci": public})


class TestRefusals:
    def test_a_forged_signature_names_the_keys_tried_and_the_fix(self) -> None:
        forger, _ = _pair()
        _, trusted = _pair()
        with pytest.raises(InvalidRequest) as caught:
            verify(DIGEST, sign(DIGEST, forger), {"ci": trusted, "release": trusted})
        assert caught.value.detail == (
            f"the signature does not verify with any trusted key (ci, release) for digest {DIGEST}"
        )
        assert caught.value.hint and f"conveyor artifact sign --key KEY {DIGEST}" in caught.value.hint

    def test_no_trusted_keys(self) -> None:
        key, _ = _pair()
        with pytest.raises(InvalidRequest, match="lists no trusted keys"):
            verify(DIGEST, sign(DIGEST, key), {})

    @pytest.mark.parametrize(
        "signature",
        [b"", b"not base64!", base64.b64encode(b"x" * 63), b"x" * 65],
        ids=["empty", "not-base64", "63-bytes", "65-raw-bytes"],
    )
    def test_not_a_signature(self, signature: bytes) -> None:
        with pytest.raises(InvalidRequest, match="not an Ed25519 signature"):
            decode_signature(signature)

    @pytest.mark.parametrize("digest", ["1.2.0", "sha256:ABC", "sha512:" + "a" * 128, "sha256:" + "a" * 63])
    def test_only_digests_are_signed(self, digest: str) -> None:
        key, _ = _pair()
        assert not is_digest(digest)
        with pytest.raises(InvalidRequest, match="is not an artifact digest"):
            sign(digest, key)

    def test_private_key_problems_say_what_to_do(self) -> None:
        with pytest.raises(InvalidRequest, match="not a PEM private key"):
            load_private_key(b"hello")
        encrypted = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
        with pytest.raises(InvalidRequest, match="encrypted with a passphrase"):
            load_private_key(encrypted)
        rsa = generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        with pytest.raises(InvalidRequest, match="not Ed25519"):
            load_private_key(rsa)
